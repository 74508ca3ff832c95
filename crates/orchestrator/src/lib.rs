//! `BeamSearch`, `ImageRanker`, `CritiqueGenerator`, cost tracking and checkpoints: the
//! batch-aware image-prompt beam search.
//!
//! A search runs a [`Plan`]'s stages in order; every stage sends all its calls at once on the
//! tier its operation is routed to ([`Engines`]), passes that tier's stage barrier
//! ([`providers::StageBarrier`]: the batch tier sends once every keyed call is stored), and
//! checkpoints each answer as it arrives ([`CheckpointStore`], in SQLite [`SessionStore`]), so
//! an interrupted session resumes without sending any call twice. See `docs/orchestrator.md`.
//!
//! ```
//! use orchestrator::{BeamSearch, Backend, Engines, JudgingMode, SearchParams, SessionStore};
//! use providers::{OpenAiProvider, RoleModels, Tier};
//! use providers::transport::SimulatedTransport;
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let provider = OpenAiProvider::new(Arc::new(SimulatedTransport::new(7)), RoleModels::default());
//! let backend = Backend {
//!     llm: Arc::new(provider.clone()),
//!     image: Arc::new(provider.clone()),
//!     vision: Arc::new(provider),
//! };
//! let mut params = SearchParams::new("a lighthouse in a storm");
//! (params.n, params.m, params.iterations, params.judging) = (4, 2, 2, JudgingMode::Scoring);
//! let store = SessionStore::open(&dir.path().join("batchbeam.db")).await?;
//! let search = BeamSearch::start(params, Engines::single(Tier::Simulated, backend), store, dir.path()).await?;
//! let outcome = search.run().await?;
//! assert_eq!(outcome.stages.len(), 6); // fused: 3 stages per iteration
//! assert!(outcome.folder.join("session.json").is_file());
//! println!("best: {} ({:.1})", outcome.best.combined, outcome.best.score());
//! # Ok::<(), orchestrator::Error>(())
//! # }).unwrap();
//! ```

pub mod candidate;
pub mod components;
pub mod cost;
pub mod downscale;
mod engines;
mod error;
pub mod estimate;
mod events;
mod params;
pub mod ranker;
pub mod rating;
mod search;
mod store;

pub use candidate::{Candidate, Judged, Proposal, Verdict};
pub use components::Dimension;
pub use components::{
    CritiqueGenerator, ImageGenerator, PromptCombiner, PromptExpander, PromptRefiner,
};
pub use cost::{CostReport, CostTracker, Pricing};
pub use engines::{Backend, Engines, Hybrid, Routing, Turnaround};
pub use error::{Error, Result};
pub use events::{Progress, ProgressEvent};
pub use params::{
    JudgingMode, MAX_ENSEMBLE, MAX_IDEA_CHARS, MAX_ITERATIONS, MAX_N, MAX_POLISH, Plan, QUALITIES,
    RenderSetting, SearchParams, StageKind, parse_schedule,
};
pub use ranker::ImageRanker;
pub use rating::{PairResult, RatingScale};
pub use search::{BeamSearch, CallRecord, IterationBest, Payload, SearchState, SessionOutcome};
pub use store::{
    BestSoFar, CheckpointStore, MIGRATIONS_TABLE, SessionReport, SessionRow, SessionState,
    SessionStore, SessionSummary, StageRecord,
};
