//! All of batch-queue's SQL, written once for both backends with SQLite's `?N` (or bare `?`)
//! placeholders and turned into PostgreSQL's `$N` by batch-client's [`Dialect`]; the one
//! implementation of [`QueueStore`](super::QueueStore) is a macro instantiated per backend
//! (sqlx's executors have no common trait a generic impl could name without a page of bounds).
//! What differs between backends is each store's own: how a write transaction begins
//! (`write_tx`), the group lock that keeps a claim apart from enqueues still in flight
//! (`lock_groups`), and the row-lock suffixes `FOR_UPDATE` and `SKIP_LOCKED`.

use sqlx::{ColumnIndex, Decode, Row, Type};

pub(super) use batch_client::Dialect;
use batch_format::Endpoint;
use serde_json::Value;

use super::{Lookup, StoredError, state, usage_from_json};
use crate::{Completed, Error, RequestId, Result, Tier};

/// Ids per `IN (…)` list.
pub(super) const IN_CHUNK: usize = 500;

/// `?, ?, …` for `n` values.
pub(super) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub(super) fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// The endpoint in column `i`, `None` when it is not one batch-format knows.
pub(super) fn endpoint_of<R>(row: &R, i: usize) -> Result<Option<Endpoint>>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let endpoint: String = row.try_get(i).map_err(Error::store)?;
    Ok(Endpoint::from_url(&endpoint))
}

/// A stored request's state and, when final, its result.
pub(super) fn lookup_row<R>(id: &RequestId, row: &R) -> Result<Lookup>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let state: String = row.try_get("state").map_err(Error::store)?;
    let attempts: i64 = row.try_get("attempts").map_err(Error::store)?;
    let attempts = u32::try_from(attempts).unwrap_or(0);
    match state.as_str() {
        state::DONE => {
            let batch_ids: String = row.try_get("batch_ids").map_err(Error::store)?;
            let tier: Option<String> = row.try_get("tier").map_err(Error::store)?;
            let result: Option<String> = row.try_get("result").map_err(Error::store)?;
            let usage: Option<String> = row.try_get("usage").map_err(Error::store)?;
            Ok(Lookup::Done(Completed {
                request_id: id.clone(),
                body: result
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(Error::store)?
                    .unwrap_or(Value::Null),
                usage: usage.as_deref().and_then(usage_from_json),
                tier: tier
                    .as_deref()
                    .map_or(Ok(Tier::Batch), str::parse)
                    .map_err(Error::store)?,
                attempts,
                batch_ids: serde_json::from_str(&batch_ids).unwrap_or_default(),
            }))
        }
        state::FAILED => {
            let error: Option<String> = row.try_get("error").map_err(Error::store)?;
            let stored = error
                .as_deref()
                .and_then(|e| serde_json::from_str::<StoredError>(e).ok())
                .unwrap_or(StoredError {
                    tier: Tier::Batch,
                    status: None,
                    code: None,
                    message: "failed (no error stored)".into(),
                });
            Ok(Lookup::Failed(stored.into_error(id.clone(), attempts)))
        }
        _ => Ok(Lookup::Waiting),
    }
}

/// `impl QueueStore for $store`, whose `pool` field is a `sqlx::Pool<$db>` speaking `$dialect`
/// and which provides `write_tx`, `lock_groups`, `FOR_UPDATE` and `SKIP_LOCKED`: the one
/// implementation, instantiated for SQLite and for PostgreSQL.
macro_rules! impl_queue_store {
    ($store:ty, $db:ty, $dialect:expr) => {
        impl $store {
            fn sql(text: &str) -> ::sqlx::AssertSqlSafe<String> {
                ::sqlx::AssertSqlSafe($dialect.sql(text))
            }

            /// Those of `ids` whose state is (`IN`) or is not (`NOT IN`) final, done or
            /// failed: one indexed read per [`IN_CHUNK`](crate::store::sql::IN_CHUNK) ids.
            async fn among(
                &self,
                ids: &[$crate::RequestId],
                final_states: &str,
            ) -> $crate::Result<Vec<$crate::RequestId>> {
                let mut out = Vec::new();
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let sql = format!(
                        "SELECT id FROM queue_requests WHERE id IN ({}) AND state {final_states} ('done', 'failed')",
                        $crate::store::sql::marks(chunk.len())
                    );
                    let mut query = ::sqlx::query_scalar(Self::sql(&sql));
                    for id in chunk {
                        query = query.bind(id.as_str().to_owned());
                    }
                    let found: Vec<String> =
                        query.fetch_all(&self.pool).await.map_err($crate::Error::store)?;
                    out.extend(found.into_iter().map($crate::RequestId::from));
                }
                Ok(out)
            }

            /// The `seq` of request `id` if it is still as enqueued (`queued`).
            async fn queued_seq(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                id: &str,
            ) -> $crate::Result<Option<i64>> {
                ::sqlx::query_scalar(Self::sql(
                    "SELECT seq FROM queue_requests WHERE id = ? AND state = 'queued'",
                ))
                .bind(id.to_owned())
                .fetch_optional(&mut **tx)
                .await
                .map_err($crate::Error::store)
            }

            /// A group's last claimed `seq` (the highest span's end; 0 with none).
            async fn cursor<'e, E>(executor: E, key: &$crate::store::GroupKey) -> $crate::Result<i64>
            where
                E: ::sqlx::Executor<'e, Database = $db>,
            {
                ::sqlx::query_scalar(Self::sql(
                    "SELECT COALESCE(MAX(hi_seq), 0) FROM queue_spans WHERE endpoint = ?1 AND model = ?2",
                ))
                .bind(key.0.as_str())
                .bind(key.1.clone())
                .fetch_one(executor)
                .await
                .map_err($crate::Error::store)
            }

            /// A group's requests as enqueued past its last span (`cursor`, its last `seq`):
            /// those waiting for a flush.
            async fn fresh_count(
                &self,
                key: &$crate::store::GroupKey,
                cursor: i64,
            ) -> $crate::Result<usize> {
                let n: i64 = ::sqlx::query_scalar(Self::sql(
                    "SELECT COUNT(*) FROM queue_requests WHERE state = 'queued' AND endpoint = ? AND model = ? AND seq > ?",
                ))
                .bind(key.0.as_str())
                .bind(key.1.clone())
                .bind(cursor)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                Ok($crate::store::sql::count(n))
            }

            /// Writes one request's verdict; returns the id and result to hand its waiter when
            /// final.
            // Over 80 lines: one guarded read, then one UPDATE per outcome; kept whole so the
            // state rules read in one place.
            async fn apply_verdict(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                v: $crate::store::VerdictFor,
                how: $crate::store::Apply<'_>,
            ) -> $crate::Result<Option<$crate::store::Settled>> {
                use $crate::store::{Carrier, Verdict, usage_to_json};
                let id = v.id.as_str();
                // Only a request still where this verdict found it is touched (its row locked
                // on PostgreSQL): a second settling of the same record (another queue on the
                // database) finds nothing and changes nothing. A request as enqueued rides in
                // the span covering it; one with a state of its own names its record or flush
                // itself.
                let row = match how.carrier {
                    Carrier::Record(record_id) => ::sqlx::query(Self::sql(&format!(
                        "SELECT r.attempts, r.batch_ids, r.state FROM queue_requests r WHERE r.id = ?1 AND ((r.state = 'submitted' AND r.record_id = ?2) OR (r.state = 'queued' AND EXISTS (SELECT 1 FROM queue_spans s WHERE s.record_id = ?2 AND s.endpoint = r.endpoint AND s.model = r.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq))){}",
                        Self::FOR_UPDATE
                    )))
                    .bind(id.to_owned())
                    .bind(record_id.to_owned()),
                    Carrier::Dispatch(dispatch) => ::sqlx::query(Self::sql(&format!(
                        "SELECT r.attempts, r.batch_ids, r.state FROM queue_requests r WHERE r.id = ?1 AND ((r.state = 'dispatching' AND r.dispatch_id = ?2) OR (r.state = 'queued' AND EXISTS (SELECT 1 FROM queue_spans s WHERE s.dispatch_id = ?2 AND s.record_id IS NULL AND s.endpoint = r.endpoint AND s.model = r.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq))){}",
                        Self::FOR_UPDATE
                    )))
                    .bind(id.to_owned())
                    .bind(dispatch.to_owned()),
                }
                .fetch_optional(&mut **tx)
                .await
                .map_err($crate::Error::store)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let stored = u32::try_from(row.try_get::<i64, _>(0).map_err($crate::Error::store)?)
                    .unwrap_or(0);
                let as_enqueued =
                    row.try_get::<String, _>(2).map_err($crate::Error::store)? == "queued";
                // A request riding in a record's span has had the attempt its row does not
                // count yet; a submit that failed before any record carried its requests counts
                // one now.
                let attempts = stored
                    + u32::from(as_enqueued && matches!(how.carrier, Carrier::Record(_)))
                    + u32::from(how.count_attempt);
                let batch_ids: Vec<String> = match v.batch_ids {
                    Some(ids) => ids,
                    None => serde_json::from_str(
                        &row.try_get::<String, _>(1).map_err($crate::Error::store)?,
                    )
                    .unwrap_or_default(),
                };
                let ids_json = serde_json::to_string(&batch_ids).map_err($crate::Error::store)?;
                let rid = $crate::RequestId::from(id);
                let now = $crate::now_ms();
                let policy = how.policy;
                match v.verdict {
                    Verdict::Done { body, usage } => {
                        ::sqlx::query(Self::sql("UPDATE queue_requests SET state = 'done', tier = 'batch', attempts = ?, result = ?, usage = ?, batch_ids = ?, record_id = NULL, updated_at_ms = ? WHERE id = ?"))
                            .bind(i64::from(attempts))
                            .bind(body.as_str())
                            .bind(usage.as_ref().map(usage_to_json))
                            .bind(ids_json)
                            .bind(now)
                            .bind(id.to_owned())
                            .execute(&mut **tx)
                            .await
                            .map_err($crate::Error::store)?;
                        let body = serde_json::from_str(&body).unwrap_or(::serde_json::Value::Null);
                        let done = $crate::Completed {
                            request_id: rid.clone(),
                            body,
                            usage,
                            tier: $crate::Tier::Batch,
                            attempts,
                            batch_ids,
                        };
                        Ok(Some((rid, Ok(done))))
                    }
                    Verdict::Again(error)
                        if attempts <= policy.max_retries || policy.fallback_to_standard =>
                    {
                        // Retries first, in a later batch; then the standard API.
                        let (state, next) = if attempts <= policy.max_retries {
                            ("pending", "request goes into a later batch")
                        } else {
                            ("standard", "request falls back to the standard API")
                        };
                        ::tracing::info!(request = id, attempts, reason = %error.message, "{next}");
                        ::sqlx::query(Self::sql("UPDATE queue_requests SET state = ?, attempts = ?, record_id = NULL, dispatch_id = NULL, batch_ids = ?, error = ?, lease_owner = NULL, lease_until_ms = 0, updated_at_ms = ? WHERE id = ?"))
                            .bind(state)
                            .bind(i64::from(attempts))
                            .bind(ids_json)
                            .bind(serde_json::to_string(&error).map_err($crate::Error::store)?)
                            .bind(now)
                            .bind(id.to_owned())
                            .execute(&mut **tx)
                            .await
                            .map_err($crate::Error::store)?;
                        Ok(None)
                    }
                    Verdict::Again(error) | Verdict::Final(error) => {
                        ::sqlx::query(Self::sql("UPDATE queue_requests SET state = 'failed', attempts = ?, record_id = NULL, batch_ids = ?, error = ?, updated_at_ms = ? WHERE id = ?"))
                            .bind(i64::from(attempts))
                            .bind(ids_json)
                            .bind(serde_json::to_string(&error).map_err($crate::Error::store)?)
                            .bind(now)
                            .bind(id.to_owned())
                            .execute(&mut **tx)
                            .await
                            .map_err($crate::Error::store)?;
                        Ok(Some((rid.clone(), Err(error.into_error(rid, attempts)))))
                    }
                }
            }
        }

        impl $crate::store::QueueStore for $store {
            async fn insert_pending(&self, rows: &[$crate::store::NewRequest]) -> $crate::Result<()> {
                // Many rows per statement: each statement is a round trip.
                const ROWS_PER_STATEMENT: usize = 128;
                let now = $crate::now_ms();
                let mut tx = self.write_tx().await?;
                // Shared: enqueues never wait for each other, only for a claim of their group.
                let mut keys: Vec<$crate::store::GroupKey> =
                    rows.iter().map(|r| (r.endpoint, r.model.clone())).collect();
                keys.sort();
                keys.dedup();
                Self::lock_groups(&mut tx, &keys, true).await?;
                for rows in rows.chunks(ROWS_PER_STATEMENT) {
                    let values = vec!["(?, ?, ?, ?, ?, 'queued', ?, ?)"; rows.len()].join(", ");
                    let sql = format!(
                        "INSERT INTO queue_requests (id, operation, endpoint, model, body, state, created_at_ms, updated_at_ms) VALUES {values}"
                    );
                    let mut query = ::sqlx::query(Self::sql(&sql));
                    for r in rows {
                        query = query
                            .bind(r.id.as_str())
                            .bind(r.operation.as_str())
                            .bind(r.endpoint.as_str())
                            .bind(r.model.as_str())
                            .bind(r.body.as_str())
                            .bind(now)
                            .bind(now);
                    }
                    query.execute(&mut *tx).await.map_err($crate::Error::store)?;
                }
                tx.commit().await.map_err($crate::Error::store)
            }

            async fn stored_body(&self, id: &$crate::RequestId) -> $crate::Result<Option<String>> {
                ::sqlx::query_scalar(Self::sql("SELECT body FROM queue_requests WHERE id = ?"))
                    .bind(id.as_str().to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::Error::store)
            }

            async fn count_known(&self, ids: &[$crate::RequestId]) -> $crate::Result<usize> {
                let mut known = 0;
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let sql = format!(
                        "SELECT COUNT(*) FROM queue_requests WHERE id IN ({})",
                        $crate::store::sql::marks(chunk.len())
                    );
                    let mut query = ::sqlx::query_scalar(Self::sql(&sql));
                    for id in chunk {
                        query = query.bind(id.as_str().to_owned());
                    }
                    let n: i64 = query.fetch_one(&self.pool).await.map_err($crate::Error::store)?;
                    known += $crate::store::sql::count(n);
                }
                Ok(known)
            }

            async fn settled_among(
                &self,
                ids: &[$crate::RequestId],
            ) -> $crate::Result<Vec<$crate::RequestId>> {
                self.among(ids, "IN").await
            }

            async fn open_among(
                &self,
                ids: &[$crate::RequestId],
            ) -> $crate::Result<Vec<$crate::RequestId>> {
                self.among(ids, "NOT IN").await
            }

            async fn lookup(&self, id: &$crate::RequestId) -> $crate::Result<$crate::store::Lookup> {
                let row = ::sqlx::query(Self::sql(
                    "SELECT state, attempts, batch_ids, tier, result, usage, error FROM queue_requests WHERE id = ?",
                ))
                .bind(id.as_str().to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                match row {
                    None => Ok($crate::store::Lookup::Unknown),
                    Some(row) => $crate::store::sql::lookup_row(id, &row),
                }
            }

            async fn pending_counts(
                &self,
            ) -> $crate::Result<Vec<($crate::store::GroupKey, usize)>> {
                use $crate::store::sql::{count, endpoint_of};
                let mut counts: ::std::collections::HashMap<$crate::store::GroupKey, usize> =
                    ::std::collections::HashMap::new();
                let own = ::sqlx::query(Self::sql(
                    "SELECT endpoint, model, COUNT(*) FROM queue_requests WHERE state = 'pending' GROUP BY endpoint, model",
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                for row in own {
                    let model: String = row.try_get(1).map_err($crate::Error::store)?;
                    let n: i64 = row.try_get(2).map_err($crate::Error::store)?;
                    if let Some(endpoint) = endpoint_of(&row, 0)? {
                        *counts.entry((endpoint, model)).or_default() += count(n);
                    }
                }
                // Requests as enqueued: a group has some waiting when its newest is past its
                // last span (an index-only scan), then they are counted past that span.
                let newest = ::sqlx::query(Self::sql(
                    "SELECT r.endpoint, r.model, MAX(r.seq), (SELECT COALESCE(MAX(s.hi_seq), 0) FROM queue_spans s WHERE s.endpoint = r.endpoint AND s.model = r.model) FROM queue_requests r WHERE r.state = 'queued' GROUP BY r.endpoint, r.model",
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                for row in newest {
                    let model: String = row.try_get(1).map_err($crate::Error::store)?;
                    let newest: i64 = row.try_get(2).map_err($crate::Error::store)?;
                    let cursor: i64 = row.try_get(3).map_err($crate::Error::store)?;
                    let Some(endpoint) = endpoint_of(&row, 0)? else {
                        continue;
                    };
                    if newest > cursor {
                        let key = (endpoint, model);
                        let n = self.fresh_count(&key, cursor).await?;
                        *counts.entry(key).or_default() += n;
                    }
                }
                Ok(counts.into_iter().collect())
            }

            async fn pending_count(&self, key: &$crate::store::GroupKey) -> $crate::Result<usize> {
                let own: i64 = ::sqlx::query_scalar(Self::sql(
                    "SELECT COUNT(*) FROM queue_requests WHERE state = 'pending' AND endpoint = ?1 AND model = ?2",
                ))
                .bind(key.0.as_str())
                .bind(key.1.clone())
                .fetch_one(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                let cursor = Self::cursor(&self.pool, key).await?;
                Ok($crate::store::sql::count(own) + self.fresh_count(key, cursor).await?)
            }

            async fn pending_groups(
                &self,
                retries_only: bool,
            ) -> $crate::Result<Vec<$crate::store::GroupKey>> {
                if !retries_only {
                    return Ok(self
                        .pending_counts()
                        .await?
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(key, _)| key)
                        .collect());
                }
                // A retry always has a state of its own (requests as enqueued have had no
                // attempt).
                let rows = ::sqlx::query(Self::sql(
                    "SELECT DISTINCT endpoint, model FROM queue_requests WHERE state = 'pending' AND attempts >= 1",
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                let mut keys = Vec::with_capacity(rows.len());
                for row in rows {
                    let model: String = row.try_get(1).map_err($crate::Error::store)?;
                    if let Some(endpoint) = $crate::store::sql::endpoint_of(&row, 0)? {
                        keys.push((endpoint, model));
                    }
                }
                Ok(keys)
            }

            async fn claim(
                &self,
                dispatch: &str,
                lease: $crate::store::Lease<'_>,
                key: &$crate::store::GroupKey,
                limit: usize,
            ) -> $crate::Result<u64> {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let now = $crate::now_ms();
                // One write transaction, exclusive of every other claim of the group and of
                // every enqueue into it still in flight: two flushes never claim one request,
                // and no request is passed over because its `seq` was handed out before a
                // commit that came after the claim.
                let mut tx = self.write_tx().await?;
                Self::lock_groups(&mut tx, ::std::slice::from_ref(key), false).await?;
                // Requests with a state of their own (retries, put back), one row each, oldest
                // first.
                let own = ::sqlx::query(Self::sql(
                    "UPDATE queue_requests SET state = 'dispatching', dispatch_id = ?1, updated_at_ms = ?2 WHERE seq IN (SELECT seq FROM queue_requests WHERE state = 'pending' AND endpoint = ?3 AND model = ?4 ORDER BY seq LIMIT ?5)",
                ))
                .bind(dispatch.to_owned())
                .bind(now)
                .bind(key.0.as_str())
                .bind(key.1.clone())
                .bind(limit)
                .execute(&mut *tx)
                .await
                .map_err($crate::Error::store)?
                .rows_affected();
                let rest = limit.saturating_sub(i64::try_from(own).unwrap_or(i64::MAX));
                let mut fresh = 0;
                if rest > 0 {
                    // Requests as enqueued, past the group's last span, oldest first: one span.
                    // Every request of the group from the span's first `seq` to its last is in
                    // it (seqs only grow, and the group lock waits for enqueues in flight).
                    let cursor = Self::cursor(&mut *tx, key).await?;
                    let row = ::sqlx::query(Self::sql(
                        "SELECT COUNT(*), MAX(seq) FROM (SELECT seq FROM queue_requests WHERE state = 'queued' AND endpoint = ?1 AND model = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4) AS fresh",
                    ))
                    .bind(key.0.as_str())
                    .bind(key.1.clone())
                    .bind(cursor)
                    .bind(rest)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                    let n: i64 = row.try_get(0).map_err($crate::Error::store)?;
                    let hi: Option<i64> = row.try_get(1).map_err($crate::Error::store)?;
                    if let (Some(hi), true) = (hi, n > 0) {
                        ::sqlx::query(Self::sql(
                            "INSERT INTO queue_spans (dispatch_id, endpoint, model, lo_seq, hi_seq, record_id, created_at_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                        ))
                        .bind(dispatch.to_owned())
                        .bind(key.0.as_str())
                        .bind(key.1.clone())
                        .bind(cursor + 1)
                        .bind(hi)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::Error::store)?;
                        fresh = u64::try_from(n).unwrap_or(0);
                    }
                }
                if own + fresh > 0 {
                    ::sqlx::query(Self::sql(
                        "INSERT INTO queue_dispatches (dispatch_id, owner, lease_until_ms) VALUES (?, ?, ?)",
                    ))
                    .bind(dispatch.to_owned())
                    .bind(lease.owner.to_owned())
                    .bind(lease.until_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                }
                tx.commit().await.map_err($crate::Error::store)?;
                Ok(own + fresh)
            }

            async fn claimed(&self, dispatch: &str) -> $crate::Result<Vec<(String, String)>> {
                // Rows of their own first, then the span's: each shard cut from this order
                // holds a contiguous run of the span (what `adopt` records).
                let mut rows: Vec<(String, String)> = ::sqlx::query_as(Self::sql(
                    "SELECT id, body FROM queue_requests WHERE dispatch_id = ? AND state = 'dispatching' ORDER BY seq",
                ))
                .bind(dispatch.to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                let spans: Vec<(String, String, i64, i64)> = ::sqlx::query_as(Self::sql(
                    "SELECT endpoint, model, lo_seq, hi_seq FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL ORDER BY lo_seq",
                ))
                .bind(dispatch.to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                for (endpoint, model, lo, hi) in spans {
                    // In the group index's order: no sort.
                    rows.extend(
                        ::sqlx::query_as::<_, (String, String)>(Self::sql(
                            "SELECT id, body FROM queue_requests WHERE state = 'queued' AND endpoint = ? AND model = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                        ))
                        .bind(endpoint)
                        .bind(model)
                        .bind(lo)
                        .bind(hi)
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::Error::store)?,
                    );
                }
                Ok(rows)
            }

            // Over 80 lines: the span is cut in one transaction, read and writes together.
            async fn adopt(&self, dispatch: &str, record_id: &str, ids: &[String]) -> $crate::Result<()> {
                let now = $crate::now_ms();
                let mut tx = self.write_tx().await?;
                ::sqlx::query(Self::sql(
                    "INSERT INTO queue_batches (record_id, dispatch_id, state, created_at_ms) VALUES (?, ?, 'open', ?) ON CONFLICT DO NOTHING",
                ))
                .bind(record_id.to_owned())
                .bind(dispatch.to_owned())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::Error::store)?;
                // Rows of their own, when the flush claimed any.
                let own: i64 = ::sqlx::query_scalar(Self::sql(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM queue_requests WHERE dispatch_id = ? AND state = 'dispatching' LIMIT 1) AS own",
                ))
                .bind(dispatch.to_owned())
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::Error::store)?;
                if own != 0 {
                    for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                        let sql = format!(
                            "UPDATE queue_requests SET state = 'submitted', record_id = ?, attempts = attempts + 1, updated_at_ms = ? WHERE dispatch_id = ? AND state = 'dispatching' AND id IN ({})",
                            $crate::store::sql::marks(chunk.len())
                        );
                        let mut query = ::sqlx::query(Self::sql(&sql))
                            .bind(record_id.to_owned())
                            .bind(now)
                            .bind(dispatch.to_owned());
                        for id in chunk {
                            query = query.bind(id.as_str());
                        }
                        query.execute(&mut *tx).await.map_err($crate::Error::store)?;
                    }
                }
                // The span's part: the shard's requests as enqueued are a contiguous run of the
                // span, which is cut there and that run given the record (one or three span
                // rows written). They are the shard's last lines (`claimed` puts rows of their
                // own first), so the run is found with a few lookups by id, not one per line.
                let last = match ids.last() {
                    Some(id) => Self::queued_seq(&mut tx, id).await?,
                    None => None,
                };
                let mut first = last;
                if last.is_some() {
                    let (mut lo, mut hi) = (0, ids.len() - 1);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        match Self::queued_seq(&mut tx, &ids[mid]).await? {
                            Some(seq) => {
                                hi = mid;
                                first = Some(seq);
                            }
                            None => lo = mid + 1,
                        }
                    }
                }
                if let (Some(first), Some(last)) = (first, last) {
                    let span: Option<(i64, String, String, i64, i64)> = ::sqlx::query_as(Self::sql(&format!(
                        "SELECT span, endpoint, model, lo_seq, hi_seq FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL AND lo_seq <= ? AND hi_seq >= ?{}",
                        Self::FOR_UPDATE
                    )))
                    .bind(dispatch.to_owned())
                    .bind(first)
                    .bind(last)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                    if let Some((span, endpoint, model, lo, hi)) = span {
                        ::sqlx::query(Self::sql(
                            "UPDATE queue_spans SET lo_seq = ?, hi_seq = ?, record_id = ? WHERE span = ?",
                        ))
                        .bind(first)
                        .bind(last)
                        .bind(record_id.to_owned())
                        .bind(span)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::Error::store)?;
                        // What is left of the span on either side stays claimed by the flush.
                        for (lo, hi) in [(lo, first - 1), (last + 1, hi)] {
                            if lo <= hi {
                                ::sqlx::query(Self::sql(
                                    "INSERT INTO queue_spans (dispatch_id, endpoint, model, lo_seq, hi_seq, record_id, created_at_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                                ))
                                .bind(dispatch.to_owned())
                                .bind(endpoint.as_str())
                                .bind(model.as_str())
                                .bind(lo)
                                .bind(hi)
                                .bind(now)
                                .execute(&mut *tx)
                                .await
                                .map_err($crate::Error::store)?;
                            }
                        }
                    }
                }
                tx.commit().await.map_err($crate::Error::store)
            }

            async fn interrupted_dispatches(&self, now_ms: i64) -> $crate::Result<Vec<String>> {
                // A flush's lease renewed while it submits: only a flush whose owner stopped
                // renewing (or one from before leases) is interrupted.
                ::sqlx::query_scalar(Self::sql(
                    "SELECT d FROM (SELECT dispatch_id AS d FROM queue_requests WHERE state = 'dispatching' AND dispatch_id IS NOT NULL UNION SELECT dispatch_id FROM queue_spans WHERE record_id IS NULL) AS held WHERE NOT EXISTS (SELECT 1 FROM queue_dispatches q WHERE q.dispatch_id = held.d AND q.lease_until_ms >= ?1)",
                ))
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)
            }

            async fn lease_dispatch(
                &self,
                dispatch: &str,
                lease: $crate::store::Lease<'_>,
            ) -> $crate::Result<bool> {
                let done = ::sqlx::query(Self::sql(
                    "INSERT INTO queue_dispatches (dispatch_id, owner, lease_until_ms) VALUES (?1, ?2, ?3) ON CONFLICT (dispatch_id) DO UPDATE SET owner = ?2, lease_until_ms = ?3 WHERE queue_dispatches.owner = ?2 OR queue_dispatches.lease_until_ms < ?4",
                ))
                .bind(dispatch.to_owned())
                .bind(lease.owner.to_owned())
                .bind(lease.until_ms)
                .bind(lease.now_ms)
                .execute(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_dispatch(&self, dispatch: &str) -> $crate::Result<()> {
                let now = $crate::now_ms();
                let mut tx = self.write_tx().await?;
                ::sqlx::query(Self::sql(
                    "UPDATE queue_requests SET state = 'pending', dispatch_id = NULL, updated_at_ms = ? WHERE state = 'dispatching' AND dispatch_id = ?",
                ))
                .bind(now)
                .bind(dispatch.to_owned())
                .execute(&mut *tx)
                .await
                .map_err($crate::Error::store)?;
                // The flush's spans without a record: their requests get a state of their own
                // (`pending`) before the span goes, so none is left uncovered behind a later
                // span.
                let spans: Vec<(String, String, i64, i64)> = ::sqlx::query_as(Self::sql(
                    "SELECT endpoint, model, lo_seq, hi_seq FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL",
                ))
                .bind(dispatch.to_owned())
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::Error::store)?;
                for (endpoint, model, lo, hi) in spans {
                    ::sqlx::query(Self::sql(
                        "UPDATE queue_requests SET state = 'pending', updated_at_ms = ? WHERE state = 'queued' AND endpoint = ? AND model = ? AND seq BETWEEN ? AND ?",
                    ))
                    .bind(now)
                    .bind(endpoint)
                    .bind(model)
                    .bind(lo)
                    .bind(hi)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                }
                for sql in [
                    "DELETE FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL",
                    "DELETE FROM queue_dispatches WHERE dispatch_id = ?",
                ] {
                    ::sqlx::query(Self::sql(sql))
                        .bind(dispatch.to_owned())
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::Error::store)?;
                }
                tx.commit().await.map_err($crate::Error::store)
            }

            async fn unfinished(&self) -> $crate::Result<usize> {
                let n: i64 = ::sqlx::query_scalar(Self::sql(
                    "SELECT COUNT(*) FROM queue_requests WHERE state NOT IN ('done', 'failed')",
                ))
                .fetch_one(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                Ok($crate::store::sql::count(n))
            }

            async fn in_flight(
                &self,
                ids: &[$crate::RequestId],
            ) -> $crate::Result<Vec<($crate::RequestId, Option<String>)>> {
                let mut out = Vec::new();
                for chunk in ids.chunks($crate::store::sql::IN_CHUNK) {
                    let sql = format!(
                        "SELECT r.id, CASE WHEN r.state = 'queued' THEN (SELECT s.record_id FROM queue_spans s WHERE s.endpoint = r.endpoint AND s.model = r.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq) ELSE r.record_id END AS record_id FROM queue_requests r WHERE r.id IN ({}) AND r.state NOT IN ('done', 'failed') ORDER BY r.seq",
                        $crate::store::sql::marks(chunk.len())
                    );
                    let mut query = ::sqlx::query_as::<_, (String, Option<String>)>(Self::sql(&sql));
                    for id in chunk {
                        query = query.bind(id.as_str().to_owned());
                    }
                    for (id, record) in query.fetch_all(&self.pool).await.map_err($crate::Error::store)? {
                        out.push(($crate::RequestId::from(id), record));
                    }
                }
                Ok(out)
            }

            async fn open_records(&self) -> $crate::Result<Vec<String>> {
                ::sqlx::query_scalar(Self::sql(
                    "SELECT record_id FROM queue_batches WHERE state = 'open'",
                ))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)
            }

            async fn carried(
                &self,
                record_id: &str,
            ) -> $crate::Result<::std::collections::HashMap<String, Vec<String>>> {
                let rows: Vec<(String, String)> = ::sqlx::query_as(Self::sql(
                    "SELECT id, batch_ids FROM queue_requests WHERE record_id = ?1 AND state = 'submitted' UNION ALL SELECT r.id, r.batch_ids FROM queue_spans s JOIN queue_requests r ON r.state = 'queued' AND r.endpoint = s.endpoint AND r.model = s.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq WHERE s.record_id = ?1",
                ))
                .bind(record_id.to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, ids)| (id, serde_json::from_str(&ids).unwrap_or_default()))
                    .collect())
            }

            async fn apply_verdicts(
                &self,
                verdicts: Vec<$crate::store::VerdictFor>,
                how: $crate::store::Apply<'_>,
            ) -> $crate::Result<Vec<$crate::store::Settled>> {
                let mut tx = self.write_tx().await?;
                let mut settled = Vec::new();
                for v in verdicts {
                    settled.extend(Self::apply_verdict(&mut tx, v, how).await?);
                }
                if let (true, $crate::store::Carrier::Record(record_id)) =
                    (how.close_record, how.carrier)
                {
                    // Every request the record carried has a state of its own now.
                    for sql in [
                        "UPDATE queue_batches SET state = 'settled' WHERE record_id = ?",
                        "DELETE FROM queue_spans WHERE record_id = ?",
                    ] {
                        ::sqlx::query(Self::sql(sql))
                            .bind(record_id.to_owned())
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::Error::store)?;
                    }
                    // Whoever waits on this record's requests, in any process, looks now.
                    Self::announce(&mut tx, record_id).await?;
                }
                tx.commit().await.map_err($crate::Error::store)?;
                Ok(settled)
            }

            async fn standard_waiting(
                &self,
                lease: $crate::store::Lease<'_>,
                limit: usize,
            ) -> $crate::Result<Vec<(String, String, String)>> {
                // Most passes find none: a read first, so that they take no write lock.
                let any: Option<i64> = ::sqlx::query_scalar(Self::sql(
                    "SELECT seq FROM queue_requests WHERE state = 'standard' LIMIT 1",
                ))
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::Error::store)?;
                if any.is_none() {
                    return Ok(Vec::new());
                }
                // Claimed before they are sent: one instance calls the standard API per
                // request, another only once this claim has expired.
                let mut tx = self.write_tx().await?;
                let sql = format!(
                    "UPDATE queue_requests SET lease_owner = ?1, lease_until_ms = ?2 WHERE seq IN (SELECT seq FROM queue_requests WHERE state = 'standard' AND (lease_owner IS NULL OR lease_until_ms < ?3) ORDER BY seq LIMIT ?4{}) RETURNING id, endpoint, body",
                    Self::SKIP_LOCKED
                );
                let rows = ::sqlx::query_as(Self::sql(&sql))
                    .bind(lease.owner.to_owned())
                    .bind(lease.until_ms)
                    .bind(lease.now_ms)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::Error::store)?;
                tx.commit().await.map_err($crate::Error::store)?;
                Ok(rows)
            }

            async fn finish_standard(
                &self,
                id: &str,
                outcome: ::std::result::Result<::serde_json::Value, $crate::store::StoredError>,
            ) -> $crate::Result<Option<$crate::store::Settled>> {
                use $crate::store::{usage_from_body, usage_to_json};
                let mut tx = self.write_tx().await?;
                let row: Option<(i64, String)> = ::sqlx::query_as(Self::sql(&format!(
                    "SELECT attempts, batch_ids FROM queue_requests WHERE id = ? AND state = 'standard'{}",
                    Self::FOR_UPDATE
                )))
                .bind(id.to_owned())
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::Error::store)?;
                let Some((attempts, batch_ids)) = row else {
                    return Ok(None);
                };
                let attempts = u32::try_from(attempts).unwrap_or(0) + 1;
                let batch_ids: Vec<String> = serde_json::from_str(&batch_ids).unwrap_or_default();
                let rid = $crate::RequestId::from(id);
                let now = $crate::now_ms();
                let result = match outcome {
                    Ok(body) => {
                        let usage = usage_from_body(&body);
                        ::sqlx::query(Self::sql("UPDATE queue_requests SET state = 'done', tier = 'standard', attempts = ?, result = ?, usage = ?, updated_at_ms = ? WHERE id = ?"))
                            .bind(i64::from(attempts))
                            .bind(body.to_string())
                            .bind(usage.as_ref().map(usage_to_json))
                            .bind(now)
                            .bind(id.to_owned())
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::Error::store)?;
                        Ok($crate::Completed {
                            request_id: rid.clone(),
                            body,
                            usage,
                            tier: $crate::Tier::Standard,
                            attempts,
                            batch_ids,
                        })
                    }
                    Err(error) => {
                        ::sqlx::query(Self::sql("UPDATE queue_requests SET state = 'failed', tier = 'standard', attempts = ?, error = ?, updated_at_ms = ? WHERE id = ?"))
                            .bind(i64::from(attempts))
                            .bind(serde_json::to_string(&error).map_err($crate::Error::store)?)
                            .bind(now)
                            .bind(id.to_owned())
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::Error::store)?;
                        Err(error.into_error(rid.clone(), attempts))
                    }
                };
                tx.commit().await.map_err($crate::Error::store)?;
                Ok(Some((rid, result)))
            }
        }
    };
}

pub(super) use impl_queue_store;
