//! End-to-end tests of the `batch` commands that talk to the API, as a user runs them: retries
//! are announced on stderr, a command that could not do what was asked exits non-zero, and the
//! key never shows.

// Helpers outside `#[test]` functions may panic too: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "sk-proj-CLITEST-0123456789abcdef";

const LINE: &str = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}}"#;

fn batchbeam(dir: &Path, base_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_batchbeam"))
        .args(args)
        .current_dir(dir)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", base_url)
        // One retry: the test sees a notice without waiting out the default six.
        .env("OPENAI_MAX_RETRIES", "1")
        .env("BATCHBEAM_CONFIG", dir.join("none.toml"))
        .env_remove("BATCHBEAM_DB")
        .env_remove("DATABASE_URL")
        .env_remove("BATCH_API_ENABLED")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A base URL on a port nothing listens on.
/// A port nothing listens on, held for the test (a freed port could go to a parallel test's
/// server).
fn dead_port() -> openai_sim::RefusedPort {
    openai_sim::RefusedPort::new().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_the_api_unreachable_says_it_is_retrying_and_exits_two() {
    let sim = openai_sim::spawn(openai_sim::SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    std::fs::write(dir.path().join("in.jsonl"), format!("{LINE}\n")).unwrap();
    let submitted = batchbeam(
        dir.path(),
        &sim.base_url(),
        &["batch", "submit", "in.jsonl", "--json"],
    );
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let id = v["records"][0]["id"].as_str().unwrap().to_owned();

    let dead = dead_port();
    let out = batchbeam(dir.path(), &dead.base_url(), &["batch", "status", &id]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("retrying: attempt 1 of 2 failed: GET /batches/"),
        "{err}"
    );
    assert!(err.contains("next try in"), "{err}");
    assert!(
        err.contains(&format!(
            "{id}: showing the stored record: could not refresh it from OpenAI"
        )),
        "{err}"
    );
    assert!(text(&out.stdout).starts_with(&id));
    assert!(!err.contains(KEY) && !text(&out.stdout).contains(KEY));
}

#[test]
fn run_with_the_api_unreachable_says_it_is_retrying_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let dead = dead_port();
    let out = batchbeam(
        dir.path(),
        &dead.base_url(),
        &[
            "run",
            "a fox",
            "-n",
            "2",
            "-m",
            "1",
            "-i",
            "1",
            "--ensemble",
            "1",
            "--seed",
            "1",
        ],
    );
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("retrying: attempt 1 of 2 failed: POST /chat/completions"),
        "{err}"
    );
    assert!(!err.contains(KEY));
}
