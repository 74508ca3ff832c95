//! Results: output and error files downloaded to disk and matched to the manifest's custom ids.

use super::*;

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

impl<S: JobStore> BatchJobManager<S> {
    /// Where a record's result file of `kind` (`output`, `error`) goes for its current attempt.
    pub(super) fn result_path(&self, record: &JobRecord, kind: &str) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join(&record.id)
            .join(format!("attempt-{}-{kind}.jsonl", record.attempts))
    }

    /// The result files of an ended record that are not on disk: (kind, file id, requests whose
    /// lines it holds).
    pub(super) async fn missing_files(
        &self,
        record: &JobRecord,
    ) -> Vec<(&'static str, String, u64)> {
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
        let mut missing = Vec::new();
        for (id, path, kind, requests) in held {
            let Some(id) = id else { continue };
            let expected = self.result_path(record, kind);
            let on_disk = path.as_deref() == Some(&*expected.to_string_lossy())
                && tokio::fs::metadata(&expected)
                    .await
                    .is_ok_and(|m| m.is_file());
            if !on_disk {
                missing.push((kind, id.clone(), requests));
            }
        }
        missing
    }

    /// Whether a record stopped because a result file could not be downloaded: retrieving its
    /// results (or resuming) tries again.
    pub(super) async fn lost_download(&self, record: &JobRecord) -> bool {
        record.state == JobState::Error
            && record
                .remote_status
                .as_ref()
                .is_some_and(|s| s.is_terminal())
            && !self.missing_files(record).await.is_empty()
    }

    /// Downloads the output and error files of an ended record that are not on disk yet, then
    /// marks it done. A download that may work later (network, 5xx) leaves it `ended`, to be
    /// tried again; one that cannot work now (the file is gone: 404) puts it in `error` with
    /// what is missing, and retrieving its results tries again. It is never `done` with a file
    /// missing.
    pub(super) async fn collect(&self, record: &mut JobRecord) -> Result<()> {
        let client = &self.inner.client;
        let mut lost = Vec::new();
        for (kind, file_id, requests) in self.missing_files(record).await {
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
        if record.state == JobState::Ended || self.lost_download(&record).await {
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
            .map_err(Error::task("reader"))?
    }
}

pub(super) fn match_results(record: &JobRecord) -> Result<BatchResults> {
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
