//! The HTTP surface: routes under `/v1` (behind faults and auth), admin routes under `/sim`,
//! and the headers every answer carries.

mod admin;
mod batches;
mod files;
mod sync;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use batch_format::Endpoint;

use crate::error::ApiError;
use crate::faults::Decision;
use crate::server::ConnKill;
use crate::state::{Sim, lock};

/// Request extension set by the fault layer: cut this download short.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TruncateDownload;

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/files",
            post(files::upload)
                .get(files::list)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{id}", get(files::retrieve).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", post(batches::create).get(batches::list))
        .route("/v1/batches/{id}", get(batches::retrieve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route(
            "/v1/chat/completions",
            post(|s: State<Arc<Sim>>, b: axum::body::Bytes| {
                sync::execute(s, b, Endpoint::ChatCompletions)
            }),
        )
        .route(
            "/v1/completions",
            post(|s: State<Arc<Sim>>, b: axum::body::Bytes| {
                sync::execute(s, b, Endpoint::Completions)
            }),
        )
        .route(
            "/v1/embeddings",
            post(|s: State<Arc<Sim>>, b: axum::body::Bytes| {
                sync::execute(s, b, Endpoint::Embeddings)
            }),
        )
        .route(
            "/v1/responses",
            post(|s: State<Arc<Sim>>, b: axum::body::Bytes| {
                sync::execute(s, b, Endpoint::Responses)
            }),
        )
        .route(
            "/v1/moderations",
            post(|s: State<Arc<Sim>>, b: axum::body::Bytes| {
                sync::execute(s, b, Endpoint::Moderations)
            }),
        )
        .route(
            "/v1/images/generations",
            post(|s: State<Arc<Sim>>, b: axum::body::Bytes| {
                sync::execute(s, b, Endpoint::ImagesGenerations)
            }),
        )
        .fallback(invalid_url)
        .method_not_allowed_fallback(invalid_url)
        .layer(DefaultBodyLimit::max(sim.config.limits.max_json_body_bytes))
        .layer(middleware::from_fn_with_state(Arc::clone(&sim), auth))
        .layer(middleware::from_fn_with_state(Arc::clone(&sim), faults));
    let admin = Router::new()
        .route("/sim/stats", get(admin::stats))
        .route("/sim/stats/requests", get(admin::request_stats))
        .route("/sim/clock/advance", post(admin::advance_clock))
        .route("/sim/faults", post(admin::set_faults));
    Router::new()
        .merge(admin)
        .merge(v1)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&sim),
            crate::limits::guard,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&sim),
            common_headers,
        ))
        .with_state(sim)
}

async fn invalid_url(method: Method, uri: Uri) -> ApiError {
    ApiError::invalid_url(method.as_str(), uri.path())
}

/// `x-request-id`, `openai-processing-ms`, `openai-version`, ... on every answer.
async fn common_headers(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let request_id = lock(&sim.ids).header_request_id();
    let ms = started.elapsed().as_millis().to_string();
    let h = resp.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put("x-request-id", &request_id);
    put("openai-processing-ms", &ms);
    put("openai-version", "2020-10-01");
    put("openai-organization", &sim.config.organization);
    put("openai-project", "proj_openaisim00000000000000");
    resp
}

/// The API key of an `Authorization` header, in either form OpenAI's 401 message names:
/// `Bearer <key>`, or Basic auth with a blank username and the key as the password.
pub(crate) fn api_key(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = B64.decode(rest.trim()).ok()?;
        String::from_utf8(decoded)
            .ok()?
            .strip_prefix(':')?
            .to_owned()
    } else {
        return None;
    };
    (!key.is_empty()).then_some(key)
}

/// `Authorization: Bearer <key>` (or Basic with the key as password), with OpenAI's 401
/// messages.
async fn auth(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(api_key);
    let Some(key) = key else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        )
        .into_response();
    };
    if let Some(keys) = &sim.config.api_keys
        && !keys.contains(&key)
    {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(&key)
            ),
        )
        .code("invalid_api_key")
        .into_response();
    }
    next.run(req).await
}

/// First 8 characters, a `*` for each hidden one, last 4; short keys are echoed whole.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return key.to_owned();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

/// Injects the configured HTTP faults.
async fn faults(State(sim): State<Arc<Sim>>, mut req: Request, next: Next) -> Response {
    let decision =
        lock(&sim.faults).decide(req.method(), req.uri().path(), &sim.config.organization);
    match decision {
        None => next.run(req).await,
        Some(Decision::Reject(e)) => e.into_response(),
        Some(Decision::Slow(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        Some(Decision::Truncate) => {
            req.extensions_mut().insert(TruncateDownload);
            next.run(req).await
        }
        Some(Decision::Reset) => match req.extensions().get::<ConnKill>() {
            Some(kill) => {
                kill.0.notify_one();
                std::future::pending::<Response>().await
            }
            None => ApiError::internal("connection reset requested outside the simulator's server")
                .into_response(),
        },
    }
}

/// A JSON answer from an already serialised body.
pub(crate) fn json_text(status: StatusCode, text: String) -> Response {
    let mut resp = (status, Body::from(text)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON answer from a serialisable value.
pub(crate) fn json_value<T: serde::Serialize>(value: &T, pretty: bool) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    match text {
        Ok(t) => json_text(StatusCode::OK, t),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Parses an integer query parameter within bounds, with OpenAI's messages.
pub(crate) fn int_param(
    name: &str,
    raw: Option<&String>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    let v: i64 = raw.trim().parse().map_err(|_| {
        ApiError::invalid(format!(
            "Invalid type for '{name}': expected an integer, but got a string instead."
        ))
        .param(name)
        .code("invalid_type")
    })?;
    if v < min {
        return Err(ApiError::invalid(format!(
            "Invalid '{name}': integer below minimum value. Expected a value greater than or equal to {min}, but got {v} instead."
        ))
        .param(name)
        .code("integer_below_min_value"));
    }
    if v > max {
        return Err(ApiError::invalid(format!(
            "Invalid '{name}': integer above maximum value. Expected a value less than or equal to {max}, but got {v} instead."
        ))
        .param(name)
        .code("integer_above_max_value"));
    }
    Ok(v)
}

/// A 400 for a query string that does not parse.
pub(crate) fn bad_query(e: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Invalid query parameters: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_like_openai() {
        let key = format!("sk-VKMIs{}wjh3", "x".repeat(39));
        assert_eq!(key.len(), 51);
        assert_eq!(mask_key(&key), format!("sk-VKMIs{}wjh3", "*".repeat(39)));
        assert_eq!(mask_key("kk"), "kk");
    }

    #[test]
    fn keys_come_in_the_two_forms_the_401_message_names() {
        let check = |header: &str, expect: Option<&str>| {
            assert_eq!(api_key(header).as_deref(), expect, "{header}");
        };
        check("Bearer sk-abc", Some("sk-abc"));
        check("bearer   sk-abc  ", Some("sk-abc"));
        // Basic auth: blank username, the key as the password (`:sk-abc`).
        check(&format!("Basic {}", B64.encode(":sk-abc")), Some("sk-abc"));
        check(
            &format!("basic {}", B64.encode(":sk:with:colons")),
            Some("sk:with:colons"),
        );
        // A username is not the blank one the message asks for; an empty password is no key.
        check(&format!("Basic {}", B64.encode("user:sk-abc")), None);
        check(&format!("Basic {}", B64.encode(":")), None);
        check("Basic !!not-base64!!", None);
        check("Bearer ", None);
        check("Token sk-abc", None);
        check("sk-abc", None);
    }
}
