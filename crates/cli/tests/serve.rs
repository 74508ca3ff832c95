//! `batchbeam serve` as a real process against a separate `batchbeam sim` process (so that the
//! simulator's counters outlive the server): the server is SIGKILLed in the middle of a batch
//! stage, started again, and its jobs finish with no batch created twice and every request
//! billed once. The simulator's clock is frozen and stepped by hand (`/sim/clock/advance`), so
//! the batch is certainly in flight when the server dies, however loaded the machine is.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const TOKEN: &str = "serve-test-token-0123456789";

/// A child process killed when dropped, so that a failing test leaves none behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `batchbeam sim` on a free port with a frozen clock; its root URL.
fn start_sim(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args([
            "sim",
            "--addr",
            "127.0.0.1:0",
            "--time-scale",
            "0",
            "--json",
        ])
        .arg("--data-dir")
        .arg(dir.join("sim"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    (child, format!("http://{}", v["addr"].as_str().unwrap()))
}

/// `batchbeam serve` on a free port against the simulator at `sim`; its base URL.
#[allow(
    clippy::zombie_processes,
    reason = "the child is handed back: the test kills it and waits for it"
)]
fn start_server(dir: &Path, sim: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        // Restarted under the same name, it takes back at once the jobs it held when killed.
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "2"])
        .args(["--instance-id", "serve-test"])
        .current_dir(dir)
        .env("BATCHBEAM_CONFIG", dir.join("none.toml"))
        .env("OPENAI_API_KEY", "sk-serve-test")
        .env("OPENAI_BASE_URL", format!("{sim}/v1"))
        .env("BATCHBEAM_API_TOKEN", TOKEN)
        .env("BATCHBEAM_DB", dir.join("b.db"))
        .env("BATCHBEAM_SESSIONS", dir.join("sessions"))
        .env("BATCH_POLL_INTERVAL_MS", "100")
        .env("BATCH_POLL_MAX_INTERVAL_MS", "300")
        .env_remove("BATCH_API_ENABLED")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            let status = child.wait();
            panic!("serve stopped early: {status:?}");
        }
        if let Some(rest) = line.split("http://").nth(1)
            && line.starts_with("batchbeam serve:")
        {
            let addr = rest.split('/').next().unwrap();
            // Keep reading stderr so that the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in err.lines() {});
            return (child, format!("http://{addr}"));
        }
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_batch_finishes_its_jobs_after_a_restart_billing_each_request_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let (sim, sim_url) = start_sim(dir.path());
    let _sim = Proc(sim);
    let (server, base) = start_server(dir.path(), &sim_url);
    let mut server = Proc(server);
    let http = reqwest::Client::new();
    let mut jobs = Vec::new();
    for mode in ["poll", "deferred"] {
        let body = json!({"prompt": format!("a kite over dunes ({mode})"), "n": 4, "m": 2,
            "iterations": 2, "judging": "scoring", "ensemble": 1, "seed": 3,
            "useBatch": true, "batchWaitMode": mode});
        let r = http
            .post(format!("{base}/api/beam-search"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let v: Value = r.json().await.unwrap();
        jobs.push(v["jobId"].as_str().unwrap().to_owned());
    }
    // The clock is frozen: wait until both jobs have a batch out, which cannot finish yet.
    let mut out = false;
    let mut last = Vec::new();
    for _ in 0..1200 {
        let mut all = true;
        last.clear();
        for job in &jobs {
            let v = get(&http, &format!("{base}/api/job/{job}")).await;
            all &= !v["batchIds"].as_array().unwrap().is_empty();
            last.push(v);
        }
        if all {
            out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(out, "both jobs sent a batch: {last:#?}");
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();

    let (server, base) = start_server(dir.path(), &sim_url);
    let mut server = Proc(server);
    let mut done = Vec::new();
    for _ in 0..2400 {
        http.post(format!("{sim_url}/sim/clock/advance?seconds=1800"))
            .send()
            .await
            .unwrap();
        done.clear();
        for job in &jobs {
            let v = get(&http, &format!("{base}/api/job/{job}")).await;
            if ["completed", "failed", "cancelled"].contains(&v["status"].as_str().unwrap()) {
                done.push(v);
            }
        }
        if done.len() == jobs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(done.len(), jobs.len(), "every job ended");
    let stats: Value = http
        .get(format!("{sim_url}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut batch_ids: Vec<String> = Vec::new();
    let mut batch_calls = 0;
    for (job, v) in jobs.iter().zip(&done) {
        assert_eq!(v["status"], "completed", "{v}");
        for b in v["batchIds"].as_array().unwrap() {
            let b = b.as_str().unwrap().to_owned();
            if !batch_ids.contains(&b) {
                batch_ids.push(b);
            }
        }
        let tree = get(&http, &format!("{base}/api/job/{job}/tree")).await;
        for line in tree["cost"]["byOperation"].as_array().unwrap() {
            if line["tier"] == "batch" {
                batch_calls += line["calls"].as_u64().unwrap();
            }
        }
    }
    // No batch was created twice: the simulator made exactly the batches the jobs name.
    assert_eq!(
        stats["batches_created"].as_u64().unwrap(),
        batch_ids.len() as u64,
        "{stats}"
    );
    // Every request was run and billed once, and each is a call the sessions account for.
    assert_eq!(
        stats["batch_requests_billed"],
        stats["batch_requests_executed"]
    );
    assert_eq!(
        stats["batch_requests_billed"].as_u64().unwrap(),
        batch_calls,
        "{stats}"
    );
    assert_eq!(
        stats["sync_requests"].as_u64().unwrap(),
        0,
        "nothing went to the standard API"
    );
    // SIGTERM: a graceful stop, exit 0.
    let term = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn without_a_token_the_server_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(["serve", "--addr", "0.0.0.0:0"])
        .current_dir(dir.path())
        .env("BATCHBEAM_CONFIG", dir.path().join("none.toml"))
        .env("BATCHBEAM_DB", dir.path().join("b.db"))
        .env_remove("BATCHBEAM_API_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BATCHBEAM_API_TOKEN"), "{err}");
    assert!(!dir.path().join("b.db").exists(), "nothing was created");
}
