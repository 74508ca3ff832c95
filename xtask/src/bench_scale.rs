//! `cargo xtask bench scale`: 1,000 and then 10,000 sessions parked on their batches across
//! two release `batchbeam serve` instances on one throwaway PostgreSQL, against a `batchbeam
//! sim` whose clock is frozen (batches stay `validating`, so every session stays parked). It
//! reports each instance's peak RSS and the memory per pending session, the batches the first
//! stage made (many sessions, few batches), and the status endpoint (`GET /api/job/{id}`)
//! under a fixed rate from `oha` in a process of its own: throughput, p50 and p99. While oha
//! runs, `pg_stat_activity` is sampled, so a slow p99 comes with the queries and waits that
//! were active. Figures go to docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::http;
use crate::postgres::Postgres;
use crate::serve_process::{Instance, Launch};
use crate::sim_process::Sim;
use crate::util::{check_interrupted, free_port};

/// Sessions parked at each step.
const STEPS: [usize; 2] = [1_000, 10_000];
/// The status endpoint's load: requests per second, for how long, over how many connections.
const RATE: u32 = 1_000;
const LOAD_SECS: u32 = 20;
const CONNECTIONS: u32 = 32;
const SIM_KEY: &str = "sk-bench-not-a-secret";

/// Runs the steps up to `max_sessions` (every step when `None`), each instance with
/// `workers` (the server's default when `None`).
pub(crate) fn run(
    root: &Path,
    max_sessions: Option<usize>,
    workers: Option<usize>,
) -> anyhow::Result<()> {
    crate::util::catch_interrupts();
    let steps: Vec<usize> = STEPS
        .into_iter()
        .filter(|s| max_sessions.is_none_or(|m| *s <= m))
        .collect();
    if steps.is_empty() {
        bail!("--sessions must be at least {}", STEPS[0]);
    }
    let bin = crate::bench::release_batchbeam(root)?;
    let oha = crate::tools::OHA.ensure()?;
    let pg = Postgres::start().context("starting a PostgreSQL")?;
    let db = pg.create_database("bench_scale")?;
    let scratch = tempfile::Builder::new()
        .prefix("batchbeam-bench-scale-")
        .tempdir()?;
    let dir = scratch.path();
    // A frozen clock: no batch ever leaves `validating` unless the bench moves it.
    let sim = Sim::start(&bin, &dir.join("sim.log"), &["--time-scale", "0"])?;
    let sim_host = http::host_of(&sim.base_url)?.to_owned();
    let mut launch = Launch {
        bin: bin.clone(),
        args: vec![
            "--database-url".to_owned(),
            db.clone(),
            "--sessions".to_owned(),
            dir.join("sessions").display().to_string(),
        ],
        env: [
            ("OPENAI_BASE_URL", sim.base_url.as_str()),
            ("OPENAI_API_KEY", SIM_KEY),
            ("BATCH_API_ENABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        dir: dir.to_owned(),
    };
    if let Some(n) = workers {
        launch.args.extend(["--workers".to_owned(), n.to_string()]);
    }
    let mut instances = vec![
        Instance::new("s1", free_port()?, dir),
        Instance::new("s2", free_port()?, dir),
    ];
    for inst in &mut instances {
        let mut own = launch.clone();
        own.args
            .extend(["--instance-id".to_owned(), inst.id.clone()]);
        inst.start(&own, 0.0)?;
        inst.wait_healthy(Duration::from_secs(120))?;
    }
    let idle: Vec<u64> = instances
        .iter()
        .map(|i| rss_kib(i, "VmRSS:"))
        .collect::<anyhow::Result<_>>()?;
    let mut posted = 0usize;
    let mut first_job = String::new();
    let each = workers.map_or("the default".to_owned(), |n| n.to_string());
    println!(
        "bench scale: two serve instances on one PostgreSQL ({each} workers each), sim clock frozen"
    );
    for target in steps {
        let mut report = String::new();
        eprintln!("bench scale: posting jobs up to {target} ...");
        let t = Instant::now();
        while posted < target {
            check_interrupted()?;
            let inst = &instances[posted % instances.len()];
            let id = post(inst, posted)?;
            if first_job.is_empty() {
                first_job = id;
            }
            posted += 1;
        }
        let post_secs = t.elapsed().as_secs_f64();
        eprintln!(
            "bench scale: {target} posted in {post_secs:.0}s; waiting until every one is parked ..."
        );
        let parked_secs = wait_parked(&instances[0], target)?;
        let batches = batches_made(&sim_host)?;
        let rss: Vec<(u64, u64)> = instances
            .iter()
            .map(|i| Ok((rss_kib(i, "VmRSS:")?, rss_kib(i, "VmHWM:")?)))
            .collect::<anyhow::Result<_>>()?;
        eprintln!("bench scale: {RATE} req/s on GET /api/job/{{id}} for {LOAD_SECS}s ...");
        let (load, activity) = load(&oha, &instances[0], &first_job, &pg)?;
        let added: u64 = rss
            .iter()
            .zip(&idle)
            .map(|((now, _), idle)| now.saturating_sub(*idle))
            .sum();
        writeln!(
            report,
            "{target} sessions parked ({post_secs:.0}s to post, {parked_secs:.0}s more until all parked):"
        )?;
        for (inst, (now, peak)) in instances.iter().zip(&rss) {
            writeln!(
                report,
                "  {}: RSS {:.0} MiB now, peak {:.0} MiB",
                inst.id,
                *now as f64 / 1024.0,
                *peak as f64 / 1024.0
            )?;
        }
        writeln!(
            report,
            "  memory per pending session: {:.1} KiB (RSS added over both instances / sessions)",
            added as f64 / target as f64
        )?;
        writeln!(report, "  {batches}")?;
        writeln!(report, "  GET /api/job/{{id}}: {load}")?;
        if !activity.is_empty() {
            writeln!(
                report,
                "  active in PostgreSQL while loaded (samples, state, wait, query):"
            )?;
            for line in activity.lines().take(8) {
                writeln!(report, "    {line}")?;
            }
        }
        // Each step's figures as soon as they are known: the 10,000 step takes a while.
        print!("{report}");
    }
    drop(instances);
    drop(sim);
    println!(
        "goals: 10,000 pending sessions on one machine; status p99 under 10 ms at {RATE} requests/s"
    );
    Ok(())
}

/// Posts job `n`: a small search in batch mode, deferred.
fn post(inst: &Instance, n: usize) -> anyhow::Result<String> {
    let body = json!({
        "prompt": "a lighthouse on a basalt cliff in a winter storm",
        "n": 2, "m": 1, "iterations": 1, "plan": "fused", "judging": "comparative",
        "ensemble": 1, "seed": n, "useBatch": true, "batchWaitMode": "deferred",
    });
    let reply = http::request(
        &inst.host(),
        "POST",
        "/api/beam-search",
        None,
        Some(&body),
        Duration::from_secs(60),
    )?;
    if reply.status != 202 {
        bail!(
            "POST /api/beam-search answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(reply.json()?["jobId"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Waits until `/metrics` counts `target` jobs `waiting`; the seconds it took.
fn wait_parked(inst: &Instance, target: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    loop {
        check_interrupted()?;
        let reply = http::request(
            &inst.host(),
            "GET",
            "/metrics",
            None,
            None,
            Duration::from_secs(60),
        )?;
        let text = String::from_utf8_lossy(&reply.body);
        let waiting = text
            .lines()
            .find(|l| l.starts_with("batchbeam_jobs{status=\"waiting\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as usize;
        if waiting >= target {
            return Ok(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > Duration::from_secs(30 * 60) {
            bail!("only {waiting} of {target} jobs parked after 30 minutes");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The simulator's batches: how many, and the request lines they carry. The clock moves 5
/// simulated seconds so that new batches are validated (their line count known) and none
/// starts running.
fn batches_made(sim: &str) -> anyhow::Result<String> {
    http::request(
        sim,
        "POST",
        "/sim/clock/advance?seconds=5",
        None,
        None,
        Duration::from_secs(60),
    )?;
    let stats = http::get_json(sim, "/sim/stats", None)?;
    let batches = stats["batches"].as_object().cloned().unwrap_or_default();
    let lines: u64 = batches
        .values()
        .map(|b| b["total"].as_u64().unwrap_or(0))
        .sum();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for b in batches.values() {
        *by_status
            .entry(b["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    Ok(format!(
        "first stage (expand): {} batches carrying {lines} requests ({:.0} per batch); {by_status:?}",
        batches.len(),
        lines as f64 / batches.len().max(1) as f64
    ))
}

/// oha at a fixed rate on one job's status, with `pg_stat_activity` sampled every 250 ms
/// meanwhile; the summary line and the activity seen most often.
fn load(oha: &Path, inst: &Instance, job: &str, pg: &Postgres) -> anyhow::Result<(String, String)> {
    let url = format!("http://{}/api/job/{job}", inst.host());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        let url = pg.url();
        let psql = pg.program("psql");
        std::thread::spawn(move || sample_activity(&psql, &url, &stop))
    };
    let out = Command::new(oha)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
            "-z",
        ])
        .arg(format!("{LOAD_SECS}s"))
        .args(["-q", &RATE.to_string(), "-c", &CONNECTIONS.to_string()])
        .arg(&url)
        .output()
        .context("running oha")?;
    stop.store(true, Ordering::SeqCst);
    let activity = sampler.join().unwrap_or_default();
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("reading oha's JSON")?;
    let ms = |p: &str| v["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let codes = v["statusCodeDistribution"].to_string();
    let line = format!(
        "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, success rate {:.3}, status codes {codes}",
        v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        ms("p50"),
        ms("p99"),
        v["summary"]["slowest"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        v["summary"]["successRate"].as_f64().unwrap_or(0.0),
    );
    Ok((line, activity))
}

/// Counts (state, wait event, query) of the other sessions in `pg_stat_activity` until `stop`.
fn sample_activity(psql: &Path, url: &str, stop: &AtomicBool) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let sql = "SELECT state || ' | ' || coalesce(wait_event_type || ':' || wait_event, '-') || ' | ' \
               || left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_activity \
               WHERE pid <> pg_backend_pid() AND datname IS NOT NULL AND state <> 'idle'";
    while !stop.load(Ordering::SeqCst) {
        if let Ok(out) = Command::new(psql).args(["-At", url, "-c", sql]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                *counts.entry(line.to_owned()).or_default() += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut top: Vec<(usize, String)> = counts.into_iter().map(|(k, v)| (v, k)).collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.0));
    top.iter().map(|(n, k)| format!("{n:>5}  {k}\n")).collect()
}

/// One `kB` field of the instance's `/proc/PID/status`.
fn rss_kib(inst: &Instance, field: &str) -> anyhow::Result<u64> {
    let pid = inst
        .pid()
        .with_context(|| format!("{} is not running", inst.id))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
