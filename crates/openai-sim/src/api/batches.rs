//! `/v1/batches`: create, retrieve, cancel, list.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use batch_format::Endpoint;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{bad_query, int_param, json_text, json_value};
use crate::batch::object::Metadata;
use crate::batch::{CancelOutcome, NewBatch};
use crate::error::ApiError;
use crate::files::THIRTY_DAYS;
use crate::state::{Sim, blocking, lock};

/// The order the endpoints are listed in the "Supported values" message.
const ENDPOINT_ORDER: [&str; 8] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
];

const MAX_METADATA_KEYS: usize = 16;
const MAX_METADATA_KEY_LEN: usize = 64;
const MAX_METADATA_VALUE_LEN: usize = 512;

/// `metadata` read with its keys in the order they were sent.
#[derive(Debug, Default)]
struct Ordered(Option<Vec<(String, Value)>>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = map.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(Ordered(Some(v)))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Ordered, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Ordered(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: Ordered,
}

fn required_str<'a>(
    body: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Err(ApiError::missing(name)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ApiError::invalid_type(name, "a string", other)),
    }
}

fn check_metadata(raw: &Value, ordered: Ordered) -> Result<Option<Metadata>, ApiError> {
    match raw {
        Value::Null => return Ok(None),
        Value::Object(_) => {}
        other => return Err(ApiError::invalid_type("metadata", "an object", other)),
    }
    let pairs = ordered.0.unwrap_or_default();
    if pairs.len() > MAX_METADATA_KEYS {
        return Err(ApiError::invalid(format!(
            "Invalid 'metadata': too many properties. Expected an object with at most {MAX_METADATA_KEYS} properties, but got an object with {} properties instead.",
            pairs.len()
        ))
        .param("metadata")
        .code("object_above_max_properties"));
    }
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let klen = k.chars().count();
        if klen > MAX_METADATA_KEY_LEN {
            return Err(ApiError::invalid(format!(
                "Invalid 'metadata': key too long. Expected a key with maximum length {MAX_METADATA_KEY_LEN}, but got a key with length {klen} instead."
            ))
            .param("metadata")
            .code("string_above_max_length"));
        }
        let param = format!("metadata.{k}");
        let Value::String(s) = v else {
            return Err(ApiError::invalid_type(&param, "a string", &v));
        };
        let vlen = s.chars().count();
        if vlen > MAX_METADATA_VALUE_LEN {
            return Err(ApiError::invalid(format!(
                "Invalid '{param}': string too long. Expected a string with maximum length {MAX_METADATA_VALUE_LEN}, but got a string with length {vlen} instead."
            ))
            .param(param)
            .code("string_above_max_length"));
        }
        out.push((k, s));
    }
    Ok(Some(Metadata(out)))
}

/// `POST /v1/batches`: 200 `validating`; content problems surface later, in `errors`.
pub(super) async fn create(State(sim): State<Arc<Sim>>, body: Bytes) -> Result<Response, ApiError> {
    let parsed: Value = serde_json::from_slice(&body).map_err(|_| ApiError::bad_json_body())?;
    let Value::Object(obj) = &parsed else {
        return Err(ApiError::bad_json_body());
    };
    let input_file_id = required_str(obj, "input_file_id")?.to_owned();
    let endpoint_raw = required_str(obj, "endpoint")?;
    let endpoint = Endpoint::from_url(endpoint_raw)
        .ok_or_else(|| ApiError::invalid_value("endpoint", endpoint_raw, &ENDPOINT_ORDER))?;
    let window = required_str(obj, "completion_window")?;
    if window != "24h" {
        return Err(ApiError::invalid_value(
            "completion_window",
            window,
            &["24h"],
        ));
    }
    let metadata = match obj.get("metadata") {
        None => None,
        Some(raw) => {
            let ordered = serde_json::from_slice::<MetadataOnly>(&body)
                .map(|m| m.metadata)
                .unwrap_or_default();
            check_metadata(raw, ordered)?
        }
    };
    // The spec does not make it nullable: an explicit null is the wrong type, not "unset".
    let output_ttl = match obj.get("output_expires_after") {
        None => None,
        Some(Value::Object(o)) => {
            let anchor = required_str(o, "anchor")
                .map_err(|_| ApiError::missing("output_expires_after.anchor"))?;
            if anchor != "created_at" {
                return Err(ApiError::invalid_value(
                    "output_expires_after.anchor",
                    anchor,
                    &["created_at"],
                ));
            }
            let seconds = match o.get("seconds") {
                None | Some(Value::Null) => {
                    return Err(ApiError::missing("output_expires_after.seconds"));
                }
                Some(v) => v.as_i64().map(|n| n.to_string()).ok_or_else(|| {
                    ApiError::invalid_type("output_expires_after.seconds", "an integer", v)
                })?,
            };
            Some(int_param(
                "output_expires_after.seconds",
                Some(&seconds),
                0,
                3600,
                THIRTY_DAYS,
            )?)
        }
        Some(other) => {
            return Err(ApiError::invalid_type(
                "output_expires_after",
                "an object",
                other,
            ));
        }
    };
    let forced = lock(&sim.faults).batch_outcome();
    let text = blocking(&sim, move |s| {
        let now = s.now();
        let mut engine = lock(&s.engine);
        let id = engine.create(
            s,
            NewBatch {
                endpoint,
                input_file_id,
                metadata,
                forced,
                output_ttl,
            },
            now,
        );
        lock(&s.counters).batches_created += 1;
        engine.object_json(s, &id, now, true).unwrap_or_default()
    })
    .await?;
    Ok(json_text(StatusCode::OK, text))
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| ApiError::invalid(format!("Invalid path: {e}")))
}

/// `GET /v1/batches/{id}`.
pub(super) async fn retrieve(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let found = blocking(&sim, move |s| {
        s.advance();
        let now = s.now();
        lock(&s.engine).object_json(s, &id, now, true).ok_or(id)
    })
    .await?;
    match found {
        Ok(text) => Ok(json_text(StatusCode::OK, text)),
        Err(id) => Err(ApiError::not_found_batch(&id)),
    }
}

/// `POST /v1/batches/{id}/cancel`: 200 `cancelling` (or the cancelled batch again), 409 when
/// the batch already ended otherwise.
pub(super) async fn cancel(
    State(sim): State<Arc<Sim>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let result = blocking(&sim, move |s| {
        s.advance();
        let now = s.now();
        let mut engine = lock(&s.engine);
        match engine.cancel(&id, now) {
            CancelOutcome::Ok => Ok(engine.object_json(s, &id, now, false).unwrap_or_default()),
            CancelOutcome::Conflict(status) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("Cannot cancel a batch with status '{status}'."),
            )),
            CancelOutcome::NotFound => Err(ApiError::not_found_batch(&id)),
        }
    })
    .await?;
    result.map(|text| json_text(StatusCode::OK, text))
}

#[derive(Serialize)]
struct BatchList {
    object: &'static str,
    data: Vec<Box<serde_json::value::RawValue>>,
    first_id: Option<String>,
    last_id: Option<String>,
    has_more: bool,
}

/// `GET /v1/batches`: newest first, `limit` 1..=100 (default 20), `after` cursor.
pub(super) async fn list(
    State(sim): State<Arc<Sim>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let limit = int_param("limit", q.get("limit"), 20, 1, 100)? as usize;
    let after = q.get("after").cloned();
    let (page, has_more) = blocking(&sim, move |s| {
        s.advance();
        let now = s.now();
        lock(&s.engine).list_json(s, after.as_deref(), limit, now)
    })
    .await?;
    let list = BatchList {
        object: "list",
        first_id: page.first().map(|(id, _)| id.clone()),
        last_id: page.last().map(|(id, _)| id.clone()),
        data: page
            .into_iter()
            .filter_map(|(_, v)| serde_json::value::RawValue::from_string(v).ok())
            .collect(),
        has_more,
    };
    Ok(json_value(&list, true))
}
