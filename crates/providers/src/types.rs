//! Requests and results in the pipeline's own words, with the usage and tier of every call.

use batch_format::{ImageDetail, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Operation, Tier};

/// What every result carries besides its content: who answered, how, and at what cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallMeta {
    /// The tier that actually carried the call (after any fallback).
    pub tier: Tier,
    /// The tier first tried when it was not the one used (flex or batch that fell back).
    pub fallback_from: Option<Tier>,
    /// The model named in the response (a resolved snapshot when the API reports one).
    pub model: String,
    /// Tokens billed (for a cached answer: what its first call was billed).
    pub usage: Usage,
    /// Whether the answer came from the request cache: nothing was sent, nothing billed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

/// A chat call: a system instruction and a user message, written by the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The pipeline step the call belongs to (picks the tier and groups batches).
    pub operation: Operation,
    /// The system instruction, if any.
    pub system: Option<String>,
    /// The user message (the simulated writer reads its `Label: value` lines).
    pub user: String,
    /// Sampling temperature; dropped for reasoning models that reject it.
    pub temperature: Option<f64>,
    /// The most tokens the answer may take.
    pub max_output_tokens: Option<u32>,
    /// A seed, so that otherwise identical calls can differ (candidate or vote index).
    pub seed: Option<i64>,
    /// Names the call for good (see [`Transport::chat`](crate::Transport::chat)): the batch
    /// tier sends a keyed call at most once, and answers a repeat from its database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ChatRequest {
    /// A request with only a user message.
    pub fn new(operation: Operation, user: impl Into<String>) -> ChatRequest {
        ChatRequest {
            operation,
            system: None,
            user: user.into(),
            temperature: None,
            max_output_tokens: None,
            seed: None,
            key: None,
        }
    }

    /// Sets the system instruction.
    pub fn with_system(mut self, system: impl Into<String>) -> ChatRequest {
        self.system = Some(system.into());
        self
    }

    /// Sets the temperature.
    pub fn with_temperature(mut self, temperature: f64) -> ChatRequest {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: i64) -> ChatRequest {
        self.seed = Some(seed);
        self
    }

    /// Sets the most tokens the answer may take.
    pub fn with_max_output_tokens(mut self, max: u32) -> ChatRequest {
        self.max_output_tokens = Some(max);
        self
    }

    /// Names the call for good (see [`ChatRequest::key`]).
    pub fn with_key(mut self, key: impl Into<String>) -> ChatRequest {
        self.key = Some(key.into());
        self
    }
}

/// The text a chat call returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatReply {
    /// The assistant's text.
    pub text: String,
    /// `stop`, or `length` when the answer was cut at `max_output_tokens`.
    pub finish_reason: Option<String>,
    /// Tier, model and usage.
    pub meta: CallMeta,
}

/// A chat call whose answer must be JSON matching a schema (Structured Outputs, strict).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonRequest {
    /// The conversation.
    pub chat: ChatRequest,
    /// The schema's name: a-z, A-Z, 0-9, `_` and `-`, at most 64 characters.
    pub schema_name: String,
    /// The JSON Schema (root an object, `additionalProperties: false`, all properties required).
    pub schema: Value,
}

/// The JSON a structured call returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonReply {
    /// The parsed answer.
    pub value: Value,
    /// Tier, model and usage.
    pub meta: CallMeta,
}

/// A question about images whose answer must be JSON matching a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionJsonRequest {
    /// The conversation; the images come before the user message's text.
    pub chat: ChatRequest,
    /// The images, as PNG or JPEG bytes, in the order they are shown.
    #[serde(skip)]
    pub images: Vec<Vec<u8>>,
    /// The detail level the model looks at them with (the model's `auto` when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
    /// The schema's name.
    pub schema_name: String,
    /// The JSON Schema (root an object, `additionalProperties: false`, all properties required).
    pub schema: Value,
}

/// An image to render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRequest {
    /// The combined prompt.
    pub prompt: String,
    /// `1024x1024` and the like; the model's default when `None`.
    pub size: Option<String>,
    /// `low`, `medium`, `high`, `standard`, `hd` or `auto`; the model's default when `None`.
    pub quality: Option<String>,
    /// The call's replay seed: the Images API takes no seed and the judge's body carries
    /// none, so it is not sent; it makes the call deterministic for the request cache (the
    /// same seed, the same answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Names the call for good (see [`Transport::chat`](crate::Transport::chat)): the batch
    /// tier sends a keyed call at most once, and answers a repeat from its database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ImageRequest {
    /// A request for `prompt` at the model's default size and quality.
    pub fn new(prompt: impl Into<String>) -> ImageRequest {
        ImageRequest {
            prompt: prompt.into(),
            size: None,
            quality: None,
            seed: None,
            key: None,
        }
    }

    /// Names the call for good (see [`ImageRequest::key`]).
    pub fn with_key(mut self, key: impl Into<String>) -> ImageRequest {
        self.key = Some(key.into());
        self
    }

    /// Sets the replay seed (see [`ImageRequest::seed`]).
    pub fn with_seed(mut self, seed: i64) -> ImageRequest {
        self.seed = Some(seed);
        self
    }
}

/// A rendered image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratedImage {
    /// The PNG bytes.
    #[serde(skip)]
    pub png: Vec<u8>,
    /// The prompt as the model rewrote it, when it says (DALL·E 3 does; GPT image models
    /// do not).
    pub revised_prompt: Option<String>,
    /// Tier, model and usage.
    pub meta: CallMeta,
}

/// Judge one image for an idea.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRequest {
    /// The user's idea.
    pub idea: String,
    /// The image, as PNG or JPEG bytes.
    #[serde(skip)]
    pub image: Vec<u8>,
    /// The detail level the judge looks at it with (the model's `auto` when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
    /// Weight of alignment in the total (`total = alpha * alignment + (1 - alpha) * aesthetic`).
    pub alpha: f64,
    /// The vote's index within an ensemble, so that votes are independent.
    pub vote: u32,
    /// The call's replay seed: the Images API takes no seed and the judge's body carries
    /// none, so it is not sent; it makes the call deterministic for the request cache (the
    /// same seed, the same answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Names the call for good (see [`Transport::chat`](crate::Transport::chat)): the batch
    /// tier sends a keyed call at most once, and answers a repeat from its database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// How well one image does: scores on 0-10 with the judge's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// Does it show what the user asked for (0-10).
    pub alignment: f64,
    /// Is it good to look at (0-10).
    pub aesthetic: f64,
    /// `alpha * alignment + (1 - alpha) * aesthetic`, computed here from the request's alpha.
    pub total: f64,
    /// Why.
    pub reasons: String,
    /// What works.
    pub strengths: Vec<String>,
    /// What does not.
    pub weaknesses: Vec<String>,
    /// Tier, model and usage.
    pub meta: CallMeta,
}

/// Compare two images for an idea.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRequest {
    /// The user's idea.
    pub idea: String,
    /// Image A (shown first), as PNG or JPEG bytes.
    #[serde(skip)]
    pub image_a: Vec<u8>,
    /// Image B, as PNG or JPEG bytes.
    #[serde(skip)]
    pub image_b: Vec<u8>,
    /// The detail level the judge looks at them with (the model's `auto` when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
    /// Weight of alignment in the overall winner.
    pub alpha: f64,
    /// The vote's index within an ensemble.
    pub vote: u32,
    /// The call's replay seed: the Images API takes no seed and the judge's body carries
    /// none, so it is not sent; it makes the call deterministic for the request cache (the
    /// same seed, the same answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Names the call for good (see [`Transport::chat`](crate::Transport::chat)): the batch
    /// tier sends a keyed call at most once, and answers a repeat from its database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// One of the two images of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The image shown first.
    A,
    /// The image shown second.
    B,
}

impl Side {
    /// The other image.
    pub const fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Ranks of one image in a comparison: 1 is better, 2 worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ranks {
    /// Overall rank.
    pub total: u8,
    /// Rank on alignment.
    pub alignment: u8,
    /// Rank on aesthetics.
    pub aesthetic: u8,
}

/// Which of two images is better, and by how much on each dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The overall winner.
    pub winner: Side,
    /// Ranks of image A.
    pub ranks_a: Ranks,
    /// Ranks of image B.
    pub ranks_b: Ranks,
    /// Why.
    pub reasons: String,
    /// What the winner does well.
    pub strengths: Vec<String>,
    /// What the loser lacks.
    pub weaknesses: Vec<String>,
    /// Tier, model and usage.
    pub meta: CallMeta,
}
