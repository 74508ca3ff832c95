//! Where the request cache keeps its entries: the [`CacheStore`] trait and [`DbCacheStore`], a
//! `request_cache` table in the database the rest of batchbeam uses (SQLite or PostgreSQL),
//! made by this crate's migrations (`crates/providers/migrations/` and
//! `migrations-postgres/`, the same versions, recorded in [`MIGRATIONS_TABLE`]). Every
//! statement is written once ([`Dialect::sql`](crate::Dialect::sql)).

use std::fmt;

use crate::db::{self, Database};
use async_trait::async_trait;

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

/// A [`CacheStore`] in the process's database (shared with the batch records, the queue and
/// the sessions), SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct DbCacheStore {
    db: Database,
}

/// A `request_cache` row as read.
#[derive(sqlx::FromRow)]
struct Row {
    key: String,
    endpoint: String,
    model: String,
    snapshot: String,
    tier: String,
    body: String,
    file: Option<String>,
    created_at_ms: i64,
}

const GET_SQL: &str = "UPDATE request_cache SET hits = hits + 1 WHERE key = ?1 \
     RETURNING key, endpoint, model, snapshot, tier, body, file, created_at_ms";
const DROP_OTHER_SNAPSHOTS_SQL: &str =
    "DELETE FROM request_cache WHERE model = ?1 AND snapshot <> ?2";
const PUT_SQL: &str = "INSERT INTO request_cache \
     (key, endpoint, model, snapshot, tier, body, file, created_at_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (key) DO UPDATE SET endpoint = excluded.endpoint, \
     model = excluded.model, snapshot = excluded.snapshot, tier = excluded.tier, \
     body = excluded.body, file = excluded.file, created_at_ms = excluded.created_at_ms";
const REMOVE_SQL: &str = "DELETE FROM request_cache WHERE key = ?1";
const COUNT_SQL: &str = "SELECT COUNT(*) FROM request_cache";

impl DbCacheStore {
    /// The cache's table in `db`, created or upgraded by the migrations.
    pub async fn new(db: Database) -> Result<DbCacheStore> {
        db::migrate(
            &db,
            sqlx::migrate!("./migrations"),
            sqlx::migrate!("./migrations-postgres"),
            MIGRATIONS_TABLE,
        )
        .await
        .map_err(store_error)?;
        Ok(DbCacheStore { db })
    }

    /// The database it is in.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

#[async_trait]
impl CacheStore for DbCacheStore {
    async fn get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let sql = db::sql(&self.db, GET_SQL);
        let row: Option<Row> = crate::on_pool!(&self.db, |pool| {
            sqlx::query_as(sql).bind(key).fetch_optional(pool).await
        })
        .map_err(store_error)?;
        Ok(row.map(|r| CacheEntry {
            key: r.key,
            endpoint: r.endpoint,
            model: r.model,
            snapshot: r.snapshot,
            tier: r.tier,
            body: r.body,
            file: r.file,
            created_at_ms: r.created_at_ms,
        }))
    }

    async fn put(&self, e: &CacheEntry) -> Result<()> {
        let (drop, put) = (
            db::sql(&self.db, DROP_OTHER_SNAPSHOTS_SQL),
            db::sql(&self.db, PUT_SQL),
        );
        crate::on_pool!(&self.db, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(drop)
                    .bind(&e.model)
                    .bind(&e.snapshot)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(put)
                    .bind(&e.key)
                    .bind(&e.endpoint)
                    .bind(&e.model)
                    .bind(&e.snapshot)
                    .bind(&e.tier)
                    .bind(&e.body)
                    .bind(&e.file)
                    .bind(e.created_at_ms)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            .await
        })
        .map_err(store_error)
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let sql = db::sql(&self.db, REMOVE_SQL);
        crate::on_pool!(&self.db, |pool| {
            sqlx::query(sql).bind(key).execute(pool).await.map(|_| ())
        })
        .map_err(store_error)
    }

    async fn count(&self) -> Result<u64> {
        let n: i64 = crate::on_pool!(&self.db, |pool| {
            sqlx::query_scalar(COUNT_SQL).fetch_one(pool).await
        })
        .map_err(store_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
