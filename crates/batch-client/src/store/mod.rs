//! Durable batch records: the `JobStore` trait and its implementations on SQLite (one file,
//! WAL; the default) and PostgreSQL (several processes sharing the work), one body of SQL for
//! both (`sql`).

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;

use batch_format::ShardManifest;
use serde::{Deserialize, Serialize};

use crate::types::{BatchError, BatchStatus, RequestCounts};
use crate::{Error, Result};

mod either;
mod postgres;
mod sql;
mod sqlite;
#[cfg(test)]
pub(crate) mod tests;

pub use either::DbStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Where a record is in its life, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// The intent is stored; the input may or may not be uploaded.
    Intent,
    /// The input file id is stored; the batch may or may not be created.
    Uploaded,
    /// The batch id is stored; it is being polled.
    Submitted,
    /// The batch failed with `token_limit_exceeded`; a new attempt waits its turn.
    WaitingResubmit,
    /// The batch ended; its result files are not downloaded yet.
    Ended,
    /// The batch ended and its result files are on disk (or it had none).
    Done,
    /// Stopped for good by an error that retrying cannot fix (see `last_error`).
    Error,
}

impl JobState {
    /// Snake-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Intent => "intent",
            JobState::Uploaded => "uploaded",
            JobState::Submitted => "submitted",
            JobState::WaitingResubmit => "waiting_resubmit",
            JobState::Ended => "ended",
            JobState::Done => "done",
            JobState::Error => "error",
        }
    }

    /// Whether nothing more will happen to the record.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Error)
    }
}

impl FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<JobState> {
        Ok(match s {
            "intent" => JobState::Intent,
            "uploaded" => JobState::Uploaded,
            "submitted" => JobState::Submitted,
            "waiting_resubmit" => JobState::WaitingResubmit,
            "ended" => JobState::Ended,
            "done" => JobState::Done,
            "error" => JobState::Error,
            other => return Err(Error::store(format!("unknown state '{other}'"))),
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a record's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Our state after the change.
    pub state: JobState,
    /// OpenAI's status after the change, once there is a batch.
    pub remote_status: Option<String>,
    /// What happened, e.g. `uploaded file-…`.
    pub detail: Option<String>,
}

/// Everything kept about one submitted shard. Never holds the API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Our id, `bb_` + a lowercase ULID.
    pub id: String,
    /// The shard's name.
    pub shard_name: String,
    /// The shard's custom ids, endpoint and model.
    pub manifest: ShardManifest,
    /// Tags the uploaded file's name and the batch's metadata, so a resumed submit can find them.
    pub idempotency_key: String,
    /// The JSONL input on disk.
    pub input_path: String,
    /// Its size.
    pub input_bytes: u64,
    /// Metadata given by the caller (ours is added when the batch is created).
    pub metadata: BTreeMap<String, String>,
    /// The uploaded input file.
    pub input_file_id: Option<String>,
    /// The current attempt's batch.
    pub batch_id: Option<String>,
    /// Our state.
    pub state: JobState,
    /// OpenAI's last reported status.
    pub remote_status: Option<BatchStatus>,
    /// OpenAI's last reported counts.
    pub request_counts: RequestCounts,
    /// Batches created for this record so far (1 + resubmissions).
    pub attempts: u32,
    /// Output file id.
    pub output_file_id: Option<String>,
    /// Error file id.
    pub error_file_id: Option<String>,
    /// The output file on disk.
    pub output_path: Option<String>,
    /// The error file on disk.
    pub error_path: Option<String>,
    /// A failed batch's validation errors.
    pub batch_errors: Vec<BatchError>,
    /// The last error met while carrying the record on.
    pub last_error: Option<String>,
    /// Whether we asked OpenAI to cancel.
    pub cancel_requested: bool,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds.
    pub updated_at_ms: i64,
    /// When the current attempt's batch was created (Unix milliseconds).
    pub submitted_at_ms: Option<i64>,
    /// When the record is next due for a poll (Unix milliseconds).
    pub next_poll_at_ms: i64,
    /// The current polling interval.
    pub poll_interval_ms: i64,
    /// The submission (one input file, keyed by its content) this record is a shard of; `None`
    /// for a record submitted on its own with [`crate::BatchJobManager::submit_batch`].
    pub submission_id: Option<String>,
}

/// A record's state and counts, without its manifest: what a caller watching many records
/// reads of each ([`JobStore::statuses`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordStatus {
    /// Our id, `bb_` + a lowercase ULID.
    pub id: String,
    /// The current attempt's batch.
    pub batch_id: Option<String>,
    /// Our state.
    pub state: JobState,
    /// OpenAI's last reported status.
    pub remote_status: Option<BatchStatus>,
    /// OpenAI's last reported counts.
    pub request_counts: RequestCounts,
}

/// The unfinished records at a glance: how many, and when the first is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnfinishedSummary {
    /// Records neither `done` nor `error`.
    pub count: usize,
    /// The earliest `next_poll_at_ms` among them.
    pub next_due_ms: Option<i64>,
}

/// One input file as it was submitted with [`crate::BatchJobManager::submit_file`]: its content
/// key (endpoint and SHA-256 of its bytes) and its records, one per shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Ours: `bs_` + a lowercase ULID.
    pub id: String,
    /// `<endpoint> sha256:<hex>`: what makes two submissions the same.
    pub content_key: String,
    /// 0 for the first submission of this content; the ones made on purpose after it count up.
    pub seq: u32,
    /// The file as given (absolute).
    pub source_path: String,
    /// The endpoint every line targets.
    pub endpoint: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Request lines.
    pub lines: u64,
    /// Bytes.
    pub bytes: u64,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// Durable storage of batch records. SQLite ([`SqliteStore`]) is the default; [`PgStore`]
/// keeps them in PostgreSQL.
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new record and its first history entry, leased to `lease.0` until `lease.1`,
    /// atomically: no other process carries the record on before its submitter has.
    fn insert(
        &self,
        record: &JobRecord,
        change: &StatusChange,
        lease: (&str, i64),
    ) -> impl Future<Output = Result<()>> + Send;
    /// Replaces a record's row, with a history entry when `change` is given, atomically.
    fn update(
        &self,
        record: &JobRecord,
        change: Option<&StatusChange>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// A record by our id.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<JobRecord>>> + Send;
    /// A record by its current OpenAI batch id.
    fn find_by_batch_id(
        &self,
        batch_id: &str,
    ) -> impl Future<Output = Result<Option<JobRecord>>> + Send;
    /// Every record, newest first.
    fn list(&self) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;
    /// Records that are not `done` or `error`, oldest first.
    fn unfinished(&self) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;
    /// The ids of the unfinished records due for a poll at `now_ms` (`next_poll_at_ms` at
    /// or before it), oldest first; all unfinished ones when `now_ms` is `None`. Read from an
    /// index, without the rows.
    fn due(&self, now_ms: Option<i64>) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// How many records are unfinished, and when the first of them is due.
    fn unfinished_summary(&self) -> impl Future<Output = Result<UnfinishedSummary>> + Send;
    /// The state and counts of each record among `ids`, by our id or its current batch id
    /// (records not found are left out), in a few set-based reads without manifests.
    fn statuses(&self, ids: &[String]) -> impl Future<Output = Result<Vec<RecordStatus>>> + Send;
    /// A record's history, oldest first.
    fn history(&self, id: &str) -> impl Future<Output = Result<Vec<StatusChange>>> + Send;
    /// Takes or renews the record's lease for `owner` until `until_ms`, unless another owner
    /// holds an unexpired one. `true` when `owner` now holds it.
    fn try_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Gives the lease back, if `owner` holds it.
    fn release_lease(&self, id: &str, owner: &str) -> impl Future<Output = Result<()>> + Send;
    /// Stores a submission and its records (each with its first history entry, each leased to
    /// `lease.0` until `lease.1`) atomically. `Ok(false)`, storing nothing, when a submission
    /// with the same content key and `seq` is already there (another process got there first).
    fn insert_submission(
        &self,
        submission: &Submission,
        records: &[(JobRecord, StatusChange)],
        lease: (&str, i64),
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The latest submission (highest `seq`) with this content key.
    fn find_submission(
        &self,
        content_key: &str,
    ) -> impl Future<Output = Result<Option<Submission>>> + Send;
    /// A submission's records, in shard order.
    fn submission_records(
        &self,
        submission_id: &str,
    ) -> impl Future<Output = Result<Vec<JobRecord>>> + Send;
}
