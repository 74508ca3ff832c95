//! Where the request cache keeps its entries: the [`CacheStore`] trait and its SQLite
//! implementation, a `request_cache` table in the database the rest of batchbeam uses, made by
//! this crate's migrations (`crates/providers/migrations/`, recorded in
//! [`MIGRATIONS_TABLE`]).

use std::fmt;

use async_trait::async_trait;
use sqlx::{Row, SqlitePool};

use crate::{ProviderError, Result};

/// The history table of providers' migrations: batch-client keeps `_sqlx_migrations`, the
/// queue and the orchestrator their own; no set ever sees another's versions.
pub const MIGRATIONS_TABLE: &str = "_providers_migrations";

/// One stored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    /// SHA-256 (hex) of the endpoint, the replay seed and the canonical request body.
    pub key: String,
    /// The endpoint (`/v1/chat/completions`, `/v1/images/generations`).
    pub endpoint: String,
    /// The model as the request named it.
    pub model: String,
    /// The snapshot the answer named (the asked model when it named none).
    pub snapshot: String,
    /// The tier that carried the first answer.
    pub tier: String,
    /// The response body; an image's base64 is left out when `file` holds its bytes.
    pub body: String,
    /// The image's bytes, relative to the cache folder.
    pub file: Option<String>,
    /// When it was stored ([`crate::now_ms`]).
    pub created_at_ms: i64,
}

/// The cache's records. Implementations keep at most one entry per key.
#[async_trait]
pub trait CacheStore: Send + Sync + fmt::Debug {
    /// The entry stored under `key`, counted as a hit.
    async fn get(&self, key: &str) -> Result<Option<CacheEntry>>;

    /// Stores `entry` (replacing one under the same key) and drops the entries of the same
    /// asked model whose snapshot differs: the alias now resolves to another version, and an
    /// answer never crosses versions.
    async fn put(&self, entry: &CacheEntry) -> Result<()>;

    /// Drops the entry under `key` (its image file went missing).
    async fn remove(&self, key: &str) -> Result<()>;

    /// How many entries there are.
    async fn count(&self) -> Result<u64>;
}

fn store_error(e: impl fmt::Display) -> ProviderError {
    ProviderError::Cache(e.to_string())
}

/// A [`CacheStore`] in a SQLite database (usually batch-client's, shared with the queue and
/// the sessions).
#[derive(Debug, Clone)]
pub struct SqliteCacheStore {
    pool: SqlitePool,
}

impl SqliteCacheStore {
    /// The cache's table in the database of `pool`, created or upgraded by the migrations.
    pub async fn new(pool: SqlitePool) -> Result<SqliteCacheStore> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        // Other sets in the same database keep their own history tables.
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(store_error)?;
        Ok(SqliteCacheStore { pool })
    }
}

#[async_trait]
impl CacheStore for SqliteCacheStore {
    async fn get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let row = sqlx::query(
            "UPDATE request_cache SET hits = hits + 1 WHERE key = ? \
             RETURNING key, endpoint, model, snapshot, tier, body, file, created_at_ms",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|r| {
            Ok(CacheEntry {
                key: r.try_get("key").map_err(store_error)?,
                endpoint: r.try_get("endpoint").map_err(store_error)?,
                model: r.try_get("model").map_err(store_error)?,
                snapshot: r.try_get("snapshot").map_err(store_error)?,
                tier: r.try_get("tier").map_err(store_error)?,
                body: r.try_get("body").map_err(store_error)?,
                file: r.try_get("file").map_err(store_error)?,
                created_at_ms: r.try_get("created_at_ms").map_err(store_error)?,
            })
        })
        .transpose()
    }

    async fn put(&self, e: &CacheEntry) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("DELETE FROM request_cache WHERE model = ? AND snapshot <> ?")
            .bind(&e.model)
            .bind(&e.snapshot)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO request_cache \
             (key, endpoint, model, snapshot, tier, body, file, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET endpoint = excluded.endpoint, \
             model = excluded.model, snapshot = excluded.snapshot, tier = excluded.tier, \
             body = excluded.body, file = excluded.file, created_at_ms = excluded.created_at_ms",
        )
        .bind(&e.key)
        .bind(&e.endpoint)
        .bind(&e.model)
        .bind(&e.snapshot)
        .bind(&e.tier)
        .bind(&e.body)
        .bind(&e.file)
        .bind(e.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn remove(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM request_cache WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_cache")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
