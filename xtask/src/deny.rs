//! `cargo deny` with the offline RustSec snapshot: installs cargo-deny when missing and lays the
//! snapshot out as the git checkout cargo-deny expects, under `target/advisory-dbs/`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{cargo, exec, has_cargo_subcommand};

/// The folder name cargo-deny derives from the default advisory database URL.
const DB_DIR_NAME: &str = "advisory-db-3157b0e258782691";

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    ensure_cargo_deny()?;
    prepare_advisory_db(root)?;
    // cargo-deny reads Cargo.lock's sources offline only if they are already fetched.
    exec(
        cargo()
            .current_dir(root)
            .args(["fetch", "--locked", "--quiet"]),
    )?;
    exec(cargo().current_dir(root).args([
        "deny",
        "--offline",
        "check",
        "licenses",
        "bans",
        "sources",
        "advisories",
    ]))
}

fn ensure_cargo_deny() -> anyhow::Result<()> {
    if has_cargo_subcommand("deny") {
        return Ok(());
    }
    eprintln!(
        "cargo-deny is not installed; installing it with `cargo install --locked cargo-deny`"
    );
    exec(cargo().args(["install", "--locked", "cargo-deny"]))
        .context("could not install cargo-deny")
}

/// Unpacks `../shared/rustsec/advisory-db.tar.gz` into `target/advisory-dbs/` (as named in
/// deny.toml) when the snapshot is new or has changed since the last run.
fn prepare_advisory_db(root: &Path) -> anyhow::Result<()> {
    let tarball = root.join("../shared/rustsec/advisory-db.tar.gz");
    let meta = std::fs::metadata(&tarball).with_context(|| {
        format!(
            "the offline RustSec snapshot is missing at {}; see ../shared/rustsec/README.md",
            tarball.display()
        )
    })?;
    let stamp_value = format!(
        "{} {:?}",
        meta.len(),
        meta.modified()
            .ok()
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    );
    let dbs = root.join("target/advisory-dbs");
    let db = dbs.join(DB_DIR_NAME);
    let stamp = dbs.join("snapshot.stamp");
    if db.join(".git").is_dir() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_value) {
        return Ok(());
    }
    if db.exists() {
        std::fs::remove_dir_all(&db).with_context(|| format!("removing {}", db.display()))?;
    }
    std::fs::create_dir_all(&db).with_context(|| format!("creating {}", db.display()))?;
    exec(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&db),
    )?;
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.current_dir(&db)
            .args(["-c", "user.name=xtask", "-c", "user.email=xtask@localhost"])
            .args(args);
        cmd
    };
    exec(&mut git(&["init", "-q"]))?;
    exec(&mut git(&["add", "-A"]))?;
    exec(&mut git(&[
        "commit",
        "-qm",
        "RustSec snapshot from ../shared/rustsec",
    ]))?;
    if !db.join("crates").is_dir() {
        bail!(
            "the RustSec snapshot at {} has no crates/ folder; is it the advisory database?",
            tarball.display()
        );
    }
    std::fs::write(&stamp, stamp_value).context("writing the snapshot stamp")?;
    Ok(())
}
