//! The orchestrator's one error type.

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
    #[error(transparent)]
    Provider(#[from] providers::ProviderError),
    /// The batch queue failed (not one request: the queue itself).
    #[error(transparent)]
    Queue(#[from] batch_queue::Error),
    /// The checkpoint database failed.
    #[error("checkpoint store: {0}")]
    Store(String),
    /// Writing the session folder failed.
    #[error("session folder {path}: {source}")]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
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
        path: std::path::PathBuf,
    },
    /// A session id this database does not hold.
    #[error("no session '{0}' in the checkpoint database")]
    UnknownSession(String),
    /// The session was started with other parameters than those given to resume it.
    #[error("session '{id}' was started with other parameters: {difference}")]
    Mismatch {
        /// The session.
        id: String,
        /// The first difference found.
        difference: String,
    },
    /// Pricing data is missing or wrong.
    #[error(transparent)]
    Pricing(#[from] crate::cost::PricingError),
}

impl Error {
    pub(crate) fn store(e: impl std::fmt::Display) -> Error {
        Error::Store(e.to_string())
    }
}

/// The orchestrator's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
