//! Admin routes under `/sim` (no auth): stats, clock jumps, fault replacement.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::json;

use super::{bad_query, json_value};
use crate::error::ApiError;
use crate::faults::FaultConfig;
use crate::state::{Sim, blocking, lock};

/// Largest jump in one call (about 3,000 years): keeps every timestamp far from overflow.
const MAX_JUMP_SECS: f64 = 1e11;

/// `GET /sim/stats`.
pub(super) async fn stats(State(sim): State<Arc<Sim>>) -> Result<Response, ApiError> {
    let snapshot = blocking(&sim, |s| s.stats()).await?;
    Ok(json_value(&snapshot, true))
}

/// `GET /sim/stats/requests`: `{"requests": {custom_id: {executed, billed, batches}}}` over
/// every batch line run so far.
pub(super) async fn request_stats(State(sim): State<Arc<Sim>>) -> Result<Response, ApiError> {
    let by_id = blocking(&sim, |s| s.request_stats()).await?;
    Ok(json_value(&json!({ "requests": by_id }), false))
}

/// `POST /sim/clock/advance?seconds=N`: jumps simulated time and catches every batch up.
pub(super) async fn advance_clock(
    State(sim): State<Arc<Sim>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let seconds: f64 = q
        .get("seconds")
        .ok_or_else(|| ApiError::missing("seconds"))?
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && (0.0..=MAX_JUMP_SECS).contains(s))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "'seconds' must be a number between 0 and {MAX_JUMP_SECS}."
            ))
            .param("seconds")
        })?;
    let now = blocking(&sim, move |s| {
        s.clock.advance(seconds);
        s.advance();
        s.now()
    })
    .await?;
    Ok(json_value(&json!({ "now": now.floor() as i64 }), false))
}

/// `POST /sim/faults` with a JSON [`FaultConfig`]: replaces the fault rules (counters are kept).
pub(super) async fn set_faults(
    State(sim): State<Arc<Sim>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_json_body())?;
    let config = FaultConfig::from_json_str(text).map_err(|e| ApiError::invalid(e.to_string()))?;
    lock(&sim.faults).replace(config, sim.config.seed);
    Ok(json_value(&json!({ "ok": true }), false))
}
