//! Counters behind `GET /sim/stats`: what was created, uploaded, executed and billed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of everything the simulator counted, as served by `GET /sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Simulated Unix time of the snapshot.
    pub now: i64,
    /// Successful `POST /v1/batches`.
    pub batches_created: u64,
    /// Successful `POST /v1/files`.
    pub files_uploaded: u64,
    /// Successful `DELETE /v1/files/{id}`.
    pub files_deleted: u64,
    /// Synchronous model requests executed (chat, images, ...), whatever their status.
    pub sync_requests: u64,
    /// Batch request lines run through a model, over all batches.
    pub batch_requests_executed: u64,
    /// Batch request lines billed (answered 200), over all batches.
    pub batch_requests_billed: u64,
    /// Per batch id.
    pub batches: BTreeMap<String, BatchStats>,
    /// Injected faults by name (`rate_limit`, `connection_reset`, `batch_expire`, ...).
    pub faults: BTreeMap<String, u64>,
}

/// What one batch ran and billed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchStats {
    /// Status when the snapshot was taken.
    pub status: String,
    /// Request lines in the input (0 until validated).
    pub total: u64,
    /// Prompt tokens the validator estimated for the whole input (what counts against the
    /// model's enqueued-token limit).
    pub estimated_tokens: u64,
    /// Lines run through a model (each line at most once).
    pub requests_executed: u64,
    /// Lines answered 200 and billed.
    pub requests_billed: u64,
    /// Billed input tokens.
    pub input_tokens: u64,
    /// Billed output tokens.
    pub output_tokens: u64,
}

/// What the batches did with one custom id, as served by `GET /sim/stats/requests`: a
/// client that sends each request once, and never a second time once it was answered, shows
/// `billed` of at most 1 for every custom id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestStats {
    /// Lines with this custom id run through a model, over all batches.
    pub executed: u64,
    /// Of those, answered 200 and billed.
    pub billed: u64,
    /// The batches that ran them, in no particular order.
    pub batches: Vec<String>,
}

/// Counters kept outside the batch table.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches_created: u64,
    pub(crate) files_uploaded: u64,
    pub(crate) files_deleted: u64,
    pub(crate) sync_requests: u64,
}
