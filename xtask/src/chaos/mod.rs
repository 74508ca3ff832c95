//! `cargo xtask chaos [--seed N] [--short|--long]`: three `batchbeam serve` instances on one
//! throwaway PostgreSQL and one `batchbeam sim` with seeded faults; jobs in batch mode are
//! posted while instances are SIGKILLed and started again at seeded moments. When every job
//! is final (or the deadline passed, itself a failure) the run checks the database against
//! the simulator's counters and prints one table (`verdict`); it exits non-zero when a check
//! fails, and then keeps the run's folder and prints its logs' paths. See docs/scaling.md.

mod plan;
mod verdict;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::http;
use crate::postgres::Postgres;
use crate::serve_process::{Instance, Launch};
use crate::sim_process::Sim;
use crate::util::{cargo, check_interrupted, exec, free_port, target_dir};
pub(crate) use plan::Size;
use plan::{Kill, LEASE_SECS, Plan};
use verdict::{RunFacts, SimFacts};

/// The simulator's key for the instances (any key is accepted; this one is never secret).
const SIM_KEY: &str = "sk-chaos-not-a-secret";
/// Simulated seconds per real second: a batch takes about 40 simulated seconds (0.01 s
/// here) and expires after 24 simulated hours (29 s here), so expired and stalled batches end
/// within the run.
const TIME_SCALE: &str = "3000";
/// Serve instances on PostgreSQL; SQLite allows one process only.
const INSTANCES: usize = 3;

/// Where the instances keep their state.
pub(crate) enum Backend<'a> {
    /// A database on this PostgreSQL server, shared by every instance.
    Postgres(&'a Postgres),
    /// One SQLite file in the run's folder, one instance.
    Sqlite,
}

/// `cargo xtask chaos`: builds the binaries, starts a PostgreSQL, runs.
pub(crate) fn run(
    root: &Path,
    seed: u64,
    size: Size,
    sqlite: bool,
    deadline: Option<u64>,
) -> anyhow::Result<()> {
    crate::util::catch_interrupts();
    build(root)?;
    if sqlite {
        return run_on(root, Backend::Sqlite, seed, size, deadline);
    }
    let pg = Postgres::start().context("starting a PostgreSQL for the instances")?;
    run_on(root, Backend::Postgres(&pg), seed, size, deadline)
}

/// Builds what a run starts (a no-op after `cargo xtask ci`'s workspace build).
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    exec(cargo().current_dir(root).args([
        "build",
        "--locked",
        "-p",
        "batchbeam",
        "-p",
        "xtask-worker",
    ]))
}

/// One run on `backend`, with the binaries already built.
pub(crate) fn run_on(
    root: &Path,
    backend: Backend<'_>,
    seed: u64,
    size: Size,
    deadline: Option<u64>,
) -> anyhow::Result<()> {
    let target = target_dir(root)?;
    let (bin, worker) = (
        target.join("debug/batchbeam"),
        target.join("debug/xtask-worker"),
    );
    let scratch = tempfile::Builder::new()
        .prefix(&format!("batchbeam-chaos-{seed}-"))
        .tempdir()
        .context("creating the run's folder")?;
    let dir = scratch.path().to_owned();
    let instances = match backend {
        Backend::Postgres(_) => INSTANCES,
        Backend::Sqlite => 1,
    };
    let mut plan = Plan::new(seed, size, instances);
    if let Some(secs) = deadline {
        plan.deadline_secs = secs;
    }
    let db = match backend {
        Backend::Postgres(pg) => {
            pg.create_database(&format!("chaos_{seed}_{}", std::process::id()))?
        }
        Backend::Sqlite => dir.join("chaos.db").display().to_string(),
    };
    let result = run_in(&dir, &bin, &worker, &db, instances, &plan);
    match result {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => {
            let kept = scratch.keep();
            eprintln!("chaos: the run's folder is kept: {}", kept.display());
            for log in logs(&kept) {
                eprintln!("  log: {}", log.display());
            }
            result?;
            bail!("chaos: a check failed (seed {seed}); the table above says which")
        }
    }
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// The run itself; `Ok(false)` when a check failed.
fn run_in(
    dir: &Path,
    bin: &Path,
    worker: &Path,
    db: &str,
    count: usize,
    plan: &Plan,
) -> anyhow::Result<bool> {
    let faults = dir.join("faults.json");
    std::fs::write(&faults, serde_json::to_string_pretty(&plan.faults)?)?;
    let seed = plan.seed.to_string();
    let sim = Sim::start(
        bin,
        &dir.join("sim.log"),
        &[
            "--time-scale",
            TIME_SCALE,
            "--seed",
            &seed,
            "--faults",
            &faults.display().to_string(),
        ],
    )?;
    eprintln!(
        "chaos: seed {}, {:?}: {} jobs, {} kills planned, {count} instance(s); folder {}",
        plan.seed,
        plan.size,
        plan.jobs.len(),
        plan.kills.len(),
        dir.display()
    );
    let env: Vec<(String, String)> = [
        ("OPENAI_BASE_URL", sim.base_url.as_str()),
        ("OPENAI_API_KEY", SIM_KEY),
        ("OPENAI_MAX_RETRIES", "20"),
        ("BATCH_API_ENABLED", "true"),
        ("BATCH_POLL_INTERVAL_MS", "200"),
        ("BATCH_POLL_MAX_INTERVAL_MS", "1000"),
        ("BATCH_RESUBMIT_DELAY_MS", "500"),
        ("BATCH_MAX_WAIT_HOURS", "0.02"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("BATCHBEAM_LEASE_SECS".to_owned(), LEASE_SECS.to_string())])
    .collect();
    let sessions = dir.join("sessions").display().to_string();
    let mut instances = Vec::new();
    for i in 0..count {
        instances.push(Instance::new(&format!("i{}", i + 1), free_port()?, dir));
    }
    let launch_of = |inst: &Instance| {
        let mut args = vec!["--sessions".to_owned(), sessions.clone()];
        if crate::postgres::is_url(db) {
            args.extend(["--database-url".to_owned(), db.to_owned()]);
            args.extend(["--instance-id".to_owned(), inst.id.clone()]);
        } else {
            args.extend(["--db".to_owned(), db.to_owned()]);
        }
        Launch {
            bin: bin.to_owned(),
            args,
            env: env.clone(),
            dir: dir.to_owned(),
        }
    };
    let started = Instant::now();
    // The first start of each instance, one after the other: each runs the migrations it
    // finds missing, and a broken build or flag fails here, before any chaos.
    for inst in &mut instances {
        inst.start(&launch_of(inst), 0.0)?;
        inst.wait_healthy(Duration::from_secs(120))?;
    }
    let mut run = RunFacts {
        planned_kills: plan.kills.len(),
        lease_ms: LEASE_SECS * 1000,
        ..RunFacts::default()
    };
    let outcome = drive(plan, &mut instances, &launch_of, &mut run, started);
    for inst in &mut instances {
        inst.kill();
    }
    let secs = started.elapsed().as_secs_f64();
    outcome?;

    eprintln!("chaos: stopped after {secs:.0}s; reading the database and the simulator");
    let host = http::host_of(&sim.base_url)?.to_owned();
    let sim_facts = SimFacts {
        stats: http::get_json(&host, "/sim/stats", None)?,
        requests: http::get_json(&host, "/sim/stats/requests", None)?,
        batches: sim_batches(&host)?,
    };
    drop(sim);
    let facts = db_facts(worker, db)?;
    let rows = verdict::rows(&run, &facts, &sim_facts);
    let passed = rows.iter().all(|r| r.ok != Some(false));
    println!(
        "chaos verdict: seed {}, {:?}, {} instance(s) on {}, {secs:.0}s",
        plan.seed,
        plan.size,
        count,
        facts["backend"].as_str().unwrap_or("?")
    );
    print!("{}", verdict::table(&rows));
    println!("chaos: {}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}

/// The run's loop: post the jobs, kill and restart instances on the plan's schedule, and
/// stop once every job is final, every kill sent and every instance up again (or at the
/// deadline).
fn drive(
    plan: &Plan,
    instances: &mut [Instance],
    launch_of: &dyn Fn(&Instance) -> Launch,
    run: &mut RunFacts,
    started: Instant,
) -> anyhow::Result<()> {
    let mut next_job = 0;
    let mut next_kill = 0;
    // When each instance that is down comes back.
    let mut back_at: Vec<Option<f64>> = vec![None; instances.len()];
    let mut last_look = 0.0;
    let mut last_line = 0.0;
    loop {
        check_interrupted()?;
        let now = started.elapsed().as_secs_f64();
        if now > plan.deadline_secs as f64 {
            run.deadline_hit = true;
            eprintln!("chaos: deadline of {}s passed", plan.deadline_secs);
            return Ok(());
        }
        for (i, inst) in instances.iter_mut().enumerate() {
            if let Some(status) = inst.exited() {
                eprintln!(
                    "chaos: {} exited by itself ({status}); starting it again",
                    inst.id
                );
                run.crashes
                    .push(format!("{} at {now:.0}s ({status})", inst.id));
                back_at[i] = Some(now);
            }
            if back_at[i].is_some_and(|t| t <= now) {
                back_at[i] = None;
                inst.start(&launch_of(inst), now)?;
                run.restarts += 1;
            }
        }
        if let Some(Kill {
            at,
            instance,
            down_for,
        }) = plan.kills.get(next_kill)
            && *at <= now
        {
            let n = instances.len();
            // The planned instance, or the next one that is up.
            if let Some(i) = (0..n)
                .map(|k| (instance + k) % n)
                .find(|&i| instances[i].is_up())
            {
                let inst = &mut instances[i];
                eprintln!(
                    "chaos: {now:>6.1}s kill #{} {} (pid {}), down {down_for:.1}s",
                    next_kill + 1,
                    inst.id,
                    inst.pid().unwrap_or(0)
                );
                inst.kill();
                run.kills += 1;
                run.killed.insert(inst.id.clone());
                run.kill_times
                    .entry(inst.id.clone())
                    .or_default()
                    .push(wall_ms());
                back_at[i] = Some(now + down_for);
                next_kill += 1;
            }
        }
        if let Some((at, body)) = plan.jobs.get(next_job)
            && *at <= now
            && post_job(instances, next_job, body)?
        {
            next_job += 1;
            run.posted = next_job;
        }
        if now - last_look >= 2.0 {
            last_look = now;
            if let Some(counts) = job_counts(instances) {
                let finals = counts.final_;
                if now - last_line >= 15.0 {
                    last_line = now;
                    eprintln!(
                        "chaos: {now:>6.1}s {} posted, {} final ({} completed), {} kills",
                        run.posted, finals, counts.completed, run.kills
                    );
                }
                let all_up = instances.iter().all(Instance::is_up);
                if next_job == plan.jobs.len()
                    && finals == plan.jobs.len()
                    && next_kill == plan.kills.len()
                    && all_up
                {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Posts job `n` to an instance that answers (the `n`th in turn, else the next); whether it
/// was accepted. An instance's answer is never lost to a kill: kills happen on this thread.
fn post_job(instances: &[Instance], n: usize, body: &Value) -> anyhow::Result<bool> {
    let count = instances.len();
    for k in 0..count {
        let inst = &instances[(n + k) % count];
        if !inst.is_up() {
            continue;
        }
        let reply = http::request(
            &inst.host(),
            "POST",
            "/api/beam-search",
            None,
            Some(body),
            Duration::from_secs(60),
        );
        match reply {
            Ok(r) if r.status == 202 => return Ok(true),
            // Starting up or going down: another may take it.
            Ok(r) if r.status >= 500 => continue,
            Ok(r) => bail!(
                "POST /api/beam-search on {} answered {}: {}",
                inst.id,
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            // Not listening yet after a restart: try another.
            Err(_) => continue,
        }
    }
    Ok(false)
}

struct Counts {
    final_: usize,
    completed: usize,
}

/// The jobs' statuses, as the first instance that answers sees them.
fn job_counts(instances: &[Instance]) -> Option<Counts> {
    for inst in instances.iter().filter(|i| i.is_up()) {
        let Ok(v) = http::get_json(&inst.host(), "/api/jobs?limit=500", None) else {
            continue;
        };
        let jobs = v["jobs"].as_array()?;
        let status = |j: &Value| j["status"].as_str().unwrap_or("").to_owned();
        return Some(Counts {
            final_: jobs
                .iter()
                .filter(|j| ["completed", "failed", "cancelled"].contains(&status(j).as_str()))
                .count(),
            completed: jobs.iter().filter(|j| status(j) == "completed").count(),
        });
    }
    None
}

/// Every batch the simulator made, all pages of `GET /v1/batches`.
fn sim_batches(host: &str) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/batches?limit=100&after={a}"),
            None => "/v1/batches?limit=100".to_owned(),
        };
        let page = sim_get(host, &path)?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|b| b["id"].as_str())
            .map(str::to_owned);
        all.extend(data);
        if page["has_more"] != Value::Bool(true) || after.is_none() {
            return Ok(all);
        }
    }
}

/// `GET path` on the simulator, asked again (up to 20 times, a second apart) when it fails:
/// the run's faults (429 storms, 5xx, resets on `/v1/**`) hit the run's own reads too.
fn sim_get(host: &str, path: &str) -> anyhow::Result<Value> {
    let mut tries = 0;
    loop {
        match http::get_json(host, path, Some(SIM_KEY)) {
            Ok(v) => return Ok(v),
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("chaos: reading the simulator: {e:#}; asking again");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `xtask-worker chaos-facts`: what the database holds.
fn db_facts(worker: &Path, db: &str) -> anyhow::Result<Value> {
    let out = Command::new(worker)
        .args(["chaos-facts", db])
        .output()
        .context("running xtask-worker chaos-facts")?;
    if !out.status.success() {
        bail!(
            "xtask-worker chaos-facts failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("reading xtask-worker chaos-facts")
}

/// Milliseconds since the Unix epoch, as the instances stamp their events.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
