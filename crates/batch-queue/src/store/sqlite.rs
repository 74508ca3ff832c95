//! [`SqliteQueueStore`]: the queue's tables in batch-client's SQLite database.

use sqlx::{Row, SqlitePool};

use super::sql::{Dialect, impl_queue_store};
use super::{GroupKey, MIGRATIONS_TABLE};
use crate::{Error, Result};

/// [`QueueStore`](super::QueueStore) in batch-client's SQLite database.
#[derive(Debug, Clone)]
pub(crate) struct SqliteQueueStore {
    pool: SqlitePool,
}

impl SqliteQueueStore {
    /// SQLite takes no row locks: a transaction that took the write lock is alone.
    const FOR_UPDATE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";

    /// The queue's tables in the database of `pool`, created or upgraded by the migrations.
    pub(crate) async fn open(pool: SqlitePool) -> Result<SqliteQueueStore> {
        let mut migrator = sqlx::migrate!("./migrations");
        // Two migration sets in one database: ours keep their own history, so neither
        // migrator ever sees the other's versions as missing or foreign.
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator.run(&pool).await.map_err(Error::store)?;
        Ok(SqliteQueueStore { pool })
    }

    /// A transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`). Every write
    /// here reads a row's state first and writes only if it is still as found; a deferred
    /// transaction that reads and then writes fails with `database is locked` (SQLITE_BUSY,
    /// which the busy timeout does not wait out) when another connection wrote in between, and
    /// a fallback's answer was then lost and the request sent to the standard API again. An
    /// immediate one waits for the lock instead.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::store)
    }

    /// Nothing to take: the write lock of `write_tx` already keeps every other writer out,
    /// enqueues included, and a `seq` is handed out only under it.
    async fn lock_groups(
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        _keys: &[GroupKey],
        _shared: bool,
    ) -> Result<()> {
        Ok(())
    }

    /// Nothing to announce: one process owns an SQLite file, and its waiters poll.
    async fn announce(
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        _record_id: &str,
    ) -> Result<()> {
        Ok(())
    }
}

impl_queue_store!(SqliteQueueStore, sqlx::Sqlite, Dialect::Sqlite);
