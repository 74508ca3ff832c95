//! `cargo xtask conformance`: the official `openai` Python SDK drives a real `batchbeam sim`
//! (scripts/conformance), proving the simulator behaves as OpenAI does to an unmodified client.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::util::{cargo, describe, exec};

/// The only key the simulator accepts during the suite, so a wrong key really is wrong.
const API_KEY: &str = "sk-conformance-0123456789abcdefghijklmnopqrstuvwxyz";
/// Simulated time runs this much faster than real time: a batch takes tens of milliseconds.
const TIME_SCALE: &str = "1000";
/// How long the simulator may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Written into `.venv` after a successful install: the requirements' hash.
const STAMP: &str = ".conformance-requirements";

/// Makes the venv, builds and starts the simulator, runs pytest against it, stops it.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let suite = root.join("scripts/conformance");
    let python = ensure_venv(root, &suite.join("requirements.txt"))?;

    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--quiet", "-p", "batchbeam"]),
    )?;
    let bin = target_dir(root).join("debug/batchbeam");
    let log = target_dir(root).join("conformance-sim.log");
    let sim = Sim::start(&bin, &log)?;
    println!("conformance: openai-sim at {}", sim.base_url);

    let mut pytest = Command::new(&python);
    pytest
        .current_dir(root)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("SIM_BASE_URL", &sim.base_url)
        .env("SIM_API_KEY", API_KEY)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if std::env::var_os("OPENAI_SPEC").is_none() {
        pytest.env("OPENAI_SPEC", root.join("../shared/openai/openapi.yaml"));
    }
    let line = describe(&pytest);
    let status = pytest
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    drop(sim);
    if !status.success() {
        bail!(
            "the openai-sim conformance suite failed ({status}); the simulator's log is in {}",
            log.display()
        );
    }
    Ok(())
}

/// `.venv/bin/python` with the suite's requirements installed, reusing the venv while
/// `requirements.txt` is unchanged.
fn ensure_venv(root: &Path, requirements: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(STAMP);
    if !python.exists() {
        println!("conformance: creating {}", venv.display());
        // A venv rebuilt over a broken one must not trust the old install stamp.
        let _ = fs::remove_file(&stamp);
        exec(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(
            "creating the Python venv (is python3 with the venv module installed? apt-get install python3-venv)",
        )?;
    }
    let text =
        fs::read(requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let want = format!("{:016x}\n", fnv1a(&text));
    if fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        println!("conformance: installing {}", requirements.display());
        exec(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(requirements),
        )?;
        fs::write(&stamp, want).with_context(|| format!("writing {}", stamp.display()))?;
    }
    Ok(python)
}

/// Where cargo puts build output (`$CARGO_TARGET_DIR` or `target/`).
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// A running `batchbeam sim`, killed when dropped.
struct Sim {
    child: Child,
    base_url: String,
}

impl Sim {
    /// Starts the simulator on a free port and waits for `openai-sim listening on URL`.
    fn start(bin: &Path, log: &Path) -> anyhow::Result<Sim> {
        let log_file =
            fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "sim",
            "--addr",
            "127.0.0.1:0",
            "--time-scale",
            TIME_SCALE,
            "--api-key",
            API_KEY,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
        let line = describe(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start `{line}`"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            // Keep draining so the simulator never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut sim = Sim {
            child,
            base_url: String::new(),
        };
        let first = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        match first.trim().strip_prefix("openai-sim listening on ") {
            Some(url) if url.starts_with("http://") => {
                sim.base_url = url.to_string();
                Ok(sim)
            }
            _ => {
                let exited = sim.child.try_wait().ok().flatten();
                drop(sim);
                let mut log_text = String::new();
                let _ = fs::File::open(log).and_then(|mut f| f.read_to_string(&mut log_text));
                bail!(
                    "`{line}` did not announce its address (first line {first:?}, exit {exited:?}); its log:\n{}",
                    log_text.trim_end()
                )
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// FNV-1a: a stable fingerprint of the requirements file for the install stamp.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_changes_with_the_requirements() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"openai==1.0\n"), fnv1a(b"openai==1.1\n"));
    }
}
