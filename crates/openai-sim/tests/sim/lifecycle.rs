//! Batch transitions on the simulated clock: completed, failed, per-request failures, expired,
//! cancelled, token limits, output files and billing.

use std::collections::BTreeSet;

use openai_sim::{BatchTiming, SimConfig};
use serde_json::{Value, json};

use crate::support::{Ctx, chat_line, is_hex, jsonl, refused_line};

fn lines(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| chat_line(&format!("req-{i}"), "gpt-4o-mini", &format!("Say {i}")))
        .collect()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Default timings: validated at +2 s, in_progress at +12 s, requests finish from +32 s every
/// 0.5 s, counts move every 10 s, finalizing lasts 3 s, cancelling 30 s.
#[tokio::test]
async fn validating_in_progress_finalizing_completed() {
    let ctx = Ctx::new().await;
    let id = ctx.batch_of(&lines(3)).await;
    let b = ctx.batch(&id).await;
    let created = int(&b["created_at"]);

    ctx.advance(5.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "validating");
    assert_eq!(b["request_counts"]["total"], 0);

    ctx.advance(10.0).await; // +15
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "in_progress");
    assert!(
        (created + 11..=created + 13).contains(&int(&b["in_progress_at"])),
        "{b}"
    );
    assert_eq!(
        b["request_counts"],
        json!({"total": 3, "completed": 0, "failed": 0})
    );
    assert_eq!(b["output_file_id"], Value::Null);

    ctx.advance(19.5).await; // +34.5: all finished at +33
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "finalizing", "{b}");
    assert_eq!(
        b["request_counts"],
        json!({"total": 3, "completed": 3, "failed": 0})
    );
    assert_eq!(b["output_file_id"], Value::Null);
    assert_eq!(b["error_file_id"], Value::Null);
    assert!(b["finalizing_at"].is_i64());

    ctx.advance(5.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "completed", "{b}");
    assert!(b["completed_at"].is_i64());
    assert!(int(&b["in_progress_at"]) <= int(&b["finalizing_at"]));
    assert!(int(&b["finalizing_at"]) <= int(&b["completed_at"]));
    assert_eq!(b["error_file_id"], Value::Null);
    assert_eq!(b["errors"], Value::Null);
    assert_eq!(b["model"], "gpt-4o-mini-2024-07-18");
    let usage = &b["usage"];
    assert!(int(&usage["input_tokens"]) > 0);
    assert_eq!(
        int(&usage["total_tokens"]),
        int(&usage["input_tokens"]) + int(&usage["output_tokens"])
    );

    let out_id = b["output_file_id"].as_str().unwrap();
    let f = ctx.get(&format!("/v1/files/{out_id}")).await.json();
    assert_eq!(f["purpose"], "batch_output");
    assert_eq!(f["filename"], format!("{id}_output.jsonl"));
    let c = ctx.content(out_id).await;
    assert_eq!(
        c.headers["content-disposition"],
        format!("attachment; filename=\"{id}_output.jsonl\"").as_str()
    );
    assert_eq!(int(&f["bytes"]) as usize, c.text.len());
    let out = jsonl(&c.text);
    assert_eq!(out.len(), 3);
    let mut in_tokens = 0;
    for (raw, line) in c.text.lines().zip(&out) {
        assert!(
            raw.starts_with("{\"id\": \"batch_req_"),
            "Python separators: {raw}"
        );
        assert!(raw.contains(", \"custom_id\": \""), "{raw}");
        let lid = line["id"].as_str().unwrap();
        assert!(is_hex(&lid["batch_req_".len()..], 32), "{lid}");
        assert!(is_hex(line["response"]["request_id"].as_str().unwrap(), 32));
        assert_eq!(line["response"]["status_code"], 200);
        assert_eq!(line["error"], Value::Null);
        assert_eq!(line["response"]["body"]["object"], "chat.completion");
        in_tokens += int(&line["response"]["body"]["usage"]["prompt_tokens"]);
    }
    assert_eq!(in_tokens, int(&usage["input_tokens"]));
    let ids: BTreeSet<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["req-0", "req-1", "req-2"]));

    let stats = ctx.stats().await;
    assert_eq!(stats["batches"][&id]["requests_executed"], 3);
    assert_eq!(stats["batches"][&id]["requests_billed"], 3);
    assert_eq!(stats["batch_requests_billed"], 3);
    // Reading again runs nothing again.
    ctx.advance(1000.0).await;
    let _ = ctx.batch(&id).await;
    assert_eq!(ctx.stats().await["batch_requests_executed"], 3);
}

#[tokio::test]
async fn output_order_differs_from_input_order_and_counts_move_in_steps() {
    let ctx = Ctx::new().await;
    let id = ctx.batch_of(&lines(40)).await;
    ctx.advance(12.5).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        ctx.advance(5.0).await;
        let b = ctx.batch(&id).await;
        if b["status"] == "in_progress" {
            seen.push(int(&b["request_counts"]["completed"]));
        }
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        seen.iter().any(|&c| c > 0 && c < 40),
        "some progress shows mid-run: {seen:?}"
    );
    // Coarse steps: two reads within one 10 s step show the same count.
    assert!(seen.windows(2).any(|w| w[0] == w[1]), "{seen:?}");
    ctx.advance(100.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "completed");
    let out = jsonl(
        &ctx.content(b["output_file_id"].as_str().unwrap())
            .await
            .text,
    );
    let order: Vec<&str> = out
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let input: Vec<String> = (0..40).map(|i| format!("req-{i}")).collect();
    assert_ne!(order, input.iter().map(String::as_str).collect::<Vec<_>>());
    let set: BTreeSet<&str> = order.iter().copied().collect();
    assert_eq!(set.len(), 40);
}

#[tokio::test]
async fn bad_lines_fail_validation_with_every_problem() {
    let ctx = Ctx::new().await;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        serde_json::to_string(&chat_line("ok", "gpt-4o-mini", "hi"))
            .unwrap()
            .as_bytes(),
    );
    bytes.extend_from_slice(b"\n{not json\n");
    bytes.extend_from_slice(b"{\"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"gpt-4o-mini\", \"messages\": []}}\n");
    bytes.extend_from_slice(b"{\"custom_id\": \"u\", \"method\": \"POST\", \"url\": \"/v1/embeddings\", \"body\": {\"model\": \"gpt-4o-mini\", \"messages\": []}}\n");
    let r = ctx.upload_raw(Some("batch"), "bad.jsonl", bytes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = ctx.create_batch(r.json()["id"].as_str().unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ctx.advance(3.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "failed", "{b}");
    assert!(b["failed_at"].is_i64());
    assert_eq!(b["in_progress_at"], Value::Null);
    assert_eq!(
        b["request_counts"],
        json!({"total": 0, "completed": 0, "failed": 0})
    );
    assert_eq!(b["errors"]["object"], "list");
    let data = b["errors"]["data"].as_array().unwrap();
    let got: Vec<(String, i64)> = data
        .iter()
        .map(|e| (e["code"].as_str().unwrap().to_owned(), int(&e["line"])))
        .collect();
    assert_eq!(
        got,
        [
            ("invalid_json_line".to_owned(), 2),
            ("missing_required_parameter".to_owned(), 3),
            ("invalid_url".to_owned(), 4)
        ]
    );
    assert_eq!(
        data[0]["message"],
        "This line is not parseable as valid JSON."
    );
    assert_eq!(
        data[1]["message"],
        "Missing required parameter: 'custom_id'."
    );
    assert_eq!(data[1]["param"], "custom_id");
    assert_eq!(
        data[2]["message"],
        "The URL provided for this request does not match the batch endpoint."
    );
    // A failed batch cannot be cancelled, and nothing ran.
    let r = ctx
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.error()["message"],
        "Cannot cancel a batch with status 'failed'."
    );
    assert_eq!(ctx.stats().await["batch_requests_executed"], 0);
}

#[tokio::test]
async fn unknown_input_file_is_accepted_then_fails() {
    let ctx = Ctx::new().await;
    let b = ctx.create_batch("file-DoesNotExist000000000").await;
    assert_eq!(b["status"], "validating");
    ctx.advance(3.0).await;
    let b = ctx.batch(b["id"].as_str().unwrap()).await;
    assert_eq!(b["status"], "failed");
    let e = &b["errors"]["data"][0];
    assert_eq!(e["code"], "invalid_request");
    assert_eq!(e["param"], "file_id");
    assert_eq!(e["line"], Value::Null);
    let m = e["message"].as_str().unwrap();
    assert!(
        m.starts_with("Cannot find file file-DoesNotExist000000000, or organization org-")
            && m.ends_with(" does not have access to it."),
        "{m}"
    );
}

#[tokio::test]
async fn refused_requests_go_to_the_error_file_and_count_as_failed() {
    let ctx = Ctx::new().await;
    let good = chat_line("good", "gpt-5-mini", "hello");
    let id = ctx
        .batch_of(&[good.clone(), refused_line("bad-1"), refused_line("bad-2")])
        .await;
    ctx.advance(60.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(
        b["request_counts"],
        json!({"total": 3, "completed": 1, "failed": 2})
    );
    let err = ctx.content(b["error_file_id"].as_str().unwrap()).await;
    let f = ctx
        .get(&format!(
            "/v1/files/{}",
            b["error_file_id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(f["filename"], format!("{id}_error.jsonl"));
    let lines = jsonl(&err.text);
    assert_eq!(lines.len(), 2);
    assert!(
        err.text.contains("\"body\": {\"error\": {\"message\": "),
        "{}",
        err.text
    );
    for l in &lines {
        assert_eq!(l["error"], Value::Null);
        assert_eq!(l["response"]["status_code"], 400);
        let e = &l["response"]["body"]["error"];
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].is_string());
    }
    let out = jsonl(
        &ctx.content(b["output_file_id"].as_str().unwrap())
            .await
            .text,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["custom_id"], "good");
    let stats = ctx.stats().await;
    assert_eq!(stats["batches"][&id]["requests_executed"], 3);
    assert_eq!(stats["batches"][&id]["requests_billed"], 1);

    // Sync and batch answers agree.
    let sync = ctx.post("/v1/chat/completions", &good["body"]).await.json();
    assert_eq!(sync["choices"], out[0]["response"]["body"]["choices"]);
    assert_eq!(sync["usage"], out[0]["response"]["body"]["usage"]);
}

#[tokio::test]
async fn nothing_succeeded_means_no_output_file() {
    let ctx = Ctx::new().await;
    let id = ctx.batch_of(&[refused_line("a"), refused_line("b")]).await;
    ctx.advance(60.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "completed");
    assert_eq!(b["output_file_id"], Value::Null);
    assert!(b["error_file_id"].is_string());
    assert_eq!(
        b["request_counts"],
        json!({"total": 2, "completed": 0, "failed": 2})
    );
    assert_eq!(b["usage"]["total_tokens"], 0);
}

#[tokio::test]
async fn cancel_keeps_finished_lines_and_cancels_the_rest() {
    let ctx = Ctx::new().await;
    let id = ctx.batch_of(&lines(10)).await;
    ctx.advance(34.0).await; // in_progress since +12; lines finish from +32, one per 0.5 s
    let before = ctx.batch(&id).await;
    assert_eq!(before["status"], "in_progress");
    let r = ctx
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains('\n'), "cancel answers compact JSON");
    let b = r.json();
    assert_eq!(b["status"], "cancelling");
    assert!(b["cancelling_at"].is_i64());
    assert_eq!(b["output_file_id"], Value::Null);
    // Cancelling again is fine.
    let again = ctx
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["status"], "cancelling");
    let done = int(&b["request_counts"]["completed"]);

    ctx.advance(31.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "cancelled", "{b}");
    assert!(b["cancelled_at"].is_i64());
    assert_eq!(b["request_counts"]["total"], 10);
    assert_eq!(
        b["request_counts"]["failed"], 0,
        "cancelled lines are not failures"
    );
    let ran = int(&b["request_counts"]["completed"]);
    assert!(ran >= done && ran > 0 && ran < 10, "{b}");
    let out = jsonl(
        &ctx.content(b["output_file_id"].as_str().unwrap())
            .await
            .text,
    );
    assert_eq!(out.len() as i64, ran);
    let err = jsonl(&ctx.content(b["error_file_id"].as_str().unwrap()).await.text);
    assert_eq!(err.len() as i64, 10 - ran);
    for l in &err {
        assert_eq!(l["response"], Value::Null);
        assert_eq!(l["error"]["code"], "batch_cancelled");
    }
    let again = ctx
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["status"], "cancelled");
    let stats = ctx.stats().await;
    assert_eq!(
        stats["batches"][&id]["requests_executed"].as_i64(),
        Some(ran)
    );
}

#[tokio::test]
async fn cancel_while_validating_and_409_once_completed() {
    let ctx = Ctx::new().await;
    let id = ctx.batch_of(&lines(2)).await;
    let r = ctx
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    let b = r.json();
    assert_eq!(b["status"], "cancelling");
    assert!(int(&b["cancelling_at"]) - int(&b["created_at"]) <= 1);
    assert_eq!(b["in_progress_at"], Value::Null);
    ctx.advance(40.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "cancelled");
    assert_eq!(ctx.stats().await["batch_requests_executed"], 0);

    let id = ctx.batch_of(&lines(1)).await;
    ctx.advance(60.0).await;
    assert_eq!(ctx.batch(&id).await["status"], "completed");
    let r = ctx
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 409);
    let e = r.error();
    assert_eq!(
        e["message"],
        "Cannot cancel a batch with status 'completed'."
    );
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], Value::Null);
}

#[tokio::test]
async fn the_window_passing_expires_unfinished_requests() {
    // Work so slow that only some requests finish within 24 h.
    let mut timing = BatchTiming::default();
    timing.per_request_secs = 30_000.0;
    let ctx = Ctx::with(SimConfig::default().with_frozen_clock().with_timing(timing)).await;
    let id = ctx.batch_of(&lines(5)).await;
    ctx.advance(86_400.0 + 10.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "expired", "{b}");
    assert_eq!(b["expired_at"], b["expires_at"]);
    assert_eq!(
        b["request_counts"],
        json!({"total": 5, "completed": 3, "failed": 0})
    );
    let out = jsonl(
        &ctx.content(b["output_file_id"].as_str().unwrap())
            .await
            .text,
    );
    assert_eq!(out.len(), 3);
    let err = jsonl(&ctx.content(b["error_file_id"].as_str().unwrap()).await.text);
    assert_eq!(err.len(), 2);
    for l in &err {
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(l["response"], Value::Null);
        assert_eq!(
            l["error"],
            json!({"code": "batch_expired", "message": "This request could not be executed before the completion window expired."})
        );
    }
    let r = ctx
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.error()["message"],
        "Cannot cancel a batch with status 'expired'."
    );
    let stats = ctx.stats().await;
    assert_eq!(stats["batches"][&id]["requests_billed"], 3);
}

#[tokio::test]
async fn enqueued_token_limit_fails_the_batch_over_it() {
    // Measure one batch's estimate first.
    let probe = Ctx::new().await;
    let pid = probe.batch_of(&lines(4)).await;
    probe.advance(3.0).await;
    let tokens = probe.stats().await["batches"][&pid]["estimated_tokens"]
        .as_u64()
        .unwrap();
    assert!(tokens > 0);

    let limit = tokens + tokens / 2;
    let ctx = Ctx::with(
        SimConfig::default()
            .with_frozen_clock()
            .with_token_limit("gpt-4o-mini", limit),
    )
    .await;
    let first = ctx.batch_of(&lines(4)).await;
    let second = ctx.batch_of(&lines(4)).await;
    let other_model = ctx.batch_of(&[chat_line("x", "gpt-4o", "hi")]).await;
    ctx.advance(15.0).await;
    assert_eq!(ctx.batch(&first).await["status"], "in_progress");
    assert_eq!(ctx.batch(&other_model).await["status"], "in_progress");
    let b = ctx.batch(&second).await;
    assert_eq!(b["status"], "failed");
    let e = &b["errors"]["data"][0];
    assert_eq!(e["code"], "token_limit_exceeded");
    assert_eq!(e["line"], Value::Null);
    let m = e["message"].as_str().unwrap();
    assert!(
        m.starts_with("Enqueued token limit reached for gpt-4o-mini in organization org-"),
        "{m}"
    );
    assert!(
        m.ends_with("Please try again once some in_progress batches have been completed."),
        "{m}"
    );
    assert!(
        m.contains(&format!("Limit: {limit} enqueued tokens.")) || limit >= 1000,
        "{m}"
    );

    // Once the first is done, the same input fits again.
    ctx.advance(60.0).await;
    assert_eq!(ctx.batch(&first).await["status"], "completed");
    let third = ctx.batch_of(&lines(4)).await;
    ctx.advance(15.0).await;
    assert_eq!(ctx.batch(&third).await["status"], "in_progress");
}

#[tokio::test]
async fn time_scale_runs_a_batch_to_completion_in_real_time() {
    // Default timings take about 36 simulated seconds for 3 requests: 0.12 s at 300x.
    let ctx = Ctx::with(SimConfig::default().with_time_scale(300.0)).await;
    let id = ctx.batch_of(&lines(3)).await;
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    loop {
        let b = ctx.batch(&id).await;
        let s = b["status"].as_str().unwrap().to_owned();
        if statuses.last() != Some(&s) {
            statuses.push(s.clone());
        }
        if s == "completed" {
            assert!(b["output_file_id"].is_string());
            break;
        }
        // A liveness bound, not a timing assertion: 36 simulated seconds at 300x is ~0.12 s,
        // but a loaded CI machine may be much slower; only a stuck clock takes this long.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the batch never completed: {statuses:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // How many states a poll sees depends on the machine's load; their order does not.
    let order = ["validating", "in_progress", "finalizing", "completed"];
    let ranks: Vec<usize> = statuses
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|o| o == s)
                .expect("a lifecycle state")
        })
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");
}

#[tokio::test]
async fn unknown_models_fail_validation_on_every_line() {
    let ctx = Ctx::new().await;
    let id = ctx
        .batch_of(&[
            chat_line("a", "nonexistent-model-xyz", "hi"),
            chat_line("b", "nonexistent-model-xyz", "hi"),
        ])
        .await;
    ctx.advance(3.0).await;
    let b = ctx.batch(&id).await;
    assert_eq!(b["status"], "failed", "{b}");
    let data = b["errors"]["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["code"], "model_not_found");
    assert_eq!(data[0]["param"], "body.model");
    assert_eq!(data[1]["line"], 2);
    assert_eq!(
        data[0]["message"],
        "The provided model 'nonexistent-model-xyz' is not supported by the Batch API."
    );
    let stats = ctx.stats().await;
    assert_eq!(
        stats["batch_requests_executed"], 0,
        "the check runs nothing billable"
    );
}

/// Whatever the first line holds (no messages, a bad parameter, an image for a text model),
/// an unknown model fails validation by name: the check does not depend on the line being
/// answerable.
#[tokio::test]
async fn an_unknown_model_fails_validation_whatever_the_line_holds() {
    let ctx = Ctx::new().await;
    let line = |id: &str, body: &str| {
        serde_json::json!({
            "custom_id": id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": serde_json::from_str::<serde_json::Value>(body).unwrap(),
        })
    };
    let bodies = [
        r#"{"model":"nonexistent-model-xyz","messages":[]}"#,
        r#"{"model":"nonexistent-model-xyz","messages":[{"role":"user","content":""}],"temperature":7}"#,
        r#"{"model":"nonexistent-model-xyz","messages":[{"role":"user","content":"hi"}],"max_tokens":0}"#,
    ];
    for body in bodies {
        let id = ctx.batch_of(&[line("a", body), line("b", body)]).await;
        ctx.advance(30.0).await;
        let b = ctx.batch(&id).await;
        assert_eq!(b["status"], "failed", "{body}: {b}");
        let codes: Vec<&str> = b["errors"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["code"].as_str())
            .collect();
        assert_eq!(codes, ["model_not_found", "model_not_found"], "{body}: {b}");
    }
}

#[tokio::test]
async fn output_expires_after_sets_the_output_files_lifetime() {
    let ctx = Ctx::new().await;
    let file = ctx.upload_lines(&lines(1)).await;
    let r = ctx
        .post(
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h",
                    "output_expires_after": {"anchor": "created_at", "seconds": 7200}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    ctx.advance(60.0).await;
    let b = ctx.batch(&id).await;
    let out = ctx
        .get(&format!(
            "/v1/files/{}",
            b["output_file_id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(int(&out["expires_at"]), int(&out["created_at"]) + 7200);
    let r = ctx
        .post(
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h",
                    "output_expires_after": {"anchor": "created_at", "seconds": 60}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["code"], "integer_below_min_value");
}
