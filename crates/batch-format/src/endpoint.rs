//! The endpoints a batch input file may target, as the OpenAI spec lists them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the URLs a Batch API request line may name; every line of a batch names the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Endpoint {
    /// `/v1/responses`
    #[serde(rename = "/v1/responses")]
    Responses,
    /// `/v1/chat/completions`
    #[serde(rename = "/v1/chat/completions")]
    ChatCompletions,
    /// `/v1/embeddings`
    #[serde(rename = "/v1/embeddings")]
    Embeddings,
    /// `/v1/completions`
    #[serde(rename = "/v1/completions")]
    Completions,
    /// `/v1/moderations`
    #[serde(rename = "/v1/moderations")]
    Moderations,
    /// `/v1/images/generations`
    #[serde(rename = "/v1/images/generations")]
    ImagesGenerations,
    /// `/v1/images/edits`
    #[serde(rename = "/v1/images/edits")]
    ImagesEdits,
    /// `/v1/videos`
    #[serde(rename = "/v1/videos")]
    Videos,
}

impl Endpoint {
    /// Every endpoint the Batch API accepts, in the order the spec lists them.
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Responses,
        Endpoint::ChatCompletions,
        Endpoint::Embeddings,
        Endpoint::Completions,
        Endpoint::Moderations,
        Endpoint::ImagesGenerations,
        Endpoint::ImagesEdits,
        Endpoint::Videos,
    ];

    /// The URL path as it appears in a request line and in `POST /v1/batches`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Responses => "/v1/responses",
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Moderations => "/v1/moderations",
            Endpoint::ImagesGenerations => "/v1/images/generations",
            Endpoint::ImagesEdits => "/v1/images/edits",
            Endpoint::Videos => "/v1/videos",
        }
    }

    /// The endpoint a request line's `url` names, if the Batch API allows it.
    pub fn from_url(url: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == url)
    }

    /// Whether request bodies for this endpoint carry a `model` field the batch must agree on.
    pub const fn requires_model(self) -> bool {
        !matches!(self, Endpoint::Moderations)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_round_trips_through_its_url() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_url(e.as_str()), Some(e));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
        assert_eq!(Endpoint::from_url("/v1/chat/completion"), None);
        assert_eq!(Endpoint::from_url("v1/chat/completions"), None);
    }
}
