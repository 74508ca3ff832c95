//! [`DbStore`]: the store on whichever backend the process's [`Database`] is, so that the
//! manager and the layers above it are written once for both.

use super::{
    JobRecord, JobStore, PgStore, RecordStatus, SqliteStore, StatusChange, Submission,
    UnfinishedSummary,
};
use crate::Result;
use crate::db::Database;

/// Batch records in the process's database, SQLite or PostgreSQL: the manager's default store.
#[derive(Debug, Clone)]
pub enum DbStore {
    /// In an SQLite file.
    Sqlite(SqliteStore),
    /// In PostgreSQL.
    Postgres(PgStore),
}

impl DbStore {
    /// The store on `db` (a clone shares its pool), migrated.
    pub async fn on(db: Database) -> Result<DbStore> {
        Ok(match db {
            db @ Database::Sqlite(_) => DbStore::Sqlite(SqliteStore::on(db).await?),
            db @ Database::Postgres(_) => DbStore::Postgres(PgStore::on(db).await?),
        })
    }

    /// The database the store is in, for a higher layer that keeps its own tables there.
    pub fn database(&self) -> Database {
        match self {
            DbStore::Sqlite(s) => Database::Sqlite(s.pool().clone()),
            DbStore::Postgres(s) => Database::Postgres(s.pool().clone()),
        }
    }

    /// The SQLite pool, when the store is in SQLite.
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match self {
            DbStore::Sqlite(s) => Some(s.pool()),
            DbStore::Postgres(_) => None,
        }
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.database().close().await;
    }
}

impl From<SqliteStore> for DbStore {
    fn from(store: SqliteStore) -> DbStore {
        DbStore::Sqlite(store)
    }
}

impl From<PgStore> for DbStore {
    fn from(store: PgStore) -> DbStore {
        DbStore::Postgres(store)
    }
}

/// Forwards a [`JobStore`] method to the backend's store.
macro_rules! forward {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match $self {
            DbStore::Sqlite(s) => s.$method($($arg),*).await,
            DbStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl JobStore for DbStore {
    async fn insert(
        &self,
        record: &JobRecord,
        change: &StatusChange,
        lease: (&str, i64),
    ) -> Result<()> {
        forward!(self, insert(record, change, lease))
    }

    async fn update(&self, record: &JobRecord, change: Option<&StatusChange>) -> Result<()> {
        forward!(self, update(record, change))
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        forward!(self, get(id))
    }

    async fn find_by_batch_id(&self, batch_id: &str) -> Result<Option<JobRecord>> {
        forward!(self, find_by_batch_id(batch_id))
    }

    async fn list(&self) -> Result<Vec<JobRecord>> {
        forward!(self, list())
    }

    async fn unfinished(&self) -> Result<Vec<JobRecord>> {
        forward!(self, unfinished())
    }

    async fn due(&self, now_ms: Option<i64>) -> Result<Vec<String>> {
        forward!(self, due(now_ms))
    }

    async fn unfinished_summary(&self) -> Result<UnfinishedSummary> {
        forward!(self, unfinished_summary())
    }

    async fn statuses(&self, ids: &[String]) -> Result<Vec<RecordStatus>> {
        forward!(self, statuses(ids))
    }

    async fn history(&self, id: &str) -> Result<Vec<StatusChange>> {
        forward!(self, history(id))
    }

    async fn try_lease(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        forward!(self, try_lease(id, owner, now_ms, until_ms))
    }

    async fn release_lease(&self, id: &str, owner: &str) -> Result<()> {
        forward!(self, release_lease(id, owner))
    }

    async fn insert_submission(
        &self,
        submission: &Submission,
        records: &[(JobRecord, StatusChange)],
        lease: (&str, i64),
    ) -> Result<bool> {
        forward!(self, insert_submission(submission, records, lease))
    }

    async fn find_submission(&self, content_key: &str) -> Result<Option<Submission>> {
        forward!(self, find_submission(content_key))
    }

    async fn submission_records(&self, submission_id: &str) -> Result<Vec<JobRecord>> {
        forward!(self, submission_records(submission_id))
    }
}
