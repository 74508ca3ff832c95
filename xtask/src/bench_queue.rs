//! `cargo xtask bench queue`: BatchRequestQueue enqueue and dispatch throughput for 100,000 chat
//! requests and the memory they take, beside a baseline measured in the same run (the same
//! 100,000 lines built and written with batch-format's builder directly, no queue, no database).
//!
//! Runs release-built (a debug xtask rebuilds itself in release and re-runs). The baseline and the
//! queue each run in a child process of their own (the same binary, told by an environment
//! variable), and the simulator in a third (`batchbeam sim`), so each RSS is that side's own.
//! The peak is reset (`/proc/self/clear_refs`) before each measured step and read from `VmHWM`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use batch_client::{ApiKey, BatchJobManager, ClientConfig, ManagerConfig, OpenAiClient};
use batch_format::{BatchRequestBuilder, ChatOptions, Message, ShardLimits};
use batch_queue::{BatchRequestQueue, QueueConfig, QueuedRequest};

use crate::sim_process::{Sim, target_dir};
use crate::util::{cargo, exec};

/// Requests queued.
const REQUESTS: usize = 100_000;
/// Models the requests go to: four groups of 25,000, each under `max_group_size` (50,000), so
/// enqueue is measured alone and `flush()` dispatches the four groups.
const MODELS: [&str; 4] = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o", "gpt-4.1-nano"];
/// Concurrent enqueuing sessions.
const SESSIONS: usize = 32;

fn request(i: usize) -> batch_format::ChatCompletionRequest {
    ChatOptions {
        max_tokens: Some(300),
        ..ChatOptions::new(MODELS[i % MODELS.len()])
    }
    .into_request(vec![
        Message::system("You critique image prompts for a beam search. Answer in JSON."),
        Message::user(format!(
            "Candidate {i}: a lighthouse on a basalt cliff in a winter storm, oil on canvas, \
             dramatic rim light, seen from the sea. Score it 1-10 and suggest one change."
        )),
    ])
}

/// Set in a child process: which side to measure.
const STEP_VAR: &str = "BATCHBEAM_BENCH_QUEUE_STEP";
const URL_VAR: &str = "BATCHBEAM_BENCH_QUEUE_URL";
const DIR_VAR: &str = "BATCHBEAM_BENCH_QUEUE_DIR";

struct Step {
    extra: f64,
    secs: f64,
    /// RSS when the step started (what earlier steps left behind).
    start_mib: f64,
    peak_mib: f64,
}

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        exec(cargo().current_dir(root).args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "xtask",
            "-p",
            "batchbeam",
        ]))?;
        let bin = target_dir(root).join("release/xtask");
        return exec(Command::new(bin).current_dir(root).args(["bench", "queue"]));
    }
    let batchbeam = target_dir(root).join("release/batchbeam");
    if !batchbeam.exists() {
        exec(
            cargo()
                .current_dir(root)
                .args(["build", "--release", "--quiet", "-p", "batchbeam"]),
        )?;
    }
    if let Ok(step) = std::env::var(STEP_VAR) {
        return child(&step);
    }
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let sim = Sim::start(&batchbeam, &dir.path().join("sim.log"), &[])?;
    let me = std::env::current_exe().context("locating the xtask binary")?;
    // Each side in its own process, so that neither's RSS includes what the other left.
    let run_child = |step: &str| -> anyhow::Result<Vec<Step>> {
        let out = Command::new(&me)
            .current_dir(root)
            .args(["bench", "queue"])
            .env(STEP_VAR, step)
            .env(URL_VAR, &sim.base_url)
            .env(DIR_VAR, dir.path().join(step))
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running the {step} step"))?;
        anyhow::ensure!(out.status.success(), "the {step} step failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("step "))
            .map(|l| {
                let v: Vec<f64> = l
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                anyhow::ensure!(v.len() == 4, "bad step line {l:?}");
                Ok(Step {
                    secs: v[0],
                    start_mib: v[1],
                    peak_mib: v[2],
                    extra: v[3],
                })
            })
            .collect()
    };

    eprintln!("bench queue: baseline, {REQUESTS} lines through BatchRequestBuilder to files ...");
    let baseline = run_child("baseline")?
        .pop()
        .context("no baseline measurement")?;
    let baseline_bytes = baseline.extra;
    eprintln!(
        "bench queue: {REQUESTS} requests through BatchRequestQueue ({SESSIONS} sessions) ..."
    );
    let mut steps = run_child("queue")?.into_iter();
    let (Some(enqueue), Some(dispatch)) = (steps.next(), steps.next()) else {
        anyhow::bail!("no queue measurement");
    };
    let batches = dispatch.extra;

    let rate = |s: &Step| REQUESTS as f64 / s.secs;
    let mut table = String::new();
    writeln!(
        table,
        "| step                                   | requests/s | seconds | RSS at start | peak RSS  | vs baseline |"
    )?;
    writeln!(
        table,
        "|----------------------------------------|-----------:|--------:|-------------:|----------:|------------:|"
    )?;
    let rows = [
        ("baseline: builder + write JSONL", &baseline),
        ("queue: enqueue (durable, SQLite)", &enqueue),
        ("queue: dispatch (flush -> submitted)", &dispatch),
    ];
    for (name, step) in rows {
        writeln!(
            table,
            "| {name:<38} | {:>10.0} | {:>7.2} | {:>9.1} MB | {:>6.1} MB | {:>10.2}x |",
            rate(step),
            step.secs,
            step.start_mib,
            step.peak_mib,
            rate(step) / rate(&baseline),
        )?;
    }
    let both = Step {
        secs: enqueue.secs + dispatch.secs,
        start_mib: enqueue.start_mib,
        extra: 0.0,
        peak_mib: enqueue.peak_mib.max(dispatch.peak_mib),
    };
    writeln!(
        table,
        "| {:<38} | {:>10.0} | {:>7.2} | {:>9.1} MB | {:>6.1} MB | {:>10.2}x |",
        "queue: enqueue + dispatch",
        rate(&both),
        both.secs,
        both.start_mib,
        both.peak_mib,
        rate(&both) / rate(&baseline),
    )?;
    println!("{table}");
    println!(
        "{REQUESTS} requests, {:.1} MB of JSONL, {batches} batches; baseline and queue each run in their own process (the simulator in a third), RSS is that process's",
        baseline_bytes / 1e6
    );
    Ok(())
}

/// One side of the benchmark, in a child process: prints `step SECS START_MIB PEAK_MIB EXTRA`
/// lines (EXTRA: bytes written for the baseline, batches created for dispatch).
fn child(step: &str) -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::var(DIR_VAR).context("no bench dir")?);
    let print = |s: &Step| println!("step {} {} {} {}", s.secs, s.start_mib, s.peak_mib, s.extra);
    match step {
        "baseline" => {
            let (mut s, bytes) = measured(|| baseline(&dir))?;
            s.extra = bytes as f64;
            print(&s);
        }
        "queue" => {
            let url = std::env::var(URL_VAR).context("no simulator URL")?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            let (enqueue, mut dispatch, batches) = runtime.block_on(queue(&url, &dir))?;
            dispatch.extra = batches as f64;
            print(&enqueue);
            print(&dispatch);
        }
        other => anyhow::bail!("unknown bench queue step {other}"),
    }
    Ok(())
}

/// Runs `f` with the peak RSS reset first; its time and peak.
fn measured<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(Step, T)> {
    let start_mib = reset_peak()?;
    let start = Instant::now();
    let out = f()?;
    Ok((
        Step {
            secs: start.elapsed().as_secs_f64(),
            start_mib,
            peak_mib: peak_rss_kib()? as f64 / 1024.0,
            extra: 0.0,
        },
        out,
    ))
}

fn baseline(dir: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut builder = BatchRequestBuilder::with_limits(ShardLimits {
        max_lines: 50_000,
        ..ShardLimits::OPENAI
    });
    for i in 0..REQUESTS {
        builder.add_chat_completion_request(
            format!("rq_{i:08}"),
            request(i).messages,
            ChatOptions {
                max_tokens: Some(300),
                ..ChatOptions::new(MODELS[i % MODELS.len()])
            },
        )?;
    }
    let mut bytes = 0;
    for shard in builder.build_batch("baseline")?.shards() {
        let path = dir.join(format!("{}-{}.jsonl", shard.name(), shard.index()));
        let mut w = BufWriter::new(File::create(&path)?);
        shard.write_jsonl(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        bytes += shard.byte_size();
    }
    Ok(bytes)
}

async fn queue(base_url: &str, dir: &Path) -> anyhow::Result<(Step, Step, usize)> {
    let client = OpenAiClient::new(ClientConfig::new(base_url, ApiKey::new("sk-bench-queue")))?;
    let mut manager_config = ManagerConfig::new(dir.join("files"));
    manager_config.poll_interval = Duration::from_secs(3600);
    manager_config.poll_ceiling = Duration::from_secs(3600);
    let manager =
        BatchJobManager::open(client.clone(), &dir.join("batchbeam.db"), manager_config).await?;
    let config = QueueConfig {
        max_group_size: 50_000,
        ..QueueConfig::default()
    };
    let queue = BatchRequestQueue::new(Arc::new(manager.clone()), client, config).await?;

    let start_mib = reset_peak()?;
    let start = Instant::now();
    let mut sessions = tokio::task::JoinSet::new();
    for s in 0..SESSIONS {
        let queue = queue.clone();
        sessions.spawn(async move {
            let mut handles = Vec::new();
            for i in (s..REQUESTS).step_by(SESSIONS) {
                handles.push(
                    queue
                        .enqueue("critique", QueuedRequest::Chat(request(i)))
                        .await?,
                );
            }
            anyhow::Ok(handles)
        });
    }
    let mut handles = Vec::with_capacity(REQUESTS);
    while let Some(done) = sessions.join_next().await {
        handles.extend(done??);
    }
    let enqueue = Step {
        extra: 0.0,
        secs: start.elapsed().as_secs_f64(),
        start_mib,
        peak_mib: peak_rss_kib()? as f64 / 1024.0,
    };

    let start_mib = reset_peak()?;
    let start = Instant::now();
    queue.flush().await?;
    let dispatch = Step {
        extra: 0.0,
        secs: start.elapsed().as_secs_f64(),
        start_mib,
        peak_mib: peak_rss_kib()? as f64 / 1024.0,
    };
    let batches = manager.list().await?.len();
    anyhow::ensure!(handles.len() == REQUESTS, "lost handles");
    Ok((enqueue, dispatch, batches))
}

/// Resets the process's peak RSS to its current RSS (Linux: `echo 5 > /proc/self/clear_refs`)
/// and returns that RSS in MiB.
fn reset_peak() -> anyhow::Result<f64> {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    Ok(status_kib("VmRSS:")? as f64 / 1024.0)
}

fn peak_rss_kib() -> anyhow::Result<u64> {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}
