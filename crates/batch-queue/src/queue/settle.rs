//! Settling a finished record: its outcome lines mapped back onto the requests it carried, and
//! each request's verdict (done, retry, standard API, or its error) written and handed out.

use std::collections::HashMap;

use batch_client::JobState;
use batch_format::Outcome;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::mpsc;

use super::Inner;
use crate::store::{self, StoredError, now_ms};
use crate::{Completed, Error, RequestId, Result, Tier};

/// Where a request must still be for a verdict to apply to it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Carrier<'a> {
    /// Riding in this batch-client record.
    Record(&'a str),
    /// Claimed by a flush that has not recorded a submit.
    Dispatch,
}

/// How one request of a settled record ends up.
pub(super) enum Verdict {
    Done {
        body: String,
        usage: Option<batch_format::Usage>,
    },
    /// It did not run (expired, cancelled, a failed batch) or failed in a way worth another
    /// try: retry in a later batch, else the standard API, else the error.
    Again(StoredError),
    /// OpenAI refused the request itself (a 4xx other than 408/409/429): the same request
    /// would be refused again on any tier.
    Final(StoredError),
}

impl Inner {
    /// Maps a finished record's outcomes back onto its requests.
    pub(super) async fn settle(&self, record_id: &str) -> Result<()> {
        let record = self.manager.record(record_id).await?;
        let batch_id = record.batch_id.clone();
        // Prior batch ids of every request the record carries (bounded by one shard).
        let rows = sqlx::query(
            "SELECT id, batch_ids FROM queue_requests WHERE record_id = ? AND state = 'submitted'",
        )
        .bind(record_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        let mut carried: HashMap<String, Vec<String>> = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0).map_err(Error::store)?;
            let ids: String = row.try_get(1).map_err(Error::store)?;
            let mut ids: Vec<String> = serde_json::from_str(&ids).unwrap_or_default();
            ids.extend(batch_id.clone());
            carried.insert(id, ids);
        }
        let mut not_run = StoredError {
            tier: Tier::Batch,
            status: None,
            code: Some("batch_unfinished".into()),
            message: "the batch ended before running this request".into(),
        };
        if record.state == JobState::Done {
            let results = self.manager.retrieve_results(record_id).await?;
            if let Some(status) = &results.status {
                not_run.message = format!(
                    "the batch ended {} before running this request",
                    status.as_str()
                );
            }
            if let Some(first) = results.validation_errors.first() {
                not_run.code = first.code.clone().or(not_run.code);
                not_run.message = first.message.clone().unwrap_or(not_run.message);
            }
            let (tx_lines, mut rx_lines) = mpsc::channel::<(String, Verdict)>(256);
            let reader = tokio::task::spawn_blocking(move || {
                results.for_each_outcome(|line| {
                    let _ =
                        tx_lines.blocking_send((line.custom_id.clone(), verdict(&line.outcome)));
                })
            });
            let mut chunk = Vec::with_capacity(512);
            while rx_lines.recv_many(&mut chunk, 512).await > 0 {
                let mut tx = crate::store::write_tx(&self.pool).await?;
                let mut notify = Vec::new();
                for (id, v) in chunk.drain(..) {
                    let Some(batch_ids) = carried.remove(&id) else {
                        continue; // not ours, or already settled
                    };
                    if let Some(n) = self
                        .apply_verdict(
                            &mut tx,
                            &id,
                            v,
                            Some(&batch_ids),
                            Carrier::Record(record_id),
                        )
                        .await?
                    {
                        notify.push(n);
                    }
                }
                tx.commit().await.map_err(Error::store)?;
                self.send_all(notify);
            }
            reader
                .await
                .map_err(|e| Error::Store(format!("reader task: {e}")))??;
        } else if let Some(e) = &record.last_error {
            not_run.message = format!("the batch could not be carried: {e}");
        }
        // Everything the files did not answer never ran.
        let mut tx = crate::store::write_tx(&self.pool).await?;
        let mut notify = Vec::new();
        for (id, batch_ids) in carried.drain() {
            if let Some(n) = self
                .apply_verdict(
                    &mut tx,
                    &id,
                    Verdict::Again(not_run.clone()),
                    Some(&batch_ids),
                    Carrier::Record(record_id),
                )
                .await?
            {
                notify.push(n);
            }
        }
        sqlx::query("UPDATE queue_batches SET state = 'settled' WHERE record_id = ?")
            .bind(record_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)?;
        self.send_all(notify);
        // Retries go out in a later batch at once (they already waited for one): the next
        // pass flushes every group holding one.
        self.wake.notify_one();
        Ok(())
    }

    /// Writes one request's verdict; returns the id and result to hand its waiter when final.
    pub(super) async fn apply_verdict(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        id: &str,
        verdict: Verdict,
        batch_ids: Option<&[String]>,
        carrier: Carrier<'_>,
    ) -> Result<Option<(RequestId, Result<Completed>)>> {
        let now = now_ms();
        // Only a request still where this verdict found it is touched: a second settling of
        // the same record (another queue on the database) finds nothing and changes nothing.
        let row = match carrier {
            Carrier::Record(record_id) => sqlx::query(
                "SELECT attempts, batch_ids FROM queue_requests WHERE id = ? AND state = 'submitted' AND record_id = ?",
            )
            .bind(id.to_owned())
            .bind(record_id.to_owned()),
            Carrier::Dispatch => sqlx::query(
                "SELECT attempts, batch_ids FROM queue_requests WHERE id = ? AND state = 'dispatching'",
            )
            .bind(id.to_owned()),
        }
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::store)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let attempts = u32::try_from(row.try_get::<i64, _>(0).map_err(Error::store)?).unwrap_or(0);
        let batch_ids: Vec<String> = match batch_ids {
            Some(ids) => ids.to_vec(),
            None => serde_json::from_str(&row.try_get::<String, _>(1).map_err(Error::store)?)
                .unwrap_or_default(),
        };
        let ids_json = serde_json::to_string(&batch_ids).map_err(Error::store)?;
        let rid = RequestId::from(id);
        match verdict {
            Verdict::Done { body, usage } => {
                sqlx::query("UPDATE queue_requests SET state = 'done', tier = 'batch', result = ?, usage = ?, batch_ids = ?, record_id = NULL, updated_at_ms = ? WHERE id = ?")
                    .bind(body.clone())
                    .bind(usage.as_ref().map(store::usage_to_json))
                    .bind(ids_json)
                    .bind(now)
                    .bind(id.to_owned())
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::store)?;
                let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                Ok(Some((
                    rid.clone(),
                    Ok(Completed {
                        request_id: rid,
                        body,
                        usage,
                        tier: Tier::Batch,
                        attempts,
                        batch_ids,
                    }),
                )))
            }
            Verdict::Again(error)
                if attempts <= self.config.max_retries || self.config.fallback_to_standard =>
            {
                // Retries first, in a later batch; then the standard API.
                let (state, next) = if attempts <= self.config.max_retries {
                    ("pending", "request goes into a later batch")
                } else {
                    ("standard", "request falls back to the standard API")
                };
                tracing::info!(request = id, attempts, reason = %error.message, "{next}");
                sqlx::query("UPDATE queue_requests SET state = ?, record_id = NULL, dispatch_id = NULL, batch_ids = ?, error = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(state)
                    .bind(ids_json)
                    .bind(serde_json::to_string(&error).map_err(Error::store)?)
                    .bind(now)
                    .bind(id.to_owned())
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::store)?;
                Ok(None)
            }
            Verdict::Again(error) | Verdict::Final(error) => {
                sqlx::query("UPDATE queue_requests SET state = 'failed', record_id = NULL, batch_ids = ?, error = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(ids_json)
                    .bind(serde_json::to_string(&error).map_err(Error::store)?)
                    .bind(now)
                    .bind(id.to_owned())
                    .execute(&mut **tx)
                    .await
                    .map_err(Error::store)?;
                Ok(Some((rid.clone(), Err(error.into_error(rid, attempts)))))
            }
        }
    }

    pub(super) async fn finish_failed(&self, id: &str, error: &StoredError) -> Result<()> {
        let mut tx = crate::store::write_tx(&self.pool).await?;
        let n = self
            .apply_verdict(
                &mut tx,
                id,
                Verdict::Final(error.clone()),
                None,
                Carrier::Dispatch,
            )
            .await?;
        tx.commit().await.map_err(Error::store)?;
        self.send_all(n);
        Ok(())
    }

    pub(super) fn send_all(
        &self,
        results: impl IntoIterator<Item = (RequestId, Result<Completed>)>,
    ) {
        let mut waiters = self.lock_waiters();
        for (id, result) in results {
            if let Some(tx) = waiters.remove(&id) {
                let _ = tx.send(result);
            }
        }
    }
}

fn verdict(outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Succeeded { body, usage, .. } => Verdict::Done {
            body: body.get().to_owned(),
            usage: *usage,
        },
        Outcome::HttpError { status, error, .. } => {
            let stored = StoredError {
                tier: Tier::Batch,
                status: Some(*status),
                code: error.code.clone().or(error.kind.clone()),
                message: error
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {status}")),
            };
            if matches!(status, 408 | 409 | 429) || *status >= 500 {
                Verdict::Again(stored)
            } else {
                Verdict::Final(stored)
            }
        }
        Outcome::Failed { code, message } => Verdict::Again(StoredError {
            tier: Tier::Batch,
            status: None,
            code: (!code.is_empty()).then(|| code.clone()),
            message: if message.is_empty() {
                "the request did not run".into()
            } else {
                message.clone()
            },
        }),
        _ => Verdict::Again(StoredError {
            tier: Tier::Batch,
            status: None,
            code: None,
            message: "unknown outcome".into(),
        }),
    }
}
