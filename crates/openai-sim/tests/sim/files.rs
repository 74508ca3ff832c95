//! `/v1/files`: upload, list, retrieve, download, delete and their errors.

use serde_json::Value;

use crate::support::{Ctx, key_order};

const THIRTY_DAYS: i64 = 2_592_000;

#[tokio::test]
async fn upload_returns_the_file_object_and_stores_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Ctx::with(
        openai_sim::SimConfig::default()
            .with_frozen_clock()
            .with_data_dir(dir.path()),
    )
    .await;
    let body = b"{\"a\": 1}\n".to_vec();
    let r = ctx
        .upload_raw(Some("batch"), "batch_input.jsonl", body.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        key_order(&r.text),
        [
            "object",
            "id",
            "purpose",
            "filename",
            "bytes",
            "created_at",
            "expires_at",
            "status",
            "status_details"
        ]
    );
    let f = r.json();
    let id = f["id"].as_str().unwrap();
    assert!(id.starts_with("file-") && id.len() == 27, "{id}");
    assert!(id[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(f["object"], "file");
    assert_eq!(f["purpose"], "batch");
    assert_eq!(f["filename"], "batch_input.jsonl");
    assert_eq!(f["bytes"], body.len());
    assert_eq!(f["status"], "processed");
    assert_eq!(f["status_details"], Value::Null);
    let created = f["created_at"].as_i64().unwrap();
    assert_eq!(f["expires_at"].as_i64().unwrap(), created + THIRTY_DAYS);
    assert_eq!(std::fs::read(dir.path().join(id)).unwrap(), body);

    let got = ctx.get(&format!("/v1/files/{id}")).await;
    assert_eq!(got.json(), f);

    let c = ctx.content(id).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.headers["content-type"], "application/octet-stream");
    assert_eq!(c.headers["content-length"], body.len().to_string().as_str());
    assert_eq!(
        c.headers["content-disposition"],
        "attachment; filename=\"batch_input.jsonl\""
    );
    assert_eq!(c.text.as_bytes(), body);
    assert_eq!(ctx.stats().await["files_uploaded"], 1);
}

#[tokio::test]
async fn non_batch_purposes_have_no_expiry_and_cannot_be_downloaded() {
    let ctx = Ctx::new().await;
    let r = ctx
        .upload_raw(Some("user_data"), "notes.txt", b"hello".to_vec())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let f = r.json();
    assert_eq!(f["expires_at"], Value::Null);
    let c = ctx.content(f["id"].as_str().unwrap()).await;
    assert_eq!(c.status, 400);
    let e = c.error();
    assert_eq!(
        e["message"],
        "Not allowed to download files of purpose: user_data"
    );
    assert_eq!(e["type"], "invalid_request_error");
}

#[tokio::test]
async fn upload_errors_are_openai_shaped() {
    let ctx = Ctx::new().await;
    let r = ctx.upload_raw(Some("x"), "a.jsonl", b"{}\n".to_vec()).await;
    assert_eq!(r.status, 400);
    let e = r.error();
    assert_eq!(
        e["message"],
        "'x' is not one of ['fine-tune', 'assistants', 'batch', 'user_data', 'vision', 'evals'] - 'purpose'"
    );
    assert_eq!(e["param"], "purpose");

    let r = ctx
        .upload_raw(Some("batch"), "notes.txt", b"{}\n".to_vec())
        .await;
    assert_eq!(r.status, 400);
    let e = r.error();
    assert_eq!(
        e["message"],
        "Invalid file format for Batch API. Must be .jsonl"
    );
    assert_eq!(e["param"], Value::Null);
    assert_eq!(e["code"], Value::Null);
    assert_eq!(
        r.json()["detail"]["message"],
        "Invalid file format for Batch API. Must be .jsonl"
    );

    // Empty or non-JSON batch files are refused at upload; a name without extension is fine.
    assert_eq!(
        ctx.upload_raw(Some("batch"), "a.jsonl", Vec::new())
            .await
            .status,
        400
    );
    assert_eq!(
        ctx.upload_raw(Some("batch"), "a.jsonl", b"nope\n".to_vec())
            .await
            .status,
        400
    );
    assert_eq!(
        ctx.upload_raw(Some("batch"), "upload", b"{}\n".to_vec())
            .await
            .status,
        200
    );

    let r = ctx.upload_raw(None, "a.jsonl", b"{}\n".to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error()["message"],
        "Missing required parameter: 'purpose'."
    );
    assert_eq!(ctx.stats().await["files_uploaded"], 1);
}

#[tokio::test]
async fn big_uploads_stream_through() {
    let ctx = Ctx::new().await;
    let line = format!("{{\"pad\": \"{}\"}}\n", "x".repeat(1000));
    let body: Vec<u8> = line.repeat(5_000).into_bytes(); // ~5 MB, above axum's default limit
    let r = ctx
        .upload_raw(Some("batch"), "big.jsonl", body.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["bytes"], body.len());
    let c = ctx.content(r.json()["id"].as_str().unwrap()).await;
    assert_eq!(c.text.len(), body.len());
}

#[tokio::test]
async fn list_orders_filters_and_pages() {
    let ctx = Ctx::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let purpose = if i == 2 { "user_data" } else { "batch" };
        let r = ctx
            .upload_raw(Some(purpose), &format!("f{i}.jsonl"), b"{}\n".to_vec())
            .await;
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    let all = ctx.get("/v1/files").await.json();
    assert_eq!(all["object"], "list");
    let got: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, newest_first);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], ids[4].as_str());
    assert_eq!(all["last_id"], ids[0].as_str());

    let asc = ctx.get("/v1/files?order=asc&limit=2").await.json();
    let got: Vec<&str> = asc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(asc["has_more"], true);
    let next = ctx
        .get(&format!("/v1/files?order=asc&limit=2&after={}", ids[1]))
        .await
        .json();
    assert_eq!(next["data"][0]["id"], ids[2].as_str());

    let batch_only = ctx.get("/v1/files?purpose=user_data").await.json();
    assert_eq!(batch_only["data"].as_array().unwrap().len(), 1);

    let r = ctx.get("/v1/files?limit=0").await;
    assert_eq!(r.status, 400);
    let e = r.error();
    assert_eq!(
        e["message"],
        "Invalid 'limit': integer below minimum value. Expected a value greater than or equal to 1, but got 0 instead."
    );
    assert_eq!(e["code"], "integer_below_min_value");
    assert_eq!(ctx.get("/v1/files?limit=10001").await.status, 400);
    let r = ctx.get("/v1/files?order=sideways").await;
    assert_eq!(
        r.error()["message"],
        "Invalid value: 'sideways'. Supported values are: 'asc' and 'desc'."
    );
}

#[tokio::test]
async fn delete_then_404() {
    let ctx = Ctx::new().await;
    let id = ctx.upload_lines(&[serde_json::json!({})]).await;
    let r = ctx.delete(&format!("/v1/files/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"id": id, "object": "file", "deleted": true})
    );
    for r in [
        ctx.get(&format!("/v1/files/{id}")).await,
        ctx.content(&id).await,
        ctx.delete(&format!("/v1/files/{id}")).await,
    ] {
        assert_eq!(r.status, 404);
        let e = r.error();
        assert_eq!(e["message"], format!("No such File object: {id}"));
        assert_eq!(e["param"], "id");
        assert_eq!(e["code"], Value::Null);
    }
    assert_eq!(ctx.stats().await["files_deleted"], 1);
}

#[tokio::test]
async fn batch_files_expire_after_thirty_days() {
    let ctx = Ctx::new().await;
    let id = ctx.upload_lines(&[serde_json::json!({})]).await;
    ctx.advance(THIRTY_DAYS as f64 - 100.0).await;
    assert_eq!(ctx.get(&format!("/v1/files/{id}")).await.status, 200);
    ctx.advance(200.0).await;
    assert_eq!(ctx.get(&format!("/v1/files/{id}")).await.status, 404);
}
