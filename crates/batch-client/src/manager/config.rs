//! `ManagerConfig`: how the manager polls and where it keeps files.

use std::path::PathBuf;
use std::time::Duration;

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
    /// The name this manager holds its leases under. A process started again under the name
    /// it had (a server's `--instance-id`) takes the records it held back at once instead of
    /// waiting out [`Self::lease`]; two live processes must never share one. `None` (the
    /// default): a fresh `mgr_…` name per manager.
    pub owner: Option<String>,
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
            owner: None,
        }
    }
}
