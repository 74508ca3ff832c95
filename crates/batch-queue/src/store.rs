//! The queue's own tables in batch-client's SQLite database: one row per request, one per batch
//! record the queue submitted. Created with `CREATE TABLE IF NOT EXISTS` (not `sqlx::migrate!`,
//! whose history table belongs to batch-client and would reject versions it does not know).

use std::time::{SystemTime, UNIX_EPOCH};

use batch_format::Usage;
use serde_json::Value;
use sqlx::{Row, SqlitePool};

use crate::{Completed, Error, RequestId, Result, Tier};

/// A transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`). Every write here
/// reads a row's state first and writes only if it is still as found; a deferred transaction that
/// reads and then writes fails with `database is locked` (SQLITE_BUSY, which the busy timeout does
/// not wait out) when another connection wrote in between, and a fallback's answer was then lost
/// and the request sent to the standard API again. An immediate one waits for the lock instead.
pub(crate) async fn write_tx(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(Error::store)
}

/// Request states. `pending` waits for a flush; `dispatching` is claimed by a flush whose
/// submit has not been recorded yet; `submitted` rides in the batch record `record_id`;
/// `standard` waits for the standard API; `done` and `failed` are final (the only two read back
/// by name; the SQL spells the others out).
pub(crate) mod state {
    pub(crate) const DONE: &str = "done";
    pub(crate) const FAILED: &str = "failed";
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,            -- the request id, also its custom_id in every batch
        operation TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,                -- '' when the endpoint takes none
        body TEXT NOT NULL,                 -- the request body JSON, normalised
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        dispatch_id TEXT,
        record_id TEXT,                     -- batch-client's record carrying it now
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
        state TEXT NOT NULL,                -- open | settled
        created_at_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS queue_batches_state ON queue_batches (state)",
];

pub(crate) async fn create_tables(pool: &SqlitePool) -> Result<()> {
    for sql in SCHEMA {
        sqlx::query(*sql)
            .execute(pool)
            .await
            .map_err(Error::store)?;
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

/// What `result_for` finds.
pub(crate) enum Lookup {
    Unknown,
    Waiting,
    Done(Completed),
    Failed(Error),
}

/// The body stored for `id`, if the database holds it.
pub(crate) async fn stored_body(pool: &SqlitePool, id: &RequestId) -> Result<Option<String>> {
    let row = sqlx::query("SELECT body FROM queue_requests WHERE id = ?")
        .bind(id.as_str().to_owned())
        .fetch_optional(pool)
        .await
        .map_err(Error::store)?;
    row.map(|r| r.try_get("body").map_err(Error::store))
        .transpose()
}

/// How many of `ids` the database holds.
pub(crate) async fn count_known(pool: &SqlitePool, ids: &[RequestId]) -> Result<usize> {
    let mut known = 0;
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT COUNT(*) FROM queue_requests WHERE id IN ({marks})");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.as_str().to_owned());
        }
        let row = query.fetch_one(pool).await.map_err(Error::store)?;
        let n: i64 = row.try_get(0).map_err(Error::store)?;
        known += usize::try_from(n).unwrap_or(0);
    }
    Ok(known)
}

pub(crate) async fn lookup(pool: &SqlitePool, id: &RequestId) -> Result<Lookup> {
    let row = sqlx::query(
        "SELECT state, attempts, batch_ids, tier, result, usage, error FROM queue_requests WHERE id = ?",
    )
    .bind(id.as_str().to_owned())
    .fetch_optional(pool)
    .await
    .map_err(Error::store)?;
    let Some(row) = row else {
        return Ok(Lookup::Unknown);
    };
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
                tier: Tier::parse(tier.as_deref().unwrap_or("batch")),
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

#[cfg(test)]
mod tests {
    use super::*;

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
