//! `cargo xtask bench session`: the guide's session (n=9, m=3, 3 iterations, ensemble 3,
//! comparative judging) on each plan, run by the release `batchbeam run` against its in-process
//! openai-sim twice: every operation on the Batch API, then every operation on the standard
//! tier (the baseline, measured in the same run). One table: plan, stages (batch round trips),
//! batches, calls, cost on each tier and the saving. Then the cost levers on the fused plan:
//! batch with a draft render schedule, and with a polish, each with its forecast, and whether
//! the best prompt agrees with the full-quality run over several seeds. Then the size of a judge request with
//! realistic 1024x1024 renders, as sent and after downscaling for the judge's detail level,
//! and what a whole judge stage weighs against the 200 MB batch-file limit.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

const IDEA: &str = "a lighthouse on a basalt cliff in a winter storm";

struct Run {
    stages: u64,
    batches: u64,
    calls: u64,
    cost: f64,
    standard_cost: f64,
    secs: f64,
    best: String,
    /// The forecast made before the session sent anything.
    forecast: f64,
    /// With a polish: whether it overturned the draft judges' pick.
    overturned: Option<bool>,
}

/// The draft schedule of the cost-lever rows.
const DRAFTS: &str = "low,low,medium";
/// Candidates polished.
const POLISH: &str = "3";
/// Seeds the agreement with the full-quality run is measured over.
const SEEDS: [u64; 6] = [1, 2, 3, 4, 5, 6];

fn session(bin: &Path, dir: &Path, plan: &str, batch: bool) -> anyhow::Result<Run> {
    session_with(bin, dir, plan, batch, 1, &[])
}

fn session_with(
    bin: &Path,
    dir: &Path,
    plan: &str,
    batch: bool,
    seed: u64,
    extra: &[&str],
) -> anyhow::Result<Run> {
    let tag = if batch { "batch" } else { "standard" };
    let db = dir.join(format!(
        "{plan}-{tag}-{seed}-{}.db",
        extra.join("_").replace([',', '.'], "-")
    ));
    let seed = seed.to_string();
    let mut cmd = Command::new(bin);
    cmd.args([
        "run", IDEA, "--plan", plan, "--seed", &seed, "--sim", "--json",
    ])
    .args(extra)
    .arg("--db")
    .arg(&db)
    .arg("--sessions")
    .arg(dir.join("sessions"))
    .env_remove("OPENAI_API_KEY")
    .env_remove("BATCH_API_ENABLED")
    .env("BATCH_API_ENABLED", if batch { "true" } else { "false" });
    let started = Instant::now();
    let out = cmd.output().context("running batchbeam run")?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "batchbeam run --plan {plan} ({tag}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("reading the session's JSON")?;
    let stages = v["stages"].as_array().map_or(0, Vec::len) as u64;
    let mut batch_ids: Vec<&str> = v["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["batch_ids"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    batch_ids.sort_unstable();
    batch_ids.dedup();
    let total = &v["report"]["total"];
    Ok(Run {
        stages,
        batches: batch_ids.len() as u64,
        calls: v["calls"].as_u64().unwrap_or(0),
        cost: total["cost"].as_f64().unwrap_or(0.0),
        standard_cost: total["standard_cost"].as_f64().unwrap_or(0.0),
        secs,
        best: v["best"]["combined"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        forecast: v["forecast"]["cost"].as_f64().unwrap_or(0.0),
        overturned: v["draft_best"]
            .as_str()
            .map(|d| Some(d) != v["best"]["id"].as_str()),
    })
}

/// The cost levers on the fused plan, seed 1: standard, batch, batch + draft schedule, batch +
/// schedule + polish; then, over [`SEEDS`] (on the standard tier, which answers as batch does
/// for a seed), whether the levers' best prompt is the full-quality run's and how often the
/// polish overturned the drafts' pick.
fn levers(bin: &Path, dir: &Path, standard: &Run, batch: &Run) -> anyhow::Result<String> {
    let schedule = ["--render-schedule", DRAFTS];
    let polished = ["--render-schedule", DRAFTS, "--polish", POLISH];
    eprintln!("bench session: fused on the Batch API with --render-schedule {DRAFTS} ...");
    let drafts = session_with(bin, dir, "fused", true, 1, &schedule)?;
    eprintln!("bench session: ... and --polish {POLISH} ...");
    let polish = session_with(bin, dir, "fused", true, 1, &polished)?;
    let mut t = String::new();
    t.push_str(&format!(
        "{:<34} {:>6} {:>6} {:>10} {:>8} {:>10} {:>9}  same prompt as full quality\n",
        "fused, seed 1", "stages", "calls", "cost $", "of std", "forecast $", "fc. off"
    ));
    let row = |name: &str, r: &Run| {
        format!(
            "{:<34} {:>6} {:>6} {:>10.4} {:>7.1}% {:>10.4} {:>8.1}%  {}\n",
            name,
            r.stages,
            r.calls,
            r.cost,
            100.0 * r.cost / standard.cost.max(f64::MIN_POSITIVE),
            r.forecast,
            100.0 * (r.forecast - r.cost) / r.cost.max(f64::MIN_POSITIVE),
            if r.best == standard.best { "yes" } else { "no" },
        )
    };
    t.push_str(&row("standard", standard));
    t.push_str(&row("batch", batch));
    t.push_str(&row(&format!("batch + schedule {DRAFTS}"), &drafts));
    t.push_str(&row(
        &format!("batch + schedule + polish {POLISH}"),
        &polish,
    ));
    let (mut same_drafts, mut same_polish, mut overturned) = (0, 0, 0);
    for seed in SEEDS {
        eprintln!("bench session: agreement, seed {seed} ...");
        let full = session_with(bin, dir, "fused", false, seed, &[])?;
        let d = session_with(bin, dir, "fused", false, seed, &schedule)?;
        let p = session_with(bin, dir, "fused", false, seed, &polished)?;
        same_drafts += usize::from(d.best == full.best);
        same_polish += usize::from(p.best == full.best);
        overturned += usize::from(p.overturned == Some(true));
    }
    let n = SEEDS.len();
    t.push_str(&format!(
        "over seeds 1-{n}: the best prompt is the full-quality run's in {same_drafts} of {n} with \
         the schedule, {same_polish} of {n} with schedule + polish; the polish overturned the \
         drafts' pick in {overturned} of {n}\n"
    ));
    Ok(t)
}

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let bin = crate::bench::release_batchbeam(root)?;
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let mut table = String::new();
    table.push_str(&format!(
        "{:<14} {:>6} {:>8} {:>6} {:>11} {:>11} {:>8} {:>8} {:>8}  same prompt\n",
        "plan", "stages", "batches", "calls", "batch $", "standard $", "saving", "batch s", "std s"
    ));
    let mut lever_table = String::new();
    for plan in ["classic", "fused", "judge_refines"] {
        eprintln!("bench session: {plan} on the Batch API ...");
        let b = session(&bin, dir.path(), plan, true)?;
        eprintln!("bench session: {plan} on the standard tier ...");
        let s = session(&bin, dir.path(), plan, false)?;
        if plan == "fused" {
            lever_table = levers(&bin, dir.path(), &s, &b)?;
        }
        table.push_str(&format!(
            "{:<14} {:>6} {:>8} {:>6} {:>11.4} {:>11.4} {:>7.1}% {:>8.1} {:>8.1}  {}\n",
            plan,
            b.stages,
            b.batches,
            b.calls,
            b.cost,
            s.cost,
            100.0 * (1.0 - b.cost / s.cost.max(f64::MIN_POSITIVE)),
            b.secs,
            s.secs,
            if b.best == s.best { "yes" } else { "no" },
        ));
        if (b.standard_cost - s.cost).abs() > 1e-6 * s.cost.max(1.0) {
            eprintln!(
                "bench session: note: {plan}'s batch run priced at standard ({:.4}) differs from the standard run ({:.4})",
                b.standard_cost, s.cost
            );
        }
    }

    eprintln!("bench session: judge request sizes ...");
    let worker = crate::bench::release_worker(root)?;
    let out = Command::new(&worker)
        .arg("judge-sizes")
        .output()
        .context("running xtask-worker judge-sizes")?;
    if !out.status.success() {
        bail!(
            "xtask-worker judge-sizes failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sizes = String::from_utf8_lossy(&out.stdout);
    println!(
        "bench session: the guide's session (n=9, m=3, 3 iterations, ensemble 3, comparative), seed 1, on openai-sim"
    );
    print!("{table}");
    println!();
    println!("cost levers (docs/cost.md): render schedule {DRAFTS}, polish {POLISH}");
    print!("{lever_table}");
    println!();
    print!("{sizes}");
    println!(
        "targets: stages 14 / 9 / 7; batch cost <= 50% of the standard run's; batch + schedule + polish <= 20%; forecast within 10%; a judge stage under 200 MB"
    );
    Ok(())
}
