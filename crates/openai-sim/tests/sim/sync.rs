//! Synchronous endpoints, the admin clock and stats, the handle API.

use serde_json::{Value, json};

use crate::support::Ctx;

#[tokio::test]
async fn chat_and_images_answer_and_are_counted() {
    let ctx = Ctx::new().await;
    let r = ctx
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "A lighthouse in a storm"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.headers.contains_key("x-ratelimit-limit-requests"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    let r = ctx
        .post(
            "/v1/images/generations",
            &json!({"model": "gpt-image-1", "prompt": "a red fox"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["data"][0]["b64_json"].is_string());
    let r = ctx
        .post(
            "/v1/chat/completions",
            &json!({"model": "no-such-model", "messages": []}),
        )
        .await;
    assert!(r.status.is_client_error());
    let _ = r.error();
    let r = ctx.post_raw("/v1/chat/completions", "{oops").await;
    assert_eq!(r.status, 400);
    assert_eq!(ctx.stats().await["sync_requests"], 3);
}

#[tokio::test]
async fn clock_advance_route_and_handle_agree() {
    let ctx = Ctx::new().await;
    let before = ctx.sim.now();
    let r = ctx
        .http
        .post(ctx.url("/sim/clock/advance?seconds=1000"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["now"].as_i64().unwrap() >= before + 1000);
    ctx.sim.advance_clock(500.0).await;
    assert!(ctx.sim.now() >= before + 1500);
    let s = ctx.sim.stats().await;
    assert!(s.now >= before + 1500);
    let r = ctx
        .http
        .post(ctx.url("/sim/clock/advance?seconds=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn base_url_and_shutdown() {
    let ctx = Ctx::new().await;
    let base = ctx.sim.base_url();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"));
    let url = format!("{base}/files");
    assert_eq!(
        ctx.http
            .get(&url)
            .bearer_auth("k")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    ctx.sim.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).bearer_auth("k").send().await.is_err());
}

#[tokio::test]
async fn serve_on_a_listener_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(openai_sim::serve_with_shutdown(
        listener,
        openai_sim::SimConfig::default().with_frozen_clock(),
        async {
            let _ = rx.await;
        },
    ));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/batches");
    let r = http.get(&url).bearer_auth("k").send().await.unwrap();
    assert_eq!(r.status(), 200);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
}
