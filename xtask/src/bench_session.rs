//! `cargo xtask bench session`: the guide's session (n=9, m=3, 3 iterations, ensemble 3,
//! comparative judging) on each plan, run by the release `batchbeam run` against its in-process
//! openai-sim twice: every operation on the Batch API, then every operation on the standard
//! tier (the baseline, measured in the same run). One table: plan, stages (batch round trips),
//! batches, calls, cost on each tier and the saving. Then the size of a judge request with
//! realistic 1024x1024 renders, as sent and after downscaling for the judge's detail level,
//! and what a whole judge stage weighs against the 200 MB batch-file limit.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use batch_format::{BatchRequestLine, ImageDetail};
use orchestrator::downscale::{prepare_for_judge, synthetic_photo};
use providers::CompareRequest;
use serde_json::Value;

use crate::sim_process::target_dir;
use crate::util::{cargo, exec};

const IDEA: &str = "a lighthouse on a basalt cliff in a winter storm";
/// OpenAI's limit on a batch input file.
const BATCH_FILE_LIMIT: f64 = 200.0 * 1024.0 * 1024.0;

struct Run {
    stages: u64,
    batches: u64,
    calls: u64,
    cost: f64,
    standard_cost: f64,
    secs: f64,
    best: String,
}

fn session(bin: &Path, dir: &Path, plan: &str, batch: bool) -> anyhow::Result<Run> {
    let tag = if batch { "batch" } else { "standard" };
    let db = dir.join(format!("{plan}-{tag}.db"));
    let mut cmd = Command::new(bin);
    cmd.args([
        "run", IDEA, "--plan", plan, "--seed", "1", "--sim", "--json",
    ])
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
    })
}

/// Bytes of one comparison's batch line with two images.
fn compare_line_bytes(a: Vec<u8>, b: Vec<u8>, detail: ImageDetail) -> anyhow::Result<usize> {
    let request = CompareRequest {
        idea: IDEA.into(),
        image_a: a,
        image_b: b,
        detail: Some(detail),
        alpha: 0.7,
        vote: 0,
        key: None,
    };
    let body = providers::codec::compare_body("gpt-4o-mini", &request)?;
    let line = BatchRequestLine::chat("rq_k0123456789abcdef0123456789abcdef", body);
    Ok(serde_json::to_vec(&line)?.len() + 1)
}

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "--quiet", "-p", "batchbeam"]),
    )?;
    let bin = target_dir(root).join("release/batchbeam");
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let mut table = String::new();
    table.push_str(&format!(
        "{:<14} {:>6} {:>8} {:>6} {:>11} {:>11} {:>8} {:>8} {:>8}  same prompt\n",
        "plan", "stages", "batches", "calls", "batch $", "standard $", "saving", "batch s", "std s"
    ));
    for plan in ["classic", "fused", "judge_refines"] {
        eprintln!("bench session: {plan} on the Batch API ...");
        let b = session(&bin, dir.path(), plan, true)?;
        eprintln!("bench session: {plan} on the standard tier ...");
        let s = session(&bin, dir.path(), plan, false)?;
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
    let a = synthetic_photo(1024, 1024, 1);
    let b = synthetic_photo(1024, 1024, 2);
    let raw = compare_line_bytes(a.clone(), b.clone(), ImageDetail::Low)?;
    let mut sizes = String::new();
    sizes.push_str(&format!(
        "{:<42} {:>14} {:>22}\n",
        "judge request (2 images, 1024x1024)", "bytes/request", "stage of 189 requests"
    ));
    let stage = |bytes: usize| {
        let total = bytes as f64 * 189.0;
        format!(
            "{:>8.1} MB ({:>4.0}% of 200 MB)",
            total / 1e6,
            100.0 * total / BATCH_FILE_LIMIT
        )
    };
    sizes.push_str(&format!(
        "{:<42} {:>14} {:>22}\n",
        "as rendered (PNG)",
        raw,
        stage(raw)
    ));
    for (name, detail) in [
        ("downscaled for detail low", ImageDetail::Low),
        ("downscaled for detail high", ImageDetail::High),
    ] {
        let (pa, pb) = (
            prepare_for_judge(&a, detail)?,
            prepare_for_judge(&b, detail)?,
        );
        let bytes = compare_line_bytes(pa.bytes, pb.bytes, detail)?;
        sizes.push_str(&format!(
            "{:<42} {:>14} {:>22}  ({:.1}x smaller)\n",
            format!(
                "{name} ({}x{} {})",
                pa.width,
                pa.height,
                pa.mime.trim_start_matches("image/")
            ),
            bytes,
            stage(bytes),
            raw as f64 / bytes as f64
        ));
    }
    println!(
        "bench session: the guide's session (n=9, m=3, 3 iterations, ensemble 3, comparative), seed 1, on openai-sim"
    );
    print!("{table}");
    println!();
    print!("{sizes}");
    println!(
        "targets: stages 14 / 9 / 7; batch cost <= 50% of the standard run's; a judge stage under 200 MB"
    );
    Ok(())
}
