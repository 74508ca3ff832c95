//! `BatchJobManager`: exactly-once submission, polling of many batches by one task, result
//! retrieval and resumption after a restart, on top of a [`JobStore`].

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use batch_format::{
    JsonlLine, Problem, Shard, ShardLimits, ShardManifest, ValidationOptions, Validator,
};
use rand::Rng;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use crate::db::Database;
use crate::store::{
    DbStore, JobRecord, JobState, JobStore, RecordStatus, StatusChange, Submission,
};
use crate::types::{Batch, BatchListQuery, BatchStatus, CreateBatchRequest, FileListQuery};
use crate::{Error, OpenAiClient, Result, SubmitStep};

/// Metadata key carrying a record's idempotency key on its batches.
pub const METADATA_KEY: &str = "batchbeam_key";
/// Metadata key carrying the attempt number on a record's batches.
pub const METADATA_ATTEMPT: &str = "batchbeam_attempt";
/// Metadata key carrying our record id on its batches.
pub const METADATA_RECORD: &str = "batchbeam_record";

/// The most problems kept when input is rejected.
const MAX_PROBLEMS: usize = 1000;

mod config;
mod input;
mod lease;
#[cfg(test)]
mod lease_tests;
mod poll;
mod records;
mod remote;
mod results;
mod submit;
#[cfg(test)]
mod tests;

pub use config::ManagerConfig;
pub use poll::PollReport;
pub use results::BatchResults;
pub use submit::{CheckedShard, SubmitInput, SubmitOptions, SubmitOutcome};

use input::*;
use poll::{ends_record, jitter};

/// Submits, polls, persists, resumes and retrieves batches, exactly once each. Cheap to clone.
pub struct BatchJobManager<S: JobStore = DbStore> {
    inner: Arc<Inner<S>>,
}

impl<S: JobStore> Clone for BatchJobManager<S> {
    fn clone(&self) -> Self {
        BatchJobManager {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: JobStore> std::fmt::Debug for BatchJobManager<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchJobManager")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    client: OpenAiClient,
    store: S,
    config: ManagerConfig,
    /// Names this manager in record leases.
    owner: String,
    failpoint: StdMutex<Option<SubmitStep>>,
    /// The records this manager holds leases on, each renewed by a task of its own.
    held: StdMutex<HashMap<String, lease::Held>>,
    /// Numbers each holding of a record in `held`.
    generation: AtomicU64,
    locks: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
    wake: Notify,
}

/// Handle of the polling task started by [`BatchJobManager::spawn_poller`]; dropping it does not
/// stop the task, [`PollerHandle::stop`] does.
#[derive(Debug)]
pub struct PollerHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl PollerHandle {
    /// Stops the task and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Milliseconds since the Unix epoch by the system clock (0 if the clock is set before 1970):
/// the time every record, history entry and lease of batch-client is stamped with, and the
/// one clock of the crates above it that keep rows next to them (batch-queue, orchestrator).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// The name the input file is uploaded under: it carries the idempotency key.
pub fn upload_filename(idempotency_key: &str) -> String {
    format!("batchbeam-{idempotency_key}.jsonl")
}

fn duration_ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl BatchJobManager<DbStore> {
    /// A manager keeping its records in the SQLite file `db_path` (created when missing).
    pub async fn open(
        client: OpenAiClient,
        db_path: &Path,
        config: ManagerConfig,
    ) -> Result<BatchJobManager<DbStore>> {
        BatchJobManager::on(client, Database::sqlite(db_path).await?, config).await
    }

    /// A manager on the SQLite file `db_path`, which must exist ([`Error::NoDatabase`]
    /// otherwise): for commands that only read or carry on records, so that a mistyped path
    /// creates nothing.
    pub async fn open_existing(
        client: OpenAiClient,
        db_path: &Path,
        config: ManagerConfig,
    ) -> Result<BatchJobManager<DbStore>> {
        BatchJobManager::on(client, Database::sqlite_existing(db_path).await?, config).await
    }

    /// A manager keeping its records in the process's database, SQLite or PostgreSQL
    /// (migrated).
    pub async fn on(
        client: OpenAiClient,
        db: Database,
        config: ManagerConfig,
    ) -> Result<BatchJobManager<DbStore>> {
        Ok(BatchJobManager::new(client, DbStore::on(db).await?, config))
    }
}

impl<S: JobStore> BatchJobManager<S> {
    /// A manager over `store`.
    pub fn new(client: OpenAiClient, store: S, config: ManagerConfig) -> BatchJobManager<S> {
        let owner = config.owner.clone().unwrap_or_else(|| new_id("mgr_"));
        BatchJobManager {
            inner: Arc::new(Inner {
                client,
                store,
                config,
                owner,
                failpoint: StdMutex::new(None),
                held: StdMutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                locks: StdMutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        }
    }

    /// The HTTP client.
    pub fn client(&self) -> &OpenAiClient {
        &self.inner.client
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// Test hook (the `failpoints` feature): stop `submit_batch` (and any carrying-on of a
    /// record) right after `step`, as if the process had died there (its leases are no longer
    /// renewed, and left to run out). `None` clears it.
    #[cfg(feature = "failpoints")]
    pub fn set_failpoint(&self, step: Option<SubmitStep>) {
        if let Ok(mut f) = self.inner.failpoint.lock() {
            *f = step;
        }
    }

    fn failpoint(&self, step: SubmitStep) -> Result<()> {
        let hit = self
            .inner
            .failpoint
            .lock()
            .map(|f| *f == Some(step))
            .unwrap_or(false);
        if hit {
            tracing::warn!(step = %step, "failpoint");
            self.abandon_leases();
            return Err(Error::Failpoint(step));
        }
        Ok(())
    }

    async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = match self.inner.locks.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            Arc::clone(locks.entry(id.to_owned()).or_default())
        };
        lock.lock_owned().await
    }

    /// Drops a finished record's lock entry unless someone holds or waits for it.
    fn forget_lock(&self, id: &str) {
        if let Ok(mut locks) = self.inner.locks.lock()
            && locks.get(id).is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(id);
        }
    }
}
