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
    /// How long a manager's lease on a record lasts without a renewal (30 s by default). A
    /// record is stepped (submitted, polled, downloaded) under a lease, renewed every third of
    /// this while the step runs, so that two processes never step it at once; a process that
    /// dies holding one delays the others by at most this long, except while a create it sent
    /// may still land: that lease runs to the create's bound, the client's request timeout
    /// plus this ([`crate::ClientConfig::timeout`]; docs/scaling.md).
    pub lease: Duration,
    /// The name this manager holds its leases under. A process started again under the name
    /// it had takes the records it held back at once instead of waiting out [`Self::lease`]
    /// (and a create's bound: a create it sent before it died may then land after its lookup,
    /// making a second batch); two live processes must never share one. `None` (the default,
    /// and what a server uses): a fresh `mgr_…` name per manager.
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
            lease: Duration::from_secs(30),
            owner: None,
        }
    }
}
