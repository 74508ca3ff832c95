//! Flushing a group: claim its pending requests, build them into shards and submit each through
//! `BatchJobManager`, tagged with the flush's id so a restart can find what it sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use batch_client::CheckedShard;
use batch_format::{ShardLimits, ShardManifest};
use tokio_util::task::AbortOnDropHandle;

use super::{Inner, METADATA_DISPATCH};
use crate::store::{Apply, Carrier, GroupKey, Lease, QueueStore, StoredError, Verdict, VerdictFor};
use crate::{Result, Tier, now_ms};

impl<S: QueueStore> Inner<S> {
    /// Submits every pending request of one group, `max_group_size` at a time.
    pub(super) async fn flush_group(&self, key: &GroupKey) -> Result<()> {
        let _guard = self.dispatch.lock().await;
        loop {
            let dispatch = format!("qd_{}", ulid::Ulid::new().to_string().to_lowercase());
            let claimed = self
                .store
                .claim(
                    &dispatch,
                    self.dispatch_lease(),
                    key,
                    self.config.max_group_size,
                )
                .await?;
            if claimed == 0 {
                break;
            }
            let _renewing = self.renew_while_dispatching(&dispatch);
            self.dispatch_claimed(&dispatch, key).await?;
        }
        let left = self.store.pending_count(key).await?;
        let mut groups = self.lock_groups();
        let group = groups.entry(key.clone()).or_default();
        group.pending = left;
        if group.pending == 0 {
            group.oldest = None;
        }
        Ok(())
    }

    /// Renews flush `dispatch`'s lease every third of its length until the guard is dropped,
    /// so that no other queue takes over a flush that is slow but alive.
    fn renew_while_dispatching(&self, dispatch: &str) -> AbortOnDropHandle<()> {
        let store = Arc::clone(&self.store);
        let owner = self.owner.clone();
        let dispatch = dispatch.to_owned();
        let span = self.dispatch_lease_span();
        let every = (span / 3).max(Duration::from_millis(1));
        let span_ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let now = now_ms();
                let lease = Lease {
                    owner: &owner,
                    now_ms: now,
                    until_ms: now.saturating_add(span_ms),
                };
                match store.lease_dispatch(&dispatch, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(dispatch, "another queue took this flush over");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, dispatch, "renewing a flush's lease failed")
                    }
                }
            }
        }))
    }

    /// Submits the requests claimed by flush `dispatch`: their stored bodies, checked at
    /// enqueue, go into the lines as they are (no parse, no second validation), split at
    /// `max_group_size` lines and OpenAI's byte limit.
    pub(super) async fn dispatch_claimed(&self, dispatch: &str, key: &GroupKey) -> Result<()> {
        let (endpoint, model) = (key.0, &key.1);
        let rows = self.store.claimed(dispatch).await?;
        let max_lines = self.config.max_group_size.max(1);
        let max_bytes = usize::try_from(ShardLimits::OPENAI.max_bytes).unwrap_or(usize::MAX);
        let mut shards = Vec::new();
        let (mut ids, mut jsonl) = (Vec::new(), Vec::new());
        for (id, body) in rows {
            let start = jsonl.len();
            crate::line::push_line(&mut jsonl, &id, endpoint, &body);
            if !ids.is_empty() && (ids.len() >= max_lines || jsonl.len() > max_bytes) {
                let tail = jsonl.split_off(start);
                shards.push((
                    std::mem::take(&mut ids),
                    std::mem::replace(&mut jsonl, tail),
                ));
            }
            ids.push(id);
        }
        if !ids.is_empty() {
            shards.push((ids, jsonl));
        }
        for (index, (ids, jsonl)) in shards.into_iter().enumerate() {
            let manifest = ShardManifest {
                shard_name: format!("{dispatch}-{index}"),
                index,
                endpoint,
                model: (!model.is_empty()).then(|| model.clone()),
                custom_ids: ids,
            };
            let shard = CheckedShard::new(manifest, jsonl);
            self.submit_shard(dispatch, shard).await?;
        }
        // Every shard is adopted by its record or had its failure applied: what the flush still
        // holds is only the cut-off ends of its span, with no request left in them.
        self.store.release_dispatch(dispatch).await
    }

    /// Submits one shard of flush `dispatch` and records which record carries it; when the
    /// submit fails before any record was stored, applies the failure policy to its requests.
    async fn submit_shard(&self, dispatch: &str, shard: CheckedShard) -> Result<()> {
        let ids = shard.manifest().custom_ids.clone();
        let ids = &ids;
        let metadata = BTreeMap::from([(METADATA_DISPATCH.to_owned(), dispatch.to_owned())]);
        match self.manager.submit_checked(shard, metadata).await {
            Ok(record_id) => self.store.adopt(dispatch, &record_id, ids).await?,
            Err(e) => {
                // The intent may have been stored before the failure: then the record goes
                // on (or ends in `error`) and is settled like any other.
                let found = self.manager.list().await?.into_iter().find(|r| {
                    r.metadata.get(METADATA_DISPATCH).map(String::as_str) == Some(dispatch)
                        && r.manifest.custom_ids.first() == ids.first()
                });
                match found {
                    Some(record) => self.store.adopt(dispatch, &record.id, ids).await?,
                    None => {
                        tracing::warn!(error = %e, dispatch, "batch submit failed; applying the failure policy");
                        let error = StoredError {
                            tier: Tier::Batch,
                            status: e.status(),
                            code: e.code().map(str::to_owned),
                            message: e.to_string(),
                        };
                        let verdicts = ids
                            .iter()
                            .map(|id| VerdictFor {
                                id: id.clone(),
                                verdict: Verdict::Again(error.clone()),
                                batch_ids: None,
                            })
                            .collect();
                        let how = Apply {
                            carrier: Carrier::Dispatch(dispatch),
                            policy: self.policy(),
                            count_attempt: true,
                            close_record: false,
                        };
                        let notify = self.store.apply_verdicts(verdicts, how).await?;
                        self.send_all(notify);
                    }
                }
            }
        }
        Ok(())
    }
}
