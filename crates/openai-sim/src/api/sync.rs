//! Synchronous model endpoints (chat, completions, embeddings, responses, moderations, images):
//! the same simulated models answer them as answer batch lines.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use batch_format::Endpoint;
use serde_json::Value;

use crate::error::{ApiError, ReplyBody};
use crate::state::{Sim, blocking, lock};

/// Longest real wait for a flex request, whatever the time scale.
const MAX_FLEX_WAIT: Duration = Duration::from_secs(5);

/// `POST /v1/<endpoint>`.
pub(super) async fn execute(
    State(sim): State<Arc<Sim>>,
    body: Bytes,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body).map_err(|_| ApiError::bad_json_body())?;
    if !body.is_object() {
        return Err(ApiError::bad_json_body());
    }
    if body.get("service_tier").and_then(Value::as_str) == Some("flex") {
        let wait = sim.clock.real_duration(sim.config.flex_delay_secs);
        tokio::time::sleep(wait.min(MAX_FLEX_WAIT)).await;
    }
    let reply = blocking(&sim, move |s| {
        let now = crate::clock::secs(s.now()).max(0) as u64;
        s.models.execute_at(endpoint, &body, now)
    })
    .await?;
    lock(&sim.counters).sync_requests += 1;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(ReplyBody(&reply.body))).into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-limit-tokens", "30000000"),
        ("x-ratelimit-remaining-requests", "9999"),
        ("x-ratelimit-remaining-tokens", "29999000"),
        ("x-ratelimit-reset-requests", "6ms"),
        ("x-ratelimit-reset-tokens", "2ms"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    Ok(resp)
}
