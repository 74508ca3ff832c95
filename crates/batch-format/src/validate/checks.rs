//! The checks of one request line that need the state of the lines before it: a unique
//! `custom_id`, one endpoint and one model per batch.

use super::facts::{Body, BodyFacts, ObjectFacts};
use super::ids::{IdSet, id_hash};
use super::options::ValidationOptions;
use super::problem::{Problem, ProblemCode};
use crate::endpoint::Endpoint;
use crate::field::Field;

fn missing(line: u64, param: &str) -> Problem {
    Problem::at(
        line,
        ProblemCode::MissingRequiredParameter,
        Some(param),
        format!("Missing required parameter: '{param}'."),
    )
}

/// The checks of one request line that need the state of the lines before it, field by field
/// in the order OpenAI reports them.
pub(super) fn check_object(
    n: u64,
    obj: ObjectFacts<'_>,
    opts: &ValidationOptions,
    batch_endpoint: &mut Option<Endpoint>,
    batch_model: &mut Option<String>,
    ids: &mut IdSet,
    emit: &mut impl FnMut(Problem),
) {
    check_custom_id(n, obj.custom_id, ids, emit);
    check_method(n, obj.method, emit);
    let line_endpoint = check_url(n, &obj.url, batch_endpoint, emit);
    let endpoint = batch_endpoint.or(line_endpoint);
    match obj.body {
        Body::Missing | Body::Null => emit(missing(n, "body")),
        Body::NotObject => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("body"),
            "Invalid type for 'body': expected an object.",
        )),
        Body::Object(body) => check_body(n, body, endpoint, opts, batch_model, emit),
    }
}

/// `custom_id`: a non-empty string not used by an earlier line.
fn check_custom_id(n: u64, custom_id: Field<'_>, ids: &mut IdSet, emit: &mut impl FnMut(Problem)) {
    match custom_id {
        Field::Missing | Field::Null => emit(missing(n, "custom_id")),
        Field::Str(id) if id.is_empty() => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("custom_id"),
            "Invalid 'custom_id': empty string. Expected a non-empty string.",
        )),
        Field::Str(id) => {
            if !ids.insert(id_hash(id.as_ref())) {
                emit(Problem::at(
                    n,
                    ProblemCode::DuplicateCustomId,
                    Some("custom_id"),
                    format!(
                        "The custom_id '{id}' is used by an earlier request; \
                         each request in a batch needs a unique custom_id."
                    ),
                ));
            }
        }
        Field::Bool(_) | Field::Count(_) | Field::Other => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("custom_id"),
            "Invalid type for 'custom_id': expected a string.",
        )),
    }
}

/// `method`: the string `POST`.
fn check_method(n: u64, method: Field<'_>, emit: &mut impl FnMut(Problem)) {
    match method {
        Field::Missing | Field::Null => emit(missing(n, "method")),
        Field::Str(m) if m == "POST" => {}
        Field::Str(m) => emit(Problem::at(
            n,
            ProblemCode::InvalidMethod,
            Some("method"),
            format!("Invalid method '{m}'. Only 'POST' is supported."),
        )),
        Field::Bool(_) | Field::Count(_) | Field::Other => emit(Problem::at(
            n,
            ProblemCode::InvalidMethod,
            Some("method"),
            "Invalid type for 'method': expected the string 'POST'.",
        )),
    }
}

/// `url`: a Batch API endpoint, the batch's. The first line with one decides the batch's
/// endpoint when none was expected. Returns the line's own endpoint.
fn check_url(
    n: u64,
    url: &Field<'_>,
    batch_endpoint: &mut Option<Endpoint>,
    emit: &mut impl FnMut(Problem),
) -> Option<Endpoint> {
    match url {
        Field::Missing | Field::Null => {
            emit(missing(n, "url"));
            None
        }
        other => {
            let endpoint = other.as_str().and_then(Endpoint::from_url);
            if batch_endpoint.is_none() {
                *batch_endpoint = endpoint;
            }
            if endpoint.is_none() || endpoint != *batch_endpoint {
                emit(Problem::at(
                    n,
                    ProblemCode::InvalidUrl,
                    Some("url"),
                    "The URL provided for this request does not match the batch endpoint.",
                ));
            }
            endpoint
        }
    }
}

/// `body`: a model (known, and the batch's), messages for chat completions, no streaming.
fn check_body(
    n: u64,
    body: BodyFacts<'_>,
    endpoint: Option<Endpoint>,
    opts: &ValidationOptions,
    batch_model: &mut Option<String>,
    emit: &mut impl FnMut(Problem),
) {
    match body.model {
        Field::Missing | Field::Null => {
            if endpoint.is_none_or(Endpoint::requires_model) {
                emit(Problem::at(
                    n,
                    ProblemCode::InvalidRequest,
                    Some("body.model"),
                    "Model parameter is required.",
                ));
            }
        }
        Field::Bool(_) | Field::Count(_) | Field::Other => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("body.model"),
            "Invalid type for 'body.model': expected a string.",
        )),
        Field::Str(model) => {
            if let Some(known) = &opts.known_models
                && !known.contains(model.as_ref())
            {
                emit(Problem::at(
                    n,
                    ProblemCode::ModelNotFound,
                    Some("body.model"),
                    format!("The provided model '{model}' is not supported by the Batch API."),
                ));
            }
            match batch_model {
                None => *batch_model = Some(model.into_owned()),
                Some(first) if *first != model => emit(Problem::at(
                    n,
                    ProblemCode::MismatchedModel,
                    Some("body.model"),
                    format!(
                        "The model '{model}' does not match the batch's model '{first}'. \
                         All requests in a batch must use the same model."
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    if endpoint == Some(Endpoint::ChatCompletions) && !body.has_messages {
        emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("body.messages"),
            "Messages parameter is required.",
        ));
    }
    if body.stream {
        emit(Problem::at(
            n,
            ProblemCode::StreamingUnsupported,
            Some("body.stream"),
            format!(
                "{}: Streaming is not supported in the Batch API.",
                endpoint_title(endpoint)
            ),
        ));
    }
}

/// The endpoint's name as OpenAI's messages spell it ("Chat Completions: Streaming is ...").
fn endpoint_title(endpoint: Option<Endpoint>) -> &'static str {
    match endpoint {
        Some(Endpoint::Responses) => "Responses",
        Some(Endpoint::ChatCompletions) => "Chat Completions",
        Some(Endpoint::Embeddings) => "Embeddings",
        Some(Endpoint::Completions) => "Completions",
        Some(Endpoint::Moderations) => "Moderations",
        Some(Endpoint::ImagesGenerations | Endpoint::ImagesEdits) => "Images",
        Some(Endpoint::Videos) => "Videos",
        _ => "This endpoint",
    }
}
