//! `BeamSearch`, `ImageRanker`, `CritiqueGenerator`, cost tracking and checkpoints: the batch-aware image-prompt beam search (not built yet).
