//! [`SqliteStore`]: batch records in one SQLite file.

use std::path::Path;

use sqlx::sqlite::SqlitePool;

use super::sql::{Dialect, impl_job_store};
use crate::db::Database;
use crate::{Error, Result};

/// A [`JobStore`] in one SQLite file: WAL, a busy timeout, created when missing, migrated on
/// open.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and runs the migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::on(Database::sqlite(path).await?).await
    }

    /// Opens the database at `path`, which must exist (it is not created), and runs the
    /// migrations: for commands that only read records.
    pub async fn open_existing(path: &Path) -> Result<SqliteStore> {
        SqliteStore::on(Database::sqlite_existing(path).await?).await
    }

    /// Opens a `sqlite:` URL, as `DATABASE_URL` names it.
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        SqliteStore::on(Database::open(url).await?).await
    }

    /// A store on an open SQLite [`Database`] (shared with the process's other stores),
    /// migrated. A PostgreSQL database is refused: use [`PgStore`](super::PgStore).
    pub async fn on(db: Database) -> Result<SqliteStore> {
        let Database::Sqlite(pool) = db else {
            return Err(Error::Config(
                "SqliteStore needs an SQLite database".to_owned(),
            ));
        };
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

    /// Nothing to announce: one process owns an SQLite file, and its waiters poll.
    async fn announce(_conn: &mut sqlx::SqliteConnection, _id: &str) -> Result<()> {
        Ok(())
    }
}

impl_job_store!(SqliteStore, sqlx::Sqlite, Dialect::Sqlite);
