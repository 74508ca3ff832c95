//! `OpenAiProvider`: the one implementation of the provider traits, over any [`Transport`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};
use serde_json::Value;

use crate::cache::{self, CacheKey, RequestCache};
use crate::codec;
use crate::{
    CallMeta, ChatReply, ChatRequest, CompareRequest, Comparison, GeneratedImage, ImageProvider,
    ImageRequest, JsonReply, JsonRequest, JudgeRequest, Judgement, LlmProvider, NoBarrier,
    Operation, ProviderError, Result, StageBarrier, Tier, VisionJsonRequest, VisionProvider,
};

/// A response body as a tier delivered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// The response body of a successful (200) call.
    pub body: Value,
    /// The tier that carried the call.
    pub tier: Tier,
    /// The tier first tried, when the call fell back from it.
    pub fallback_from: Option<Tier>,
}

/// How request bodies reach a model: the only thing that differs between tiers.
///
/// An implementation sends the body it is given unchanged, apart from what its tier is (flex
/// sets `service_tier`), and returns the body of a successful answer; an error answer is an
/// `Err`.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// The tier this transport normally uses.
    fn tier(&self) -> Tier;

    /// Sends a chat completion. `key`, when given, names the call for good: a tier that can
    /// outlive the process (batch) sends a keyed call at most once and, asked again under the
    /// same key, answers with the first call's result.
    async fn chat(
        &self,
        operation: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered>;

    /// Sends an image generation (`key` as for [`Transport::chat`]).
    async fn image(
        &self,
        operation: Operation,
        key: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered>;

    /// The stage barrier of this tier: [`NoBarrier`] for a tier that sends each call at once.
    fn barrier(&self) -> Arc<dyn StageBarrier> {
        Arc::new(NoBarrier)
    }
}

/// The models each role uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleModels {
    /// The prompt writer (expand, combine, critique, refine).
    pub llm: String,
    /// The judge.
    pub vision: String,
    /// The image generator.
    pub image: String,
}

impl Default for RoleModels {
    fn default() -> Self {
        RoleModels {
            llm: "gpt-4o-mini".to_owned(),
            vision: "gpt-4o-mini".to_owned(),
            image: "gpt-image-1".to_owned(),
        }
    }
}

/// The LLM, image and vision provider over one transport, and the request cache when it has
/// one. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    transport: Arc<dyn Transport>,
    models: RoleModels,
    cache: Option<RequestCache>,
}

/// A body on its way to a transport.
#[allow(
    clippy::large_enum_variant,
    reason = "one lives for one call and moves into the transport: boxing buys nothing"
)]
enum Body {
    Chat(ChatCompletionRequest),
    Image(ImageGenerationRequest),
}

/// What makes a request repeatable: the call's seed (sent or not) and its temperature.
#[derive(Debug, Clone, Copy)]
struct Replay {
    seed: Option<i64>,
    temperature: Option<f64>,
}

impl Replay {
    fn of(chat: &ChatRequest) -> Replay {
        Replay {
            seed: chat.seed,
            temperature: chat.temperature,
        }
    }

    fn seed(seed: Option<i64>) -> Replay {
        Replay {
            seed,
            temperature: None,
        }
    }
}

impl OpenAiProvider {
    /// A provider sending every call through `transport` with `models`.
    pub fn new(transport: Arc<dyn Transport>, models: RoleModels) -> OpenAiProvider {
        OpenAiProvider {
            transport,
            models,
            cache: None,
        }
    }

    /// The same provider answering deterministic requests from `cache` when it can, and
    /// storing each fresh successful answer in it (see [`crate::cache`]).
    pub fn with_cache(mut self, cache: RequestCache) -> OpenAiProvider {
        self.cache = Some(cache);
        self
    }

    /// The tier its transport normally uses.
    pub fn tier(&self) -> Tier {
        self.transport.tier()
    }

    /// The models it uses.
    pub fn models(&self) -> &RoleModels {
        &self.models
    }

    /// A chat call whose answer is a JSON object (the LLM's and the vision model's).
    async fn call_json(
        &self,
        chat: &ChatRequest,
        body: ChatCompletionRequest,
    ) -> Result<JsonReply> {
        let key = chat.key.as_deref();
        let replay = Replay::of(chat);
        let (value, meta) = self
            .call(
                chat.operation,
                key,
                Body::Chat(body),
                replay,
                codec::read_json,
            )
            .await?;
        Ok(JsonReply { value, meta })
    }

    /// Answers `body` from the cache when it holds the answer, else sends it; `read` says what
    /// the answer means, and only an answer it reads is stored.
    async fn call<T>(
        &self,
        op: Operation,
        key: Option<&str>,
        body: Body,
        replay: Replay,
        read: impl Fn(&Value) -> Result<T>,
    ) -> Result<(T, CallMeta)> {
        let on = self.cache.is_some();
        let (endpoint, model, json) = match &body {
            Body::Chat(b) => (
                cache::CHAT,
                b.model.clone(),
                on.then(|| serde_json::to_value(b)),
            ),
            Body::Image(b) => (
                cache::IMAGES,
                b.model.clone().unwrap_or_else(|| self.models.image.clone()),
                on.then(|| serde_json::to_value(b)),
            ),
        };
        let cache_key = match json {
            Some(json) => {
                let json = json.map_err(|e| ProviderError::InvalidRequest(e.to_string()))?;
                CacheKey::of(endpoint, &json, replay.seed, replay.temperature)
            }
            None => None,
        };
        if let (Some(cache), Some(k)) = (&self.cache, &cache_key)
            && let Some(hit) = cache.get(k).await?
            && let Ok(value) = read(&hit.body)
        {
            let meta = CallMeta {
                tier: hit.tier,
                fallback_from: None,
                model: codec::model_of(&hit.body, &model),
                usage: codec::usage_of(&hit.body),
                cached: true,
            };
            return Ok((value, meta));
        }
        let d = match body {
            Body::Chat(b) => self.transport.chat(op, key, b).await?,
            Body::Image(b) => self.transport.image(op, key, b).await?,
        };
        let value = read(&d.body)?;
        if let (Some(cache), Some(k)) = (&self.cache, &cache_key)
            && let Err(e) = cache.put(k, &d).await
        {
            // The answer is paid for and good: a cache that cannot keep it costs a repeat
            // later, not this call.
            tracing::warn!(operation = %op, error = %e, "the request cache did not store an answer");
        }
        Ok((value, meta(d, &model)))
    }
}

fn meta(d: Delivered, model: &str) -> CallMeta {
    CallMeta {
        tier: d.tier,
        fallback_from: d.fallback_from,
        model: codec::model_of(&d.body, model),
        usage: codec::usage_of(&d.body),
        cached: false,
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply> {
        let body = Body::Chat(codec::chat_body(&self.models.llm, &request));
        let (key, replay) = (request.key.as_deref(), Replay::of(&request));
        let ((text, finish_reason), meta) = self
            .call(request.operation, key, body, replay, codec::read_chat)
            .await?;
        Ok(ChatReply {
            text,
            finish_reason,
            meta,
        })
    }

    async fn json(&self, request: JsonRequest) -> Result<JsonReply> {
        let body = codec::json_body(&self.models.llm, &request);
        self.call_json(&request.chat, body).await
    }
}

#[async_trait]
impl ImageProvider for OpenAiProvider {
    async fn generate(&self, request: ImageRequest) -> Result<GeneratedImage> {
        let body = Body::Image(codec::image_body(&self.models.image, &request)?);
        let replay = Replay::seed(request.seed);
        let ((png, revised_prompt), meta) = self
            .call(
                Operation::Render,
                request.key.as_deref(),
                body,
                replay,
                codec::read_image,
            )
            .await?;
        Ok(GeneratedImage {
            png,
            revised_prompt,
            meta,
        })
    }
}

#[async_trait]
impl VisionProvider for OpenAiProvider {
    async fn judge(&self, request: JudgeRequest) -> Result<Judgement> {
        let body = Body::Chat(codec::judge_body(&self.models.vision, &request)?);
        let replay = Replay::seed(request.seed);
        let ((alignment, aesthetic, reasons, strengths, weaknesses), meta) = self
            .call(
                Operation::Judge,
                request.key.as_deref(),
                body,
                replay,
                codec::read_judgement,
            )
            .await?;
        Ok(Judgement {
            alignment,
            aesthetic,
            total: request.alpha * alignment + (1.0 - request.alpha) * aesthetic,
            reasons,
            strengths,
            weaknesses,
            meta,
        })
    }

    async fn compare(&self, request: CompareRequest) -> Result<Comparison> {
        let body = Body::Chat(codec::compare_body(&self.models.vision, &request)?);
        let replay = Replay::seed(request.seed);
        let ((winner, ranks_a, ranks_b, reasons, strengths, weaknesses), meta) = self
            .call(
                Operation::Judge,
                request.key.as_deref(),
                body,
                replay,
                codec::read_comparison,
            )
            .await?;
        Ok(Comparison {
            winner,
            ranks_a,
            ranks_b,
            reasons,
            strengths,
            weaknesses,
            meta,
        })
    }

    async fn ask(&self, request: VisionJsonRequest) -> Result<JsonReply> {
        let body = codec::vision_json_body(&self.models.vision, &request)?;
        self.call_json(&request.chat, body).await
    }
}
