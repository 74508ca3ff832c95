//! The two calls that cost money, each sent at most once per attempt: before sending an upload
//! or a create again, the list endpoints are searched for the idempotency key.

use super::*;

impl<S: JobStore> BatchJobManager<S> {
    /// Uploads the record's input unless a file with its name is already there; on a retryable
    /// failure, looks again before retrying.
    pub(super) async fn upload_exactly_once(
        &self,
        record: &JobRecord,
        fresh: bool,
    ) -> Result<String> {
        let client = &self.inner.client;
        let filename = upload_filename(&record.idempotency_key);
        let path = PathBuf::from(&record.input_path);
        let send = || async {
            let file = client.upload_file_once(&path, &filename, "batch").await?;
            Ok(file.id)
        };
        let find = || self.find_uploaded(&filename);
        self.once_with_lookup(record, ("upload", "upload"), fresh, find, send)
            .await
    }

    /// Sends one call that costs money at most once per attempt: unless `fresh`, looks for an
    /// earlier one first; after a retryable failure, waits, then looks again before resending.
    /// `what`: the thing found and the call that failed, for the log.
    async fn once_with_lookup<T, Found, Sent>(
        &self,
        record: &JobRecord,
        what: (&str, &str),
        fresh: bool,
        find: impl Fn() -> Found,
        send: impl Fn() -> Sent,
    ) -> Result<T>
    where
        Found: Future<Output = Result<Option<T>>>,
        Sent: Future<Output = Result<T>>,
    {
        let client = &self.inner.client;
        let policy = client.config().retry;
        let mut look = !fresh;
        let mut tries = 0usize;
        loop {
            if look && let Some(found) = find().await? {
                tracing::info!(record = %record.id, "found the {} of an earlier run", what.0);
                return Ok(found);
            }
            match send().await {
                Ok(sent) => return Ok(sent),
                Err(e) if e.is_retryable() && tries < policy.max_retries => {
                    tries += 1;
                    let delay = backoff_delay(&policy, tries, &e);
                    tracing::info!(record = %record.id, "{} failed; will look it up and retry", what.1);
                    client.notify_retry(&e, tries, delay);
                    tokio::time::sleep(delay).await;
                    look = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn find_uploaded(&self, filename: &str) -> Result<Option<String>> {
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
    pub(super) async fn create_exactly_once(
        &self,
        record: &JobRecord,
        fresh: bool,
    ) -> Result<Batch> {
        let client = &self.inner.client;
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
        let send = || async {
            // Until this create has landed or been dropped, nobody else may look it up.
            self.fence_create(&record.id).await?;
            let batch = client.create_batch_once(&request).await?;
            self.unfence(&record.id).await;
            Ok(batch)
        };
        let find = || self.find_created(record);
        self.once_with_lookup(record, ("batch", "create"), fresh, find, send)
            .await
    }

    pub(super) async fn find_created(&self, record: &JobRecord) -> Result<Option<Batch>> {
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
}

pub(super) fn backoff_delay(policy: &crate::RetryPolicy, tries: usize, e: &Error) -> Duration {
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
