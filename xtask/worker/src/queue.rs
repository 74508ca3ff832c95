//! `xtask-worker queue baseline|queue`: one side of `cargo xtask bench queue`, in a process of
//! its own so that its RSS is its own. The baseline builds and writes 100,000 chat requests with
//! batch-format's builder; the queue side enqueues the same requests through BatchRequestQueue
//! from concurrent sessions and flushes them to the simulator at `$BATCHBEAM_BENCH_QUEUE_URL`.
//! Prints `meta REQUESTS SESSIONS`, then `step SECS START_MIB PEAK_MIB EXTRA` lines. The peak is
//! reset (`/proc/self/clear_refs`) before each measured step and read from `VmHWM`.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use batch_client::{ApiKey, BatchJobManager, ClientConfig, ManagerConfig, OpenAiClient};
use batch_format::{BatchRequestBuilder, ChatOptions, Message, ShardLimits};
use batch_queue::{BatchRequestQueue, QueueConfig, QueuedRequest};

use crate::rss::{peak_rss_kib, status_kib};

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

/// The simulator's base URL and the scratch folder, given by `cargo xtask bench queue`.
const URL_VAR: &str = "BATCHBEAM_BENCH_QUEUE_URL";
const DIR_VAR: &str = "BATCHBEAM_BENCH_QUEUE_DIR";

struct Step {
    extra: f64,
    secs: f64,
    /// RSS when the step started (what earlier steps left behind).
    start_mib: f64,
    peak_mib: f64,
}

/// One side of the benchmark, in a child process: prints `step SECS START_MIB PEAK_MIB EXTRA`
/// lines (EXTRA: bytes written for the baseline, batches created for dispatch).
pub(crate) fn run(step: &str) -> anyhow::Result<()> {
    println!("meta {REQUESTS} {SESSIONS}");
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
