//! `batchbeam serve` child processes that xtask starts, SIGKILLs and starts again: one
//! [`Instance`] per process, on a port of its own that it keeps across restarts, its stdout and
//! stderr appended to one log file, killed when dropped.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::http;

/// How every start of an instance is made: the program, its arguments after `serve`, the
/// environment it gets and the folder it runs in.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) bin: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) dir: PathBuf,
}

/// Variables of the caller's environment that would change what an instance does; they are
/// removed so that only [`Launch::env`] counts.
const CLEARED: [&str; 10] = [
    "BATCHBEAM_DB",
    "DATABASE_URL",
    "BATCHBEAM_CONFIG",
    "BATCHBEAM_API_TOKEN",
    "BATCHBEAM_ADDR",
    "BATCHBEAM_WORKERS",
    "BATCHBEAM_SESSIONS",
    "BATCHBEAM_INSTANCE_ID",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
];

/// One `batchbeam serve` process (or none, while it is down).
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Instance {
    pub(crate) fn new(id: &str, port: u16, logs: &Path) -> Instance {
        Instance {
            id: id.to_owned(),
            port,
            log: logs.join(format!("{id}.log")),
            child: None,
            starts: 0,
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the process is running (it may not answer yet).
    pub(crate) fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// The process id while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process, with a line in its log saying which start this is and when.
    pub(crate) fn start(&mut self, launch: &Launch, at_secs: f64) -> anyhow::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "=== xtask: start #{} of {} at {at_secs:.1}s ===",
            self.starts, self.id
        )?;
        let mut cmd = Command::new(&launch.bin);
        cmd.arg("serve")
            .args(["--addr", &self.host()])
            .args(&launch.args)
            .current_dir(&launch.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for var in CLEARED {
            cmd.env_remove(var);
        }
        cmd.envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", self.id, launch.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and wait for the process to be gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process ended by itself (it should not); its exit status if so.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Waits until `GET /health` answers 200, at most `patience`.
    pub(crate) fn wait_healthy(&mut self, patience: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            crate::util::check_interrupted()?;
            if self.healthy() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                anyhow::bail!(
                    "{} exited ({status}) before it answered; see {}",
                    self.id,
                    self.log.display()
                );
            }
            if started.elapsed() > patience {
                anyhow::bail!(
                    "{} did not answer /health within {}s; see {}",
                    self.id,
                    patience.as_secs(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET /health` answered 200 within two seconds.
    pub(crate) fn healthy(&self) -> bool {
        self.is_up()
            && http::request(
                &self.host(),
                "GET",
                "/health",
                None,
                None,
                Duration::from_secs(2),
            )
            .is_ok_and(|r| r.status == 200)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
