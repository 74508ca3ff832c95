//! Phase 2 integration suite.
mod provider_tiers;
mod queue;
