//! The Batch object as the API shows it, with the real key order (observed-behaviour §1).

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// `metadata` in the order the client sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Metadata(pub(crate) Vec<(String, String)>);

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One entry of `errors.data[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ErrorItem {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) line: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: &'a [ErrorItem],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct RequestCounts {
    pub(crate) total: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct CachedTokens {
    pub(crate) cached_tokens: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ReasoningTokens {
    pub(crate) reasoning_tokens: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct UsageObject {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) total_tokens: u64,
    pub(crate) input_tokens_details: CachedTokens,
    pub(crate) output_tokens_details: ReasoningTokens,
}

impl UsageObject {
    pub(crate) fn new(input: u64, output: u64) -> UsageObject {
        UsageObject {
            input_tokens: input,
            output_tokens: output,
            total_tokens: input + output,
            input_tokens_details: CachedTokens { cached_tokens: 0 },
            output_tokens_details: ReasoningTokens {
                reasoning_tokens: 0,
            },
        }
    }
}

/// The Batch object; every field is always present (null when unset).
#[derive(Debug, Serialize)]
pub(crate) struct BatchObject<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) endpoint: &'a str,
    pub(crate) model: Option<&'a str>,
    pub(crate) errors: Option<ErrorList<'a>>,
    pub(crate) input_file_id: &'a str,
    pub(crate) completion_window: &'static str,
    pub(crate) status: &'static str,
    pub(crate) output_file_id: Option<&'a str>,
    pub(crate) error_file_id: Option<&'a str>,
    pub(crate) created_at: i64,
    pub(crate) in_progress_at: Option<i64>,
    pub(crate) expires_at: i64,
    pub(crate) finalizing_at: Option<i64>,
    pub(crate) completed_at: Option<i64>,
    pub(crate) failed_at: Option<i64>,
    pub(crate) expired_at: Option<i64>,
    pub(crate) cancelling_at: Option<i64>,
    pub(crate) cancelled_at: Option<i64>,
    pub(crate) request_counts: RequestCounts,
    pub(crate) usage: UsageObject,
    pub(crate) metadata: Option<&'a Metadata>,
}

/// One line of an output or error file.
#[derive(Debug, Serialize)]
pub(crate) struct OutputLine<'a> {
    pub(crate) id: &'a str,
    pub(crate) custom_id: &'a serde_json::Value,
    pub(crate) response: Option<LineResponse<'a>>,
    pub(crate) error: Option<LineError>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LineResponse<'a> {
    pub(crate) status_code: u16,
    pub(crate) request_id: &'a str,
    pub(crate) body: crate::error::ReplyBody<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LineError {
    pub(crate) code: &'static str,
    pub(crate) message: &'static str,
}
