//! `BeamSearch`, `ImageRanker`, `CritiqueGenerator`, cost tracking and checkpoints: the
//! batch-aware image-prompt beam search.

pub mod cost;
pub mod downscale;
