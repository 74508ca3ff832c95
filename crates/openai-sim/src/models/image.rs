//! The simulated image model: small real PNGs whose pixels depend on the prompt and whose
//! `batchbeam:prompt` text chunk records it, and the reader the judge uses to get it back.

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use batch_format::TokenEstimator;
use serde_json::{Map, Value, json};

use super::catalog::{self, Kind};
use super::params;
use super::reading::{Draft, SeenImage};
use super::rng::{self, Dice};
use super::text;
use super::{Ctx, ModelReply, error};

/// Keyword of the PNG text chunk that records the prompt an image was drawn from.
pub const PROMPT_KEYWORD: &str = "batchbeam:prompt";
/// Keyword of the PNG text chunk that records a draft render's quality (`low`, `medium`); a
/// full-quality image has none, so its bytes are what they always were.
pub const QUALITY_KEYWORD: &str = "batchbeam:quality";
/// Side of the square images the simulator draws, in pixels.
pub const IMAGE_SIDE: u32 = 64;

/// Draws the image for `prompt`: a 64x64 RGB PNG. The colours come from the prompt's palette
/// words (warm, blue, monochrome, ...) or its hash, a blob per content word sits where that
/// word's hash puts it, and `variant` (the index among `n` images) shifts the blobs.
/// Text chunks: `batchbeam:prompt` (tEXt, or iTXt when the prompt is not Latin-1) and
/// `batchbeam:size`, `batchbeam:model`.
pub fn draw_png(prompt: &str, variant: u32, size: &str, model: &str) -> Vec<u8> {
    draw_png_at(prompt, variant, size, model, "high")
}

/// [`draw_png`] at `quality`: a `low` or `medium` draft also carries a `batchbeam:quality`
/// chunk, from which the judge knows how much of the prompt the picture shows (see the module
/// docs of `models`, Judging).
pub fn draw_png_at(prompt: &str, variant: u32, size: &str, model: &str, quality: &str) -> Vec<u8> {
    let side = IMAGE_SIDE as usize;
    let h = rng::hash_parts(&[prompt.as_bytes()]);
    let lower = prompt.to_lowercase();
    let hue = palette_hue(&lower).unwrap_or((h % 360) as f64);
    let grey = lower.contains("monochrome") || lower.contains("charcoal");
    let bright = ["golden", "light", "glow", "sun"]
        .iter()
        .filter(|w| lower.contains(*w))
        .count() as f64;
    let sky = hsl(
        hue,
        if grey { 0.0 } else { 0.45 },
        (0.55 + 0.05 * bright).min(0.8),
    );
    let ground = hsl(hue + 40.0, if grey { 0.0 } else { 0.55 }, 0.28);
    let blobs: Vec<(f64, f64, f64, [f64; 3])> = text::content_words(prompt)
        .iter()
        .take(6)
        .map(|w| {
            let wh = rng::hash_parts(&[w.as_bytes(), &variant.to_le_bytes()]);
            let x = (wh % 64) as f64;
            let y = ((wh >> 8) % 64) as f64;
            let r = 4.0 + ((wh >> 16) % 9) as f64;
            let c = hsl(((wh >> 24) % 360) as f64, if grey { 0.0 } else { 0.6 }, 0.5);
            (x, y, r, c)
        })
        .collect();
    let mut noise = Dice::new(h ^ u64::from(variant), "pixels");
    let mut data = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        let t = y as f64 / (side - 1) as f64;
        for x in 0..side {
            let mut px = [0.0; 3];
            for (i, p) in px.iter_mut().enumerate() {
                *p = sky[i] * (1.0 - t) + ground[i] * t;
            }
            for (bx, by, r, c) in &blobs {
                let d = ((x as f64 - bx).powi(2) + (y as f64 - by).powi(2)).sqrt();
                if d < *r {
                    let a = 1.0 - d / r;
                    for i in 0..3 {
                        px[i] = px[i] * (1.0 - a) + c[i] * a;
                    }
                }
            }
            let jitter = (noise.unit() - 0.5) * 0.04;
            data.extend(
                px.iter()
                    .map(|p| ((p + jitter).clamp(0.0, 1.0) * 255.0).round() as u8),
            );
        }
    }

    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, IMAGE_SIDE, IMAGE_SIDE);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let latin1 = prompt.chars().all(|c| (c as u32) < 256 && c != '\0');
    // Adding text chunks to the header cannot fail; only writing can.
    let _ = if latin1 {
        encoder.add_text_chunk(PROMPT_KEYWORD.into(), prompt.into())
    } else {
        encoder.add_itxt_chunk(PROMPT_KEYWORD.into(), prompt.into())
    };
    let _ = encoder.add_text_chunk("batchbeam:size".into(), size.into());
    let _ = encoder.add_text_chunk("batchbeam:model".into(), model.into());
    if matches!(quality, "low" | "medium") {
        let _ = encoder.add_text_chunk(QUALITY_KEYWORD.into(), quality.into());
    }
    // Writing to a Vec cannot fail and the pixel buffer matches the header, so an error here
    // is a bug in this function; an empty body (which the judge rejects) is its visible symptom.
    let written = encoder.write_header().and_then(|mut writer| {
        writer.write_image_data(&data)?;
        writer.finish()
    });
    if written.is_err() {
        out.clear();
    }
    out
}

/// The prompt recorded in the `batchbeam:prompt` chunk of a PNG drawn by [`draw_png`]; `None`
/// for any other bytes.
pub fn read_prompt(bytes: &[u8]) -> Option<String> {
    decode_prompt(bytes).ok().flatten().map(|(p, _)| p)
}

/// The draft quality (`low`, `medium`) recorded in a PNG drawn by [`draw_png_at`]; `None` for
/// a full-quality image or any other bytes.
pub fn read_quality(bytes: &[u8]) -> Option<&'static str> {
    match decode_prompt(bytes).ok().flatten()?.1? {
        Draft::Low => Some("low"),
        Draft::Medium => Some("medium"),
    }
}

/// The prompt and the draft quality chunk (if any) of a PNG: `Ok(None)` for a valid PNG
/// without a prompt chunk, `Err` for bytes that are not a PNG.
fn decode_prompt(bytes: &[u8]) -> Result<Option<(String, Option<Draft>)>, String> {
    let decoder = png::Decoder::new(Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    // Text chunks may follow the pixel data, so decode the whole image before looking.
    if let Some(size) = reader.output_buffer_size()
        && size <= 64 << 20
    {
        let mut buf = vec![0; size];
        reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
        let _ = reader.finish();
    }
    let info = reader.info();
    let draft = info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == QUALITY_KEYWORD)
        .and_then(|t| match t.text.as_str() {
            "low" => Some(Draft::Low),
            "medium" => Some(Draft::Medium),
            _ => None,
        });
    if let Some(t) = info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == PROMPT_KEYWORD)
    {
        return Ok(Some((t.text.clone(), draft)));
    }
    if let Some(t) = info.utf8_text.iter().find(|t| t.keyword == PROMPT_KEYWORD) {
        return t
            .get_text()
            .map(|p| Some((p, draft)))
            .map_err(|e| e.to_string());
    }
    Ok(None)
}

/// What a model sees in an image's bytes: the prompt if this simulator drew it, or a foreign
/// image when the bytes are a PNG, JPEG, GIF or WebP it did not draw. `None`: not an image.
pub(crate) fn see(bytes: &[u8]) -> Option<SeenImage> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return match decode_prompt(bytes) {
            Ok(Some((prompt, None))) => Some(SeenImage::Drawn(prompt)),
            Ok(Some((prompt, Some(draft)))) => Some(SeenImage::Draft(prompt, draft)),
            Ok(None) => Some(SeenImage::Foreign),
            Err(_) => None,
        };
    }
    let jpeg = bytes.starts_with(&[0xff, 0xd8, 0xff]);
    let gif = bytes.starts_with(b"GIF8");
    let webp = bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP";
    (jpeg || gif || webp).then_some(SeenImage::Foreign)
}

/// The bytes of a `data:image/...;base64,...` URL.
pub(crate) fn data_url_bytes(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    B64.decode(data.trim()).ok()
}

/// `(sizes the model draws, its default size)`.
fn sizes(model: &str) -> (&'static [&'static str], &'static str) {
    match model {
        "dall-e-2" => (&["256x256", "512x512", "1024x1024"], "1024x1024"),
        "dall-e-3" => (&["1024x1024", "1792x1024", "1024x1792"], "1024x1024"),
        _ => (&["auto", "1024x1024", "1536x1024", "1024x1536"], "auto"),
    }
}

/// `quality` values each model takes, per the spec's description of `quality`: `hd` and
/// `standard` for DALL·E 3, only `standard` for DALL·E 2, `high`/`medium`/`low` for GPT image
/// models; `auto` for all.
fn qualities(model: &str) -> &'static [&'static str] {
    match model {
        "dall-e-2" => &["standard", "auto"],
        "dall-e-3" => &["standard", "hd", "auto"],
        _ => &["low", "medium", "high", "auto"],
    }
}

fn prompt_limit(model: &str) -> usize {
    match model {
        "dall-e-2" => 1_000,
        "dall-e-3" => 4_000,
        _ => 32_000,
    }
}

/// Output tokens of one GPT-image picture by quality and size, as OpenAI's pricing table has them.
fn image_output_tokens(quality: &str, size: &str) -> u64 {
    let square = size == "1024x1024" || size == "auto";
    match (quality, square) {
        ("low", true) => 272,
        ("low", false) => 408,
        ("medium", true) => 1_056,
        ("medium", false) => 1_584,
        (_, true) => 4_160,
        (_, false) => 6_240,
    }
}

/// An optional integer parameter within `min..=max` (null counts as absent, as the spec's
/// `anyOf [integer, null]` has it), with OpenAI's messages for each way it can be wrong.
fn integer_in(
    obj: &serde_json::Map<String, Value>,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ModelReply> {
    let v = match obj.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let Some(n) = v.as_i64() else {
        return Err(super::invalid_type(name, "an integer", v));
    };
    let (bound, code) = if n < min {
        (
            format!("integer below minimum value. Expected a value >= {min}"),
            "integer_below_min_value",
        )
    } else if n > max {
        (
            format!("integer above maximum value. Expected a value <= {max}"),
            "integer_above_max_value",
        )
    } else {
        return Ok(Some(n));
    };
    Err(error(
        400,
        &format!("Invalid '{name}': {bound}, but got {n} instead."),
        "invalid_request_error",
        Some(name),
        Some(code),
    ))
}

/// `POST /v1/images/generations` (and `/v1/images/edits`, answered the same way from the
/// prompt); `known` is the endpoint's request properties.
pub(crate) fn generate(ctx: &Ctx, body: &Value, known: &[&str]) -> ModelReply {
    let Some(obj) = body.as_object() else {
        return super::not_an_object();
    };
    if let Err(reply) = params::reject_unknown(obj, known) {
        return reply;
    }
    let prompt = match obj.get("prompt") {
        Some(Value::String(p)) if !p.is_empty() => p.as_str(),
        Some(Value::String(_)) => {
            return error(
                400,
                "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string instead.",
                "invalid_request_error",
                Some("prompt"),
                Some("empty_string"),
            );
        }
        Some(other) => return super::invalid_type("prompt", "a string", other),
        None => {
            return error(
                400,
                "Missing required parameter: 'prompt'.",
                "invalid_request_error",
                Some("prompt"),
                Some("missing_required_parameter"),
            );
        }
    };
    let model_name = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return super::invalid_type("model", "a string", other),
        None => "dall-e-2",
    };
    let model = match catalog::lookup(model_name) {
        Some((snapshot, info)) if info.kind == Kind::Image => snapshot,
        _ => return super::model_not_found(model_name),
    };
    let gpt_image = model.starts_with("gpt-image");
    let limit = prompt_limit(&model);
    let chars = prompt.chars().count();
    if chars > limit {
        return error(
            400,
            &format!(
                "Invalid 'prompt': string too long. Expected a string with maximum length {limit}, but got a string with length {chars} instead."
            ),
            "invalid_request_error",
            Some("prompt"),
            Some("string_above_max_length"),
        );
    }
    let max_n = if model == "dall-e-3" { 1 } else { 10 };
    let n = match integer_in(obj, "n", 1, max_n) {
        // Within 1..=10 here, so the conversion cannot fail.
        Ok(n) => n.and_then(|n| u64::try_from(n).ok()).unwrap_or(1),
        Err(reply) => return reply,
    };
    for (name, min, max) in [("output_compression", 0, 100), ("partial_images", 0, 3)] {
        if let Err(reply) = integer_in(obj, name, min, max) {
            return reply;
        }
    }
    if let Some(v) = obj.get("user").filter(|v| !v.is_null() && !v.is_string()) {
        return super::invalid_type("user", "a string", v);
    }
    let (allowed, default_size) = sizes(&model);
    let size = match obj.get("size") {
        None | Some(Value::Null) => default_size.to_string(),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => s.clone(),
        Some(Value::String(s)) => {
            return super::invalid_value("size", s, allowed);
        }
        Some(other) => return super::invalid_type("size", "a string", other),
    };
    let format = match obj.get("response_format") {
        None | Some(Value::Null) => {
            if gpt_image {
                "b64_json"
            } else {
                "url"
            }
        }
        Some(Value::String(f)) if params::IMAGE_RESPONSE_FORMATS.contains(&f.as_str()) => {
            f.as_str()
        }
        Some(Value::String(f)) => {
            return super::invalid_value("response_format", f, params::IMAGE_RESPONSE_FORMATS);
        }
        Some(other) => return super::invalid_type("response_format", "a string", other),
    };
    let options = match options(obj, &model) {
        Ok(o) => o,
        Err(reply) => return reply,
    };
    let quality = options
        .quality
        .filter(|q| *q != "auto")
        .unwrap_or(if gpt_image { "high" } else { "standard" })
        .to_string();

    let data: Vec<Value> = (0..n as u32)
        .map(|i| {
            let png = draw_png_at(prompt, i, &size, &model, &quality);
            let encoded = B64.encode(&png);
            let mut item = Map::new();
            if format == "url" {
                item.insert(
                    "url".into(),
                    json!(format!("data:image/png;base64,{encoded}")),
                );
            } else {
                item.insert("b64_json".into(), json!(encoded));
            }
            if model == "dall-e-3" {
                item.insert("revised_prompt".into(), json!(prompt));
            }
            Value::Object(item)
        })
        .collect();

    let text_tokens = TokenEstimator::for_model(&model).count_text(prompt);
    let mut reply = Map::new();
    reply.insert("created".into(), json!(ctx.now));
    if gpt_image {
        let output = image_output_tokens(&quality, &size) * n;
        reply.insert(
            "background".into(),
            json!(
                options
                    .background
                    .filter(|b| *b != "auto")
                    .unwrap_or("opaque")
            ),
        );
        reply.insert("data".into(), Value::Array(data));
        reply.insert("output_format".into(), json!("png"));
        reply.insert("quality".into(), json!(quality));
        reply.insert(
            "size".into(),
            json!(if size == "auto" {
                "1024x1024"
            } else {
                size.as_str()
            }),
        );
        reply.insert(
            "usage".into(),
            json!({
                "input_tokens": text_tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": text_tokens},
                "output_tokens": output,
                "total_tokens": text_tokens + output
            }),
        );
        ModelReply {
            status: 200,
            body: Value::Object(reply),
            input_tokens: text_tokens,
            output_tokens: output,
        }
    } else {
        reply.insert("data".into(), Value::Array(data));
        ModelReply {
            status: 200,
            body: Value::Object(reply),
            input_tokens: text_tokens,
            output_tokens: 0,
        }
    }
}

/// The enum options besides `size` and `response_format`, checked against the spec's values.
struct Options<'a> {
    quality: Option<&'a str>,
    background: Option<&'a str>,
}

fn options<'a>(obj: &'a Map<String, Value>, model: &str) -> Result<Options<'a>, ModelReply> {
    let quality = params::one_of(obj, "quality", qualities(model))?;
    let background = params::one_of(obj, "background", params::BACKGROUNDS)?;
    params::one_of(obj, "moderation", params::MODERATIONS)?;
    params::one_of(obj, "style", params::STYLES)?;
    params::one_of(obj, "input_fidelity", params::INPUT_FIDELITIES)?;
    // Every picture is a PNG (the judge reads the prompt from its text chunk): a JPEG or WebP
    // asked for is refused rather than answered with a PNG labelled as one.
    match params::one_of(obj, "output_format", params::OUTPUT_FORMATS)? {
        None | Some("png") => {}
        Some(_) => {
            return Err(error(
                400,
                "openai-sim draws PNG images only; send 'output_format': 'png'.",
                "invalid_request_error",
                Some("output_format"),
                Some("unsupported_value"),
            ));
        }
    }
    Ok(Options {
        quality,
        background,
    })
}

/// An RGB colour in 0-1 from hue (degrees), saturation and lightness.
fn hsl(h: f64, s: f64, l: f64) -> [f64; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    [r + m, g + m, b + m]
}

fn palette_hue(lower: &str) -> Option<f64> {
    const HUES: &[(&str, f64)] = &[
        ("amber", 35.0),
        ("warm", 25.0),
        ("golden", 45.0),
        ("orange", 28.0),
        ("teal", 180.0),
        ("blue", 215.0),
        ("green", 120.0),
        ("pastel", 300.0),
        ("earth", 30.0),
        ("jewel", 280.0),
        ("neon", 320.0),
    ];
    HUES.iter()
        .find(|(w, _)| lower.contains(w))
        .map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_png_is_real_and_gives_back_its_prompt() {
        let png = draw_png(
            "a lighthouse in a storm, chiaroscuro",
            0,
            "1024x1024",
            "gpt-image-1",
        );
        let decoder = png::Decoder::new(Cursor::new(&png[..]));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buf).unwrap();
        assert_eq!((frame.width, frame.height), (64, 64));
        assert_eq!(frame.color_type, png::ColorType::Rgb);
        assert_eq!(
            read_prompt(&png).as_deref(),
            Some("a lighthouse in a storm, chiaroscuro")
        );
        assert!(png.len() < 20_000, "{} bytes", png.len());
    }

    #[test]
    fn pixels_depend_on_the_prompt_and_variant_only() {
        let a = draw_png("a red fox", 0, "auto", "m");
        assert_eq!(a, draw_png("a red fox", 0, "auto", "m"));
        assert_ne!(a, draw_png("a red fox", 1, "auto", "m"));
        assert_ne!(a, draw_png("a blue fox", 0, "auto", "m"));
    }

    #[test]
    fn non_latin1_prompts_use_itxt() {
        let png = draw_png("灯台と嵐 — lighthouse", 0, "auto", "m");
        assert_eq!(read_prompt(&png).as_deref(), Some("灯台と嵐 — lighthouse"));
    }

    #[test]
    fn sees_drawn_foreign_and_non_images() {
        let png = draw_png("x y z", 0, "auto", "m");
        assert_eq!(see(&png), Some(SeenImage::Drawn("x y z".into())));
        // A PNG from elsewhere: valid, no prompt chunk.
        let mut plain = Vec::new();
        {
            let mut e = png::Encoder::new(&mut plain, 1, 1);
            e.set_color(png::ColorType::Grayscale);
            e.write_header().unwrap().write_image_data(&[7]).unwrap();
        }
        assert_eq!(see(&plain), Some(SeenImage::Foreign));
        assert_eq!(
            see(&[0xff, 0xd8, 0xff, 0xe0, 0, 0]),
            Some(SeenImage::Foreign)
        );
        assert_eq!(see(b"hello"), None);
        assert_eq!(see(b"\x89PNG\r\n\x1a\ngarbage"), None);
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            data_url_bytes("data:image/png;base64,aGk="),
            Some(b"hi".to_vec())
        );
        assert_eq!(data_url_bytes("data:image/png,hi"), None);
        assert_eq!(data_url_bytes("https://example.com/x.png"), None);
        assert_eq!(data_url_bytes("data:image/png;base64,!!"), None);
    }
}
