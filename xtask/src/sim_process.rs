//! A `batchbeam sim` child process on a free port, for the conformance suite and the demo.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::util::describe;

/// How long the simulator may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `batchbeam sim`, killed when dropped.
pub(crate) struct Sim {
    child: Child,
    pub(crate) base_url: String,
}

impl Sim {
    /// Starts the simulator on a free port and waits for `openai-sim listening on URL`.
    pub(crate) fn start(bin: &Path, log: &Path, args: &[&str]) -> anyhow::Result<Sim> {
        let log_file =
            fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["sim", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let line = describe(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start `{line}`"))?;
        let stdout = child
            .stdout
            .take()
            .context("the simulator's stdout was not piped")?;
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
