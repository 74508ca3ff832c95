//! Several server instances on one database (each with its own stack and pool, as separate
//! processes would have), sharing one openai-sim: a job posted to one runs exactly once;
//! killing the instance running a job mid-search lets another take it over when the lease
//! expires and finish it without answering a call twice; a cancel posted to another instance
//! stops the job where it runs, and that instance's WebSocket follows the job's progress
//! from the database. On an SQLite file, and on PostgreSQL when `BATCHBEAM_TEST_POSTGRES`
//! is set.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt;
use openai_sim::{FaultConfig, FaultKind, FaultRule, SimConfig, SimHandle};
use orchestrator::SessionStore;
use providers::db::testing;
use providers::{Settings, Stack, StackOptions};
use serde_json::{Value, json};
use server::{DbJobStore, JobStore, Server, ServerConfig};

/// The waiter's sweep in the tests of the wake path: far longer than any test, so that only
/// an announcement (PostgreSQL) can wake a parked job in time. SQLite polls regardless.
const NO_SWEEP: Duration = Duration::from_secs(3600);

/// One instance: its server and where it listens.
struct Instance {
    base: String,
    server: Server,
}

/// What the instances share: the simulator, the database (a file path or a URL) and the data
/// directory.
struct Shared {
    sim: SimHandle,
    location: String,
    dir: tempfile::TempDir,
}

impl Shared {
    /// A simulator whose image calls each take `image_ms` of real time (so that a search is
    /// still running when a test acts), and a fresh database of backend `location`.
    async fn new(location: String, dir: tempfile::TempDir, image_ms: u64) -> Shared {
        let faults = FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::Slow)
                .on("POST", "/v1/images/generations")
                .delay_ms(image_ms),
        );
        let sim = openai_sim::spawn(
            SimConfig::default()
                .with_time_scale(2000.0)
                .with_faults(faults),
        )
        .await
        .unwrap();
        Shared { sim, location, dir }
    }

    /// A simulator whose clock moves only when the test moves it (a batch stays where it is
    /// until then), and a fresh database of backend `location`.
    async fn frozen(location: String, dir: tempfile::TempDir) -> Shared {
        let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        Shared { sim, location, dir }
    }

    /// Starts an instance named `name` with `workers`, its lease `lease`.
    async fn start(&self, name: &str, workers: usize, lease: Duration) -> Instance {
        self.start_with(name, workers, lease, Duration::from_secs(15))
            .await
    }

    /// [`start`](Self::start), the waiter sweeping every `sweep`; its batches polled every
    /// 100 ms.
    async fn start_with(
        &self,
        name: &str,
        workers: usize,
        lease: Duration,
        sweep: Duration,
    ) -> Instance {
        let url = self.sim.base_url();
        let location = self.location.clone();
        let lookup = move |var: &str| match var {
            "OPENAI_API_KEY" => Some("sk-shared".to_owned()),
            "OPENAI_BASE_URL" => Some(url.clone()),
            _ => None,
        };
        let settings = Settings::from_lookup(
            &lookup,
            &[
                ("data.database_url", db_url(&location)),
                (
                    "data.sessions",
                    self.dir.path().join("sessions").to_string_lossy().into(),
                ),
                (
                    "data.files",
                    self.dir.path().join("files").to_string_lossy().into(),
                ),
                ("batch.poll_interval_ms", "100".into()),
                ("batch.poll_max_interval_ms", "200".into()),
            ],
        )
        .unwrap();
        let stack = Stack::open(
            &settings,
            StackOptions {
                always_queue: true,
                ..StackOptions::default()
            },
        )
        .await
        .unwrap();
        let mut config = ServerConfig::from_settings(&settings);
        config.workers = workers;
        config.wait_poll = Duration::from_millis(100);
        config.wait_sweep = sweep;
        config.instance_id = name.to_owned();
        config.lease = lease;
        config.heartbeat = lease / 4;
        let server = Server::start(stack, config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server::serve(
            listener,
            server.router(),
            Duration::from_secs(30),
            std::future::pending(),
        ));
        Instance {
            base: format!("http://{addr}"),
            server,
        }
    }

    /// A store of the jobs on the shared database (a pool of the test's own).
    async fn jobs(&self) -> DbJobStore {
        DbJobStore::new(testing::open(&self.location).await)
            .await
            .unwrap()
    }

    /// The sessions on the shared database.
    async fn sessions(&self) -> SessionStore {
        SessionStore::on(testing::open(&self.location).await)
            .await
            .unwrap()
    }

    /// Calls a session needed (each counted once: a resumed stage's record replaces its
    /// first).
    async fn calls_of(&self, job: &Value) -> u64 {
        let session = job["sessionId"].as_str().unwrap();
        let stages = self.sessions().await.stages(session).await.unwrap();
        stages.iter().map(|s| s.calls as u64).sum()
    }
}

/// The database as `data.database_url` takes it: a URL, or a file as a `sqlite:` URL.
fn db_url(location: &str) -> String {
    if providers::db::is_postgres_url(location) {
        location.to_owned()
    } else {
        format!("sqlite:{location}")
    }
}

/// Every backend's database: `(name, location, data dir)`, and the folder of the SQLite
/// file (keep it while the test runs).
async fn backends() -> (
    Vec<(&'static str, String, tempfile::TempDir)>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let admin = std::env::var(testing::VAR).ok();
    let found = testing::every_backend(dir.path(), admin).await;
    let mut out = Vec::new();
    for (name, db, location) in found {
        db.close().await;
        out.push((name, location, tempfile::tempdir().unwrap()));
    }
    (out, dir)
}

impl Instance {
    /// Posts a small search of `prompt`; its job id.
    async fn search(&self, prompt: &str) -> String {
        let (status, v) = self.post("/api/beam-search", small(prompt)).await;
        assert_eq!(status, 202, "{v}");
        v["jobId"].as_str().unwrap().to_owned()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let r = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        r.json().await.unwrap_or(Value::Null)
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits (generously) until `done` holds of the job's view.
    async fn until(&self, job: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..2400 {
            let v = self.get(&format!("/api/job/{job}")).await;
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {job}: never {what}");
    }

    async fn until_final(&self, job: &str) -> Value {
        self.until(job, "final", |v| {
            ["completed", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or(""))
        })
        .await
    }
}

/// A small standard-tier search (its calls are plain HTTP calls to the simulator).
fn small(prompt: &str) -> Value {
    json!({"prompt": prompt, "n": 4, "m": 2, "iterations": 2, "judging": "scoring",
           "ensemble": 1, "seed": 3, "useBatch": false, "cache": false})
}

/// A finished job's stored events, in order (its row says it ended a moment before its last
/// event is stored: wait, generously, for that event).
async fn event_types(jobs: &DbJobStore, job: &str) -> Vec<Value> {
    for _ in 0..600 {
        let events: Vec<Value> = jobs
            .events(job, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
            .collect();
        let last = events.last().map(|e| e["type"].clone());
        let ended = last.is_some_and(|t| {
            ["job_finished", "job_failed", "job_cancelled"].contains(&t.as_str().unwrap_or(""))
        });
        if ended {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job}: its last event was never stored");
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_posted_to_either_instance_each_run_exactly_once() {
    let (backends, _keep) = backends().await;
    for (name, location, dir) in backends {
        eprintln!("backend: {name}");
        let shared = Shared::new(location, dir, 20).await;
        let lease = Duration::from_secs(20);
        let a = shared.start("inst-a", 2, lease).await;
        let b = shared.start("inst-b", 2, lease).await;
        let mut ids = Vec::new();
        for i in 0..6 {
            let to = if i % 2 == 0 { &a } else { &b };
            let (status, v) = to
                .post(
                    "/api/beam-search",
                    small(&format!("a lighthouse, take {i}")),
                )
                .await;
            assert_eq!(status, 202, "{v}");
            ids.push(v["jobId"].as_str().unwrap().to_owned());
        }
        let jobs = shared.jobs().await;
        let mut calls = 0;
        for id in &ids {
            // Either instance answers for any job.
            let done = b.until_final(id).await;
            assert_eq!(done["status"], "completed", "{done}");
            assert_eq!(
                a.get(&format!("/api/job/{id}")).await["status"],
                "completed"
            );
            assert!(done["owner"].is_null(), "released when it ended: {done}");
            let events = event_types(&jobs, id).await;
            assert_eq!(count(&events, "job_started"), 1, "{events:?}");
            assert_eq!(count(&events, "job_finished"), 1, "{events:?}");
            assert_eq!(count(&events, "job_taken_over"), 0, "{events:?}");
            let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
            assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
            calls += shared.calls_of(&done).await;
        }
        // Each call of every job was sent once, by one instance.
        let stats = shared.sim.stats().await;
        assert_eq!(stats.sync_requests, calls, "{stats:?}");
        let listed = a.get("/api/jobs?limit=50").await;
        assert_eq!(listed["jobs"].as_array().unwrap().len(), ids.len());
        for i in [&a, &b] {
            i.server.stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_instances_job_is_taken_over_after_its_lease_and_finished_once() {
    let (backends, _keep) = backends().await;
    for (name, location, dir) in backends {
        eprintln!("backend: {name}");
        // Each render takes 2 s: the search is still running when A is killed.
        let shared = Shared::new(location, dir, 2000).await;
        let lease = Duration::from_secs(3);
        let a = shared.start("inst-a", 1, lease).await;
        let job = a.search("a fox in the snow").await;
        let running = a
            .until(&job, "running past its first stage on inst-a", |v| {
                v["status"] == "running" && v["owner"] == "inst-a" && v["stage"].as_i64() >= Some(1)
            })
            .await;
        assert!(running["leaseUntil"].is_string(), "{running}");
        // B starts while A holds the job (that B leaves a live owner's job alone is the
        // store suite's and the first test's to show, without timing), then A dies.
        let b = shared.start("inst-b", 1, lease).await;
        a.server.kill();
        let done = b.until_final(&job).await;
        let jobs = shared.jobs().await;
        let events = event_types(&jobs, &job).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["takeovers"], 1, "{done}");
        let taken: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "job_taken_over")
            .collect();
        assert_eq!(taken.len(), 1, "{events:?}");
        assert_eq!(
            (taken[0]["from"].as_str(), taken[0]["to"].as_str()),
            (Some("inst-a"), Some("inst-b"))
        );
        assert_eq!(count(&events, "job_resumed"), 1, "{events:?}");
        assert_eq!(count(&events, "job_finished"), 1, "{events:?}");
        assert!(
            b.metrics()
                .await
                .contains("batchbeam_job_takeovers_total 1")
        );
        // Stages finished before the kill were not run again: only the calls in flight at the
        // kill (at most one stage's) were sent a second time.
        let calls = shared.calls_of(&done).await;
        let sent = shared.sim.stats().await.sync_requests;
        assert!(sent >= calls, "sent {sent}, calls {calls}");
        assert!(
            sent - calls <= 4,
            "sent {sent} for {calls} calls: answered calls went again"
        );
        b.server.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_posted_to_another_instance_stops_the_job_where_it_runs() {
    let (backends, _keep) = backends().await;
    for (name, location, dir) in backends {
        eprintln!("backend: {name}");
        let shared = Shared::new(location, dir, 300).await;
        let lease = Duration::from_millis(1600);
        let a = shared.start("inst-a", 1, lease).await;
        let job = a.search("a red bicycle").await;
        a.until(&job, "running on inst-a", |v| v["owner"] == "inst-a")
            .await;
        let b = shared.start("inst-b", 1, lease).await;
        // B follows the job A runs: its events reach B's WebSocket from the database.
        let url = format!(
            "{}/api/job/{job}/events",
            b.base.replace("http://", "ws://")
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut seen: Vec<Value> = Vec::new();
        let wait_for_stage = async {
            while let Some(msg) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(t) = msg.unwrap() {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    let stage_done = v["type"] == "stage_finished";
                    seen.push(v);
                    if stage_done {
                        return;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(120), wait_for_stage)
            .await
            .expect("a stage_finished from inst-a on inst-b's socket");
        let (status, view) = b.post(&format!("/api/job/{job}/cancel"), json!({})).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["status"], "cancelled", "{view}");
        let rest = async {
            while let Some(msg) = ws.next().await {
                match msg.unwrap() {
                    tokio_tungstenite::tungstenite::Message::Text(t) => {
                        seen.push(serde_json::from_str(&t).unwrap());
                    }
                    tokio_tungstenite::tungstenite::Message::Close(_) => return,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), rest)
            .await
            .expect("the socket closes after the cancel");
        assert_eq!(seen.last().unwrap()["type"], "job_cancelled", "{seen:?}");
        let seqs: Vec<i64> = seen.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "in order, none lost"
        );
        // A stops its run at its next renewal: no more calls go out.
        a.until(&job, "released by inst-a", |v| v["owner"].is_null())
            .await;
        // (Generously: the calls stop once they stay still for a lease; then they stay still.)
        let mut settled = shared.sim.stats().await.sync_requests;
        for _ in 0..60 {
            tokio::time::sleep(lease).await;
            let now = shared.sim.stats().await.sync_requests;
            if now == settled {
                break;
            }
            settled = now;
        }
        tokio::time::sleep(lease * 2).await;
        assert_eq!(
            shared.sim.stats().await.sync_requests,
            settled,
            "inst-a kept calling"
        );
        let row = shared.jobs().await.get(&job).await.unwrap().unwrap();
        assert_eq!(row.status, server::JobStatus::Cancelled);
        assert!(row.owner.is_none());
        for i in [&a, &b] {
            i.server.stop();
        }
    }
}

/// A small batch-mode search, parked on its batches while they run.
fn parked(prompt: &str) -> Value {
    json!({"prompt": prompt, "n": 2, "m": 1, "iterations": 1, "judging": "comparative",
           "ensemble": 1, "seed": 5, "useBatch": true, "batchWaitMode": "deferred",
           "cache": false})
}

/// Instance `a`, its sweep an hour away, and a job of `prompt` posted to it and parked.
async fn park_one(shared: &Shared, prompt: &str) -> (Instance, String) {
    let a = shared
        .start_with("a", 2, Duration::from_secs(30), NO_SWEEP)
        .await;
    let (status, v) = a.post("/api/beam-search", parked(prompt)).await;
    assert_eq!(status, 202, "{v}");
    let job = v["jobId"].as_str().unwrap().to_owned();
    a.until(&job, "parked", |v| v["status"] == "waiting").await;
    (a, job)
}

/// Moves the simulator's clock an hour on at a time (every batch made meanwhile ends) until
/// the job is final, generously; the job's view then.
async fn advance_until_final(shared: &Shared, inst: &Instance, job: &str) -> Value {
    for _ in 0..600 {
        let v = inst.get(&format!("/api/job/{job}")).await;
        if ["completed", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or("")) {
            return v;
        }
        shared.sim.advance_clock(3600.0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("job {job}: never final");
}

/// Every batch's `batch_status` events say each status once, in a row of changes.
fn each_status_said_once(events: &[Value]) {
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for e in events.iter().filter(|e| e["type"] == "batch_status") {
        let batch = e["batchId"].as_str().unwrap().to_owned();
        let status = e["status"].as_str().unwrap().to_owned();
        assert_ne!(
            last.get(&batch),
            Some(&status),
            "batch {batch}: status {status} said twice: {events:?}"
        );
        last.insert(batch, status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parked_job_is_woken_when_its_batches_settle() {
    let (found, _keep) = backends().await;
    for (backend, location, dir) in found {
        let shared = Shared::frozen(location, dir).await;
        let (a, job) = park_one(&shared, "a harbour at dawn").await;
        // Each stage's batches end only when the clock moves; the job is woken each time by
        // the record's announcement, not by a sweep (an hour away).
        let done = advance_until_final(&shared, &a, &job).await;
        assert_eq!(done["status"], "completed", "{backend}: {done}");
        let events = event_types(&shared.jobs().await, &job).await;
        assert!(count(&events, "job_waiting") >= 1, "{backend}: {events:?}");
        assert!(count(&events, "batch_status") >= 1, "{backend}: {events:?}");
        each_status_said_once(&events);
        a.server.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_parked_by_a_dead_instance_is_woken_by_another() {
    let (found, _keep) = backends().await;
    for (backend, location, dir) in found {
        let shared = Shared::frozen(location, dir).await;
        let (a, job) = park_one(&shared, "a mill by a river").await;
        // a's workers and waiter stop; only b (started after, so it never saw the job parked)
        // can take it up, when it hears that its batches were settled.
        a.server.kill();
        let b = shared
            .start_with("b", 2, Duration::from_secs(30), NO_SWEEP)
            .await;
        // b's first pass (a sweep) is over before any batch can end.
        for _ in 0..600 {
            if !b
                .metrics()
                .await
                .contains("batchbeam_batch_polls_total 0\n")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let done = advance_until_final(&shared, &b, &job).await;
        assert_eq!(done["status"], "completed", "{backend}: {done}");
        let events = event_types(&shared.jobs().await, &job).await;
        let resumed_on_b = events.iter().any(|e| e["type"] == "job_resumed");
        assert!(resumed_on_b, "{backend}: {events:?}");
        each_status_said_once(&events);
        b.server.stop();
    }
}
