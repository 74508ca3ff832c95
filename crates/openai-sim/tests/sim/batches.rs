//! `POST /v1/batches` parameters, the created object, retrieve, list and 404s.

use serde_json::{Value, json};

use crate::support::{Ctx, chat_line, is_hex, key_order};

const BATCH_KEYS: [&str; 22] = [
    "id",
    "object",
    "endpoint",
    "model",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
];

#[tokio::test]
async fn create_returns_a_validating_batch_with_every_field() {
    let ctx = Ctx::new().await;
    let file = ctx
        .upload_lines(&[chat_line("a", "gpt-4o-mini", "hi")])
        .await;
    let r = ctx
        .post_raw(
            "/v1/batches",
            format!(
                r#"{{"input_file_id": "{file}", "endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": {{"zeta": "1", "alpha": "2"}}}}"#
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(key_order(&r.text), BATCH_KEYS);
    assert!(
        r.text.contains("\n  \"object\": \"batch\""),
        "create is pretty-printed"
    );
    let b = r.json();
    let id = b["id"].as_str().unwrap();
    assert!(id.starts_with("batch_") && is_hex(&id[6..], 32), "{id}");
    let created = b["created_at"].as_i64().unwrap();
    assert_eq!(&id[6..14], format!("{created:08x}"));
    assert_eq!(&id[18..22], "8190");
    assert_eq!(b["object"], "batch");
    assert_eq!(b["endpoint"], "/v1/chat/completions");
    assert_eq!(b["model"], Value::Null);
    assert_eq!(b["errors"], Value::Null);
    assert_eq!(b["input_file_id"], file.as_str());
    assert_eq!(b["completion_window"], "24h");
    assert_eq!(b["status"], "validating");
    assert_eq!(b["expires_at"].as_i64().unwrap(), created + 86_400);
    for k in [
        "output_file_id",
        "error_file_id",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    ] {
        assert_eq!(b[k], Value::Null, "{k}");
    }
    assert_eq!(
        b["request_counts"],
        json!({"total": 0, "completed": 0, "failed": 0})
    );
    assert_eq!(
        b["usage"],
        json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
               "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(b["metadata"], json!({"zeta": "1", "alpha": "2"}));
    assert!(
        r.text.find("\"zeta\"").unwrap() < r.text.find("\"alpha\"").unwrap(),
        "metadata keeps its order"
    );

    assert_eq!(ctx.batch(id).await, b);
    assert_eq!(ctx.stats().await["batches_created"], 1);
}

async fn bad_create(ctx: &Ctx, body: Value) -> Value {
    let r = ctx.post("/v1/batches", &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    r.error()
}

#[tokio::test]
async fn bad_parameters_get_400s_with_openai_messages() {
    let ctx = Ctx::new().await;
    let ok = |k: &str, v: Value| {
        let mut b = json!({"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"});
        b[k] = v;
        b
    };
    let e = bad_create(&ctx, ok("endpoint", json!("/v1/invalid/endpoint"))).await;
    assert_eq!(
        e["message"],
        "Invalid value: '/v1/invalid/endpoint'. Supported values are: '/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses', '/v1/moderations', '/v1/images/generations', '/v1/images/edits', and '/v1/videos'."
    );
    assert_eq!(e["param"], "endpoint");
    assert_eq!(e["code"], "invalid_value");

    let e = bad_create(&ctx, ok("completion_window", json!("1h"))).await;
    assert_eq!(
        e["message"],
        "Invalid value: '1h'. Supported values are: '24h'."
    );
    assert_eq!(e["param"], "completion_window");

    let e = bad_create(&ctx, ok("metadata", json!({"tags": ["a"]}))).await;
    assert_eq!(
        e["message"],
        "Invalid type for 'metadata.tags': expected a string, but got an array instead."
    );
    assert_eq!(e["param"], "metadata.tags");
    assert_eq!(e["code"], "invalid_type");

    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let e = bad_create(&ctx, ok("metadata", Value::Object(many))).await;
    assert_eq!(
        e["message"],
        "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with 17 properties instead."
    );
    assert_eq!(e["code"], "object_above_max_properties");
    let e = bad_create(&ctx, ok("metadata", json!({"k": "v".repeat(513)}))).await;
    assert_eq!(e["code"], "string_above_max_length");
    let e = bad_create(&ctx, ok("metadata", json!({"k".repeat(65): "v"}))).await;
    assert_eq!(e["code"], "string_above_max_length");
    // Exactly at the limits is fine.
    let fine: serde_json::Map<String, Value> = (0..16)
        .map(|i| (format!("{i}{}", "k".repeat(62)), json!("v".repeat(512))))
        .collect();
    assert_eq!(
        ctx.post("/v1/batches", &ok("metadata", Value::Object(fine)))
            .await
            .status,
        200
    );

    let e = bad_create(
        &ctx,
        json!({"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    )
    .await;
    assert_eq!(e["message"], "Missing required parameter: 'input_file_id'.");
    assert_eq!(e["code"], "missing_required_parameter");
    let e = bad_create(&ctx, ok("input_file_id", json!(5))).await;
    assert_eq!(
        e["message"],
        "Invalid type for 'input_file_id': expected a string, but got an integer instead."
    );

    let r = ctx.post_raw("/v1/batches", "{not json").await;
    assert_eq!(r.status, 400);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .starts_with("We could not parse the JSON body")
    );
    assert_eq!(ctx.stats().await["batches_created"], 1);
}

#[tokio::test]
async fn unknown_batches_get_404() {
    let ctx = Ctx::new().await;
    let id = "batch_691100ef6ccc8190b684558450911bda";
    for r in [
        ctx.get(&format!("/v1/batches/{id}")).await,
        ctx.post(&format!("/v1/batches/{id}/cancel"), &json!({}))
            .await,
    ] {
        assert_eq!(r.status, 404);
        let e = r.error();
        assert_eq!(e["message"], format!("No batch found with id '{id}'."));
        assert_eq!(e["param"], Value::Null);
        assert_eq!(e["code"], Value::Null);
    }
}

#[tokio::test]
async fn list_pages_newest_first() {
    let ctx = Ctx::new().await;
    let file = ctx
        .upload_lines(&[chat_line("a", "gpt-4o-mini", "hi")])
        .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            ctx.create_batch(&file).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.reverse();
    let page = ctx.get("/v1/batches?limit=2").await.json();
    assert_eq!(page["object"], "list");
    let got: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(page["first_id"], ids[0].as_str());
    assert_eq!(page["last_id"], ids[1].as_str());
    assert_eq!(page["has_more"], true);
    let mut seen = got.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut after = page["last_id"].as_str().unwrap().to_owned();
    loop {
        let p = ctx
            .get(&format!("/v1/batches?limit=2&after={after}"))
            .await
            .json();
        for b in p["data"].as_array().unwrap() {
            seen.push(b["id"].as_str().unwrap().to_owned());
        }
        if p["has_more"] == false {
            break;
        }
        after = p["last_id"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, ids);
    let all = ctx.get("/v1/batches").await;
    assert_eq!(all.json()["data"].as_array().unwrap().len(), 5);
    assert!(
        all.text.contains("{\"id\":\"batch_"),
        "list items keep the key order: {}",
        all.text
    );
    let r = ctx.get("/v1/batches?limit=101").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error()["message"],
        "Invalid 'limit': integer above maximum value. Expected a value less than or equal to 100, but got 101 instead."
    );
}

#[tokio::test]
async fn list_default_limit_is_twenty() {
    let ctx = Ctx::new().await;
    let file = ctx
        .upload_lines(&[chat_line("a", "gpt-4o-mini", "hi")])
        .await;
    for _ in 0..21 {
        ctx.create_batch(&file).await;
    }
    let page = ctx.get("/v1/batches").await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 20);
    assert_eq!(page["has_more"], true);
}
