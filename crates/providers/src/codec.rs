//! The one place requests are written and answers read: every tier sends these exact bodies,
//! so tiers differ only in transport.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use batch_format::{
    ChatCompletionRequest, ContentPart, ImageDetail, ImageGenerationRequest, ImageResponseFormat,
    Message, ResponseFormat, Usage, normalize_chat,
};
use serde_json::{Value, json};

use crate::{
    ChatRequest, CompareRequest, JsonRequest, JudgeRequest, ProviderError, Ranks, Result, Side,
};

/// The PNG signature every image must start with.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The judge's standing instruction (it must not mention critiques or children: the judge
/// would then write them too).
pub const JUDGE_SYSTEM: &str = "You are an art director judging images generated for a user's idea. \
Score alignment (does the image show what the idea asks for) and aesthetic quality (is it good \
to look at), each from 0 to 10, and give reasons, strengths and weaknesses. Answer in JSON.";

/// The chat body for a text answer.
pub fn chat_body(model: &str, request: &ChatRequest) -> ChatCompletionRequest {
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        messages.push(Message::system(system.clone()));
    }
    messages.push(Message::user(request.user.clone()));
    let mut body = ChatCompletionRequest::new(model, messages);
    body.temperature = request.temperature;
    body.max_completion_tokens = request.max_output_tokens;
    body.seed = request.seed;
    // Reasoning models reject sampling parameters; drop them the same way on every tier.
    normalize_chat(&mut body);
    body
}

/// The chat body for a Structured Outputs answer.
pub fn json_body(model: &str, request: &JsonRequest) -> ChatCompletionRequest {
    let mut body = chat_body(model, &request.chat);
    body.response_format = Some(ResponseFormat::json_schema(
        request.schema_name.clone(),
        request.schema.clone(),
    ));
    body
}

/// The schema of one judgement.
pub fn judgement_schema() -> Value {
    let words = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "alignment": {"type": "number", "description": "0-10: does the image show the idea"},
            "aesthetic": {"type": "number", "description": "0-10: is the image good to look at"},
            "reasons": {"type": "string"},
            "strengths": words,
            "weaknesses": words
        },
        "required": ["alignment", "aesthetic", "reasons", "strengths", "weaknesses"],
        "additionalProperties": false
    })
}

/// The schema of one comparison.
pub fn comparison_schema() -> Value {
    let side = json!({"type": "string", "enum": ["A", "B"]});
    let words = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "winner": side,
            "alignment_winner": side,
            "aesthetic_winner": side,
            "reasons": {"type": "string"},
            "strengths": words,
            "weaknesses": words
        },
        "required": ["winner", "alignment_winner", "aesthetic_winner", "reasons", "strengths", "weaknesses"],
        "additionalProperties": false
    })
}

fn check_alpha(alpha: f64) -> Result<()> {
    if (0.0..=1.0).contains(&alpha) {
        Ok(())
    } else {
        Err(ProviderError::InvalidRequest(format!(
            "alpha {alpha} is outside 0-1"
        )))
    }
}

/// The media type of PNG or JPEG bytes, the two formats the pipeline sends to a judge.
pub fn image_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(PNG_SIGNATURE) {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else {
        None
    }
}

fn image_part(bytes: &[u8], detail: Option<ImageDetail>, name: &str) -> Result<ContentPart> {
    let mime = image_mime(bytes).ok_or_else(|| {
        ProviderError::InvalidRequest(format!(
            "{name} is neither a PNG nor a JPEG ({} bytes)",
            bytes.len()
        ))
    })?;
    Ok(ContentPart::image_url(
        format!("data:{mime};base64,{}", B64.encode(bytes)),
        detail,
    ))
}

/// A chat body that shows images: the system instruction, the images (each named for errors)
/// followed by the user text, and a strict JSON schema for the answer.
fn vision_body(
    model: &str,
    system: Option<&str>,
    text: String,
    images: &[(&[u8], &str)],
    detail: Option<ImageDetail>,
    schema_name: &str,
    schema: Value,
) -> Result<ChatCompletionRequest> {
    // The images before the text: calls that show the same image first then share it as a
    // prefix OpenAI's prompt cache can reuse (the text holds the vote; see docs/cost.md).
    let mut parts = Vec::with_capacity(images.len() + 1);
    for (bytes, name) in images {
        parts.push(image_part(bytes, detail, name)?);
    }
    parts.push(ContentPart::text(text));
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(Message::system(system));
    }
    messages.push(Message::user_parts(parts));
    let mut body = ChatCompletionRequest::new(model, messages);
    body.response_format = Some(ResponseFormat::json_schema(schema_name, schema));
    Ok(body)
}

/// The chat body that judges one image: `Label: value` paragraphs, then the image.
pub fn judge_body(model: &str, request: &JudgeRequest) -> Result<ChatCompletionRequest> {
    check_alpha(request.alpha)?;
    let text = format!(
        "Task: judge\n\nIdea: {}\n\nAlpha: {}\n\nVote: {}",
        one_line(&request.idea),
        request.alpha,
        request.vote
    );
    let images = [(request.image.as_slice(), "the image")];
    vision_body(
        model,
        Some(JUDGE_SYSTEM),
        text,
        &images,
        request.detail,
        "judgement",
        judgement_schema(),
    )
}

/// The chat body of a JSON question about images: the system instruction, then the images
/// followed by the user text.
pub fn vision_json_body(
    model: &str,
    request: &crate::VisionJsonRequest,
) -> Result<ChatCompletionRequest> {
    if request.images.is_empty() {
        return Err(ProviderError::InvalidRequest(
            "a vision question needs at least one image".to_owned(),
        ));
    }
    let names: Vec<String> = (1..=request.images.len())
        .map(|i| format!("image {i}"))
        .collect();
    let images: Vec<(&[u8], &str)> = request
        .images
        .iter()
        .zip(&names)
        .map(|(bytes, name)| (bytes.as_slice(), name.as_str()))
        .collect();
    let chat = &request.chat;
    let mut body = vision_body(
        model,
        chat.system.as_deref(),
        chat.user.clone(),
        &images,
        request.detail,
        &request.schema_name,
        request.schema.clone(),
    )?;
    body.temperature = chat.temperature;
    body.max_completion_tokens = chat.max_output_tokens;
    body.seed = chat.seed;
    normalize_chat(&mut body);
    Ok(body)
}

/// The chat body that compares two images (A shown first).
pub fn compare_body(model: &str, request: &CompareRequest) -> Result<ChatCompletionRequest> {
    check_alpha(request.alpha)?;
    let text = format!(
        "Task: compare\n\nIdea: {}\n\nAlpha: {}\n\nVote: {}\n\nThe first image above is A, the second is B.",
        one_line(&request.idea),
        request.alpha,
        request.vote
    );
    let images = [
        (request.image_a.as_slice(), "image A"),
        (request.image_b.as_slice(), "image B"),
    ];
    vision_body(
        model,
        Some(JUDGE_SYSTEM),
        text,
        &images,
        request.detail,
        "comparison",
        comparison_schema(),
    )
}

/// The image body: one image, base64 in the answer.
pub fn image_body(model: &str, request: &crate::ImageRequest) -> Result<ImageGenerationRequest> {
    let mut body = ImageGenerationRequest::new(model, request.prompt.clone());
    body.size = request.size.clone();
    if let Some(q) = &request.quality {
        body.quality = Some(serde_json::from_value(json!(q)).map_err(|_| {
            ProviderError::InvalidRequest(format!(
                "image quality '{q}' is not one of low, medium, high, standard, hd, auto"
            ))
        })?);
    }
    // GPT image models always answer in base64 and reject the field; DALL·E needs it.
    if model.starts_with("dall-e") {
        body.response_format = Some(ImageResponseFormat::B64Json);
    }
    Ok(body)
}

/// A value on one line, so that it cannot run into the next label.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `usage` of a response body, under either naming (zero when absent).
pub fn usage_of(body: &Value) -> Usage {
    let u = &body["usage"];
    let n = |keys: &[&str]| keys.iter().find_map(|k| u.get(*k).and_then(Value::as_u64));
    let input = n(&["prompt_tokens", "input_tokens"]).unwrap_or(0);
    let output = n(&["completion_tokens", "output_tokens"]).unwrap_or(0);
    let detail = |outer: &[&str], inner: &str| {
        outer
            .iter()
            .find_map(|o| u.get(*o).and_then(|d| d.get(inner)).and_then(Value::as_u64))
    };
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: n(&["total_tokens"]).unwrap_or(input + output),
        cached_tokens: detail(
            &["prompt_tokens_details", "input_tokens_details"],
            "cached_tokens",
        ),
        reasoning_tokens: detail(
            &["completion_tokens_details", "output_tokens_details"],
            "reasoning_tokens",
        ),
    }
}

/// The model a response names, or `fallback` when it names none.
pub fn model_of(body: &Value, fallback: &str) -> String {
    body["model"].as_str().unwrap_or(fallback).to_owned()
}

/// The text and finish reason of a chat completion.
pub fn read_chat(body: &Value) -> Result<(String, Option<String>)> {
    let choice = &body["choices"][0];
    let message = &choice["message"];
    let finish = choice["finish_reason"].as_str().map(str::to_owned);
    match message["content"].as_str() {
        Some(text) => Ok((text.to_owned(), finish)),
        None => {
            let why = match message["refusal"].as_str() {
                Some(r) => format!("the model refused: {r}"),
                None => "no choices[0].message.content".to_owned(),
            };
            Err(ProviderError::decode(
                "chat completion",
                why,
                &body.to_string(),
            ))
        }
    }
}

/// The JSON object of a Structured Outputs answer.
pub fn read_json(body: &Value) -> Result<Value> {
    let (text, finish) = read_chat(body)?;
    serde_json::from_str::<Value>(&text).map_err(|e| {
        let why = match finish.as_deref() {
            Some("length") => format!("{e} (the answer was cut at its token limit)"),
            _ => e.to_string(),
        };
        ProviderError::decode("JSON answer", why, &text)
    })
}

fn number(v: &Value, key: &str, what: &'static str) -> Result<f64> {
    v[key]
        .as_f64()
        .map(|x| x.clamp(0.0, 10.0))
        .ok_or_else(|| ProviderError::decode(what, format!("no number '{key}'"), &v.to_string()))
}

fn words(v: &Value, key: &str) -> Vec<String> {
    match &v[key] {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What a judgement answer says: `(alignment, aesthetic, reasons, strengths, weaknesses)`.
pub type JudgementParts = (f64, f64, String, Vec<String>, Vec<String>);

/// Reads a judgement answer.
pub fn read_judgement(body: &Value) -> Result<JudgementParts> {
    let v = read_json(body)?;
    Ok((
        number(&v, "alignment", "judgement")?,
        number(&v, "aesthetic", "judgement")?,
        text(&v, "reasons"),
        words(&v, "strengths"),
        words(&v, "weaknesses"),
    ))
}

fn side(v: &Value, key: &str) -> Result<Side> {
    match v[key]
        .as_str()
        .map(|s| s.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("A") => Ok(Side::A),
        Some("B") => Ok(Side::B),
        _ => Err(ProviderError::decode(
            "comparison",
            format!("'{key}' is not A or B"),
            &v.to_string(),
        )),
    }
}

/// What a comparison answer says: `(winner, ranks of A, ranks of B, reasons, strengths,
/// weaknesses)`.
pub type ComparisonParts = (Side, Ranks, Ranks, String, Vec<String>, Vec<String>);

/// Reads a comparison answer.
pub fn read_comparison(body: &Value) -> Result<ComparisonParts> {
    let v = read_json(body)?;
    let winner = side(&v, "winner")?;
    let alignment = side(&v, "alignment_winner")?;
    let aesthetic = side(&v, "aesthetic_winner")?;
    let rank = |who: Side, best: Side| if who == best { 1 } else { 2 };
    let ranks = |who| Ranks {
        total: rank(who, winner),
        alignment: rank(who, alignment),
        aesthetic: rank(who, aesthetic),
    };
    Ok((
        winner,
        ranks(Side::A),
        ranks(Side::B),
        text(&v, "reasons"),
        words(&v, "strengths"),
        words(&v, "weaknesses"),
    ))
}

/// The PNG and revised prompt of an image answer (`b64_json`, or a `data:` URL).
pub fn read_image(body: &Value) -> Result<(Vec<u8>, Option<String>)> {
    let item = &body["data"][0];
    let encoded = match (item["b64_json"].as_str(), item["url"].as_str()) {
        (Some(b), _) => b,
        (None, Some(url)) => url.split_once(";base64,").map(|(_, b)| b).ok_or_else(|| {
            ProviderError::decode(
                "image",
                "only base64 images are read (the url is not a data: URL)",
                url,
            )
        })?,
        (None, None) => {
            return Err(ProviderError::decode(
                "image",
                "no data[0].b64_json or data[0].url",
                &body.to_string(),
            ));
        }
    };
    let png = B64
        .decode(encoded.trim())
        .map_err(|e| ProviderError::decode("image", format!("bad base64: {e}"), encoded))?;
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(ProviderError::decode(
            "image",
            "the image is not a PNG",
            &format!("{} bytes", png.len()),
        ));
    }
    Ok((png, item["revised_prompt"].as_str().map(str::to_owned)))
}

#[cfg(test)]
mod tests;
