//! `cargo xtask bench queue`: BatchRequestQueue enqueue and dispatch throughput for 100,000 chat
//! requests and the memory they take, beside a baseline measured in the same run (the same
//! 100,000 lines built and written with batch-format's builder directly, no queue, no database).
//!
//! The baseline and the queue each run in a release-built `xtask-worker` process of their own,
//! and the simulator in a third (release `batchbeam sim`), so each RSS is that side's own.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::sim_process::Sim;

/// What the worker reads: the simulator's URL and its scratch folder.
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
    let worker = crate::bench::release_worker(root)?;
    let batchbeam = crate::bench::release_batchbeam(root)?;
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let sim = Sim::start(&batchbeam, &dir.path().join("sim.log"), &[])?;
    let mut shape = (0usize, 0usize);
    // Each side in its own process, so that neither's RSS includes what the other left.
    let mut run_child = |step: &str| -> anyhow::Result<Vec<Step>> {
        let out = Command::new(&worker)
            .current_dir(root)
            .args(["queue", step])
            .env(URL_VAR, &sim.base_url)
            .env(DIR_VAR, dir.path().join(step))
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running the {step} step"))?;
        anyhow::ensure!(out.status.success(), "the {step} step failed");
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(meta) = text.lines().find_map(|l| l.strip_prefix("meta ")) {
            let mut it = meta.split_whitespace().map(str::parse::<usize>);
            if let (Some(Ok(requests)), Some(Ok(sessions))) = (it.next(), it.next()) {
                shape = (requests, sessions);
            }
        }
        text.lines()
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

    eprintln!("bench queue: baseline, the requests through BatchRequestBuilder to files ...");
    let baseline = run_child("baseline")?
        .pop()
        .context("no baseline measurement")?;
    let baseline_bytes = baseline.extra;
    eprintln!(
        "bench queue: the same requests through BatchRequestQueue from concurrent sessions ..."
    );
    let mut steps = run_child("queue")?.into_iter();
    let (requests, sessions) = shape;
    let (Some(enqueue), Some(dispatch)) = (steps.next(), steps.next()) else {
        anyhow::bail!("no queue measurement");
    };
    let batches = dispatch.extra;

    let rate = |s: &Step| requests as f64 / s.secs;
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
        "{requests} requests from {sessions} sessions, {:.1} MB of JSONL, {batches} batches; baseline and queue each run in their own process (the simulator in a third), RSS is that process's",
        baseline_bytes / 1e6
    );
    Ok(())
}
