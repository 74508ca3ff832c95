//! One line of a batch input file: `{"custom_id","method","url","body"}`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{ChatCompletionRequest, Endpoint, ImageGenerationRequest};

/// The HTTP method of a request line; the Batch API only knows `POST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Method {
    /// `POST`.
    #[default]
    #[serde(rename = "POST")]
    Post,
}

/// One request of a batch input file.
///
/// Serialises to `{"custom_id":..,"method":"POST","url":..,"body":{..}}` in that key order.
/// Deserialising picks the body type from `url`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRequestLine {
    /// Caller-chosen id, unique within a batch; output lines come back keyed by it.
    pub custom_id: String,
    /// Always `POST`.
    pub method: Method,
    /// The endpoint the body is for.
    pub url: Endpoint,
    /// The request body.
    pub body: RequestBody,
}

impl BatchRequestLine {
    /// A `/v1/chat/completions` line.
    pub fn chat(custom_id: impl Into<String>, request: ChatCompletionRequest) -> Self {
        BatchRequestLine {
            custom_id: custom_id.into(),
            method: Method::Post,
            url: Endpoint::ChatCompletions,
            body: RequestBody::ChatCompletion(request),
        }
    }

    /// A `/v1/images/generations` line.
    pub fn image_generation(custom_id: impl Into<String>, request: ImageGenerationRequest) -> Self {
        BatchRequestLine {
            custom_id: custom_id.into(),
            method: Method::Post,
            url: Endpoint::ImagesGenerations,
            body: RequestBody::ImageGeneration(request),
        }
    }

    /// A line with an untyped body, for endpoints without a typed body.
    pub fn raw(custom_id: impl Into<String>, url: Endpoint, body: Map<String, Value>) -> Self {
        BatchRequestLine {
            custom_id: custom_id.into(),
            method: Method::Post,
            url,
            body: RequestBody::Raw(body),
        }
    }
}

impl<'de> Deserialize<'de> for BatchRequestLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            custom_id: String,
            method: Method,
            url: Endpoint,
            body: Map<String, Value>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let body = RequestBody::from_json(wire.url, wire.body).map_err(serde::de::Error::custom)?;
        Ok(BatchRequestLine {
            custom_id: wire.custom_id,
            method: wire.method,
            url: wire.url,
            body,
        })
    }
}

/// The `body` of a request line.
// Not boxed: a body lives only until the builder serialises it, so the padding of a `Raw`
// body costs nothing worth an extra allocation per chat request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RequestBody {
    /// A `/v1/chat/completions` body.
    ChatCompletion(ChatCompletionRequest),
    /// A `/v1/images/generations` body.
    ImageGeneration(ImageGenerationRequest),
    /// Any other endpoint's body (`/v1/responses`, embeddings, completions, moderations,
    /// image edits, videos), passed through as an open JSON object.
    Raw(Map<String, Value>),
}

impl RequestBody {
    /// The endpoint whose typed body this is, or `None` for [`RequestBody::Raw`].
    pub fn typed_endpoint(&self) -> Option<Endpoint> {
        match self {
            RequestBody::ChatCompletion(_) => Some(Endpoint::ChatCompletions),
            RequestBody::ImageGeneration(_) => Some(Endpoint::ImagesGenerations),
            RequestBody::Raw(_) => None,
        }
    }

    /// What kind of body this is, in words: `chat completion`, `image generation` or `raw`.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestBody::ChatCompletion(_) => "chat completion",
            RequestBody::ImageGeneration(_) => "image generation",
            RequestBody::Raw(_) => "raw",
        }
    }

    /// Whether `endpoint` has a typed body here; those endpoints never take a `Raw` one.
    pub fn has_typed_body(endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::ImagesGenerations
        )
    }

    /// The body's `model`, if it names one.
    pub fn model(&self) -> Option<&str> {
        match self {
            RequestBody::ChatCompletion(r) => Some(&r.model),
            RequestBody::ImageGeneration(r) => r.model.as_deref(),
            RequestBody::Raw(map) => map.get("model").and_then(Value::as_str),
        }
    }

    /// Parse a JSON object as the body type `endpoint` uses.
    pub fn from_json(endpoint: Endpoint, body: Map<String, Value>) -> serde_json::Result<Self> {
        Ok(match endpoint {
            Endpoint::ChatCompletions => {
                RequestBody::ChatCompletion(serde_json::from_value(Value::Object(body))?)
            }
            Endpoint::ImagesGenerations => {
                RequestBody::ImageGeneration(serde_json::from_value(Value::Object(body))?)
            }
            _ => RequestBody::Raw(body),
        })
    }
}

impl Serialize for RequestBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestBody::ChatCompletion(r) => r.serialize(serializer),
            RequestBody::ImageGeneration(r) => r.serialize(serializer),
            RequestBody::Raw(map) => map.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Message;

    fn check(line: &BatchRequestLine, expect: &str) {
        let actual = serde_json::to_string(line).unwrap();
        assert_eq!(actual, expect);
        let back: BatchRequestLine = serde_json::from_str(&actual).unwrap();
        assert_eq!(&back, line, "round trip changed the line");
    }

    #[test]
    fn key_order_is_custom_id_method_url_body() {
        check(
            &BatchRequestLine::chat(
                "c-1",
                ChatCompletionRequest::new("gpt-4o", vec![Message::user("hi")]),
            ),
            concat!(
                r#"{"custom_id":"c-1","method":"POST","url":"/v1/chat/completions","#,
                r#""body":{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}}"#
            ),
        );
        check(
            &BatchRequestLine::image_generation(
                "i-1",
                ImageGenerationRequest::new("gpt-image-1", "a cat"),
            ),
            concat!(
                r#"{"custom_id":"i-1","method":"POST","url":"/v1/images/generations","#,
                r#""body":{"prompt":"a cat","model":"gpt-image-1"}}"#
            ),
        );
    }

    #[test]
    fn other_endpoints_keep_a_raw_body() {
        let body = json!({"input": "hello", "model": "text-embedding-3-small"});
        let line = BatchRequestLine::raw(
            "e-1",
            Endpoint::Embeddings,
            body.as_object().unwrap().clone(),
        );
        check(
            &line,
            concat!(
                r#"{"custom_id":"e-1","method":"POST","url":"/v1/embeddings","#,
                r#""body":{"input":"hello","model":"text-embedding-3-small"}}"#
            ),
        );
        assert_eq!(line.body.model(), Some("text-embedding-3-small"));
        assert_eq!(line.body.typed_endpoint(), None);
    }

    #[test]
    fn parsing_picks_the_body_type_from_the_url() {
        let line: BatchRequestLine = serde_json::from_value(json!({
            "custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "o3", "messages": [{"role": "user", "content": "q"}]}
        }))
        .unwrap();
        assert!(matches!(line.body, RequestBody::ChatCompletion(_)));
        assert_eq!(line.body.model(), Some("o3"));

        let err = serde_json::from_value::<BatchRequestLine>(json!({
            "custom_id": "x", "method": "GET", "url": "/v1/embeddings", "body": {}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("GET"), "{err}");

        let err = serde_json::from_value::<BatchRequestLine>(json!({
            "custom_id": "x", "method": "POST", "url": "/v1/images/generations",
            "body": {"model": "gpt-image-1"}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("prompt"), "{err}");
    }
}
