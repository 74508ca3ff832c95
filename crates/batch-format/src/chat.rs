//! Typed body of a `/v1/chat/completions` request, as we send it inside a batch line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of a `POST /v1/chat/completions` request.
///
/// Only the fields batchbeam uses are typed; every other field the API knows (tools, audio,
/// verbosity, ...) survives a round trip in [`extra`](Self::extra).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model id, e.g. `gpt-5-mini`.
    pub model: String,
    /// The conversation so far; the API wants at least one message.
    pub messages: Vec<Message>,
    /// Output format: plain text, JSON mode or Structured Outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Sampling temperature, 0 to 2 (API default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, 0 to 1 (API default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Penalty on tokens by frequency so far, -2 to 2 (API default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Penalty on tokens already present, -2 to 2 (API default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Whether to return log probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many most likely tokens to return per position, 0 to 20; needs `logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Deprecated output limit; reasoning models reject it (see [`crate::normalize_chat`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Upper bound on generated tokens, reasoning tokens included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// How hard a reasoning model thinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Best-effort determinism seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Processing tier (`flex`, `priority`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// Number of choices to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Up to four stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// End-user identifier (deprecated by the API in favour of `safety_identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Up to 16 string key-value pairs stored with the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Every other field, kept verbatim so nothing the caller set is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// A request with only a model and messages set.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatCompletionRequest {
            model: model.into(),
            messages,
            response_format: None,
            temperature: None,
            top_p: None,
            frequency_penalty: None,
            presence_penalty: None,
            logprobs: None,
            top_logprobs: None,
            max_tokens: None,
            max_completion_tokens: None,
            reasoning_effort: None,
            seed: None,
            service_tier: None,
            n: None,
            stop: None,
            user: None,
            metadata: None,
            extra: Map::new(),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Instructions (older models; newer ones treat it like `developer`).
    System,
    /// Instructions that o1 and newer models follow over user messages.
    Developer,
    /// The end user.
    User,
    /// The model, in an earlier turn.
    Assistant,
    /// A tool's answer to a tool call.
    Tool,
}

impl Role {
    /// The role as the API spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a chat conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says; `None` only for assistant messages that carry tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `tool` messages: the tool call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Every other field (`tool_calls`, `refusal`, `audio`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message with the given role and plain-text content.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message::with_content(role, MessageContent::Text(text.into()))
    }

    /// A message with the given role and content parts.
    pub fn parts(role: Role, parts: Vec<ContentPart>) -> Self {
        Message::with_content(role, MessageContent::Parts(parts))
    }

    /// A `system` message with plain text.
    pub fn system(text: impl Into<String>) -> Self {
        Message::text(Role::System, text)
    }

    /// A `developer` message with plain text.
    pub fn developer(text: impl Into<String>) -> Self {
        Message::text(Role::Developer, text)
    }

    /// A `user` message with plain text.
    pub fn user(text: impl Into<String>) -> Self {
        Message::text(Role::User, text)
    }

    /// A `user` message made of parts, e.g. text and images.
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        Message::parts(Role::User, parts)
    }

    /// An `assistant` message with plain text.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message::text(Role::Assistant, text)
    }

    /// A `tool` message answering the tool call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            ..Message::text(Role::Tool, text)
        }
    }

    fn with_content(role: Role, content: MessageContent) -> Self {
        Message {
            role,
            content: Some(content),
            name: None,
            tool_call_id: None,
            extra: Map::new(),
        }
    }
}

/// A message's content: a plain string, or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts (text, images, ...), in order.
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by URL or `data:` URL.
    ImageUrl {
        /// Where the image is and how closely to look at it.
        image_url: ImageUrl,
    },
    /// Base64 audio (`{data, format}`), kept as JSON.
    InputAudio {
        /// The audio object as the API defines it.
        input_audio: Value,
    },
    /// A file (`{file_id}` or `{filename, file_data}`), kept as JSON.
    File {
        /// The file object as the API defines it.
        file: Value,
    },
    /// An assistant's refusal, in an earlier turn.
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part; `url` may be an `https:` URL or a `data:image/...;base64,` URL.
    pub fn image_url(url: impl Into<String>, detail: impl Into<Option<ImageDetail>>) -> Self {
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: url.into(),
                detail: detail.into(),
            },
        }
    }
}

/// The `image_url` object of an image part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// An image URL or a base64 `data:` URL.
    pub url: String,
    /// Fidelity; the API defaults to `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

/// How closely a vision model looks at an image, which sets its token cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageDetail {
    /// The model chooses.
    #[default]
    Auto,
    /// A 512px thumbnail, fixed cost.
    Low,
    /// Full resolution in 512px tiles.
    High,
}

impl ImageDetail {
    /// The detail level as the API spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ImageDetail::Auto => "auto",
            ImageDetail::Low => "low",
            ImageDetail::High => "high",
        }
    }
}

/// The `response_format` of a chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResponseFormat {
    /// Plain text (the default).
    Text,
    /// Older JSON mode: any valid JSON object.
    JsonObject,
    /// Structured Outputs: JSON matching a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

impl ResponseFormat {
    /// Structured Outputs with `strict: true`.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: name.into(),
                description: None,
                schema: Some(schema),
                strict: Some(true),
            },
        }
    }
}

/// The `json_schema` object of a Structured Outputs response format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// Name of the format: a-z, A-Z, 0-9, `_` and `-`, at most 64 characters.
    pub name: String,
    /// What the format is for; the model reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema the output must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the model must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `reasoning_effort` values the spec lists; not every model takes every value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReasoningEffort {
    /// No reasoning (gpt-5.1 and later).
    None,
    /// Minimal reasoning (gpt-5).
    Minimal,
    /// Low.
    Low,
    /// Medium (the API default).
    Medium,
    /// High.
    High,
    /// Extra high.
    Xhigh,
    /// Maximum.
    Max,
}

/// `service_tier` values the spec lists for chat completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServiceTier {
    /// The project's setting.
    Auto,
    /// Standard pricing and speed.
    Default,
    /// Flex processing: batch price, slow synchronous answers, some models only.
    Flex,
    /// Scale tier.
    Scale,
    /// Priority processing.
    Priority,
    /// Fast mode.
    Fast,
}

/// The `stop` field: one sequence or up to four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(request: &ChatCompletionRequest, expect: &str) {
        let actual = serde_json::to_string(request).unwrap();
        assert_eq!(actual, expect);
        let back: ChatCompletionRequest = serde_json::from_str(&actual).unwrap();
        assert_eq!(&back, request, "round trip changed the request");
    }

    #[test]
    fn unset_options_are_not_sent() {
        check(
            &ChatCompletionRequest::new("gpt-4o", vec![Message::user("hi")]),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        );
    }

    #[test]
    fn parts_and_options_use_the_api_spelling() {
        let mut request = ChatCompletionRequest::new(
            "gpt-4o-mini",
            vec![
                Message::developer("be brief"),
                Message::user_parts(vec![
                    ContentPart::text("which is sharper?"),
                    ContentPart::image_url("https://x/a.png", ImageDetail::High),
                    ContentPart::image_url("https://x/b.png", None),
                ]),
                Message::tool("call_1", "42"),
            ],
        );
        request.response_format = Some(ResponseFormat::JsonObject);
        request.reasoning_effort = Some(ReasoningEffort::Xhigh);
        request.service_tier = Some(ServiceTier::Flex);
        request.stop = Some(Stop::Many(vec!["END".into()]));
        check(
            &request,
            concat!(
                r#"{"model":"gpt-4o-mini","messages":[{"role":"developer","content":"be brief"},"#,
                r#"{"role":"user","content":[{"type":"text","text":"which is sharper?"},"#,
                r#"{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"high"}},"#,
                r#"{"type":"image_url","image_url":{"url":"https://x/b.png"}}]},"#,
                r#"{"role":"tool","content":"42","tool_call_id":"call_1"}],"#,
                r#""response_format":{"type":"json_object"},"reasoning_effort":"xhigh","#,
                r#""service_tier":"flex","stop":["END"]}"#
            ),
        );
    }

    #[test]
    fn json_schema_format() {
        let mut request = ChatCompletionRequest::new("gpt-5", vec![Message::system("s")]);
        request.response_format = Some(ResponseFormat::json_schema(
            "score",
            json!({"type": "object"}),
        ));
        check(
            &request,
            concat!(
                r#"{"model":"gpt-5","messages":[{"role":"system","content":"s"}],"#,
                r#""response_format":{"type":"json_schema","json_schema":"#,
                r#"{"name":"score","schema":{"type":"object"},"strict":true}}}"#
            ),
        );
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let input = json!({
            "model": "gpt-4.1",
            "messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c"}]}],
            "tools": [{"type": "function"}],
            "verbosity": "low"
        });
        let request: ChatCompletionRequest = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(request.extra.len(), 2);
        assert!(request.messages[0].extra.contains_key("tool_calls"));
        let mut expect = input;
        // `content: null` is the same as leaving it out.
        expect["messages"][0]
            .as_object_mut()
            .unwrap()
            .remove("content");
        assert_eq!(serde_json::to_value(&request).unwrap(), expect);
    }
}
