//! `BatchRequestBuilder`: collects request lines, checks and normalises them, and splits them
//! into shards that each fit one Batch API input file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tokens::MESSAGE_OVERHEAD;
use crate::{
    BatchRequestLine, ChatCompletionRequest, ContentPart, Endpoint, Error, ImageGenerationRequest,
    Message, MessageContent, Normalization, ReasoningEffort, RequestBody, ResponseFormat, Result,
    ServiceTier, Stop, TokenEstimator, normalize_chat,
};

/// How big one shard (one uploaded input file, one batch) may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardLimits {
    /// Most request lines per shard. OpenAI allows 50,000. A limit of 0 acts as 1.
    pub max_lines: usize,
    /// Most bytes of JSONL per shard, newlines included. OpenAI allows 200 MB.
    pub max_bytes: u64,
    /// Most estimated tokens per shard, for the org's per-model enqueued-token limit.
    ///
    /// Each shard stays under it on its own; shards of one model submitted at the same time
    /// still add up, so submit them one after another.
    pub max_enqueued_tokens_per_model: Option<u64>,
}

impl ShardLimits {
    /// OpenAI's limits for one input file: 50,000 lines and 200 MB, no token budget.
    pub const OPENAI: ShardLimits = ShardLimits {
        max_lines: 50_000,
        max_bytes: 200 * 1024 * 1024,
        max_enqueued_tokens_per_model: None,
    };
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits::OPENAI
    }
}

/// The model and optional parameters of a chat request, everything but the messages.
///
/// Build it with struct update syntax:
/// `ChatOptions { model: "gpt-5-mini".into(), temperature: Some(0.3), ..Default::default() }`.
/// The fields mean what they mean on [`ChatCompletionRequest`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatOptions {
    /// Model id; must not be empty.
    pub model: String,
    /// See [`ChatCompletionRequest::response_format`].
    pub response_format: Option<ResponseFormat>,
    /// See [`ChatCompletionRequest::temperature`].
    pub temperature: Option<f64>,
    /// See [`ChatCompletionRequest::top_p`].
    pub top_p: Option<f64>,
    /// See [`ChatCompletionRequest::frequency_penalty`].
    pub frequency_penalty: Option<f64>,
    /// See [`ChatCompletionRequest::presence_penalty`].
    pub presence_penalty: Option<f64>,
    /// See [`ChatCompletionRequest::logprobs`].
    pub logprobs: Option<bool>,
    /// See [`ChatCompletionRequest::top_logprobs`].
    pub top_logprobs: Option<u32>,
    /// See [`ChatCompletionRequest::max_tokens`].
    pub max_tokens: Option<u32>,
    /// See [`ChatCompletionRequest::max_completion_tokens`].
    pub max_completion_tokens: Option<u32>,
    /// See [`ChatCompletionRequest::reasoning_effort`].
    pub reasoning_effort: Option<ReasoningEffort>,
    /// See [`ChatCompletionRequest::seed`].
    pub seed: Option<i64>,
    /// See [`ChatCompletionRequest::service_tier`].
    pub service_tier: Option<ServiceTier>,
    /// See [`ChatCompletionRequest::n`].
    pub n: Option<u32>,
    /// See [`ChatCompletionRequest::stop`].
    pub stop: Option<Stop>,
    /// See [`ChatCompletionRequest::user`].
    pub user: Option<String>,
    /// See [`ChatCompletionRequest::metadata`].
    pub metadata: Option<BTreeMap<String, String>>,
    /// Any other body fields, sent verbatim.
    pub extra: Map<String, Value>,
}

impl ChatOptions {
    /// Options naming only the model.
    pub fn new(model: impl Into<String>) -> Self {
        ChatOptions {
            model: model.into(),
            ..ChatOptions::default()
        }
    }

    /// The request these options make with `messages`.
    pub fn into_request(self, messages: Vec<Message>) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: self.model,
            messages,
            response_format: self.response_format,
            temperature: self.temperature,
            top_p: self.top_p,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            logprobs: self.logprobs,
            top_logprobs: self.top_logprobs,
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            reasoning_effort: self.reasoning_effort,
            seed: self.seed,
            service_tier: self.service_tier,
            n: self.n,
            stop: self.stop,
            user: self.user,
            metadata: self.metadata,
            extra: self.extra,
        }
    }
}

/// Estimated tokens a chat request counts against the enqueued-token limit: message text with
/// the model's BPE, a fixed overhead per message, a fixed cost per image by detail, and the
/// completion budget. Agrees with [`TokenEstimator::estimate_json_body`] on the same body.
pub fn estimate_chat(req: &ChatCompletionRequest) -> u64 {
    let est = TokenEstimator::for_model(&req.model);
    let mut tally = 0;
    for message in &req.messages {
        tally += MESSAGE_OVERHEAD;
        match &message.content {
            Some(MessageContent::Text(text)) => tally += est.count_text(text),
            Some(MessageContent::Parts(parts)) => {
                for part in parts {
                    tally += match part {
                        ContentPart::Text { text } => est.count_text(text),
                        ContentPart::ImageUrl { image_url } => {
                            TokenEstimator::image_tokens(image_url.detail.map(|d| d.as_str()))
                        }
                        _ => 0,
                    };
                }
            }
            None => {}
        }
    }
    tally
        + u64::from(req.max_completion_tokens.unwrap_or(0))
        + u64::from(req.max_tokens.unwrap_or(0))
}

/// Collects request lines and splits them into [`Shard`]s, one Batch API input file each.
///
/// Every line is checked when added (non-empty unique `custom_id`, a model, a body that fits
/// the endpoint, within the shard limits), chat bodies are normalised for their model, and the
/// line is serialised once, straight into the shard it will be sent in. A rejected line leaves
/// the builder unchanged.
#[derive(Debug, Default)]
pub struct BatchRequestBuilder {
    limits: ShardLimits,
    ids: HashSet<String>,
    groups: Vec<Group>,
    group_of: HashMap<(Endpoint, Option<String>), usize>,
    len: usize,
    /// Token estimates skipped (see [`BatchRequestBuilder::without_token_estimates`]).
    no_tokens: bool,
}

/// All lines for one (endpoint, model); the last draft is the one still filling up.
#[derive(Debug)]
struct Group {
    endpoint: Endpoint,
    model: Option<String>,
    drafts: Vec<Draft>,
}

#[derive(Debug, Default)]
struct Draft {
    lines: Vec<Box<str>>,
    custom_ids: Vec<String>,
    bytes: u64,
    tokens: u64,
}

impl BatchRequestBuilder {
    /// A builder with OpenAI's limits ([`ShardLimits::OPENAI`]).
    pub fn new() -> Self {
        BatchRequestBuilder::default()
    }

    /// A builder that splits at `limits`.
    pub fn with_limits(limits: ShardLimits) -> Self {
        BatchRequestBuilder {
            limits,
            ..BatchRequestBuilder::default()
        }
    }

    /// Skips the token estimate of each line (a BPE pass, the slowest part of adding one) when
    /// no token budget needs it: for a caller that checks and serialises requests but never
    /// reads [`Shard::estimated_tokens`], which is then 0. With
    /// [`ShardLimits::max_enqueued_tokens_per_model`] set, tokens are estimated all the same.
    #[must_use]
    pub fn without_token_estimates(mut self) -> Self {
        self.no_tokens = true;
        self
    }

    /// The limits shards are split at.
    pub fn limits(&self) -> ShardLimits {
        self.limits
    }

    /// Number of lines added so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no line has been added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a line with this `custom_id` has been added.
    pub fn contains(&self, custom_id: &str) -> bool {
        self.ids.contains(custom_id)
    }

    /// Add a `/v1/chat/completions` request, normalised for its model.
    ///
    /// Returns what normalisation changed (see [`normalize_chat`]), so the caller can log it.
    pub fn add_chat_completion_request(
        &mut self,
        custom_id: impl Into<String>,
        messages: Vec<Message>,
        options: ChatOptions,
    ) -> Result<Vec<Normalization>> {
        self.add_line(BatchRequestLine::chat(
            custom_id,
            options.into_request(messages),
        ))
    }

    /// Add a `/v1/images/generations` request.
    pub fn add_image_generation_request(
        &mut self,
        custom_id: impl Into<String>,
        request: ImageGenerationRequest,
    ) -> Result<()> {
        self.add_line(BatchRequestLine::image_generation(custom_id, request))
            .map(drop)
    }

    /// Add a request for an endpoint without a typed body (`/v1/responses`, embeddings, ...).
    ///
    /// Chat completions and image generations must use their typed methods.
    pub fn add_raw_request(
        &mut self,
        custom_id: impl Into<String>,
        endpoint: Endpoint,
        body: Map<String, Value>,
    ) -> Result<()> {
        self.add_line(BatchRequestLine::raw(custom_id, endpoint, body))
            .map(drop)
    }

    /// Add a ready-made line; chat bodies are normalised and the changes returned.
    pub fn add_line(&mut self, mut line: BatchRequestLine) -> Result<Vec<Normalization>> {
        self.check_line(&line)?;
        let changes = match &mut line.body {
            RequestBody::ChatCompletion(req) => normalize_chat(req),
            _ => Vec::new(),
        };
        let budget = self.limits.max_enqueued_tokens_per_model;
        let tokens = match &mut line.body {
            _ if self.no_tokens && budget.is_none() => 0,
            RequestBody::ChatCompletion(req) => estimate_chat(req),
            RequestBody::ImageGeneration(req) => {
                TokenEstimator::for_model(req.model.as_deref().unwrap_or(""))
                    .count_text(&req.prompt)
            }
            RequestBody::Raw(body) => estimate_raw(body),
        };
        let json = serde_json::to_string(&line).map_err(|source| Error::Serialize {
            what: format!("request line for custom_id '{}'", line.custom_id),
            source,
        })?;
        let bytes = json.len() as u64 + 1;
        if bytes > self.limits.max_bytes {
            return Err(Error::LineTooLarge {
                custom_id: line.custom_id,
                bytes,
                max_bytes: self.limits.max_bytes,
            });
        }
        if let Some(budget) = budget.filter(|&budget| tokens > budget) {
            return Err(Error::OverTokenBudget {
                custom_id: line.custom_id,
                tokens,
                budget,
            });
        }

        let model = line.body.model().map(str::to_owned);
        let draft = self.open_draft(line.url, model, bytes, tokens);
        draft.lines.push(json.into_boxed_str());
        draft.custom_ids.push(line.custom_id.clone());
        draft.bytes += bytes;
        draft.tokens += tokens;
        self.ids.insert(line.custom_id);
        self.len += 1;
        Ok(changes)
    }

    /// The checks a line must pass before it is normalised: a new non-empty `custom_id`, a body
    /// of its endpoint's kind, a model where one is required, and a non-empty prompt.
    fn check_line(&self, line: &BatchRequestLine) -> Result<()> {
        let custom_id = &line.custom_id;
        let invalid = |field, reason: &str| Error::InvalidRequest {
            custom_id: custom_id.clone(),
            field,
            reason: reason.to_owned(),
        };
        if custom_id.is_empty() {
            return Err(invalid("custom_id", "must not be empty"));
        }
        if self.ids.contains(custom_id) {
            return Err(Error::DuplicateCustomId {
                custom_id: custom_id.clone(),
            });
        }
        let body_fits = match line.body.typed_endpoint() {
            Some(endpoint) => endpoint == line.url,
            None => !RequestBody::has_typed_body(line.url),
        };
        if !body_fits {
            return Err(Error::BodyMismatch {
                custom_id: custom_id.clone(),
                url: line.url,
                body: line.body.kind(),
            });
        }
        match line.body.model() {
            Some("") => return Err(invalid("model", "must not be empty")),
            None if line.url.requires_model() => {
                return Err(invalid(
                    "model",
                    "is required: every line of a batch names the same model",
                ));
            }
            _ => {}
        }
        match &line.body {
            RequestBody::ChatCompletion(req) if req.messages.is_empty() => {
                return Err(invalid("messages", "must hold at least one message"));
            }
            RequestBody::ImageGeneration(req) if req.prompt.is_empty() => {
                return Err(invalid("prompt", "must not be empty"));
            }
            _ => {}
        }
        Ok(())
    }

    /// The draft the next line of (endpoint, model) goes into, starting a new one if the line
    /// would push the current one over a limit.
    #[allow(
        clippy::expect_used,
        reason = "the group's last draft exists: one was pushed just above when it had none"
    )]
    fn open_draft(
        &mut self,
        endpoint: Endpoint,
        model: Option<String>,
        bytes: u64,
        tokens: u64,
    ) -> &mut Draft {
        let next = self.groups.len();
        let index = *self
            .group_of
            .entry((endpoint, model.clone()))
            .or_insert(next);
        if index == next {
            self.groups.push(Group {
                endpoint,
                model,
                drafts: Vec::new(),
            });
        }
        let limits = self.limits;
        let drafts = &mut self.groups[index].drafts;
        let full = drafts.last().is_none_or(|d| {
            d.lines.len() >= limits.max_lines.max(1)
                || d.bytes + bytes > limits.max_bytes
                || limits
                    .max_enqueued_tokens_per_model
                    .is_some_and(|budget| d.tokens + tokens > budget)
        });
        if full {
            drafts.push(Draft::default());
        }
        drafts.last_mut().expect("a draft was just ensured")
    }

    /// Finish the batch: one shard per full draft, grouped by (endpoint, model) in the order
    /// each pair first appeared, lines in the order they were added.
    ///
    /// Shards are named `{name}-{index}`, counting from 0 over the whole batch. A builder with
    /// no lines gives a batch with no shards.
    pub fn build_batch(self, name: &str) -> Result<Batch> {
        if name.is_empty() {
            return Err(Error::InvalidBatchName {
                name: name.to_owned(),
                reason: "must not be empty",
            });
        }
        let mut shards = Vec::new();
        for group in self.groups {
            for draft in group.drafts {
                let index = shards.len();
                shards.push(Shard {
                    manifest: ShardManifest {
                        shard_name: format!("{name}-{index}"),
                        index,
                        endpoint: group.endpoint,
                        model: group.model.clone(),
                        custom_ids: draft.custom_ids,
                    },
                    lines: draft.lines,
                    bytes: draft.bytes,
                    estimated_tokens: draft.tokens,
                });
            }
        }
        Ok(Batch {
            name: name.to_owned(),
            shards,
        })
    }
}

/// The estimate for an untyped body, from its JSON. The map is moved into a `Value` and back
/// rather than cloned: raw bodies may carry megabytes of base64.
fn estimate_raw(body: &mut Map<String, Value>) -> u64 {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let est = TokenEstimator::for_model(model);
    let value = Value::Object(std::mem::take(body));
    let tokens = est.estimate_json_body(&value);
    if let Value::Object(map) = value {
        *body = map;
    }
    tokens
}

/// The output of [`BatchRequestBuilder::build_batch`]: shards ready to upload, one batch each.
#[derive(Debug)]
pub struct Batch {
    name: String,
    shards: Vec<Shard>,
}

impl Batch {
    /// The name given to `build_batch`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shards, in order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The shards, owned.
    pub fn into_shards(self) -> Vec<Shard> {
        self.shards
    }

    /// Total request lines over all shards.
    pub fn line_count(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }
}

/// One input file's worth of requests: one endpoint, one model, within the limits.
#[derive(Debug)]
pub struct Shard {
    manifest: ShardManifest,
    lines: Vec<Box<str>>,
    bytes: u64,
    estimated_tokens: u64,
}

impl Shard {
    /// `{batch name}-{index}`.
    pub fn name(&self) -> &str {
        &self.manifest.shard_name
    }

    /// Position in [`Batch::shards`].
    pub fn index(&self) -> usize {
        self.manifest.index
    }

    /// The endpoint every line targets.
    pub fn endpoint(&self) -> Endpoint {
        self.manifest.endpoint
    }

    /// The model every line names, if the endpoint takes one.
    pub fn model(&self) -> Option<&str> {
        self.manifest.model.as_deref()
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the shard has no lines (never true for shards from `build_batch`).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Size of the JSONL [`write_jsonl`](Self::write_jsonl) writes, in bytes.
    pub fn byte_size(&self) -> u64 {
        self.bytes
    }

    /// Sum of the lines' token estimates.
    pub fn estimated_tokens(&self) -> u64 {
        self.estimated_tokens
    }

    /// The ids of the lines, in file order, with the shard's name, endpoint and model.
    pub fn manifest(&self) -> &ShardManifest {
        &self.manifest
    }

    /// Each line's compact JSON, without the newline, in file order.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.lines.iter().map(|line| &**line)
    }

    /// Write the input file exactly as it is sent: one compact JSON line per request, each
    /// followed by `\n`, the last one included.
    pub fn write_jsonl(&self, w: impl Write) -> Result<()> {
        let mut w = BufWriter::new(w);
        for line in &self.lines {
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        Ok(())
    }
}

/// What is in a shard, kept after the shard itself is uploaded to map results back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// `{batch name}-{index}`.
    pub shard_name: String,
    /// Position in the batch.
    pub index: usize,
    /// The endpoint every line targets.
    pub endpoint: Endpoint,
    /// The model every line names, if any.
    pub model: Option<String>,
    /// The lines' `custom_id`s, in file order.
    pub custom_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ImageDetail;

    fn jsonl(shard: &Shard) -> String {
        let mut out = Vec::new();
        shard.write_jsonl(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn chat(builder: &mut BatchRequestBuilder, id: &str, model: &str, text: &str) {
        builder
            .add_chat_completion_request(id, vec![Message::user(text)], ChatOptions::new(model))
            .unwrap();
    }

    /// Shards as `(name, endpoint, model, ids)`.
    fn layout(batch: &Batch) -> Vec<(String, &'static str, String, Vec<String>)> {
        batch
            .shards()
            .iter()
            .map(|s| {
                (
                    s.name().to_owned(),
                    s.endpoint().as_str(),
                    s.model().unwrap_or("-").to_owned(),
                    s.manifest().custom_ids.clone(),
                )
            })
            .collect()
    }

    fn check_layout(batch: &Batch, expect: &[(&str, &str, &str, &[&str])]) {
        let expect: Vec<_> = expect
            .iter()
            .map(|(name, endpoint, model, ids)| {
                (
                    name.to_string(),
                    *endpoint,
                    model.to_string(),
                    ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(layout(batch), expect);
        for shard in batch.shards() {
            let text = jsonl(shard);
            assert_eq!(text.len() as u64, shard.byte_size(), "{}", shard.name());
            assert_eq!(text.lines().count(), shard.len());
        }
    }

    fn small(max_lines: usize, max_bytes: u64, tokens: Option<u64>) -> BatchRequestBuilder {
        BatchRequestBuilder::with_limits(ShardLimits {
            max_lines,
            max_bytes,
            max_enqueued_tokens_per_model: tokens,
        })
    }

    #[test]
    fn token_estimates_are_skipped_only_when_asked_and_no_budget_needs_them() {
        let total = |mut b: BatchRequestBuilder| {
            chat(&mut b, "a", "gpt-4o-mini", "a lighthouse in a storm");
            b.build_batch("t").unwrap().shards()[0].estimated_tokens()
        };
        let counted = total(BatchRequestBuilder::new());
        assert!(counted > 0);
        assert_eq!(
            total(BatchRequestBuilder::new().without_token_estimates()),
            0
        );
        // A budget needs the count: it is made all the same.
        let budgeted = small(10, 1 << 20, Some(1_000_000)).without_token_estimates();
        assert_eq!(total(budgeted), counted);
    }

    #[test]
    fn default_limits_are_openais() {
        let limits = BatchRequestBuilder::new().limits();
        assert_eq!(limits.max_lines, 50_000);
        assert_eq!(limits.max_bytes, 209_715_200);
        assert_eq!(limits.max_enqueued_tokens_per_model, None);
    }

    #[test]
    fn one_endpoint_and_model_per_shard_in_first_seen_order() {
        let mut b = BatchRequestBuilder::new();
        chat(&mut b, "a", "gpt-4o", "1");
        b.add_image_generation_request("img", ImageGenerationRequest::new("gpt-image-1", "cat"))
            .unwrap();
        chat(&mut b, "b", "gpt-5-mini", "2");
        chat(&mut b, "c", "gpt-4o", "3");
        b.add_raw_request(
            "emb",
            Endpoint::Embeddings,
            json!({"input": "x", "model": "gpt-4o"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        b.add_raw_request(
            "mod",
            Endpoint::Moderations,
            json!({"input": "x"}).as_object().unwrap().clone(),
        )
        .unwrap();
        chat(&mut b, "d", "gpt-5-mini", "4");
        assert_eq!(b.len(), 7);
        let batch = b.build_batch("run").unwrap();
        check_layout(
            &batch,
            &[
                ("run-0", "/v1/chat/completions", "gpt-4o", &["a", "c"]),
                ("run-1", "/v1/images/generations", "gpt-image-1", &["img"]),
                ("run-2", "/v1/chat/completions", "gpt-5-mini", &["b", "d"]),
                ("run-3", "/v1/embeddings", "gpt-4o", &["emb"]),
                ("run-4", "/v1/moderations", "-", &["mod"]),
            ],
        );
        assert_eq!(batch.line_count(), 7);
    }

    #[test]
    fn splits_by_line_count() {
        let mut b = small(2, u64::MAX, None);
        for id in ["a", "b", "c", "d", "e"] {
            chat(&mut b, id, "gpt-4o", "hi");
        }
        let batch = b.build_batch("n").unwrap();
        let m = "gpt-4o";
        let url = "/v1/chat/completions";
        check_layout(
            &batch,
            &[
                ("n-0", url, m, &["a", "b"]),
                ("n-1", url, m, &["c", "d"]),
                ("n-2", url, m, &["e"]),
            ],
        );
    }

    #[test]
    fn splits_by_bytes_counting_newlines() {
        // Every line below serialises to the same length; size the limit to hold exactly two.
        let line = BatchRequestLine::chat(
            "x",
            ChatCompletionRequest::new("gpt-4o", vec![Message::user("hi")]),
        );
        let per_line = serde_json::to_string(&line).unwrap().len() as u64 + 1;
        let mut b = small(100, 2 * per_line, None);
        for id in ["a", "b", "c"] {
            chat(&mut b, id, "gpt-4o", "hi");
        }
        let batch = b.build_batch("n").unwrap();
        let url = "/v1/chat/completions";
        check_layout(
            &batch,
            &[
                ("n-0", url, "gpt-4o", &["a", "b"]),
                ("n-1", url, "gpt-4o", &["c"]),
            ],
        );
        assert_eq!(batch.shards()[0].byte_size(), 2 * per_line);

        // One byte less and each line needs its own shard.
        let mut b = small(100, 2 * per_line - 1, None);
        for id in ["a", "b"] {
            chat(&mut b, id, "gpt-4o", "hi");
        }
        assert_eq!(b.build_batch("n").unwrap().shards().len(), 2);
    }

    #[test]
    fn splits_by_token_budget() {
        // "hello world" is 2 tokens + 3 of message overhead = 5 per request.
        let mut b = small(100, u64::MAX, Some(12));
        for id in ["a", "b", "c", "d", "e"] {
            chat(&mut b, id, "gpt-4o", "hello world");
        }
        let batch = b.build_batch("t").unwrap();
        let url = "/v1/chat/completions";
        check_layout(
            &batch,
            &[
                ("t-0", url, "gpt-4o", &["a", "b"]),
                ("t-1", url, "gpt-4o", &["c", "d"]),
                ("t-2", url, "gpt-4o", &["e"]),
            ],
        );
        let tokens: Vec<u64> = batch.shards().iter().map(Shard::estimated_tokens).collect();
        assert_eq!(tokens, [10, 10, 5]);
    }

    #[test]
    fn chat_estimate_counts_text_images_and_budget() {
        let mut req = ChatCompletionRequest::new(
            "gpt-4o",
            vec![
                Message::system("hello world"),
                Message::user_parts(vec![
                    ContentPart::text("hello world"),
                    ContentPart::image_url("data:image/png;base64,AAAA", ImageDetail::Low),
                    ContentPart::image_url("https://x/y.png", ImageDetail::High),
                    ContentPart::image_url("https://x/z.png", None),
                ]),
            ],
        );
        req.max_completion_tokens = Some(100);
        let expect = 3 + 2 + 3 + 2 + 85 + 765 + 765 + 100;
        assert_eq!(estimate_chat(&req), expect);
        // The validator estimates from JSON; both must agree.
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            TokenEstimator::for_model("gpt-4o").estimate_json_body(&json),
            expect
        );
    }

    // Long: a table of bad lines, one case per rule of `check_line` and the limits.
    #[test]
    fn rejects_bad_lines_naming_id_and_field() {
        let mut b = small(100, 400, Some(1000));
        chat(&mut b, "taken", "gpt-4o", "hi");
        let raw = |v: Value| v.as_object().unwrap().clone();
        let cases: Vec<(Result<Vec<Normalization>>, &str)> = vec![
            (
                b.add_line(BatchRequestLine::chat(
                    "",
                    ChatCompletionRequest::new("gpt-4o", vec![Message::user("hi")]),
                )),
                "request '': custom_id must not be empty",
            ),
            (
                b.add_line(BatchRequestLine::chat(
                    "taken",
                    ChatCompletionRequest::new("gpt-4o", vec![Message::user("hi")]),
                )),
                "request 'taken': custom_id is already used in this batch",
            ),
            (
                b.add_line(BatchRequestLine::chat(
                    "m",
                    ChatCompletionRequest::new("", vec![Message::user("hi")]),
                )),
                "request 'm': model must not be empty",
            ),
            (
                b.add_line(BatchRequestLine::chat(
                    "msgs",
                    ChatCompletionRequest::new("gpt-4o", vec![]),
                )),
                "request 'msgs': messages must hold at least one message",
            ),
            (
                b.add_raw_request(
                    "r",
                    Endpoint::ChatCompletions,
                    raw(json!({"model": "gpt-4o", "messages": []})),
                )
                .map(|()| vec![]),
                "request 'r': a raw body cannot be sent to /v1/chat/completions",
            ),
            (
                b.add_line(BatchRequestLine {
                    url: Endpoint::Embeddings,
                    ..BatchRequestLine::chat(
                        "wrong-url",
                        ChatCompletionRequest::new("gpt-4o", vec![Message::user("hi")]),
                    )
                }),
                "request 'wrong-url': a chat completion body cannot be sent to /v1/embeddings",
            ),
            (
                b.add_raw_request("nomodel", Endpoint::Responses, raw(json!({"input": "x"})))
                    .map(|()| vec![]),
                "request 'nomodel': model is required: every line of a batch names the same model",
            ),
            (
                b.add_image_generation_request(
                    "img",
                    ImageGenerationRequest {
                        model: None,
                        ..ImageGenerationRequest::new("", "a cat")
                    },
                )
                .map(|()| vec![]),
                "request 'img': model is required: every line of a batch names the same model",
            ),
            (
                b.add_image_generation_request(
                    "noprompt",
                    ImageGenerationRequest::new("gpt-image-1", ""),
                )
                .map(|()| vec![]),
                "request 'noprompt': prompt must not be empty",
            ),
            (
                b.add_line(BatchRequestLine::chat(
                    "big",
                    ChatCompletionRequest::new("gpt-4o", vec![Message::user("x".repeat(400))]),
                )),
                "request 'big': its line is 533 bytes, over the 400-byte shard limit",
            ),
            (
                b.add_line(BatchRequestLine::chat(
                    "tokens",
                    ChatCompletionRequest {
                        max_completion_tokens: Some(5000),
                        ..ChatCompletionRequest::new("gpt-4o", vec![Message::user("hi")])
                    },
                )),
                "request 'tokens': estimated at 5004 tokens, over the per-model budget of 1000",
            ),
        ];
        for (result, expect) in cases {
            match result {
                Ok(_) => panic!("accepted a line that should fail with: {expect}"),
                Err(err) => assert_eq!(err.to_string(), expect),
            }
        }
        // Nothing rejected was kept.
        assert_eq!(b.len(), 1);
        assert!(!b.contains("big"));
        let batch = b.build_batch("ok").unwrap();
        check_layout(
            &batch,
            &[("ok-0", "/v1/chat/completions", "gpt-4o", &["taken"])],
        );
    }

    #[test]
    fn empty_batch_name_is_an_error_and_an_empty_builder_gives_no_shards() {
        let err = BatchRequestBuilder::new().build_batch("").unwrap_err();
        assert_eq!(err.to_string(), "batch name '': must not be empty");
        let batch = BatchRequestBuilder::new().build_batch("b").unwrap();
        assert!(batch.shards().is_empty());
    }

    #[test]
    fn add_line_normalises_chat_bodies_too() {
        let mut b = BatchRequestBuilder::new();
        let changes = b
            .add_line(BatchRequestLine::chat(
                "x",
                ChatCompletionRequest {
                    temperature: Some(0.2),
                    ..ChatCompletionRequest::new("o3", vec![Message::user("hi")])
                },
            ))
            .unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "temperature");
        let batch = b.build_batch("b").unwrap();
        assert!(!jsonl(&batch.shards()[0]).contains("temperature"));
    }

    #[test]
    fn manifest_round_trips_for_persistence() {
        let mut b = BatchRequestBuilder::new();
        for id in ["z", "a", "m"] {
            chat(&mut b, id, "gpt-4o", "hi");
        }
        let batch = b.build_batch("p").unwrap();
        let manifest = batch.shards()[0].manifest();
        assert_eq!(manifest.custom_ids, ["z", "a", "m"]);
        let json = serde_json::to_string(manifest).unwrap();
        assert_eq!(
            json,
            r#"{"shard_name":"p-0","index":0,"endpoint":"/v1/chat/completions","model":"gpt-4o","custom_ids":["z","a","m"]}"#
        );
        let back: ShardManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, manifest);
    }

    // --- snapshots of exactly what we send ---

    /// The JSONL of every shard, each under a header naming it.
    fn dump(batch: &Batch) -> String {
        let mut out = String::new();
        for shard in batch.shards() {
            out.push_str(&format!(
                "--- {} ({} {}, {} lines, {} bytes, ~{} tokens)\n",
                shard.name(),
                shard.endpoint(),
                shard.model().unwrap_or("-"),
                shard.len(),
                shard.byte_size(),
                shard.estimated_tokens(),
            ));
            out.push_str(&jsonl(shard));
        }
        out
    }

    #[test]
    fn snapshot_chat_with_image_part() {
        let mut b = BatchRequestBuilder::new();
        let changes = b
            .add_chat_completion_request(
                "vision-compare-001",
                vec![
                    Message::system("You compare two images against a prompt."),
                    Message::user_parts(vec![
                        ContentPart::text("Which image matches 'a red fox in snow' better?"),
                        ContentPart::image_url(
                            "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
                            ImageDetail::Low,
                        ),
                        ContentPart::image_url("https://example.com/b.png", ImageDetail::High),
                    ]),
                ],
                ChatOptions {
                    model: "gpt-4o-mini".into(),
                    temperature: Some(0.2),
                    max_tokens: Some(300),
                    response_format: Some(ResponseFormat::json_schema(
                        "choice",
                        // Keys in alphabetical order, so the snapshot holds whether or not
                        // serde_json's `preserve_order` feature is on.
                        json!({
                            "additionalProperties": false,
                            "properties": {"winner": {"enum": ["A", "B"], "type": "string"}},
                            "required": ["winner"],
                            "type": "object"
                        }),
                    )),
                    ..ChatOptions::default()
                },
            )
            .unwrap();
        assert!(changes.is_empty());
        insta::assert_snapshot!(dump(&b.build_batch("vision").unwrap()));
    }

    #[test]
    fn snapshot_gpt_5_after_normalisation() {
        let mut b = BatchRequestBuilder::new();
        let changes = b
            .add_chat_completion_request(
                "critique-001",
                vec![
                    Message::developer("You critique image prompts."),
                    Message::user("Prompt: 'a lighthouse at dusk'. Suggest one improvement."),
                ],
                ChatOptions {
                    model: "gpt-5-mini".into(),
                    temperature: Some(0.3),
                    top_p: Some(0.95),
                    presence_penalty: Some(0.1),
                    max_tokens: Some(800),
                    reasoning_effort: Some(ReasoningEffort::Low),
                    seed: Some(7),
                    metadata: Some(BTreeMap::from([("stage".into(), "critique".into())])),
                    ..ChatOptions::default()
                },
            )
            .unwrap();
        let mut report = String::from("--- normalisations\n");
        for change in &changes {
            report.push_str(&format!("{change}\n"));
        }
        report.push_str(&dump(&b.build_batch("critique").unwrap()));
        insta::assert_snapshot!(report);
    }

    #[test]
    fn snapshot_image_generation() {
        let mut b = BatchRequestBuilder::new();
        let mut request =
            ImageGenerationRequest::new("gpt-image-1", "A red fox in fresh snow, dawn light");
        request.size = Some("1024x1024".into());
        request.quality = Some(crate::ImageQuality::Medium);
        request.output_format = Some(crate::ImageOutputFormat::Png);
        request.n = Some(1);
        b.add_image_generation_request("gen-0-0", request).unwrap();
        insta::assert_snapshot!(dump(&b.build_batch("images").unwrap()));
    }

    #[test]
    fn snapshot_split_into_shards() {
        let mut b = small(2, 400, None);
        for i in 0..3 {
            chat(
                &mut b,
                &format!("mini-{i}"),
                "gpt-4o-mini",
                &format!("candidate {i}"),
            );
        }
        chat(&mut b, "five-0", "gpt-5", "rank them");
        b.add_image_generation_request("img-0", ImageGenerationRequest::new("gpt-image-1", "fox"))
            .unwrap();
        // Long enough that two of them do not fit in 400 bytes.
        let long = "a detailed prompt ".repeat(10);
        chat(&mut b, "five-1", "gpt-5", &long);
        chat(&mut b, "five-2", "gpt-5", &long);
        // Keys in alphabetical order, as above.
        b.add_raw_request(
            "resp-0",
            Endpoint::Responses,
            json!({"input": "hello", "model": "gpt-5"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        insta::assert_snapshot!(dump(&b.build_batch("split").unwrap()));
    }
}
