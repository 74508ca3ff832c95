//! What the pipeline asks of models, whatever tier carries the call.

use async_trait::async_trait;

use crate::{
    ChatReply, ChatRequest, CompareRequest, Comparison, GeneratedImage, ImageRequest, JsonReply,
    JsonRequest, JudgeRequest, Judgement, Result, VisionJsonRequest,
};

/// The prompt writer: expand, combine, critique and refine are chat calls it answers.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// A chat call returning text.
    async fn chat(&self, request: ChatRequest) -> Result<ChatReply>;

    /// A chat call whose answer is JSON matching `request.schema`.
    async fn json(&self, request: JsonRequest) -> Result<JsonReply>;
}

/// The image generator.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ImageProvider: Send + Sync {
    /// Renders a prompt into one PNG.
    async fn generate(&self, request: ImageRequest) -> Result<GeneratedImage>;
}

/// The judge.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VisionProvider: Send + Sync {
    /// Scores one image for an idea (one vote).
    async fn judge(&self, request: JudgeRequest) -> Result<Judgement>;

    /// Compares two images for an idea (one vote; the caller swaps A/B between votes).
    async fn compare(&self, request: CompareRequest) -> Result<Comparison>;

    /// Any question about images whose answer is JSON matching `request.schema` (the
    /// `judge_refines` plan's judge that also critiques and proposes children).
    async fn ask(&self, request: VisionJsonRequest) -> Result<JsonReply>;
}
