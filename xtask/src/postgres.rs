//! A throwaway PostgreSQL for the tests: Debian's server binaries (installed with apt when
//! missing), a cluster `initdb`'d into a temporary directory, listening on loopback only at a
//! free port, stopped and removed when the handle drops. Nothing is assumed to be running.
//!
//! `initdb` refuses to run as root, and CI runs as root: then the cluster belongs to the
//! package's `postgres` user and every server command runs as that user (`runuser`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{describe, exec, free_port};

/// The variable the store test suites read: an admin URL of a server they may create
/// databases on (one per test). Unset, they run on SQLite only and say so.
pub(crate) const TEST_URL_VAR: &str = "BATCHBEAM_TEST_POSTGRES";

/// A running throwaway server; stopped (fast shutdown) and its files removed on drop.
pub(crate) struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    /// `Some("postgres")` when running as root.
    run_as: Option<&'static str>,
}

impl Postgres {
    /// Installs the server if missing, then starts a fresh cluster.
    pub(crate) fn start() -> anyhow::Result<Postgres> {
        let bin = match server_bin() {
            Some(bin) => bin,
            None => {
                install()?;
                server_bin().context(
                    "apt installed postgresql but no /usr/lib/postgresql/*/bin/initdb is there",
                )?
            }
        };
        let run_as = is_root().then_some("postgres");
        // Under the system temporary directory, which the postgres user can reach.
        let data = tempfile::Builder::new()
            .prefix("batchbeam-pg-")
            .tempdir()
            .context("creating a directory for the test cluster")?;
        if let Some(user) = run_as {
            exec(Command::new("chown").args([user, &data.path().to_string_lossy()]))
                .context("giving the test cluster's directory to the postgres user")?;
        }
        let pg = Postgres {
            bin,
            port: free_port()?,
            data,
            run_as,
        };
        let dir = pg.cluster_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                &dir,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        // Loopback only, the socket in the cluster's own directory, durability off: a test
        // server loses nothing worth keeping if the machine stops.
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            pg.port,
            pg.data.path().display()
        );
        let log = format!("{}/server.log", pg.data.path().display());
        pg.run(
            "pg_ctl",
            &[
                "-D", &dir, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        )
        .with_context(|| {
            format!(
                "the test PostgreSQL did not start; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        Ok(pg)
    }

    /// The admin URL (database `postgres`, user `postgres`, no password: trust on loopback).
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates database `name` (letters, digits and `_`) and returns its URL.
    pub(crate) fn create_database(&self, name: &str) -> anyhow::Result<String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("{name:?} is not a plain database name");
        }
        let psql = self.program("psql");
        exec(
            Command::new(&psql)
                .args(["-q", "-v", "ON_ERROR_STOP=1", &self.url(), "-c"])
                .arg(format!("CREATE DATABASE {name}"))
                .stdout(std::process::Stdio::null()),
        )
        .with_context(|| format!("creating database {name}"))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// One of the server's programs (`psql`, ...).
    pub(crate) fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    fn cluster_dir(&self) -> String {
        format!("{}/cluster", self.data.path().display())
    }

    /// Runs one of the server's programs (as the postgres user when we are root).
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args).stdout(std::process::Stdio::null());
        exec(&mut cmd)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let dir = self.cluster_dir();
        if let Err(e) = self.run("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"]) {
            eprintln!("stopping the test PostgreSQL: {e:#}");
        }
    }
}

/// `bin/` of the newest PostgreSQL under /usr/lib/postgresql, if any.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `apt-get update && apt-get install postgresql`, as root only (never sudo on its own).
fn install() -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb); \
             install Debian's `postgresql` package, or run as root and this does it"
        );
    }
    eprintln!("xtask: installing Debian's postgresql package for the store tests");
    exec(Command::new("apt-get").arg("update").arg("-qq"))?;
    let mut install = Command::new("apt-get");
    install
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "postgresql",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive");
    exec(&mut install).with_context(|| format!("`{}`", describe(&install)))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether `location` is a PostgreSQL URL rather than an SQLite path.
pub(crate) fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `cargo xtask pg -- COMMAND…`: runs COMMAND with a throwaway server's URL in
/// [`TEST_URL_VAR`] (e.g. `cargo xtask pg -- cargo test -p batch-client`), then stops it.
pub(crate) fn with_server(command: &[String]) -> anyhow::Result<()> {
    let Some((program, args)) = command.split_first() else {
        bail!("usage: cargo xtask pg -- COMMAND [ARGS…]");
    };
    let pg = Postgres::start()?;
    eprintln!("xtask: test PostgreSQL at {} ({TEST_URL_VAR})", pg.url());
    let result = exec(Command::new(program).args(args).env(TEST_URL_VAR, pg.url()));
    drop(pg);
    result
}
