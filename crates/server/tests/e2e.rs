//! End to end on an in-process openai-sim (fast simulated time): batch-mode jobs submitted over
//! HTTP, followed on the WebSocket (replay, then live) to the end, their images, tree and costs
//! fetched; many deferred jobs on two workers all finish; auth, errors and path traversal.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use providers::{ApiToken, Settings, Stack, StackOptions};
use serde_json::{Value, json};
use server::{Server, ServerConfig};

const TOKEN: &str = "test-token-0123456789";
const SECRET: &str = "sk-never-shown-4f1c2b";

struct Running {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    server: Server,
}

async fn start(workers: usize) -> Running {
    start_with(workers, Duration::from_secs(30)).await
}

async fn start_with(workers: usize, request_timeout: Duration) -> Running {
    start_pooled(workers, request_timeout, 16).await
}

/// [`start_with`], the process's database pool holding up to `connections`.
async fn start_pooled(workers: usize, request_timeout: Duration, connections: u32) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let sessions = dir.path().join("sessions");
    // A key is configured: --sim runs on the simulator anyway, and the key must never show.
    let settings = Settings::from_lookup(
        &|name| (name == "OPENAI_API_KEY").then(|| SECRET.to_owned()),
        &[
            ("data.db", db.to_string_lossy().into_owned()),
            ("data.sessions", sessions.to_string_lossy().into_owned()),
            ("data.connections", connections.to_string()),
        ],
    )
    .unwrap();
    let stack = Stack::open(
        &settings,
        StackOptions {
            sim: true,
            sim_time_scale: 2000.0,
            always_queue: true,
            ..StackOptions::default()
        },
    )
    .await
    .unwrap();
    let mut config = ServerConfig::from_settings(&settings);
    config.token = Some(ApiToken::new(TOKEN));
    config.workers = workers;
    config.wait_poll = Duration::from_millis(100);
    config.request_timeout = request_timeout;
    let server = Server::start(stack, config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    // The accept loop `batchbeam serve` runs (head timeout, upgrades), not a stand-in.
    tokio::spawn(server::serve(
        listener,
        router,
        request_timeout,
        std::future::pending(),
    ));
    Running {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _dir: dir,
        server,
    }
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts `count` one-iteration jobs waiting on their batches in `wait_mode`, and sees
    /// each of them completed; their ids.
    async fn all_complete(&self, count: usize, wait_mode: &str) -> Vec<String> {
        let mut jobs = Vec::new();
        for i in 0..count {
            let mut body = small(&format!("idea number {i}"));
            body["iterations"] = json!(1);
            body["batchWaitMode"] = json!(wait_mode);
            let (status, v) = self.post("/api/beam-search", body).await;
            assert_eq!(status, 202, "{v}");
            jobs.push(v["jobId"].as_str().unwrap().to_owned());
        }
        for job in &jobs {
            let done = self.until_done(job).await;
            assert_eq!(done["status"], "completed", "{done}");
        }
        jobs
    }

    /// Waits (generously) until the job is in a final state.
    async fn until_done(&self, job: &str) -> Value {
        for _ in 0..2400 {
            let (_, v) = self.get(&format!("/api/job/{job}")).await;
            if ["completed", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("job {job} did not finish");
    }
}

fn small(prompt: &str) -> Value {
    json!({"prompt": prompt, "n": 4, "m": 2, "iterations": 2, "judging": "scoring",
           "ensemble": 1, "seed": 7, "useBatch": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_job_is_followed_on_the_websocket_to_its_end() {
    let s = start(2).await;
    let (status, accepted) = s
        .post("/api/beam-search", small("a lighthouse in a storm"))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["jobId"].as_str().unwrap().to_owned();
    assert!(accepted["estimatedCost"].as_f64().unwrap() > 0.0);
    assert_eq!(accepted["estimatedWaitHours"], json!(24.0));
    // The forecast behind the estimate: every operation on batch, one stage per batch.
    let forecast = &accepted["forecast"];
    assert_eq!(forecast["cost"], accepted["estimatedCost"]);
    assert!(
        forecast["byOperation"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["tier"] == "batch")
    );
    assert_eq!(forecast["byTier"][0]["tier"], "batch", "{forecast}");
    assert!(accepted["batchIds"].as_array().unwrap().is_empty());

    // Follow live from the start.
    let url = format!(
        "{}/api/job/{job}/events?token={TOKEN}",
        s.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut seen: Vec<Value> = Vec::new();
    let follow = async {
        while let Some(msg) = ws.next().await {
            match msg.unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    seen.push(serde_json::from_str(&t).unwrap())
                }
                tokio_tungstenite::tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), follow)
        .await
        .expect("the job's events end");
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"job_queued"), "{types:?}");
    assert_eq!(types.last(), Some(&"job_finished"), "{types:?}");
    for t in [
        "job_started",
        "session_started",
        "stage_started",
        "batch_submitted",
        "job_waiting",
        "batch_status",
        "job_resumed",
        "stage_finished",
        "iteration_judged",
        "session_finished",
    ] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let seqs: Vec<i64> = seen.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "numbered in order"
    );
    assert!(
        seen.iter()
            .all(|e| e["jobId"] == json!(job) && e["at"].as_str().unwrap().ends_with('Z'))
    );

    // A second connection after the end replays the same events.
    let (mut again, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut replayed = 0;
    while let Some(Ok(msg)) = again.next().await {
        if msg.is_text() {
            replayed += 1;
        }
    }
    assert_eq!(replayed, seen.len());

    let done = s.until_done(&job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], json!(1.0));
    // The job says what it searches for (the list and the page show it without its tree).
    assert_eq!(done["prompt"], "a lighthouse in a storm", "{done}");
    assert!(!done["batchIds"].as_array().unwrap().is_empty(), "{done}");
    let cost = &done["cost"];
    assert!(cost["total"].as_f64().unwrap() > 0.0);
    assert!(cost["saved"].as_f64().unwrap() > 0.0, "batch saves: {cost}");

    let best_url = done["best"]["imageUrl"].as_str().unwrap().to_owned();
    let img = s
        .http
        .get(format!("{}{best_url}", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(img.status().as_u16(), 200);
    let bytes = img.bytes().await.unwrap();
    assert_eq!(&bytes[1..4], b"PNG");

    let (status, tree) = s.get(&format!("/api/job/{job}/tree")).await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["jobId"], json!(job));
    assert_eq!(tree["status"], "completed");
    assert_eq!(tree["params"]["n"], 4);
    let iterations = tree["iterations"].as_array().unwrap();
    assert_eq!(iterations.len(), 2);
    assert_eq!(iterations[0]["candidates"].as_array().unwrap().len(), 4);
    assert!(tree["cost"]["simulated"].as_bool().unwrap());
    assert_eq!(tree["ratingCurve"].as_array().unwrap().len(), 2);
    assert!(
        tree["best"]["imageUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/api/job/{job}/images/"))
    );

    let batch = done["batchIds"][0].as_str().unwrap();
    let (status, results) = s.get(&format!("/api/batch/{batch}/results")).await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["status"], "completed");
    assert!(!results["results"].as_array().unwrap().is_empty());

    let (status, costs) = s.get("/api/costs").await;
    assert_eq!(status, 200);
    assert!(costs["total"].as_f64().unwrap() > 0.0);
    assert!(
        costs["byOperation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["tier"] == "batch")
    );

    let (status, list) = s.get("/api/jobs?status=completed&limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(list["jobs"][0]["jobId"], json!(job));

    // Metrics parse as Prometheus text.
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut samples = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(name.starts_with("batchbeam_"), "{line}");
        value.parse::<f64>().unwrap();
        samples += 1;
    }
    assert!(samples > 10);
    assert!(
        text.contains("batchbeam_jobs{status=\"completed\"} 1"),
        "{text}"
    );
    // The OpenAI key is in no response, event or database file.
    assert!(!text.contains(SECRET));
    assert!(seen.iter().all(|e| !e.to_string().contains(SECRET)));
    assert!(!tree.to_string().contains(SECRET) && !done.to_string().contains(SECRET));
    for entry in std::fs::read_dir(s._dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{} holds the key",
                path.display()
            );
        }
    }
    s.server.stop();
}

/// More jobs running at once than the database has connections: each job's search goes on
/// while its worker stores the search's events, so no job holds a connection while it waits
/// for another (before, each job's search stood still mid-query while its events were
/// written, and with as many jobs as connections every one waited out the pool's timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_jobs_at_once_than_database_connections_all_finish() {
    let s = start_pooled(8, Duration::from_secs(30), 2).await;
    // Each job keeps its worker while its batches run.
    s.all_complete(8, "poll").await;
    s.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_deferred_jobs_on_two_workers_all_finish() {
    let s = start(2).await;
    let jobs = s.all_complete(20, "deferred").await;
    // Pages of 7 list every job once, newest first.
    let mut listed: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/jobs?limit=7&cursor={c}"),
            None => "/api/jobs?limit=7".to_owned(),
        };
        let (status, page) = s.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for j in page["jobs"].as_array().unwrap() {
            listed.push(j["jobId"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // Each once (jobs made in the same millisecond are ordered by id, not by arrival).
    assert_eq!(listed.len(), jobs.len());
    let (mut a, mut b) = (listed.clone(), jobs.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Every job waited on a batch without a worker at least once.
    for job in &jobs {
        let (_, v) = s.get(&format!("/api/job/{job}")).await;
        assert!(!v["batchIds"].as_array().unwrap().is_empty());
    }
    s.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_auth_and_paths() {
    let s = start(1).await;
    // No token, a wrong one.
    let r = s
        .http
        .get(format!("{}/api/jobs", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    let r = s
        .http
        .get(format!("{}/api/jobs", s.base))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Open routes.
    for path in ["/health", "/ready", "/metrics"] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // A 400 names the field.
    let (status, v) = s
        .post("/api/beam-search", json!({"prompt": "x", "n": 10, "m": 3}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "n", "{v}");
    let (status, v) = s.post("/api/beam-search", json!({"prompt": ""})).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "prompt");
    let (status, v) = s
        .post("/api/beam-search", json!({"prompt": "x", "plan": "nope"}))
        .await;
    assert_eq!((status, v["error"]["param"].clone()), (400, json!("plan")));
    let (status, v) = s
        .post(
            "/api/beam-search",
            json!({"prompt": "x", "batchWaitMode": "later"}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["param"].clone()),
        (400, json!("batchWaitMode"))
    );
    let (status, v) = s.post("/api/beam-search", json!({"prompt": 5})).await;
    assert_eq!(status, 400, "{v}");
    // The cost levers are checked too, and a field the API does not know is named.
    for (body, param) in [
        (
            json!({"prompt": "x", "renderSchedule": "low,ultra"}),
            "renderSchedule",
        ),
        (json!({"prompt": "x", "polish": 99}), "polish"),
        (json!({"prompt": "x", "budget": -1.0}), "budget"),
        (json!({"prompt": "x", "budgett": 1.0}), "budgett"),
    ] {
        let (status, v) = s.post("/api/beam-search", body.clone()).await;
        assert_eq!(
            (status, v["error"]["param"].clone()),
            (400, json!(param)),
            "{body}: {v}"
        );
    }
    // Unknown ids and routes; a wrong method.
    let (status, v) = s.get("/api/job/j_00000000000000000000000000").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "not_found_error");
    let (status, _) = s.get("/api/nothing").await;
    assert_eq!(status, 404);
    let (status, _) = s.get("/api/batch/batch_nope/results").await;
    assert_eq!(status, 404);
    let r = s
        .http
        .delete(format!("{}/api/jobs", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    // Over the body limit.
    let big = "x".repeat(200_000);
    let (status, v) = s.post("/api/beam-search", json!({"prompt": big})).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].is_object());
    // Path traversal, plain, encoded and double-encoded.
    let (_, accepted) = s.post("/api/beam-search", small("a cat")).await;
    let job = accepted["jobId"].as_str().unwrap();
    for file in [
        "..%2F..%2Fb.db",
        "%2e%2e%2fb.db",
        "%252e%252e%252fb.db",
        "..",
        "..%5Cb.db",
        "i0c0.png%00",
    ] {
        let r = s
            .http
            .get(format!("{}/api/job/{job}/images/{file}", s.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        assert!(code == 400 || code == 404, "{file}: {code}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("SQLite"), "{file} leaked a file");
    }
    let r = s
        .http
        .get(format!("{}/api/job/{job}/images/../../b.db", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    // Cancel: the job ends cancelled, its events say so.
    let (status, v) = s.post(&format!("/api/job/{job}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{v}");
    let done = s.until_done(job).await;
    assert_eq!(done["status"], "cancelled");
    // The OpenAPI document names the routes.
    let (status, doc) = s.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/beam-search"].is_object());
    s.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(1, Duration::from_secs(1)).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/beam-search HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prompt\""
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // Never send the rest: the server answers 408 once its timeout passes (generous wait).
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    s.server.stop();
}

/// A client that sends half a request head and stalls (slowloris) is cut off once the request
/// timeout passes: the connection closes, whatever the client does not send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_head_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(1, Duration::from_secs(1)).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .await
        .unwrap();
    // Never finish the head. Without a head timeout the read below would wait forever; with
    // it the server closes the connection after about a second (generous wait: a loaded box).
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the connection stayed open");
    // The server still answers everyone else.
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200);
    s.server.stop();
}
