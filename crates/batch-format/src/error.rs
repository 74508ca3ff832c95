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
    /// The builder rejected a request: which one, which field, and why.
    #[error("request '{custom_id}': {field} {reason}")]
    InvalidRequest {
        /// The request's `custom_id` (empty if that is the problem).
        custom_id: String,
        /// The offending body or line field, as the API spells it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The builder already holds a request with this `custom_id`.
    #[error("request '{custom_id}': custom_id is already used in this batch")]
    DuplicateCustomId {
        /// The repeated id.
        custom_id: String,
    },
    /// A request body of the wrong type for its endpoint (a raw body for an endpoint with a
    /// typed one, or a typed body for another endpoint).
    #[error("request '{custom_id}': a {body} body cannot be sent to {url}")]
    BodyMismatch {
        /// The request's `custom_id`.
        custom_id: String,
        /// The endpoint the line names.
        url: crate::Endpoint,
        /// The kind of body it carries (`raw`, `chat completion`, ...).
        body: &'static str,
    },
    /// One request line alone is bigger than a shard may be.
    #[error(
        "request '{custom_id}': its line is {bytes} bytes, over the {max_bytes}-byte shard limit"
    )]
    LineTooLarge {
        /// The request's `custom_id`.
        custom_id: String,
        /// Size of its JSONL line, newline included.
        bytes: u64,
        /// The shard byte limit.
        max_bytes: u64,
    },
    /// One request alone is estimated over the per-model enqueued-token budget.
    #[error(
        "request '{custom_id}': estimated at {tokens} tokens, over the per-model budget of {budget}"
    )]
    OverTokenBudget {
        /// The request's `custom_id`.
        custom_id: String,
        /// Its estimated tokens.
        tokens: u64,
        /// The budget.
        budget: u64,
    },
    /// A batch name the builder cannot use.
    #[error("batch name '{name}': {reason}")]
    InvalidBatchName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The result type of batch-format.
pub type Result<T, E = Error> = std::result::Result<T, E>;
