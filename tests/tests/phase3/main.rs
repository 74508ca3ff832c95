//! Phase 3 integration suite: the orchestrator on simulated, standard and batch tiers.
mod batch_session;
mod failures;
mod search;
