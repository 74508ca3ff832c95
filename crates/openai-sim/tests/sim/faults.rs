//! Injected faults: HTTP errors, resets, slowness, truncated downloads, forced batch outcomes,
//! and their counters.

use std::time::{Duration, Instant};

use openai_sim::{BatchOutcome, BatchOutcomeRule, FaultConfig, FaultKind, FaultRule, SimConfig};
use serde_json::{Value, json};

use crate::support::{Ctx, chat_line, jsonl};

fn with_rules(rules: Vec<FaultRule>) -> SimConfig {
    let mut f = FaultConfig::default();
    for r in rules {
        f = f.with_rule(r);
    }
    SimConfig::default().with_frozen_clock().with_faults(f)
}

#[tokio::test]
async fn rate_limit_then_success_and_nothing_created_twice() {
    let ctx = Ctx::with(with_rules(vec![
        FaultRule::new(FaultKind::RateLimit)
            .on("POST", "/v1/batches")
            .next(1)
            .retry_after_secs(2),
    ]))
    .await;
    let file = ctx
        .upload_lines(&[chat_line("a", "gpt-4o-mini", "hi")])
        .await;
    let body = json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let r = ctx.post("/v1/batches", &body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "2");
    let e = r.error();
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit reached for requests in organization org-")
    );
    assert!(r.headers.contains_key("x-request-id"));
    assert_eq!(ctx.post("/v1/batches", &body).await.status, 200);
    let stats = ctx.stats().await;
    assert_eq!(stats["batches_created"], 1);
    assert_eq!(stats["faults"]["rate_limit"], 1);
}

#[tokio::test]
async fn server_errors_502_503() {
    let ctx = Ctx::with(with_rules(vec![
        FaultRule::new(FaultKind::ServerError)
            .on("GET", "/v1/files")
            .next(1),
        FaultRule::new(FaultKind::BadGateway)
            .on("GET", "/v1/files")
            .next(1),
        FaultRule::new(FaultKind::ServiceUnavailable)
            .on("GET", "/v1/files")
            .next(1),
    ]))
    .await;
    let codes: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(ctx.get("/v1/files").await.status.as_u16());
        }
        v
    };
    assert_eq!(codes, [500, 502, 503, 200]);
    let r = ctx.get("/v1/batches").await;
    assert_eq!(r.status, 200, "other routes are untouched");
    let f = &ctx.stats().await["faults"];
    assert_eq!(f["server_error"], 1);
    assert_eq!(f["bad_gateway"], 1);
    assert_eq!(f["service_unavailable"], 1);
}

#[tokio::test]
async fn connection_reset_drops_the_connection_without_an_answer() {
    let ctx = Ctx::with(with_rules(vec![
        FaultRule::new(FaultKind::ConnectionReset)
            .on("POST", "/v1/files")
            .next(1),
    ]))
    .await;
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"{}\n".to_vec()).file_name("a.jsonl"),
        );
    let err = ctx
        .http
        .post(ctx.url("/v1/files"))
        .bearer_auth("sk-x")
        .multipart(form)
        .send()
        .await
        .expect_err("the connection is dropped");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    assert_eq!(
        ctx.upload_raw(Some("batch"), "a.jsonl", b"{}\n".to_vec())
            .await
            .status,
        200
    );
    let stats = ctx.stats().await;
    assert_eq!(stats["faults"]["connection_reset"], 1);
    assert_eq!(stats["files_uploaded"], 1);
}

#[tokio::test]
async fn slow_responses_wait() {
    let ctx = Ctx::with(with_rules(vec![
        FaultRule::new(FaultKind::Slow)
            .on("GET", "/v1/batches")
            .next(1)
            .delay_ms(300),
    ]))
    .await;
    let t = Instant::now();
    assert_eq!(ctx.get("/v1/batches").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(ctx.get("/v1/batches").await.status, 200);
    assert_eq!(ctx.stats().await["faults"]["slow"], 1);
}

#[tokio::test]
async fn truncated_download_promises_more_than_it_sends() {
    let ctx = Ctx::with(with_rules(vec![
        FaultRule::new(FaultKind::TruncatedDownload)
            .on("GET", "/v1/files/*/content")
            .next(1),
    ]))
    .await;
    let id = ctx
        .upload_lines(&[chat_line("a", "gpt-4o-mini", &"long text ".repeat(200))])
        .await;
    let resp = ctx
        .http
        .get(ctx.url(&format!("/v1/files/{id}/content")))
        .bearer_auth("sk-x")
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    let promised = resp.content_length().unwrap();
    assert!(promised > 100);
    assert!(resp.bytes().await.is_err(), "the body ends early");
    // The next download is whole.
    let c = ctx.content(&id).await;
    assert_eq!(c.text.len() as u64, promised);
    assert_eq!(ctx.stats().await["faults"]["truncated_download"], 1);
}

#[tokio::test]
async fn probability_rules_are_seeded() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let f = FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::ServerError)
                .on("GET", "/v1/files")
                .probability(0.5),
        );
        let ctx = Ctx::with(
            SimConfig::default()
                .with_frozen_clock()
                .with_seed(seed)
                .with_faults(f),
        )
        .await;
        let mut v = Vec::new();
        for _ in 0..16 {
            v.push(ctx.get("/v1/files").await.status.as_u16());
        }
        v
    }
    let a = pattern(7).await;
    assert_eq!(a, pattern(7).await);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn forced_outcomes_fail_expire_and_stall() {
    let faults = FaultConfig::default()
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Fail).next(1))
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Expire).next(1))
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Stall).next(1));
    let ctx = Ctx::with(SimConfig::default().with_frozen_clock().with_faults(faults)).await;
    let lines: Vec<Value> = (0..4)
        .map(|i| chat_line(&format!("r{i}"), "gpt-4o-mini", "hi"))
        .collect();
    let failed = ctx.batch_of(&lines).await;
    let expired = ctx.batch_of(&lines).await;
    let stalled = ctx.batch_of(&lines).await;
    let normal = ctx.batch_of(&lines).await;

    ctx.advance(3.0).await;
    let b = ctx.batch(&failed).await;
    assert_eq!(b["status"], "failed");
    assert!(b["errors"]["data"][0]["code"].is_string());

    ctx.advance(3600.0).await;
    assert_eq!(ctx.batch(&normal).await["status"], "completed");
    let s = ctx.batch(&stalled).await;
    assert_eq!(s["status"], "in_progress");
    assert_eq!(
        s["request_counts"],
        json!({"total": 4, "completed": 0, "failed": 0})
    );
    let e = ctx.batch(&expired).await;
    assert_eq!(e["status"], "in_progress");
    assert_eq!(e["request_counts"]["completed"], 2);

    ctx.advance(86_400.0).await;
    let e = ctx.batch(&expired).await;
    assert_eq!(e["status"], "expired");
    assert_eq!(
        e["request_counts"],
        json!({"total": 4, "completed": 2, "failed": 0})
    );
    assert_eq!(
        jsonl(
            &ctx.content(e["output_file_id"].as_str().unwrap())
                .await
                .text
        )
        .len(),
        2
    );
    let errs = jsonl(&ctx.content(e["error_file_id"].as_str().unwrap()).await.text);
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|l| l["error"]["code"] == "batch_expired"));
    let s = ctx.batch(&stalled).await;
    assert_eq!(s["status"], "expired");
    assert_eq!(s["output_file_id"], Value::Null);
    assert_eq!(
        s["request_counts"],
        json!({"total": 4, "completed": 0, "failed": 0})
    );

    let f = &ctx.stats().await["faults"];
    assert_eq!(f["batch_fail"], 1);
    assert_eq!(f["batch_expire"], 1);
    assert_eq!(f["batch_stall"], 1);
}

#[tokio::test]
async fn forced_outcomes_cancel_and_token_limit() {
    let faults = FaultConfig::default()
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::TokenLimit).next(1))
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Cancel).next(1));
    let ctx = Ctx::with(SimConfig::default().with_frozen_clock().with_faults(faults)).await;
    let lines: Vec<Value> = (0..4)
        .map(|i| chat_line(&format!("r{i}"), "gpt-4o-mini", "hi"))
        .collect();
    let refused = ctx.batch_of(&lines).await;
    let cancelled = ctx.batch_of(&lines).await;

    ctx.advance(3.0).await;
    let b = ctx.batch(&refused).await;
    assert_eq!(b["status"], "failed");
    assert_eq!(b["errors"]["data"][0]["code"], "token_limit_exceeded");
    assert!(
        b["errors"]["data"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Enqueued token limit reached for gpt-4o-mini")
    );

    ctx.advance(3600.0).await;
    let c = ctx.batch(&cancelled).await;
    assert_eq!(c["status"], "cancelled");
    assert_eq!(
        c["request_counts"],
        json!({"total": 4, "completed": 2, "failed": 0})
    );
    assert!(c["cancelling_at"].is_i64() && c["cancelled_at"].is_i64());
    let out = jsonl(
        &ctx.content(c["output_file_id"].as_str().unwrap())
            .await
            .text,
    );
    assert_eq!(out.len(), 2);
    let errs = jsonl(&ctx.content(c["error_file_id"].as_str().unwrap()).await.text);
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|l| l["error"]["code"] == "batch_cancelled"));

    // Per custom id: each of the two lines that ran was billed once, in the cancelled batch.
    let by_id = &ctx.get("/sim/stats/requests").await.json()["requests"];
    let billed: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(by_id.as_object().unwrap().len(), 2);
    for id in billed {
        assert_eq!(by_id[id]["billed"], 1);
        assert_eq!(by_id[id]["executed"], 1);
        assert_eq!(by_id[id]["batches"], json!([cancelled]));
    }

    let f = &ctx.stats().await["faults"];
    assert_eq!(f["batch_token_limit"], 1);
    assert_eq!(f["batch_cancel"], 1);
}

#[tokio::test]
async fn faults_load_from_toml_and_json_files_and_can_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("faults.toml");
    std::fs::write(
        &toml_path,
        "[[rules]]\nmethod = \"GET\"\npath = \"/v1/batches\"\nfault = \"service_unavailable\"\nnext = 1\n",
    )
    .unwrap();
    let f = FaultConfig::from_file(&toml_path).unwrap();
    let ctx = Ctx::with(SimConfig::default().with_frozen_clock().with_faults(f)).await;
    assert_eq!(ctx.get("/v1/batches").await.status, 503);
    assert_eq!(ctx.get("/v1/batches").await.status, 200);

    let json_path = dir.path().join("faults.json");
    std::fs::write(
        &json_path,
        r#"{"rules": [{"path": "/v1/batches", "fault": "server_error", "next": 1}]}"#,
    )
    .unwrap();
    ctx.sim
        .set_faults(FaultConfig::from_file(&json_path).unwrap());
    assert_eq!(ctx.get("/v1/batches").await.status, 500);

    let r = ctx
        .http
        .post(ctx.url("/sim/faults"))
        .body(r#"{"rules": [{"path": "/v1/batches", "fault": "bad_gateway", "next": 1}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ctx.get("/v1/batches").await.status, 502);
    assert_eq!(ctx.get("/v1/batches").await.status, 200);
    let f = &ctx.stats().await["faults"];
    assert_eq!(f["service_unavailable"], 1);
    assert_eq!(f["server_error"], 1);
    assert_eq!(f["bad_gateway"], 1);

    std::fs::write(&toml_path, "[[rules]]\nfault = \"meteor\"\n").unwrap();
    assert!(FaultConfig::from_file(&toml_path).is_err());
}
