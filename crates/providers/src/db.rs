//! The process's one database, as the layers above name it: batch-client's [`Database`] (an
//! SQLite or a PostgreSQL pool) and [`Dialect`], re-exported so that the orchestrator and the
//! server keep their tables on the same pool without naming batch-client; the one way their
//! stores run their migrations ([`migrate`]); [`on_pool!`](crate::on_pool), which runs one
//! statement (written once, see [`Dialect::sql`]) on whichever pool it is; and the helpers of
//! the store suites that run on both backends ([`testing`]).

pub use batch_client::db::is_postgres_url;
pub use batch_client::{Database, Dialect, Notice};

/// Runs a store's migrations on `db`: `sqlite`'s or `postgres`'s set (the same versions, one
/// directory per backend), recorded in the history table `table` (each layer keeps its own, so
/// that no set ever sees another's versions).
pub async fn migrate(
    db: &Database,
    sqlite: sqlx::migrate::Migrator,
    postgres: sqlx::migrate::Migrator,
    table: &'static str,
) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = match db {
        Database::Sqlite(_) => sqlite,
        Database::Postgres(_) => postgres,
    };
    migrator.dangerous_set_table_name(table);
    // Other sets in the same database keep their own history tables.
    migrator.set_ignore_missing(true);
    match db {
        Database::Sqlite(pool) => migrator.run(pool).await,
        Database::Postgres(pool) => migrator.run(pool).await,
    }
}

/// The text of `sql` for `db`'s backend, as sqlx takes a string built at run time.
pub fn sql(db: &Database, text: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(db.dialect().sql(text))
}

/// `on_pool!(db, |pool| body)`: `body` once per backend, with `pool` the SQLite or the
/// PostgreSQL pool of the [`Database`] `db`. The body is written once and type-checked for
/// both; rows are read into a `#[derive(sqlx::FromRow)]` struct, which works on either.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite($pool) => $body,
            $crate::db::Database::Postgres($pool) => $body,
        }
    };
}

/// What the store suites of every layer share: a fresh database of each backend available.
/// SQLite always; PostgreSQL when the suite is given a server it may create databases on (the
/// suites read [`testing::VAR`], `BATCHBEAM_TEST_POSTGRES`, which `cargo xtask pg -- cargo
/// nextest run -p CRATE` sets). Test code only.
#[doc(hidden)]
pub mod testing {
    use std::path::Path;

    use super::Database;

    /// The variable naming a PostgreSQL server the suites may create databases on.
    pub const VAR: &str = "BATCHBEAM_TEST_POSTGRES";

    /// A database of each backend: `("sqlite", …)` in `dir`, and `("postgres", …)`, a new
    /// database, when the test server is there. Each comes with what opens it again (a path or
    /// a URL), for a second pool on the same database: another process.
    pub async fn every_backend(
        dir: &Path,
        admin: Option<String>,
    ) -> Vec<(&'static str, Database, String)> {
        let path = dir.join("nested").join("t.db");
        let mut out = vec![(
            "sqlite",
            open(&path.to_string_lossy()).await,
            path.to_string_lossy().into_owned(),
        )];
        if let Some(url) = fresh_postgres(admin).await {
            out.push(("postgres", open(&url).await, url));
        }
        out
    }

    /// Opens what `location` names (as [`every_backend`] gives it); panics on failure.
    pub async fn open(location: &str) -> Database {
        match Database::open(location).await {
            Ok(db) => db,
            Err(e) => panic!("opening the test database: {e}"),
        }
    }

    /// A new database on the test server `admin` names, or `None` (said on stderr) without one.
    pub async fn fresh_postgres(admin: Option<String>) -> Option<String> {
        let Some(admin) = admin.filter(|v| !v.is_empty()) else {
            eprintln!("{VAR} is not set: the PostgreSQL half of the store suite is skipped");
            return None;
        };
        let name = format!("bb_test_{}", ulid_like());
        let pool = match sqlx::PgPool::connect(&admin).await {
            Ok(p) => p,
            Err(e) => panic!("{VAR}: {e}"),
        };
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
        {
            panic!("creating the test database: {e}");
        }
        pool.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(format!("{base}/{name}"))
    }

    /// A name no other test picks: the time and a process-wide counter.
    fn ulid_like() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{nanos:x}_{}_{n}", std::process::id())
    }
}
