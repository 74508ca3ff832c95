//! Jobs and their events, durable: the [`JobStore`] trait and [`DbJobStore`], in the process's
//! database (SQLite or PostgreSQL, shared with the sessions and the batch records), with its
//! own migrations per backend (`migrations/`, `migrations-postgres/`, the same versions)
//! recorded in [`MIGRATIONS_TABLE`]. Every statement is written once (`?N` placeholders,
//! [`Dialect::sql`](providers::Dialect::sql)).
//!
//! Several server instances share one database, so a job is leased: an instance claims it
//! (a compare-and-set on its owner and lease) before running it, renews the lease while it
//! runs, and every write of a running job's row is conditional on still owning it. A job
//! whose owner stopped renewing is claimed by another instance (a takeover, counted).

use async_trait::async_trait;
use providers::db::{self, Database};
use providers::on_pool;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The history table of the server's migrations.
pub const MIGRATIONS_TABLE: &str = "_server_migrations";

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
    /// The server instance running it.
    pub owner: Option<String>,
    /// Until when that instance holds it (ms since the epoch).
    pub lease_until: Option<i64>,
    /// Times another instance took it over after its owner's lease expired.
    pub takeovers: i64,
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
            takeovers: 0,
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

/// What the waiter reads of a job it watches: no request, no results.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// The job.
    pub id: String,
    /// `waiting`, or `running` (here, in poll mode).
    pub status: JobStatus,
    /// The batch a running job waits on now.
    pub batch_id: Option<String>,
    /// Every batch of the job so far.
    pub batch_ids: Vec<String>,
    /// The call keys a waiting job waits on.
    pub wait_keys: Vec<String>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The job is this instance's now (its row as claimed); `taken_from` is the instance whose
    /// lease had expired, when it was a takeover.
    Claimed {
        /// The row as claimed.
        row: JobRow,
        /// The previous owner, on a takeover.
        taken_from: Option<String>,
    },
    /// Another instance holds it, or it is parked, finished or gone: nothing to do here.
    NotClaimable,
    /// It was taken over too many times: failed instead (the row as failed).
    GaveUp(JobRow),
}

/// What the server keeps about jobs, wherever it is kept.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Inserts or replaces a job, every column (a new job; tests).
    async fn save(&self, job: &JobRow) -> Result<(), Error>;
    /// Writes a running job's row, if `owner` still holds it and it is still running (a cancel
    /// or a takeover makes this `false`, and the worker stops). The row's own `owner` and
    /// `lease_until` are written too: a job that parks or ends releases its lease this way.
    async fn save_owned(&self, job: &JobRow, owner: &str) -> Result<bool, Error>;
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
    /// Appends an event under `seq`; `false` when the job already has one of that number
    /// (another instance wrote it first: number it again).
    async fn append_event(&self, job: &str, seq: i64, at: &str, body: &str) -> Result<bool, Error>;
    /// The job's events after `after_seq`, in order.
    async fn events(&self, job: &str, after_seq: i64) -> Result<Vec<StoredEvent>, Error>;
    /// The job's last event, if it has one.
    async fn last_event(&self, job: &str) -> Result<Option<StoredEvent>, Error>;
    /// What the waiter of instance `owner` watches, oldest first: every waiting job, and the
    /// running ones `owner` holds (their batches are its to report). One read, no request or
    /// result columns.
    async fn watched(&self, owner: &str) -> Result<Vec<Watched>, Error>;
    /// The `status` of the job's last `batch_status` event about `batch`, if it has one: read
    /// from the end of its events, not all of them.
    async fn last_batch_status(&self, job: &str, batch: &str) -> Result<Option<String>, Error>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), Error>;

    /// The ids of the jobs `owner` may claim at `now_ms`, oldest first: queued ones, running
    /// ones whose lease expired (their instance died), and running ones `owner` itself held
    /// (an instance restarted under the same id).
    async fn claimable(&self, owner: &str, now_ms: i64) -> Result<Vec<String>, Error>;
    /// Claims job `id` for `owner` until `now_ms + lease_ms`, if it is queued, or running
    /// under an expired lease or `owner`'s own. A takeover is counted; one beyond
    /// `max_takeovers` fails the job with the reason instead.
    async fn claim(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        max_takeovers: i64,
    ) -> Result<Claim, Error>;
    /// Extends `owner`'s lease of running job `id` to `until_ms`; `false` when `owner` no
    /// longer holds it (cancelled, or taken over).
    async fn renew(&self, id: &str, owner: &str, until_ms: i64) -> Result<bool, Error>;
    /// Cancels job `id` unless it is final, wherever it runs (its owner sees it at its next
    /// renewal): the row as it is after, and whether this call cancelled it.
    async fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<(JobRow, bool)>, Error>;
    /// Takes a parked (waiting) job back to the queue; `false` when another instance did.
    async fn requeue_waiting(&self, id: &str, now_ms: i64) -> Result<bool, Error>;
    /// Puts `owner`'s running jobs back to the queue (it is shutting down); how many.
    async fn release_all(&self, owner: &str, now_ms: i64) -> Result<u64, Error>;
}

/// [`JobStore`] in the process's database, SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct DbJobStore {
    db: Database,
}

const COLUMNS: &str = "id, session_id, status, request, stage, stages, iteration, batch_id, \
    batch_ids, wait_keys, estimated_cost, best, cost, error, owner, lease_until, takeovers, \
    created_at_ms, started_at_ms, updated_at_ms, finished_at_ms";

/// The upsert of a whole row, bound by [`bind_row`].
const SAVE_SQL: &str = "INSERT INTO server_jobs (id, session_id, status, request, stage, stages, \
    iteration, batch_id, batch_ids, wait_keys, estimated_cost, best, cost, error, owner, \
    lease_until, takeovers, created_at_ms, started_at_ms, updated_at_ms, finished_at_ms) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21) \
    ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, status = excluded.status, \
    request = excluded.request, stage = excluded.stage, stages = excluded.stages, \
    iteration = excluded.iteration, batch_id = excluded.batch_id, batch_ids = excluded.batch_ids, \
    wait_keys = excluded.wait_keys, estimated_cost = excluded.estimated_cost, best = excluded.best, \
    cost = excluded.cost, error = excluded.error, owner = excluded.owner, \
    lease_until = excluded.lease_until, takeovers = excluded.takeovers, \
    started_at_ms = excluded.started_at_ms, updated_at_ms = excluded.updated_at_ms, \
    finished_at_ms = excluded.finished_at_ms";

/// The conditional write of a running job's row, bound by [`bind_row`] and then the owner
/// (`?22`). The takeover count (`?17`) and the creation time (`?18`) are bound and not
/// written: the count is the claims' to write, never a worker's.
const SAVE_OWNED_SQL: &str = "UPDATE server_jobs SET session_id = ?2, status = ?3, request = ?4, \
    stage = ?5, stages = ?6, iteration = ?7, batch_id = ?8, batch_ids = ?9, wait_keys = ?10, \
    estimated_cost = ?11, best = ?12, cost = ?13, error = ?14, owner = ?15, lease_until = ?16, \
    started_at_ms = ?19, updated_at_ms = ?20, finished_at_ms = ?21 \
    WHERE id = ?1 AND owner = ?22 AND status = 'running'";

const CLAIMABLE_SQL: &str = "SELECT id FROM server_jobs WHERE status = 'queued' \
    OR (status = 'running' AND (owner IS NULL OR owner = ?1 OR lease_until IS NULL OR lease_until < ?2)) \
    ORDER BY created_at_ms, id";

/// The compare-and-set of a claim: it takes the job only if its status, owner and lease are
/// still what the claimer read.
const CLAIM_SQL: &str = "UPDATE server_jobs SET status = 'running', owner = ?2, lease_until = ?3, \
    takeovers = takeovers + ?4, updated_at_ms = ?5 \
    WHERE id = ?1 AND status = ?6 AND COALESCE(owner, '') = ?7 AND COALESCE(lease_until, 0) = ?8";

/// The same compare-and-set, failing the job instead (taken over too many times).
const GIVE_UP_SQL: &str = "UPDATE server_jobs SET status = 'failed', error = ?2, owner = NULL, \
    lease_until = NULL, finished_at_ms = ?3, updated_at_ms = ?3 \
    WHERE id = ?1 AND status = ?4 AND COALESCE(owner, '') = ?5 AND COALESCE(lease_until, 0) = ?6";

const RENEW_SQL: &str = "UPDATE server_jobs SET lease_until = ?3 \
    WHERE id = ?1 AND owner = ?2 AND status = 'running'";

const CANCEL_SQL: &str = "UPDATE server_jobs SET status = 'cancelled', owner = NULL, \
    lease_until = NULL, finished_at_ms = ?2, updated_at_ms = ?2 \
    WHERE id = ?1 AND status NOT IN ('completed', 'failed', 'cancelled')";

const REQUEUE_WAITING_SQL: &str = "UPDATE server_jobs SET status = 'queued', batch_id = NULL, \
    wait_keys = '[]', updated_at_ms = ?2 WHERE id = ?1 AND status = 'waiting'";

const RELEASE_ALL_SQL: &str = "UPDATE server_jobs SET status = 'queued', owner = NULL, \
    lease_until = NULL, updated_at_ms = ?2 WHERE owner = ?1 AND status = 'running'";

const APPEND_EVENT_SQL: &str = "INSERT INTO server_job_events (job_id, seq, at, body) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (job_id, seq) DO NOTHING";
const EVENTS_SQL: &str =
    "SELECT seq, body FROM server_job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq";
const LAST_EVENT_SQL: &str =
    "SELECT seq, body FROM server_job_events WHERE job_id = ?1 ORDER BY seq DESC LIMIT 1";
const WATCHED_SQL: &str = "SELECT id, status, batch_id, batch_ids, wait_keys FROM server_jobs \
    WHERE status = 'waiting' OR (status = 'running' AND owner = ?1) ORDER BY created_at_ms, id";
/// The job's last event of type `batch_status` about one batch (`?2`, `?3`: `LIKE` patterns
/// for the type and the batch, `\` escaping), newest first by the primary key.
const LAST_BATCH_STATUS_SQL: &str = "SELECT body FROM server_job_events WHERE job_id = ?1 \
    AND body LIKE ?2 ESCAPE '\\' AND body LIKE ?3 ESCAPE '\\' ORDER BY seq DESC LIMIT 1";
const COUNTS_SQL: &str = "SELECT status, COUNT(*) FROM server_jobs GROUP BY status";

impl DbJobStore {
    /// On the process's database, its tables brought up to date.
    pub async fn new(db: Database) -> Result<DbJobStore, Error> {
        db::migrate(
            &db,
            sqlx::migrate!("./migrations"),
            sqlx::migrate!("./migrations-postgres"),
            MIGRATIONS_TABLE,
        )
        .await
        .map_err(|e| Error::Store(e.to_string()))?;
        Ok(DbJobStore { db })
    }

    /// The database it is in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn sql(&self, text: &str) -> sqlx::AssertSqlSafe<String> {
        db::sql(&self.db, text)
    }

    /// Runs a statement that changes rows; how many it changed.
    async fn changed(
        &self,
        text: &str,
        bind: impl FnOnce(Binder) -> Binder + Send,
    ) -> Result<u64, Error> {
        let values = bind(Binder::default()).0;
        let sql = self.sql(text);
        on_pool!(&self.db, |pool| {
            let mut q = sqlx::query(sql);
            for v in values {
                q = match v {
                    Value::Text(t) => q.bind(t),
                    Value::Int(i) => q.bind(i),
                    Value::Real(f) => q.bind(f),
                };
            }
            q.execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(store_err)
    }

    async fn rows(&self, text: &str, values: Vec<Value>) -> Result<Vec<JobRow>, Error> {
        let sql = self.sql(text);
        let rows: Vec<RawJob> = on_pool!(&self.db, |pool| {
            let mut q = sqlx::query_as(sql);
            for v in values {
                q = match v {
                    Value::Text(t) => q.bind(t),
                    Value::Int(i) => q.bind(i),
                    Value::Real(f) => q.bind(f),
                };
            }
            q.fetch_all(pool).await
        })
        .map_err(store_err)?;
        rows.into_iter().map(RawJob::checked).collect()
    }
}

/// A value bound to a statement: the few types the server's columns have (a NULL is a
/// `Text(None)` or an `Int(None)`).
#[derive(Debug, Clone)]
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Real(f64),
}

/// The values of a statement, in placeholder order.
#[derive(Debug, Default)]
struct Binder(Vec<Value>);

impl Binder {
    fn text(mut self, v: impl Into<String>) -> Binder {
        self.0.push(Value::Text(Some(v.into())));
        self
    }
    fn opt_text(mut self, v: Option<String>) -> Binder {
        self.0.push(Value::Text(v));
        self
    }
    fn int(mut self, v: i64) -> Binder {
        self.0.push(Value::Int(Some(v)));
        self
    }
    fn opt_int(mut self, v: Option<i64>) -> Binder {
        self.0.push(Value::Int(v));
        self
    }
    fn real(mut self, v: f64) -> Binder {
        self.0.push(Value::Real(v));
        self
    }
}

/// Every column of `j`, in [`COLUMNS`]' order (`?1` to `?21`).
fn bind_row(b: Binder, j: &JobRow) -> Binder {
    let to_text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    let list = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    b.text(j.id.clone())
        .opt_text(j.session_id.clone())
        .text(j.status.as_str())
        .text(j.request.clone())
        .int(j.stage)
        .int(j.stages)
        .int(j.iteration)
        .opt_text(j.batch_id.clone())
        .text(list(&j.batch_ids))
        .text(list(&j.wait_keys))
        .real(j.estimated_cost)
        .opt_text(to_text(&j.best))
        .opt_text(to_text(&j.cost))
        .opt_text(j.error.clone())
        .opt_text(j.owner.clone())
        .opt_int(j.lease_until)
        .int(j.takeovers)
        .int(j.created_at_ms)
        .opt_int(j.started_at_ms)
        .int(j.updated_at_ms)
        .opt_int(j.finished_at_ms)
}

fn store_err(e: sqlx::Error) -> Error {
    Error::Store(e.to_string())
}

/// `text` matched literally inside a `LIKE … ESCAPE '\'` pattern.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A `server_jobs` row as read.
#[derive(sqlx::FromRow)]
struct RawJob {
    id: String,
    session_id: Option<String>,
    status: String,
    request: String,
    stage: i64,
    stages: i64,
    iteration: i64,
    batch_id: Option<String>,
    batch_ids: String,
    wait_keys: String,
    estimated_cost: f64,
    best: Option<String>,
    cost: Option<String>,
    error: Option<String>,
    owner: Option<String>,
    lease_until: Option<i64>,
    takeovers: i64,
    created_at_ms: i64,
    started_at_ms: Option<i64>,
    updated_at_ms: i64,
    finished_at_ms: Option<i64>,
}

impl RawJob {
    fn checked(self) -> Result<JobRow, Error> {
        let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
        Ok(JobRow {
            status: JobStatus::parse(&self.status)
                .ok_or_else(|| Error::Store(format!("unknown job status '{}'", self.status)))?,
            id: self.id,
            session_id: self.session_id,
            request: self.request,
            stage: self.stage,
            stages: self.stages,
            iteration: self.iteration,
            batch_id: self.batch_id,
            batch_ids: json_list(&self.batch_ids),
            wait_keys: json_list(&self.wait_keys),
            estimated_cost: self.estimated_cost,
            best: json(self.best),
            cost: json(self.cost),
            error: self.error,
            owner: self.owner,
            lease_until: self.lease_until,
            takeovers: self.takeovers,
            created_at_ms: self.created_at_ms,
            started_at_ms: self.started_at_ms,
            updated_at_ms: self.updated_at_ms,
            finished_at_ms: self.finished_at_ms,
        })
    }
}

#[async_trait]
impl JobStore for DbJobStore {
    async fn save(&self, j: &JobRow) -> Result<(), Error> {
        self.changed(SAVE_SQL, |b| bind_row(b, j)).await?;
        Ok(())
    }

    async fn save_owned(&self, j: &JobRow, owner: &str) -> Result<bool, Error> {
        let n = self
            .changed(SAVE_OWNED_SQL, |b| bind_row(b, j).text(owner))
            .await?;
        Ok(n == 1)
    }

    async fn get(&self, id: &str) -> Result<Option<JobRow>, Error> {
        let mut rows = self
            .rows(
                &format!("SELECT {COLUMNS} FROM server_jobs WHERE id = ?1"),
                vec![Value::Text(Some(id.to_owned()))],
            )
            .await?;
        Ok(rows.pop())
    }

    async fn list(
        &self,
        status: Option<JobStatus>,
        limit: usize,
        after: Option<(i64, String)>,
    ) -> Result<Vec<JobRow>, Error> {
        let mut sql = format!("SELECT {COLUMNS} FROM server_jobs WHERE 1 = 1");
        let mut values = Vec::new();
        if let Some(s) = status {
            sql.push_str(" AND status = ?");
            values.push(Value::Text(Some(s.as_str().to_owned())));
        }
        if let Some((ms, id)) = after {
            sql.push_str(" AND (created_at_ms < ? OR (created_at_ms = ? AND id < ?))");
            values.extend([
                Value::Int(Some(ms)),
                Value::Int(Some(ms)),
                Value::Text(Some(id)),
            ]);
        }
        sql.push_str(" ORDER BY created_at_ms DESC, id DESC LIMIT ?");
        values.push(Value::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX))));
        self.rows(&sql, values).await
    }

    async fn with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRow>, Error> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; statuses.len()].join(", ");
        let values = statuses
            .iter()
            .map(|s| Value::Text(Some(s.as_str().to_owned())))
            .collect();
        self.rows(
            &format!(
                "SELECT {COLUMNS} FROM server_jobs WHERE status IN ({marks}) ORDER BY created_at_ms, id"
            ),
            values,
        )
        .await
    }

    async fn counts(&self) -> Result<Vec<(JobStatus, u64)>, Error> {
        let rows: Vec<(String, i64)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(COUNTS_SQL).fetch_all(pool).await
        })
        .map_err(store_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((JobStatus::parse(&s)?, u64::try_from(n).unwrap_or(0))))
            .collect())
    }

    async fn append_event(&self, job: &str, seq: i64, at: &str, body: &str) -> Result<bool, Error> {
        let n = self
            .changed(APPEND_EVENT_SQL, |b| {
                b.text(job).int(seq).text(at).text(body)
            })
            .await?;
        Ok(n == 1)
    }

    async fn events(&self, job: &str, after_seq: i64) -> Result<Vec<StoredEvent>, Error> {
        let sql = self.sql(EVENTS_SQL);
        let rows: Vec<(i64, String)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(sql)
                .bind(job)
                .bind(after_seq)
                .fetch_all(pool)
                .await
        })
        .map_err(store_err)?;
        Ok(rows
            .into_iter()
            .map(|(seq, body)| StoredEvent { seq, body })
            .collect())
    }

    async fn last_event(&self, job: &str) -> Result<Option<StoredEvent>, Error> {
        let sql = self.sql(LAST_EVENT_SQL);
        let row: Option<(i64, String)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(sql).bind(job).fetch_optional(pool).await
        })
        .map_err(store_err)?;
        Ok(row.map(|(seq, body)| StoredEvent { seq, body }))
    }

    async fn watched(&self, owner: &str) -> Result<Vec<Watched>, Error> {
        let sql = self.sql(WATCHED_SQL);
        let rows: Vec<(String, String, Option<String>, String, String)> =
            on_pool!(&self.db, |pool| {
                sqlx::query_as(sql).bind(owner).fetch_all(pool).await
            })
            .map_err(store_err)?;
        rows.into_iter()
            .map(|(id, status, batch_id, batch_ids, wait_keys)| {
                Ok(Watched {
                    status: JobStatus::parse(&status)
                        .ok_or_else(|| Error::Store(format!("unknown job status '{status}'")))?,
                    id,
                    batch_id,
                    batch_ids: json_list(&batch_ids),
                    wait_keys: json_list(&wait_keys),
                })
            })
            .collect()
    }

    async fn last_batch_status(&self, job: &str, batch: &str) -> Result<Option<String>, Error> {
        let sql = self.sql(LAST_BATCH_STATUS_SQL);
        let kind = format!("%{}%", like_escaped(r#""type":"batch_status""#));
        let batch_field = serde_json::to_string(batch).unwrap_or_default();
        let about = format!("%{}%", like_escaped(&format!(r#""batchId":{batch_field}"#)));
        let body: Option<String> = on_pool!(&self.db, |pool| {
            sqlx::query_scalar(sql)
                .bind(job)
                .bind(kind)
                .bind(about)
                .fetch_optional(pool)
                .await
        })
        .map_err(store_err)?;
        Ok(body
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["status"].as_str().map(str::to_owned)))
    }

    async fn ping(&self) -> Result<(), Error> {
        on_pool!(&self.db, |pool| {
            sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
        })
        .map_err(store_err)
    }

    async fn claimable(&self, owner: &str, now_ms: i64) -> Result<Vec<String>, Error> {
        let sql = self.sql(CLAIMABLE_SQL);
        on_pool!(&self.db, |pool| {
            sqlx::query_scalar(sql)
                .bind(owner)
                .bind(now_ms)
                .fetch_all(pool)
                .await
        })
        .map_err(store_err)
    }

    async fn claim(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        max_takeovers: i64,
    ) -> Result<Claim, Error> {
        let Some(row) = self.get(id).await? else {
            return Ok(Claim::NotClaimable);
        };
        let held_by = row.owner.clone().filter(|o| !o.is_empty());
        let expired = row.lease_until.is_none_or(|t| t < now_ms);
        let taken_from = match (row.status, &held_by) {
            (JobStatus::Queued, _) => None,
            (JobStatus::Running, None) => None,
            (JobStatus::Running, Some(o)) if o == owner => None,
            (JobStatus::Running, Some(o)) if expired => Some(o.clone()),
            _ => return Ok(Claim::NotClaimable),
        };
        let read = |b: Binder| {
            b.text(row.status.as_str())
                .text(held_by.clone().unwrap_or_default())
                .int(row.lease_until.unwrap_or(0))
        };
        if taken_from.is_some() && row.takeovers >= max_takeovers {
            let reason = format!(
                "its instance stopped renewing its lease {} times (last {}): not retried again",
                row.takeovers + 1,
                held_by.as_deref().unwrap_or("unknown"),
            );
            let n = self
                .changed(GIVE_UP_SQL, |b| read(b.text(id).text(reason).int(now_ms)))
                .await?;
            return match (n, self.get(id).await?) {
                (1, Some(row)) => Ok(Claim::GaveUp(row)),
                _ => Ok(Claim::NotClaimable),
            };
        }
        let n = self
            .changed(CLAIM_SQL, |b| {
                read(
                    b.text(id)
                        .text(owner)
                        .int(now_ms.saturating_add(lease_ms))
                        .int(i64::from(taken_from.is_some()))
                        .int(now_ms),
                )
            })
            .await?;
        if n != 1 {
            return Ok(Claim::NotClaimable);
        }
        match self.get(id).await? {
            Some(row) => Ok(Claim::Claimed { row, taken_from }),
            None => Ok(Claim::NotClaimable),
        }
    }

    async fn renew(&self, id: &str, owner: &str, until_ms: i64) -> Result<bool, Error> {
        let n = self
            .changed(RENEW_SQL, |b| b.text(id).text(owner).int(until_ms))
            .await?;
        Ok(n == 1)
    }

    async fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<(JobRow, bool)>, Error> {
        let n = self.changed(CANCEL_SQL, |b| b.text(id).int(now_ms)).await?;
        Ok(self.get(id).await?.map(|row| (row, n == 1)))
    }

    async fn requeue_waiting(&self, id: &str, now_ms: i64) -> Result<bool, Error> {
        let n = self
            .changed(REQUEUE_WAITING_SQL, |b| b.text(id).int(now_ms))
            .await?;
        Ok(n == 1)
    }

    async fn release_all(&self, owner: &str, now_ms: i64) -> Result<u64, Error> {
        self.changed(RELEASE_ALL_SQL, |b| b.text(owner).int(now_ms))
            .await
    }
}

#[cfg(test)]
mod tests;
