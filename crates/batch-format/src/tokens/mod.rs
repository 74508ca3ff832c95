//! Rough prompt-token estimates for request bodies, used to stay under enqueued-token limits.
//!
//! The numbers are estimates, not bills: text is counted with the model's BPE, each chat message
//! adds a fixed overhead, each image costs a fixed amount by detail level, and the completion
//! budget (`max_completion_tokens` and friends) is added because OpenAI counts it against the
//! enqueued-token limit.

mod layout;
mod split;
mod vocab;

use std::fmt;

use serde_json::Value;

use split::Pattern;
use vocab::Vocab;

/// A run of whitespace, or of anything else, longer than this many bytes is counted by sample
/// (see [`TokenEstimator::count_text`]).
pub(crate) const LONG_RUN: usize = 16 * 1024;
/// Bytes of a long run that are counted exactly; the rest is scaled from them.
pub(crate) const RUN_SAMPLE: usize = 1024;

/// Tokens added for each chat message on top of its text (role and separators).
pub(crate) const MESSAGE_OVERHEAD: u64 = 3;
/// Cost of a `detail: "low"` image.
const LOW_DETAIL_IMAGE: u64 = 85;
/// Cost of a high-detail 1024x1024 image: 85 base + 4 tiles of 170.
const HIGH_DETAIL_IMAGE: u64 = 765;

/// The BPE a model family uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    O200kBase,
    Cl100kBase,
}

impl Encoding {
    fn for_model(model: &str) -> Encoding {
        // Fine-tuned models are named `ft:<base>:<org>::<id>`.
        let base = model.strip_prefix("ft:").unwrap_or(model);
        const O200K_PREFIXES: [&str; 9] = [
            "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss",
        ];
        if O200K_PREFIXES.iter().any(|p| base.starts_with(p)) {
            Encoding::O200kBase
        } else {
            Encoding::Cl100kBase
        }
    }

    /// The vocabulary, read in place from the table the build script wrote: nothing is
    /// built at start, and taking it costs a few reads of its header.
    fn vocab(self) -> Vocab {
        match self {
            Encoding::O200kBase => Vocab::new(include_bytes!(concat!(
                env!("OUT_DIR"),
                "/o200k_base.vocab"
            ))),
            Encoding::Cl100kBase => Vocab::new(include_bytes!(concat!(
                env!("OUT_DIR"),
                "/cl100k_base.vocab"
            ))),
        }
    }

    fn pattern(self) -> Pattern {
        match self {
            Encoding::O200kBase => Pattern::O200k,
            Encoding::Cl100kBase => Pattern::Cl100k,
        }
    }

    /// Tokens of `text` by this encoding's BPE, special tokens as ordinary text: exactly what
    /// tiktoken's `count_ordinary` gives (a test holds them together). Should the pattern's
    /// backtracking give up on a non-ASCII text, the rest of it is taken at 3 bytes a token.
    fn count(self, text: &str) -> u64 {
        let vocab = self.vocab();
        let mut tokens = 0;
        let cut = self
            .pattern()
            .pieces(text, |piece| tokens += vocab.count_piece(piece));
        if let Err(at) = cut {
            tokens += (text.len() - at).div_ceil(3) as u64;
        }
        tokens
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }
}

/// Counts prompt tokens the way the model's tokenizer would, plus fixed costs for structure.
///
/// Cheap to create and copy: the vocabularies behind it are compiled into the binary and read
/// in place, so the first count costs no more than the next.
#[derive(Clone, Copy)]
pub struct TokenEstimator {
    encoding: Encoding,
}

impl fmt::Debug for TokenEstimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEstimator")
            .field("encoding", &self.encoding.name())
            .finish()
    }
}

impl TokenEstimator {
    /// The estimator for `model`: `o200k_base` for the gpt-4o, gpt-4.1, gpt-5, o-series and
    /// chatgpt families, `cl100k_base` for everything else.
    pub fn for_model(model: &str) -> Self {
        TokenEstimator {
            encoding: Encoding::for_model(model),
        }
    }

    /// The name of the BPE this estimator uses, e.g. `"o200k_base"`.
    pub fn encoding_name(&self) -> &'static str {
        self.encoding.name()
    }

    /// Number of tokens in `text`, special tokens treated as ordinary text.
    ///
    /// Exact for text without a run of more than 16 KiB of one kind (whitespace or not), i.e.
    /// for any prose or code. Such a run (30 MB of one letter, a pasted base64 blob)
    /// makes the BPE take time and memory in proportion to the run (a gigabyte for 30 MB), so
    /// each one is estimated from its first KiB instead (within 2%): the work per call is
    /// bounded by a scan of the text plus BPE over at most 1/16 of it.
    pub fn count_text(&self, text: &str) -> u64 {
        let exact = |s: &str| self.encoding.count(s);
        if text.len() <= LONG_RUN {
            return exact(text);
        }
        let mut total = 0;
        let mut counted_to = 0;
        for (start, end) in long_runs(text) {
            total += exact(&text[counted_to..start]);
            let sample_end = char_floor(text, start + RUN_SAMPLE);
            let sample = exact(&text[start..sample_end]);
            let scaled = u128::from(sample) * (end - start) as u128;
            total +=
                u64::try_from(scaled.div_ceil((sample_end - start) as u128)).unwrap_or(u64::MAX);
            counted_to = end;
        }
        total + exact(&text[counted_to..])
    }

    /// Cost of one image input: 85 for `detail: "low"`, otherwise (high, auto or unset) 765,
    /// the high-detail cost of a 1024x1024 image.
    pub fn image_tokens(detail: Option<&str>) -> u64 {
        match detail {
            Some("low") => LOW_DETAIL_IMAGE,
            _ => HIGH_DETAIL_IMAGE,
        }
    }

    /// Estimated tokens a request body counts against the enqueued-token limit.
    ///
    /// Sums the text of `messages` (chat) or `input` (responses, embeddings, moderations) or
    /// `prompt` (completions, images), 3 tokens of overhead per message, [`Self::image_tokens`]
    /// per image part, and the completion budget (`max_completion_tokens`, `max_tokens` or
    /// `max_output_tokens`) when present. Anything of an unexpected shape counts as nothing.
    pub fn estimate_json_body(&self, body: &Value) -> u64 {
        let mut tally = 0;
        if let Some(obj) = body.as_object() {
            if let Some(messages) = obj.get("messages") {
                tally_value_messages(messages, &mut tally, self);
            }
            for key in ["input", "prompt"] {
                if let Some(v) = obj.get(key) {
                    tally_value_input(v, &mut tally, self);
                }
            }
            for key in BUDGET_KEYS {
                if let Some(n) = obj.get(key).and_then(Value::as_u64) {
                    tally += n;
                }
            }
        }
        tally
    }
}

/// The body fields that hold a completion budget; at most one is normally present.
pub(crate) const BUDGET_KEYS: [&str; 3] =
    ["max_completion_tokens", "max_tokens", "max_output_tokens"];

fn tally_value_messages(messages: &Value, tally: &mut u64, est: &TokenEstimator) {
    let Some(messages) = messages.as_array() else {
        return;
    };
    for message in messages {
        *tally += MESSAGE_OVERHEAD;
        if let Some(content) = message.get("content") {
            tally_value_content(content, tally, est);
        }
    }
}

/// `input`/`prompt`: a string, an array of strings, or (responses) an array of message items.
fn tally_value_input(input: &Value, tally: &mut u64, est: &TokenEstimator) {
    match input {
        Value::String(s) => *tally += est.count_text(s),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => *tally += est.count_text(s),
                    Value::Object(obj) if obj.contains_key("content") => {
                        *tally += MESSAGE_OVERHEAD;
                        tally_value_content(&obj["content"], tally, est);
                    }
                    Value::Object(_) => tally_value_part(item, tally, est),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// A message's `content`: a string or an array of parts.
fn tally_value_content(content: &Value, tally: &mut u64, est: &TokenEstimator) {
    match content {
        Value::String(s) => *tally += est.count_text(s),
        Value::Array(parts) => {
            for part in parts {
                tally_value_part(part, tally, est);
            }
        }
        _ => {}
    }
}

/// One content part: `{type: "text"|"input_text"|"output_text", text}` or
/// `{type: "image_url", image_url: {url, detail}}` or `{type: "input_image", image_url, detail}`.
fn tally_value_part(part: &Value, tally: &mut u64, est: &TokenEstimator) {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    if is_image_part(kind) {
        let detail = part
            .get("detail")
            .or_else(|| part.get("image_url").and_then(|u| u.get("detail")))
            .and_then(Value::as_str);
        *tally += TokenEstimator::image_tokens(detail);
    } else if let Some(text) = part.get("text").and_then(Value::as_str) {
        *tally += est.count_text(text);
    }
}

/// Whether a content part's `type` names an image.
/// Byte ranges of the maximal runs of whitespace or of non-whitespace longer than [`LONG_RUN`].
fn long_runs(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        loop {
            let (start, first) = chars.next()?;
            let space = first.is_whitespace();
            let mut end = start + first.len_utf8();
            while let Some(&(at, c)) = chars.peek() {
                if c.is_whitespace() != space {
                    break;
                }
                end = at + c.len_utf8();
                chars.next();
            }
            if end - start > LONG_RUN {
                return Some((start, end));
            }
        }
    })
}

/// The largest char boundary of `text` at or below `at`.
fn char_floor(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

pub(crate) fn is_image_part(kind: &str) -> bool {
    matches!(kind, "image_url" | "input_image" | "image")
}

#[cfg(test)]
mod same_as_tiktoken;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(model: &str, body: Value, expect: u64) {
        let est = TokenEstimator::for_model(model);
        assert_eq!(est.estimate_json_body(&body), expect, "{model}: {body}");
    }

    #[test]
    fn picks_the_encoding_by_model_family() {
        for (model, enc) in [
            ("gpt-4o-mini", "o200k_base"),
            ("gpt-4o-2024-08-06", "o200k_base"),
            ("gpt-4.1-nano", "o200k_base"),
            ("gpt-5-mini", "o200k_base"),
            ("o1", "o200k_base"),
            ("o3-mini", "o200k_base"),
            ("o4-mini", "o200k_base"),
            ("chatgpt-4o-latest", "o200k_base"),
            ("ft:gpt-4o-mini-2024-07-18:org::abc", "o200k_base"),
            ("gpt-4-turbo", "cl100k_base"),
            ("gpt-3.5-turbo", "cl100k_base"),
            ("text-embedding-3-small", "cl100k_base"),
            ("", "cl100k_base"),
        ] {
            assert_eq!(
                TokenEstimator::for_model(model).encoding_name(),
                enc,
                "{model}"
            );
        }
    }

    #[test]
    fn counts_text_with_the_right_bpe() {
        let o200k = TokenEstimator::for_model("gpt-4o");
        let cl100k = TokenEstimator::for_model("gpt-4");
        assert_eq!(o200k.count_text(""), 0);
        assert_eq!(o200k.count_text("hello world"), 2);
        assert_eq!(cl100k.count_text("hello world"), 2);
        // Special-token text is ordinary text, not an error.
        assert!(o200k.count_text("<|endoftext|>") > 1);
    }

    #[test]
    fn a_long_run_is_counted_by_sample_within_two_percent_of_exact() {
        for model in ["gpt-4o-mini", "gpt-4-turbo"] {
            let est = TokenEstimator::for_model(model);
            let bpe = same_as_tiktoken::tiktoken(est);
            for run in [
                "a".repeat(3 * LONG_RUN),
                " ".repeat(3 * LONG_RUN),
                "é".repeat(LONG_RUN),
            ] {
                let text = format!("Describe this: {run} please.");
                let exact = bpe.count_ordinary(&text) as f64;
                let estimate = est.count_text(&text) as f64;
                assert!(
                    (estimate - exact).abs() <= exact * 0.02 + 2.0,
                    "{model}: estimate {estimate} vs exact {exact}"
                );
            }
            // Prose has no long run: exact.
            let prose = "The quick brown fox jumps over the lazy dog. ".repeat(2_000);
            assert_eq!(est.count_text(&prose), bpe.count_ordinary(&prose) as u64);
        }
    }

    #[test]
    fn long_runs_are_found_by_kind_and_length() {
        let text = format!(
            "ab {} cd{}",
            "x".repeat(LONG_RUN + 1),
            " ".repeat(LONG_RUN + 5)
        );
        let runs: Vec<_> = long_runs(&text).collect();
        assert_eq!(runs, [(3, 4 + LONG_RUN), (7 + LONG_RUN, text.len())]);
        assert_eq!(long_runs(&"y".repeat(LONG_RUN)).count(), 0);
    }

    #[test]
    fn image_cost_by_detail() {
        assert_eq!(TokenEstimator::image_tokens(Some("low")), 85);
        assert_eq!(TokenEstimator::image_tokens(Some("high")), 765);
        assert_eq!(TokenEstimator::image_tokens(Some("auto")), 765);
        assert_eq!(TokenEstimator::image_tokens(None), 765);
    }

    #[test]
    fn estimates_bodies() {
        // "hello world" is 2 tokens in both encodings.
        check(
            "gpt-4o",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]}),
            3 + 2,
        );
        check(
            "gpt-4o",
            json!({"model": "gpt-4o", "max_completion_tokens": 100, "messages": [
                {"role": "system", "content": "hello world"},
                {"role": "user", "content": [
                    {"type": "text", "text": "hello world"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]}
            ]}),
            3 + 2 + 3 + 2 + 85 + 765 + 100,
        );
        check(
            "gpt-4",
            json!({"model": "gpt-4", "max_tokens": 7, "messages": []}),
            7,
        );
        // Responses: input string, or message items with input_text / input_image parts.
        check(
            "gpt-5",
            json!({"model": "gpt-5", "input": "hello world", "max_output_tokens": 10}),
            12,
        );
        check(
            "gpt-5",
            json!({"model": "gpt-5", "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "hello world"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}
            ]}]}),
            3 + 2 + 85,
        );
        // Embeddings: input array of strings. Completions: prompt string.
        check(
            "text-embedding-3-small",
            json!({"input": ["hello world", "hello world"]}),
            4,
        );
        check(
            "gpt-3.5-turbo-instruct",
            json!({"prompt": "hello world"}),
            2,
        );
        // Odd shapes count as nothing rather than failing.
        check("gpt-4o", json!({"messages": "nope", "input": 3}), 0);
        check("gpt-4o", json!([1, 2]), 0);
    }
}
