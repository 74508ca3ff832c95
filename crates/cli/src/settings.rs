//! The command line as the top layer of the one settings reader, `providers::Settings`: flags
//! that are settings (`--db`, `--database-url`, `--sessions`) are handed to it, never read
//! from the environment by clap.

use std::path::Path;

use orchestrator::SessionStore;
use providers::{Database, Settings};

/// Where the database is, as a command takes it: `--db PATH` or `--database-url URL`.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct DbArgs {
    /// The SQLite database (BATCHBEAM_DB; default ./batchbeam.db).
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<std::path::PathBuf>,
    /// The database as a URL (DATABASE_URL): postgres://… for PostgreSQL, shared by several
    /// `serve` instances, or sqlite:PATH. Wins over --db. Prefer DATABASE_URL for a URL with
    /// a password: a command line is visible to other users of the machine.
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<String>,
}

/// The settings flags given, as `(key in batchbeam.toml, value)` pairs.
pub(crate) fn flags(db: &DbArgs, sessions: Option<&Path>) -> Vec<(&'static str, String)> {
    let mut flags = Vec::new();
    if let Some(db) = &db.db {
        flags.push(("data.db", db.to_string_lossy().into_owned()));
    }
    if let Some(url) = &db.database_url {
        flags.push(("data.database_url", url.clone()));
    }
    if let Some(sessions) = sessions {
        flags.push(("data.sessions", sessions.to_string_lossy().into_owned()));
    }
    flags
}

/// Every setting: defaults < `batchbeam.toml` < environment < these flags.
pub(crate) fn load(db: &DbArgs, sessions: Option<&Path>) -> anyhow::Result<Settings> {
    Ok(Settings::load(&flags(db, sessions))?)
}

/// The sessions of the configured database, for a command that only reads: an SQLite file
/// must exist and is opened read-only; PostgreSQL is read without migrating anything.
pub(crate) async fn sessions_read_only(settings: &Settings) -> anyhow::Result<SessionStore> {
    Ok(match &settings.data.postgres {
        Some(url) => {
            let db = Database::open(url.expose())
                .await
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", url.redacted()))?;
            SessionStore::reading(db).await?
        }
        None => SessionStore::open_read_only(&settings.data.db).await?,
    })
}
