//! `POST /api/beam-search` given anything a client can send: arbitrary JSON objects (the real
//! fields with values of every type and range, unknown fields), arbitrary bytes and wrong
//! content types. The server answers every one: a 202 with a job, or a 4xx in OpenAI's error
//! envelope whose `param`, when it names one, is a field of the request. Never a 5xx, never a
//! hang. Cases come from proptest with a fixed seed (the same on every machine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use providers::{Settings, Stack, StackOptions};
use serde_json::{Map, Value, json};
use server::{Server, ServerConfig};
use tower::ServiceExt as _;

/// A server with no workers: accepted jobs wait in the store, nothing runs.
async fn server(dir: &std::path::Path) -> Server {
    let settings = Settings::from_lookup(
        &|_| None,
        &[
            ("data.db", dir.join("b.db").to_string_lossy().into_owned()),
            (
                "data.sessions",
                dir.join("sessions").to_string_lossy().into_owned(),
            ),
        ],
    )
    .unwrap();
    let options = StackOptions {
        sim: true,
        always_queue: true,
        ..StackOptions::default()
    };
    let stack = Stack::open(&settings, options).await.unwrap();
    let mut config = ServerConfig::from_settings(&settings);
    config.workers = 0;
    Server::start(stack, config).await.unwrap()
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5i64..70).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("classic"),
            Just("fused"),
            Just("judge_refines"),
            Just("scoring"),
            Just("comparative"),
            Just("poll"),
            Just("deferred"),
            Just("6h"),
            Just("90m"),
            Just("0s"),
            Just("31d"),
            Just("a lighthouse in a storm"),
            Just(""),
        ]
        .prop_map(|s| Value::from(s.to_owned())),
        "\\PC{0,30}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: an object of the request's own fields (and now and then an unknown one), or
/// another JSON value, or bytes.
fn body(fields: Vec<String>) -> impl Strategy<Value = (Vec<u8>, Option<Value>)> {
    let field = prop_oneof![
        9 => prop::sample::select(fields),
        1 => "[a-zA-Z_]{1,12}",
    ];
    let object = prop::collection::btree_map(field, json_value(), 0..7).prop_map(|m| {
        let v = Value::Object(m.into_iter().collect::<Map<_, _>>());
        (serde_json::to_vec(&v).unwrap(), Some(v))
    });
    prop_oneof![
        8 => object,
        1 => json_value().prop_map(|v| (serde_json::to_vec(&v).unwrap(), Some(v))),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| (b, None)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_request_body_gets_a_job_or_a_4xx_naming_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let router = server.router();
    // The request's fields, as the API document states them.
    let doc: Value = {
        let r = router
            .clone()
            .oneshot(
                Request::get("/api/openapi.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let fields: Vec<String> = doc["components"]["schemas"]["BeamSearchRequest"]["properties"]
        .as_object()
        .expect("the document describes BeamSearchRequest")
        .keys()
        .cloned()
        .collect();
    assert!(fields.iter().any(|f| f == "prompt"), "{fields:?}");

    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[5; 32]),
    );
    let strategy = (body(fields.clone()), prop::bool::weighted(0.9));
    let mut statuses = BTreeSet::new();
    for _ in 0..300 {
        let ((bytes, sent), json_type) = strategy.new_tree(&mut runner).unwrap().current();
        let request = Request::post("/api/beam-search")
            .header(
                "content-type",
                if json_type {
                    "application/json"
                } else {
                    "text/plain"
                },
            )
            .body(Body::from(bytes.clone()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let raw = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            status.as_u16() < 500,
            "{status} for {shown}: {}",
            String::from_utf8_lossy(&raw)
        );
        let answer: Value = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| panic!("{status} with a body that is not JSON for {shown}"));
        statuses.insert(status.as_u16());
        if status == StatusCode::ACCEPTED {
            assert!(
                answer["jobId"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("j_")),
                "{answer}"
            );
            let sent = sent
                .as_ref()
                .and_then(Value::as_object)
                .unwrap_or_else(|| panic!("accepted a body that is not an object: {shown}"));
            assert!(
                sent.keys().all(|k| fields.contains(k)),
                "accepted an unknown field: {shown}"
            );
            continue;
        }
        assert!(status.is_client_error(), "{status} for {shown}");
        let error = &answer["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        assert_eq!(error["type"], json!("invalid_request_error"), "{answer}");
        // A `param` names a field the request sent (the one refused), never a value.
        if let Some(param) = error["param"].as_str() {
            let sent = sent.as_ref().and_then(Value::as_object);
            assert!(
                sent.is_some_and(|o| o.contains_key(param)) || param == "prompt",
                "param {param:?} is not a field of {shown}: {answer}"
            );
        }
        // A request with an unknown field is never accepted (checked above), always a 400.
        if let Some(o) = sent.as_ref().and_then(Value::as_object)
            && json_type
            && o.keys().any(|k| !fields.contains(k))
        {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}: {answer}");
        }
    }
    // The cases reached both answers.
    assert!(
        statuses.contains(&202) && statuses.contains(&400),
        "{statuses:?}"
    );
}
