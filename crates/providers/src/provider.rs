//! `OpenAiProvider`: the one implementation of the provider traits, over any [`Transport`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};
use serde_json::Value;

use crate::codec;
use crate::{
    CallMeta, ChatReply, ChatRequest, CompareRequest, Comparison, GeneratedImage, ImageProvider,
    ImageRequest, JsonReply, JsonRequest, JudgeRequest, Judgement, LlmProvider, NoBarrier,
    Operation, Result, StageBarrier, Tier, VisionJsonRequest, VisionProvider,
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

/// The LLM, image and vision provider over one transport. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    transport: Arc<dyn Transport>,
    models: RoleModels,
}

impl OpenAiProvider {
    /// A provider sending every call through `transport` with `models`.
    pub fn new(transport: Arc<dyn Transport>, models: RoleModels) -> OpenAiProvider {
        OpenAiProvider { transport, models }
    }

    /// The tier its transport normally uses.
    pub fn tier(&self) -> Tier {
        self.transport.tier()
    }

    /// The models it uses.
    pub fn models(&self) -> &RoleModels {
        &self.models
    }

    async fn send_chat(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<(Value, CallMeta)> {
        let model = body.model.clone();
        let d = self.transport.chat(op, key, body).await?;
        Ok(meta(d, &model))
    }
}

fn meta(d: Delivered, model: &str) -> (Value, CallMeta) {
    let meta = CallMeta {
        tier: d.tier,
        fallback_from: d.fallback_from,
        model: codec::model_of(&d.body, model),
        usage: codec::usage_of(&d.body),
    };
    (d.body, meta)
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply> {
        let body = codec::chat_body(&self.models.llm, &request);
        let (body, meta) = self
            .send_chat(request.operation, request.key.as_deref(), body)
            .await?;
        let (text, finish_reason) = codec::read_chat(&body)?;
        Ok(ChatReply {
            text,
            finish_reason,
            meta,
        })
    }

    async fn json(&self, request: JsonRequest) -> Result<JsonReply> {
        let body = codec::json_body(&self.models.llm, &request);
        let (body, meta) = self
            .send_chat(request.chat.operation, request.chat.key.as_deref(), body)
            .await?;
        Ok(JsonReply {
            value: codec::read_json(&body)?,
            meta,
        })
    }
}

#[async_trait]
impl ImageProvider for OpenAiProvider {
    async fn generate(&self, request: ImageRequest) -> Result<GeneratedImage> {
        let body = codec::image_body(&self.models.image, &request)?;
        let d = self
            .transport
            .image(Operation::Render, request.key.as_deref(), body)
            .await?;
        let (body, meta) = meta(d, &self.models.image);
        let (png, revised_prompt) = codec::read_image(&body)?;
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
        let body = codec::judge_body(&self.models.vision, &request)?;
        let (body, meta) = (self.send_chat(Operation::Judge, request.key.as_deref(), body)).await?;
        let (alignment, aesthetic, reasons, strengths, weaknesses) = codec::read_judgement(&body)?;
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
        let body = codec::compare_body(&self.models.vision, &request)?;
        let (body, meta) = (self.send_chat(Operation::Judge, request.key.as_deref(), body)).await?;
        let (winner, ranks_a, ranks_b, reasons, strengths, weaknesses) =
            codec::read_comparison(&body)?;
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
        let (body, meta) =
            (self.send_chat(request.chat.operation, request.chat.key.as_deref(), body)).await?;
        Ok(JsonReply {
            value: codec::read_json(&body)?,
            meta,
        })
    }
}
