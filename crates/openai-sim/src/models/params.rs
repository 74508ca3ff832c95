//! What OpenAI's official spec (`spec/openai/openapi.yaml`) lets a request body hold: the names
//! of its properties and the values of its enum fields, and the checks that hold a body to them.
//!
//! The lists are copied from the spec's request schemas, in the spec's order (which is the order
//! an `invalid_value` message lists them in).

use serde_json::{Map, Value};

use super::{ModelReply, error, invalid_type, invalid_value};

/// Properties of `CreateChatCompletionRequest`, including those of
/// `CreateModelResponseProperties` it takes in with `allOf`.
pub(crate) const CHAT: &[&str] = &[
    "metadata",
    "top_logprobs",
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "messages",
    "model",
    "service_tier",
    "modalities",
    "verbosity",
    "reasoning_effort",
    "max_completion_tokens",
    "frequency_penalty",
    "presence_penalty",
    "web_search_options",
    "response_format",
    "audio",
    "store",
    "moderation",
    "stream",
    "stop",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "prediction",
    "seed",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "function_call",
    "functions",
];

/// Properties of `CreateImageRequest` (`/v1/images/generations`).
pub(crate) const IMAGE_GENERATION: &[&str] = &[
    "prompt",
    "model",
    "n",
    "quality",
    "response_format",
    "output_format",
    "output_compression",
    "stream",
    "partial_images",
    "size",
    "moderation",
    "background",
    "style",
    "user",
];

/// Properties of `CreateImageEditRequest` (`/v1/images/edits`, answered by the same model).
pub(crate) const IMAGE_EDIT: &[&str] = &[
    "image",
    "prompt",
    "mask",
    "background",
    "model",
    "n",
    "size",
    "response_format",
    "output_format",
    "output_compression",
    "user",
    "input_fidelity",
    "stream",
    "partial_images",
    "quality",
];

/// `ServiceTier`.
pub(crate) const SERVICE_TIERS: &[&str] = &["auto", "default", "flex", "scale", "priority", "fast"];
/// `ReasoningEffort`.
pub(crate) const REASONING_EFFORTS: &[&str] =
    &["none", "minimal", "low", "medium", "high", "xhigh", "max"];
/// `ResponseModalities` items.
pub(crate) const MODALITIES: &[&str] = &["text", "audio"];
/// `Verbosity`.
pub(crate) const VERBOSITIES: &[&str] = &["low", "medium", "high"];
/// `prompt_cache_retention`.
pub(crate) const CACHE_RETENTIONS: &[&str] = &["in_memory", "24h"];
/// `ChatCompletionToolChoiceOption` in its string form.
pub(crate) const TOOL_CHOICES: &[&str] = &["none", "auto", "required"];
/// `ChatCompletionFunctionCallOption` in its string form (deprecated `function_call`).
pub(crate) const FUNCTION_CALLS: &[&str] = &["none", "auto"];
/// The `type` of each `ResponseFormat*` schema the chat request's `response_format` is one of.
pub(crate) const RESPONSE_FORMAT_TYPES: &[&str] = &["text", "json_schema", "json_object"];

/// Image `response_format`.
pub(crate) const IMAGE_RESPONSE_FORMATS: &[&str] = &["url", "b64_json"];
/// Image `output_format`.
pub(crate) const OUTPUT_FORMATS: &[&str] = &["png", "jpeg", "webp"];
/// Image `moderation`.
pub(crate) const MODERATIONS: &[&str] = &["low", "auto"];
/// Image `background`.
pub(crate) const BACKGROUNDS: &[&str] = &["transparent", "opaque", "auto"];
/// Image `style` (DALL·E 3).
pub(crate) const STYLES: &[&str] = &["vivid", "natural"];
/// Image edit `input_fidelity`.
pub(crate) const INPUT_FIDELITIES: &[&str] = &["high", "low"];

/// A 400 for the first property (in name order) that the request schema does not declare:
/// `Unrecognized request argument supplied: NAME`, with `param` NAME.
pub(crate) fn reject_unknown(obj: &Map<String, Value>, known: &[&str]) -> Result<(), ModelReply> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(name) => Err(error(
            400,
            &format!("Unrecognized request argument supplied: {name}"),
            "invalid_request_error",
            Some(name),
            None,
        )),
        None => Ok(()),
    }
}

/// The value of the enum field `param`: `None` when absent or null, a 400 `invalid_type` when
/// it is not a string, and a 400 `invalid_value` when it is not one of `allowed`.
pub(crate) fn one_of<'a>(
    obj: &'a Map<String, Value>,
    param: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, ModelReply> {
    match obj.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s)),
        Some(Value::String(s)) => Err(invalid_value(param, s, allowed)),
        Some(other) => Err(invalid_type(param, "a string", other)),
    }
}

/// Like [`one_of`], for a field that is either one of `allowed` or an object (its named form,
/// such as `tool_choice: {"type": "function", ...}`), which is not checked here.
pub(crate) fn one_of_or_object(
    obj: &Map<String, Value>,
    param: &str,
    allowed: &[&str],
) -> Result<(), ModelReply> {
    match obj.get(param) {
        Some(Value::Object(_)) => Ok(()),
        _ => one_of(obj, param, allowed).map(|_| ()),
    }
}

/// An array field whose every item is one of `allowed` (`modalities`).
pub(crate) fn all_of(
    obj: &Map<String, Value>,
    param: &str,
    allowed: &[&str],
) -> Result<(), ModelReply> {
    let items = match obj.get(param) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(invalid_type(param, "an array", other)),
    };
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if allowed.contains(&s.as_str()) => {}
            Value::String(s) => return Err(invalid_value(param, s, allowed)),
            other => return Err(invalid_type(&format!("{param}[{i}]"), "a string", other)),
        }
    }
    Ok(())
}
