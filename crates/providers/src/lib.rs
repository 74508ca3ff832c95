//! Provider traits for the LLM, image and vision calls of the beam search; their standard,
//! flex, batch and simulated tiers (the last with the `simulated` feature); the stage barrier
//! of each tier; and the factory that picks a tier per operation from configuration.
//!
//! ```
//! use providers::{ChatRequest, LlmProvider, Operation, OpenAiProvider, RoleModels, Tier};
//! use providers::transport::SimulatedTransport;
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let llm = OpenAiProvider::new(Arc::new(SimulatedTransport::new(7)), RoleModels::default());
//! let reply = llm
//!     .chat(ChatRequest::new(Operation::Expand, "Idea: a lighthouse in a storm"))
//!     .await?;
//! assert!(reply.text.contains("WHAT:"));
//! assert_eq!(reply.meta.tier, Tier::Simulated);
//! # Ok::<(), providers::ProviderError>(())
//! # }).unwrap();
//! ```
//!
//! Every tier sends the same bodies, written by [`codec`]; tiers differ only in their
//! [`Transport`]. See `docs/providers.md`.

mod barrier;
mod batch;
pub mod cache;
pub mod codec;
pub mod db;
mod error;
mod factory;
mod provider;
pub mod settings;
pub mod stack;
mod tier;
mod traits;
pub mod transport;
mod types;

pub use barrier::{NoBarrier, StageBarrier};
pub use batch::BatchTransport;
pub use batch_client::now_ms;
pub use cache::RequestCache;
pub use db::{Database, Dialect};
pub use error::{ProviderError, Result};
pub use factory::{ProviderFactory, Providers};
pub use provider::{Delivered, OpenAiProvider, RoleModels, Transport};
pub use settings::{
    ApiToken, BatchMode, BatchSettings, CONFIG_FILE, ConfigError, DataSettings, DatabaseUrl,
    OpenAiSettings, ProvidersConfig, SETTINGS, ServerSettings, Settings,
};
pub use stack::{BatchInfo, BatchLine, SessionWait, Stack, StackError, StackOptions};
pub use tier::{Operation, Role, Tier, UnknownTier};
pub use traits::{ImageProvider, LlmProvider, VisionProvider};
#[cfg(feature = "mocks")]
pub use traits::{MockImageProvider, MockLlmProvider, MockVisionProvider};
pub use types::{
    CallMeta, ChatReply, ChatRequest, CompareRequest, Comparison, GeneratedImage, ImageRequest,
    JsonReply, JsonRequest, JudgeRequest, Judgement, Ranks, Side, VisionJsonRequest,
};
