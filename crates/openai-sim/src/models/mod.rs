//! Simulated models: deterministic stand-ins for the chat, image, embedding and moderation models.

use batch_format::Endpoint;
use serde_json::{Value, json};

/// The simulated models behind every endpoint; cheap to clone and shareable across threads.
#[derive(Debug, Clone)]
pub struct Models {
    seed: u64,
}

/// What a simulated model answers: an HTTP status, a JSON body and the tokens it bills.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    /// HTTP status code (200 on success, 4xx with an OpenAI error body otherwise).
    pub status: u16,
    /// The response body exactly as the synchronous endpoint returns it.
    pub body: Value,
    /// Input tokens billed for the request.
    pub input_tokens: u64,
    /// Output tokens billed for the request.
    pub output_tokens: u64,
}

impl Models {
    /// Models whose every answer is a pure function of `seed` and the request body.
    pub fn new(seed: u64) -> Models {
        Models { seed }
    }

    /// Answers one request to `endpoint` as the real API would (same answer in and out of a batch).
    pub fn execute(&self, endpoint: Endpoint, body: &Value) -> ModelReply {
        let _ = (self.seed, endpoint, body);
        ModelReply {
            status: 501,
            body: json!({"error": {"message": "not implemented yet", "type": "server_error", "param": null, "code": null}}),
            input_tokens: 0,
            output_tokens: 0,
        }
    }
}
