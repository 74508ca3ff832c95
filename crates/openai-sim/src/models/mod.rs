//! Simulated models: deterministic stand-ins for the chat, vision, image, embedding and
//! moderation models, rich enough that an image-prompt search run against them improves.
//!
//! [`Models::execute`] answers one request body for one endpoint, exactly as the synchronous
//! endpoint would, and is a pure function of the simulator's seed and the body: the same request
//! gets the same answer synchronously and inside a batch. Ids (`chatcmpl-...`) are derived from
//! the body too; `created` is a fixed instant unless the caller passes the time to
//! [`Models::execute_at`].
//!
//! # Validation
//!
//! Requests are checked as the real API checks them and rejected with its error body
//! `{"error": {"message", "type", "param", "code"}}` and wording: a missing `model`
//! (`you must provide a model parameter`) or `messages` (400 `missing_required_parameter`), an
//! unknown model (404 `model_not_found`), reasoning models (`gpt-5*`, `o1`, `o3*`, `o4-mini`)
//! given `max_tokens` (400 `unsupported_parameter`) or a non-default `temperature`/`top_p`
//! (400 `unsupported_value`; `gpt-5-chat-latest` accepts sampling), out-of-range `temperature`,
//! `top_p`, `n` and token limits, `json_object` without the word "json" in the messages,
//! `json_schema` on models without structured outputs, a `strict` schema whose root is not an
//! object or with an object lacking `additionalProperties: false` or a property missing from
//! `required` (`Invalid schema for response_format ...`), images sent to text-only models, image
//! URLs that are not `data:` URLs (nothing can be downloaded here), and image sizes, counts and
//! prompt lengths per image model. `stream: true` is refused: the simulator does not stream.
//!
//! Held to OpenAI's spec (`params`): a property the request schema does not declare
//! (`Unrecognized request argument supplied: NAME`, param NAME), and enum fields outside the
//! spec's values (`invalid_value` naming the field; image `quality` and `size` per model). A chat
//! request whose prompt tokens plus `max_completion_tokens`/`max_tokens` exceed the model's
//! context window (from the catalogue) gets 400 `context_length_exceeded`, param `messages`.
//!
//! # How the writer reads a conversation
//!
//! All text parts of all messages are read for `Label: value` lines (markdown bullets and bold
//! allowed; a value runs on until a blank line or the next known label) and for JSON objects
//! (the whole part, a fenced block, or the first `{` to the last `}`), whose keys count as labels
//! at any depth. Known labels: `Idea` (also `User idea`, `Original idea`, `Concept`, `Brief`,
//! `Request`), `WHAT` (`WHAT prompt`, `Content prompt`), `HOW` (`HOW prompt`, `Style prompt`,
//! `Treatment`), `Combined` (`Combined prompt`, `Image prompt`, `Prompt`), `Critique`
//! (`Feedback`), `Weaknesses`, `Strengths`, `Reasons`, `Missing content`, `Suggested content`,
//! `Suggested treatment`, `Task`, `Dimension`, `Alpha`, `Children`. Without an `Idea` label
//! the idea is the last line of text.
//!
//! The task is, in order: the `Task:` label's value if it names one (expand, combine, critique,
//! refine, judge/score, compare); two or more images: **compare**; one image: **judge**; a
//! candidate (WHAT or HOW) with a critique and a refine verb (refine/improve/revise/rewrite), or
//! with a response schema that has a children array: **refine**; a candidate and the word
//! critique (or a schema property meaning critique): **critique**; WHAT and HOW and a combine
//! verb: **combine**; a candidate and a refine verb: **refine** (blind); otherwise **expand**.
//! Identical request bodies get identical answers, so callers that want different candidates
//! or independent votes must make the requests differ (a candidate or vote index in the text,
//! a `seed`, the A/B order...).
//!
//! # Vocabulary
//!
//! Visual terms come in seven categories of 8-10 terms each: six of treatment, written in HOW
//! (lighting: `golden hour lighting`, `chiaroscuro`, `rim lighting`...; composition:
//! `rule of thirds`, `leading lines`, `low angle`...; palette: `muted earth tones`,
//! `teal and orange palette`, `monochrome`...; texture: `fine film grain`, `crisp detail`...;
//! medium: `oil painting`, `watercolor`, `35mm film photograph`...; lens: `85mm lens`,
//! `shallow depth of field`, `long exposure`...) and atmosphere, written in WHAT
//! (`drifting mist`, `glistening spray`, `hazy horizon`...). A term is found in a text when its
//! words appear in sequence, case and punctuation ignored. Content words are lowercase words of
//! three or more letters that are neither function words nor instruction words (`prompt`,
//! `image`, `expand`, `refine`...); they match across plurals (`storms` = `storm`).
//!
//! # Writing
//!
//! - **Expand**: WHAT keeps each content word of the idea with probability 0.6 (at least one),
//!   adds an adjective, a setting and a sensory clause (which score nothing) and, half the time,
//!   one atmosphere term; HOW names 2-3 treatment terms from different categories. Plain-text
//!   answers are `WHAT: ...\nHOW: ...\nCOMBINED: ...`, or one of them alone when the
//!   instructions name only `WHAT` or only `HOW` in capitals.
//! - **Combine**: `"{WHAT}. Visual treatment: {HOW}"`.
//! - **Critique**: names the idea's content words the candidate lacks (`Missing content:`), the
//!   treatment categories it leaves unspecified (`Weaknesses:`), and suggests 3 unused atmosphere
//!   terms (`Suggested content:`) and 5 unused treatment terms, unspecified categories first
//!   (`Suggested treatment:`). Weaknesses from a judgement in the conversation are kept.
//! - **Refine**: reads the critique (labels `Critique`, `Weaknesses`, `Missing content`,
//!   `Suggested ...`): WHAT gains a sentence naming the missing words plus up to two suggested
//!   atmosphere terms; HOW gains 3 (even children) or 2 (odd children) suggested treatment
//!   terms, each child starting at a different suggestion. The dimension comes from a
//!   `Dimension:` label or a phrase like "refine the WHAT"; otherwise both change. With no
//!   critique the refiner adds one random unused term. When the response schema asks for
//!   children and no critique was given (the `fused` plan) the model writes the critique
//!   itself from the judgement it is shown, then the children. The number of children is a
//!   `Children:` label or a phrase like "3 children", bounded by the schema's
//!   `minItems`/`maxItems`, 3 by default.
//!
//! # Judging
//!
//! The judge reads the prompt **only** from the image bytes it is sent: a PNG this simulator drew
//! carries it in its `batchbeam:prompt` text chunk. With the idea's content words `I`, the
//! prompt's distinct visual terms `k` and its word count `w`:
//!
//! - `alignment = 10 * |I covered by the prompt| / |I|` (5 when `I` is empty);
//! - `aesthetic = 10 * (1 - exp(-k / 6)) - min(3, 0.02 * max(0, w - 150))` (saturating:
//!   2 terms give 2.8, 4 give 4.9, 8 give 7.4, 12 give 8.6);
//! - each vote adds normal noise with standard deviation 0.5 to each score, drawn from a stream
//!   seeded by the seed and the whole request body, then clamps to 0-10 and rounds to 0.1;
//! - `score = alpha * alignment + (1 - alpha) * aesthetic`, `alpha` from an `Alpha:` label,
//!   0.7 by default.
//!
//! A draft render (an image drawn at `quality` `low` or `medium`, whose PNG carries a
//! `batchbeam:quality` chunk; a `high` image has none) shows less: at `medium` the texture
//! terms are invisible to the judge and the vote noise is 0.8; at `low` the texture and lens
//! terms are invisible and the noise is 1.2. So draft judgements are noisier and blind to fine
//! detail: a draft judge can prefer the image a full-quality judge would not.
//!
//! An image the simulator did not draw scores alignment 0 and aesthetic 1. A comparison judges
//! image A and image B independently and adds a position bias of 0.4 to the image shown first
//! (A), which is why votes should swap the order. Judgements come with reasons, strengths (idea
//! words shown, terms used) and weaknesses (idea words missing, unspecified categories); when
//! the schema or text asks for a critique or children, the judge also writes them (the
//! `judge_refines` plan).
//!
//! # Structured output
//!
//! `response_format: json_object` returns the answer's facts as an object (`what`, `how`,
//! `combined`; `alignment`, `aesthetic`, `score`, `reasons`, `strengths`, `weaknesses`,
//! `missing`; `critique`, `suggestions`; `children`; `winner`, `ranking`, `ranks`, `a`, `b`).
//! `json_schema` returns a value conforming to the schema: every declared property is written,
//! filled from the fact its name suggests (`what_prompt` -> `what`, `alignment_score` ->
//! `alignment`, `image_b_score` -> `b.score`, `refined_prompts` -> `children`, `preferred` ->
//! `winner`...), numbers rescaled from 0-10 to the schema's `maximum`, enums matched, arrays
//! padded or cut to `minItems`/`maxItems`; anything unrecognised gets a neutral value of its
//! type.
//!
//! # Images
//!
//! `/v1/images/generations` (and `/v1/images/edits`) return `n` 64x64 RGB PNGs whose pixels
//! depend on the prompt (palette words pick the hue, content words place blobs) and on the
//! image's index, with the prompt in a `batchbeam:prompt` tEXt chunk (iTXt if not Latin-1).
//! `size` is validated per model and recorded. `b64_json` by default for GPT image models, a
//! `data:` URL in `url` for DALL·E's default `url` format. GPT image models report token usage
//! from OpenAI's per-quality table.
//!
//! # Other endpoints
//!
//! Embeddings are seeded bag-of-words vectors (shared words, nearby vectors), normalised, in
//! floats or base64; legacy completions and responses use the same writer; moderations flag
//! `violence` only for a few violent words; videos return a queued job object.

mod catalog;
mod chat;
mod engine;
mod image;
mod other;
mod params;
mod reading;
mod rng;
mod schema;
mod text;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod validation_tests;

use batch_format::Endpoint;
use serde_json::{Value, json};

pub use image::{
    IMAGE_SIDE, PROMPT_KEYWORD, QUALITY_KEYWORD, draw_png, draw_png_at, read_prompt, read_quality,
};

/// The simulated judge's hidden, noise-free score of an image drawn from `prompt` for `idea`:
/// `alpha * alignment + (1 - alpha) * aesthetic` from the rules of the module docs (Judging).
/// Every vote, alone or in a comparison, scatters around it (and a comparison favours the
/// image shown first by 0.4). For tests that check a search's judgements against the truth.
pub fn hidden_quality(prompt: &str, idea: &str, alpha: f64) -> f64 {
    let (alignment, aesthetic) = engine::true_scores(prompt, idea);
    alpha * alignment + (1.0 - alpha) * aesthetic
}

/// The `created` time [`Models::execute`] reports: 2025-01-01T00:00:00Z.
const FIXED_NOW: u64 = 1_735_689_600;

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
    /// Output tokens billed for the request (reasoning tokens included).
    pub output_tokens: u64,
}

/// What every endpoint handler needs besides the body.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    seed: u64,
    now: u64,
}

impl Models {
    /// Models whose every answer is a pure function of `seed` and the request body.
    pub fn new(seed: u64) -> Models {
        Models { seed }
    }

    /// The seed the models were made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the catalogue holds `model` (an alias, a snapshot, or a fine-tune of either),
    /// whatever endpoint it serves: the Batch API refuses a batch naming any other model at
    /// validation, before it reads what the lines ask.
    pub fn knows(model: &str) -> bool {
        catalog::lookup(model).is_some()
    }

    /// Answers one request to `endpoint` as the real API would (same answer in and out of a
    /// batch), with `created` timestamps at a fixed instant.
    pub fn execute(&self, endpoint: Endpoint, body: &Value) -> ModelReply {
        self.execute_at(endpoint, body, FIXED_NOW)
    }

    /// [`Models::execute`] with `created` / `created_at` set to `now` (Unix seconds); nothing
    /// else depends on the time.
    pub fn execute_at(&self, endpoint: Endpoint, body: &Value, now: u64) -> ModelReply {
        let ctx = Ctx {
            seed: self.seed,
            now,
        };
        match endpoint {
            Endpoint::ChatCompletions => chat::complete(&ctx, body),
            Endpoint::ImagesGenerations => image::generate(&ctx, body, params::IMAGE_GENERATION),
            Endpoint::ImagesEdits => image::generate(&ctx, body, params::IMAGE_EDIT),
            Endpoint::Embeddings => other::embeddings(&ctx, body),
            Endpoint::Completions => other::completions(&ctx, body),
            Endpoint::Moderations => other::moderations(&ctx, body),
            Endpoint::Responses => other::responses(&ctx, body),
            Endpoint::Videos => other::videos(&ctx, body),
            // `Endpoint` is non-exhaustive: an endpoint added later is answered honestly.
            #[allow(unreachable_patterns)]
            _ => error(
                404,
                &format!("Invalid URL (POST {endpoint})"),
                "invalid_request_error",
                None,
                None,
            ),
        }
    }
}

/// An OpenAI error reply: `{"error": {"message", "type", "param", "code"}}`.
fn error(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> ModelReply {
    ModelReply {
        status,
        body: json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
        input_tokens: 0,
        output_tokens: 0,
    }
}

fn model_not_found(model: &str) -> ModelReply {
    error(
        404,
        &format!("The model `{model}` does not exist or you do not have access to it."),
        "invalid_request_error",
        None,
        Some("model_not_found"),
    )
}

fn not_an_object() -> ModelReply {
    error(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
        "invalid_request_error",
        None,
        None,
    )
}

/// `Invalid type for 'x': expected a string, but got an integer instead.`
fn invalid_type(param: &str, expected: &str, got: &Value) -> ModelReply {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    error(
        400,
        &format!("Invalid type for '{param}': expected {expected}, but got {got} instead."),
        "invalid_request_error",
        Some(param),
        Some("invalid_type"),
    )
}

/// `Invalid value: 'x'. Supported values are: 'a', 'b', and 'c'.`
fn invalid_value(param: &str, got: &str, allowed: &[&str]) -> ModelReply {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    let list = match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    };
    error(
        400,
        &format!("Invalid value: '{got}'. Supported values are: {list}."),
        "invalid_request_error",
        Some(param),
        Some("invalid_value"),
    )
}
