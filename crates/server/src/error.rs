//! The server's one error type, and [`ApiError`]: every failure a client sees, as OpenAI's
//! error body `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What the server can fail with inside.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job store.
    #[error("job store: {0}")]
    Store(String),
    /// The orchestrator (a session, its store, its parameters).
    #[error(transparent)]
    Search(#[from] orchestrator::Error),
    /// The stack (the batch manager, the queue).
    #[error(transparent)]
    Stack(#[from] providers::StackError),
    /// The providers (a tier without what it needs).
    #[error(transparent)]
    Provider(#[from] providers::ProviderError),
    /// The listener.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A job's search ended without an outcome (its task panicked).
    #[error("{0}")]
    Internal(String),
}

/// OpenAI's error object.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// What went wrong, for people.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `server_error`...
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code, if there is one.
    pub code: Option<String>,
}

/// OpenAI's error body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error of `status` with OpenAI's type for it.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 => "conflict_error",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        ApiError {
            status,
            body: ErrorBody {
                error: ErrorObject {
                    message: message.into(),
                    kind: kind.to_owned(),
                    param: None,
                    code: None,
                },
            },
        }
    }

    /// A 400 naming the field at fault.
    pub fn bad_param(param: &str, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, message);
        e.body.error.param = Some(param.to_owned());
        e.body.error.code = Some("invalid_value".to_owned());
        e
    }

    /// A 404 for an unknown id.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        let mut e = ApiError::new(StatusCode::NOT_FOUND, format!("no {what} '{id}'"));
        e.body.error.code = Some("not_found".to_owned());
        e
    }

    /// With a code.
    pub fn with_code(mut self, code: &str) -> ApiError {
        self.body.error.code = Some(code.to_owned());
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        tracing::warn!(error = %e, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<orchestrator::Error> for ApiError {
    fn from(e: orchestrator::Error) -> ApiError {
        ApiError::from(Error::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
