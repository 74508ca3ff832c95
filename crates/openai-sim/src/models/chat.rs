//! `POST /v1/chat/completions`: validation as the real API words it, then the prompt engine,
//! then a full `chat.completion` object with usage counted on the actual text.

use batch_format::TokenEstimator;
use serde_json::{Map, Value, json};

use super::catalog::{self, Kind, ModelInfo};
use super::engine::{self, Wants};
use super::image;
use super::params;
use super::reading::{Reading, SeenImage};
use super::rng::{self, ALNUM, Dice, HEX};
use super::schema;
use super::{Ctx, ModelReply, error};

/// Tokens every chat reply is primed with, on top of the per-message overhead.
const REPLY_PRIMING: u64 = 3;
/// Tokens each message costs besides its content.
const MESSAGE_OVERHEAD: u64 = 3;

/// How the answer must be written.
#[derive(Debug, Clone)]
pub(crate) enum Format {
    Text,
    JsonObject,
    JsonSchema(Value),
}

/// The validated essentials of a request, shared by chat completions and responses.
pub(crate) struct Prepared {
    pub(crate) model: String,
    pub(crate) info: ModelInfo,
    pub(crate) reading: Reading,
    pub(crate) format: Format,
    /// Prompt tokens: text, images and per-message overhead.
    pub(crate) prompt_tokens: u64,
}

/// Answers a chat completion request.
pub(crate) fn complete(ctx: &Ctx, body: &Value) -> ModelReply {
    let prepared = match prepare(body) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let Some(obj) = body.as_object() else {
        return super::not_an_object();
    };
    let n = obj.get("n").and_then(Value::as_u64).unwrap_or(1);
    let limit = obj
        .get("max_completion_tokens")
        .or_else(|| obj.get("max_tokens"))
        .and_then(Value::as_u64);
    let base = rng::hash_json(ctx.seed, body);
    let est = TokenEstimator::for_model(&prepared.model);

    let mut choices = Vec::new();
    let mut completion_tokens = 0;
    let mut reasoning_tokens = 0;
    for i in 0..n {
        let choice_base = rng::hash_parts(&[&base.to_le_bytes(), &i.to_le_bytes()]);
        let content = write(&prepared, choice_base);
        let (content, reasoning, finish) = budget(&est, &content, &prepared.info, limit);
        completion_tokens += est.count_text(&content) + reasoning;
        reasoning_tokens += reasoning;
        choices.push(json!({
            "index": i,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": finish
        }));
    }

    let mut dice = Dice::new(base, "id");
    let prompt_tokens = prepared.prompt_tokens;
    let body = json!({
        "id": format!("chatcmpl-{}", dice.token(ALNUM, 29)),
        "object": "chat.completion",
        "created": ctx.now,
        "model": prepared.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        },
        "service_tier": service_tier(obj.get("service_tier")),
        "system_fingerprint": fingerprint(&prepared.model),
    });
    ModelReply {
        status: 200,
        body,
        input_tokens: prompt_tokens,
        output_tokens: completion_tokens,
    }
}

/// The text of one answer in the requested format.
pub(crate) fn write(prepared: &Prepared, base: u64) -> String {
    let wants = match &prepared.format {
        Format::JsonSchema(s) => Wants {
            children: schema::children_bounds(s),
            critique: schema::asks_critique(s),
        },
        _ => Wants::default(),
    };
    let answer = engine::answer(&prepared.reading, wants, base);
    match &prepared.format {
        Format::Text => answer.text,
        Format::JsonObject => answer.facts.to_string(),
        Format::JsonSchema(s) => schema::fill(s, &answer.facts).to_string(),
    }
}

/// Reasoning tokens spent, and the content cut to the completion budget:
/// `(content, reasoning_tokens, finish_reason)`.
fn budget(
    est: &TokenEstimator,
    content: &str,
    info: &ModelInfo,
    limit: Option<u64>,
) -> (String, u64, &'static str) {
    let visible = est.count_text(content);
    // Reasoning models think about twice as much as they say, in 64-token steps.
    let reasoning = if info.reasoning && info.alias != "gpt-5-chat-latest" {
        (visible * 2).div_ceil(64).max(1) * 64
    } else {
        0
    };
    let Some(limit) = limit else {
        return (content.to_string(), reasoning, "stop");
    };
    if visible + reasoning <= limit {
        return (content.to_string(), reasoning, "stop");
    }
    if reasoning >= limit {
        return (String::new(), limit, "length");
    }
    let room = limit - reasoning;
    // Cut on characters in proportion, then shrink until the count fits.
    let chars: Vec<char> = content.chars().collect();
    let mut keep = (chars.len() as u64 * room / visible.max(1)) as usize;
    let mut cut: String = chars[..keep.min(chars.len())].iter().collect();
    while keep > 0 && est.count_text(&cut) > room {
        keep -= 1;
        cut = chars[..keep].iter().collect();
    }
    (cut, reasoning, "length")
}

/// `service_tier` as the response reports it.
pub(crate) fn service_tier(requested: Option<&Value>) -> &'static str {
    match requested.and_then(Value::as_str) {
        Some("flex") => "flex",
        Some("priority") => "priority",
        Some("scale") => "scale",
        Some("fast") => "fast",
        _ => "default",
    }
}

/// `fp_` and 10 hex digits per model; `gpt-3.5-turbo` reports none, as it does for real.
fn fingerprint(model: &str) -> Value {
    if model.starts_with("gpt-3.5") {
        return Value::Null;
    }
    let mut d = Dice::new(rng::hash_parts(&[model.as_bytes()]), "fingerprint");
    json!(format!("fp_{}", d.token(HEX, 10)))
}

/// Validates a chat completion request and reads its conversation.
pub(crate) fn prepare(body: &Value) -> Result<Prepared, ModelReply> {
    let Some(obj) = body.as_object() else {
        return Err(super::not_an_object());
    };
    params::reject_unknown(obj, params::CHAT)?;
    let model_name = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return Err(super::invalid_type("model", "a string", other)),
        None => {
            return Err(error(
                400,
                "you must provide a model parameter",
                "invalid_request_error",
                None,
                None,
            ));
        }
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(error(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                "invalid_request_error",
                Some("messages"),
                Some("empty_array"),
            ));
        }
        Some(Value::Array(m)) => m,
        Some(other) => return Err(super::invalid_type("messages", "an array", other)),
        None => {
            return Err(error(
                400,
                "Missing required parameter: 'messages'.",
                "invalid_request_error",
                Some("messages"),
                Some("missing_required_parameter"),
            ));
        }
    };
    let (model, info) = match catalog::lookup(model_name) {
        Some((snapshot, info)) if info.kind == Kind::Chat => (snapshot, info),
        Some(_) => {
            return Err(error(
                404,
                "This is not a chat model and thus not supported in the v1/chat/completions endpoint. Did you mean to use v1/completions?",
                "invalid_request_error",
                Some("model"),
                None,
            ));
        }
        None => return Err(super::model_not_found(model_name)),
    };
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(error(
            400,
            "openai-sim does not stream responses; send 'stream': false.",
            "invalid_request_error",
            Some("stream"),
            Some("unsupported_parameter"),
        ));
    }
    check_enums(obj)?;
    check_sampling(obj, &info, "max_tokens")?;
    check_ranges(obj, &info)?;
    let format = response_format(obj.get("response_format"), &info, messages)?;

    let est = TokenEstimator::for_model(&model);
    let mut reading = Reading::default();
    let mut prompt_tokens = REPLY_PRIMING;
    for (i, message) in messages.iter().enumerate() {
        prompt_tokens += MESSAGE_OVERHEAD;
        read_message(message, i, &info, &est, &mut reading, &mut prompt_tokens)?;
    }
    check_context(obj, &info, prompt_tokens)?;
    Ok(Prepared {
        model,
        info,
        reading,
        format,
        prompt_tokens,
    })
}

/// The enum fields outside `response_format`, against the spec's values.
fn check_enums(obj: &Map<String, Value>) -> Result<(), ModelReply> {
    params::one_of(obj, "service_tier", params::SERVICE_TIERS)?;
    params::one_of(obj, "reasoning_effort", params::REASONING_EFFORTS)?;
    params::one_of(obj, "verbosity", params::VERBOSITIES)?;
    params::one_of(obj, "prompt_cache_retention", params::CACHE_RETENTIONS)?;
    params::all_of(obj, "modalities", params::MODALITIES)?;
    params::one_of_or_object(obj, "tool_choice", params::TOOL_CHOICES)?;
    params::one_of_or_object(obj, "function_call", params::FUNCTION_CALLS)?;
    Ok(())
}

/// Prompt tokens plus the completion budget asked for must fit the model's context window,
/// with OpenAI's `context_length_exceeded` message (one form with a budget, one without).
fn check_context(
    obj: &Map<String, Value>,
    info: &ModelInfo,
    prompt_tokens: u64,
) -> Result<(), ModelReply> {
    let Some(window) = info.context_window else {
        return Ok(());
    };
    let completion = obj
        .get("max_completion_tokens")
        .or_else(|| obj.get("max_tokens"))
        .and_then(Value::as_u64);
    let requested = prompt_tokens.saturating_add(completion.unwrap_or(0));
    if requested <= window {
        return Ok(());
    }
    let message = match completion {
        Some(c) => format!(
            "This model's maximum context length is {window} tokens. However, you requested {requested} tokens ({prompt_tokens} in the messages, {c} in the completion). Please reduce the length of the messages or completion."
        ),
        None => format!(
            "This model's maximum context length is {window} tokens. However, your messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
        ),
    };
    Err(error(
        400,
        &message,
        "invalid_request_error",
        Some("messages"),
        Some("context_length_exceeded"),
    ))
}

/// Reasoning models: no `max_tokens` (named `token_param` by the endpoint) and only default
/// sampling parameters, with OpenAI's messages.
pub(crate) fn check_sampling(
    obj: &Map<String, Value>,
    info: &ModelInfo,
    token_param: &str,
) -> Result<(), ModelReply> {
    if info.reasoning
        && token_param == "max_tokens"
        && obj.get("max_tokens").is_some_and(|v| !v.is_null())
    {
        return Err(error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "invalid_request_error",
            Some("max_tokens"),
            Some("unsupported_parameter"),
        ));
    }
    if info.sampling {
        return Ok(());
    }
    for (param, default) in [("temperature", 1.0), ("top_p", 1.0)] {
        if let Some(v) = obj.get(param).filter(|v| !v.is_null())
            && v.as_f64() != Some(default)
        {
            return Err(error(
                400,
                &format!(
                    "Unsupported value: '{param}' does not support {v} with this model. Only the default (1) value is supported."
                ),
                "invalid_request_error",
                Some(param),
                Some("unsupported_value"),
            ));
        }
    }
    for param in ["presence_penalty", "frequency_penalty"] {
        if obj
            .get(param)
            .and_then(Value::as_f64)
            .is_some_and(|v| v != 0.0)
        {
            return Err(error(
                400,
                &format!("Unsupported parameter: '{param}' is not supported with this model."),
                "invalid_request_error",
                Some(param),
                Some("unsupported_parameter"),
            ));
        }
    }
    if obj.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(error(
            400,
            "Unsupported parameter: 'logprobs' is not supported with this model.",
            "invalid_request_error",
            Some("logprobs"),
            Some("unsupported_parameter"),
        ));
    }
    Ok(())
}

fn check_ranges(obj: &Map<String, Value>, info: &ModelInfo) -> Result<(), ModelReply> {
    for (param, lo, hi) in [("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)] {
        if let Some(v) = obj.get(param).filter(|v| !v.is_null()) {
            let Some(x) = v.as_f64() else {
                return Err(super::invalid_type(param, "a number", v));
            };
            if x > hi {
                return Err(error(
                    400,
                    &format!(
                        "Invalid '{param}': decimal above maximum value. Expected a value <= {hi}, but got {v} instead."
                    ),
                    "invalid_request_error",
                    Some(param),
                    Some("decimal_above_max_value"),
                ));
            }
            if x < lo {
                return Err(error(
                    400,
                    &format!(
                        "Invalid '{param}': decimal below minimum value. Expected a value >= {lo}, but got {v} instead."
                    ),
                    "invalid_request_error",
                    Some(param),
                    Some("decimal_below_min_value"),
                ));
            }
        }
    }
    if let Some(v) = obj.get("n").filter(|v| !v.is_null()) {
        let Some(n) = v.as_i64() else {
            return Err(super::invalid_type("n", "an integer", v));
        };
        if n < 1 {
            return Err(error(
                400,
                &format!(
                    "Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead."
                ),
                "invalid_request_error",
                Some("n"),
                Some("integer_below_min_value"),
            ));
        }
        if n > 128 {
            return Err(error(
                400,
                &format!(
                    "Invalid 'n': integer above maximum value. Expected a value <= 128, but got {n} instead."
                ),
                "invalid_request_error",
                Some("n"),
                Some("integer_above_max_value"),
            ));
        }
    }
    for param in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = obj.get(param).filter(|v| !v.is_null()) {
            let Some(m) = v.as_i64() else {
                return Err(super::invalid_type(param, "an integer", v));
            };
            if m < 1 {
                return Err(error(
                    400,
                    &format!(
                        "Invalid '{param}': integer below minimum value. Expected a value >= 1, but got {m} instead."
                    ),
                    "invalid_request_error",
                    Some(param),
                    Some("integer_below_min_value"),
                ));
            }
            if m as u64 > info.max_output {
                return Err(error(
                    400,
                    &format!(
                        "{param} is too large: {m}. This model supports at most {} completion tokens, whereas you provided {m}.",
                        info.max_output
                    ),
                    "invalid_request_error",
                    Some(param),
                    Some("invalid_value"),
                ));
            }
        }
    }
    Ok(())
}

fn response_format(
    rf: Option<&Value>,
    info: &ModelInfo,
    messages: &[Value],
) -> Result<Format, ModelReply> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(Format::Text);
    };
    if !rf.is_object() {
        return Err(super::invalid_type("response_format", "an object", rf));
    }
    let kind = match rf.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(other) => {
            return Err(super::invalid_type(
                "response_format.type",
                "a string",
                other,
            ));
        }
        None => {
            return Err(error(
                400,
                "Missing required parameter: 'response_format.type'.",
                "invalid_request_error",
                Some("response_format.type"),
                Some("missing_required_parameter"),
            ));
        }
    };
    match kind {
        "text" => Ok(Format::Text),
        "json_object" => {
            let mentions_json = messages
                .iter()
                .any(|m| m.to_string().to_lowercase().contains("json"));
            if !mentions_json {
                return Err(error(
                    400,
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                    "invalid_request_error",
                    Some("messages"),
                    None,
                ));
            }
            Ok(Format::JsonObject)
        }
        "json_schema" => {
            if !info.structured {
                return Err(error(
                    400,
                    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                    "invalid_request_error",
                    Some("response_format"),
                    None,
                ));
            }
            let Some(js) = rf.get("json_schema") else {
                return Err(error(
                    400,
                    "Missing required parameter: 'response_format.json_schema'.",
                    "invalid_request_error",
                    Some("response_format.json_schema"),
                    Some("missing_required_parameter"),
                ));
            };
            if js.get("name").and_then(Value::as_str).is_none() {
                return Err(error(
                    400,
                    "Missing required parameter: 'response_format.json_schema.name'.",
                    "invalid_request_error",
                    Some("response_format.json_schema.name"),
                    Some("missing_required_parameter"),
                ));
            }
            let schema = js
                .get("schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            if js.get("strict").and_then(Value::as_bool) == Some(true)
                && let Some(problem) = schema::strict_problem(&schema)
            {
                let name = js.get("name").and_then(Value::as_str).unwrap_or_default();
                return Err(error(
                    400,
                    &format!("Invalid schema for response_format '{name}': {problem}"),
                    "invalid_request_error",
                    Some("response_format"),
                    None,
                ));
            }
            Ok(Format::JsonSchema(schema))
        }
        other => Err(super::invalid_value(
            "response_format.type",
            other,
            params::RESPONSE_FORMAT_TYPES,
        )),
    }
}

const ROLES: [&str; 6] = [
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];
const PART_TYPES: [&str; 6] = [
    "text",
    "image_url",
    "input_audio",
    "refusal",
    "audio",
    "file",
];

fn read_message(
    message: &Value,
    i: usize,
    info: &ModelInfo,
    est: &TokenEstimator,
    reading: &mut Reading,
    tokens: &mut u64,
) -> Result<(), ModelReply> {
    let Some(m) = message.as_object() else {
        return Err(super::invalid_type(
            &format!("messages[{i}]"),
            "an object",
            message,
        ));
    };
    let role = match m.get("role") {
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
        Some(Value::String(r)) => {
            return Err(super::invalid_value(
                &format!("messages[{i}].role"),
                r,
                &ROLES,
            ));
        }
        Some(other) => {
            return Err(super::invalid_type(
                &format!("messages[{i}].role"),
                "a string",
                other,
            ));
        }
        None => {
            return Err(error(
                400,
                &format!("Missing required parameter: 'messages[{i}].role'."),
                "invalid_request_error",
                Some(&format!("messages[{i}].role")),
                Some("missing_required_parameter"),
            ));
        }
    };
    match m.get("content") {
        Some(Value::String(s)) => {
            *tokens += est.count_text(s);
            reading.add_text(s);
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                read_part(part, i, j, info, est, reading, tokens)?;
            }
        }
        Some(Value::Null) | None if role == "assistant" => {}
        Some(Value::Null) | None => {
            return Err(error(
                400,
                &format!("Missing required parameter: 'messages[{i}].content'."),
                "invalid_request_error",
                Some(&format!("messages[{i}].content")),
                Some("missing_required_parameter"),
            ));
        }
        Some(other) => {
            return Err(super::invalid_type(
                &format!("messages[{i}].content"),
                "a string or array",
                other,
            ));
        }
    }
    Ok(())
}

fn read_part(
    part: &Value,
    i: usize,
    j: usize,
    info: &ModelInfo,
    est: &TokenEstimator,
    reading: &mut Reading,
    tokens: &mut u64,
) -> Result<(), ModelReply> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => {
            let text = part.get("text").and_then(Value::as_str).unwrap_or("");
            *tokens += est.count_text(text);
            reading.add_text(text);
        }
        "image_url" => {
            if !info.vision {
                return Err(error(
                    400,
                    "Invalid content type. image_url is only supported by certain models.",
                    "invalid_request_error",
                    Some(&format!("messages.[{i}].content.[{j}].type")),
                    None,
                ));
            }
            let url = part
                .get("image_url")
                .and_then(|u| u.get("url").or(Some(u)))
                .and_then(Value::as_str)
                .unwrap_or("");
            let detail = part
                .get("image_url")
                .and_then(|u| u.get("detail"))
                .and_then(Value::as_str);
            *tokens += TokenEstimator::image_tokens(detail);
            reading.add_image(see_url(url)?);
        }
        "input_audio" | "refusal" | "audio" | "file" => {}
        other => {
            return Err(super::invalid_value(
                &format!("messages[{i}].content[{j}].type"),
                other,
                &PART_TYPES,
            ));
        }
    }
    Ok(())
}

/// What a model sees at an image URL: data URLs are decoded; others cannot be fetched here.
pub(crate) fn see_url(url: &str) -> Result<SeenImage, ModelReply> {
    if url.starts_with("data:") {
        return image::data_url_bytes(url)
            .and_then(|bytes| image::see(&bytes))
            .ok_or_else(|| {
                error(
                    400,
                    "You uploaded an unsupported image. Please make sure your image is below 20 MB in size and is of one the following formats: ['png', 'jpeg', 'gif', 'webp'].",
                    "invalid_request_error",
                    None,
                    Some("invalid_image_format"),
                )
            });
    }
    Err(error(
        400,
        &format!("Error while downloading {url}."),
        "invalid_request_error",
        None,
        Some("invalid_image_url"),
    ))
}
