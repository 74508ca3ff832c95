//! [`PgQueueStore`]: the queue's tables in batch-client's PostgreSQL database, shared by every
//! instance that names it. The statements are SQLite's (see `sql`); what PostgreSQL adds is row
//! locks on the rows a write reads first, `SKIP LOCKED` claims of standard-API fallbacks, and a
//! lock per group that keeps a claim apart from enqueues still in flight.

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::postgres::PgPool;

use super::sql::{Dialect, impl_queue_store};
use super::{GroupKey, MIGRATIONS_TABLE};
use crate::{Error, Result};

/// [`QueueStore`](super::QueueStore) in PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) struct PgQueueStore {
    pool: PgPool,
}

impl PgQueueStore {
    /// A read that a write depends on locks the rows it read until the transaction ends.
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    /// Rows another transaction is claiming are passed over, not waited for.
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    /// The queue's tables in the database of `pool`, created or upgraded by the migrations.
    pub(crate) async fn open(pool: PgPool) -> Result<PgQueueStore> {
        let mut migrator = sqlx::migrate!("./migrations-postgres");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator.run(&pool).await.map_err(Error::store)?;
        Ok(PgQueueStore { pool })
    }

    /// A read-committed transaction: every read-then-write here locks what it read.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(Error::store)
    }

    /// Takes each group's advisory lock until the transaction ends: shared by enqueues (which
    /// never wait for each other), exclusive by a claim. A `seq` is handed out before its
    /// transaction commits, so without it a claim could cover a `seq` still uncommitted and the
    /// request would be skipped by that span and by every later one; with it a claim waits for
    /// the group's enqueues in flight, and later ones get higher `seq`s.
    async fn lock_groups(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        keys: &[GroupKey],
        shared: bool,
    ) -> Result<()> {
        let sql = if shared {
            "SELECT pg_advisory_xact_lock_shared($1)"
        } else {
            "SELECT pg_advisory_xact_lock($1)"
        };
        for key in keys {
            sqlx::query(sql)
                .bind(group_lock_key(key))
                .execute(&mut **tx)
                .await
                .map_err(Error::store)?;
        }
        Ok(())
    }

    /// Tells every instance listening on the database that `record_id` was settled (its
    /// requests hold their verdicts), once the transaction commits.
    async fn announce(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        record_id: &str,
    ) -> Result<()> {
        batch_client::db::announce_record(tx, record_id)
            .await
            .map_err(Error::from)
    }
}

/// The advisory lock key of a group: 64 bits of a hash of its name, under the queue's prefix.
fn group_lock_key(key: &GroupKey) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"batch-queue group\0")
        .chain_update(key.0.as_str())
        .chain_update(b"\0")
        .chain_update(&key.1)
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl_queue_store!(PgQueueStore, sqlx::Postgres, Dialect::Postgres);
