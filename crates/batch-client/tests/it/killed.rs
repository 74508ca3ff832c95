//! A real process killed (SIGKILL) while its upload or its create is in flight: the test binary
//! runs itself as the child, and a fresh manager on the same database finishes the job with one
//! upload and one batch per record; for `submit_file`, the fresh process simply submits the same
//! file again.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openai_sim::{FaultConfig, FaultKind, FaultRule};

use crate::support::{self, drive_for, manager_with, no_metadata, shards, sim};

const CHILD_SIM: &str = "BATCHBEAM_TEST_CHILD_SIM";
const CHILD_DIR: &str = "BATCHBEAM_TEST_CHILD_DIR";
const CHILD_FILE: &str = "BATCHBEAM_TEST_CHILD_FILE";
const CHILD_MAX_LINES: &str = "BATCHBEAM_TEST_CHILD_MAX_LINES";

/// The record lease: a dead child's runs out this long after its last renewal, or, with a
/// create in flight, at that create's bound (`CHILD_TIMEOUT` + this after it was sent), by when
/// the create has landed (or died) and a lookup finds what it did.
const LEASE: Duration = Duration::from_millis(400);
/// Long enough that the kill, sent a third of the way in, lands inside the slow request even when
/// a busy machine wakes the test late by a second.
const SLOW_MS: u64 = 1_500;
/// The child's request timeout, past the slow request: a create the child sent before it died
/// keeps its record from everyone else for this plus a lease.
const CHILD_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the fresh manager may take to finish, waiting out a dead child's leases.
const FINISH: Duration = Duration::from_secs(120);

fn config(dir: &std::path::Path) -> batch_client::ManagerConfig {
    let mut config = support::manager_config(dir);
    config.lease = LEASE;
    config
}

async fn child_manager(url: &str, dir: &str) -> batch_client::BatchJobManager {
    let dir = PathBuf::from(dir);
    batch_client::BatchJobManager::open(
        support::client_timing_out(url, CHILD_TIMEOUT),
        &dir.join("batchbeam.db"),
        config(&dir),
    )
    .await
    .unwrap()
}

/// The child's body; a no-op in an ordinary test run.
#[tokio::test]
async fn child_submitter() {
    let (Ok(url), Ok(dir)) = (std::env::var(CHILD_SIM), std::env::var(CHILD_DIR)) else {
        return;
    };
    let manager = child_manager(&url, &dir).await;
    for shard in &shards("kill", 3, 2) {
        manager.submit_batch(shard, no_metadata()).await.unwrap();
    }
    // Only reached if the parent failed to kill us in time.
    std::process::exit(3);
}

/// The child's body for `submit_file`; a no-op in an ordinary test run.
#[tokio::test]
async fn child_file_submitter() {
    let (Ok(url), Ok(dir), Ok(file), Ok(max_lines)) = (
        std::env::var(CHILD_SIM),
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_FILE),
        std::env::var(CHILD_MAX_LINES),
    ) else {
        return;
    };
    let manager = child_manager(&url, &dir).await;
    let options = batch_client::SubmitOptions {
        max_lines: max_lines.parse().unwrap(),
        ..Default::default()
    };
    manager
        .submit_file(std::path::Path::new(&file), options)
        .await
        .unwrap();
    std::process::exit(3);
}

/// Starts the test binary as a child running `child`, waits until `ready` holds, and kills it
/// (SIGKILL) inside the simulator's slow request.
async fn kill_child(
    sim: &openai_sim::SimHandle,
    child: &str,
    envs: &[(&str, &std::ffi::OsStr)],
    ready: impl Fn(&openai_sim::StatsSnapshot) -> bool,
) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", child, "--nocapture", "--test-threads", "1"])
        .env(CHILD_SIM, sim.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    while !ready(&sim.stats().await) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the child never got there"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Well inside the slow request.
    tokio::time::sleep(Duration::from_millis(SLOW_MS / 3)).await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(3), "killed before it finished");
    sim.set_faults(FaultConfig::default());
}

/// A `batch submit FILE` killed while its upload or create (of its first shard) is in flight,
/// then run again: exactly one batch per shard, every request billed once.
async fn kill_file_submit_during(method: &str, path: &str, max_lines: usize, shards: u64) {
    let sim = sim().await;
    sim.set_faults(
        FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::Slow)
                .on(method, path)
                .next(1)
                .delay_ms(SLOW_MS),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = crate::submissions::write_input(dir.path(), "in.jsonl", 4, "kill");
    let lines = max_lines.to_string();
    kill_child(
        &sim,
        "killed::child_file_submitter",
        &[
            (CHILD_DIR, dir.path().as_os_str()),
            (CHILD_FILE, file.as_os_str()),
            (CHILD_MAX_LINES, std::ffi::OsStr::new(&lines)),
        ],
        |s| s.faults.get("slow") == Some(&1),
    )
    .await;

    tokio::time::sleep(LEASE + Duration::from_millis(50)).await;
    let manager = manager_with(&sim, dir.path(), config(dir.path())).await;
    let options = batch_client::SubmitOptions {
        max_lines,
        ..Default::default()
    };
    let again = manager.submit_file(&file, options).await.unwrap();
    assert!(again.attached, "{method} {path}");
    assert_eq!(again.records.len() as u64, shards);
    let records = drive_for(&sim, &manager, FINISH).await;
    for record in &records {
        let results = manager.retrieve_results(&record.id).await.unwrap();
        assert_eq!(
            results.succeeded,
            4 / shards,
            "{method} {path}: {results:?}"
        );
    }
    let stats = sim.stats().await;
    assert_eq!(
        (stats.files_uploaded, stats.batches_created),
        (shards, shards),
        "{method} {path}: {stats:?}"
    );
    assert_eq!(stats.batch_requests_billed, 4);
}

#[tokio::test]
async fn a_file_submit_killed_while_creating_and_run_again_makes_one_batch() {
    kill_file_submit_during("POST", "/v1/batches", 100, 1).await;
}

#[tokio::test]
async fn a_file_submit_killed_while_uploading_and_run_again_makes_one_batch() {
    kill_file_submit_during("POST", "/v1/files", 100, 1).await;
}

#[tokio::test]
async fn a_sharded_file_submit_killed_while_creating_and_run_again_makes_one_batch_per_shard() {
    kill_file_submit_during("POST", "/v1/batches", 2, 2).await;
}

async fn kill_during(method: &str, path: &str, ready: impl Fn(&openai_sim::StatsSnapshot) -> bool) {
    let sim = sim().await;
    // The second request of this kind is slow: the child dies while it is in flight.
    sim.set_faults(
        FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::Slow)
                .on(method, path)
                .skip(1)
                .next(1)
                .delay_ms(SLOW_MS),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    kill_child(
        &sim,
        "killed::child_submitter",
        &[(CHILD_DIR, dir.path().as_os_str())],
        ready,
    )
    .await;

    tokio::time::sleep(LEASE + Duration::from_millis(50)).await;
    let manager = manager_with(&sim, dir.path(), config(dir.path())).await;
    manager.resume().await.unwrap();
    let records = drive_for(&sim, &manager, FINISH).await;
    // Normally 2 (the third shard was never begun); 3 only if the machine was too slow for the
    // kill to land inside the slow request. Either way each one counts once below.
    let n = records.len() as u64;
    assert!((2..=3).contains(&n), "{method} {path}: {records:?}");
    for record in &records {
        let results = manager.retrieve_results(&record.id).await.unwrap();
        assert_eq!(results.succeeded, 2, "{method} {path}: {results:?}");
    }
    let stats = sim.stats().await;
    assert_eq!(
        (stats.files_uploaded, stats.batches_created),
        (n, n),
        "{method} {path}: {stats:?}"
    );
    assert_eq!(stats.batch_requests_billed, 2 * n);
}

#[tokio::test]
async fn a_process_killed_while_uploading_loses_and_repeats_nothing() {
    kill_during("POST", "/v1/files", |s| s.batches_created == 1).await;
}

#[tokio::test]
async fn a_process_killed_while_creating_loses_and_repeats_nothing() {
    kill_during("POST", "/v1/batches", |s| {
        s.batches_created == 1 && s.files_uploaded == 2
    })
    .await;
}
