//! Settling a finished record: its outcome lines mapped back onto the requests it carried, and
//! each request's verdict (done, retry, standard API, or its error) written and handed out.

use batch_client::JobState;
use batch_format::Outcome;
use tokio::sync::mpsc;

use super::{BatchRequestQueue, Inner};
use crate::store::{Apply, Carrier, Policy, QueueStore, Settled, StoredError, Verdict, VerdictFor};
use crate::{Error, RequestId, Result, Tier};

impl BatchRequestQueue {
    /// Those of `ids` still unanswered (neither done nor failed), in one indexed read per 500
    /// ids: what a caller that put sessions aside asks, for many at once, when the records
    /// carrying them were settled. Ids the database never held are not counted.
    pub async fn unsettled_among(&self, ids: &[RequestId]) -> Result<Vec<RequestId>> {
        self.inner.store.open_among(ids).await
    }
}

impl<S: QueueStore> Inner<S> {
    /// Settles a finished record under the manager's lease on it, so that one queue at a time
    /// downloads and applies its results; a record leased by another process is left to it
    /// (and taken over once that lease expires, if it was not settled by then).
    pub(super) async fn settle_leased(&self, record_id: &str) -> Result<()> {
        if !self.manager.lease_record(record_id).await? {
            tracing::debug!(record = %record_id, "leased by another process; not settled here");
            return Ok(());
        }
        let settled = self.settle(record_id).await;
        self.manager.release_record(record_id).await;
        settled
    }

    /// Maps a finished record's outcomes back onto its requests.
    pub(super) async fn settle(&self, record_id: &str) -> Result<()> {
        let record = self.manager.record(record_id).await?;
        let batch_id = record.batch_id.clone();
        // Prior batch ids of every request the record carries (bounded by one shard).
        let mut carried = self.store.carried(record_id).await?;
        for ids in carried.values_mut() {
            ids.extend(batch_id.clone());
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
                let verdicts = chunk
                    .drain(..)
                    .filter_map(|(id, verdict)| {
                        // Not ours, or already settled: skipped.
                        let batch_ids = Some(carried.remove(&id)?);
                        Some(VerdictFor {
                            id,
                            verdict,
                            batch_ids,
                        })
                    })
                    .collect();
                let how = self.apply_to(record_id, false);
                let notify = self.store.apply_verdicts(verdicts, how).await?;
                self.send_all(notify);
            }
            reader.await.map_err(Error::task("reader"))??;
        } else if let Some(e) = &record.last_error {
            not_run.message = format!("the batch could not be carried: {e}");
        }
        // Everything the files did not answer never ran.
        let verdicts = carried
            .drain()
            .map(|(id, batch_ids)| VerdictFor {
                id,
                verdict: Verdict::Again(not_run.clone()),
                batch_ids: Some(batch_ids),
            })
            .collect();
        let how = self.apply_to(record_id, true);
        let notify = self.store.apply_verdicts(verdicts, how).await?;
        self.send_all(notify);
        // Retries go out in a later batch at once (they already waited for one): the next
        // pass flushes every group holding one.
        self.wake.notify_one();
        Ok(())
    }

    /// The retry policy of this queue.
    pub(super) fn policy(&self) -> Policy {
        Policy {
            max_retries: self.config.max_retries,
            fallback_to_standard: self.config.fallback_to_standard,
        }
    }

    /// How verdicts on the requests riding in `record_id` are written.
    fn apply_to<'a>(&self, record_id: &'a str, close_record: bool) -> Apply<'a> {
        Apply {
            carrier: Carrier::Record(record_id),
            policy: self.policy(),
            count_attempt: false,
            close_record,
        }
    }

    pub(super) fn send_all(&self, results: impl IntoIterator<Item = Settled>) {
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
