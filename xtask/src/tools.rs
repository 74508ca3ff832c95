//! The cargo tools `cargo xtask` needs beyond the Rust toolchain, each pinned to one version and
//! installed by xtask itself when missing, with one line saying so.

use std::process::{Command, Stdio};

use anyhow::Context;

use crate::util::{cargo, exec};

/// A cargo subcommand installed from crates.io.
pub(crate) struct Tool {
    /// The crate to install.
    pub(crate) krate: &'static str,
    /// The cargo subcommand it provides (`cargo <subcommand>`).
    pub(crate) subcommand: &'static str,
    /// The version the project is tested with.
    pub(crate) version: &'static str,
}

/// `cargo deny`: licences, bans, sources and advisories.
pub(crate) const CARGO_DENY: Tool = Tool {
    krate: "cargo-deny",
    subcommand: "deny",
    version: "0.20.2",
};

/// `cargo nextest`: the test runner (one process per test).
pub(crate) const CARGO_NEXTEST: Tool = Tool {
    krate: "cargo-nextest",
    subcommand: "nextest",
    version: "0.9.143",
};

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
                eprintln!(
                    "{}: {} is not installed; installing the pinned {}@{} with `cargo install --locked` (once per machine, a few minutes)",
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
