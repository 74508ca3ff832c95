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

/// Connections in a pool unless the caller says otherwise (`BATCHBEAM_DB_CONNECTIONS`).
pub const DEFAULT_CONNECTIONS: u32 = 16;

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
            Database::postgres(location, DEFAULT_CONNECTIONS).await
        } else if location.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(location).map_err(Error::store)?;
            Database::sqlite_with(options, true, DEFAULT_CONNECTIONS).await
        } else {
            Database::sqlite(Path::new(location)).await
        }
    }

    /// Opens (creating when missing, with its directory) the SQLite file at `path`.
    pub async fn sqlite(path: &Path) -> Result<Database> {
        Database::sqlite_pooled(path, DEFAULT_CONNECTIONS).await
    }

    /// [`Database::sqlite`] with up to `max_connections` in its pool.
    pub async fn sqlite_pooled(path: &Path, max_connections: u32) -> Result<Database> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let options = SqliteConnectOptions::new().filename(path);
        Database::sqlite_with(options, true, max_connections).await
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
        let options = SqliteConnectOptions::new().filename(path);
        Database::sqlite_with(options, false, DEFAULT_CONNECTIONS).await
    }

    /// Connects with the settings every SQLite opening shares.
    async fn sqlite_with(
        options: SqliteConnectOptions,
        create: bool,
        max_connections: u32,
    ) -> Result<Database> {
        let options = options
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Every store of the process shares this pool (batch records, the queue, sessions,
        // jobs, the request cache). No task may hold a connection while it waits for another
        // (the server once polled a job's search, mid-query, only between writes of its
        // events: with as many jobs as connections, each waited ~30 s, the acquire timeout).
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
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

/// The PostgreSQL channel on which a batch record's id is announced when the record changes
/// state or status, and when a higher layer has settled it (batch-queue, once its requests hold
/// their results): what lets a process wake the work waiting on a record another process
/// carried, without asking about every record.
pub const RECORD_CHANNEL: &str = "batchbeam_records";

/// What [`Database::notices`] hands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The record with this id changed (announced on [`RECORD_CHANNEL`]).
    Record(String),
    /// The listening connection was lost and is being made again: announcements may have been
    /// missed meanwhile, so whatever they would have said must be looked up.
    Missed,
}

/// Announces record `record_id` on [`RECORD_CHANNEL`] to every process listening on the
/// database, from the transaction `conn` is in: delivered once (and only if) it commits.
/// PostgreSQL only; SQLite's one process learns of its own changes without it.
pub async fn announce_record(conn: &mut sqlx::PgConnection, record_id: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RECORD_CHANNEL)
        .bind(record_id)
        .execute(conn)
        .await
        .map_err(Error::store)?;
    Ok(())
}

impl Database {
    /// Every announcement on [`RECORD_CHANNEL`] by any process on this database (this one
    /// included), from a connection of its own kept by a task that ends when the receiver is
    /// dropped. `None` on SQLite: there is no one to hear from.
    pub async fn notices(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<Notice>>> {
        let Database::Postgres(pool) = self else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(Error::store)?;
        listener
            .listen(RECORD_CHANNEL)
            .await
            .map_err(Error::store)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    r = listener.try_recv() => r,
                    () = tx.closed() => return,
                };
                let notice = match received {
                    Ok(Some(n)) => Notice::Record(n.payload().to_owned()),
                    // The connection dropped; the next call makes it again.
                    Ok(None) => Notice::Missed,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for record changes");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = tx.closed() => return,
                        }
                        Notice::Missed
                    }
                };
                if tx.send(notice).is_err() {
                    return;
                }
            }
        });
        Ok(Some(rx))
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
