//! Polling: one pass carries every due record on (submit, poll, cancel past `max_wait`,
//! resubmit, collect); `wait`, `spawn_poller` and `resume` are made of passes.

use super::*;

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

impl<S: JobStore> BatchJobManager<S> {
    /// Carries on every unfinished record that is due: submits what is not submitted, polls
    /// batches, cancels those past `max_wait`, resubmits after `token_limit_exceeded` and
    /// downloads the results of ended batches. Errors of one record are kept in it and do not
    /// stop the others.
    pub async fn poll_once(&self) -> Result<PollReport> {
        self.poll_pass(false).await
    }

    pub(super) async fn poll_pass(&self, force: bool) -> Result<PollReport> {
        let mut report = PollReport::default();
        // Only the records due (from an index, without their rows): a pass costs what is due,
        // not what is unfinished. Each is read in full under its lease below.
        let due = self.inner.store.due((!force).then(now_ms)).await?;
        for id in due {
            let guard = self.lock(&id).await;
            // One process at a time steps a record (polls it, downloads its results): another
            // that holds it is left to it, and its lease, if it died, expires.
            let Some(lease) = self.take_lease(&id).await? else {
                tracing::debug!(record = %id, "leased by another process; not polled");
                continue;
            };
            // Read again under the lease: another process may have stepped it meanwhile.
            let current = self.inner.store.get(&id).await?;
            let Some(record) = current
                .filter(|r| !r.state.is_finished() && (force || r.next_poll_at_ms <= now_ms()))
            else {
                lease.give_back().await;
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
            lease.give_back().await;
            drop(guard);
            if record.state.is_finished() {
                self.forget_lock(&record.id);
            }
        }
        // What is left, and when the first of it is due, in one read. One still due now is
        // another process's to step (or this pass's to finish later): looked at again after a
        // poll interval, not at once.
        let summary = self.inner.store.unfinished_summary().await?;
        let now = now_ms();
        report.unfinished = summary.count;
        report.next_due_ms = summary.next_due_ms.map(|due| {
            if due <= now {
                now + duration_ms(self.inner.config.poll_interval).max(1)
            } else {
                due
            }
        });
        Ok(report)
    }

    /// One step for one record (the caller holds its lock).
    pub(super) async fn step(&self, mut record: JobRecord) -> Result<JobRecord> {
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

    pub(super) fn apply_batch(&self, record: &mut JobRecord, batch: &Batch) -> bool {
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

    pub(super) fn next_interval(&self, record: &JobRecord, changed: bool) -> i64 {
        let base = duration_ms(self.inner.config.poll_interval).max(1);
        let ceiling = duration_ms(self.inner.config.poll_ceiling).max(base);
        if changed {
            return base;
        }
        let grown = (record.poll_interval_ms.max(base) as f64 * 1.5) as i64;
        grown.min(ceiling)
    }

    pub(super) async fn poll_batch(&self, record: &mut JobRecord) -> Result<()> {
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
        let ids: Vec<String> = self.inner.store.due(None).await?;
        tracing::info!(records = ids.len(), "resuming");
        self.poll_pass(true).await?;
        let mut ids = ids;
        // Records stopped by a result file that could not be downloaded: try it again.
        for record in self.inner.store.list().await? {
            if !self.lost_download(&record).await {
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
}

/// Whether an error means the record can never go on: the request itself is wrong (400, 404,
/// 409, 413, 415, 422: a bad file, a batch or file that is gone) or the local input is missing.
/// Rate limits, server errors and credentials (401, 403: fixed by configuration, not by the
/// record) only pause it.
pub(super) fn ends_record(e: &Error) -> bool {
    match e {
        Error::Api(api) => matches!(api.status, 400 | 404 | 409 | 413 | 415 | 422),
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::InvalidInput(_) | Error::InvalidState { .. } | Error::Format(_) => true,
        _ => false,
    }
}

pub(super) fn jitter(ms: i64) -> i64 {
    let ms = ms.max(1);
    let spread = (ms / 5).max(1);
    ms + rand::rng().random_range(-spread..=spread).max(1 - ms)
}
