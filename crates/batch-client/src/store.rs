//! Durable batch records: the `JobStore` trait and its SQLite implementation (sqlx, WAL).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use batch_format::ShardManifest;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::types::{BatchError, BatchStatus, RequestCounts};
use crate::{Error, Result};

/// Where a record is in its life, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// The intent is stored; the input may or may not be uploaded.
    Intent,
    /// The input file id is stored; the batch may or may not be created.
    Uploaded,
    /// The batch id is stored; it is being polled.
    Submitted,
    /// The batch failed with `token_limit_exceeded`; a new attempt waits its turn.
    WaitingResubmit,
    /// The batch ended; its result files are not downloaded yet.
    Ended,
    /// The batch ended and its result files are on disk (or it had none).
    Done,
    /// Stopped for good by an error that retrying cannot fix (see `last_error`).
    Error,
}

impl JobState {
    /// Snake-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Intent => "intent",
            JobState::Uploaded => "uploaded",
            JobState::Submitted => "submitted",
            JobState::WaitingResubmit => "waiting_resubmit",
            JobState::Ended => "ended",
            JobState::Done => "done",
            JobState::Error => "error",
        }
    }

    /// Whether nothing more will happen to the record.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Error)
    }
}

impl FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<JobState> {
        Ok(match s {
            "intent" => JobState::Intent,
            "uploaded" => JobState::Uploaded,
            "submitted" => JobState::Submitted,
            "waiting_resubmit" => JobState::WaitingResubmit,
            "ended" => JobState::Ended,
            "done" => JobState::Done,
            "error" => JobState::Error,
            other => return Err(Error::store(format!("unknown state '{other}'"))),
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a record's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Our state after the change.
    pub state: JobState,
    /// OpenAI's status after the change, once there is a batch.
    pub remote_status: Option<String>,
    /// What happened, e.g. `uploaded file-…`.
    pub detail: Option<String>,
}

/// Everything kept about one submitted shard. Never holds the API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Our id, `bb_` + a lowercase ULID.
    pub id: String,
    /// The shard's name.
    pub shard_name: String,
    /// The shard's custom ids, endpoint and model.
    pub manifest: ShardManifest,
    /// Tags the uploaded file's name and the batch's metadata, so a resumed submit can find them.
    pub idempotency_key: String,
    /// The JSONL input on disk.
    pub input_path: String,
    /// Its size.
    pub input_bytes: u64,
    /// Metadata given by the caller (ours is added when the batch is created).
    pub metadata: BTreeMap<String, String>,
    /// The uploaded input file.
    pub input_file_id: Option<String>,
    /// The current attempt's batch.
    pub batch_id: Option<String>,
    /// Our state.
    pub state: JobState,
    /// OpenAI's last reported status.
    pub remote_status: Option<BatchStatus>,
    /// OpenAI's last reported counts.
    pub request_counts: RequestCounts,
    /// Batches created for this record so far (1 + resubmissions).
    pub attempts: u32,
    /// Output file id.
    pub output_file_id: Option<String>,
    /// Error file id.
    pub error_file_id: Option<String>,
    /// The output file on disk.
    pub output_path: Option<String>,
    /// The error file on disk.
    pub error_path: Option<String>,
    /// A failed batch's validation errors.
    pub batch_errors: Vec<BatchError>,
    /// The last error met while carrying the record on.
    pub last_error: Option<String>,
    /// Whether we asked OpenAI to cancel.
    pub cancel_requested: bool,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
    /// When the current attempt's batch was created (Unix milliseconds).
    pub submitted_at_ms: Option<i64>,
    /// When the record is next due for a poll (Unix milliseconds).
    pub next_poll_at_ms: i64,
    /// The current polling interval.
    pub poll_interval_ms: i64,
    /// The submission (one input file, keyed by its content) this record is a shard of; `None`
    /// for a record submitted on its own with [`crate::BatchJobManager::submit_batch`].
    pub submission_id: Option<String>,
}

/// One input file as it was submitted with [`crate::BatchJobManager::submit_file`]: its content
/// key (endpoint and SHA-256 of its bytes) and its records, one per shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Ours: `bs_` + a lowercase ULID.
    pub id: String,
    /// `<endpoint> sha256:<hex>`: what makes two submissions the same.
    pub content_key: String,
    /// 0 for the first submission of this content; the ones made on purpose after it count up.
    pub seq: u32,
    /// The file as given (absolute).
    pub source_path: String,
    /// The endpoint every line targets.
    pub endpoint: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Request lines.
    pub lines: u64,
    /// Bytes.
    pub bytes: u64,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// Durable storage of batch records. SQLite ([`SqliteStore`]) is the default; a PostgreSQL
/// store implements the same trait.
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new record and its first history entry, atomically.
    fn insert(
        &self,
        record: &JobRecord,
        change: &StatusChange,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Replaces a record's row, with a history entry when `change` is given, atomically.
    fn update(
        &self,
        record: &JobRecord,
        change: Option<&StatusChange>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// A record by our id.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<JobRecord>>> + Send;
    /// A record by its current OpenAI batch id.
    fn find_by_batch_id(
        &self,
        batch_id: &str,
    ) -> impl Future<Output = Result<Option<JobRecord>>> + Send;
    /// Every record, newest first.
    fn list(&self) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;
    /// Records that are not `done` or `error`, oldest first.
    fn unfinished(&self) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;
    /// A record's history, oldest first.
    fn history(&self, id: &str) -> impl Future<Output = Result<Vec<StatusChange>>> + Send;
    /// Takes or renews the record's lease for `owner` until `until_ms`, unless another owner
    /// holds an unexpired one. `true` when `owner` now holds it.
    fn try_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Gives the lease back, if `owner` holds it.
    fn release_lease(&self, id: &str, owner: &str) -> impl Future<Output = Result<()>> + Send;
    /// Stores a submission and its records (each with its first history entry, each leased to
    /// `lease.0` until `lease.1`) atomically. `Ok(false)`, storing nothing, when a submission
    /// with the same content key and `seq` is already there (another process got there first).
    fn insert_submission(
        &self,
        submission: &Submission,
        records: &[(JobRecord, StatusChange)],
        lease: (&str, i64),
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The latest submission (highest `seq`) with this content key.
    fn find_submission(
        &self,
        content_key: &str,
    ) -> impl Future<Output = Result<Option<Submission>>> + Send;
    /// A submission's records, in shard order.
    fn submission_records(
        &self,
        submission_id: &str,
    ) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;
}

/// A [`JobStore`] in one SQLite file: WAL, a busy timeout, created when missing, migrated on
/// open.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and runs the migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options).await
    }

    /// Opens the database at `path`, which must exist (it is not created), and runs the
    /// migrations: for commands that only read records.
    pub async fn open_existing(path: &Path) -> Result<SqliteStore> {
        match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::Config(format!(
                    "{} is not a database file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoDatabase(path.display().to_string()));
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options).await
    }

    /// Opens a `sqlite:` URL, as `DATABASE_URL` names it.
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(Error::store)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<SqliteStore> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(Error::store)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(Error::store)?;
        Ok(SqliteStore { pool })
    }

    /// The connection pool, for a higher layer that keeps its own tables in the same database
    /// (batch-queue). It must leave `batch_jobs*` and `_sqlx_migrations` alone.
    pub fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const COLUMNS: &str = "id, shard_name, manifest, idempotency_key, endpoint, input_path, input_bytes, metadata, input_file_id, batch_id, state, remote_status, request_total, request_completed, request_failed, attempts, output_file_id, error_file_id, output_path, error_path, batch_errors, last_error, cancel_requested, created_at_ms, updated_at_ms, submitted_at_ms, next_poll_at_ms, poll_interval_ms, submission_id";

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::store)
}

fn bind_record<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    r: &JobRecord,
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>> {
    Ok(query
        .bind(r.id.clone())
        .bind(r.shard_name.clone())
        .bind(to_json(&r.manifest)?)
        .bind(r.idempotency_key.clone())
        .bind(r.manifest.endpoint.as_str())
        .bind(r.input_path.clone())
        .bind(r.input_bytes as i64)
        .bind(to_json(&r.metadata)?)
        .bind(r.input_file_id.clone())
        .bind(r.batch_id.clone())
        .bind(r.state.as_str())
        .bind(r.remote_status.as_ref().map(|s| s.as_str().to_owned()))
        .bind(r.request_counts.total as i64)
        .bind(r.request_counts.completed as i64)
        .bind(r.request_counts.failed as i64)
        .bind(i64::from(r.attempts))
        .bind(r.output_file_id.clone())
        .bind(r.error_file_id.clone())
        .bind(r.output_path.clone())
        .bind(r.error_path.clone())
        .bind(to_json(&r.batch_errors)?)
        .bind(r.last_error.clone())
        .bind(r.cancel_requested)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .bind(r.submitted_at_ms)
        .bind(r.next_poll_at_ms)
        .bind(r.poll_interval_ms)
        .bind(r.submission_id.clone()))
}

fn from_row(row: &SqliteRow) -> Result<JobRecord> {
    let text = |col: &str| row.try_get::<String, _>(col).map_err(Error::store);
    let opt = |col: &str| row.try_get::<Option<String>, _>(col).map_err(Error::store);
    let int = |col: &str| row.try_get::<i64, _>(col).map_err(Error::store);
    let json_err =
        |col: &'static str| move |e: serde_json::Error| Error::store(format!("{col}: {e}"));
    Ok(JobRecord {
        id: text("id")?,
        shard_name: text("shard_name")?,
        manifest: serde_json::from_str(&text("manifest")?).map_err(json_err("manifest"))?,
        idempotency_key: text("idempotency_key")?,
        input_path: text("input_path")?,
        input_bytes: int("input_bytes")?.max(0) as u64,
        metadata: serde_json::from_str(&text("metadata")?).map_err(json_err("metadata"))?,
        input_file_id: opt("input_file_id")?,
        batch_id: opt("batch_id")?,
        state: text("state")?.parse()?,
        remote_status: opt("remote_status")?.map(|s| BatchStatus::parse(&s)),
        request_counts: RequestCounts {
            total: int("request_total")?.max(0) as u64,
            completed: int("request_completed")?.max(0) as u64,
            failed: int("request_failed")?.max(0) as u64,
        },
        attempts: int("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
        output_file_id: opt("output_file_id")?,
        error_file_id: opt("error_file_id")?,
        output_path: opt("output_path")?,
        error_path: opt("error_path")?,
        batch_errors: serde_json::from_str(&text("batch_errors")?)
            .map_err(json_err("batch_errors"))?,
        last_error: opt("last_error")?,
        cancel_requested: row
            .try_get::<bool, _>("cancel_requested")
            .map_err(Error::store)?,
        created_at_ms: int("created_at_ms")?,
        updated_at_ms: int("updated_at_ms")?,
        submitted_at_ms: row
            .try_get::<Option<i64>, _>("submitted_at_ms")
            .map_err(Error::store)?,
        next_poll_at_ms: int("next_poll_at_ms")?,
        poll_interval_ms: int("poll_interval_ms")?,
        submission_id: opt("submission_id")?,
    })
}

fn submission_from_row(row: &SqliteRow) -> Result<Submission> {
    let text = |col: &str| row.try_get::<String, _>(col).map_err(Error::store);
    let int = |col: &str| row.try_get::<i64, _>(col).map_err(Error::store);
    Ok(Submission {
        id: text("id")?,
        content_key: text("content_key")?,
        seq: int("seq")?.clamp(0, i64::from(u32::MAX)) as u32,
        source_path: text("source_path")?,
        endpoint: text("endpoint")?,
        sha256: text("sha256")?,
        lines: int("lines")?.max(0) as u64,
        bytes: int("bytes")?.max(0) as u64,
        created_at_ms: int("created_at_ms")?,
    })
}

/// The `INSERT` of a whole record, one placeholder per column.
fn insert_sql() -> String {
    let marks = vec!["?"; COLUMNS.split(',').count()].join(", ");
    format!("INSERT INTO batch_jobs ({COLUMNS}) VALUES ({marks})")
}

async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    change: &StatusChange,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO batch_job_events (job_id, at_ms, state, remote_status, detail) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.to_owned())
    .bind(change.at_ms)
    .bind(change.state.as_str())
    .bind(change.remote_status.clone())
    .bind(change.detail.clone())
    .execute(&mut *conn)
    .await
    .map_err(Error::store)?;
    Ok(())
}

impl JobStore for SqliteStore {
    async fn insert(&self, record: &JobRecord, change: &StatusChange) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Error::store)?;
        bind_record(sqlx::query(sqlx::AssertSqlSafe(insert_sql())), record)?
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        insert_event(&mut tx, &record.id, change).await?;
        tx.commit().await.map_err(Error::store)
    }

    async fn update(&self, record: &JobRecord, change: Option<&StatusChange>) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Error::store)?;
        // Same column order as COLUMNS; `id` is bound first and matched last.
        let sql = "UPDATE batch_jobs SET id = ?1, shard_name = ?2, manifest = ?3, idempotency_key = ?4, endpoint = ?5, input_path = ?6, input_bytes = ?7, metadata = ?8, input_file_id = ?9, batch_id = ?10, state = ?11, remote_status = ?12, request_total = ?13, request_completed = ?14, request_failed = ?15, attempts = ?16, output_file_id = ?17, error_file_id = ?18, output_path = ?19, error_path = ?20, batch_errors = ?21, last_error = ?22, cancel_requested = ?23, created_at_ms = ?24, updated_at_ms = ?25, submitted_at_ms = ?26, next_poll_at_ms = ?27, poll_interval_ms = ?28, submission_id = ?29 WHERE id = ?1";
        let done = bind_record(sqlx::query(sql), record)?
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        if done.rows_affected() != 1 {
            return Err(Error::NotFound(record.id.clone()));
        }
        if let Some(batch_id) = &record.batch_id {
            sqlx::query(
                "INSERT OR IGNORE INTO batch_job_batches (batch_id, job_id, attempt, created_at_ms) VALUES (?, ?, ?, ?)",
            )
            .bind(batch_id.clone())
            .bind(record.id.clone())
            .bind(i64::from(record.attempts))
            .bind(record.updated_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        }
        if let Some(change) = change {
            insert_event(&mut tx, &record.id, change).await?;
        }
        tx.commit().await.map_err(Error::store)
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM batch_jobs WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::store)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn find_by_batch_id(&self, batch_id: &str) -> Result<Option<JobRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM batch_jobs WHERE batch_id = ?1 OR id = (SELECT job_id FROM batch_job_batches WHERE batch_id = ?1) LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(batch_id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::store)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn list(&self) -> Result<Vec<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM batch_jobs ORDER BY created_at_ms DESC, id DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(Error::store)?;
        rows.iter().map(from_row).collect()
    }

    async fn unfinished(&self) -> Result<Vec<JobRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM batch_jobs WHERE state NOT IN ('done', 'error') ORDER BY created_at_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(Error::store)?;
        rows.iter().map(from_row).collect()
    }

    async fn try_lease(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE batch_jobs SET lease_owner = ?2, lease_until_ms = ?3 WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until_ms < ?4)",
        )
        .bind(id.to_owned())
        .bind(owner.to_owned())
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::store)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE batch_jobs SET lease_owner = NULL, lease_until_ms = 0 WHERE id = ? AND lease_owner = ?",
        )
        .bind(id.to_owned())
        .bind(owner.to_owned())
        .execute(&self.pool)
        .await
        .map_err(Error::store)?;
        Ok(())
    }

    async fn insert_submission(
        &self,
        submission: &Submission,
        records: &[(JobRecord, StatusChange)],
        (owner, until_ms): (&str, i64),
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(Error::store)?;
        let inserted = sqlx::query(
            "INSERT INTO batch_submissions (id, content_key, seq, source_path, endpoint, sha256, lines, bytes, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(submission.id.clone())
        .bind(submission.content_key.clone())
        .bind(i64::from(submission.seq))
        .bind(submission.source_path.clone())
        .bind(submission.endpoint.clone())
        .bind(submission.sha256.clone())
        .bind(submission.lines as i64)
        .bind(submission.bytes as i64)
        .bind(submission.created_at_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(false),
            Err(e) => return Err(Error::store(e)),
        }
        for (record, change) in records {
            bind_record(sqlx::query(sqlx::AssertSqlSafe(insert_sql())), record)?
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
            insert_event(&mut tx, &record.id, change).await?;
        }
        sqlx::query(
            "UPDATE batch_jobs SET lease_owner = ?2, lease_until_ms = ?3 WHERE submission_id = ?1",
        )
        .bind(submission.id.clone())
        .bind(owner.to_owned())
        .bind(until_ms)
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)?;
        Ok(true)
    }

    async fn find_submission(&self, content_key: &str) -> Result<Option<Submission>> {
        let row = sqlx::query(
            "SELECT id, content_key, seq, source_path, endpoint, sha256, lines, bytes, created_at_ms FROM batch_submissions WHERE content_key = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(content_key.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::store)?;
        row.as_ref().map(submission_from_row).transpose()
    }

    async fn submission_records(&self, submission_id: &str) -> Result<Vec<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM batch_jobs WHERE submission_id = ?");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(submission_id.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(Error::store)?;
        let mut records = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        records.sort_by_key(|r| r.manifest.index);
        Ok(records)
    }

    async fn history(&self, id: &str) -> Result<Vec<StatusChange>> {
        let rows = sqlx::query(
            "SELECT at_ms, state, remote_status, detail FROM batch_job_events WHERE job_id = ? ORDER BY seq",
        )
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| {
                Ok(StatusChange {
                    at_ms: row.try_get("at_ms").map_err(Error::store)?,
                    state: row
                        .try_get::<String, _>("state")
                        .map_err(Error::store)?
                        .parse()?,
                    remote_status: row.try_get("remote_status").map_err(Error::store)?,
                    detail: row.try_get("detail").map_err(Error::store)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use batch_format::Endpoint;

    use super::*;

    fn record(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            shard_name: "s-0".into(),
            manifest: ShardManifest {
                shard_name: "s-0".into(),
                index: 0,
                endpoint: Endpoint::ChatCompletions,
                model: Some("gpt-4o-mini".into()),
                custom_ids: vec!["a".into(), "b".into()],
            },
            idempotency_key: format!("key-{id}"),
            input_path: "/tmp/in.jsonl".into(),
            input_bytes: 10,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            input_file_id: None,
            batch_id: None,
            state: JobState::Intent,
            remote_status: None,
            request_counts: RequestCounts::default(),
            attempts: 1,
            output_file_id: None,
            error_file_id: None,
            output_path: None,
            error_path: None,
            batch_errors: Vec::new(),
            last_error: None,
            cancel_requested: false,
            created_at_ms: 1,
            updated_at_ms: 1,
            submitted_at_ms: None,
            next_poll_at_ms: 0,
            poll_interval_ms: 30_000,
            submission_id: None,
        }
    }

    fn change(state: JobState) -> StatusChange {
        StatusChange {
            at_ms: 2,
            state,
            remote_status: None,
            detail: Some(state.as_str().into()),
        }
    }

    #[tokio::test]
    async fn records_round_trip_and_leases_exclude_other_owners() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nested").join("j.db"))
            .await
            .unwrap();
        let mut r = record("bb_1");
        store.insert(&r, &change(JobState::Intent)).await.unwrap();
        assert_eq!(store.get("bb_1").await.unwrap().unwrap(), r);

        r.state = JobState::Submitted;
        r.batch_id = Some("batch_a".into());
        r.remote_status = Some(BatchStatus::InProgress);
        r.batch_errors = vec![BatchError {
            line: Some(3),
            ..Default::default()
        }];
        store
            .update(&r, Some(&change(JobState::Submitted)))
            .await
            .unwrap();
        r.attempts = 2;
        r.batch_id = Some("batch_b".into());
        store.update(&r, None).await.unwrap();
        assert_eq!(store.get("bb_1").await.unwrap().unwrap(), r);
        // Both attempts' batch ids find the record.
        for b in ["batch_a", "batch_b"] {
            assert_eq!(store.find_by_batch_id(b).await.unwrap().unwrap().id, "bb_1");
        }
        assert!(store.find_by_batch_id("batch_c").await.unwrap().is_none());
        let history = store.history("bb_1").await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].state, JobState::Submitted);

        assert!(store.try_lease("bb_1", "p1", 100, 200).await.unwrap());
        assert!(
            !store.try_lease("bb_1", "p2", 150, 300).await.unwrap(),
            "held"
        );
        assert!(
            store.try_lease("bb_1", "p1", 150, 300).await.unwrap(),
            "renewed"
        );
        assert!(
            store.try_lease("bb_1", "p2", 301, 400).await.unwrap(),
            "expired"
        );
        store.release_lease("bb_1", "p1").await.unwrap();
        assert!(
            !store.try_lease("bb_1", "p1", 302, 400).await.unwrap(),
            "not p1's to release"
        );
        store.release_lease("bb_1", "p2").await.unwrap();
        assert!(store.try_lease("bb_1", "p1", 302, 400).await.unwrap());

        r.state = JobState::Done;
        store.update(&r, None).await.unwrap();
        store
            .insert(&record("bb_2"), &change(JobState::Intent))
            .await
            .unwrap();
        let unfinished: Vec<String> = store
            .unfinished()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(unfinished, ["bb_2"]);
        assert_eq!(store.list().await.unwrap().len(), 2);
        // The key is unique: a second record with the same key is refused.
        let mut dup = record("bb_3");
        dup.idempotency_key = "key-bb_1".into();
        assert!(store.insert(&dup, &change(JobState::Intent)).await.is_err());
        assert!(matches!(
            store.update(&record("bb_9"), None).await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn the_database_is_in_wal_mode_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        store
            .insert(&record("bb_1"), &change(JobState::Intent))
            .await
            .unwrap();
        store.close().await;
        let again = SqliteStore::open_url(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        assert!(again.get("bb_1").await.unwrap().is_some());
    }

    #[test]
    fn states_parse_back() {
        for s in [
            JobState::Intent,
            JobState::Uploaded,
            JobState::Submitted,
            JobState::WaitingResubmit,
            JobState::Ended,
            JobState::Done,
            JobState::Error,
        ] {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("nope".parse::<JobState>().is_err());
    }
}
