//! Checkpoints in the database: each session's parameters and state after every finished
//! stage, every call result as it arrives, and each stage's record (tier, calls, batches).
//! Every SQL statement of the orchestrator is here; the search reaches them through the
//! [`CheckpointStore`] trait, which [`SessionStore`] (SQLite) implements.
//!
//! The tables, all prefixed `search_`, sit beside the batch manager's and the queue's in one
//! SQLite file. They are made by this crate's migrations (`crates/orchestrator/migrations/`),
//! recorded in a history table of their own ([`MIGRATIONS_TABLE`]): batch-client's
//! `_sqlx_migrations` never sees them, so neither set can reject or shadow the other's
//! versions (ours are numbered from 40000000000001 as well, layer 4).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::{Error, Result};

mod report;
#[cfg(test)]
mod tests;

pub use report::{BestSoFar, SessionReport, SessionSummary};

/// The history table of the orchestrator's migrations (batch-client keeps `_sqlx_migrations`).
pub const MIGRATIONS_TABLE: &str = "_orchestrator_migrations";

/// The orchestrator's migrations, recorded in [`MIGRATIONS_TABLE`]. Versions another set
/// applied are not this set's business (`ignore_missing`), should they ever share a table.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.set_ignore_missing(true);
    migrator
}

/// The columns [`session_row`] reads.
const SESSION_COLUMNS: &str = "id, idea, params, state, folder, next_stage, snapshot";

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

/// The checkpoint store.
#[derive(Debug, Clone)]
pub struct SessionStore {
    pool: SqlitePool,
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
        SessionStore::new(pool).await
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
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'search_sessions'",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| Error::store(path.display(), e))?;
        Ok(SessionStore {
            pool,
            empty: tables == 0,
        })
    }

    /// Uses an open pool (the batch manager's, so that one file holds everything), and brings
    /// its tables up to date.
    pub async fn new(pool: SqlitePool) -> Result<SessionStore> {
        migrator()
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate { source })?;
        Ok(SessionStore { pool, empty: false })
    }

    /// Records a new session.
    pub async fn create(&self, id: &str, idea: &str, params: &str, folder: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO search_sessions (id, idea, params, state, folder, next_stage, created_at_ms, updated_at_ms) VALUES (?, ?, ?, 'running', ?, 0, ?, ?)",
        )
        .bind(id)
        .bind(idea)
        .bind(params)
        .bind(folder)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| Error::store(format_args!("creating session {id}"), e))?;
        Ok(())
    }

    /// A session, if the database holds it.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        if self.empty {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM search_sessions WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Error::store(format_args!("reading session {id}"), e))?;
        row.map(|r| session_row(&r)).transpose()
    }

    /// Every session, newest first.
    pub async fn sessions(&self) -> Result<Vec<SessionRow>> {
        if self.empty {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM search_sessions ORDER BY created_at_ms DESC, id DESC"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| Error::store("listing sessions", e))?;
        rows.iter().map(session_row).collect()
    }

    /// The checkpoint after a finished stage: the state and the next stage to run.
    pub async fn checkpoint(&self, id: &str, next_stage: usize, snapshot: &str) -> Result<()> {
        sqlx::query(
            "UPDATE search_sessions SET next_stage = ?, snapshot = ?, updated_at_ms = ? WHERE id = ?",
        )
        .bind(i64::try_from(next_stage).unwrap_or(i64::MAX))
        .bind(snapshot)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| Error::store(format_args!("checkpointing session {id}"), e))?;
        Ok(())
    }

    /// Sets the session's state.
    pub async fn set_state(&self, id: &str, state: SessionState) -> Result<()> {
        sqlx::query("UPDATE search_sessions SET state = ?, updated_at_ms = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| Error::store(format_args!("setting the state of session {id}"), e))?;
        Ok(())
    }

    /// A call's stored record, if it finished before.
    pub async fn call(&self, session: &str, key: &str) -> Result<Option<String>> {
        let context = || format!("reading call {key}");
        let row = sqlx::query("SELECT record FROM search_calls WHERE session_id = ? AND key = ?")
            .bind(session)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::store(context(), e))?;
        row.map(|r| {
            r.try_get::<String, _>(0)
                .map_err(|e| Error::store(context(), e))
        })
        .transpose()
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
        sqlx::query(
            "INSERT OR IGNORE INTO search_calls (session_id, key, operation, tier, record, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(session)
        .bind(key)
        .bind(operation)
        .bind(tier)
        .bind(record)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| Error::store(format_args!("storing call {key}"), e))?;
        Ok(())
    }

    /// Records a stage (insert or replace: a resumed stage is recorded again).
    pub async fn put_stage(&self, session: &str, stage: &StageRecord) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO search_stages (session_id, idx, iteration, kind, tier, calls, reused, batch_ids, started_at_ms, finished_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(session)
        .bind(i64::try_from(stage.index).unwrap_or(i64::MAX))
        .bind(i64::from(stage.iteration))
        .bind(&stage.kind)
        .bind(&stage.tier)
        .bind(i64::try_from(stage.calls).unwrap_or(i64::MAX))
        .bind(i64::try_from(stage.reused).unwrap_or(i64::MAX))
        .bind(serde_json::to_string(&stage.batch_ids).map_err(Error::Encode)?)
        .bind(stage.started_at_ms)
        .bind(stage.finished_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| Error::store(format_args!("storing stage {} of session {session}", stage.index), e))?;
        Ok(())
    }

    /// A session's stages, in order.
    pub async fn stages(&self, session: &str) -> Result<Vec<StageRecord>> {
        let rows = sqlx::query(
            "SELECT idx, iteration, kind, tier, calls, reused, batch_ids, started_at_ms, finished_at_ms FROM search_stages WHERE session_id = ? ORDER BY idx",
        )
        .bind(session)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| Error::store(format_args!("reading the stages of session {session}"), e))?;
        rows.iter().map(|r| stage_row(session, r)).collect()
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

fn session_row(r: &sqlx::sqlite::SqliteRow) -> Result<SessionRow> {
    let id: String = r
        .try_get("id")
        .map_err(|e| Error::store("reading a session row", e))?;
    let corrupt = |field: &'static str, problem: String| Error::Checkpoint {
        session: id.clone(),
        field,
        problem,
    };
    let text =
        |c: &'static str| -> Result<String> { r.try_get(c).map_err(|e| corrupt(c, e.to_string())) };
    let state = text("state")?;
    let next: i64 = r
        .try_get("next_stage")
        .map_err(|e| corrupt("next_stage", e.to_string()))?;
    Ok(SessionRow {
        idea: text("idea")?,
        params: text("params")?,
        state: SessionState::parse(&state).ok_or_else(|| {
            corrupt(
                "state",
                format!("'{state}' is not running, completed or failed"),
            )
        })?,
        folder: r
            .try_get("folder")
            .map_err(|e| corrupt("folder", e.to_string()))?,
        next_stage: usize::try_from(next)
            .map_err(|_| corrupt("next_stage", format!("{next} is not a stage index")))?,
        snapshot: r
            .try_get("snapshot")
            .map_err(|e| corrupt("snapshot", e.to_string()))?,
        id: id.clone(),
    })
}

fn stage_row(session: &str, r: &sqlx::sqlite::SqliteRow) -> Result<StageRecord> {
    let corrupt = |field: &'static str, problem: String| Error::Checkpoint {
        session: session.to_owned(),
        field,
        problem,
    };
    let n =
        |c: &'static str| -> Result<i64> { r.try_get(c).map_err(|e| corrupt(c, e.to_string())) };
    let count = |c: &'static str| -> Result<usize> {
        let v = n(c)?;
        usize::try_from(v).map_err(|_| corrupt(c, format!("{v} is negative")))
    };
    let text =
        |c: &'static str| -> Result<String> { r.try_get(c).map_err(|e| corrupt(c, e.to_string())) };
    let iteration = n("iteration")?;
    Ok(StageRecord {
        index: count("idx")?,
        iteration: u32::try_from(iteration)
            .map_err(|_| corrupt("iteration", format!("{iteration} is not an iteration")))?,
        kind: text("kind")?,
        tier: text("tier")?,
        calls: count("calls")?,
        reused: count("reused")?,
        batch_ids: serde_json::from_str(&text("batch_ids")?)
            .map_err(|e| corrupt("batch_ids", e.to_string()))?,
        started_at_ms: n("started_at_ms")?,
        finished_at_ms: r
            .try_get("finished_at_ms")
            .map_err(|e| corrupt("finished_at_ms", e.to_string()))?,
    })
}
