//! The strict request checks over HTTP: the synchronous answer and the batch error line agree.

use serde_json::{Value, json};

use crate::support::{Ctx, chat_line, jsonl};

fn line(custom_id: &str, body: Value) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})
}

#[tokio::test]
async fn refused_bodies_get_the_same_error_synchronously_and_in_a_batch() {
    let ctx = Ctx::new().await;
    let refused = [
        (
            "unknown",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "reasoning": {"effort": "low"}}),
            json!({"error": {"message": "Unrecognized request argument supplied: reasoning",
                             "type": "invalid_request_error", "param": "reasoning", "code": null}}),
        ),
        (
            "enum",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "service_tier": "turbo"}),
            json!({"error": {"message": "Invalid value: 'turbo'. Supported values are: 'auto', 'default', 'flex', 'scale', 'priority', and 'fast'.",
                             "type": "invalid_request_error", "param": "service_tier", "code": "invalid_value"}}),
        ),
    ];
    for (_, body, expect) in &refused {
        let r = ctx.post("/v1/chat/completions", body).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(&r.json(), expect);
    }
    // Over gpt-4o-mini's 128,000-token window with the 16,384 completion tokens asked for.
    let long = json!({"model": "gpt-4o-mini", "max_completion_tokens": 16_384,
                      "messages": [{"role": "user", "content": "lighthouse ".repeat(115_000)}]});
    let r = ctx.post("/v1/chat/completions", &long).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let expect = r.json();
    let e = &expect["error"];
    assert_eq!(
        (&e["type"], &e["param"], &e["code"]),
        (
            &json!("invalid_request_error"),
            &json!("messages"),
            &json!("context_length_exceeded")
        )
    );
    assert!(
        e["message"].as_str().unwrap().starts_with(
            "This model's maximum context length is 128000 tokens. However, you requested "
        ),
        "{e}"
    );
    let refused: Vec<(&str, Value, Value)> = refused
        .into_iter()
        .chain([("context", long, expect)])
        .collect();

    let mut lines = vec![chat_line("good", "gpt-4o-mini", "hello")];
    lines.extend(refused.iter().map(|(id, body, _)| line(id, body.clone())));
    let id = ctx.batch_of(&lines).await;
    ctx.advance(120.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(
        b["request_counts"],
        json!({"total": 4, "completed": 1, "failed": 3})
    );
    let errors = jsonl(&ctx.content(b["error_file_id"].as_str().unwrap()).await.text);
    assert_eq!(errors.len(), 3);
    for (custom_id, _, expect) in &refused {
        let l = errors
            .iter()
            .find(|l| l["custom_id"] == *custom_id)
            .unwrap_or_else(|| panic!("no error line for {custom_id}"));
        assert_eq!(l["error"], Value::Null);
        assert_eq!(l["response"]["status_code"], 400);
        assert_eq!(&l["response"]["body"], expect, "{custom_id}");
    }
}

#[tokio::test]
async fn unknown_image_parameters_are_refused_synchronously() {
    let ctx = Ctx::new().await;
    let r = ctx
        .post(
            "/v1/images/generations",
            &json!({"model": "gpt-image-1", "prompt": "a red fox", "seed": 7}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Unrecognized request argument supplied: seed",
                         "type": "invalid_request_error", "param": "seed", "code": null}})
    );
}

/// Found by schemathesis with the official spec: values of the wrong type or out of range in the
/// expiry objects were accepted (an explicit null; the spec's JSON-part form of `expires_after`).
#[tokio::test]
async fn expiry_objects_are_checked_in_every_form() {
    let ctx = Ctx::new().await;
    let file = ctx
        .upload_lines(&[chat_line("a", "gpt-4o-mini", "hi")])
        .await;
    let r = ctx
        .post(
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h", "output_expires_after": null}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error()["param"], "output_expires_after");
    assert_eq!(r.error()["code"], "invalid_type");

    let upload = |expires_after: &str| {
        let form = reqwest::multipart::Form::new()
            .text("purpose", "user_data")
            .part(
                "expires_after",
                reqwest::multipart::Part::text(expires_after.to_owned())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"notes".to_vec()).file_name("notes.txt"),
            );
        ctx.http
            .post(ctx.url("/v1/files"))
            .bearer_auth(crate::support::KEY)
            .multipart(form)
            .send()
    };
    for (part, param) in [
        (
            r#"{"anchor": "created_at", "seconds": 3599}"#,
            "expires_after.seconds",
        ),
        (
            r#"{"anchor": "created_at", "seconds": "soon"}"#,
            "expires_after.seconds",
        ),
        (
            r#"{"anchor": "last_active_at", "seconds": 3600}"#,
            "expires_after.anchor",
        ),
        (r#"[3600]"#, "expires_after"),
    ] {
        let resp = upload(part).await.unwrap();
        assert_eq!(resp.status(), 400, "{part}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["param"], param, "{part}: {body}");
    }
    let resp = upload(r#"{"anchor": "created_at", "seconds": 7200}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["expires_at"].as_i64().unwrap() - body["created_at"].as_i64().unwrap(),
        7200
    );
}

/// Found by schemathesis: integer image parameters of the wrong type or out of range were
/// accepted and ignored.
#[tokio::test]
async fn integer_image_parameters_are_type_and_range_checked() {
    let ctx = Ctx::new().await;
    let cases = [
        (
            json!({"partial_images": {"a": 1}}),
            "partial_images",
            "invalid_type",
        ),
        (
            json!({"partial_images": 4}),
            "partial_images",
            "integer_above_max_value",
        ),
        (
            json!({"output_compression": -1}),
            "output_compression",
            "integer_below_min_value",
        ),
        (json!({"n": 0}), "n", "integer_below_min_value"),
        (json!({"user": 7}), "user", "invalid_type"),
    ];
    for (extra, param, code) in cases {
        let mut body = json!({"model": "gpt-image-1", "prompt": "a lighthouse"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = ctx.post("/v1/images/generations", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error()["param"], param, "{body}");
        assert_eq!(r.error()["code"], code, "{body}");
    }
    let fine = json!({"model": "gpt-image-1", "prompt": "a lighthouse", "partial_images": 2,
                      "output_compression": null});
    assert_eq!(ctx.post("/v1/images/generations", &fine).await.status, 200);
}
