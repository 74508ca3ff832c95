//! The crate's error type and `ApiError`, the one OpenAI-shaped HTTP error every route returns.

use std::path::PathBuf;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What can go wrong while starting or configuring the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or accepting on the listening socket failed.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A faults file could not be read.
    #[error("could not read faults file {path}: {source}")]
    FaultsRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A faults file is not valid TOML or JSON of the documented shape.
    #[error("invalid faults file {path}: {message}")]
    FaultsParse {
        /// The file (empty when parsed from a string).
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The configuration is inconsistent (e.g. a non-positive time scale).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// The result type of openai-sim.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An HTTP error in OpenAI's envelope: `{"error":{"message","type","param","code"}}`.
/// Boxed: it travels in many `Result`s.
#[derive(Debug, Clone)]
pub(crate) struct ApiError(Box<ErrorParts>);

#[derive(Debug, Clone)]
pub(crate) struct ErrorParts {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) kind: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<String>,
    /// Adds the top-level `detail` object some file errors carry.
    pub(crate) with_detail: bool,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ErrorParts {
            status,
            message: message.into(),
            kind: kind.to_owned(),
            param: None,
            code: None,
            with_detail: false,
            headers: Vec::new(),
        }))
    }

    /// Adds the top-level `detail` object (`{"message","code"}`) some file errors carry.
    pub(crate) fn with_detail(mut self) -> ApiError {
        self.0.with_detail = true;
        self
    }

    /// A 400 `invalid_request_error`.
    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub(crate) fn param(mut self, param: impl Into<String>) -> ApiError {
        self.0.param = Some(param.into());
        self
    }

    pub(crate) fn code(mut self, code: impl Into<String>) -> ApiError {
        self.0.code = Some(code.into());
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.push((name, v));
        }
        self
    }

    pub(crate) fn missing(param: &str) -> ApiError {
        ApiError::invalid(format!("Missing required parameter: '{param}'."))
            .param(param)
            .code("missing_required_parameter")
    }

    pub(crate) fn invalid_type(param: &str, expected: &str, got: &serde_json::Value) -> ApiError {
        ApiError::invalid(format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            json_type_phrase(got)
        ))
        .param(param)
        .code("invalid_type")
    }

    pub(crate) fn invalid_value(param: &str, value: &str, supported: &[&str]) -> ApiError {
        ApiError::invalid(format!(
            "Invalid value: '{value}'. Supported values are: {}.",
            english_list(supported)
        ))
        .param(param)
        .code("invalid_value")
    }

    pub(crate) fn not_found_batch(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No batch found with id '{id}'."),
        )
    }

    pub(crate) fn not_found_file(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such File object: {id}"),
        )
        .param("id")
    }

    pub(crate) fn invalid_url(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({method} {path})"),
        )
    }

    pub(crate) fn bad_json_body() -> ApiError {
        ApiError::invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
        )
    }

    /// A 500 whose detail is logged, not shown.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("openai-sim internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        )
    }

    /// The body, keys in OpenAI's order: `message`, `type`, `param`, `code`.
    fn body(&self) -> Envelope<'_> {
        let p = &self.0;
        Envelope {
            error: ErrorBody {
                message: &p.message,
                kind: &p.kind,
                param: p.param.as_deref(),
                code: p.code.as_deref(),
            },
            detail: p.with_detail.then_some(Detail {
                message: &p.message,
                code: p.code.as_deref(),
            }),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Detail<'a>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct Detail<'a> {
    message: &'a str,
    code: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.0.status, axum::Json(self.body())).into_response();
        for (k, v) in self.0.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

/// "a string", "an array", ... as OpenAI phrases JSON types in messages.
pub(crate) fn json_type_phrase(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a decimal",
        serde_json::Value::Number(_) => "an integer",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `'a'`, `'a' and 'b'`, `'a', 'b', and 'c'`.
pub(crate) fn english_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        2 => format!("{} and {}", quoted[0], quoted[1]),
        n => format!("{}, and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_openais_key_order() {
        let v =
            serde_json::json!({"error": {"code": null, "message": "m", "param": "p", "type": "t"}});
        assert_eq!(
            serde_json::to_string(&ReplyBody(&v)).unwrap(),
            r#"{"error":{"message":"m","type":"t","param":"p","code":null}}"#
        );
        let ok = serde_json::json!({"a": 1});
        assert_eq!(
            serde_json::to_string(&ReplyBody(&ok)).unwrap(),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn lists_read_like_openai_messages() {
        assert_eq!(english_list(&["asc", "desc"]), "'asc' and 'desc'");
        assert_eq!(english_list(&["a", "b", "c"]), "'a', 'b', and 'c'");
    }
}

/// Serialises a model's reply body, putting an OpenAI error envelope's keys in the real order
/// (`message`, `type`, `param`, `code`); any other body is written as it is.
#[derive(Debug)]
pub(crate) struct ReplyBody<'a>(pub(crate) &'a serde_json::Value);

impl Serialize for ReplyBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(obj) = self.0.as_object() else {
            return self.0.serialize(s);
        };
        let Some(err) = obj.get("error").and_then(|e| e.as_object()) else {
            return self.0.serialize(s);
        };
        const ORDER: [&str; 4] = ["message", "type", "param", "code"];
        let mut outer = s.serialize_map(Some(obj.len()))?;
        outer.serialize_entry("error", &OrderedError(err, ORDER))?;
        for (k, v) in obj.iter().filter(|(k, _)| *k != "error") {
            outer.serialize_entry(k, v)?;
        }
        outer.end()
    }
}

struct OrderedError<'a>(
    &'a serde_json::Map<String, serde_json::Value>,
    [&'static str; 4],
);

impl Serialize for OrderedError<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for k in self.1 {
            if let Some(v) = self.0.get(k) {
                m.serialize_entry(k, v)?;
            }
        }
        for (k, v) in self.0.iter().filter(|(k, _)| !self.1.contains(&k.as_str())) {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}
