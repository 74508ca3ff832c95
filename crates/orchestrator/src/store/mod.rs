//! Checkpoints in the database: each session's parameters and state after every finished
//! stage, every call result as it arrives, and each stage's record (tier, calls, batches).
//! Every SQL statement of the orchestrator is here, each written once for SQLite and
//! PostgreSQL (`?N` placeholders, [`Dialect::sql`](providers::Dialect::sql)); the search
//! reaches them through the [`CheckpointStore`] trait, which [`SessionStore`] implements on
//! the process's [`Database`].
//!
//! The tables, all prefixed `search_`, sit beside the batch manager's and the queue's in one
//! database. They are made by this crate's migrations (`crates/orchestrator/migrations/`, and
//! `migrations-postgres/` with the same versions), recorded in a history table of their own
//! ([`MIGRATIONS_TABLE`]): batch-client's `_sqlx_migrations` never sees them, so neither set
//! can reject or shadow the other's versions (ours are numbered from 40000000000001 as well,
//! layer 4).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use providers::db::{self, Database};
use providers::on_pool;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::{Error, Result};

mod report;
#[cfg(test)]
mod tests;

pub use report::{BestSoFar, SessionReport, SessionSummary};

/// The history table of the orchestrator's migrations (batch-client keeps `_sqlx_migrations`).
pub const MIGRATIONS_TABLE: &str = "_orchestrator_migrations";

/// Brings the orchestrator's tables in `db` up to date (its migrations for the backend,
/// recorded in [`MIGRATIONS_TABLE`]).
async fn migrate(db: &Database) -> Result<()> {
    db::migrate(
        db,
        sqlx::migrate!("./migrations"),
        sqlx::migrate!("./migrations-postgres"),
        MIGRATIONS_TABLE,
    )
    .await
    .map_err(|source| Error::Migrate { source })
}

const CREATE_SQL: &str = "INSERT INTO search_sessions (id, idea, params, state, folder, next_stage, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, 'running', ?4, 0, ?5, ?5)";
const SESSION_SQL: &str = "SELECT id, idea, params, state, folder, next_stage, snapshot FROM search_sessions WHERE id = ?1";
const SESSIONS_SQL: &str = "SELECT id, idea, params, state, folder, next_stage, snapshot FROM search_sessions ORDER BY created_at_ms DESC, id DESC";
const CHECKPOINT_SQL: &str =
    "UPDATE search_sessions SET next_stage = ?2, snapshot = ?3, updated_at_ms = ?4 WHERE id = ?1";
const SET_STATE_SQL: &str =
    "UPDATE search_sessions SET state = ?2, updated_at_ms = ?3 WHERE id = ?1";
const CALL_SQL: &str = "SELECT record FROM search_calls WHERE session_id = ?1 AND key = ?2";
const PUT_CALL_SQL: &str = "INSERT INTO search_calls (session_id, key, operation, tier, record, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (session_id, key) DO NOTHING";
const PUT_STAGE_SQL: &str = "INSERT INTO search_stages (session_id, idx, iteration, kind, tier, calls, reused, batch_ids, started_at_ms, finished_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (session_id, idx) DO UPDATE SET iteration = excluded.iteration, kind = excluded.kind, tier = excluded.tier, calls = excluded.calls, reused = excluded.reused, batch_ids = excluded.batch_ids, started_at_ms = excluded.started_at_ms, finished_at_ms = excluded.finished_at_ms";
const STAGES_SQL: &str = "SELECT idx, iteration, kind, tier, calls, reused, batch_ids, started_at_ms, finished_at_ms FROM search_stages WHERE session_id = ?1 ORDER BY idx";
/// Whether the session table exists, per backend (for a read-only open, which migrates
/// nothing).
const SQLITE_HAS_TABLE_SQL: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'search_sessions'";
const POSTGRES_HAS_TABLE_SQL: &str = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'search_sessions'";

/// A session's state in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Started or interrupted: resumable.
    Running,
    /// Finished.
    Completed,
    /// Stopped by an error (resumable: finished stages and calls are kept).
    Failed,
}

impl SessionState {
    fn as_str(self) -> &'static str {
        match self {
            SessionState::Running => "running",
            SessionState::Completed => "completed",
            SessionState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<SessionState> {
        match s {
            "running" => Some(SessionState::Running),
            "completed" => Some(SessionState::Completed),
            "failed" => Some(SessionState::Failed),
            _ => None,
        }
    }
}

/// A session row.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The session id.
    pub id: String,
    /// The idea.
    pub idea: String,
    /// The parameters, as JSON.
    pub params: String,
    /// Its state.
    pub state: SessionState,
    /// Its folder.
    pub folder: Option<String>,
    /// The first stage not yet finished.
    pub next_stage: usize,
    /// The state after the last finished stage, as JSON.
    pub snapshot: Option<String>,
}

/// One finished or running stage, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Its place in the plan (0-based).
    pub index: usize,
    /// Its iteration.
    pub iteration: u32,
    /// What it does.
    pub kind: String,
    /// The tier its calls went to.
    pub tier: String,
    /// Calls it needed.
    pub calls: usize,
    /// Calls answered from checkpoints instead of being sent.
    pub reused: usize,
    /// Batches that carried its calls.
    pub batch_ids: Vec<String>,
    /// When it started, in ms since the epoch.
    pub started_at_ms: i64,
    /// When it finished.
    pub finished_at_ms: Option<i64>,
}

/// The checkpoint store, on the process's database (SQLite or PostgreSQL).
#[derive(Debug, Clone)]
pub struct SessionStore {
    db: Database,
    /// Opened read-only on a database without the session tables (the batch manager's
    /// alone): it holds no sessions.
    empty: bool,
}

pub(crate) use providers::now_ms;

impl SessionStore {
    /// Opens (creating) the SQLite file at `path`, and brings its tables up to date.
    pub async fn open(path: &Path) -> Result<SessionStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| Error::Io {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let options = sqlite_options(path)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::store(path.display(), e))?;
        SessionStore::on(Database::Sqlite(pool)).await
    }

    /// Opens the SQLite file at `path` read-only, for commands that only read (`sessions`,
    /// `cost report`): creates nothing, neither the file nor its folder nor a table, and a
    /// missing file is [`Error::NoDatabase`].
    pub async fn open_read_only(path: &Path) -> Result<SessionStore> {
        let is_file = tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file());
        if !is_file {
            return Err(Error::NoDatabase {
                path: path.to_owned(),
            });
        }
        let options = sqlite_options(path)?.read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| Error::store(path.display(), e))?;
        SessionStore::reading(Database::Sqlite(pool)).await
    }

    /// On an open SQLite pool, its tables brought up to date ([`SessionStore::on`] with
    /// `Database::Sqlite`).
    pub async fn new(pool: sqlx::SqlitePool) -> Result<SessionStore> {
        SessionStore::on(Database::Sqlite(pool)).await
    }

    /// On an open database (the process's, so that one database holds everything), its
    /// tables brought up to date.
    pub async fn on(db: Database) -> Result<SessionStore> {
        migrate(&db).await?;
        Ok(SessionStore { db, empty: false })
    }

    /// On an open database, for commands that only read: no table is made (a database
    /// without the session tables holds no sessions).
    pub async fn reading(db: Database) -> Result<SessionStore> {
        let tables: i64 = on_pool!(&db, |pool| {
            let sql = match db.dialect() {
                providers::Dialect::Sqlite => SQLITE_HAS_TABLE_SQL,
                providers::Dialect::Postgres => POSTGRES_HAS_TABLE_SQL,
            };
            sqlx::query_scalar(sql).fetch_one(pool).await
        })
        .map_err(|e| Error::store("looking for the session tables", e))?;
        Ok(SessionStore {
            db,
            empty: tables == 0,
        })
    }

    /// The database it is in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn sql(&self, text: &str) -> sqlx::AssertSqlSafe<String> {
        db::sql(&self.db, text)
    }

    /// Records a new session.
    pub async fn create(&self, id: &str, idea: &str, params: &str, folder: &str) -> Result<()> {
        let sql = self.sql(CREATE_SQL);
        on_pool!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(id)
                .bind(idea)
                .bind(params)
                .bind(folder)
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| Error::store(format_args!("creating session {id}"), e))?;
        Ok(())
    }

    /// A session, if the database holds it.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        if self.empty {
            return Ok(None);
        }
        let sql = self.sql(SESSION_SQL);
        let row: Option<RawSession> = on_pool!(&self.db, |pool| {
            sqlx::query_as(sql).bind(id).fetch_optional(pool).await
        })
        .map_err(|e| Error::store(format_args!("reading session {id}"), e))?;
        row.map(RawSession::checked).transpose()
    }

    /// Every session, newest first.
    pub async fn sessions(&self) -> Result<Vec<SessionRow>> {
        if self.empty {
            return Ok(Vec::new());
        }
        let rows: Vec<RawSession> = on_pool!(&self.db, |pool| {
            sqlx::query_as(SESSIONS_SQL).fetch_all(pool).await
        })
        .map_err(|e| Error::store("listing sessions", e))?;
        rows.into_iter().map(RawSession::checked).collect()
    }

    /// The checkpoint after a finished stage: the state and the next stage to run.
    pub async fn checkpoint(&self, id: &str, next_stage: usize, snapshot: &str) -> Result<()> {
        let sql = self.sql(CHECKPOINT_SQL);
        on_pool!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(id)
                .bind(i64::try_from(next_stage).unwrap_or(i64::MAX))
                .bind(snapshot)
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| Error::store(format_args!("checkpointing session {id}"), e))?;
        Ok(())
    }

    /// Sets the session's state.
    pub async fn set_state(&self, id: &str, state: SessionState) -> Result<()> {
        let sql = self.sql(SET_STATE_SQL);
        on_pool!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(id)
                .bind(state.as_str())
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| Error::store(format_args!("setting the state of session {id}"), e))?;
        Ok(())
    }

    /// A call's stored record, if it finished before.
    pub async fn call(&self, session: &str, key: &str) -> Result<Option<String>> {
        let sql = self.sql(CALL_SQL);
        on_pool!(&self.db, |pool| {
            sqlx::query_scalar(sql)
                .bind(session)
                .bind(key)
                .fetch_optional(pool)
                .await
        })
        .map_err(|e| Error::store(format_args!("reading call {key}"), e))
    }

    /// Stores a finished call's record (once; a repeat keeps the first).
    pub async fn put_call(
        &self,
        session: &str,
        key: &str,
        operation: &str,
        tier: &str,
        record: &str,
    ) -> Result<()> {
        let sql = self.sql(PUT_CALL_SQL);
        on_pool!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(session)
                .bind(key)
                .bind(operation)
                .bind(tier)
                .bind(record)
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| Error::store(format_args!("storing call {key}"), e))?;
        Ok(())
    }

    /// Records a stage (insert or replace: a resumed stage is recorded again).
    pub async fn put_stage(&self, session: &str, stage: &StageRecord) -> Result<()> {
        let batch_ids = serde_json::to_string(&stage.batch_ids).map_err(Error::Encode)?;
        let sql = self.sql(PUT_STAGE_SQL);
        on_pool!(&self.db, |pool| {
            sqlx::query(sql)
                .bind(session)
                .bind(i64::try_from(stage.index).unwrap_or(i64::MAX))
                .bind(i64::from(stage.iteration))
                .bind(&stage.kind)
                .bind(&stage.tier)
                .bind(i64::try_from(stage.calls).unwrap_or(i64::MAX))
                .bind(i64::try_from(stage.reused).unwrap_or(i64::MAX))
                .bind(&batch_ids)
                .bind(stage.started_at_ms)
                .bind(stage.finished_at_ms)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(|e| {
            Error::store(
                format_args!("storing stage {} of session {session}", stage.index),
                e,
            )
        })?;
        Ok(())
    }

    /// A session's stages, in order.
    pub async fn stages(&self, session: &str) -> Result<Vec<StageRecord>> {
        let sql = self.sql(STAGES_SQL);
        let rows: Vec<RawStage> = on_pool!(&self.db, |pool| {
            sqlx::query_as(sql).bind(session).fetch_all(pool).await
        })
        .map_err(|e| Error::store(format_args!("reading the stages of session {session}"), e))?;
        rows.into_iter().map(|r| r.checked(session)).collect()
    }
}

/// The checkpoints a search reads and writes, wherever they are kept ([`SessionStore`]:
/// SQLite). Session reports come with it.
#[async_trait]
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Records a new session.
    async fn create(&self, id: &str, idea: &str, params: &str, folder: &str) -> Result<()>;
    /// A session, if the store holds it.
    async fn session(&self, id: &str) -> Result<Option<SessionRow>>;
    /// Every session, newest first.
    async fn sessions(&self) -> Result<Vec<SessionRow>>;
    /// The state after a finished stage and the next stage to run.
    async fn checkpoint(&self, id: &str, next_stage: usize, snapshot: &str) -> Result<()>;
    /// Sets a session's state.
    async fn set_state(&self, id: &str, state: SessionState) -> Result<()>;
    /// A call's stored record, if it finished before.
    async fn call(&self, session: &str, key: &str) -> Result<Option<String>>;
    /// Stores a finished call's record (once; a repeat keeps the first).
    async fn put_call(
        &self,
        session: &str,
        key: &str,
        operation: &str,
        tier: &str,
        record: &str,
    ) -> Result<()>;
    /// Records a stage (a resumed stage replaces its record).
    async fn put_stage(&self, session: &str, stage: &StageRecord) -> Result<()>;
    /// A session's stages, in order.
    async fn stages(&self, session: &str) -> Result<Vec<StageRecord>>;

    /// Session `id`'s report: its parameters, progress and cost so far.
    async fn report(&self, id: &str) -> Result<SessionReport> {
        let row = self
            .session(id)
            .await?
            .ok_or_else(|| Error::UnknownSession(id.to_owned()))?;
        SessionReport::of(&row)
    }

    /// Every session in a line: newest first, those whose parameters cannot be read with
    /// what is known.
    async fn summaries(&self) -> Result<Vec<SessionSummary>> {
        Ok(self
            .sessions()
            .await?
            .iter()
            .map(SessionSummary::of)
            .collect())
    }
}

#[async_trait]
impl CheckpointStore for SessionStore {
    async fn create(&self, id: &str, idea: &str, params: &str, folder: &str) -> Result<()> {
        SessionStore::create(self, id, idea, params, folder).await
    }
    async fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        SessionStore::session(self, id).await
    }
    async fn sessions(&self) -> Result<Vec<SessionRow>> {
        SessionStore::sessions(self).await
    }
    async fn checkpoint(&self, id: &str, next_stage: usize, snapshot: &str) -> Result<()> {
        SessionStore::checkpoint(self, id, next_stage, snapshot).await
    }
    async fn set_state(&self, id: &str, state: SessionState) -> Result<()> {
        SessionStore::set_state(self, id, state).await
    }
    async fn call(&self, session: &str, key: &str) -> Result<Option<String>> {
        SessionStore::call(self, session, key).await
    }
    async fn put_call(
        &self,
        session: &str,
        key: &str,
        operation: &str,
        tier: &str,
        record: &str,
    ) -> Result<()> {
        SessionStore::put_call(self, session, key, operation, tier, record).await
    }
    async fn put_stage(&self, session: &str, stage: &StageRecord) -> Result<()> {
        SessionStore::put_stage(self, session, stage).await
    }
    async fn stages(&self, session: &str) -> Result<Vec<StageRecord>> {
        SessionStore::stages(self, session).await
    }
}

fn sqlite_options(path: &Path) -> Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| Error::store(path.display(), e))?
        .filename(path)
        .busy_timeout(Duration::from_secs(10)))
}

/// A `search_sessions` row as read, before its fields are checked.
#[derive(sqlx::FromRow)]
struct RawSession {
    id: String,
    idea: String,
    params: String,
    state: String,
    folder: Option<String>,
    next_stage: i64,
    snapshot: Option<String>,
}

impl RawSession {
    fn checked(self) -> Result<SessionRow> {
        let corrupt = |field: &'static str, problem: String| Error::Checkpoint {
            session: self.id.clone(),
            field,
            problem,
        };
        let state = SessionState::parse(&self.state).ok_or_else(|| {
            corrupt(
                "state",
                format!("'{}' is not running, completed or failed", self.state),
            )
        })?;
        let next_stage = usize::try_from(self.next_stage).map_err(|_| {
            corrupt(
                "next_stage",
                format!("{} is not a stage index", self.next_stage),
            )
        })?;
        Ok(SessionRow {
            id: self.id,
            idea: self.idea,
            params: self.params,
            state,
            folder: self.folder,
            next_stage,
            snapshot: self.snapshot,
        })
    }
}

/// A `search_stages` row as read, before its fields are checked.
#[derive(sqlx::FromRow)]
struct RawStage {
    idx: i64,
    iteration: i64,
    kind: String,
    tier: String,
    calls: i64,
    reused: i64,
    batch_ids: String,
    started_at_ms: i64,
    finished_at_ms: Option<i64>,
}

impl RawStage {
    fn checked(self, session: &str) -> Result<StageRecord> {
        let corrupt = |field: &'static str, problem: String| Error::Checkpoint {
            session: session.to_owned(),
            field,
            problem,
        };
        let count = |c: &'static str, v: i64| -> Result<usize> {
            usize::try_from(v).map_err(|_| corrupt(c, format!("{v} is negative")))
        };
        Ok(StageRecord {
            index: count("idx", self.idx)?,
            iteration: u32::try_from(self.iteration).map_err(|_| {
                corrupt(
                    "iteration",
                    format!("{} is not an iteration", self.iteration),
                )
            })?,
            kind: self.kind,
            tier: self.tier,
            calls: count("calls", self.calls)?,
            reused: count("reused", self.reused)?,
            batch_ids: serde_json::from_str(&self.batch_ids)
                .map_err(|e| corrupt("batch_ids", e.to_string()))?,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
        })
    }
}
