//! The objects the Files and Batches endpoints return, read liberally: every field OpenAI may
//! omit or null is optional, and unknown fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A batch's status as OpenAI reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BatchStatus {
    /// The input file is being checked.
    Validating,
    /// Validation failed; see [`Batch::errors`].
    Failed,
    /// Requests are running.
    InProgress,
    /// Output files are being written.
    Finalizing,
    /// Done; output and error files are ready.
    Completed,
    /// The 24 h window passed; finished requests are in the output file.
    Expired,
    /// A cancel was requested.
    Cancelling,
    /// Cancelled; finished requests are in the output file.
    Cancelled,
    /// A status this client does not know yet.
    #[serde(untagged)]
    Other(String),
}

impl BatchStatus {
    /// The status as OpenAI spells it.
    pub fn as_str(&self) -> &str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
            BatchStatus::Other(s) => s,
        }
    }

    /// Parses OpenAI's spelling.
    pub fn parse(s: &str) -> BatchStatus {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .unwrap_or_else(|_| BatchStatus::Other(s.to_owned()))
    }

    /// Whether the batch will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            BatchStatus::Failed
                | BatchStatus::Completed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }
}

impl std::fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `request_counts` of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests in the input file (0 until `in_progress`).
    #[serde(default)]
    pub total: u64,
    /// Requests answered with a 2xx.
    #[serde(default)]
    pub completed: u64,
    /// Requests answered with an error.
    #[serde(default)]
    pub failed: u64,
}

/// One entry of a failed batch's `errors.data`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchError {
    /// Error code, e.g. `invalid_json_line` or `token_limit_exceeded`.
    #[serde(default)]
    pub code: Option<String>,
    /// Message as OpenAI words it.
    #[serde(default)]
    pub message: Option<String>,
    /// The offending parameter.
    #[serde(default)]
    pub param: Option<String>,
    /// 1-based line of the input file, when the problem is in one line.
    #[serde(default)]
    pub line: Option<u64>,
}

/// `errors` of a batch: `{"object": "list", "data": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrors {
    /// The entries, in line order.
    #[serde(default)]
    pub data: Vec<BatchError>,
}

/// A Batch object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// `batch_…`.
    pub id: String,
    /// The endpoint every line targets.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The resolved model (2025+ objects).
    #[serde(default)]
    pub model: Option<String>,
    /// Validation errors of a failed batch.
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    /// The input file.
    #[serde(default)]
    pub input_file_id: Option<String>,
    /// `24h`.
    #[serde(default)]
    pub completion_window: Option<String>,
    /// Current status; `None` only if OpenAI omitted it.
    #[serde(default)]
    pub status: Option<BatchStatus>,
    /// Output file, once the batch ended with some success.
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// Error file, once the batch ended with some failure.
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub in_progress_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub finalizing_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub completed_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub failed_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub expired_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub cancelling_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub cancelled_at: Option<i64>,
    /// Progress.
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    /// Token usage, kept as sent.
    #[serde(default)]
    pub usage: Option<serde_json::Value>,
    /// Metadata as given at create.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl Batch {
    /// The status, `Other("")` when absent.
    pub fn status(&self) -> BatchStatus {
        self.status
            .clone()
            .unwrap_or_else(|| BatchStatus::Other(String::new()))
    }

    /// A metadata value.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key).map(String::as_str)
    }
}

/// A File object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    /// `file-…`.
    pub id: String,
    /// Size in bytes.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds, when the file expires.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The name given at upload.
    #[serde(default)]
    pub filename: Option<String>,
    /// `batch`, `batch_output`, ...
    #[serde(default)]
    pub purpose: Option<String>,
    /// `uploaded`, `processed` or `error` (deprecated by OpenAI).
    #[serde(default)]
    pub status: Option<String>,
}

/// The answer to `DELETE /files/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFile {
    /// The file.
    pub id: String,
    /// Whether it is gone.
    #[serde(default)]
    pub deleted: bool,
}

/// One page of a list endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    /// The items.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    /// Id of the first item.
    #[serde(default)]
    pub first_id: Option<String>,
    /// Id of the last item: the `after` cursor of the next page.
    #[serde(default)]
    pub last_id: Option<String>,
    /// Whether another page follows.
    #[serde(default)]
    pub has_more: bool,
}

/// Query of `GET /files`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileListQuery {
    /// Only files of this purpose.
    pub purpose: Option<String>,
    /// Page size (1..=10000).
    pub limit: Option<u32>,
    /// `asc` or `desc` (OpenAI's default) by creation time.
    pub order: Option<String>,
    /// Cursor: the last id of the previous page.
    pub after: Option<String>,
}

/// Query of `GET /batches`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchListQuery {
    /// Page size (1..=100, OpenAI's default 20).
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    pub after: Option<String>,
}

/// Body of `POST /batches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBatchRequest {
    /// The uploaded input file.
    pub input_file_id: String,
    /// The endpoint every line targets, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// `24h`.
    pub completion_window: String,
    /// Up to 16 string pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl CreateBatchRequest {
    /// A request with the 24 h window and no metadata.
    pub fn new(input_file_id: impl Into<String>, endpoint: batch_format::Endpoint) -> Self {
        CreateBatchRequest {
            input_file_id: input_file_id.into(),
            endpoint: endpoint.as_str().to_owned(),
            completion_window: "24h".to_owned(),
            metadata: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A completed batch as OpenAI returned it (observed-behaviour §1, BOT cassette, trimmed).
    const COMPLETED: &str = r#"{"id":"batch_691100653714819085a1d9b57a239d50","object":"batch","endpoint":"/v1/chat/completions","model":"gpt-4o-mini-2024-07-18","errors":null,"input_file_id":"file-Fbd6NJ5k8WEkring4tdFaY","completion_window":"24h","status":"completed","output_file_id":"file-2uVzUMvGHRZAcNg1ZHHjdq","error_file_id":null,"created_at":1762722031,"in_progress_at":1762722032,"expires_at":1762808431,"finalizing_at":1762722070,"completed_at":1762722075,"failed_at":null,"expired_at":null,"cancelling_at":null,"cancelled_at":null,"request_counts":{"total":1,"completed":1,"failed":0},"usage":{"input_tokens":9,"output_tokens":9,"total_tokens":18},"metadata":null,"a_field_from_the_future":{"x":1}}"#;

    #[test]
    fn a_real_batch_parses_and_unknown_fields_are_ignored() {
        let batch: Batch = serde_json::from_str(COMPLETED).unwrap();
        assert_eq!(batch.status(), BatchStatus::Completed);
        assert!(batch.status().is_terminal());
        assert_eq!(batch.request_counts.unwrap().completed, 1);
        assert_eq!(batch.error_file_id, None);
        assert_eq!(batch.metadata_value("batchbeam_key"), None);
    }

    #[test]
    fn a_2024_batch_without_model_or_usage_parses() {
        let batch: Batch = serde_json::from_str(
            r#"{"id":"batch_eh23pqnpVq4ZMov2lVVtTNC5","status":"validating"}"#,
        )
        .unwrap();
        assert_eq!(batch.status(), BatchStatus::Validating);
        assert!(!batch.status().is_terminal());
        assert_eq!((batch.model, batch.usage), (None, None));
    }

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_kept() {
        for s in [
            "validating",
            "failed",
            "in_progress",
            "finalizing",
            "completed",
            "expired",
            "cancelling",
            "cancelled",
        ] {
            assert_eq!(BatchStatus::parse(s).as_str(), s);
            assert!(!matches!(BatchStatus::parse(s), BatchStatus::Other(_)));
        }
        assert_eq!(
            BatchStatus::parse("paused"),
            BatchStatus::Other("paused".into())
        );
        let batch: Batch = serde_json::from_str(r#"{"id":"b","status":"paused"}"#).unwrap();
        assert_eq!(batch.status().as_str(), "paused");
    }

    #[test]
    fn failed_batch_errors_keep_their_lines() {
        let batch: Batch = serde_json::from_str(
            r#"{"id":"b","status":"failed","errors":{"object":"list","data":[{"code":"invalid_json_line","message":"This line is not parseable as valid JSON.","param":null,"line":2},{"code":"token_limit_exceeded","message":"Enqueued token limit reached","param":null,"line":null}]}}"#,
        )
        .unwrap();
        let errors = batch.errors.unwrap().data;
        assert_eq!(errors[0].line, Some(2));
        assert_eq!(errors[1].code.as_deref(), Some("token_limit_exceeded"));
    }

    #[test]
    fn list_pages_default_what_is_missing() {
        let page: List<FileObject> = serde_json::from_str(r#"{"object":"list"}"#).unwrap();
        assert!(page.data.is_empty() && !page.has_more && page.last_id.is_none());
    }
}
