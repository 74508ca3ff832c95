//! `xtask-worker chaos-facts LOCATION`: what the database of a `cargo xtask chaos` run holds,
//! as one JSON object on stdout, for xtask to check against the simulator's counters. Read
//! with plain SELECTs, one SQL text per statement for SQLite and PostgreSQL ([`Dialect::sql`]).
//!
//! Each queue request's id is derived from its call's key (`RequestId::for_key`), so the
//! checkpoints are given by that id: xtask matches every request to its one checkpoint.

use std::collections::BTreeMap;

use anyhow::Context;
use batch_client::Database;
use batch_queue::RequestId;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

/// A batch-client record: id, idempotency key, state, attempts, lease owner, lease expiry
/// (ms), last error.
type Record = (
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    Option<String>,
);

/// Reads the facts of the database at `location` (a `postgres://` URL or an SQLite path).
pub(crate) fn run(location: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let facts = runtime.block_on(facts(location))?;
    println!("{facts}");
    Ok(())
}

async fn facts(location: &str) -> anyhow::Result<Value> {
    let db = Database::open(location)
        .await
        .context("opening the run's database")?;
    let jobs: Vec<(String, String)> = rows(&db, "SELECT id, status FROM server_jobs").await?;
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for (_, status) in &jobs {
        *by_status.entry(status.clone()).or_default() += 1;
    }
    let takeovers: Vec<(String, String)> = rows(
        &db,
        "SELECT job_id, body FROM server_job_events WHERE body LIKE '%\"job_taken_over\"%' \
         ORDER BY job_id, seq",
    )
    .await?;
    let takeovers: Vec<Value> = takeovers
        .into_iter()
        .map(|(job, body)| json!({"job": job, "event": serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body))}))
        .collect();
    let queue: Vec<(String, String, Option<String>)> =
        rows(&db, "SELECT id, state, tier FROM queue_requests").await?;
    let records: Vec<Record> = rows(
        &db,
        "SELECT id, idempotency_key, state, CAST(attempts AS BIGINT), lease_owner, \
         CAST(lease_until_ms AS BIGINT), last_error FROM batch_jobs",
    )
    .await?;
    let record_batches: Vec<(String, String, i64)> = rows(
        &db,
        "SELECT batch_id, job_id, CAST(attempt AS BIGINT) FROM batch_job_batches",
    )
    .await?;
    let calls: Vec<(String, String)> = rows(&db, "SELECT key, tier FROM search_calls").await?;
    let checkpoints: Vec<(String, String)> = calls
        .into_iter()
        .map(|(key, tier)| (RequestId::for_key(&key).as_str().to_owned(), tier))
        .collect();
    Ok(json!({
        "backend": db.backend(),
        "now_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "jobs": jobs.len(),
        "jobs_by_status": by_status,
        "takeovers": takeovers,
        "queue": queue,
        "records": records,
        "record_batches": record_batches,
        "checkpoints": checkpoints,
    }))
}

/// Every row of `sql` (written for SQLite, turned into PostgreSQL's placeholders when needed).
async fn rows<T>(db: &Database, sql: &str) -> anyhow::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    // The statements are this file's constants: nothing from outside is in them.
    let text = sqlx::AssertSqlSafe(db.dialect().sql(sql));
    let result = match db {
        Database::Sqlite(pool) => sqlx::query_as::<_, T>(text).fetch_all(pool).await,
        Database::Postgres(pool) => sqlx::query_as::<_, T>(text).fetch_all(pool).await,
    };
    result.with_context(|| format!("running `{sql}`"))
}
