//! [`PgStore`]: batch records in PostgreSQL, for several processes sharing one database. The
//! same statements as SQLite's (see `sql`); leases are the same conditional `UPDATE`, which
//! PostgreSQL's row locks make atomic between processes.

use sqlx::postgres::PgPool;

use super::sql::{Dialect, impl_job_store};
use crate::db::Database;
use crate::{Error, Result};

/// A [`JobStore`](super::JobStore) in a PostgreSQL database, migrated on open (its own
/// migrations, `migrations-postgres/`, the same versions as SQLite's).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to a `postgres://` URL (a pool of `max_connections`) and runs the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore> {
        PgStore::on(Database::postgres(url, max_connections).await?).await
    }

    /// A store on an open PostgreSQL [`Database`] (shared with the process's other stores),
    /// migrated. An SQLite database is refused: use [`SqliteStore`](super::SqliteStore).
    pub async fn on(db: Database) -> Result<PgStore> {
        let Database::Postgres(pool) = db else {
            return Err(Error::Config(
                "PgStore needs a PostgreSQL database".to_owned(),
            ));
        };
        sqlx::migrate!("./migrations-postgres")
            .run(&pool)
            .await
            .map_err(Error::store)?;
        Ok(PgStore { pool })
    }

    /// The connection pool, for a higher layer that keeps its own tables in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Tells the other processes on the database that a record changed, once `conn`'s
    /// transaction commits.
    async fn announce(conn: &mut sqlx::PgConnection, id: &str) -> Result<()> {
        crate::db::announce_record(conn, id).await
    }
}

impl_job_store!(PgStore, sqlx::Postgres, Dialect::Postgres);
