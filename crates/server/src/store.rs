//! Jobs and their events, durable: the [`JobStore`] trait and [`SqliteJobStore`], in the same
//! database as the sessions (the batch manager's pool), with its own migrations recorded in
//! [`MIGRATIONS_TABLE`]. The SQL is kept portable (no SQLite-only functions) and the lease
//! columns are there for running several servers on one PostgreSQL database later.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::{Row, SqlitePool};

use crate::Error;

/// The history table of the server's migrations.
pub const MIGRATIONS_TABLE: &str = "_server_migrations";

fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.set_ignore_missing(true);
    migrator
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// Parked on its stage's batches; no worker holds it.
    Waiting,
    /// Finished.
    Completed,
    /// Stopped by an error (its session keeps what finished).
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Waiting,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The status of a stored word.
    pub fn parse(word: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// Whether nothing more will happen to the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// `j_` + a lowercase ULID.
    pub id: String,
    /// The session, once started.
    pub session_id: Option<String>,
    /// Where it is.
    pub status: JobStatus,
    /// The accepted request (JSON).
    pub request: String,
    /// Stages finished.
    pub stage: i64,
    /// Stages in its plan.
    pub stages: i64,
    /// The iteration it is in.
    pub iteration: i64,
    /// The batch it waits on now.
    pub batch_id: Option<String>,
    /// Every batch of the job so far.
    pub batch_ids: Vec<String>,
    /// The call keys a waiting job waits on.
    pub wait_keys: Vec<String>,
    /// The estimate given when it was accepted (USD).
    pub estimated_cost: f64,
    /// The best candidate so far (JSON).
    pub best: Option<serde_json::Value>,
    /// What it cost (JSON), once finished.
    pub cost: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// The server process running it.
    pub owner: Option<String>,
    /// Until when that process holds it (ms since the epoch).
    pub lease_until: Option<i64>,
    /// When it was accepted.
    pub created_at_ms: i64,
    /// When a worker first took it.
    pub started_at_ms: Option<i64>,
    /// Last change.
    pub updated_at_ms: i64,
    /// When it finished, failed or was cancelled.
    pub finished_at_ms: Option<i64>,
}

impl JobRow {
    /// A new queued job.
    pub fn new(id: String, request: String, estimated_cost: f64, now_ms: i64) -> JobRow {
        JobRow {
            id,
            session_id: None,
            status: JobStatus::Queued,
            request,
            stage: 0,
            stages: 0,
            iteration: 0,
            batch_id: None,
            batch_ids: Vec::new(),
            wait_keys: Vec::new(),
            estimated_cost,
            best: None,
            cost: None,
            error: None,
            owner: None,
            lease_until: None,
            created_at_ms: now_ms,
            started_at_ms: None,
            updated_at_ms: now_ms,
            finished_at_ms: None,
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its number in the job, from 1.
    pub seq: i64,
    /// The message as sent.
    pub body: String,
}

/// What the server keeps about jobs, wherever it is kept.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Inserts or replaces a job.
    async fn save(&self, job: &JobRow) -> Result<(), Error>;
    /// A job, if the store holds it.
    async fn get(&self, id: &str) -> Result<Option<JobRow>, Error>;
    /// Jobs newest first, of `status` if given, after the cursor `(created_at_ms, id)`.
    async fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<(i64, String)>,
    ) -> Result<Vec<JobRow>, Error>;
    /// Every job of these statuses, oldest first.
    async fn with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRow>, Error>;
    /// How many jobs are in each status.
    async fn counts(&self) -> Result<Vec<(JobStatus, u64)>, Error>;
    /// Appends an event (`seq` must be the job's next).
    async fn append_event(&self, job: &str, seq: i64, at: &str, body: &str) -> Result<(), Error>;
    /// The job's events after `after_seq`, in order.
    async fn events(&self, job: &str, after_seq: i64) -> Result<Vec<StoredEvent>, Error>;
    /// The job's last event number (0 without events).
    async fn last_seq(&self, job: &str) -> Result<i64, Error>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), Error>;
}

/// [`JobStore`] in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    pool: SqlitePool,
}

const COLUMNS: &str = "id, session_id, status, request, stage, stages, iteration, batch_id, \
    batch_ids, wait_keys, estimated_cost, best, cost, error, owner, lease_until, created_at_ms, \
    started_at_ms, updated_at_ms, finished_at_ms";

impl SqliteJobStore {
    /// On an open pool (the stack's), its tables brought up to date.
    pub async fn new(pool: SqlitePool) -> Result<SqliteJobStore, Error> {
        migrator()
            .run(&pool)
            .await
            .map_err(|e| Error::Store(e.to_string()))?;
        Ok(SqliteJobStore { pool })
    }
}

fn store_err(e: sqlx::Error) -> Error {
    Error::Store(e.to_string())
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn row_of(r: &sqlx::sqlite::SqliteRow) -> Result<JobRow, Error> {
    let status: String = r.try_get("status").map_err(store_err)?;
    let text = |c: &str| -> Result<Option<String>, Error> { r.try_get(c).map_err(store_err) };
    let json = |c: &str| -> Result<Option<serde_json::Value>, Error> {
        Ok(text(c)?.and_then(|t| serde_json::from_str(&t).ok()))
    };
    Ok(JobRow {
        id: r.try_get("id").map_err(store_err)?,
        session_id: text("session_id")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| Error::Store(format!("unknown job status '{status}'")))?,
        request: r.try_get("request").map_err(store_err)?,
        stage: r.try_get("stage").map_err(store_err)?,
        stages: r.try_get("stages").map_err(store_err)?,
        iteration: r.try_get("iteration").map_err(store_err)?,
        batch_id: text("batch_id")?,
        batch_ids: json_list(&text("batch_ids")?.unwrap_or_default()),
        wait_keys: json_list(&text("wait_keys")?.unwrap_or_default()),
        estimated_cost: r.try_get("estimated_cost").map_err(store_err)?,
        best: json("best")?,
        cost: json("cost")?,
        error: text("error")?,
        owner: text("owner")?,
        lease_until: r.try_get("lease_until").map_err(store_err)?,
        created_at_ms: r.try_get("created_at_ms").map_err(store_err)?,
        started_at_ms: r.try_get("started_at_ms").map_err(store_err)?,
        updated_at_ms: r.try_get("updated_at_ms").map_err(store_err)?,
        finished_at_ms: r.try_get("finished_at_ms").map_err(store_err)?,
    })
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn save(&self, j: &JobRow) -> Result<(), Error> {
        let to_text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        let list = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO server_jobs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, status = excluded.status, \
             request = excluded.request, stage = excluded.stage, stages = excluded.stages, \
             iteration = excluded.iteration, batch_id = excluded.batch_id, batch_ids = excluded.batch_ids, \
             wait_keys = excluded.wait_keys, estimated_cost = excluded.estimated_cost, best = excluded.best, \
             cost = excluded.cost, error = excluded.error, owner = excluded.owner, \
             lease_until = excluded.lease_until, started_at_ms = excluded.started_at_ms, \
             updated_at_ms = excluded.updated_at_ms, finished_at_ms = excluded.finished_at_ms"
        )))
        .bind(j.id.clone())
        .bind(j.session_id.clone())
        .bind(j.status.as_str())
        .bind(j.request.clone())
        .bind(j.stage)
        .bind(j.stages)
        .bind(j.iteration)
        .bind(j.batch_id.clone())
        .bind(list(&j.batch_ids))
        .bind(list(&j.wait_keys))
        .bind(j.estimated_cost)
        .bind(to_text(&j.best))
        .bind(to_text(&j.cost))
        .bind(j.error.clone())
        .bind(j.owner.clone())
        .bind(j.lease_until)
        .bind(j.created_at_ms)
        .bind(j.started_at_ms)
        .bind(j.updated_at_ms)
        .bind(j.finished_at_ms)
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<JobRow>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM server_jobs WHERE id = ?"
        )))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        row.as_ref().map(row_of).transpose()
    }

    async fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<(i64, String)>,
    ) -> Result<Vec<JobRow>, Error> {
        let mut sql = format!("SELECT {COLUMNS} FROM server_jobs WHERE 1 = 1");
        if status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if after.is_some() {
            sql.push_str(" AND (created_at_ms < ? OR (created_at_ms = ? AND id < ?))");
        }
        sql.push_str(" ORDER BY created_at_ms DESC, id DESC LIMIT ?");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(s) = status {
            q = q.bind(s.as_str());
        }
        if let Some((ms, id)) = after {
            q = q.bind(ms).bind(ms).bind(id);
        }
        q = q.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = q.fetch_all(&self.pool).await.map_err(store_err)?;
        rows.iter().map(row_of).collect()
    }

    async fn with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRow>, Error> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; statuses.len()].join(", ");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM server_jobs WHERE status IN ({marks}) ORDER BY created_at_ms, id"
        )));
        for s in statuses {
            q = q.bind(s.as_str());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(store_err)?;
        rows.iter().map(row_of).collect()
    }

    async fn counts(&self) -> Result<Vec<(JobStatus, u64)>, Error> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM server_jobs GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        let mut out = Vec::new();
        for r in rows {
            let status: String = r.try_get("status").map_err(store_err)?;
            let n: i64 = r.try_get("n").map_err(store_err)?;
            if let Some(s) = JobStatus::parse(&status) {
                out.push((s, u64::try_from(n).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    async fn append_event(&self, job: &str, seq: i64, at: &str, body: &str) -> Result<(), Error> {
        sqlx::query("INSERT INTO server_job_events (job_id, seq, at, body) VALUES (?, ?, ?, ?)")
            .bind(job.to_owned())
            .bind(seq)
            .bind(at.to_owned())
            .bind(body.to_owned())
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn events(&self, job: &str, after_seq: i64) -> Result<Vec<StoredEvent>, Error> {
        let rows = sqlx::query(
            "SELECT seq, body FROM server_job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
        )
        .bind(job.to_owned())
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    seq: r.try_get("seq").map_err(store_err)?,
                    body: r.try_get("body").map_err(store_err)?,
                })
            })
            .collect()
    }

    async fn last_seq(&self, job: &str) -> Result<i64, Error> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS s FROM server_job_events WHERE job_id = ?",
        )
        .bind(job.to_owned())
        .fetch_one(&self.pool)
        .await
        .map_err(store_err)?;
        row.try_get("s").map_err(store_err)
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(())
    }
}
