//! Reading records, refreshing one, and cancelling its batch.

use super::*;

impl<S: JobStore> BatchJobManager<S> {
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

    /// The state and counts of each record among `ids` (our ids or current batch ids), without
    /// manifests, in a few set-based reads: for a caller watching many records at once. Ids
    /// the database does not hold are left out.
    pub async fn statuses(&self, ids: &[String]) -> Result<Vec<RecordStatus>> {
        self.inner.store.statuses(ids).await
    }

    /// Takes this manager's lease on a record, unless another process holds an unexpired one:
    /// for a higher layer that acts on a finished record's results (batch-queue settles a
    /// record under it), so that one process does. `true` when this manager holds it now; it
    /// is renewed every third of `ManagerConfig::lease` until given back with
    /// [`release_record`](Self::release_record) (each `true` once).
    pub async fn lease_record(&self, id: &str) -> Result<bool> {
        match self.take_lease(id).await? {
            Some(lease) => {
                self.keep_lease(lease);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives back this manager's lease on a record (nothing if it does not hold it).
    pub async fn release_record(&self, id: &str) {
        self.give_back_lease(id).await;
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
}
