//! Small helpers shared by the xtask commands: the project root and running commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root (the parent of the xtask crate).
pub(crate) fn project_root() -> PathBuf {
    // xtask lives one level below the workspace root; a manifest path without a parent
    // would be `/`, which cannot hold a workspace, so fall back to it only in name.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where cargo puts build output, as `cargo metadata` reports it: `$CARGO_TARGET_DIR`,
/// `build.target-dir` from any cargo config, or `target/` in the workspace.
pub(crate) fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
        .context("running `cargo metadata` to find the target directory")?;
    let dir = metadata.target_directory.into_std_path_buf();
    Ok(DIR.get_or_init(|| dir).clone())
}

/// Builds every target of the workspace (libraries, binaries, tests) in the dev profile: the
/// same build, with the same features, that the tests step runs, so the demo and the conformance
/// suite reuse it instead of building the crates again with other features.
pub(crate) fn build_workspace(root: &Path) -> anyhow::Result<()> {
    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--workspace", "--all-targets", "--locked"]),
    )
}

/// `cargo` as the one that runs us (respects `$CARGO`), with the tools xtask installed under
/// `target/tools/` first on its `PATH` (cargo finds `cargo-<name>` subcommands there).
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let bins = crate::tools::tool_bins();
    if !bins.is_empty() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = bins.into_iter().chain(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
    }
    cmd
}

/// A loopback port nobody listens on now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs a command to completion with inherited output, failing with the command line on a
/// non-zero exit.
pub(crate) fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let line = describe(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// The command line of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, Ctrl-C and SIGTERM only set a flag that long commands look at
/// ([`check_interrupted`]), so that they return an error and every process and folder they
/// started is dropped (killed, removed) on the way out instead of left behind.
pub(crate) fn catch_interrupts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(set_interrupt_handler);
}

fn set_interrupt_handler() {
    let set = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("xtask: interrupted again; still stopping what it started");
        } else {
            eprintln!("xtask: interrupted; stopping what it started");
        }
    });
    if let Err(e) = set {
        eprintln!(
            "xtask: cannot catch Ctrl-C ({e}); an interrupted run may leave processes behind"
        );
    }
}

/// An error once Ctrl-C or SIGTERM arrived (after [`catch_interrupts`]).
pub(crate) fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
