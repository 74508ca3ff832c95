//! What each model family accepts, and the rewriting of chat requests to fit it.
//!
//! A batch line the model rejects costs a whole round trip (the batch fails hours later), so
//! requests are fixed before they are written, and every fix is reported, never silent.

use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};

use crate::ChatCompletionRequest;

/// What a model accepts, as far as building requests is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ModelCapabilities {
    /// Takes `max_completion_tokens` and rejects `max_tokens` (gpt-5 family, o-series).
    pub reasoning: bool,
    /// Accepts non-default sampling parameters: `temperature`, `top_p`, the penalties and
    /// `logprobs`. False for reasoning models except the `gpt-5-chat` snapshots.
    pub accepts_temperature: bool,
    /// Offers `service_tier: "flex"`.
    pub supports_flex: bool,
    /// Accepts image content parts.
    pub supports_vision: bool,
}

impl ModelCapabilities {
    /// What we assume of a model the table does not know: an ordinary chat model, text only.
    pub const UNKNOWN: ModelCapabilities = ModelCapabilities {
        reasoning: false,
        accepts_temperature: true,
        supports_flex: false,
        supports_vision: false,
    };
}

const fn caps(
    reasoning: bool,
    accepts_temperature: bool,
    supports_flex: bool,
    supports_vision: bool,
) -> ModelCapabilities {
    ModelCapabilities {
        reasoning,
        accepts_temperature,
        supports_flex,
        supports_vision,
    }
}

/// A reasoning model: `max_completion_tokens` only, default sampling only.
const fn reasoning(supports_flex: bool, supports_vision: bool) -> ModelCapabilities {
    caps(true, false, supports_flex, supports_vision)
}

/// An ordinary chat model, no flex tier.
const fn ordinary(supports_vision: bool) -> ModelCapabilities {
    caps(false, true, false, supports_vision)
}

/// Model families by id prefix. The longest matching prefix wins; a prefix matches only whole
/// id segments, so `gpt-4` covers `gpt-4-0613` but not `gpt-4o`, and `o1` not `o10`.
const MODEL_FAMILIES: &[(&str, ModelCapabilities)] = &[
    // gpt-5, gpt-5-mini, gpt-5-nano, gpt-5.1, gpt-5.2, ... and their snapshots.
    ("gpt-5", reasoning(true, true)),
    ("gpt-5-pro", reasoning(false, true)),
    // The ChatGPT snapshot: max_completion_tokens like its siblings, but sampling is allowed.
    ("gpt-5-chat", caps(true, true, false, true)),
    ("o1", reasoning(false, true)),
    ("o1-mini", reasoning(false, false)),
    ("o1-preview", reasoning(false, false)),
    ("o1-pro", reasoning(false, true)),
    ("o3", reasoning(true, true)),
    ("o3-mini", reasoning(false, false)),
    ("o3-pro", reasoning(false, true)),
    ("o4-mini", reasoning(true, true)),
    ("gpt-4.1", ordinary(true)),
    ("gpt-4.5", ordinary(true)),
    ("gpt-4o", ordinary(true)),
    ("gpt-4o-mini", ordinary(true)),
    ("chatgpt-4o", ordinary(true)),
    ("gpt-4-turbo", ordinary(true)),
    ("gpt-4", ordinary(false)),
    ("gpt-3.5", ordinary(false)),
];

/// The family prefix `model` belongs to, e.g. `gpt-5` for `gpt-5.1-2025-11-13`, or `None`
/// for a model the table does not know. Fine-tuned ids (`ft:gpt-4o-mini:org::id`) count as
/// their base model.
pub fn model_family(model: &str) -> Option<&'static str> {
    lookup(model).map(|(prefix, _)| prefix)
}

/// What `model` accepts; [`ModelCapabilities::UNKNOWN`] for models the table does not know.
pub fn capabilities(model: &str) -> ModelCapabilities {
    lookup(model).map_or(ModelCapabilities::UNKNOWN, |(_, caps)| caps)
}

fn lookup(model: &str) -> Option<(&'static str, ModelCapabilities)> {
    let model = model.strip_prefix("ft:").unwrap_or(model);
    MODEL_FAMILIES
        .iter()
        .filter(|(prefix, _)| {
            model.strip_prefix(prefix).is_some_and(|rest| {
                !rest
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
            })
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .copied()
}

/// One change [`normalize_chat`] made to a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalization {
    /// The request's model.
    pub model: String,
    /// The field that changed, as the API spells it.
    pub field: &'static str,
    /// Its value before the change.
    pub old_value: Value,
    /// What happened to it.
    pub action: NormalizationAction,
    /// Why.
    pub reason: NormalizationReason,
}

impl fmt::Display for Normalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Normalization {
            model,
            field,
            old_value,
            action,
            reason,
        } = self;
        match action {
            NormalizationAction::Removed => write!(f, "{model}: removed {field} = {old_value}")?,
            NormalizationAction::MovedTo { field: to } => {
                write!(f, "{model}: moved {field} = {old_value} to {to}")?
            }
        }
        write!(f, ", because {reason}.")
    }
}

/// What [`normalize_chat`] did to a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NormalizationAction {
    /// The field is no longer sent.
    Removed,
    /// The value is now sent under another field.
    MovedTo {
        /// The field it moved to.
        field: &'static str,
    },
}

/// Why [`normalize_chat`] changed a field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NormalizationReason {
    /// Reasoning models reject `max_tokens`.
    MaxTokensRejected,
    /// `max_completion_tokens` was set too, so `max_tokens` was redundant as well as rejected.
    SupersededByMaxCompletionTokens,
    /// The model accepts only the parameter's default value.
    DefaultOnly {
        /// That default.
        default: f64,
    },
    /// The model does not support the parameter at all.
    Unsupported,
}

impl fmt::Display for NormalizationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NormalizationReason::MaxTokensRejected => {
                f.write_str("reasoning models reject max_tokens")
            }
            NormalizationReason::SupersededByMaxCompletionTokens => f.write_str(
                "max_completion_tokens is set too and reasoning models reject max_tokens",
            ),
            NormalizationReason::DefaultOnly { default } => {
                write!(
                    f,
                    "reasoning models accept only the default value ({default})"
                )
            }
            NormalizationReason::Unsupported => {
                f.write_str("reasoning models do not support log probabilities")
            }
        }
    }
}

/// Rewrite `req` so that its model accepts it, returning every change in field order.
///
/// For reasoning models (see [`ModelCapabilities::reasoning`]): `max_tokens` moves to
/// `max_completion_tokens`, or is dropped if that is already set. Unless the model
/// [accepts sampling parameters](ModelCapabilities::accepts_temperature), non-default
/// `temperature`/`top_p` (default 1) and `frequency_penalty`/`presence_penalty` (default 0)
/// are removed, and so are `logprobs` and `top_logprobs` whatever their value. Other models
/// are left alone.
pub fn normalize_chat(req: &mut ChatCompletionRequest) -> Vec<Normalization> {
    let caps = capabilities(&req.model);
    let mut changes = Vec::new();
    if !caps.reasoning {
        return changes;
    }
    let mut record = |field, old_value, action, reason| {
        changes.push(Normalization {
            model: req.model.clone(),
            field,
            old_value,
            action,
            reason,
        });
    };

    if let Some(max_tokens) = req.max_tokens.take() {
        if req.max_completion_tokens.is_some() {
            record(
                "max_tokens",
                json!(max_tokens),
                NormalizationAction::Removed,
                NormalizationReason::SupersededByMaxCompletionTokens,
            );
        } else {
            req.max_completion_tokens = Some(max_tokens);
            record(
                "max_tokens",
                json!(max_tokens),
                NormalizationAction::MovedTo {
                    field: "max_completion_tokens",
                },
                NormalizationReason::MaxTokensRejected,
            );
        }
    }

    if caps.accepts_temperature {
        return changes;
    }
    let sampling = [
        ("temperature", &mut req.temperature, 1.0),
        ("top_p", &mut req.top_p, 1.0),
        ("frequency_penalty", &mut req.frequency_penalty, 0.0),
        ("presence_penalty", &mut req.presence_penalty, 0.0),
    ];
    for (field, slot, default) in sampling {
        if let Some(value) = slot.take_if(|v| *v != default) {
            record(
                field,
                json!(value),
                NormalizationAction::Removed,
                NormalizationReason::DefaultOnly { default },
            );
        }
    }
    if let Some(logprobs) = req.logprobs.take() {
        record(
            "logprobs",
            json!(logprobs),
            NormalizationAction::Removed,
            NormalizationReason::Unsupported,
        );
    }
    if let Some(top_logprobs) = req.top_logprobs.take() {
        record(
            "top_logprobs",
            json!(top_logprobs),
            NormalizationAction::Removed,
            NormalizationReason::Unsupported,
        );
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let check = |model: &str, expect: Option<&str>| {
            assert_eq!(model_family(model), expect, "{model}");
        };
        check("gpt-5", Some("gpt-5"));
        check("gpt-5-mini", Some("gpt-5"));
        check("gpt-5-nano-2025-08-07", Some("gpt-5"));
        check("gpt-5.1", Some("gpt-5"));
        check("gpt-5.2-2025-12-11", Some("gpt-5"));
        check("gpt-5-pro", Some("gpt-5-pro"));
        check("gpt-5-chat-latest", Some("gpt-5-chat"));
        check("o1", Some("o1"));
        check("o1-mini", Some("o1-mini"));
        check("o3-mini-2025-01-31", Some("o3-mini"));
        check("o4-mini", Some("o4-mini"));
        check("gpt-4o", Some("gpt-4o"));
        check("gpt-4o-mini-2024-07-18", Some("gpt-4o-mini"));
        check("gpt-4.1-nano", Some("gpt-4.1"));
        check("gpt-4-0613", Some("gpt-4"));
        check("gpt-3.5-turbo", Some("gpt-3.5"));
        check("ft:gpt-4o-mini-2024-07-18:acme::abc", Some("gpt-4o-mini"));
        check("o10", None);
        check("gpt-50", None);
        check("dall-e-3", None);
        check("", None);
    }

    #[test]
    fn capabilities_of_each_family() {
        let check = |model: &str, expect: (bool, bool, bool, bool)| {
            let c = capabilities(model);
            let actual = (
                c.reasoning,
                c.accepts_temperature,
                c.supports_flex,
                c.supports_vision,
            );
            assert_eq!(
                actual, expect,
                "{model}: (reasoning, temperature, flex, vision)"
            );
        };
        check("gpt-5-mini", (true, false, true, true));
        check("gpt-5-chat-latest", (true, true, false, true));
        check("o3", (true, false, true, true));
        check("o3-mini", (true, false, false, false));
        check("gpt-4o-mini", (false, true, false, true));
        check("gpt-3.5-turbo", (false, true, false, false));
        check("some-new-model", (false, true, false, false));
    }

    /// A request with every field `normalize_chat` may touch set to a non-default value.
    fn loaded(model: &str) -> ChatCompletionRequest {
        let mut req = ChatCompletionRequest::new(model, vec![Message::user("hi")]);
        req.max_tokens = Some(500);
        req.temperature = Some(0.3);
        req.top_p = Some(0.9);
        req.frequency_penalty = Some(0.5);
        req.presence_penalty = Some(-0.5);
        req.logprobs = Some(true);
        req.top_logprobs = Some(3);
        req
    }

    fn check(mut req: ChatCompletionRequest, expect_body: &str, expect_report: &[&str]) {
        let report = normalize_chat(&mut req);
        let body = serde_json::to_string(&req).unwrap();
        assert_eq!(body, expect_body);
        let report: Vec<String> = report.iter().map(ToString::to_string).collect();
        assert_eq!(report, expect_report);
    }

    #[test]
    fn reasoning_models_lose_sampling_and_max_tokens() {
        for model in [
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "gpt-5.1",
            "o1",
            "o3",
            "o4-mini",
        ] {
            let expect_body = format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_completion_tokens":500}}"#
            );
            let expect_report = [
                "moved max_tokens = 500 to max_completion_tokens, because reasoning models reject max_tokens.",
                "removed temperature = 0.3, because reasoning models accept only the default value (1).",
                "removed top_p = 0.9, because reasoning models accept only the default value (1).",
                "removed frequency_penalty = 0.5, because reasoning models accept only the default value (0).",
                "removed presence_penalty = -0.5, because reasoning models accept only the default value (0).",
                "removed logprobs = true, because reasoning models do not support log probabilities.",
                "removed top_logprobs = 3, because reasoning models do not support log probabilities.",
            ]
            .map(|s| format!("{model}: {s}"));
            let expect_report: Vec<&str> = expect_report.iter().map(String::as_str).collect();
            check(loaded(model), &expect_body, &expect_report);
        }
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let mut req = ChatCompletionRequest::new("o3", vec![Message::user("hi")]);
        req.max_tokens = Some(100);
        req.max_completion_tokens = Some(2000);
        check(
            req,
            r#"{"model":"o3","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":2000}"#,
            &[
                "o3: removed max_tokens = 100, because max_completion_tokens is set too and reasoning models reject max_tokens.",
            ],
        );
    }

    #[test]
    fn default_sampling_values_are_kept() {
        let mut req = ChatCompletionRequest::new("gpt-5", vec![Message::user("hi")]);
        req.temperature = Some(1.0);
        req.top_p = Some(1.0);
        req.frequency_penalty = Some(0.0);
        check(
            req,
            r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}],"temperature":1.0,"top_p":1.0,"frequency_penalty":0.0}"#,
            &[],
        );
    }

    #[test]
    fn gpt_5_chat_latest_keeps_temperature() {
        check(
            loaded("gpt-5-chat-latest"),
            concat!(
                r#"{"model":"gpt-5-chat-latest","messages":[{"role":"user","content":"hi"}],"temperature":0.3,"top_p":0.9,"#,
                r#""frequency_penalty":0.5,"presence_penalty":-0.5,"logprobs":true,"top_logprobs":3,"max_completion_tokens":500}"#
            ),
            &[
                "gpt-5-chat-latest: moved max_tokens = 500 to max_completion_tokens, because reasoning models reject max_tokens.",
            ],
        );
    }

    #[test]
    fn ordinary_models_are_left_alone() {
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-3.5-turbo",
            "unknown-model",
        ] {
            let req = loaded(model);
            let expect = serde_json::to_string(&req).unwrap();
            check(req, &expect, &[]);
        }
    }

    #[test]
    fn report_serialises_for_logs() {
        let mut req = loaded("o1");
        let report = normalize_chat(&mut req);
        assert_eq!(
            serde_json::to_string(&report[0]).unwrap(),
            concat!(
                r#"{"model":"o1","field":"max_tokens","old_value":500,"#,
                r#""action":{"action":"moved_to","field":"max_completion_tokens"},"#,
                r#""reason":{"reason":"max_tokens_rejected"}}"#
            )
        );
    }
}
