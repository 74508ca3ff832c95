//! Transport limits: how long a request line and its headers may be, how big a body, how long a
//! client may take to send them; and OpenAI's JSON envelope on every refusal, including the ones
//! axum's extractors write as plain text (an oversized or broken body).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::state::Sim;

/// What the simulator accepts from a client before it refuses the request.
///
/// The HTTP parser's own ceilings (a 64 KiB request target, a 1 MiB header block, 1,000 header
/// lines) lie above these, so a request between the two is refused here, in OpenAI's JSON
/// envelope; beyond them the parser answers 414/431 with an empty body and closes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest request target (path and query), in bytes: longer is 414.
    pub max_uri_bytes: usize,
    /// Largest header block (names, values, `": "` and line ends), in bytes: larger is 431.
    pub max_header_bytes: usize,
    /// Most header lines: more is 431.
    pub max_headers: usize,
    /// Largest body of the JSON routes, in bytes: larger is 413, refused before it is read when
    /// `Content-Length` says so, else as soon as that many bytes have arrived.
    pub max_json_body_bytes: usize,
    /// Time a client has to send its request line and headers; then the connection is closed.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole body; then the request is refused with 408.
    pub body_read_timeout: Duration,
    /// Longest pause between two pieces of a body; then the request is refused with 408.
    pub body_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_uri_bytes: 16 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_json_body_bytes: 64 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(600),
            body_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The HTTP parser's ceilings (see [`Limits`]): generous, so that our own limits answer first.
pub(crate) const PARSER_MAX_BUF: usize = 1024 * 1024;
/// Header lines the HTTP parser accepts.
pub(crate) const PARSER_MAX_HEADERS: usize = 1_000;

/// Middleware: refuses an oversized request line or header block, bounds how long the body may
/// take, and puts every plain-text error answer into OpenAI's envelope.
pub(crate) async fn guard(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let limits = &sim.config.limits;
    if let Some(refusal) = refuse_head(limits, &req) {
        return refusal.into_response();
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| deadline_body(body, limits, Arc::clone(&timed_out)));
    let resp = next.run(req).await;
    if timed_out.load(Ordering::Acquire) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!(
                "The request body was not received in time (the limits are {} s in all and {} s between two pieces).",
                limits.body_read_timeout.as_secs_f64(),
                limits.body_idle_timeout.as_secs_f64()
            ),
        )
        .code("request_timeout")
        .into_response();
    }
    envelope(resp, limits).await
}

/// 414, 431 or 413 for a request whose head already shows it is too big.
fn refuse_head(limits: &Limits, req: &Request) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return Some(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "invalid_request_error",
                format!(
                    "The request URL is {target} bytes long; the limit is {} bytes.",
                    limits.max_uri_bytes
                ),
            )
            .code("uri_too_long"),
        );
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > limits.max_headers || bytes > limits.max_header_bytes {
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "The request has {} header lines in {bytes} bytes; the limits are {} lines and {} bytes.",
                    headers.len(),
                    limits.max_headers,
                    limits.max_header_bytes
                ),
            )
            .code("headers_too_large"),
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // File uploads have their own, per-purpose size rules (answered by the upload route).
    let json_route = req.uri().path() != "/v1/files";
    match declared {
        Some(n) if json_route && n > limits.max_json_body_bytes as u64 => {
            Some(body_too_large(limits))
        }
        _ => None,
    }
}

fn body_too_large(limits: &Limits) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!(
            "The request body is larger than the {} bytes this endpoint accepts.",
            limits.max_json_body_bytes
        ),
    )
    .code("request_too_large")
}

/// The body, failing (and setting `timed_out`) once it takes longer than the limits allow.
fn deadline_body(body: Body, limits: &Limits, timed_out: Arc<AtomicBool>) -> Body {
    let deadline = Instant::now() + limits.body_read_timeout;
    let idle = limits.body_idle_timeout;
    let stream = futures_util::stream::unfold(
        Some((body.into_data_stream(), timed_out)),
        move |state| async move {
            let (mut stream, timed_out) = state?;
            let wake = deadline.min(Instant::now() + idle);
            match tokio::time::timeout_at(wake, stream.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some((stream, timed_out)))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => {
                    timed_out.store(true, Ordering::Release);
                    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "body read timeout");
                    Some((Err(e), None))
                }
            }
        },
    );
    Body::from_stream(stream)
}

/// Error answers that are not JSON (axum's extractor rejections are plain text) get OpenAI's
/// envelope, keeping their status.
async fn envelope(resp: Response, limits: &Limits) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Rejection texts are short; anything longer is cut, never buffered whole.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large(limits),
        s if s.is_server_error() => ApiError::new(s, "server_error", text),
        s => ApiError::new(s, "invalid_request_error", non_empty(text, s)),
    };
    let mut fresh = error.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

fn non_empty(text: String, status: StatusCode) -> String {
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("The request was refused")
            .to_owned()
    } else {
        text
    }
}
