//! The command line as the top layer of the one settings reader, `providers::Settings`: flags
//! that are settings (`--db`, `--sessions`) are handed to it, never read from the environment
//! by clap.

use std::path::Path;

use providers::Settings;

/// The settings flags given, as `(key in batchbeam.toml, value)` pairs.
pub(crate) fn flags(db: Option<&Path>, sessions: Option<&Path>) -> Vec<(&'static str, String)> {
    let mut flags = Vec::new();
    if let Some(db) = db {
        flags.push(("data.db", db.to_string_lossy().into_owned()));
    }
    if let Some(sessions) = sessions {
        flags.push(("data.sessions", sessions.to_string_lossy().into_owned()));
    }
    flags
}

/// Every setting: defaults < `batchbeam.toml` < environment < these flags.
pub(crate) fn load(db: Option<&Path>, sessions: Option<&Path>) -> anyhow::Result<Settings> {
    Ok(Settings::load(&flags(db, sessions))?)
}
