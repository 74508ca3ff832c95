//! Checkpoints in the database: each session's parameters and state after every finished
//! stage, every call result as it arrives, and each stage's record (tier, calls, batches).
//!
//! Tables are created with `CREATE TABLE IF NOT EXISTS` beside the batch manager's and the
//! queue's (they share the SQLite file), all prefixed `search_`.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::{Error, Result};

const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS search_sessions (
        id TEXT PRIMARY KEY,
        idea TEXT NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        folder TEXT,
        next_stage INTEGER NOT NULL DEFAULT 0,
        snapshot TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS search_calls (
        session_id TEXT NOT NULL,
        key TEXT NOT NULL,
        operation TEXT NOT NULL,
        tier TEXT NOT NULL,
        record TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (session_id, key)
    )",
    "CREATE TABLE IF NOT EXISTS search_stages (
        session_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        iteration INTEGER NOT NULL,
        kind TEXT NOT NULL,
        tier TEXT NOT NULL,
        calls INTEGER NOT NULL,
        reused INTEGER NOT NULL,
        batch_ids TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        PRIMARY KEY (session_id, idx)
    )",
];

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

    fn parse(s: &str) -> SessionState {
        match s {
            "completed" => SessionState::Completed,
            "failed" => SessionState::Failed,
            _ => SessionState::Running,
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

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SessionStore {
    /// Opens (creating) the SQLite file at `path`.
    pub async fn open(path: &Path) -> Result<SessionStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Store(format!("creating the folder {} for it: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(Error::store)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        SessionStore::new(pool).await
    }

    /// Opens the SQLite file at `path` read-only, for commands that only read (`sessions`,
    /// `cost report`): creates nothing, neither the file nor its folder nor a table, and a
    /// missing file is [`Error::NoDatabase`].
    pub async fn open_read_only(path: &Path) -> Result<SessionStore> {
        if !path.is_file() {
            return Err(Error::NoDatabase {
                path: path.to_owned(),
            });
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(Error::store)?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'search_sessions'",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        Ok(SessionStore {
            pool,
            empty: tables == 0,
        })
    }

    /// Uses an open pool (the batch manager's, so that one file holds everything).
    pub async fn new(pool: SqlitePool) -> Result<SessionStore> {
        for sql in TABLES {
            sqlx::query(*sql)
                .execute(&pool)
                .await
                .map_err(Error::store)?;
        }
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
        .map_err(Error::store)?;
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
        .map_err(Error::store)?;
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
        .map_err(Error::store)?;
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
        .map_err(Error::store)?;
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
            .map_err(Error::store)?;
        Ok(())
    }

    /// A call's stored record, if it finished before.
    pub async fn call(&self, session: &str, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT record FROM search_calls WHERE session_id = ? AND key = ?")
            .bind(session)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::store)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(Error::store))
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
        .map_err(Error::store)?;
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
        .bind(serde_json::to_string(&stage.batch_ids).map_err(Error::store)?)
        .bind(stage.started_at_ms)
        .bind(stage.finished_at_ms)
        .execute(&self.pool)
        .await
        .map_err(Error::store)?;
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
        .map_err(Error::store)?;
        rows.iter()
            .map(|r| {
                let n = |c: &str| -> Result<i64> { r.try_get(c).map_err(Error::store) };
                let batch_ids: String = r.try_get("batch_ids").map_err(Error::store)?;
                Ok(StageRecord {
                    index: usize::try_from(n("idx")?).unwrap_or(0),
                    iteration: u32::try_from(n("iteration")?).unwrap_or(0),
                    kind: r.try_get("kind").map_err(Error::store)?,
                    tier: r.try_get("tier").map_err(Error::store)?,
                    calls: usize::try_from(n("calls")?).unwrap_or(0),
                    reused: usize::try_from(n("reused")?).unwrap_or(0),
                    batch_ids: serde_json::from_str(&batch_ids).unwrap_or_default(),
                    started_at_ms: n("started_at_ms")?,
                    finished_at_ms: r.try_get("finished_at_ms").map_err(Error::store)?,
                })
            })
            .collect()
    }
}

fn session_row(r: &sqlx::sqlite::SqliteRow) -> Result<SessionRow> {
    let get = |c: &str| -> Result<String> { r.try_get(c).map_err(Error::store) };
    let next: i64 = r.try_get("next_stage").map_err(Error::store)?;
    Ok(SessionRow {
        id: get("id")?,
        idea: get("idea")?,
        params: get("params")?,
        state: SessionState::parse(&get("state")?),
        folder: r.try_get("folder").map_err(Error::store)?,
        next_stage: usize::try_from(next).unwrap_or(0),
        snapshot: r.try_get("snapshot").map_err(Error::store)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_calls_and_stages_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("db/batchbeam.db"))
            .await
            .unwrap();
        store.create("s1", "a fox", "{}", "/tmp/s1").await.unwrap();
        assert!(store.call("s1", "k").await.unwrap().is_none());
        store
            .put_call("s1", "k", "judge", "batch", "{\"a\":1}")
            .await
            .unwrap();
        store
            .put_call("s1", "k", "judge", "batch", "{\"a\":2}")
            .await
            .unwrap();
        assert_eq!(
            store.call("s1", "k").await.unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        store.checkpoint("s1", 3, "{\"x\":true}").await.unwrap();
        let stage = StageRecord {
            index: 2,
            iteration: 0,
            kind: "render".into(),
            tier: "batch".into(),
            calls: 9,
            reused: 0,
            batch_ids: vec!["batch_1".into()],
            started_at_ms: 5,
            finished_at_ms: Some(9),
        };
        store.put_stage("s1", &stage).await.unwrap();
        assert_eq!(store.stages("s1").await.unwrap(), vec![stage]);
        store
            .set_state("s1", SessionState::Completed)
            .await
            .unwrap();
        let row = store.session("s1").await.unwrap().unwrap();
        assert_eq!((row.next_stage, row.state), (3, SessionState::Completed));
        assert_eq!(row.snapshot.as_deref(), Some("{\"x\":true}"));
        assert!(store.session("s2").await.unwrap().is_none());
        assert_eq!(store.sessions().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_read_only_open_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo/batchbeam.db");
        let e = SessionStore::open_read_only(&typo).await.unwrap_err();
        assert!(matches!(e, Error::NoDatabase { .. }), "{e}");
        assert!(e.to_string().contains(&typo.display().to_string()), "{e}");
        assert!(!dir.path().join("typo").exists());

        // A database without session tables (the batch manager's alone) holds no sessions,
        // and stays without them.
        let other = dir.path().join("other.db");
        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(&other)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE batch_jobs (id TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let store = SessionStore::open_read_only(&other).await.unwrap();
        assert!(store.sessions().await.unwrap().is_empty());
        assert!(store.session("s1").await.unwrap().is_none());
        assert!(store.create("s1", "x", "{}", "/tmp").await.is_err());

        // A real one reads, and refuses writes.
        let db = dir.path().join("batchbeam.db");
        SessionStore::open(&db)
            .await
            .unwrap()
            .create("s1", "a fox", "{}", "/tmp/s1")
            .await
            .unwrap();
        let store = SessionStore::open_read_only(&db).await.unwrap();
        assert_eq!(store.sessions().await.unwrap().len(), 1);
        assert!(store.set_state("s1", SessionState::Failed).await.is_err());
    }
}
