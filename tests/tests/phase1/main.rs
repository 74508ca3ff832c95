//! Phase 1 (core infrastructure): the wire format, the simulator and the job manager working
//! together. One module per area.

mod format_roundtrip;
mod job_manager;
