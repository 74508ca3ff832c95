//! The one error type of batch-format.

/// What went wrong while building, reading or writing batch files.
///
/// Problems *inside* a JSONL file (a bad line, a duplicate id) are not errors: they are reported
/// as data, one per line, so that one bad line never hides the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the underlying stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A value could not be serialised to JSON.
    #[error("could not serialise {what}: {source}")]
    Serialize {
        /// What was being serialised (e.g. "request line for custom_id 'a-1'").
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// The result type of batch-format.
pub type Result<T, E = Error> = std::result::Result<T, E>;
