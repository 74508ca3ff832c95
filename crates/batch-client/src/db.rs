//! The process's one database: a sqlx pool on SQLite (a file, the default) or PostgreSQL (a
//! `postgres://` URL, so several processes share the work), which every store of every layer
//! is built on, and the [`Dialect`] its SQL is written in. One pool per process: open a
//! [`Database`] once and hand clones of it (a clone shares the pool) to each store.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{Error, Result};

/// Connections in a PostgreSQL pool unless the caller says otherwise.
pub const DEFAULT_PG_CONNECTIONS: u32 = 16;

/// A database and its pool. `Debug` names the backend only: a PostgreSQL URL may hold a
/// password, and nothing here prints it.
#[derive(Clone)]
pub enum Database {
    /// One SQLite file: WAL, synced commits, a busy timeout, foreign keys.
    Sqlite(SqlitePool),
    /// A PostgreSQL database, shared by every process that names it.
    Postgres(PgPool),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(_) => f.write_str("Database::Sqlite"),
            Database::Postgres(_) => f.write_str("Database::Postgres"),
        }
    }
}

/// Whether `location` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(location: &str) -> bool {
    let l = location.trim_start();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

impl Database {
    /// Opens what `location` names: a `postgres://` URL, a `sqlite:` URL, or a path to an
    /// SQLite file (created, with its directory, when missing).
    pub async fn open(location: &str) -> Result<Database> {
        if is_postgres_url(location) {
            Database::postgres(location, DEFAULT_PG_CONNECTIONS).await
        } else if location.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(location).map_err(Error::store)?;
            Database::sqlite_with(options, true).await
        } else {
            Database::sqlite(Path::new(location)).await
        }
    }

    /// Opens (creating when missing, with its directory) the SQLite file at `path`.
    pub async fn sqlite(path: &Path) -> Result<Database> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        Database::sqlite_with(SqliteConnectOptions::new().filename(path), true).await
    }

    /// Opens the SQLite file at `path`, which must exist ([`Error::NoDatabase`] otherwise):
    /// for commands that only read, so that a mistyped path creates nothing.
    pub async fn sqlite_existing(path: &Path) -> Result<Database> {
        match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::Config(format!(
                    "{} is not a database file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoDatabase(path.display().to_string()));
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        Database::sqlite_with(SqliteConnectOptions::new().filename(path), false).await
    }

    /// Connects with the settings every SQLite opening shares.
    async fn sqlite_with(options: SqliteConnectOptions, create: bool) -> Result<Database> {
        let options = options
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Every store of the process shares this pool (batch records, the queue, sessions,
        // jobs, the request cache). With 4 connections, 12 jobs on `batchbeam serve` left API
        // reads waiting ~29 s (the pool's acquire timeout) for a connection, seen by
        // schemathesis as a timeout; with 16 they answer in milliseconds.
        let pool = SqlitePoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await
            .map_err(Error::store)?;
        Ok(Database::Sqlite(pool))
    }

    /// Connects to the PostgreSQL database `url` names, with up to `max_connections`. An
    /// error never repeats the URL (it may hold a password).
    pub async fn postgres(url: &str, max_connections: u32) -> Result<Database> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| Error::Config("DATABASE_URL is not a valid postgres:// URL".to_owned()))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(Error::store)?;
        Ok(Database::Postgres(pool))
    }

    /// The SQL dialect of this backend.
    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Sqlite(_) => Dialect::Sqlite,
            Database::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        match self {
            Database::Sqlite(p) => p.close().await,
            Database::Postgres(p) => p.close().await,
        }
    }
}

/// The SQL spoken by a backend. Statements are written once, with SQLite's numbered `?N` (or
/// bare `?`) placeholders, and [`Dialect::sql`] turns them into the backend's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: `?N` placeholders.
    Sqlite,
    /// PostgreSQL: `$N` placeholders.
    Postgres,
}

impl Dialect {
    /// `text`, written with `?N` (or bare `?`, numbered in order) placeholders, for this
    /// backend. Placeholders inside quoted literals are left alone.
    pub fn sql(self, text: &str) -> String {
        if self == Dialect::Sqlite {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut next = 1u32;
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                '?' if !quoted => {
                    out.push('$');
                    if chars.peek().is_some_and(char::is_ascii_digit) {
                        while let Some(d) = chars.next_if(char::is_ascii_digit) {
                            out.push(d);
                        }
                    } else {
                        out.push_str(&next.to_string());
                        next += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn placeholders_become_postgres_numbers() {
        let pg = |s: &str| Dialect::Postgres.sql(s);
        assert_eq!(pg("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(
            pg("SET o = ?2, u = ?3 WHERE id = ?1 AND t < ?4"),
            "SET o = $2, u = $3 WHERE id = $1 AND t < $4"
        );
        assert_eq!(
            pg("state NOT IN ('?', 'x') AND y = ?"),
            "state NOT IN ('?', 'x') AND y = $1"
        );
        assert_eq!(Dialect::Sqlite.sql("a = ?1"), "a = ?1");
    }
}
