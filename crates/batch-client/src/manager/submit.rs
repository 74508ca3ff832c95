//! Submitting exactly once: a shard, already-checked lines or a JSONL file become an intent
//! record first, then an upload and a batch, under a lease, each step stored as it is done.

use super::*;

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

/// A shard's JSONL whose every line was checked where it entered (batch-queue checks each
/// request at enqueue), with its manifest: [`BatchJobManager::submit_checked`] sends the bytes
/// as they are, without parsing or validating them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedShard {
    manifest: ShardManifest,
    jsonl: Vec<u8>,
}

impl CheckedShard {
    /// `jsonl` holds one line per custom id of `manifest`, in its order, each ended by `\n`,
    /// every one already validated with batch-format (the caller vouches for it).
    pub fn new(manifest: ShardManifest, jsonl: Vec<u8>) -> CheckedShard {
        CheckedShard { manifest, jsonl }
    }

    /// The shard's name, endpoint, model and custom ids.
    pub fn manifest(&self) -> &ShardManifest {
        &self.manifest
    }

    /// The JSONL, as it is uploaded.
    pub fn jsonl(&self) -> &[u8] {
        &self.jsonl
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
    /// The longest line checked, in bytes: a longer one makes the file invalid
    /// (`line_too_large`) and is read past without being held. 4 MiB by default; raise it for
    /// requests with large inline images (OpenAI takes a line as long as the file).
    pub max_line_bytes: usize,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            metadata: BTreeMap::new(),
            max_lines: 50_000,
            max_bytes: 200 * 1024 * 1024,
            new: false,
            max_line_bytes: ValidationOptions::default().max_line_bytes,
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

impl<S: JobStore> BatchJobManager<S> {
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
        let planned = match input.into() {
            SubmitInput::Shard(shard) => {
                // The builder checked each line as it was added; the validator checks the file
                // once more here, in memory, before a byte is written.
                let jsonl = checked_jsonl(shard)?;
                let manifest = shard.manifest().clone();
                self.planned_from_bytes(id, manifest, jsonl).await?
            }
            SubmitInput::File(path) => {
                let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
                let (mut manifest, bytes) = scan_input_file(&path).await?;
                manifest.shard_name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| id.clone());
                PlannedShard {
                    id,
                    manifest,
                    path,
                    bytes,
                }
            }
        };
        self.submit_planned(planned, metadata).await
    }

    /// [`BatchJobManager::submit_batch`] for lines the caller has already checked where they
    /// entered (batch-queue checks each request at enqueue): the bytes are written and uploaded
    /// as they are, without being parsed or validated again. Same exactly-once guarantees.
    pub async fn submit_checked(
        &self,
        shard: CheckedShard,
        metadata: BTreeMap<String, String>,
    ) -> Result<String> {
        check_metadata(&metadata)?;
        let planned = self
            .planned_from_bytes(new_id("bb_"), shard.manifest, shard.jsonl)
            .await?;
        self.submit_planned(planned, metadata).await
    }

    /// Writes a shard's bytes to `data_dir/<id>/input.jsonl` (synced: an intent pointing at
    /// the file is stored right after).
    pub(super) async fn planned_from_bytes(
        &self,
        id: String,
        manifest: ShardManifest,
        jsonl: Vec<u8>,
    ) -> Result<PlannedShard> {
        let dir = self.inner.config.data_dir.join(&id);
        let path = dir.join("input.jsonl");
        let bytes = jsonl.len() as u64;
        let p = path.clone();
        tokio::task::spawn_blocking(move || write_bytes_blocking(&dir, &p, &jsonl))
            .await
            .map_err(Error::task("writer"))??;
        Ok(PlannedShard {
            id,
            manifest,
            path,
            bytes,
        })
    }

    /// Stores the intent of a planned shard, then uploads and creates its batch.
    pub(super) async fn submit_planned(
        &self,
        shard: PlannedShard,
        metadata: BTreeMap<String, String>,
    ) -> Result<String> {
        let id = shard.id.clone();
        let record = self.intent_record(shard, metadata, None);
        let change = self.change(
            &record,
            Some(format!(
                "intent: {} requests",
                record.manifest.custom_ids.len()
            )),
        );
        // Held from before the record exists, so this process's poller cannot carry it on at
        // the same time; the lease stored with it keeps other processes' pollers out (a record
        // stored unleased, due now, was once carried on by another process while this one
        // created its batch too: two batches, billed twice).
        let guard = self.lock(&id).await;
        let lease_until = now_ms().saturating_add(duration_ms(self.inner.config.lease));
        self.inner
            .store
            .insert(&record, &change, (&self.inner.owner, lease_until))
            .await?;
        let Some(lease) = self.take_lease(&id).await? else {
            // Stalled past the lease since the insert: another process carries it on.
            return Err(Error::Busy(id));
        };
        tracing::info!(record = %id, shard = %record.shard_name, requests = record.manifest.custom_ids.len(), "batch intent stored");
        self.failpoint(SubmitStep::AfterIntent)?;
        let mut record = record;
        let result = self.carry_submit(&mut record, true).await;
        if !matches!(result, Err(Error::Failpoint(_))) {
            lease.give_back().await;
        }
        drop(guard);
        self.inner.wake.notify_one();
        result.map(|()| id)
    }

    /// A new record in `intent` for `shard`, due now.
    pub(super) fn intent_record(
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
            max_line_bytes: options.max_line_bytes,
            ..ValidationOptions::default()
        };
        let scanned =
            tokio::task::spawn_blocking(move || scan_input_blocking(&scan_path, unlimited, true))
                .await
                .map_err(Error::task("validator"))??;
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
            let (shards, changes) = self
                .plan_file_shards(&path, &name, &scanned, &options)
                .await?;
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
                        let dir = self.inner.config.data_dir.join(&record.id);
                        let _ = tokio::fs::remove_dir_all(dir).await;
                    }
                }
                continue;
            }
            tracing::info!(submission = %submission.id, shards = count, "submission intent stored");
            self.failpoint(SubmitStep::AfterIntent)?;
            let ids = self.carry_stored(records, guards, lease_until).await?;
            return Ok(SubmitOutcome {
                records: self.records_of(&ids).await?,
                submission,
                attached: false,
                changes,
            });
        }
    }

    /// The shards of a scanned file: the file itself when it is within the limits, else its
    /// lines split with batch-format's builder into files under `data_dir` (with every
    /// normalisation the builder made).
    async fn plan_file_shards(
        &self,
        path: &Path,
        name: &str,
        scanned: &Scanned,
        options: &SubmitOptions,
    ) -> Result<(Vec<PlannedShard>, Vec<String>)> {
        if scanned.lines <= options.max_lines as u64 && scanned.bytes <= options.max_bytes {
            let mut manifest = scanned.manifest.clone();
            manifest.shard_name = name.to_owned();
            let shard = PlannedShard {
                id: new_id("bb_"),
                manifest,
                path: path.to_owned(),
                bytes: scanned.bytes,
            };
            return Ok((vec![shard], Vec::new()));
        }
        let (path, name) = (path.to_owned(), name.to_owned());
        let limits = ShardLimits {
            max_lines: options.max_lines,
            max_bytes: options.max_bytes,
            ..ShardLimits::default()
        };
        let data_dir = self.inner.config.data_dir.clone();
        tokio::task::spawn_blocking(move || split_blocking(&path, &name, limits, &data_dir))
            .await
            .map_err(Error::task("splitter"))?
    }

    /// Uploads and creates the batch of each record of a submission just stored (under the
    /// leases stored with them); their ids, or the first error (the records after it keep
    /// their intents for `resume`).
    async fn carry_stored(
        &self,
        records: Vec<(JobRecord, StatusChange)>,
        guards: Vec<OwnedMutexGuard<()>>,
        lease_until: i64,
    ) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(records.len());
        let mut failed = None;
        for ((record, _), guard) in records.into_iter().zip(guards) {
            ids.push(record.id.clone());
            if failed.is_some() {
                self.give_back_lease(&record.id).await;
                continue;
            }
            // Ours without a break since it was stored: nobody else can have sent anything.
            let fresh = now_ms() < lease_until;
            let Some(lease) = self.take_lease(&record.id).await? else {
                continue;
            };
            let mut record = self.inner.store.get(&record.id).await?.unwrap_or(record);
            let fresh = fresh && record.state == JobState::Intent;
            let result = self.carry_submit(&mut record, fresh).await;
            if let Err(Error::Failpoint(step)) = result {
                return Err(Error::Failpoint(step));
            }
            lease.give_back().await;
            drop(guard);
            if let Err(e) = result {
                failed = Some(e);
            }
        }
        self.inner.wake.notify_one();
        match failed {
            Some(e) => Err(e),
            None => Ok(ids),
        }
    }

    /// The records of an earlier submission of the same content, carried one step on: an
    /// interrupted submit is finished (looking up what it sent before sending anything), a
    /// running batch is polled.
    pub(super) async fn attach(&self, submission: Submission) -> Result<SubmitOutcome> {
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

    pub(super) async fn records_of(&self, ids: &[String]) -> Result<Vec<JobRecord>> {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.push(self.record(id).await?);
        }
        Ok(records)
    }

    /// Carries a record that may upload or create, under its lease. A record leased by another
    /// process is left alone.
    pub(super) async fn carry_leased(&self, record: &mut JobRecord, resubmit: bool) -> Result<()> {
        let Some(lease) = self.take_lease(&record.id).await? else {
            tracing::debug!(record = %record.id, "leased by another process; skipped");
            return Ok(());
        };
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
            lease.give_back().await;
        }
        result
    }

    pub(super) fn change(&self, record: &JobRecord, detail: Option<String>) -> StatusChange {
        StatusChange {
            at_ms: now_ms(),
            state: record.state,
            remote_status: record.remote_status.as_ref().map(|s| s.as_str().to_owned()),
            detail,
        }
    }

    pub(super) async fn save(&self, record: &mut JobRecord, detail: Option<String>) -> Result<()> {
        record.updated_at_ms = now_ms();
        let change = detail.map(|d| self.change(record, Some(d)));
        self.inner.store.update(record, change.as_ref()).await
    }

    /// Takes a record in `intent` or `uploaded` to `submitted`. `fresh`: this process just wrote
    /// the intent, so there is nothing to look up before the first attempt.
    pub(super) async fn carry_submit(&self, record: &mut JobRecord, fresh: bool) -> Result<()> {
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

    pub(super) async fn carry_submit_inner(
        &self,
        record: &mut JobRecord,
        fresh: bool,
    ) -> Result<()> {
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
            // Each create is sent under a lease that outlasts it (`fence_create`).
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
}

pub(super) fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
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
