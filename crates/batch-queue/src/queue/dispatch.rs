//! Flushing a group: claim its pending requests, build them into shards and submit each through
//! `BatchJobManager`, tagged with the flush's id so a restart can find what it sent.

use std::collections::BTreeMap;

use batch_format::{
    BatchRequestBuilder, BatchRequestLine, Endpoint, Method, RequestBody, ShardLimits,
};
use serde_json::Value;
use sqlx::Row;

use super::settle::{Carrier, Verdict};
use super::{GroupKey, Inner, METADATA_DISPATCH};
use crate::store::{StoredError, now_ms};
use crate::{Error, Result, Tier};

impl Inner {
    /// Submits every pending request of one group, `max_group_size` at a time.
    pub(super) async fn flush_group(&self, key: &GroupKey) -> Result<()> {
        let _guard = self.dispatch.lock().await;
        let (endpoint, model) = key;
        loop {
            let dispatch = format!("qd_{}", ulid::Ulid::new().to_string().to_lowercase());
            let claimed = sqlx::query(
                "UPDATE queue_requests SET state = 'dispatching', dispatch_id = ?1, updated_at_ms = ?2 WHERE seq IN (SELECT seq FROM queue_requests WHERE state = 'pending' AND endpoint = ?3 AND model = ?4 ORDER BY seq LIMIT ?5)",
            )
            .bind(dispatch.clone())
            .bind(now_ms())
            .bind(endpoint.as_str())
            .bind(model.clone())
            .bind(i64::try_from(self.config.max_group_size).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?
            .rows_affected();
            if claimed == 0 {
                break;
            }
            self.dispatch_claimed(&dispatch, *endpoint).await?;
        }
        let left: i64 = sqlx::query(
            "SELECT COUNT(*) FROM queue_requests WHERE state = 'pending' AND endpoint = ? AND model = ?",
        )
        .bind(endpoint.as_str())
        .bind(model.clone())
        .fetch_one(&self.pool)
        .await
        .map_err(Error::store)?
        .try_get(0)
        .map_err(Error::store)?;
        let mut groups = self.lock_groups();
        let group = groups.entry(key.clone()).or_default();
        group.pending = usize::try_from(left).unwrap_or(0);
        if group.pending == 0 {
            group.oldest = None;
        }
        Ok(())
    }

    pub(super) async fn dispatch_claimed(&self, dispatch: &str, endpoint: Endpoint) -> Result<()> {
        let rows = sqlx::query(
            "SELECT id, body FROM queue_requests WHERE dispatch_id = ? AND state = 'dispatching' ORDER BY seq",
        )
        .bind(dispatch.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        let mut builder = BatchRequestBuilder::with_limits(ShardLimits {
            max_lines: self.config.max_group_size,
            ..ShardLimits::OPENAI
        });
        let mut rejected = Vec::new();
        for row in rows {
            let id: String = row.try_get(0).map_err(Error::store)?;
            let body: String = row.try_get(1).map_err(Error::store)?;
            let line = serde_json::from_str::<serde_json::Map<String, Value>>(&body)
                .map_err(|e| e.to_string())
                .and_then(|map| RequestBody::from_json(endpoint, map).map_err(|e| e.to_string()))
                .map(|body| BatchRequestLine {
                    custom_id: id.clone(),
                    method: Method::Post,
                    url: endpoint,
                    body,
                });
            let added = line.and_then(|l| builder.add_line(l).map_err(|e| e.to_string()));
            if let Err(message) = added {
                rejected.push((id, message));
            }
        }
        for (id, message) in rejected {
            let error = StoredError {
                tier: Tier::Batch,
                status: None,
                code: Some("invalid_request".into()),
                message,
            };
            self.finish_failed(&id, &error).await?;
        }
        if builder.is_empty() {
            return Ok(());
        }
        let batch = builder.build_batch(dispatch)?;
        for shard in batch.shards() {
            let metadata = BTreeMap::from([(METADATA_DISPATCH.to_owned(), dispatch.to_owned())]);
            let ids = &shard.manifest().custom_ids;
            match self.manager.submit_batch(shard, metadata).await {
                Ok(record_id) => self.adopt(dispatch, &record_id, ids).await?,
                Err(e) => {
                    // The intent may have been stored before the failure: then the record goes
                    // on (or ends in `error`) and is settled like any other.
                    let found = self.manager.list().await?.into_iter().find(|r| {
                        r.metadata.get(METADATA_DISPATCH).map(String::as_str) == Some(dispatch)
                            && r.manifest.custom_ids.first() == ids.first()
                    });
                    match found {
                        Some(record) => self.adopt(dispatch, &record.id, ids).await?,
                        None => {
                            tracing::warn!(error = %e, dispatch, "batch submit failed; applying the failure policy");
                            let error = StoredError {
                                tier: Tier::Batch,
                                status: e.status(),
                                code: e.code().map(str::to_owned),
                                message: e.to_string(),
                            };
                            let mut tx = crate::store::write_tx(&self.pool).await?;
                            let mut notify = Vec::new();
                            for id in ids {
                                sqlx::query("UPDATE queue_requests SET attempts = attempts + 1, record_id = NULL WHERE id = ?")
                                    .bind(id.clone())
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(Error::store)?;
                                if let Some(n) = self
                                    .apply_verdict(
                                        &mut tx,
                                        id,
                                        Verdict::Again(error.clone()),
                                        None,
                                        Carrier::Dispatch,
                                    )
                                    .await?
                                {
                                    notify.push(n);
                                }
                            }
                            tx.commit().await.map_err(Error::store)?;
                            self.send_all(notify);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Records that `record_id` carries `ids` (of flush `dispatch`).
    pub(super) async fn adopt(
        &self,
        dispatch: &str,
        record_id: &str,
        ids: &[String],
    ) -> Result<()> {
        let mut tx = crate::store::write_tx(&self.pool).await?;
        sqlx::query(
            "INSERT OR IGNORE INTO queue_batches (record_id, dispatch_id, state, created_at_ms) VALUES (?, ?, 'open', ?)",
        )
        .bind(record_id.to_owned())
        .bind(dispatch.to_owned())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        // One statement for the whole shard: the ids go in as a JSON array.
        sqlx::query(
            "UPDATE queue_requests SET state = 'submitted', record_id = ?, attempts = attempts + 1, updated_at_ms = ? WHERE state = 'dispatching' AND dispatch_id = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(record_id.to_owned())
        .bind(now_ms())
        .bind(dispatch.to_owned())
        .bind(serde_json::to_string(ids).map_err(Error::store)?)
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)
    }
}
