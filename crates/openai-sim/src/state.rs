//! `Sim`: the shared state of one simulator (config, clock, models, files, batches, counters).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::batch::Engine;
use crate::clock::{SimClock, secs};
use crate::config::SimConfig;
use crate::error::ApiError;
use crate::faults::FaultInjector;
use crate::files::FileTable;
use crate::ids::IdGen;
use crate::models::Models;
use std::collections::BTreeMap;

use crate::stats::{Counters, RequestStats, StatsSnapshot};

/// Locks a mutex, ignoring poisoning (state stays usable after a panicking thread).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything one running simulator shares between requests and its background task.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) config: SimConfig,
    pub(crate) clock: SimClock,
    pub(crate) models: Models,
    pub(crate) ids: Mutex<IdGen>,
    pub(crate) files: Mutex<FileTable>,
    /// Lock order: `engine` before `files` before `ids`.
    pub(crate) engine: Mutex<Engine>,
    pub(crate) counters: Mutex<Counters>,
    pub(crate) faults: Mutex<FaultInjector>,
    pub(crate) data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> crate::Result<Sim> {
        config.check()?;
        let (data_dir, temp) = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| crate::Error::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                (dir.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("openai-sim-")
                    .tempdir()
                    .map_err(|source| crate::Error::DataDir {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (t.path().to_owned(), Some(t))
            }
        };
        // Ids must not repeat across restarts with the same seed, so they also draw on the time.
        let id_seed = config.seed
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        Ok(Sim {
            clock: SimClock::new(config.time_scale),
            models: Models::new(config.seed),
            ids: Mutex::new(IdGen::new(id_seed)),
            files: Mutex::new(FileTable::new(data_dir.clone())),
            engine: Mutex::new(Engine::default()),
            counters: Mutex::new(Counters::default()),
            faults: Mutex::new(FaultInjector::new(config.faults.clone(), config.seed)),
            data_dir,
            _temp: temp,
            config,
        })
    }

    /// Simulated Unix time.
    pub(crate) fn now(&self) -> f64 {
        self.clock.now()
    }

    /// Brings every batch up to the current simulated time and drops expired files.
    pub(crate) fn advance(&self) {
        let now = self.now();
        lock(&self.engine).advance_all(self, now);
        lock(&self.files).purge_expired(secs(now));
    }

    /// Per custom id: batch lines run and billed (`GET /sim/stats/requests`).
    pub(crate) fn request_stats(&self) -> BTreeMap<String, RequestStats> {
        self.advance();
        lock(&self.engine).request_stats()
    }

    pub(crate) fn stats(&self) -> StatsSnapshot {
        self.advance();
        let per_batch = lock(&self.engine).stats();
        let c = lock(&self.counters);
        StatsSnapshot {
            now: secs(self.now()),
            batches_created: c.batches_created,
            files_uploaded: c.files_uploaded,
            files_deleted: c.files_deleted,
            sync_requests: c.sync_requests,
            batch_requests_executed: per_batch.iter().map(|(_, b)| b.requests_executed).sum(),
            batch_requests_billed: per_batch.iter().map(|(_, b)| b.requests_billed).sum(),
            batches: per_batch.into_iter().collect(),
            faults: lock(&self.faults).counters(),
        }
    }
}

/// Runs `f` on a blocking thread (batch work does file I/O and model calls).
pub(crate) async fn blocking<R, F>(sim: &Arc<Sim>, f: F) -> Result<R, ApiError>
where
    F: FnOnce(&Sim) -> R + Send + 'static,
    R: Send + 'static,
{
    let sim = Arc::clone(sim);
    tokio::task::spawn_blocking(move || f(&sim))
        .await
        .map_err(ApiError::internal)
}
