//! `BatchJobManager`: exactly-once submission, polling of many batches by one task, result
//! retrieval and resumption after a restart, on top of a [`JobStore`].

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use batch_format::{
    Endpoint, Problem, Shard, ShardLimits, ShardManifest, ValidationOptions, Validator,
};
use rand::Rng;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use crate::store::{JobRecord, JobState, JobStore, SqliteStore, StatusChange, Submission};
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
}

/// What to submit: a shard from batch-format's builder, or a JSONL file already on disk.
#[derive(Debug, Clone, Copy)]
pub enum SubmitInput<'a> {
    /// Written to the record's folder, then uploaded.
    Shard(&'a Shard),
    /// Validated and uploaded from where it is; it must stay there until the batch is created.
    File(&'a Path),
}

impl<'a> From<&'a Shard> for SubmitInput<'a> {
    fn from(shard: &'a Shard) -> Self {
        SubmitInput::Shard(shard)
    }
}

impl<'a> From<&'a Path> for SubmitInput<'a> {
    fn from(path: &'a Path) -> Self {
        SubmitInput::File(path)
    }
}

impl<'a> From<&'a PathBuf> for SubmitInput<'a> {
    fn from(path: &'a PathBuf) -> Self {
        SubmitInput::File(path)
    }
}

/// How [`BatchJobManager::submit_file`] submits a file.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitOptions {
    /// The caller's metadata for every batch (at most 13 pairs).
    pub metadata: BTreeMap<String, String>,
    /// Most requests per batch; a bigger input is split into shards (OpenAI allows 50,000).
    pub max_lines: usize,
    /// Most bytes per batch input file; a bigger input is split into shards (OpenAI allows
    /// 200 MB).
    pub max_bytes: u64,
    /// Submit even when the same content was submitted before (a new batch, billed again).
    pub new: bool,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            metadata: BTreeMap::new(),
            max_lines: 50_000,
            max_bytes: 200 * 1024 * 1024,
            new: false,
        }
    }
}

/// What [`BatchJobManager::submit_file`] did.
#[derive(Debug, Clone)]
pub struct SubmitOutcome {
    /// The submission: the file's content key and where it came from.
    pub submission: Submission,
    /// Its records, one per shard, in shard order, as they are now.
    pub records: Vec<JobRecord>,
    /// `true` when the same content had been submitted before and these are that submission's
    /// records: nothing new was created.
    pub attached: bool,
    /// Every normalisation made while splitting an oversized input into shards, as
    /// `line N (custom id): change`.
    pub changes: Vec<String>,
}

/// The results of one record, read from the files on disk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchResults {
    /// Our record id.
    pub record_id: String,
    /// The last batch's id.
    pub batch_id: Option<String>,
    /// OpenAI's final status.
    pub status: Option<BatchStatus>,
    /// The output file on disk.
    pub output_path: Option<PathBuf>,
    /// The error file on disk.
    pub error_path: Option<PathBuf>,
    /// Requests answered with a 2xx.
    pub succeeded: u64,
    /// Requests answered with an error status (these were run and billed).
    pub failed: u64,
    /// Requests that never ran (`batch_expired`, `batch_cancelled`, a failed batch, or no line
    /// at all), in manifest order where known: submit them again.
    pub unfinished: Vec<String>,
    /// Requests sent that have no line in either file.
    pub missing: Vec<String>,
    /// Ids with more than one line.
    pub duplicates: Vec<String>,
    /// Ids in the files that were never sent.
    pub unknown: Vec<String>,
    /// Unreadable lines of the files, as `path:line: message`.
    pub line_problems: Vec<String>,
    /// A failed batch's validation errors, with their 1-based input lines.
    pub validation_errors: Vec<crate::BatchError>,
}

impl BatchResults {
    /// Calls `f` with every readable outcome line, output file first, streaming from disk.
    /// Later lines for an id already seen are skipped.
    pub fn for_each_outcome(&self, mut f: impl FnMut(&batch_format::OutcomeLine)) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for path in [&self.output_path, &self.error_path].into_iter().flatten() {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            for item in batch_format::OutputReader::new(BufReader::new(file)) {
                if let Ok(line) = item?
                    && seen.insert(line.custom_id.clone())
                {
                    f(&line);
                }
            }
        }
        Ok(())
    }
}

/// What one pass of [`BatchJobManager::poll_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Records polled (or carried on).
    pub polled: usize,
    /// Records still unfinished after the pass.
    pub unfinished: usize,
    /// When the next record is due (Unix milliseconds), if any is unfinished.
    pub next_due_ms: Option<i64>,
}

/// Submits, polls, persists, resumes and retrieves batches, exactly once each. Cheap to clone.
pub struct BatchJobManager<S: JobStore = SqliteStore> {
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

impl BatchJobManager<SqliteStore> {
    /// A manager keeping its records in the SQLite file `db_path` (created when missing).
    pub async fn open(
        client: OpenAiClient,
        db_path: &Path,
        config: ManagerConfig,
    ) -> Result<BatchJobManager<SqliteStore>> {
        let store = SqliteStore::open(db_path).await?;
        Ok(BatchJobManager::new(client, store, config))
    }
}

impl BatchJobManager<SqliteStore> {
    /// A manager on the SQLite file `db_path`, which must exist ([`Error::NoDatabase`]
    /// otherwise): for commands that only read or carry on records, so that a mistyped path
    /// creates nothing.
    pub async fn open_existing(
        client: OpenAiClient,
        db_path: &Path,
        config: ManagerConfig,
    ) -> Result<BatchJobManager<SqliteStore>> {
        let store = SqliteStore::open_existing(db_path).await?;
        Ok(BatchJobManager::new(client, store, config))
    }
}

impl<S: JobStore> BatchJobManager<S> {
    /// A manager over `store`.
    pub fn new(client: OpenAiClient, store: S, config: ManagerConfig) -> BatchJobManager<S> {
        BatchJobManager {
            inner: Arc::new(Inner {
                client,
                store,
                config,
                owner: new_id("mgr_"),
                failpoint: StdMutex::new(None),
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

    /// Test hook: stop `submit_batch` (and any carrying-on of a record) right after `step`, as if
    /// the process had died there. `None` clears it.
    #[doc(hidden)]
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

    // ---- submit ----

    /// Validates `input`, stores the intent, uploads it (its file name carries the idempotency
    /// key) and creates its batch (metadata `batchbeam_key`), then returns our record id. The
    /// batch runs on; poll it with [`BatchJobManager::poll_once`], [`BatchJobManager::wait`] or
    /// [`BatchJobManager::spawn_poller`].
    ///
    /// Invalid input is rejected with every line problem ([`Error::InvalidInput`]) and no record.
    /// When an upload or create fails for good the record keeps the error; when it fails for
    /// now, [`BatchJobManager::resume`] carries the record on without uploading or creating
    /// anything twice.
    pub async fn submit_batch<'a>(
        &self,
        input: impl Into<SubmitInput<'a>>,
        metadata: BTreeMap<String, String>,
    ) -> Result<String> {
        check_metadata(&metadata)?;
        let id = new_id("bb_");
        let (manifest, input_path, input_bytes) = match input.into() {
            SubmitInput::Shard(shard) => {
                let dir = self.inner.config.data_dir.join(&id);
                let path = dir.join("input.jsonl");
                let lines: Vec<String> = shard.lines().map(str::to_owned).collect();
                let p = path.clone();
                let manifest = shard.manifest().clone();
                tokio::task::spawn_blocking(move || {
                    write_lines_blocking(&dir, &p, lines.iter().map(String::as_str))
                })
                .await
                .map_err(|e| Error::Store(format!("writer task: {e}")))??;
                let bytes = scan_input(&path, manifest.endpoint).await?;
                (manifest, path, bytes)
            }
            SubmitInput::File(path) => {
                let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
                let (mut manifest, bytes) = scan_input_file(&path).await?;
                manifest.shard_name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| id.clone());
                (manifest, path, bytes)
            }
        };
        let shard = PlannedShard {
            id: id.clone(),
            manifest,
            path: input_path,
            bytes: input_bytes,
        };
        let record = self.intent_record(shard, metadata, None);
        let change = self.change(
            &record,
            Some(format!(
                "intent: {} requests",
                record.manifest.custom_ids.len()
            )),
        );
        // Held from before the record exists, so this process's poller cannot carry it on at
        // the same time (the lease only keeps other processes out).
        let guard = self.lock(&id).await;
        self.inner.store.insert(&record, &change).await?;
        self.take_lease(&id).await?;
        tracing::info!(record = %id, shard = %record.shard_name, requests = record.manifest.custom_ids.len(), "batch intent stored");
        self.failpoint(SubmitStep::AfterIntent)?;
        let mut record = record;
        let result = self.carry_submit(&mut record, true).await;
        if !matches!(result, Err(Error::Failpoint(_))) {
            self.give_back_lease(&id).await;
        }
        drop(guard);
        self.inner.wake.notify_one();
        match result {
            Ok(()) => Ok(id),
            Err(e) => Err(e),
        }
    }

    /// A new record in `intent` for `shard`, due now.
    fn intent_record(
        &self,
        shard: PlannedShard,
        metadata: BTreeMap<String, String>,
        submission_id: Option<String>,
    ) -> JobRecord {
        let now = now_ms();
        JobRecord {
            id: shard.id,
            shard_name: shard.manifest.shard_name.clone(),
            manifest: shard.manifest,
            idempotency_key: new_id("bbk_"),
            input_path: shard.path.display().to_string(),
            input_bytes: shard.bytes,
            metadata,
            input_file_id: None,
            batch_id: None,
            state: JobState::Intent,
            remote_status: None,
            request_counts: Default::default(),
            attempts: 1,
            output_file_id: None,
            error_file_id: None,
            output_path: None,
            error_path: None,
            batch_errors: Vec::new(),
            last_error: None,
            cancel_requested: false,
            created_at_ms: now,
            updated_at_ms: now,
            submitted_at_ms: None,
            next_poll_at_ms: now,
            poll_interval_ms: duration_ms(self.inner.config.poll_interval),
            submission_id,
        }
    }

    /// Submits a JSONL file, once per content: validates it (every problem, nothing stored when
    /// invalid), keys it by its endpoint and the SHA-256 of its bytes, and when that content was
    /// submitted before returns that submission's records (`attached`), carrying on any whose
    /// submit was interrupted, without creating anything. Otherwise it stores the submission and
    /// an intent per shard in one transaction (an input over `max_lines`/`max_bytes` is split
    /// into shards under `data_dir`; one within them is uploaded from where it is and must stay
    /// there until its batch is created), then uploads and creates each batch as
    /// [`BatchJobManager::submit_batch`] does. `new` submits again on purpose.
    ///
    /// A process killed at any moment leaves either nothing (before the intents) or a
    /// submission that the next `submit_file` of the same content, or
    /// [`BatchJobManager::resume`], finishes with one batch per shard.
    pub async fn submit_file(&self, path: &Path, options: SubmitOptions) -> Result<SubmitOutcome> {
        check_metadata(&options.metadata)?;
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let scan_path = path.clone();
        // Lines and bytes are checked against the shard limits below, not here.
        let unlimited = ValidationOptions {
            max_lines: u64::MAX,
            max_bytes: u64::MAX,
            ..ValidationOptions::default()
        };
        let scanned =
            tokio::task::spawn_blocking(move || scan_input_blocking(&scan_path, unlimited, true))
                .await
                .map_err(|e| Error::Store(format!("validator task: {e}")))??;
        let sha256 = scanned.sha256.clone().unwrap_or_default();
        let content_key = format!("{} sha256:{sha256}", scanned.manifest.endpoint);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "batch".to_owned());
        loop {
            let latest = self.inner.store.find_submission(&content_key).await?;
            if let Some(submission) = latest.clone()
                && !options.new
            {
                tracing::info!(submission = %submission.id, "already submitted; attaching");
                return self.attach(submission).await;
            }
            let submission = Submission {
                id: new_id("bs_"),
                content_key: content_key.clone(),
                seq: latest.map_or(0, |s| s.seq + 1),
                source_path: path.display().to_string(),
                endpoint: scanned.manifest.endpoint.as_str().to_owned(),
                sha256: sha256.clone(),
                lines: scanned.lines,
                bytes: scanned.bytes,
                created_at_ms: now_ms(),
            };
            let (shards, changes) = if scanned.lines <= options.max_lines as u64
                && scanned.bytes <= options.max_bytes
            {
                let mut manifest = scanned.manifest.clone();
                manifest.shard_name = name.clone();
                let shard = PlannedShard {
                    id: new_id("bb_"),
                    manifest,
                    path: path.clone(),
                    bytes: scanned.bytes,
                };
                (vec![shard], Vec::new())
            } else {
                let (path, name) = (path.clone(), name.clone());
                let limits = ShardLimits {
                    max_lines: options.max_lines,
                    max_bytes: options.max_bytes,
                    ..ShardLimits::default()
                };
                let data_dir = self.inner.config.data_dir.clone();
                tokio::task::spawn_blocking(move || split_blocking(&path, &name, limits, &data_dir))
                    .await
                    .map_err(|e| Error::Store(format!("splitter task: {e}")))??
            };
            let count = shards.len();
            let records: Vec<(JobRecord, StatusChange)> = shards
                .into_iter()
                .map(|shard| {
                    let record = self.intent_record(
                        shard,
                        options.metadata.clone(),
                        Some(submission.id.clone()),
                    );
                    let detail = format!(
                        "intent: {} requests (submission {}, shard {} of {count})",
                        record.manifest.custom_ids.len(),
                        submission.id,
                        record.manifest.index + 1
                    );
                    let change = self.change(&record, Some(detail));
                    (record, change)
                })
                .collect();
            // Held from before the records exist, so this process's poller cannot carry them
            // on meanwhile (the leases, stored with them, keep other processes out).
            let mut guards = Vec::new();
            for (record, _) in &records {
                guards.push(self.lock(&record.id).await);
            }
            let lease_until = now_ms() + duration_ms(self.inner.config.lease);
            let stored = self
                .inner
                .store
                .insert_submission(&submission, &records, (&self.inner.owner, lease_until))
                .await?;
            if !stored {
                // Another process stored the same content first: attach to it (or, with
                // `new`, take the next number).
                for (record, _) in &records {
                    if record.input_path != submission.source_path {
                        let _ =
                            std::fs::remove_dir_all(self.inner.config.data_dir.join(&record.id));
                    }
                }
                continue;
            }
            tracing::info!(submission = %submission.id, shards = count, "submission intent stored");
            self.failpoint(SubmitStep::AfterIntent)?;
            let mut ids = Vec::with_capacity(count);
            let mut failed = None;
            for ((record, _), guard) in records.into_iter().zip(guards) {
                ids.push(record.id.clone());
                if failed.is_some() {
                    self.give_back_lease(&record.id).await;
                    continue;
                }
                // Ours without a break since it was stored: nobody else can have sent anything.
                let fresh = now_ms() < lease_until;
                if !self.take_lease(&record.id).await? {
                    continue;
                }
                let mut record = self.inner.store.get(&record.id).await?.unwrap_or(record);
                let fresh = fresh && record.state == JobState::Intent;
                let result = self.carry_submit(&mut record, fresh).await;
                if let Err(Error::Failpoint(step)) = result {
                    return Err(Error::Failpoint(step));
                }
                self.give_back_lease(&record.id).await;
                drop(guard);
                if let Err(e) = result {
                    failed = Some(e);
                }
            }
            self.inner.wake.notify_one();
            if let Some(e) = failed {
                return Err(e);
            }
            return Ok(SubmitOutcome {
                records: self.records_of(&ids).await?,
                submission,
                attached: false,
                changes,
            });
        }
    }

    /// The records of an earlier submission of the same content, carried one step on: an
    /// interrupted submit is finished (looking up what it sent before sending anything), a
    /// running batch is polled.
    async fn attach(&self, submission: Submission) -> Result<SubmitOutcome> {
        let records = self.inner.store.submission_records(&submission.id).await?;
        let mut ids = Vec::with_capacity(records.len());
        for record in records {
            ids.push(record.id.clone());
            if record.state.is_finished() {
                continue;
            }
            let guard = self.lock(&record.id).await;
            let Some(record) = self.inner.store.get(&record.id).await? else {
                continue;
            };
            let submitting = matches!(
                record.state,
                JobState::Intent | JobState::Uploaded | JobState::WaitingResubmit
            );
            match self.step(record).await {
                Ok(_) => {}
                Err(e @ Error::Failpoint(_)) => return Err(e),
                Err(e) if submitting => return Err(e),
                // A poll that failed is kept in the record; it was submitted all the same.
                Err(e) => tracing::warn!(error = %e, "poll failed"),
            }
            drop(guard);
        }
        self.inner.wake.notify_one();
        Ok(SubmitOutcome {
            records: self.records_of(&ids).await?,
            submission,
            attached: true,
            changes: Vec::new(),
        })
    }

    async fn records_of(&self, ids: &[String]) -> Result<Vec<JobRecord>> {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.push(self.record(id).await?);
        }
        Ok(records)
    }

    /// Takes or renews this manager's lease on a record.
    async fn take_lease(&self, id: &str) -> Result<bool> {
        let now = now_ms();
        self.inner
            .store
            .try_lease(
                id,
                &self.inner.owner,
                now,
                now + duration_ms(self.inner.config.lease),
            )
            .await
    }

    async fn give_back_lease(&self, id: &str) {
        if let Err(e) = self.inner.store.release_lease(id, &self.inner.owner).await {
            tracing::warn!(record = %id, error = %e, "could not release the lease");
        }
    }

    /// Carries a record that may upload or create, under its lease. A record leased by another
    /// process is left alone.
    async fn carry_leased(&self, record: &mut JobRecord, resubmit: bool) -> Result<()> {
        if !self.take_lease(&record.id).await? {
            tracing::debug!(record = %record.id, "leased by another process; skipped");
            return Ok(());
        }
        // Another process may have carried it on before the lease was ours.
        if let Some(current) = self.inner.store.get(&record.id).await? {
            *record = current;
        }
        let result = async {
            if resubmit {
                if record.state != JobState::WaitingResubmit || record.next_poll_at_ms > now_ms() {
                    return Ok(());
                }
                record.attempts += 1;
                record.state = JobState::Uploaded;
                record.batch_id = None;
                record.remote_status = None;
                record.batch_errors.clear();
                let detail = format!("resubmitting (attempt {})", record.attempts);
                self.save(record, Some(detail)).await?;
            }
            if matches!(record.state, JobState::Intent | JobState::Uploaded) {
                self.carry_submit(record, false).await?;
            }
            Ok(())
        }
        .await;
        if !matches!(result, Err(Error::Failpoint(_))) {
            self.give_back_lease(&record.id).await;
        }
        result
    }

    fn change(&self, record: &JobRecord, detail: Option<String>) -> StatusChange {
        StatusChange {
            at_ms: now_ms(),
            state: record.state,
            remote_status: record.remote_status.as_ref().map(|s| s.as_str().to_owned()),
            detail,
        }
    }

    async fn save(&self, record: &mut JobRecord, detail: Option<String>) -> Result<()> {
        record.updated_at_ms = now_ms();
        let change = detail.map(|d| self.change(record, Some(d)));
        self.inner.store.update(record, change.as_ref()).await
    }

    /// Takes a record in `intent` or `uploaded` to `submitted`. `fresh`: this process just wrote
    /// the intent, so there is nothing to look up before the first attempt.
    async fn carry_submit(&self, record: &mut JobRecord, fresh: bool) -> Result<()> {
        let outcome = self.carry_submit_inner(record, fresh).await;
        if let Err(e) = &outcome
            && !matches!(e, Error::Failpoint(_) | Error::Busy(_))
        {
            record.last_error = Some(e.to_string());
            if ends_record(e) {
                record.state = JobState::Error;
                let detail = format!("gave up: {e}");
                let _ = self.save(record, Some(detail)).await;
            } else {
                record.next_poll_at_ms = now_ms() + record.poll_interval_ms;
                let _ = self.save(record, None).await;
            }
        }
        outcome
    }

    async fn carry_submit_inner(&self, record: &mut JobRecord, fresh: bool) -> Result<()> {
        if record.state == JobState::Intent {
            let file = self.upload_exactly_once(record, fresh).await?;
            record.input_file_id = Some(file);
            record.state = JobState::Uploaded;
            record.last_error = None;
            let detail = format!("uploaded {}", record.input_file_id.as_deref().unwrap_or(""));
            self.save(record, Some(detail)).await?;
            self.failpoint(SubmitStep::AfterUpload)?;
        }
        if record.state == JobState::Uploaded {
            // Renewed before creating: the create (bounded by the request timeout, well under
            // the lease) lands while no other process may look the batch up and create it.
            if !self.take_lease(&record.id).await? {
                return Err(Error::Busy(record.id.clone()));
            }
            let batch = self.create_exactly_once(record, fresh).await?;
            self.failpoint(SubmitStep::AfterCreateSent)?;
            record.batch_id = Some(batch.id.clone());
            record.state = JobState::Submitted;
            record.submitted_at_ms = Some(now_ms());
            record.remote_status = batch.status.clone();
            record.output_file_id = None;
            record.error_file_id = None;
            record.request_counts = Default::default();
            record.cancel_requested = false;
            record.last_error = None;
            record.poll_interval_ms = duration_ms(self.inner.config.poll_interval);
            record.next_poll_at_ms = now_ms() + record.poll_interval_ms;
            let detail = format!("created {} (attempt {})", batch.id, record.attempts);
            self.save(record, Some(detail)).await?;
            tracing::info!(record = %record.id, batch = %batch.id, attempt = record.attempts, "batch created");
            self.failpoint(SubmitStep::AfterCreateStored)?;
        }
        Ok(())
    }

    /// Uploads the record's input unless a file with its name is already there; on a retryable
    /// failure, looks again before retrying.
    async fn upload_exactly_once(&self, record: &JobRecord, fresh: bool) -> Result<String> {
        let client = &self.inner.client;
        let filename = upload_filename(&record.idempotency_key);
        let path = PathBuf::from(&record.input_path);
        let policy = client.config().retry;
        let mut look = !fresh;
        let mut tries = 0usize;
        loop {
            if look && let Some(id) = self.find_uploaded(&filename).await? {
                tracing::info!(record = %record.id, file = %id, "found the upload of an earlier run");
                return Ok(id);
            }
            match client.upload_file_once(&path, &filename, "batch").await {
                Ok(file) => return Ok(file.id),
                Err(e) if e.is_retryable() && tries < policy.max_retries => {
                    tries += 1;
                    let delay = backoff_delay(&policy, tries, &e);
                    tracing::info!(record = %record.id, "upload failed; will look it up and retry");
                    client.notify_retry(&e, tries, delay);
                    tokio::time::sleep(delay).await;
                    look = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn find_uploaded(&self, filename: &str) -> Result<Option<String>> {
        let client = &self.inner.client;
        let mut after = None;
        for _ in 0..100 {
            let page = client
                .list_files(&FileListQuery {
                    purpose: Some("batch".into()),
                    limit: Some(1000),
                    order: Some("desc".into()),
                    after: after.clone(),
                })
                .await?;
            if let Some(f) = page.data.iter().find(|f| {
                f.filename.as_deref() == Some(filename) && f.status.as_deref() != Some("error")
            }) {
                return Ok(Some(f.id.clone()));
            }
            if !page.has_more {
                break;
            }
            after = page
                .last_id
                .or_else(|| page.data.last().map(|f| f.id.clone()));
            if after.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// Creates the record's batch for its current attempt unless one carrying its key and
    /// attempt exists; on a retryable failure, looks again before retrying.
    async fn create_exactly_once(&self, record: &JobRecord, fresh: bool) -> Result<Batch> {
        let client = &self.inner.client;
        let policy = client.config().retry;
        let mut metadata = record.metadata.clone();
        metadata.insert(METADATA_KEY.into(), record.idempotency_key.clone());
        metadata.insert(METADATA_ATTEMPT.into(), record.attempts.to_string());
        metadata.insert(METADATA_RECORD.into(), record.id.clone());
        let request = CreateBatchRequest {
            input_file_id: record
                .input_file_id
                .clone()
                .ok_or_else(|| Error::InvalidState {
                    id: record.id.clone(),
                    state: record.state.to_string(),
                    reason: "no input file id".into(),
                })?,
            endpoint: record.manifest.endpoint.as_str().to_owned(),
            completion_window: "24h".into(),
            metadata: Some(metadata),
        };
        let mut look = !fresh;
        let mut tries = 0usize;
        loop {
            if look && let Some(batch) = self.find_created(record).await? {
                tracing::info!(record = %record.id, batch = %batch.id, "found the batch of an earlier run");
                return Ok(batch);
            }
            match client.create_batch_once(&request).await {
                Ok(batch) => return Ok(batch),
                Err(e) if e.is_retryable() && tries < policy.max_retries => {
                    tries += 1;
                    let delay = backoff_delay(&policy, tries, &e);
                    tracing::info!(record = %record.id, "create failed; will look it up and retry");
                    client.notify_retry(&e, tries, delay);
                    tokio::time::sleep(delay).await;
                    look = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn find_created(&self, record: &JobRecord) -> Result<Option<Batch>> {
        let client = &self.inner.client;
        let attempt = record.attempts.to_string();
        // Batches are listed newest first; one created before the record (less a margin for
        // clock skew) cannot be its batch.
        let oldest = record.created_at_ms / 1000 - 3600;
        let mut after = None;
        for _ in 0..200 {
            let page = client
                .list_batches(&BatchListQuery {
                    limit: Some(100),
                    after: after.clone(),
                })
                .await?;
            if let Some(b) = page.data.iter().find(|b| {
                b.metadata_value(METADATA_KEY) == Some(&record.idempotency_key)
                    && b.metadata_value(METADATA_ATTEMPT) == Some(&attempt)
            }) {
                return Ok(Some(b.clone()));
            }
            let too_old = page
                .data
                .last()
                .and_then(|b| b.created_at)
                .is_some_and(|t| t < oldest);
            if !page.has_more || too_old {
                break;
            }
            after = page
                .last_id
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            if after.is_none() {
                break;
            }
        }
        Ok(None)
    }

    // ---- reading records ----

    /// A record by our id or by its OpenAI batch id.
    pub async fn record(&self, id: &str) -> Result<JobRecord> {
        if let Some(r) = self.inner.store.get(id).await? {
            return Ok(r);
        }
        if let Some(r) = self.inner.store.find_by_batch_id(id).await? {
            return Ok(r);
        }
        Err(Error::NotFound(id.to_owned()))
    }

    /// Every record, newest first.
    pub async fn list(&self) -> Result<Vec<JobRecord>> {
        self.inner.store.list().await
    }

    /// A record's status history, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<StatusChange>> {
        let record = self.record(id).await?;
        self.inner.store.history(&record.id).await
    }

    /// Polls one record now, whatever its schedule, and returns it.
    pub async fn refresh(&self, id: &str) -> Result<JobRecord> {
        let record = self.record(id).await?;
        let guard = self.lock(&record.id).await;
        let record = self.inner.store.get(&record.id).await?.unwrap_or(record);
        let record = self.step(record).await?;
        drop(guard);
        Ok(record)
    }

    /// Asks OpenAI to cancel the record's batch; its partial results are collected once it is
    /// `cancelled`. A record without a batch yet is closed as an error instead.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord> {
        let record = self.record(id).await?;
        let _guard = self.lock(&record.id).await;
        let mut record = self.inner.store.get(&record.id).await?.unwrap_or(record);
        match record.state {
            JobState::Submitted => {
                let batch_id = record.batch_id.clone().unwrap_or_default();
                let batch = match self.inner.client.cancel_batch(&batch_id).await {
                    Ok(batch) => batch,
                    // It ended meanwhile: record how, and say so.
                    Err(e) if e.status() == Some(409) => {
                        let _ = self.poll_batch(&mut record).await;
                        return Err(Error::InvalidState {
                            id: record.id.clone(),
                            state: record.state.to_string(),
                            reason: format!("the batch cannot be cancelled any more: {e}"),
                        });
                    }
                    Err(e) => return Err(e),
                };
                record.cancel_requested = true;
                record.next_poll_at_ms = now_ms();
                record.poll_interval_ms = duration_ms(self.inner.config.poll_interval);
                self.apply_batch(&mut record, &batch);
                self.save(
                    &mut record,
                    Some(format!("cancel requested for {batch_id}")),
                )
                .await?;
            }
            JobState::Intent | JobState::Uploaded | JobState::WaitingResubmit => {
                if record.state == JobState::Uploaded {
                    // The create may have gone through before a crash: cancel that batch too.
                    if let Some(batch) = self.find_created(&record).await? {
                        let batch = self.inner.client.cancel_batch(&batch.id).await?;
                        record.batch_id = Some(batch.id.clone());
                        record.state = JobState::Submitted;
                        record.cancel_requested = true;
                        self.apply_batch(&mut record, &batch);
                        self.save(
                            &mut record,
                            Some(format!("cancel requested for {}", batch.id)),
                        )
                        .await?;
                        return Ok(record);
                    }
                }
                record.state = JobState::Error;
                record.last_error = Some("cancelled before a batch was created".into());
                self.save(&mut record, Some("cancelled by the user".into()))
                    .await?;
            }
            _ => {
                return Err(Error::InvalidState {
                    id: record.id.clone(),
                    state: record.state.to_string(),
                    reason: "the batch has already ended".into(),
                });
            }
        }
        Ok(record)
    }

    // ---- polling ----

    /// Carries on every unfinished record that is due: submits what is not submitted, polls
    /// batches, cancels those past `max_wait`, resubmits after `token_limit_exceeded` and
    /// downloads the results of ended batches. Errors of one record are kept in it and do not
    /// stop the others.
    pub async fn poll_once(&self) -> Result<PollReport> {
        self.poll_pass(false).await
    }

    async fn poll_pass(&self, force: bool) -> Result<PollReport> {
        let mut report = PollReport::default();
        let records = self.inner.store.unfinished().await?;
        for record in records {
            if !force && record.next_poll_at_ms > now_ms() {
                report.unfinished += 1;
                report.next_due_ms = Some(
                    report
                        .next_due_ms
                        .map_or(record.next_poll_at_ms, |d| d.min(record.next_poll_at_ms)),
                );
                continue;
            }
            let guard = self.lock(&record.id).await;
            let Some(record) = self.inner.store.get(&record.id).await? else {
                continue;
            };
            report.polled += 1;
            let record = match self.step(record.clone()).await {
                Ok(r) => r,
                Err(Error::Failpoint(step)) => return Err(Error::Failpoint(step)),
                Err(e) => {
                    tracing::warn!(record = %record.id, error = %e, "poll failed");
                    self.inner.store.get(&record.id).await?.unwrap_or(record)
                }
            };
            drop(guard);
            if record.state.is_finished() {
                self.forget_lock(&record.id);
            } else {
                report.unfinished += 1;
                report.next_due_ms = Some(
                    report
                        .next_due_ms
                        .map_or(record.next_poll_at_ms, |d| d.min(record.next_poll_at_ms)),
                );
            }
        }
        Ok(report)
    }

    /// One step for one record (the caller holds its lock).
    async fn step(&self, mut record: JobRecord) -> Result<JobRecord> {
        match record.state {
            JobState::Intent | JobState::Uploaded => {
                self.carry_leased(&mut record, false).await?;
            }
            JobState::Submitted => self.poll_batch(&mut record).await?,
            JobState::WaitingResubmit => {
                if record.next_poll_at_ms <= now_ms() {
                    self.carry_leased(&mut record, true).await?;
                }
            }
            JobState::Ended => self.collect(&mut record).await?,
            JobState::Done | JobState::Error => {}
        }
        Ok(record)
    }

    fn apply_batch(&self, record: &mut JobRecord, batch: &Batch) -> bool {
        let status = batch.status.clone();
        let changed = status != record.remote_status;
        record.remote_status = status;
        if let Some(c) = batch.request_counts {
            record.request_counts = c;
        }
        record.output_file_id = batch.output_file_id.clone().filter(|s| !s.is_empty());
        record.error_file_id = batch.error_file_id.clone().filter(|s| !s.is_empty());
        if let Some(errors) = &batch.errors {
            record.batch_errors = errors.data.clone();
        }
        changed
    }

    fn next_interval(&self, record: &JobRecord, changed: bool) -> i64 {
        let base = duration_ms(self.inner.config.poll_interval).max(1);
        let ceiling = duration_ms(self.inner.config.poll_ceiling).max(base);
        if changed {
            return base;
        }
        let grown = (record.poll_interval_ms.max(base) as f64 * 1.5) as i64;
        grown.min(ceiling)
    }

    async fn poll_batch(&self, record: &mut JobRecord) -> Result<()> {
        let batch_id = record.batch_id.clone().unwrap_or_default();
        let client = &self.inner.client;
        let deadline = record
            .submitted_at_ms
            .unwrap_or(record.created_at_ms)
            .saturating_add(duration_ms(self.inner.config.max_wait));
        let batch = match client.retrieve_batch(&batch_id).await {
            Ok(b) => b,
            Err(e) => {
                record.last_error = Some(e.to_string());
                if !ends_record(&e) {
                    record.poll_interval_ms = self.next_interval(record, false);
                    record.next_poll_at_ms = now_ms() + jitter(record.poll_interval_ms);
                    self.save(record, None).await?;
                } else {
                    record.state = JobState::Error;
                    self.save(record, Some(format!("gave up polling: {e}")))
                        .await?;
                }
                return Err(e);
            }
        };
        let changed = self.apply_batch(record, &batch);
        let status = batch.status();
        let mut detail = changed.then(|| format!("status {status}"));
        if status.is_terminal() {
            let token_limit = status == BatchStatus::Failed
                && record
                    .batch_errors
                    .iter()
                    .any(|e| e.code.as_deref() == Some("token_limit_exceeded"));
            if token_limit && record.attempts < self.inner.config.max_attempts {
                record.state = JobState::WaitingResubmit;
                record.next_poll_at_ms = now_ms() + duration_ms(self.inner.config.resubmit_delay);
                detail = Some(format!(
                    "{batch_id} failed with token_limit_exceeded; resubmitting later"
                ));
                self.save(record, detail).await?;
                return Ok(());
            }
            record.state = JobState::Ended;
            self.save(record, detail.or_else(|| Some(format!("status {status}"))))
                .await?;
            return self.collect(record).await;
        }
        if now_ms() >= deadline && !record.cancel_requested && status != BatchStatus::Cancelling {
            tracing::warn!(record = %record.id, batch = %batch_id, "max wait reached; cancelling");
            match client.cancel_batch(&batch_id).await {
                Ok(b) => {
                    self.apply_batch(record, &b);
                    record.cancel_requested = true;
                    detail = Some(format!(
                        "max wait of {:?} reached; cancel requested",
                        self.inner.config.max_wait
                    ));
                }
                // 409: it ended meanwhile; the next poll sees how.
                Err(e) if e.status() == Some(409) => {}
                Err(e) => record.last_error = Some(e.to_string()),
            }
            record.poll_interval_ms = duration_ms(self.inner.config.poll_interval);
        } else {
            record.poll_interval_ms = self.next_interval(record, changed);
        }
        record.next_poll_at_ms = now_ms() + jitter(record.poll_interval_ms);
        self.save(record, detail).await
    }

    /// Where a record's result file of `kind` (`output`, `error`) goes for its current attempt.
    fn result_path(&self, record: &JobRecord, kind: &str) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join(&record.id)
            .join(format!("attempt-{}-{kind}.jsonl", record.attempts))
    }

    /// The result files of an ended record that are not on disk: (kind, file id, requests whose
    /// lines it holds).
    fn missing_files(&self, record: &JobRecord) -> Vec<(&'static str, String, u64)> {
        let counts = record.request_counts;
        let held = [
            (
                record.output_file_id.as_ref(),
                &record.output_path,
                "output",
                counts.completed,
            ),
            (
                record.error_file_id.as_ref(),
                &record.error_path,
                "error",
                counts.total.saturating_sub(counts.completed),
            ),
        ];
        held.into_iter()
            .filter_map(|(id, path, kind, requests)| {
                let id = id?;
                let expected = self.result_path(record, kind);
                let on_disk =
                    path.as_deref() == Some(&*expected.to_string_lossy()) && expected.is_file();
                (!on_disk).then(|| (kind, id.clone(), requests))
            })
            .collect()
    }

    /// Whether a record stopped because a result file could not be downloaded: retrieving its
    /// results (or resuming) tries again.
    fn lost_download(&self, record: &JobRecord) -> bool {
        record.state == JobState::Error
            && record
                .remote_status
                .as_ref()
                .is_some_and(|s| s.is_terminal())
            && !self.missing_files(record).is_empty()
    }

    /// Downloads the output and error files of an ended record that are not on disk yet, then
    /// marks it done. A download that may work later (network, 5xx) leaves it `ended`, to be
    /// tried again; one that cannot work now (the file is gone: 404) puts it in `error` with
    /// what is missing, and retrieving its results tries again. It is never `done` with a file
    /// missing.
    async fn collect(&self, record: &mut JobRecord) -> Result<()> {
        let client = &self.inner.client;
        let mut lost = Vec::new();
        for (kind, file_id, requests) in self.missing_files(record) {
            let path = self.result_path(record, kind);
            match client.download_file(&file_id, &path).await {
                Ok(_) => {
                    let path = Some(path.display().to_string());
                    if kind == "output" {
                        record.output_path = path;
                    } else {
                        record.error_path = path;
                    }
                }
                Err(e) if !ends_record(&e) => {
                    record.last_error = Some(format!(
                        "could not download the {kind} file {file_id} yet (tried again later): {e}"
                    ));
                    record.next_poll_at_ms = now_ms() + jitter(record.poll_interval_ms.max(1));
                    self.save(record, None).await?;
                    return Err(e);
                }
                Err(e) => lost.push(format!(
                    "the {kind} file {file_id} (the lines of {requests} of {} requests) could not be downloaded: {e}",
                    record.manifest.custom_ids.len()
                )),
            }
        }
        if !lost.is_empty() {
            let reason = format!(
                "{}. Retrieving the results again retries the download; a file that has expired (OpenAI keeps result files 30 days) is gone, and its requests must be submitted again",
                lost.join("; ")
            );
            record.state = JobState::Error;
            record.last_error = Some(reason.clone());
            self.save(
                record,
                Some(format!("results incomplete: {}", lost.join("; "))),
            )
            .await?;
            tracing::warn!(record = %record.id, "result files could not be downloaded");
            return Err(Error::InvalidState {
                id: record.id.clone(),
                state: record.state.to_string(),
                reason,
            });
        }
        record.state = JobState::Done;
        record.last_error = None;
        let detail = format!(
            "results collected: {} completed, {} failed of {}",
            record.request_counts.completed,
            record.request_counts.failed,
            record.request_counts.total
        );
        self.save(record, Some(detail)).await?;
        tracing::info!(record = %record.id, "batch results collected");
        Ok(())
    }

    /// Polls until every record in `ids` is finished, sleeping until the next is due. `progress`
    /// sees the records after every pass.
    pub async fn wait(
        &self,
        ids: &[String],
        mut progress: impl FnMut(&[JobRecord]),
    ) -> Result<Vec<JobRecord>> {
        let mut records = Vec::new();
        for id in ids {
            records.push(self.record(id).await?.id);
        }
        loop {
            let report = self.poll_once().await?;
            let mut current = Vec::with_capacity(records.len());
            for id in &records {
                current.push(self.record(id).await?);
            }
            progress(&current);
            if current.iter().all(|r| r.state.is_finished()) {
                return Ok(current);
            }
            let next = current
                .iter()
                .filter(|r| !r.state.is_finished())
                .map(|r| r.next_poll_at_ms)
                .chain(report.next_due_ms)
                .min()
                .unwrap_or_else(now_ms);
            let sleep =
                (next - now_ms()).clamp(1, duration_ms(self.inner.config.poll_ceiling).max(1));
            tokio::time::sleep(Duration::from_millis(sleep as u64)).await;
        }
    }

    /// Starts the one task that polls every unfinished record (not one task per batch). It
    /// sleeps until the next record is due, or until a new one is submitted.
    pub fn spawn_poller(&self) -> PollerHandle {
        let manager = self.clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let sleep_ms = match manager.poll_once().await {
                    Ok(report) => report
                        .next_due_ms
                        .map_or(duration_ms(manager.inner.config.poll_ceiling), |d| {
                            d - now_ms()
                        }),
                    Err(e) => {
                        tracing::warn!(error = %e, "poll pass failed");
                        duration_ms(manager.inner.config.poll_interval)
                    }
                };
                let sleep_ms =
                    sleep_ms.clamp(1, duration_ms(manager.inner.config.poll_ceiling).max(1));
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = manager.inner.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                }
            }
        });
        PollerHandle { stop, task }
    }

    /// After a restart: carries every unfinished record one step on at once (finishing
    /// interrupted submits without uploading or creating anything twice, polling submitted
    /// batches, collecting ended ones) and returns their ids. Keep polling them with
    /// [`BatchJobManager::wait`] or [`BatchJobManager::spawn_poller`].
    pub async fn resume(&self) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .inner
            .store
            .unfinished()
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        tracing::info!(records = ids.len(), "resuming");
        self.poll_pass(true).await?;
        let mut ids = ids;
        // Records stopped by a result file that could not be downloaded: try it again.
        for record in self.inner.store.list().await? {
            if !self.lost_download(&record) {
                continue;
            }
            let _guard = self.lock(&record.id).await;
            let Some(mut record) = self.inner.store.get(&record.id).await? else {
                continue;
            };
            ids.push(record.id.clone());
            if let Err(e) = self.collect(&mut record).await {
                tracing::warn!(record = %record.id, error = %e, "download failed again");
            }
        }
        Ok(ids)
    }

    // ---- results ----

    /// The results of a finished record: output and error files streamed to disk (downloaded
    /// now if the poller has not yet), outcomes matched to the manifest's custom ids. `expired`
    /// and `cancelled` batches give their partial results and the unfinished ids; `failed`
    /// gives the validation errors with their lines.
    pub async fn retrieve_results(&self, id: &str) -> Result<BatchResults> {
        let record = self.record(id).await?;
        let guard = self.lock(&record.id).await;
        let mut record = self.inner.store.get(&record.id).await?.unwrap_or(record);
        if record.state == JobState::Submitted {
            record = self.step(record).await?;
        }
        if record.state == JobState::Ended || self.lost_download(&record) {
            self.collect(&mut record).await?;
        }
        drop(guard);
        if record.state != JobState::Done {
            let reason = match &record.last_error {
                Some(e) if record.state == JobState::Error => e.clone(),
                _ => format!(
                    "the batch has not ended (OpenAI status {})",
                    record.remote_status.as_ref().map_or("none", |s| s.as_str())
                ),
            };
            return Err(Error::InvalidState {
                id: record.id.clone(),
                state: record.state.to_string(),
                reason,
            });
        }
        tokio::task::spawn_blocking(move || match_results(&record))
            .await
            .map_err(|e| Error::Store(format!("reader task: {e}")))?
    }
}

/// Whether an error means the record can never go on: the request itself is wrong (400, 404,
/// 409, 413, 415, 422: a bad file, a batch or file that is gone) or the local input is missing.
/// Rate limits, server errors and credentials (401, 403: fixed by configuration, not by the
/// record) only pause it.
fn ends_record(e: &Error) -> bool {
    match e {
        Error::Api(api) => matches!(api.status, 400 | 404 | 409 | 413 | 415 | 422),
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::InvalidInput(_) | Error::InvalidState { .. } | Error::Format(_) => true,
        _ => false,
    }
}

fn jitter(ms: i64) -> i64 {
    let ms = ms.max(1);
    let spread = (ms / 5).max(1);
    ms + rand::rng().random_range(-spread..=spread).max(1 - ms)
}

fn backoff_delay(policy: &crate::RetryPolicy, tries: usize, e: &Error) -> Duration {
    if let Some(asked) = e.retry_after() {
        return asked.min(policy.max_retry_after);
    }
    let exp = policy
        .min_delay
        .saturating_mul(1u32 << tries.min(16) as u32)
        .min(policy.max_delay.max(policy.min_delay));
    let ms = exp.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    // OpenAI allows 16 pairs; three are ours.
    if metadata.len() > 13 {
        return Err(Error::Config(format!(
            "at most 13 metadata pairs may be given (3 of OpenAI's 16 are batchbeam's), got {}",
            metadata.len()
        )));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > 64 || v.chars().count() > 512 {
            return Err(Error::Config(format!(
                "metadata '{k}': keys must be 1-64 characters and values at most 512"
            )));
        }
        if k.starts_with("batchbeam_") {
            return Err(Error::Config(format!(
                "metadata '{k}': keys starting with batchbeam_ are reserved"
            )));
        }
    }
    Ok(())
}

/// Writes `lines` to `path` (creating `dir`), one per line, and syncs it: an intent that points at
/// the file is stored right after.
fn write_lines_blocking<'a>(
    dir: &Path,
    path: &Path,
    lines: impl Iterator<Item = &'a str>,
) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    for line in lines {
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| Error::io(path, e))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Validates a shard's JSONL as written, one line at a time; returns its size or every problem.
async fn scan_input(path: &Path, endpoint: Endpoint) -> Result<u64> {
    let (manifest, bytes) = scan_input_file(path).await?;
    if manifest.endpoint != endpoint {
        return Err(Error::Config(format!(
            "{}: lines target {}, not {endpoint}",
            path.display(),
            manifest.endpoint
        )));
    }
    Ok(bytes)
}

/// Validates a JSONL file and collects its custom ids, endpoint and model.
async fn scan_input_file(path: &Path) -> Result<(ShardManifest, u64)> {
    let path = path.to_owned();
    let scanned = tokio::task::spawn_blocking(move || {
        scan_input_blocking(&path, ValidationOptions::default(), false)
    })
    .await
    .map_err(|e| Error::Store(format!("validator task: {e}")))??;
    Ok((scanned.manifest, scanned.bytes))
}

/// One record to be: its id, what it holds and its input file on disk.
struct PlannedShard {
    id: String,
    manifest: ShardManifest,
    path: PathBuf,
    bytes: u64,
}

/// What a scan of an input file found.
struct Scanned {
    manifest: ShardManifest,
    bytes: u64,
    lines: u64,
    /// SHA-256 of the bytes, lowercase hex, when asked for.
    sha256: Option<String>,
}

/// Reads a JSONL file once: validates every line, collects the custom ids and, when `hash`,
/// the SHA-256 of its bytes. Invalid input is every problem found (up to 1000).
fn scan_input_blocking(path: &Path, options: ValidationOptions, hash: bool) -> Result<Scanned> {
    use sha2::Digest as _;
    #[derive(serde::Deserialize)]
    struct Id {
        custom_id: Option<String>,
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut validator = Validator::new(options);
    let mut hasher = hash.then(sha2::Sha256::new);
    let mut problems: Vec<Problem> = Vec::new();
    let mut total_problems = 0usize;
    let mut ids = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        if let Some(h) = &mut hasher {
            h.update(&line);
        }
        validator.push_line(&line, |p| {
            total_problems += 1;
            if problems.len() < MAX_PROBLEMS {
                problems.push(p);
            }
        });
        if let Ok(Id {
            custom_id: Some(id),
        }) = serde_json::from_slice::<Id>(&line)
        {
            ids.push(id);
        }
    }
    let summary = validator.finish(|p| {
        total_problems += 1;
        if problems.len() < MAX_PROBLEMS {
            problems.push(p);
        }
    });
    if total_problems > 0 || !summary.is_valid() {
        return Err(Error::InvalidInput(problems));
    }
    let endpoint = summary
        .endpoint
        .ok_or_else(|| Error::InvalidInput(Vec::new()))?;
    Ok(Scanned {
        manifest: ShardManifest {
            shard_name: String::new(),
            index: 0,
            endpoint,
            model: summary.model,
            custom_ids: ids,
        },
        bytes: summary.bytes,
        lines: summary.lines,
        sha256: hasher.map(|h| {
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }),
    })
}

/// Splits a validated input into shards at `limits` with batch-format's builder (which groups
/// lines by endpoint and model) and writes each to `data_dir/<new record id>/input.jsonl`.
/// Returns the shards and every normalisation the builder made, as `line N (custom id): change`.
fn split_blocking(
    path: &Path,
    name: &str,
    limits: ShardLimits,
    data_dir: &Path,
) -> Result<(Vec<PlannedShard>, Vec<String>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut builder = batch_format::BatchRequestBuilder::with_limits(limits);
    let mut changes = Vec::new();
    let mut n = 0u64;
    for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line.map_err(|e| Error::io(path, e))?;
        n += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let bad = |message: String| {
            Error::InvalidInput(vec![Problem {
                code: batch_format::ProblemCode::InvalidJsonLine,
                message,
                param: None,
                line: Some(n),
            }])
        };
        let request: batch_format::BatchRequestLine =
            serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        let custom_id = request.custom_id.clone();
        for change in builder.add_line(request).map_err(|e| bad(e.to_string()))? {
            changes.push(format!("line {n} ({custom_id}): {change}"));
        }
    }
    let mut planned = Vec::new();
    for shard in builder.build_batch(name)?.into_shards() {
        let id = new_id("bb_");
        let dir = data_dir.join(&id);
        let file = dir.join("input.jsonl");
        write_lines_blocking(&dir, &file, shard.lines())?;
        planned.push(PlannedShard {
            id,
            manifest: shard.manifest().clone(),
            path: file,
            bytes: shard.byte_size(),
        });
    }
    Ok((planned, changes))
}

fn match_results(record: &JobRecord) -> Result<BatchResults> {
    let mut matcher = batch_format::ResultMatcher::new(record.manifest.custom_ids.iter().cloned());
    let mut results = BatchResults {
        record_id: record.id.clone(),
        batch_id: record.batch_id.clone(),
        status: record.remote_status.clone(),
        output_path: record.output_path.as_ref().map(PathBuf::from),
        error_path: record.error_path.as_ref().map(PathBuf::from),
        succeeded: 0,
        failed: 0,
        unfinished: Vec::new(),
        missing: Vec::new(),
        duplicates: Vec::new(),
        unknown: Vec::new(),
        line_problems: Vec::new(),
        validation_errors: record.batch_errors.clone(),
    };
    if record.remote_status == Some(BatchStatus::Failed) {
        results.unfinished = record.manifest.custom_ids.clone();
        return Ok(results);
    }
    let mut never_ran = Vec::new();
    for path in [&results.output_path, &results.error_path]
        .into_iter()
        .flatten()
    {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        for item in batch_format::OutputReader::new(BufReader::new(file)) {
            match item? {
                Ok(line) => {
                    if !matcher.record(&line) {
                        continue;
                    }
                    match &line.outcome {
                        batch_format::Outcome::Succeeded { .. } => results.succeeded += 1,
                        batch_format::Outcome::HttpError { .. } => results.failed += 1,
                        _ => never_ran.push(line.custom_id.clone()),
                    }
                }
                Err(problem) => {
                    if let Some(id) = &problem.custom_id {
                        matcher.record_id(id);
                    }
                    results.line_problems.push(format!(
                        "{}:{}: {}",
                        path.display(),
                        problem.line,
                        problem.message
                    ));
                }
            }
        }
    }
    let matched = matcher.finish();
    let order: HashMap<&str, usize> = record
        .manifest
        .custom_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut unfinished: Vec<String> = never_ran;
    unfinished.extend(matched.missing.iter().cloned());
    unfinished.sort_by_key(|id| order.get(id.as_str()).copied().unwrap_or(usize::MAX));
    results.unfinished = unfinished;
    results.missing = matched.missing;
    results.duplicates = matched.duplicates;
    results.unknown = matched.unknown;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_leaves_room_for_ours() {
        let mut m: BTreeMap<String, String> =
            (0..13).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        check_metadata(&m).unwrap();
        m.insert("k13".into(), "v".into());
        assert!(check_metadata(&m).is_err());
        for (k, v) in [
            ("", "v"),
            ("batchbeam_key", "v"),
            ("k", &"x".repeat(513)[..]),
        ] {
            assert!(
                check_metadata(&BTreeMap::from([(k.to_owned(), v.to_owned())])).is_err(),
                "{k}"
            );
        }
    }

    #[test]
    fn only_errors_of_the_record_itself_end_it() {
        let api = |status| {
            Error::Api(Box::new(crate::ApiError {
                method: "GET".into(),
                path: "/batches/b".into(),
                status,
                error: None,
                body: String::new(),
                retry_after: None,
            }))
        };
        for status in [400, 404, 409] {
            assert!(ends_record(&api(status)), "{status}");
        }
        for status in [401, 403, 408, 429, 500, 503] {
            assert!(!ends_record(&api(status)), "{status}");
        }
        let missing = Error::io(Path::new("x"), std::io::ErrorKind::NotFound.into());
        assert!(ends_record(&missing));
        let busy = Error::io(Path::new("x"), std::io::ErrorKind::PermissionDenied.into());
        assert!(!ends_record(&busy));
        assert!(!ends_record(&Error::Store("locked".into())));
    }

    #[test]
    fn jitter_stays_within_a_fifth_and_above_zero() {
        for _ in 0..200 {
            let j = jitter(1000);
            assert!((800..=1200).contains(&j), "{j}");
            assert!(jitter(1) >= 1);
        }
    }
}
