//! `cargo xtask conformance`: the official `openai` Python SDK drives a real `batchbeam sim`
//! (scripts/conformance), proving the simulator behaves as OpenAI does to an unmodified client;
//! then schemathesis fuzzes it with the official spec, and `batchbeam serve` with the document
//! the server generates (`/api/openapi.json`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::sim_process::Sim;
use crate::util::{build_workspace, describe, exec, target_dir};

/// The only key the simulator accepts during the suite, so a wrong key really is wrong.
const API_KEY: &str = "sk-conformance-0123456789abcdefghijklmnopqrstuvwxyz";
/// Simulated time runs this much faster than real time: a batch takes tens of milliseconds.
const TIME_SCALE: &str = "1000";
/// Written into `.venv` after a successful install: the requirements' hash.
const STAMP: &str = ".conformance-requirements";
/// The simulator's log, in the target directory.
const SIM_LOG: &str = "conformance-sim.log";

/// Makes the venv, builds and starts the simulator, runs pytest against it, stops it.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let suite = root.join("scripts/conformance");
    let python = ensure_venv(&root.join(".venv"), &suite.join("requirements.txt"))?;

    build_workspace(root)?;
    let target = target_dir(root)?;
    let bin = target.join("debug/batchbeam");
    let log = target.join(SIM_LOG);
    let sim = Sim::start(
        &bin,
        &log,
        &["--time-scale", TIME_SCALE, "--api-key", API_KEY],
    )?;
    println!("conformance: openai-sim at {}", sim.base_url);

    let mut pytest = Command::new(&python);
    pytest
        .current_dir(root)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("SIM_BASE_URL", &sim.base_url)
        .env("SIM_API_KEY", API_KEY)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let line = describe(&pytest);
    let status = pytest
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        drop(sim);
        bail!(
            "the openai-sim conformance suite failed ({status}); the simulator's log is in {}",
            log.display()
        );
    }
    let fuzzed = fuzz(root, &python, &target, &sim.base_url);
    drop(sim);
    fuzzed?;
    fuzz_server(&python, &target, &bin)
}

/// The bearer token of the server under test.
const SERVER_TOKEN: &str = "conformance-server-token-0123456789";
/// The server's log, in the target directory.
const SERVER_LOG: &str = "conformance-server.log";
/// Examples per operation against the server: each accepted `POST /api/beam-search` starts a
/// real (simulated) job, so fewer than against the simulator.
const SERVER_EXAMPLES: &str = "25";

/// A `batchbeam serve --sim` child process, killed when dropped.
struct Serve {
    child: std::process::Child,
    url: String,
}

impl Serve {
    fn start(bin: &Path, dir: &Path, log: &Path) -> anyhow::Result<Serve> {
        use std::io::{BufRead, BufReader, Write};
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("none.toml"), "")?;
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--sim",
                "--sim-time-scale",
                "1000",
                "--addr",
                "127.0.0.1:0",
            ])
            .current_dir(dir)
            .env("BATCHBEAM_CONFIG", dir.join("none.toml"))
            .env("BATCHBEAM_API_TOKEN", SERVER_TOKEN)
            .env("BATCHBEAM_DB", dir.join("server.db"))
            .env("BATCHBEAM_SESSIONS", dir.join("sessions"))
            .env_remove("OPENAI_API_KEY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting batchbeam serve")?;
        let stderr = child
            .stderr
            .take()
            .context("serve's stderr was not piped")?;
        let mut log_file =
            fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log_file, "{line}");
                if let Some(rest) = line.strip_prefix("batchbeam serve: http://") {
                    let addr = rest.split('/').next().unwrap_or_default().to_owned();
                    let _ = tx.send(format!("http://{addr}"));
                }
            }
        });
        let mut serve = Serve {
            child,
            url: String::new(),
        };
        match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(url) => {
                serve.url = url;
                Ok(serve)
            }
            Err(_) => bail!(
                "batchbeam serve did not announce its address; its log is in {}",
                log.display()
            ),
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Schemathesis against `batchbeam serve` with the document the server generates itself
/// (`/api/openapi.json`, utoipa): no 5xx and no response that breaks the document.
fn fuzz_server(python: &Path, target: &Path, bin: &Path) -> anyhow::Result<()> {
    let log = target.join(SERVER_LOG);
    let serve = Serve::start(bin, &target.join("conformance-server"), &log)?;
    let schemathesis = python.with_file_name("schemathesis");
    let mut run = Command::new(&schemathesis);
    run.current_dir(target)
        .arg("run")
        .arg(format!("{}/api/openapi.json", serve.url))
        .args(["--url", &serve.url])
        .args(["-H", &format!("Authorization: Bearer {SERVER_TOKEN}")])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", SERVER_EXAMPLES])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--workers", "1", "--generation-deterministic", "--no-color"]);
    println!(
        "conformance: schemathesis against batchbeam serve ({SERVER_EXAMPLES} examples per operation)"
    );
    let result = exec(&mut run).with_context(|| {
        format!(
            "schemathesis found responses of batchbeam serve that break its own document; its log is in {}",
            log.display()
        )
    });
    drop(serve);
    result
}

/// Operations the fuzzer tries per API operation and phase: deterministic generation, so a run
/// tries the same requests on every machine (no flaky verdicts), in about 40 s.
const FUZZ_EXAMPLES: &str = "100";

/// Schemathesis drives the Files, Batches, chat and image operations with generated requests
/// from the official spec (as OpenAI answers: `scripts/conformance/observed_spec.py`), valid and
/// invalid: no 5xx, no response that breaks the spec, no invalid request accepted.
fn fuzz(root: &Path, python: &Path, target: &Path, base_url: &str) -> anyhow::Result<()> {
    let spec = target.join("observed-openapi.json");
    exec(
        Command::new(python)
            .arg(root.join("scripts/conformance/observed_spec.py"))
            .arg(root.join("spec/openai/openapi.yaml"))
            .arg(&spec),
    )
    .context("writing the observed spec")?;
    let schemathesis = python.with_file_name("schemathesis");
    let mut run = Command::new(&schemathesis);
    run.current_dir(target)
        .arg("run")
        .arg(&spec)
        .args(["--url", base_url])
        .args(["-H", &format!("Authorization: Bearer {API_KEY}")])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", FUZZ_EXAMPLES])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,negative_data_rejection",
        ])
        .args(["--workers", "1", "--generation-deterministic", "--no-color"]);
    println!(
        "conformance: schemathesis against openai-sim ({FUZZ_EXAMPLES} examples per operation)"
    );
    exec(&mut run).with_context(|| {
        format!(
            "schemathesis found requests the simulator answers unlike the spec; its log is in {}",
            target.join(SIM_LOG).display()
        )
    })
}

/// `<venv>/bin/python` with `requirements` installed, reusing the venv while the requirements
/// are unchanged (the conformance suite's `.venv`, the browser test's under the target folder).
pub(crate) fn ensure_venv(venv: &Path, requirements: &Path) -> anyhow::Result<PathBuf> {
    let venv = venv.to_path_buf();
    let python = venv.join("bin/python");
    let stamp = venv.join(STAMP);
    if !python.exists() {
        println!("conformance: creating {}", venv.display());
        // A venv rebuilt over a broken one must not trust the old install stamp.
        let _ = fs::remove_file(&stamp);
        if exec(Command::new("python3").args(["-m", "venv"]).arg(&venv)).is_err() {
            // Debian's python3 ships venv (with ensurepip) as a package of its own.
            install_venv_module()?;
            let _ = fs::remove_dir_all(&venv);
            exec(Command::new("python3").args(["-m", "venv"]).arg(&venv))
                .context("creating the Python venv")?;
        }
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

/// Whether this process may install Debian packages: root, with apt-get.
pub(crate) fn can_apt_install() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = Command::new("apt-get")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    root && apt
}

/// Installs Debian's `python3-venv` with apt-get, as root; elsewhere says what to install.
fn install_venv_module() -> anyhow::Result<()> {
    if !can_apt_install() {
        bail!(
            "python3 cannot create a venv: install its venv module (on Debian or Ubuntu: `sudo apt-get install python3-venv`) and run again"
        );
    }
    println!(
        "conformance: python3 has no venv module; installing Debian's python3-venv with apt-get"
    );
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "python3-venv"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("installing python3-venv")
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
