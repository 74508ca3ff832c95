//! The orchestrator's one error type, at the crate's edge: pricing and downscaling failures
//! are kinds of it, each with its own error as the source.

use std::path::PathBuf;

use providers::Tier;

/// What can stop a search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter out of bounds: its name and what is wrong.
    #[error("parameter {name}: {problem}")]
    Param {
        /// The parameter.
        name: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// A stage ended with too few usable results to go on.
    #[error("stage {stage} of iteration {iteration}: {problem}")]
    Stage {
        /// The stage.
        stage: String,
        /// Its iteration.
        iteration: u32,
        /// Why the search cannot go on (with the calls' errors).
        problem: String,
    },
    /// A model call failed for good (after its tier's retries and fallbacks).
    #[error("provider: {0}")]
    Provider(#[from] providers::ProviderError),
    /// A stage was routed to a tier the engines have no backend for.
    #[error("no backend for the {tier} tier (the engines have: {})", names(have))]
    NoBackend {
        /// The tier asked for.
        tier: Tier,
        /// The tiers the engines have.
        have: Vec<Tier>,
    },
    /// The checkpoint database failed.
    #[error("checkpoint store ({context}): {source}")]
    Store {
        /// What was being done (the database's path, or the session and what of it).
        context: String,
        /// What SQLite said.
        #[source]
        source: sqlx::Error,
    },
    /// The checkpoint database's tables could not be brought up to date.
    #[error("checkpoint store: migrating its tables: {source}")]
    Migrate {
        /// What the migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A checkpoint that cannot be read back: corrupt, or written by something else.
    #[error("session '{session}': its checkpoint's {field} cannot be read: {problem}")]
    Checkpoint {
        /// The session.
        session: String,
        /// The field (`params`, `snapshot`, `state`...).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A session's state could not be written as JSON.
    #[error("encoding a checkpoint: {0}")]
    Encode(#[source] serde_json::Error),
    /// Writing or reading the session folder failed.
    #[error("session folder {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command that only reads was pointed at a database that does not exist.
    #[error(
        "no database at {}: nothing has run with it (check --db or BATCHBEAM_DB; `batchbeam run` creates it)",
        path.display()
    )]
    NoDatabase {
        /// The path given.
        path: PathBuf,
    },
    /// A session id this database does not hold.
    #[error("no session '{0}' in the checkpoint database")]
    UnknownSession(String),
    /// Pricing data is missing or wrong.
    #[error("pricing: {0}")]
    Pricing(#[source] crate::cost::PricingError),
    /// An image could not be prepared for the judge.
    #[error("downscaling: {0}")]
    Downscale(#[source] crate::downscale::DownscaleError),
}

fn names(tiers: &[Tier]) -> String {
    let names: Vec<&str> = tiers.iter().map(|t| t.as_str()).collect();
    names.join(", ")
}

impl Error {
    /// A failed database operation, with what was being done.
    pub(crate) fn store(context: impl std::fmt::Display, source: sqlx::Error) -> Error {
        Error::Store {
            context: context.to_string(),
            source,
        }
    }
}

impl From<crate::cost::PricingError> for Error {
    fn from(e: crate::cost::PricingError) -> Error {
        Error::Pricing(e)
    }
}

/// The orchestrator's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
