//! `ManagerConfig`: how the manager polls and where it keeps files.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// How the manager polls and where it keeps files.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerConfig {
    /// Shard inputs and downloaded results go under `data_dir/<record id>/`.
    pub data_dir: PathBuf,
    /// First polling interval (`BATCH_POLL_INTERVAL_MS`, default 30 s).
    pub poll_interval: Duration,
    /// Longest polling interval (`BATCH_POLL_MAX_INTERVAL_MS`, default 10 min).
    pub poll_ceiling: Duration,
    /// How long a batch may run before it is cancelled and its partial results collected
    /// (`BATCH_MAX_WAIT_HOURS`, default 24).
    pub max_wait: Duration,
    /// Wait before resubmitting a batch that failed with `token_limit_exceeded`
    /// (`BATCH_RESUBMIT_DELAY_MS`, default 5 min).
    pub resubmit_delay: Duration,
    /// Most batches created for one record (1 + resubmissions).
    pub max_attempts: u32,
    /// How long a manager holds a record while it uploads or creates its batch, so that two
    /// processes never do it at once. A process that dies holding one delays others by at most
    /// this long.
    pub lease: Duration,
}

impl ManagerConfig {
    /// Defaults, keeping files under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> ManagerConfig {
        ManagerConfig {
            data_dir: data_dir.into(),
            poll_interval: Duration::from_millis(30_000),
            poll_ceiling: Duration::from_secs(600),
            max_wait: Duration::from_secs(24 * 3600),
            resubmit_delay: Duration::from_secs(300),
            max_attempts: 10,
            lease: Duration::from_secs(600),
        }
    }

    /// Defaults overridden by `BATCH_POLL_INTERVAL_MS`, `BATCH_POLL_MAX_INTERVAL_MS`,
    /// `BATCH_MAX_WAIT_HOURS` and `BATCH_RESUBMIT_DELAY_MS`.
    pub fn from_env(data_dir: impl Into<PathBuf>) -> Result<ManagerConfig> {
        Self::from_lookup(data_dir, |n| std::env::var(n).ok())
    }

    /// Like [`ManagerConfig::from_env`], reading variables through `get`.
    pub fn from_lookup(
        data_dir: impl Into<PathBuf>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ManagerConfig> {
        let mut config = ManagerConfig::new(data_dir);
        let ms = |name: &str| -> Result<Option<Duration>> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(|ms| Some(Duration::from_millis(ms)))
                    .map_err(|_| Error::Config(format!("{name} must be milliseconds, got '{v}'"))),
            }
        };
        if let Some(d) = ms("BATCH_POLL_INTERVAL_MS")? {
            config.poll_interval = d;
        }
        if let Some(d) = ms("BATCH_POLL_MAX_INTERVAL_MS")? {
            config.poll_ceiling = d;
        }
        if let Some(d) = ms("BATCH_RESUBMIT_DELAY_MS")? {
            config.resubmit_delay = d;
        }
        if let Some(v) = get("BATCH_MAX_WAIT_HOURS").filter(|v| !v.trim().is_empty()) {
            let hours = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|h| h.is_finite() && *h > 0.0 && *h < 1e6)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "BATCH_MAX_WAIT_HOURS must be positive hours, got '{v}'"
                    ))
                })?;
            config.max_wait = Duration::from_secs_f64(hours * 3600.0);
        }
        config.poll_ceiling = config.poll_ceiling.max(config.poll_interval);
        Ok(config)
    }
}
