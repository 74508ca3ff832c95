//! The exact HTTP the client sends, pinned with wiremock against the OpenAI spec: paths,
//! methods, headers, multipart fields, JSON bodies and list query parameters; and how answers
//! and errors are read.

use std::collections::BTreeMap;
use std::time::Duration;

use batch_client::{
    ApiKey, BatchListQuery, BatchStatus, ClientConfig, CreateBatchRequest, Error, FileListQuery,
    OpenAiClient, RetryPolicy,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-wiremock-abcdef0123456789";

fn client(server: &MockServer) -> OpenAiClient {
    let config = ClientConfig::new(format!("{}/v1", server.uri()), ApiKey::new(KEY))
        .with_organization("org-test")
        .with_project("proj_test")
        .with_retry(RetryPolicy::fast());
    OpenAiClient::new(config).unwrap()
}

fn batch_json(id: &str, status: &str) -> Value {
    json!({"id": id, "object": "batch", "endpoint": "/v1/chat/completions", "model": null,
           "errors": null, "input_file_id": "file-in", "completion_window": "24h", "status": status,
           "output_file_id": null, "error_file_id": null, "created_at": 1_764_000_000,
           "in_progress_at": null, "expires_at": 1_764_086_400, "finalizing_at": null,
           "completed_at": null, "failed_at": null, "expired_at": null, "cancelling_at": null,
           "cancelled_at": null, "request_counts": {"total": 0, "completed": 0, "failed": 0},
           "usage": {"input_tokens": 0}, "metadata": {"batchbeam_key": "k1"}})
}

fn the_one(requests: &[Request]) -> &Request {
    assert_eq!(requests.len(), 1, "{requests:?}");
    &requests[0]
}

fn header_of<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn upload_is_multipart_with_purpose_and_file_and_every_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/files"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "file", "id": "file-abc", "purpose": "batch", "filename": "batchbeam-k1.jsonl",
            "bytes": 12, "created_at": 1, "expires_at": null, "status": "processed",
            "status_details": null, "brand_new_field": [1, 2]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"custom_id\":\"a\"}\n").unwrap();
    let file = client(&server)
        .upload_file(&input, "batchbeam-k1.jsonl", "batch")
        .await
        .unwrap();
    assert_eq!(file.id, "file-abc");
    assert_eq!(file.expires_at, None);

    let requests = server.received_requests().await.unwrap();
    let req = the_one(&requests);
    assert_eq!(header_of(req, "authorization"), format!("Bearer {KEY}"));
    assert_eq!(header_of(req, "openai-organization"), "org-test");
    assert_eq!(header_of(req, "openai-project"), "proj_test");
    let content_type = header_of(req, "content-type");
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    let body = String::from_utf8_lossy(&req.body);
    assert!(
        body.contains("Content-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"),
        "{body}"
    );
    assert!(
        body.contains("Content-Disposition: form-data; name=\"file\"; filename=\"batchbeam-k1.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"custom_id\":\"a\"}\n\r\n"),
        "{body}"
    );
    // The streamed part still carries a known length: the body has one.
    assert_eq!(
        header_of(req, "content-length").parse::<usize>().unwrap(),
        req.body.len()
    );
}

#[tokio::test]
async fn create_sends_exactly_the_spec_body_and_reads_a_liberal_batch() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/batches"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "input_file_id": "file-in",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"batchbeam_key": "k1", "session": "s"}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch_json("batch_1", "validating")))
        .expect(1)
        .mount(&server)
        .await;
    let mut request = CreateBatchRequest::new("file-in", batch_format::Endpoint::ChatCompletions);
    request.metadata = Some(BTreeMap::from([
        ("batchbeam_key".to_owned(), "k1".to_owned()),
        ("session".to_owned(), "s".to_owned()),
    ]));
    let batch = client(&server).create_batch(&request).await.unwrap();
    assert_eq!(batch.status(), BatchStatus::Validating);
    assert_eq!(batch.metadata_value("batchbeam_key"), Some("k1"));
    assert_eq!(batch.expires_at, Some(1_764_086_400));

    // Without metadata the key is left out, not sent as null.
    let bare = serde_json::to_value(CreateBatchRequest::new(
        "f",
        batch_format::Endpoint::Embeddings,
    ))
    .unwrap();
    assert_eq!(
        bare,
        json!({"input_file_id": "f", "endpoint": "/v1/embeddings", "completion_window": "24h"})
    );
}

#[tokio::test]
async fn cancel_retrieve_delete_and_list_use_the_spec_paths_and_queries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/batches/batch_1/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch_json("batch_1", "cancelling")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/batches"))
        .and(query_param("limit", "100"))
        .and(query_param("after", "batch_0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "data": [batch_json("batch_9", "completed")],
            "first_id": "batch_9", "last_id": "batch_9", "has_more": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/files"))
        .and(query_param("purpose", "batch"))
        .and(query_param("limit", "1000"))
        .and(query_param("order", "desc"))
        .and(query_param("after", "file-0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "data": [{"id": "file-1", "object": "file"}], "has_more": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/files/file-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "file-1", "object": "file", "deleted": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/files/file-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "file-1"})))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let cancelled = client.cancel_batch("batch_1").await.unwrap();
    assert_eq!(cancelled.status(), BatchStatus::Cancelling);
    let page = client
        .list_batches(&BatchListQuery {
            limit: Some(100),
            after: Some("batch_0".into()),
        })
        .await
        .unwrap();
    assert!(page.has_more);
    assert_eq!(page.last_id.as_deref(), Some("batch_9"));
    let files = client
        .list_files(&FileListQuery {
            purpose: Some("batch".into()),
            limit: Some(1000),
            order: Some("desc".into()),
            after: Some("file-0".into()),
        })
        .await
        .unwrap();
    assert_eq!(files.data[0].id, "file-1");
    assert!(client.delete_file("file-1").await.unwrap().deleted);
    assert_eq!(client.retrieve_file("file-1").await.unwrap().filename, None);

    let requests = server.received_requests().await.unwrap();
    let cancel = &requests[0];
    assert!(cancel.body.is_empty(), "cancel has no body");
    for req in &requests {
        assert_eq!(header_of(req, "authorization"), format!("Bearer {KEY}"));
    }
}

#[tokio::test]
async fn a_400_is_not_retried_and_keeps_openais_error() {
    let server = MockServer::start().await;
    let body = r#"{"error":{"message":"Invalid value: '1h'. Supported values are: '24h'.","type":"invalid_request_error","param":"completion_window","code":"invalid_value"}}"#;
    Mock::given(method("POST"))
        .and(path("/v1/batches"))
        .respond_with(ResponseTemplate::new(400).set_body_raw(body, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .create_batch(&CreateBatchRequest::new(
            "f",
            batch_format::Endpoint::ChatCompletions,
        ))
        .await
        .unwrap_err();
    let Error::Api(api) = &err else {
        panic!("{err}")
    };
    assert_eq!(api.status, 400);
    let e = api.error.as_ref().unwrap();
    assert_eq!(e.kind.as_deref(), Some("invalid_request_error"));
    assert_eq!(e.code.as_deref(), Some("invalid_value"));
    assert_eq!(e.param.as_deref(), Some("completion_window"));
    assert_eq!(api.body, body);
    assert_eq!(err.code(), Some("invalid_value"));
    assert_eq!(
        err.to_string(),
        "POST /batches: HTTP 400 invalid_request_error (invalid_value): Invalid value: '1h'. Supported values are: '24h'. [param completion_window]"
    );
}

#[tokio::test]
async fn rate_limits_and_5xx_are_retried_honouring_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after-ms", "5")
                .set_body_raw(r#"{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#, "application/json"),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(batch_json("batch_1", "in_progress")),
        )
        .with_priority(3)
        .mount(&server)
        .await;
    let batch = client(&server).retrieve_batch("batch_1").await.unwrap();
    assert_eq!(batch.status(), BatchStatus::InProgress);
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn retries_give_up_after_the_policy_with_the_last_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&server)
        .await;
    let config = ClientConfig::new(format!("{}/v1", server.uri()), ApiKey::new(KEY)).with_retry(
        RetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(2),
        },
    );
    let err = OpenAiClient::new(config)
        .unwrap()
        .retrieve_batch("batch_1")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    let Error::Api(api) = &err else {
        panic!("{err}")
    };
    assert_eq!((api.body.as_str(), api.error.is_none()), ("boom", true));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_timeout_is_retried_and_a_body_that_is_not_json_keeps_its_text() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy</html>"))
        .with_priority(2)
        .mount(&server)
        .await;
    let config = ClientConfig::new(format!("{}/v1", server.uri()), ApiKey::new(KEY))
        .with_retry(RetryPolicy::fast())
        .with_timeout(Duration::from_millis(100));
    let err = OpenAiClient::new(config)
        .unwrap()
        .retrieve_batch("batch_1")
        .await
        .unwrap_err();
    let Error::Decode { body, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(body, "<html>proxy</html>");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn chat_and_image_requests_post_the_typed_bodies() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_json(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "chat.completion", "choices": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "AA=="}]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let chat = batch_format::ChatCompletionRequest::new(
        "gpt-4o-mini",
        vec![batch_format::Message::user("hi")],
    );
    let reply = client.chat_completion(&chat).await.unwrap();
    assert_eq!(reply["object"], "chat.completion");
    let image: batch_format::ImageGenerationRequest =
        serde_json::from_value(json!({"model": "gpt-image-1", "prompt": "a fox"})).unwrap();
    let reply = client.image_generation(&image).await.unwrap();
    assert_eq!(reply["data"][0]["b64_json"], "AA==");
    let requests = server.received_requests().await.unwrap();
    let sent: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(sent["prompt"], "a fox");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A batch created now: the lookup stops at batches older than the record.
fn dated(mut batch: Value) -> Value {
    batch["created_at"] = json!(now());
    batch
}

/// Answers `POST /v1/batches` too late for the client (the batch is made, the answer lost) and
/// lists that batch on the second page of `GET /v1/batches`.
#[derive(Clone, Default)]
struct LostCreate {
    metadata: std::sync::Arc<std::sync::Mutex<Option<Value>>>,
}

impl wiremock::Respond for LostCreate {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "POST" {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            *self.metadata.lock().unwrap() = Some(body["metadata"].clone());
            let mut batch = batch_json("batch_lost", "validating");
            batch["metadata"] = body["metadata"].clone();
            return ResponseTemplate::new(200)
                .set_body_json(batch)
                .set_delay(Duration::from_millis(400));
        }
        let after = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "after")
            .map(|(_, v)| v.into_owned());
        match after.as_deref() {
            None => ResponseTemplate::new(200).set_body_json(json!({
                "object": "list", "data": [dated(batch_json("batch_other", "completed"))],
                "first_id": "batch_other", "last_id": "batch_other", "has_more": true
            })),
            Some("batch_other") => {
                let mut batch = batch_json("batch_lost", "validating");
                batch["created_at"] = json!(now());
                batch["metadata"] = self.metadata.lock().unwrap().clone().unwrap_or(Value::Null);
                ResponseTemplate::new(200).set_body_json(json!({
                    "object": "list", "data": [batch], "first_id": "batch_lost",
                    "last_id": "batch_lost", "has_more": false
                }))
            }
            Some(other) => panic!("unexpected cursor {other}"),
        }
    }
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_on_a_later_page_not_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/files"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "file-in", "object": "file"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let lost = LostCreate::default();
    Mock::given(method("POST"))
        .and(path("/v1/batches"))
        .respond_with(lost.clone())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/batches"))
        .and(query_param("limit", "100"))
        .respond_with(lost.clone())
        .expect(2)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = ClientConfig::new(format!("{}/v1", server.uri()), ApiKey::new(KEY))
        .with_retry(RetryPolicy::fast())
        .with_timeout(Duration::from_millis(150));
    let manager = batch_client::BatchJobManager::open(
        OpenAiClient::new(config).unwrap(),
        &dir.path().join("db.sqlite"),
        batch_client::ManagerConfig::new(dir.path().join("files")),
    )
    .await
    .unwrap();
    let shard = &crate::support::shards("lost", 1, 2)[0];
    let id = manager.submit_batch(shard, BTreeMap::new()).await.unwrap();
    let record = manager.record(&id).await.unwrap();
    assert_eq!(record.batch_id.as_deref(), Some("batch_lost"));
    let metadata = lost.metadata.lock().unwrap().clone().unwrap();
    assert_eq!(metadata["batchbeam_key"], record.idempotency_key.as_str());
    assert_eq!(metadata["batchbeam_attempt"], "1");
    assert_eq!(metadata["batchbeam_record"], id.as_str());
    // Dropping the server checks each mock's `expect`: one upload, one create, two list pages.
}

/// Takes an upload but answers too late; lists it under the name it was sent with.
#[derive(Clone, Default)]
struct LostUpload {
    filename: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl wiremock::Respond for LostUpload {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "POST" {
            let body = String::from_utf8_lossy(&request.body);
            let name = body
                .split("filename=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned);
            *self.filename.lock().unwrap() = name;
            return ResponseTemplate::new(200)
                .set_body_json(json!({"id": "file-lost", "object": "file"}))
                .set_delay(Duration::from_millis(400));
        }
        let name = self.filename.lock().unwrap().clone();
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "has_more": false,
            "data": [
                {"id": "file-else", "object": "file", "filename": "other.jsonl", "purpose": "batch", "status": "processed"},
                {"id": "file-lost", "object": "file", "filename": name, "purpose": "batch", "status": "processed"}
            ]
        }))
    }
}

#[tokio::test]
async fn an_upload_whose_answer_is_lost_is_found_by_its_name_not_sent_again() {
    let server = MockServer::start().await;
    let lost = LostUpload::default();
    Mock::given(method("POST"))
        .and(path("/v1/files"))
        .respond_with(lost.clone())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/files"))
        .and(query_param("purpose", "batch"))
        .respond_with(lost.clone())
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/batches"))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch_json("batch_1", "validating")))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(format!("{}/v1", server.uri()), ApiKey::new(KEY))
        .with_retry(RetryPolicy::fast());
    config.transfer_timeout = Duration::from_millis(150);
    let manager = batch_client::BatchJobManager::open(
        OpenAiClient::new(config).unwrap(),
        &dir.path().join("db.sqlite"),
        batch_client::ManagerConfig::new(dir.path().join("files")),
    )
    .await
    .unwrap();
    let id = manager
        .submit_batch(&crate::support::shards("up", 1, 2)[0], BTreeMap::new())
        .await
        .unwrap();
    let record = manager.record(&id).await.unwrap();
    assert_eq!(record.input_file_id.as_deref(), Some("file-lost"));
    let sent = lost.filename.lock().unwrap().clone().unwrap();
    assert_eq!(sent, batch_client::upload_filename(&record.idempotency_key));
    assert!(
        sent.starts_with("batchbeam-bbk_") && sent.ends_with(".jsonl"),
        "{sent}"
    );
}

#[tokio::test]
async fn a_retry_after_of_an_hour_is_capped() {
    let server = MockServer::start().await;
    let in_an_hour = httpdate_in(3600);
    for (priority, value) in [(1, "3600".to_owned()), (2, in_an_hour)] {
        Mock::given(method("GET"))
            .and(path("/v1/batches/batch_1"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", value.as_str()))
            .up_to_n_times(1)
            .with_priority(priority)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch_json("batch_1", "completed")))
        .with_priority(3)
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    // RetryPolicy::fast caps Retry-After at 20 ms. A liveness bound, not a timing assertion: an
    // uncapped client would sleep an hour, and no loaded machine turns 40 ms into a minute.
    client(&server).retrieve_batch("batch_1").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

fn httpdate_in(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(secs))
}
