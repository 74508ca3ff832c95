//! The queue's tables, and all of batch-queue's SQL: one row per request, one per batch record
//! the queue submitted. [`QueueStore`] is what the queue asks of them; [`SqliteQueueStore`]
//! keeps them in batch-client's SQLite database, created and upgraded by the migrations in
//! `crates/batch-queue/migrations/`, recorded in their own history table
//! ([`MIGRATIONS_TABLE`]) so that they never meet batch-client's in `_sqlx_migrations`.

use std::collections::HashMap;
use std::future::Future;

use batch_format::{Endpoint, Usage};
use serde_json::Value;
use sqlx::{Row, SqlitePool};

use crate::{Completed, Error, RequestId, Result, Tier};

/// The history table of batch-queue's migrations (batch-client's is `_sqlx_migrations`): two
/// migration sets in one database, each checked only against its own history.
pub(crate) const MIGRATIONS_TABLE: &str = "_batch_queue_migrations";

/// Request states. `queued` is a request as enqueued: it waits for a flush, or rides in the
/// span (`queue_spans`) covering its `seq` in its group, `dispatching` while the span has no
/// record and `submitted` in the span's record once it has one (a flush writes one span row per
/// shard, never the request rows). The other states are the row's own: `pending` waits for a
/// flush (a retry, or a request put back by a flush that died before submitting); `dispatching`
/// is claimed by flush `dispatch_id` whose submit has not been recorded yet; `submitted` rides
/// in the batch record `record_id`; `standard` waits for the standard API; `done` and `failed`
/// are final (the only two read back by name; the SQL spells the others out).
pub(crate) mod state {
    pub(crate) const DONE: &str = "done";
    pub(crate) const FAILED: &str = "failed";
}

/// A group of requests: endpoint and model (`''` when the endpoint takes none).
pub(crate) type GroupKey = (Endpoint, String);

/// A request's id and result, to hand its waiter.
pub(crate) type Settled = (RequestId, Result<Completed>);

/// A request checked at enqueue, to store as pending.
#[derive(Debug)]
pub(crate) struct NewRequest {
    pub(crate) id: RequestId,
    pub(crate) operation: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) model: String,
    pub(crate) body: String,
}

/// Where a request must still be for a verdict to apply to it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Carrier<'a> {
    /// Riding in this batch-client record.
    Record(&'a str),
    /// Claimed by this flush, which has not recorded a submit.
    Dispatch(&'a str),
}

/// How one request of a settled record (or of a failed submit) ends up.
#[derive(Debug)]
pub(crate) enum Verdict {
    Done {
        body: String,
        usage: Option<Usage>,
    },
    /// It did not run (expired, cancelled, a failed batch) or failed in a way worth another
    /// try: retry in a later batch, else the standard API, else the error.
    Again(StoredError),
    /// OpenAI refused the request itself (a 4xx other than 408/409/429): the same request
    /// would be refused again on any tier.
    Final(StoredError),
}

/// One verdict to write: the request, what happened, and its batch ids when known (else the
/// stored ones are kept).
#[derive(Debug)]
pub(crate) struct VerdictFor {
    pub(crate) id: String,
    pub(crate) verdict: Verdict,
    pub(crate) batch_ids: Option<Vec<String>>,
}

/// How many retries a request gets and whether the standard API follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) max_retries: u32,
    pub(crate) fallback_to_standard: bool,
}

/// How [`QueueStore::apply_verdicts`] writes its verdicts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Apply<'a> {
    pub(crate) carrier: Carrier<'a>,
    pub(crate) policy: Policy,
    /// Count a batch attempt first (a submit that failed before any record carried them).
    pub(crate) count_attempt: bool,
    /// Mark the carrier's record settled in the same transaction.
    pub(crate) close_record: bool,
}

/// A request's final failure as stored in `error`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredError {
    pub(crate) tier: Tier,
    pub(crate) status: Option<u16>,
    pub(crate) code: Option<String>,
    pub(crate) message: String,
}

impl StoredError {
    pub(crate) fn into_error(self, id: RequestId, attempts: u32) -> Error {
        Error::Request {
            id,
            tier: self.tier,
            attempts,
            status: self.status,
            code: self.code,
            message: self.message,
        }
    }
}

/// What `result_for` finds.
pub(crate) enum Lookup {
    Unknown,
    Waiting,
    Done(Completed),
    Failed(Error),
}

/// What the queue asks of its tables. Every write that reads a row's state first writes only if
/// the row is still as found, so two queues on one database never both act on a request.
pub(crate) trait QueueStore: Send + Sync + 'static {
    /// Stores checked requests as pending, all or none.
    fn insert_pending(&self, rows: &[NewRequest]) -> impl Future<Output = Result<()>> + Send;
    /// The body stored for `id`, if the database holds it.
    fn stored_body(&self, id: &RequestId) -> impl Future<Output = Result<Option<String>>> + Send;
    /// How many of `ids` the database holds.
    fn count_known(&self, ids: &[RequestId]) -> impl Future<Output = Result<usize>> + Send;
    /// A request's state and, when final, its result.
    fn lookup(&self, id: &RequestId) -> impl Future<Output = Result<Lookup>> + Send;
    /// Pending requests per group.
    fn pending_counts(&self) -> impl Future<Output = Result<Vec<(GroupKey, usize)>>> + Send;
    /// Pending requests in one group.
    fn pending_count(&self, key: &GroupKey) -> impl Future<Output = Result<usize>> + Send;
    /// Groups with pending requests (only those holding a retry when `retries_only`).
    fn pending_groups(
        &self,
        retries_only: bool,
    ) -> impl Future<Output = Result<Vec<GroupKey>>> + Send;
    /// Claims up to `limit` of a group's pending requests, oldest first, for flush `dispatch`;
    /// how many. The requests as enqueued are claimed as one span (one row written, whatever
    /// their number); retries and requests put back, one row each.
    fn claim(
        &self,
        dispatch: &str,
        key: &GroupKey,
        limit: usize,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// The requests flush `dispatch` claimed, in order: id and body.
    fn claimed(&self, dispatch: &str)
    -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    /// Records that batch-client's `record_id` carries `ids` of flush `dispatch` (the lines of
    /// one shard, in the order `claimed` gave them). Adopting the same shard again changes
    /// nothing.
    fn adopt(
        &self,
        dispatch: &str,
        record_id: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Flushes that left requests claimed (a process died mid-submit).
    fn interrupted_dispatches(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Puts the requests flush `dispatch` still holds (claimed, no submit recorded) back to
    /// pending.
    fn release_dispatch(&self, dispatch: &str) -> impl Future<Output = Result<()>> + Send;
    /// Requests neither done nor failed.
    fn unfinished(&self) -> impl Future<Output = Result<usize>> + Send;
    /// Those of `ids` neither done nor failed, with the record carrying each (if any).
    fn in_flight(
        &self,
        ids: &[RequestId],
    ) -> impl Future<Output = Result<Vec<(RequestId, Option<String>)>>> + Send;
    /// The records the queue submitted and has not settled.
    fn open_records(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The requests riding in `record_id`, with the batch ids that carried them before.
    fn carried(
        &self,
        record_id: &str,
    ) -> impl Future<Output = Result<HashMap<String, Vec<String>>>> + Send;
    /// Writes verdicts in one transaction; the results to hand out (final verdicts only).
    fn apply_verdicts(
        &self,
        verdicts: Vec<VerdictFor>,
        how: Apply<'_>,
    ) -> impl Future<Output = Result<Vec<Settled>>> + Send;
    /// Up to `limit` requests waiting for the standard API: id, endpoint and body.
    fn standard_waiting(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(String, String, String)>>> + Send;
    /// Writes a standard-API answer (or its error) for `id` if it still waits for one.
    fn finish_standard(
        &self,
        id: &str,
        outcome: std::result::Result<Value, StoredError>,
    ) -> impl Future<Output = Result<Option<Settled>>> + Send;
}

/// [`QueueStore`] in batch-client's SQLite database.
#[derive(Debug, Clone)]
pub(crate) struct SqliteQueueStore {
    pool: SqlitePool,
}

impl SqliteQueueStore {
    /// The queue's tables in the database of `pool`, created or upgraded by the migrations.
    pub(crate) async fn open(pool: SqlitePool) -> Result<SqliteQueueStore> {
        let mut migrator = sqlx::migrate!("./migrations");
        // Two migration sets in one database: ours keep their own history, so neither
        // migrator ever sees the other's versions as missing or foreign.
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator.run(&pool).await.map_err(Error::store)?;
        Ok(SqliteQueueStore { pool })
    }

    /// A transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`). Every write
    /// here reads a row's state first and writes only if it is still as found; a deferred
    /// transaction that reads and then writes fails with `database is locked` (SQLITE_BUSY,
    /// which the busy timeout does not wait out) when another connection wrote in between, and
    /// a fallback's answer was then lost and the request sent to the standard API again. An
    /// immediate one waits for the lock instead.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::store)
    }
}

fn endpoint_of(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Option<Endpoint>> {
    let endpoint: String = row.try_get(i).map_err(Error::store)?;
    Ok(Endpoint::from_url(&endpoint))
}

fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// The `seq` of request `id` if it is still as enqueued (`queued`).
async fn queued_seq(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, id: &str) -> Result<Option<i64>> {
    sqlx::query_scalar("SELECT seq FROM queue_requests WHERE id = ? AND state = 'queued'")
        .bind(id.to_owned())
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::store)
}

/// A group's requests as enqueued past its last span (`cursor`, its last `seq`): those waiting
/// for a flush.
async fn fresh_count(pool: &SqlitePool, key: &GroupKey, cursor: i64) -> Result<usize> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM queue_requests WHERE state = 'queued' AND endpoint = ? AND model = ? AND seq > ?",
    )
    .bind(key.0.as_str())
    .bind(key.1.clone())
    .bind(cursor)
    .fetch_one(pool)
    .await
    .map_err(Error::store)?;
    Ok(count(n))
}

impl QueueStore for SqliteQueueStore {
    async fn insert_pending(&self, rows: &[NewRequest]) -> Result<()> {
        // Many rows per statement: each statement is a round trip to sqlx's SQLite thread.
        const ROWS_PER_STATEMENT: usize = 128;
        let now = crate::now_ms();
        let mut tx = self.write_tx().await?;
        for rows in rows.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO queue_requests (id, operation, endpoint, model, body, state, created_at_ms, updated_at_ms) VALUES ",
            );
            for n in 0..rows.len() {
                sql.push_str(if n == 0 { "" } else { ", " });
                sql.push_str("(?, ?, ?, ?, ?, 'queued', ?, ?)");
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
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
            query.execute(&mut *tx).await.map_err(Error::store)?;
        }
        tx.commit().await.map_err(Error::store)
    }

    async fn stored_body(&self, id: &RequestId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT body FROM queue_requests WHERE id = ?")
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::store)?;
        row.map(|r| r.try_get("body").map_err(Error::store))
            .transpose()
    }

    async fn count_known(&self, ids: &[RequestId]) -> Result<usize> {
        let mut known = 0;
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT COUNT(*) FROM queue_requests WHERE id IN ({marks})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str().to_owned());
            }
            let row = query.fetch_one(&self.pool).await.map_err(Error::store)?;
            known += count(row.try_get(0).map_err(Error::store)?);
        }
        Ok(known)
    }

    async fn lookup(&self, id: &RequestId) -> Result<Lookup> {
        let row = sqlx::query(
            "SELECT state, attempts, batch_ids, tier, result, usage, error FROM queue_requests WHERE id = ?",
        )
        .bind(id.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::store)?;
        match row {
            None => Ok(Lookup::Unknown),
            Some(row) => lookup_row(id, &row),
        }
    }

    async fn pending_counts(&self) -> Result<Vec<(GroupKey, usize)>> {
        let mut counts: HashMap<GroupKey, usize> = HashMap::new();
        let own = sqlx::query(
            "SELECT endpoint, model, COUNT(*) FROM queue_requests WHERE state = 'pending' GROUP BY endpoint, model",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        for row in own {
            let model: String = row.try_get(1).map_err(Error::store)?;
            let n: i64 = row.try_get(2).map_err(Error::store)?;
            if let Some(endpoint) = endpoint_of(&row, 0)? {
                *counts.entry((endpoint, model)).or_default() += count(n);
            }
        }
        // Requests as enqueued: a group has some waiting when its newest is past its last span
        // (an index-only scan), then they are counted past that span.
        let newest = sqlx::query(
            "SELECT r.endpoint, r.model, MAX(r.seq), (SELECT COALESCE(MAX(s.hi_seq), 0) FROM queue_spans s WHERE s.endpoint = r.endpoint AND s.model = r.model) FROM queue_requests r WHERE r.state = 'queued' GROUP BY r.endpoint, r.model",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        for row in newest {
            let model: String = row.try_get(1).map_err(Error::store)?;
            let newest: i64 = row.try_get(2).map_err(Error::store)?;
            let cursor: i64 = row.try_get(3).map_err(Error::store)?;
            let Some(endpoint) = endpoint_of(&row, 0)? else {
                continue;
            };
            if newest > cursor {
                let key = (endpoint, model);
                let n = fresh_count(&self.pool, &key, cursor).await?;
                *counts.entry(key).or_default() += n;
            }
        }
        Ok(counts.into_iter().collect())
    }

    async fn pending_count(&self, key: &GroupKey) -> Result<usize> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM queue_requests WHERE state = 'pending' AND endpoint = ?1 AND model = ?2), (SELECT COALESCE(MAX(hi_seq), 0) FROM queue_spans WHERE endpoint = ?1 AND model = ?2)",
        )
        .bind(key.0.as_str())
        .bind(key.1.clone())
        .fetch_one(&self.pool)
        .await
        .map_err(Error::store)?;
        let own: i64 = row.try_get(0).map_err(Error::store)?;
        let cursor: i64 = row.try_get(1).map_err(Error::store)?;
        Ok(count(own) + fresh_count(&self.pool, key, cursor).await?)
    }

    async fn pending_groups(&self, retries_only: bool) -> Result<Vec<GroupKey>> {
        if !retries_only {
            return Ok(self
                .pending_counts()
                .await?
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(key, _)| key)
                .collect());
        }
        // A retry always has a state of its own (requests as enqueued have had no attempt).
        let rows = sqlx::query(
            "SELECT DISTINCT endpoint, model FROM queue_requests WHERE state = 'pending' AND attempts >= 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let model: String = row.try_get(1).map_err(Error::store)?;
            if let Some(endpoint) = endpoint_of(&row, 0)? {
                keys.push((endpoint, model));
            }
        }
        Ok(keys)
    }

    async fn claim(&self, dispatch: &str, key: &GroupKey, limit: usize) -> Result<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = crate::now_ms();
        // One write transaction: two flushes never claim one request.
        let mut tx = self.write_tx().await?;
        // Requests with a state of their own (retries, put back), one row each, oldest first.
        let own = sqlx::query(
            "UPDATE queue_requests SET state = 'dispatching', dispatch_id = ?1, updated_at_ms = ?2 WHERE seq IN (SELECT seq FROM queue_requests WHERE state = 'pending' AND endpoint = ?3 AND model = ?4 ORDER BY seq LIMIT ?5)",
        )
        .bind(dispatch.to_owned())
        .bind(now)
        .bind(key.0.as_str())
        .bind(key.1.clone())
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?
        .rows_affected();
        let rest = limit.saturating_sub(i64::try_from(own).unwrap_or(i64::MAX));
        let mut fresh = 0;
        if rest > 0 {
            // Requests as enqueued, past the group's last span, oldest first: one span. Every
            // request of the group from the span's first `seq` to its last is in it (seqs only
            // grow, and SQLite commits one writer at a time).
            let row = sqlx::query(
                "WITH cursor(hi) AS (SELECT COALESCE(MAX(hi_seq), 0) FROM queue_spans WHERE endpoint = ?1 AND model = ?2) SELECT COUNT(*), MAX(seq), (SELECT hi FROM cursor) FROM (SELECT seq FROM queue_requests WHERE state = 'queued' AND endpoint = ?1 AND model = ?2 AND seq > (SELECT hi FROM cursor) ORDER BY seq LIMIT ?3)",
            )
            .bind(key.0.as_str())
            .bind(key.1.clone())
            .bind(rest)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::store)?;
            let n: i64 = row.try_get(0).map_err(Error::store)?;
            let hi: Option<i64> = row.try_get(1).map_err(Error::store)?;
            let cursor: i64 = row.try_get(2).map_err(Error::store)?;
            if let (Some(hi), true) = (hi, n > 0) {
                sqlx::query(
                    "INSERT INTO queue_spans (dispatch_id, endpoint, model, lo_seq, hi_seq, record_id, created_at_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                )
                .bind(dispatch.to_owned())
                .bind(key.0.as_str())
                .bind(key.1.clone())
                .bind(cursor + 1)
                .bind(hi)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
                fresh = u64::try_from(n).unwrap_or(0);
            }
        }
        tx.commit().await.map_err(Error::store)?;
        Ok(own + fresh)
    }

    async fn claimed(&self, dispatch: &str) -> Result<Vec<(String, String)>> {
        // Rows of their own first, then the span's: each shard cut from this order holds a
        // contiguous run of the span (what `adopt` records).
        let mut rows = sqlx::query(
            "SELECT id, body FROM queue_requests WHERE dispatch_id = ? AND state = 'dispatching' ORDER BY seq",
        )
        .bind(dispatch.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        let spans = sqlx::query(
            "SELECT endpoint, model, lo_seq, hi_seq FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL ORDER BY lo_seq",
        )
        .bind(dispatch.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        for span in spans {
            // In the group index's order: no sort.
            rows.extend(
                sqlx::query(
                    "SELECT id, body FROM queue_requests WHERE state = 'queued' AND endpoint = ? AND model = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                )
                .bind(span.try_get::<String, _>(0).map_err(Error::store)?)
                .bind(span.try_get::<String, _>(1).map_err(Error::store)?)
                .bind(span.try_get::<i64, _>(2).map_err(Error::store)?)
                .bind(span.try_get::<i64, _>(3).map_err(Error::store)?)
                .fetch_all(&self.pool)
                .await
                .map_err(Error::store)?,
            );
        }
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::store)
    }

    async fn adopt(&self, dispatch: &str, record_id: &str, ids: &[String]) -> Result<()> {
        let now = crate::now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT OR IGNORE INTO queue_batches (record_id, dispatch_id, state, created_at_ms) VALUES (?, ?, 'open', ?)",
        )
        .bind(record_id.to_owned())
        .bind(dispatch.to_owned())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        // Rows of their own, when the flush claimed any: one statement, the ids as JSON.
        let own: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM queue_requests WHERE dispatch_id = ? AND state = 'dispatching')",
        )
        .bind(dispatch.to_owned())
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::store)?;
        if own != 0 {
            let ids_json = serde_json::to_string(ids).map_err(Error::store)?;
            sqlx::query(
                "UPDATE queue_requests SET state = 'submitted', record_id = ?, attempts = attempts + 1, updated_at_ms = ? WHERE dispatch_id = ? AND state = 'dispatching' AND id IN (SELECT value FROM json_each(?))",
            )
            .bind(record_id.to_owned())
            .bind(now)
            .bind(dispatch.to_owned())
            .bind(ids_json.as_str())
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        }
        // The span's part: the shard's requests as enqueued are a contiguous run of the span,
        // which is cut there and that run given the record (one or three span rows written).
        // They are the shard's last lines (`claimed` puts rows of their own first), so the
        // run is found with a few lookups by id, not one per line.
        let last = match ids.last() {
            Some(id) => queued_seq(&mut tx, id).await?,
            None => None,
        };
        let mut first = last;
        if last.is_some() {
            let (mut lo, mut hi) = (0, ids.len() - 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match queued_seq(&mut tx, &ids[mid]).await? {
                    Some(seq) => {
                        hi = mid;
                        first = Some(seq);
                    }
                    None => lo = mid + 1,
                }
            }
        }
        if let (Some(first), Some(last)) = (first, last) {
            let span = sqlx::query(
                "SELECT span, endpoint, model, lo_seq, hi_seq FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL AND lo_seq <= ? AND hi_seq >= ?",
            )
            .bind(dispatch.to_owned())
            .bind(first)
            .bind(last)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::store)?;
            if let Some(span) = span {
                let id: i64 = span.try_get(0).map_err(Error::store)?;
                let endpoint: String = span.try_get(1).map_err(Error::store)?;
                let model: String = span.try_get(2).map_err(Error::store)?;
                let lo: i64 = span.try_get(3).map_err(Error::store)?;
                let hi: i64 = span.try_get(4).map_err(Error::store)?;
                sqlx::query(
                    "UPDATE queue_spans SET lo_seq = ?, hi_seq = ?, record_id = ? WHERE span = ?",
                )
                .bind(first)
                .bind(last)
                .bind(record_id.to_owned())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
                // What is left of the span on either side stays claimed by the flush.
                for (lo, hi) in [(lo, first - 1), (last + 1, hi)] {
                    if lo <= hi {
                        sqlx::query(
                            "INSERT INTO queue_spans (dispatch_id, endpoint, model, lo_seq, hi_seq, record_id, created_at_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                        )
                        .bind(dispatch.to_owned())
                        .bind(endpoint.as_str())
                        .bind(model.as_str())
                        .bind(lo)
                        .bind(hi)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::store)?;
                    }
                }
            }
        }
        tx.commit().await.map_err(Error::store)
    }

    async fn interrupted_dispatches(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT dispatch_id FROM queue_requests WHERE state = 'dispatching' AND dispatch_id IS NOT NULL UNION SELECT dispatch_id FROM queue_spans WHERE record_id IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| row.try_get(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::store)
    }

    async fn release_dispatch(&self, dispatch: &str) -> Result<()> {
        let now = crate::now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE queue_requests SET state = 'pending', dispatch_id = NULL, updated_at_ms = ? WHERE state = 'dispatching' AND dispatch_id = ?",
        )
        .bind(now)
        .bind(dispatch.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        // The flush's spans without a record: their requests get a state of their own
        // (`pending`) before the span goes, so none is left uncovered behind a later span.
        let spans = sqlx::query(
            "SELECT endpoint, model, lo_seq, hi_seq FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL",
        )
        .bind(dispatch.to_owned())
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::store)?;
        for span in spans {
            sqlx::query(
                "UPDATE queue_requests SET state = 'pending', updated_at_ms = ? WHERE state = 'queued' AND endpoint = ? AND model = ? AND seq BETWEEN ? AND ?",
            )
            .bind(now)
            .bind(span.try_get::<String, _>(0).map_err(Error::store)?)
            .bind(span.try_get::<String, _>(1).map_err(Error::store)?)
            .bind(span.try_get::<i64, _>(2).map_err(Error::store)?)
            .bind(span.try_get::<i64, _>(3).map_err(Error::store)?)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        }
        sqlx::query("DELETE FROM queue_spans WHERE dispatch_id = ? AND record_id IS NULL")
            .bind(dispatch.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)
    }

    async fn unfinished(&self) -> Result<usize> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM queue_requests WHERE state NOT IN ('done', 'failed')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(Error::store)?;
        Ok(count(row.try_get(0).map_err(Error::store)?))
    }

    async fn in_flight(&self, ids: &[RequestId]) -> Result<Vec<(RequestId, Option<String>)>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT r.id, CASE WHEN r.state = 'queued' THEN (SELECT s.record_id FROM queue_spans s WHERE s.endpoint = r.endpoint AND s.model = r.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq) ELSE r.record_id END AS record_id FROM queue_requests r WHERE r.id IN ({marks}) AND r.state NOT IN ('done', 'failed') ORDER BY r.seq"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str().to_owned());
            }
            for row in query.fetch_all(&self.pool).await.map_err(Error::store)? {
                let id: String = row.try_get("id").map_err(Error::store)?;
                let record: Option<String> = row.try_get("record_id").map_err(Error::store)?;
                out.push((RequestId::from(id), record));
            }
        }
        Ok(out)
    }

    async fn open_records(&self) -> Result<Vec<String>> {
        sqlx::query("SELECT record_id FROM queue_batches WHERE state = 'open'")
            .fetch_all(&self.pool)
            .await
            .map_err(Error::store)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::store)
    }

    async fn carried(&self, record_id: &str) -> Result<HashMap<String, Vec<String>>> {
        let rows = sqlx::query(
            "SELECT id, batch_ids FROM queue_requests WHERE record_id = ?1 AND state = 'submitted' UNION ALL SELECT r.id, r.batch_ids FROM queue_spans s JOIN queue_requests r ON r.state = 'queued' AND r.endpoint = s.endpoint AND r.model = s.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq WHERE s.record_id = ?1",
        )
        .bind(record_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        let mut carried = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0).map_err(Error::store)?;
            let ids: String = row.try_get(1).map_err(Error::store)?;
            carried.insert(id, serde_json::from_str(&ids).unwrap_or_default());
        }
        Ok(carried)
    }

    async fn apply_verdicts(
        &self,
        verdicts: Vec<VerdictFor>,
        how: Apply<'_>,
    ) -> Result<Vec<Settled>> {
        let mut tx = self.write_tx().await?;
        let mut settled = Vec::new();
        for v in verdicts {
            settled.extend(apply_verdict(&mut tx, v, how).await?);
        }
        if let (true, Carrier::Record(record_id)) = (how.close_record, how.carrier) {
            sqlx::query("UPDATE queue_batches SET state = 'settled' WHERE record_id = ?")
                .bind(record_id.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
            // Every request the record carried has a state of its own now.
            sqlx::query("DELETE FROM queue_spans WHERE record_id = ?")
                .bind(record_id.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
        }
        tx.commit().await.map_err(Error::store)?;
        Ok(settled)
    }

    async fn standard_waiting(&self, limit: usize) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, endpoint, body FROM queue_requests WHERE state = 'standard' ORDER BY seq LIMIT ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::store)
    }

    async fn finish_standard(
        &self,
        id: &str,
        outcome: std::result::Result<Value, StoredError>,
    ) -> Result<Option<Settled>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT attempts, batch_ids FROM queue_requests WHERE id = ? AND state = 'standard'",
        )
        .bind(id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::store)?;
        let Some(row) = row else { return Ok(None) };
        let attempts =
            u32::try_from(row.try_get::<i64, _>(0).map_err(Error::store)?).unwrap_or(0) + 1;
        let batch_ids: Vec<String> =
            serde_json::from_str(&row.try_get::<String, _>(1).map_err(Error::store)?)
                .unwrap_or_default();
        let rid = RequestId::from(id);
        let now = crate::now_ms();
        let result = match outcome {
            Ok(body) => {
                let usage = usage_from_body(&body);
                sqlx::query("UPDATE queue_requests SET state = 'done', tier = 'standard', attempts = ?, result = ?, usage = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(i64::from(attempts))
                    .bind(body.to_string())
                    .bind(usage.as_ref().map(usage_to_json))
                    .bind(now)
                    .bind(id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::store)?;
                Ok(Completed {
                    request_id: rid.clone(),
                    body,
                    usage,
                    tier: Tier::Standard,
                    attempts,
                    batch_ids,
                })
            }
            Err(error) => {
                sqlx::query("UPDATE queue_requests SET state = 'failed', tier = 'standard', attempts = ?, error = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(i64::from(attempts))
                    .bind(serde_json::to_string(&error).map_err(Error::store)?)
                    .bind(now)
                    .bind(id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::store)?;
                Err(error.into_error(rid.clone(), attempts))
            }
        };
        tx.commit().await.map_err(Error::store)?;
        Ok(Some((rid, result)))
    }
}

/// A stored request's state and, when final, its result.
fn lookup_row(id: &RequestId, row: &sqlx::sqlite::SqliteRow) -> Result<Lookup> {
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

/// Writes one request's verdict; returns the id and result to hand its waiter when final.
// Over 80 lines: one guarded read, then one UPDATE per outcome; kept whole so the state rules read in one place.
async fn apply_verdict(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    v: VerdictFor,
    how: Apply<'_>,
) -> Result<Option<Settled>> {
    let id = v.id.as_str();
    // Only a request still where this verdict found it is touched: a second settling of
    // the same record (another queue on the database) finds nothing and changes nothing.
    // A request as enqueued rides in the span covering it; one with a state of its own names
    // its record or flush itself.
    let row = match how.carrier {
        Carrier::Record(record_id) => sqlx::query(
            "SELECT r.attempts, r.batch_ids, r.state FROM queue_requests r WHERE r.id = ?1 AND ((r.state = 'submitted' AND r.record_id = ?2) OR (r.state = 'queued' AND EXISTS (SELECT 1 FROM queue_spans s WHERE s.record_id = ?2 AND s.endpoint = r.endpoint AND s.model = r.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq)))",
        )
        .bind(id.to_owned())
        .bind(record_id.to_owned()),
        Carrier::Dispatch(dispatch) => sqlx::query(
            "SELECT r.attempts, r.batch_ids, r.state FROM queue_requests r WHERE r.id = ?1 AND ((r.state = 'dispatching' AND r.dispatch_id = ?2) OR (r.state = 'queued' AND EXISTS (SELECT 1 FROM queue_spans s WHERE s.dispatch_id = ?2 AND s.record_id IS NULL AND s.endpoint = r.endpoint AND s.model = r.model AND r.seq BETWEEN s.lo_seq AND s.hi_seq)))",
        )
        .bind(id.to_owned())
        .bind(dispatch.to_owned()),
    }
    .fetch_optional(&mut **tx)
    .await
    .map_err(Error::store)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored = u32::try_from(row.try_get::<i64, _>(0).map_err(Error::store)?).unwrap_or(0);
    let as_enqueued = row.try_get::<String, _>(2).map_err(Error::store)? == "queued";
    // A request riding in a record's span has had the attempt its row does not count yet; a
    // submit that failed before any record carried its requests counts one now.
    let attempts = stored
        + u32::from(as_enqueued && matches!(how.carrier, Carrier::Record(_)))
        + u32::from(how.count_attempt);
    let batch_ids: Vec<String> = match v.batch_ids {
        Some(ids) => ids,
        None => serde_json::from_str(&row.try_get::<String, _>(1).map_err(Error::store)?)
            .unwrap_or_default(),
    };
    let ids_json = serde_json::to_string(&batch_ids).map_err(Error::store)?;
    let rid = RequestId::from(id);
    let now = crate::now_ms();
    let policy = how.policy;
    match v.verdict {
        Verdict::Done { body, usage } => {
            sqlx::query("UPDATE queue_requests SET state = 'done', tier = 'batch', attempts = ?, result = ?, usage = ?, batch_ids = ?, record_id = NULL, updated_at_ms = ? WHERE id = ?")
                .bind(i64::from(attempts))
                .bind(body.as_str())
                .bind(usage.as_ref().map(usage_to_json))
                .bind(ids_json)
                .bind(now)
                .bind(id.to_owned())
                .execute(&mut **tx)
                .await
                .map_err(Error::store)?;
            let body = serde_json::from_str(&body).unwrap_or(Value::Null);
            let done = Completed {
                request_id: rid.clone(),
                body,
                usage,
                tier: Tier::Batch,
                attempts,
                batch_ids,
            };
            Ok(Some((rid, Ok(done))))
        }
        Verdict::Again(error) if attempts <= policy.max_retries || policy.fallback_to_standard => {
            // Retries first, in a later batch; then the standard API.
            let (state, next) = if attempts <= policy.max_retries {
                ("pending", "request goes into a later batch")
            } else {
                ("standard", "request falls back to the standard API")
            };
            tracing::info!(request = id, attempts, reason = %error.message, "{next}");
            sqlx::query("UPDATE queue_requests SET state = ?, attempts = ?, record_id = NULL, dispatch_id = NULL, batch_ids = ?, error = ?, updated_at_ms = ? WHERE id = ?")
                .bind(state)
                .bind(i64::from(attempts))
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
            sqlx::query("UPDATE queue_requests SET state = 'failed', attempts = ?, record_id = NULL, batch_ids = ?, error = ?, updated_at_ms = ? WHERE id = ?")
                .bind(i64::from(attempts))
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

pub(crate) fn usage_to_json(u: &Usage) -> String {
    serde_json::to_string(u).unwrap_or_else(|_| "null".into())
}

fn usage_from_json(s: &str) -> Option<Usage> {
    let v: Value = serde_json::from_str(s).ok()?;
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    Some(Usage {
        input_tokens: n("input_tokens")?,
        output_tokens: n("output_tokens").unwrap_or(0),
        total_tokens: n("total_tokens").unwrap_or(0),
        cached_tokens: n("cached_tokens"),
        reasoning_tokens: n("reasoning_tokens"),
    })
}

/// Usage from a standard response body, under either naming.
pub(crate) fn usage_from_body(body: &Value) -> Option<Usage> {
    let u = body.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let input = n("prompt_tokens").or_else(|| n("input_tokens"))?;
    let output = n("completion_tokens")
        .or_else(|| n("output_tokens"))
        .unwrap_or(0);
    let detail = |outer: &str, inner: &str| {
        u.get(outer)
            .and_then(|d| d.get(inner))
            .and_then(Value::as_u64)
    };
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: n("total_tokens").unwrap_or(input + output),
        cached_tokens: detail("prompt_tokens_details", "cached_tokens")
            .or_else(|| detail("input_tokens_details", "cached_tokens")),
        reasoning_tokens: detail("completion_tokens_details", "reasoning_tokens")
            .or_else(|| detail("output_tokens_details", "reasoning_tokens")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The queue's schema before it had migrations, as `create_tables` made it.
    pub(crate) const SCHEMA_BEFORE_MIGRATIONS: &[&str] = &[
        "CREATE TABLE IF NOT EXISTS queue_requests (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            operation TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            dispatch_id TEXT,
            record_id TEXT,
            batch_ids TEXT NOT NULL DEFAULT '[]',
            tier TEXT,
            result TEXT,
            usage TEXT,
            error TEXT,
            created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS queue_requests_group ON queue_requests (state, endpoint, model, seq)",
        "CREATE INDEX IF NOT EXISTS queue_requests_record ON queue_requests (record_id, state)",
        "CREATE INDEX IF NOT EXISTS queue_requests_dispatch ON queue_requests (dispatch_id)",
        "CREATE TABLE IF NOT EXISTS queue_batches (
            record_id TEXT PRIMARY KEY,
            dispatch_id TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS queue_batches_state ON queue_batches (state)",
    ];

    /// Rows in that schema: a request done, one pending, a record open.
    const ROWS_BEFORE_MIGRATIONS: &[&str] = &[
        "INSERT INTO queue_requests (id, operation, endpoint, model, body, state, attempts, batch_ids, tier, result, created_at_ms, updated_at_ms)
            VALUES ('rq_done', 'critique', '/v1/chat/completions', 'gpt-4o-mini', '{}', 'done', 1, '[\"batch_1\"]', 'batch', '{\"ok\":true}', 1, 1)",
        "INSERT INTO queue_requests (id, operation, endpoint, model, body, state, created_at_ms, updated_at_ms)
            VALUES ('rq_pending', 'critique', '/v1/chat/completions', 'gpt-4o-mini', '{}', 'pending', 1, 1)",
        "INSERT INTO queue_batches (record_id, dispatch_id, state, created_at_ms) VALUES ('bb_1', 'qd_1', 'open', 1)",
    ];

    /// A database the queue made before it had migrations is adopted with its rows, both
    /// migration sets run again as no-ops, and neither sees the other's history.
    #[tokio::test]
    async fn a_database_from_before_migrations_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let client = batch_client::SqliteStore::open(&path).await.unwrap();
        for sql in SCHEMA_BEFORE_MIGRATIONS
            .iter()
            .chain(ROWS_BEFORE_MIGRATIONS)
        {
            sqlx::query(*sql).execute(client.pool()).await.unwrap();
        }
        client.close().await;
        for _ in 0..2 {
            let client = batch_client::SqliteStore::open(&path).await.unwrap();
            let store = SqliteQueueStore::open(client.pool().clone()).await.unwrap();
            match store.lookup(&RequestId::from("rq_done")).await.unwrap() {
                Lookup::Done(done) => {
                    assert_eq!(done.body, serde_json::json!({"ok": true}));
                    assert_eq!(
                        (done.tier, done.batch_ids),
                        (Tier::Batch, vec!["batch_1".to_owned()])
                    );
                }
                _ => panic!("rq_done lost"),
            }
            assert!(matches!(
                store.lookup(&RequestId::from("rq_pending")).await.unwrap(),
                Lookup::Waiting
            ));
            assert_eq!(store.open_records().await.unwrap(), ["bb_1"]);
            assert_eq!(store.unfinished().await.unwrap(), 1);
            let versions = |table: &str| {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let pool = client.pool().clone();
                async move {
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                    row.get::<i64, _>(0)
                }
            };
            assert_eq!(versions(MIGRATIONS_TABLE).await, 2);
            let ours = "_sqlx_migrations WHERE description LIKE 'queue%'";
            assert_eq!(versions(ours).await, 0);
            client.close().await;
        }
    }

    fn new_request(i: usize, model: &str) -> NewRequest {
        NewRequest {
            id: RequestId::from(format!("rq_{model}_{i}")),
            operation: "critique".into(),
            endpoint: Endpoint::ChatCompletions,
            model: model.into(),
            body: format!(r#"{{"model":"{model}","n":{i}}}"#),
        }
    }

    fn ids(model: &str, range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("rq_{model}_{i}")).collect()
    }

    /// A flush claims a group's requests as one span, each shard adopted takes its run of it
    /// (in any number of pieces, twice without effect), a flush released puts what it still
    /// held back to pending, and a settled record leaves every request it carried its own
    /// state: nothing is lost, carried twice or counted twice.
    #[tokio::test]
    async fn spans_carry_shards_and_hand_every_request_its_own_state() {
        let dir = tempfile::tempdir().unwrap();
        let client = batch_client::SqliteStore::open(&dir.path().join("q.db"))
            .await
            .unwrap();
        let store = SqliteQueueStore::open(client.pool().clone()).await.unwrap();
        let rows: Vec<NewRequest> = (0..10)
            .map(|i| new_request(i / 2, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        store.insert_pending(&rows).await.unwrap();
        let a: GroupKey = (Endpoint::ChatCompletions, "a".into());
        let b: GroupKey = (Endpoint::ChatCompletions, "b".into());
        let mut counts = store.pending_counts().await.unwrap();
        counts.sort();
        assert_eq!(counts, [(a.clone(), 5), (b.clone(), 5)]);

        assert_eq!(store.claim("qd_1", &a, 4).await.unwrap(), 4);
        assert_eq!(store.pending_count(&a).await.unwrap(), 1);
        let claimed: Vec<String> = store
            .claimed("qd_1")
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(claimed, ids("a", 0..4));
        // A second flush finds only what the first left.
        assert_eq!(store.claim("qd_other", &a, 10).await.unwrap(), 1);
        store.release_dispatch("qd_other").await.unwrap();

        store.adopt("qd_1", "rec_1", &ids("a", 0..2)).await.unwrap();
        store.adopt("qd_1", "rec_1", &ids("a", 0..2)).await.unwrap();
        let all: Vec<RequestId> = ids("a", 0..5).into_iter().map(RequestId::from).collect();
        let records: Vec<Option<String>> = store
            .in_flight(&all)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let rec_1 = Some("rec_1".to_owned());
        assert_eq!(records, [rec_1.clone(), rec_1, None, None, None]);
        let mut carried: Vec<String> = store.carried("rec_1").await.unwrap().into_keys().collect();
        carried.sort();
        assert_eq!(carried, ids("a", 0..2));
        assert_eq!(store.interrupted_dispatches().await.unwrap(), ["qd_1"]);

        // The flush dies: what it did not submit goes back to pending, with a_4.
        store.release_dispatch("qd_1").await.unwrap();
        assert!(store.interrupted_dispatches().await.unwrap().is_empty());
        assert_eq!(store.pending_count(&a).await.unwrap(), 3);
        assert_eq!(store.claim("qd_2", &a, 10).await.unwrap(), 3);
        let claimed: Vec<String> = store
            .claimed("qd_2")
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(claimed, ids("a", 2..5));
        store.adopt("qd_2", "rec_2", &ids("a", 2..5)).await.unwrap();
        assert_eq!(store.carried("rec_2").await.unwrap().len(), 3);
        assert_eq!(store.carried("rec_1").await.unwrap().len(), 2);

        let policy = Policy {
            max_retries: 1,
            fallback_to_standard: true,
        };
        let how = Apply {
            carrier: Carrier::Record("rec_1"),
            policy,
            count_attempt: false,
            close_record: true,
        };
        let verdicts = || {
            vec![
                VerdictFor {
                    id: "rq_a_0".into(),
                    verdict: Verdict::Done {
                        body: "{}".into(),
                        usage: None,
                    },
                    batch_ids: Some(vec!["batch_1".into()]),
                },
                VerdictFor {
                    id: "rq_a_1".into(),
                    verdict: Verdict::Again(StoredError {
                        tier: Tier::Batch,
                        status: None,
                        code: None,
                        message: "expired".into(),
                    }),
                    batch_ids: Some(vec!["batch_1".into()]),
                },
            ]
        };
        let settled = store.apply_verdicts(verdicts(), how).await.unwrap();
        assert_eq!(settled.len(), 1);
        match store.lookup(&RequestId::from("rq_a_0")).await.unwrap() {
            Lookup::Done(done) => assert_eq!(
                (done.attempts, done.batch_ids),
                (1, vec!["batch_1".to_owned()])
            ),
            _ => panic!("rq_a_0 not done"),
        }
        // a_1 waits for a retry, its first attempt counted; a second settling changes nothing.
        assert_eq!(
            store.pending_groups(true).await.unwrap(),
            std::slice::from_ref(&a)
        );
        assert!(
            store
                .apply_verdicts(verdicts(), how)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.carried("rec_1").await.unwrap().is_empty());
        assert_eq!(store.pending_count(&a).await.unwrap(), 1);
        assert_eq!(store.pending_count(&b).await.unwrap(), 5);
        assert_eq!(store.unfinished().await.unwrap(), 9);
        client.close().await;
    }

    #[test]
    fn usage_round_trips_and_reads_both_namings() {
        let u = Usage {
            input_tokens: 3,
            output_tokens: 4,
            total_tokens: 7,
            cached_tokens: Some(1),
            reasoning_tokens: None,
        };
        assert_eq!(usage_from_json(&usage_to_json(&u)), Some(u));
        let chat = serde_json::json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}}});
        assert_eq!(usage_from_body(&chat), Some(u));
        let image = serde_json::json!({"usage": {"input_tokens": 3, "output_tokens": 4}});
        assert_eq!(usage_from_body(&image).map(|u| u.total_tokens), Some(7));
        assert_eq!(usage_from_body(&serde_json::json!({"data": []})), None);
    }
}
