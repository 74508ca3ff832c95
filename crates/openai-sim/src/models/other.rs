//! The endpoints the search does not use but a batch may name: embeddings, legacy completions,
//! moderations, responses and videos. Minimal, shape-correct, deterministic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use batch_format::TokenEstimator;
use serde_json::{Map, Value, json};

use super::catalog::{self, Kind};
use super::chat::{self, Format, Prepared};
use super::reading::Reading;
use super::rng::{self, ALNUM, Dice, HEX};
use super::{Ctx, ModelReply, error};

/// Texts of an `input` (or `prompt`): a string or an array of strings; token arrays count as
/// their numbers' text.
fn texts(input: &Value) -> Option<Vec<String>> {
    match input {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Value::Array(items) if items.iter().all(Value::is_number) => Some(vec![input.to_string()]),
        Value::Array(items) if items.iter().all(Value::is_array) => {
            Some(items.iter().map(Value::to_string).collect())
        }
        _ => None,
    }
}

fn model_of<'a>(
    obj: &'a Map<String, Value>,
    default: Option<&'a str>,
) -> Result<&'a str, ModelReply> {
    match obj.get("model") {
        Some(Value::String(m)) => Ok(m),
        Some(other) => Err(super::invalid_type("model", "a string", other)),
        None => default.ok_or_else(|| {
            error(
                400,
                "you must provide a model parameter",
                "invalid_request_error",
                None,
                None,
            )
        }),
    }
}

fn required_input(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, ModelReply> {
    match obj.get(key) {
        None => Err(error(
            400,
            &format!("Missing required parameter: '{key}'."),
            "invalid_request_error",
            Some(key),
            Some("missing_required_parameter"),
        )),
        Some(v) => texts(v).ok_or_else(|| {
            error(
                400,
                &format!("'$.{key}' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."),
                "invalid_request_error",
                None,
                None,
            )
        }),
    }
}

/// `POST /v1/embeddings`: a bag-of-words vector per input (each word adds its own seeded
/// direction), L2-normalised, so texts sharing words are close. `dimensions` shortens it;
/// `encoding_format: base64` gives little-endian f32s.
pub(crate) fn embeddings(ctx: &Ctx, body: &Value) -> ModelReply {
    let Some(obj) = body.as_object() else {
        return super::not_an_object();
    };
    let result = (|| {
        let name = model_of(obj, None)?;
        let (model, info) = match catalog::lookup(name) {
            Some((m, i)) if i.kind == Kind::Embedding => (m, i),
            _ => return Err(super::model_not_found(name)),
        };
        let inputs = required_input(obj, "input")?;
        let mut dims = info.max_output as usize;
        if let Some(d) = obj.get("dimensions").filter(|v| !v.is_null()) {
            if info.alias == "text-embedding-ada-002" {
                return Err(error(
                    400,
                    "This model does not support specifying dimensions.",
                    "invalid_request_error",
                    None,
                    None,
                ));
            }
            match d.as_u64() {
                Some(d) if d >= 1 && d as usize <= dims => dims = d as usize,
                _ => {
                    return Err(error(
                        400,
                        &format!(
                            "Invalid value for 'dimensions' = {d}. Must be between 1 and {dims}."
                        ),
                        "invalid_request_error",
                        Some("dimensions"),
                        None,
                    ));
                }
            }
        }
        let base64 = obj.get("encoding_format").and_then(Value::as_str) == Some("base64");
        let est = TokenEstimator::for_model(&model);
        let mut tokens = 0;
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                tokens += est.count_text(text);
                let v = embed(ctx.seed, text, dims);
                let embedding = if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(B64.encode(bytes))
                } else {
                    json!(v)
                };
                json!({"object": "embedding", "index": i, "embedding": embedding})
            })
            .collect();
        Ok(ModelReply {
            status: 200,
            body: json!({
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
            }),
            input_tokens: tokens,
            output_tokens: 0,
        })
    })();
    result.unwrap_or_else(|e| e)
}

fn embed(seed: u64, text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0f64; dims];
    let words = super::text::words(text);
    let words = if words.is_empty() {
        vec![String::new()]
    } else {
        words
    };
    for w in &words {
        let mut d = Dice::new(
            rng::hash_parts(&[&seed.to_le_bytes(), w.as_bytes()]),
            "embed",
        );
        for x in v.iter_mut() {
            *x += d.normal(1.0);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|x| (x / norm) as f32).collect()
}

/// `POST /v1/completions`: the prompt engine answers the prompt as a user message.
pub(crate) fn completions(ctx: &Ctx, body: &Value) -> ModelReply {
    let Some(obj) = body.as_object() else {
        return super::not_an_object();
    };
    let result = (|| {
        let name = model_of(obj, None)?;
        let (model, info) = match catalog::lookup(name) {
            Some((m, i)) if i.kind == Kind::Completion => (m, i),
            Some(_) => {
                return Err(error(
                    404,
                    "This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?",
                    "invalid_request_error",
                    Some("model"),
                    None,
                ));
            }
            None => return Err(super::model_not_found(name)),
        };
        let prompts = required_input(obj, "prompt")?;
        let est = TokenEstimator::for_model(&model);
        let base = rng::hash_json(ctx.seed, body);
        let mut prompt_tokens = 0;
        let mut completion_tokens = 0;
        let choices: Vec<Value> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut reading = Reading::default();
                reading.add_text(p);
                let prepared = Prepared {
                    model: model.clone(),
                    info,
                    reading,
                    format: Format::Text,
                    prompt_tokens: 0,
                };
                let text = chat::write(
                    &prepared,
                    rng::hash_parts(&[&base.to_le_bytes(), &i.to_le_bytes()]),
                );
                prompt_tokens += est.count_text(p);
                completion_tokens += est.count_text(&text);
                json!({"text": text, "index": i, "logprobs": null, "finish_reason": "stop"})
            })
            .collect();
        let mut dice = Dice::new(base, "id");
        Ok(ModelReply {
            status: 200,
            body: json!({
                "id": format!("cmpl-{}", dice.token(ALNUM, 29)),
                "object": "text_completion",
                "created": ctx.now,
                "model": model,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens
                }
            }),
            input_tokens: prompt_tokens,
            output_tokens: completion_tokens,
        })
    })();
    result.unwrap_or_else(|e| e)
}

const MODERATION_CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// Words that make the simulated moderator flag `violence`, so flagged results can be tested.
const VIOLENT_WORDS: [&str; 5] = ["kill", "murder", "bomb", "gore", "massacre"];

/// `POST /v1/moderations`: tiny seeded scores; `violence` is flagged when a violent word appears.
pub(crate) fn moderations(ctx: &Ctx, body: &Value) -> ModelReply {
    let Some(obj) = body.as_object() else {
        return super::not_an_object();
    };
    let result = (|| {
        let name = model_of(obj, Some("omni-moderation-latest"))?;
        let model = match catalog::lookup(name) {
            Some((m, i)) if i.kind == Kind::Moderation => m,
            _ => return Err(super::model_not_found(name)),
        };
        let inputs = match obj.get("input") {
            Some(Value::Array(parts)) if parts.iter().all(Value::is_object) => vec![
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" "),
            ],
            _ => required_input(obj, "input")?,
        };
        let base = rng::hash_json(ctx.seed, body);
        let est = TokenEstimator::for_model(&model);
        let mut tokens = 0;
        let results: Vec<Value> = inputs
            .iter()
            .map(|text| {
                tokens += est.count_text(text);
                let words = super::text::words(text);
                let violent = words.iter().any(|w| VIOLENT_WORDS.contains(&w.as_str()));
                let mut d = Dice::new(
                    rng::hash_parts(&[&ctx.seed.to_le_bytes(), text.as_bytes()]),
                    "moderation",
                );
                let mut categories = Map::new();
                let mut scores = Map::new();
                let mut types = Map::new();
                for c in MODERATION_CATEGORIES {
                    let flagged = violent && c == "violence";
                    let score = if flagged {
                        0.9 + 0.09 * d.unit()
                    } else {
                        1e-5 + 1e-3 * d.unit()
                    };
                    categories.insert(c.into(), json!(flagged));
                    scores.insert(c.into(), json!(score));
                    types.insert(c.into(), json!(["text"]));
                }
                json!({
                    "flagged": violent,
                    "categories": categories,
                    "category_scores": scores,
                    "category_applied_input_types": types
                })
            })
            .collect();
        let mut dice = Dice::new(base, "id");
        Ok(ModelReply {
            status: 200,
            body: json!({
                "id": format!("modr-{}", dice.token(HEX, 32)),
                "model": model,
                "results": results
            }),
            input_tokens: tokens,
            output_tokens: 0,
        })
    })();
    result.unwrap_or_else(|e| e)
}

/// `POST /v1/responses`: the same engine as chat, reading `instructions` and `input` (a string
/// or message items with `input_text` / `input_image` parts), `text.format` for structure.
pub(crate) fn responses(ctx: &Ctx, body: &Value) -> ModelReply {
    let Some(obj) = body.as_object() else {
        return super::not_an_object();
    };
    let result = (|| {
        let name = match obj.get("model") {
            Some(Value::String(m)) => m.as_str(),
            Some(other) => return Err(super::invalid_type("model", "a string", other)),
            None => {
                return Err(error(
                    400,
                    "Missing required parameter: 'model'.",
                    "invalid_request_error",
                    Some("model"),
                    Some("missing_required_parameter"),
                ));
            }
        };
        let (model, info) = match catalog::lookup(name) {
            Some((m, i)) if i.kind == Kind::Chat => (m, i),
            _ => return Err(super::model_not_found(name)),
        };
        if !info.sampling {
            for param in ["temperature", "top_p"] {
                if obj.get(param).is_some_and(|v| !v.is_null()) {
                    return Err(error(
                        400,
                        &format!(
                            "Unsupported parameter: '{param}' is not supported with this model."
                        ),
                        "invalid_request_error",
                        Some(param),
                        Some("unsupported_parameter"),
                    ));
                }
            }
        }
        let est = TokenEstimator::for_model(&model);
        let mut reading = Reading::default();
        let mut prompt_tokens = 0;
        if let Some(instructions) = obj.get("instructions").and_then(Value::as_str) {
            prompt_tokens += est.count_text(instructions) + 3;
            reading.add_text(instructions);
        }
        match obj.get("input") {
            Some(Value::String(s)) => {
                prompt_tokens += est.count_text(s) + 3;
                reading.add_text(s);
            }
            Some(Value::Array(items)) => {
                for item in items {
                    prompt_tokens += 3;
                    match item.get("content") {
                        Some(Value::String(s)) => {
                            prompt_tokens += est.count_text(s);
                            reading.add_text(s);
                        }
                        Some(Value::Array(parts)) => {
                            for part in parts {
                                match part.get("type").and_then(Value::as_str) {
                                    Some("input_text" | "output_text" | "text") => {
                                        let t =
                                            part.get("text").and_then(Value::as_str).unwrap_or("");
                                        prompt_tokens += est.count_text(t);
                                        reading.add_text(t);
                                    }
                                    Some("input_image") => {
                                        let url = part
                                            .get("image_url")
                                            .and_then(Value::as_str)
                                            .unwrap_or("");
                                        let detail = part.get("detail").and_then(Value::as_str);
                                        prompt_tokens += TokenEstimator::image_tokens(detail);
                                        reading.add_image(chat::see_url(url)?);
                                    }
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                return Err(error(
                    400,
                    "Missing required parameter: 'input'.",
                    "invalid_request_error",
                    Some("input"),
                    Some("missing_required_parameter"),
                ));
            }
        }
        let format = match obj.get("text").and_then(|t| t.get("format")) {
            Some(f) if f.get("type").and_then(Value::as_str) == Some("json_schema") => {
                let schema = f
                    .get("schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"}));
                if f.get("strict").and_then(Value::as_bool) == Some(true)
                    && let Some(problem) = super::schema::strict_problem(&schema)
                {
                    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                    return Err(error(
                        400,
                        &format!("Invalid schema for response_format '{name}': {problem}"),
                        "invalid_request_error",
                        Some("text.format.schema"),
                        None,
                    ));
                }
                Format::JsonSchema(schema)
            }
            Some(f) if f.get("type").and_then(Value::as_str) == Some("json_object") => {
                Format::JsonObject
            }
            _ => Format::Text,
        };
        let format_echo = obj
            .get("text")
            .and_then(|t| t.get("format"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "text"}));
        let base = rng::hash_json(ctx.seed, body);
        let prepared = Prepared {
            model: model.clone(),
            info,
            reading,
            format,
            prompt_tokens,
        };
        let text = chat::write(&prepared, base);
        let visible = est.count_text(&text);
        let reasoning = if info.reasoning {
            (visible * 2).div_ceil(64).max(1) * 64
        } else {
            0
        };
        let output_tokens = visible + reasoning;
        let mut dice = Dice::new(base, "id");
        let mut output = Vec::new();
        if info.reasoning {
            output.push(json!({"id": format!("rs_{}", dice.token(HEX, 50)), "type": "reasoning", "summary": []}));
        }
        output.push(json!({
            "id": format!("msg_{}", dice.token(HEX, 50)),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        }));
        let body = json!({
            "id": format!("resp_{}", dice.token(HEX, 50)),
            "object": "response",
            "created_at": ctx.now,
            "completed_at": ctx.now,
            "status": "completed",
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": obj.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": obj.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": obj.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "reasoning": {"effort": if info.reasoning { json!("medium") } else { Value::Null }, "summary": null},
            "service_tier": chat::service_tier(obj.get("service_tier")),
            "store": obj.get("store").cloned().unwrap_or(json!(true)),
            "temperature": obj.get("temperature").cloned().unwrap_or(json!(1.0)),
            "text": {"format": format_echo},
            "tool_choice": "auto",
            "tools": [],
            "top_p": obj.get("top_p").cloned().unwrap_or(json!(1.0)),
            "truncation": "disabled",
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": prompt_tokens + output_tokens
            },
            "user": obj.get("user").cloned().unwrap_or(Value::Null),
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))
        });
        Ok(ModelReply {
            status: 200,
            body,
            input_tokens: prompt_tokens,
            output_tokens,
        })
    })();
    result.unwrap_or_else(|e| e)
}

/// `POST /v1/videos`: a queued video job object (the simulator renders no video).
pub(crate) fn videos(ctx: &Ctx, body: &Value) -> ModelReply {
    let Some(obj) = body.as_object() else {
        return super::not_an_object();
    };
    if !obj.get("prompt").is_some_and(Value::is_string) {
        return error(
            400,
            "Missing required parameter: 'prompt'.",
            "invalid_request_error",
            Some("prompt"),
            Some("missing_required_parameter"),
        );
    }
    let name = obj.get("model").and_then(Value::as_str).unwrap_or("sora-2");
    let model = match catalog::lookup(name) {
        Some((m, i)) if i.kind == Kind::Video => m,
        _ => return super::model_not_found(name),
    };
    let mut dice = Dice::new(rng::hash_json(ctx.seed, body), "id");
    ModelReply {
        status: 200,
        body: json!({
            "id": format!("video_{}", dice.token(HEX, 48)),
            "object": "video",
            "model": model,
            "status": "queued",
            "progress": 0,
            "created_at": ctx.now,
            "completed_at": null,
            "expires_at": null,
            "size": obj.get("size").cloned().unwrap_or(json!("720x1280")),
            "seconds": obj.get("seconds").cloned().unwrap_or(json!("4")),
            "quality": "standard",
            "remixed_from_video_id": null,
            "error": null
        }),
        input_tokens: 0,
        output_tokens: 0,
    }
}
