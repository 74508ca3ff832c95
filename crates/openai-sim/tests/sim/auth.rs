//! Authentication, common headers and unknown routes.

use openai_sim::SimConfig;
use serde_json::Value;

use crate::support::{Ctx, KEY, is_hex};

#[tokio::test]
async fn missing_key_gets_openais_401() {
    let ctx = Ctx::new().await;
    let r = ctx.http.get(ctx.url("/v1/batches")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys."
    );
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], Value::Null);
    assert_eq!(v["error"]["code"], Value::Null);
    let r = ctx
        .http
        .get(ctx.url("/v1/files"))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn basic_auth_with_a_blank_username_is_the_other_form_the_401_names() {
    let good = "sk-good-key-000000000000";
    let ctx = Ctx::with(SimConfig::default().with_api_keys([good])).await;
    let status = |user: &'static str, password: &'static str| {
        let req = ctx
            .http
            .get(ctx.url("/v1/files"))
            .basic_auth(user, Some(password));
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(status("", good).await, 200);
    assert_eq!(status("", "sk-wrong-key-00000000000").await, 401);
    // Not the blank username the message asks for: no key was given.
    let r = ctx
        .http
        .get(ctx.url("/v1/files"))
        .basic_auth("me", Some(good))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], Value::Null);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You didn't provide an API key.")
    );
}

#[tokio::test]
async fn wrong_key_is_masked_and_right_key_passes() {
    let good = "sk-good-key-000000000000";
    let ctx = Ctx::with(SimConfig::default().with_api_keys([good])).await;
    let wrong = format!("sk-VKMIs{}wjh3", "x".repeat(39));
    let r = ctx
        .http
        .get(ctx.url("/v1/files"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        format!(
            "Incorrect API key provided: sk-VKMIs{}wjh3. You can find your API key at https://platform.openai.com/account/api-keys.",
            "*".repeat(39)
        )
    );
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let r = ctx
        .http
        .get(ctx.url("/v1/files"))
        .bearer_auth("kk")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect API key provided: kk.")
    );
    let r = ctx
        .http
        .get(ctx.url("/v1/files"))
        .bearer_auth(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The default accepts any non-empty key.
    let open = Ctx::new().await;
    assert_eq!(open.get("/v1/files").await.status, 200);
    let _ = KEY;
}

#[tokio::test]
async fn every_answer_carries_openai_headers() {
    let ctx = Ctx::new().await;
    for r in [
        ctx.get("/v1/files").await,
        ctx.get("/v1/batches/batch_nope").await,
    ] {
        let rid = r.headers["x-request-id"].to_str().unwrap();
        assert!(rid.starts_with("req_") && is_hex(&rid[4..], 32), "{rid}");
        assert_eq!(r.headers["openai-version"], "2020-10-01");
        assert!(
            r.headers["openai-processing-ms"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert!(r.headers.contains_key("openai-organization"));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let r = ctx.http.get(ctx.url("/sim/stats")).send().await.unwrap();
    assert!(r.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn unknown_routes_and_methods_get_invalid_url() {
    let ctx = Ctx::new().await;
    let r = ctx.get("/v1/nothing/here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()["message"], "Invalid URL (GET /v1/nothing/here)");
    let r = ctx.delete("/v1/batches").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()["message"], "Invalid URL (DELETE /v1/batches)");
}
