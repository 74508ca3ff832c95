//! `cargo deny`: licences, bans, sources and RustSec advisories, policy in `deny.toml`.
//!
//! Where the advisories come from, in order: an offline snapshot beside the repository
//! (`$BATCHBEAM_ADVISORY_SNAPSHOT`, else `../shared/rustsec/advisory-db.tar.gz`), laid out as the
//! git checkout cargo-deny expects; else the database cargo-deny fetches as it normally does.
//! Where neither works, licences, bans and sources are still checked and the step ends with a
//! loud line that advisories were not: never a silent pass. One line says which source was used.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::tools::CARGO_DENY;
use crate::util::{cargo, exec};

/// The folder name cargo-deny derives from the default advisory database URL.
const DB_DIR_NAME: &str = "advisory-db-3157b0e258782691";
/// Where deny.toml's `db-path` points, relative to the repository.
const DB_PATH: &str = "target/advisory-dbs";
/// Written beside an unpacked snapshot: which tarball (size and mtime) it came from.
const STAMP: &str = "snapshot.stamp";
/// How long fetching the advisory database may take before we call it unreachable.
const FETCH_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the advisories came from.
enum Advisories {
    Snapshot(PathBuf),
    Fetched,
    Unavailable(String),
}

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    CARGO_DENY.ensure()?;
    // cargo-deny reads Cargo.lock's sources offline only if they are already fetched.
    exec(
        cargo()
            .current_dir(root)
            .args(["fetch", "--locked", "--quiet"]),
    )?;
    let source = advisories(root)?;
    let checks: &[&str] = match source {
        Advisories::Unavailable(_) => &["licenses", "bans", "sources"],
        _ => &["licenses", "bans", "sources", "advisories"],
    };
    exec(
        cargo()
            .current_dir(root)
            .args(["deny", "--offline", "check"])
            .args(checks),
    )?;
    match source {
        Advisories::Snapshot(path) => eprintln!(
            "deny: advisories checked against the offline RustSec snapshot {}",
            path.display()
        ),
        Advisories::Fetched => {
            eprintln!("deny: advisories checked against the RustSec database fetched just now")
        }
        Advisories::Unavailable(why) => {
            eprintln!(
                "\n!!! deny: ADVISORIES WERE NOT CHECKED: the RustSec advisory database could not be fetched ({why}).\n\
                 !!! Licences, bans and sources were checked. To check advisories, run `cargo xtask deny` on a machine\n\
                 !!! that reaches github.com, or point BATCHBEAM_ADVISORY_SNAPSHOT at a snapshot (advisory-db.tar.gz).\n"
            );
        }
    }
    Ok(())
}

/// Prepares the advisory database and says where it came from.
fn advisories(root: &Path) -> anyhow::Result<Advisories> {
    let db = root.join(DB_PATH).join(DB_DIR_NAME);
    if let Some(tarball) = snapshot(root) {
        unpack_snapshot(&tarball, &db)?;
        return Ok(Advisories::Snapshot(tarball));
    }
    // A snapshot unpacked by an earlier run is a git checkout with no remote: fetching into it
    // would fail, so it makes way for the real database.
    if root.join(DB_PATH).join(STAMP).exists() {
        let _ = std::fs::remove_dir_all(&db);
        let _ = std::fs::remove_file(root.join(DB_PATH).join(STAMP));
    }
    eprintln!(
        "deny: no offline RustSec snapshot beside the repository; fetching the advisory database"
    );
    match fetch_db(root) {
        Ok(()) => Ok(Advisories::Fetched),
        Err(why) => Ok(Advisories::Unavailable(why)),
    }
}

/// The offline snapshot to use, if one is present.
fn snapshot(root: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BATCHBEAM_ADVISORY_SNAPSHOT") {
        return Some(PathBuf::from(path));
    }
    let beside = root.join("../shared/rustsec/advisory-db.tar.gz");
    beside.canonicalize().ok().filter(|p| p.is_file())
}

/// `cargo deny fetch db`, given up on after [`FETCH_TIMEOUT`]; the error says why.
fn fetch_db(root: &Path) -> Result<(), String> {
    let mut child = cargo()
        .current_dir(root)
        .args(["deny", "fetch", "db"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start `cargo deny fetch db`: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                }
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                return Err(format!(
                    "`cargo deny fetch db` failed ({status}): {}",
                    last.trim()
                ));
            }
            Ok(None) if started.elapsed() > FETCH_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`cargo deny fetch db` did not finish in {} s",
                    FETCH_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for `cargo deny fetch db`: {e}")),
        }
    }
}

/// Unpacks the snapshot into `db` as a one-commit git checkout, again only when the tarball
/// changed since the last run.
fn unpack_snapshot(tarball: &Path, db: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(tarball)
        .with_context(|| format!("reading the RustSec snapshot {}", tarball.display()))?;
    let stamp_value = format!(
        "{} {} {:?}",
        tarball.display(),
        meta.len(),
        meta.modified()
            .ok()
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    );
    let dbs = db.parent().context("the advisory database has a parent")?;
    let stamp = dbs.join(STAMP);
    if db.join(".git").is_dir() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_value) {
        return Ok(());
    }
    if db.exists() {
        std::fs::remove_dir_all(db).with_context(|| format!("removing {}", db.display()))?;
    }
    std::fs::create_dir_all(db).with_context(|| format!("creating {}", db.display()))?;
    exec(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("-C")
            .arg(db),
    )?;
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.current_dir(db)
            .args(["-c", "user.name=xtask", "-c", "user.email=xtask@localhost"])
            .args(args);
        cmd
    };
    exec(&mut git(&["init", "-q"]))?;
    exec(&mut git(&["add", "-A"]))?;
    exec(&mut git(&["commit", "-qm", "RustSec snapshot"]))?;
    if !db.join("crates").is_dir() {
        bail!(
            "the RustSec snapshot at {} has no crates/ folder; is it the advisory database?",
            tarball.display()
        );
    }
    std::fs::write(&stamp, stamp_value).context("writing the snapshot stamp")?;
    Ok(())
}
