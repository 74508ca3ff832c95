//! `cargo xtask bench`: benchmarks reported as ratios against a baseline measured in the same run.
//!
//! `bench format` measures batch-format on a realistic judge batch (50,000 chat requests, each with
//! an image as a data URL, about 195 MB) and a matching 50,000-line output file (about 100 MB):
//! build+serialise, validate and parse rates and peak RSS, beside a Python `json` loop over the
//! same files. Each measurement runs in its own release-built `xtask-worker` process so that its
//! peak RSS is its own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{cargo, exec, target_dir};

/// What one measured process reports.
#[derive(Debug)]
struct Measure {
    bytes: u64,
    secs: f64,
    peak_rss_kib: u64,
}

impl Measure {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
}

pub(crate) fn run(root: &Path, what: &str) -> anyhow::Result<()> {
    match what {
        "format" => format(root),
        "queue" => crate::bench_queue::run(root),
        other => bail!("unknown benchmark `{other}`; available: format, queue, session, scale"),
    }
}

/// Builds `xtask-worker` in release: the process that runs each measured step.
pub(crate) fn release_worker(root: &Path) -> anyhow::Result<PathBuf> {
    release_bin(root, "xtask-worker")
}

/// Builds `batchbeam` in release: the binary the benchmarks run as a user would.
pub(crate) fn release_batchbeam(root: &Path) -> anyhow::Result<PathBuf> {
    release_bin(root, "batchbeam")
}

/// Builds `package` (whose binary has its name) in release; the binary's path.
fn release_bin(root: &Path, package: &str) -> anyhow::Result<PathBuf> {
    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "--locked", "-p", package]),
    )?;
    Ok(target_dir(root)?.join("release").join(package))
}

fn format(root: &Path) -> anyhow::Result<()> {
    let worker = release_worker(root)?;
    let batchbeam = release_batchbeam(root)?;
    let batchbeam_s = path_str(&batchbeam)?;
    let params = Command::new(&worker)
        .args(["format", "params"])
        .output()
        .context("asking xtask-worker for the batch's shape")?;
    let params = String::from_utf8_lossy(&params.stdout).into_owned();
    let (requests, image_b64_len) = params
        .split_once(' ')
        .map(|(r, i)| (r.trim().to_owned(), i.trim().to_owned()))
        .with_context(|| format!("xtask-worker format params printed {params:?}"))?;
    let scratch = tempfile::tempdir().context("creating a temp dir")?;
    let dir = scratch.path();
    let input = dir.join("input.jsonl");
    let output = dir.join("output.jsonl");

    eprintln!("bench format: building {requests} chat requests with images ...");
    let build = measure(&worker, &["build", path_str(&input)?])?;
    eprintln!("bench format: writing the matching output file ...");
    measure(
        &worker,
        &["gen-output", path_str(&input)?, path_str(&output)?],
    )?;
    eprintln!("bench format: validating and parsing ...");
    // The streaming steps and their baselines take about a second each: run each RUNS times and
    // keep the fastest, so one busy moment on a shared machine does not decide the ratio.
    let (input_s, output_s) = (path_str(&input)?, path_str(&output)?);
    let validate = best_of(|| measure(&worker, &["validate", input_s]))?;
    let validate_par = best_of(|| measure(&worker, &["validate-parallel", input_s]))?;
    let validate_tok = best_of(|| measure(&worker, &["validate-tokens", input_s]))?;
    let parse = best_of(|| measure(&worker, &["parse", output_s, input_s]))?;
    let text = dir.join("text.jsonl");
    let text_s = path_str(&text)?;
    measure(&worker, &["gen-text", text_s])?;
    let validate_text = best_of(|| measure(&worker, &["validate-tokens", text_s]))?;

    eprintln!("bench format: the Python baseline on the same files ...");
    let shape = [
        ("BENCH_REQUESTS", &requests),
        ("BENCH_IMAGE_B64_LEN", &image_b64_len),
    ];
    let py_build = python(PY_BUILD, &[path_str(&dir.join("py-input.jsonl"))?], &shape)?;
    let py_validate = best_of(|| python(PY_LOADS, &[input_s], &[]))?;
    let py_parse = best_of(|| python(PY_LOADS, &[output_s], &[]))?;
    let py_text = best_of(|| python(PY_LOADS, &[text_s], &[]))?;

    // What a user runs, whole processes from start to exit (start-up, reading, the token
    // estimate, the summary), each timed by the same harness.
    eprintln!(
        "bench format: `batchbeam batch validate` and the Python loop as whole processes ..."
    );
    let text_process = best_of(|| {
        python(
            PY_PROCESS,
            &[text_s, batchbeam_s, "batch", "validate", text_s],
            &[],
        )
    })?;
    let py_text_process = best_of(|| {
        python(
            PY_PROCESS,
            &[text_s, "python3", "-c", PY_LOADS, text_s],
            &[],
        )
    })?;

    let rows = [
        ("build+serialise", &build, &py_build),
        ("validate", &validate, &py_validate),
        ("validate, all cores", &validate_par, &py_validate),
        ("validate + tokens", &validate_tok, &py_validate),
        ("tokens, text-heavy", &validate_text, &py_text),
        ("text-heavy, process", &text_process, &py_text_process),
        ("parse output", &parse, &py_parse),
    ];
    let mut table = String::new();
    writeln!(
        table,
        "| step                | file MB | batchbeam MB/s | python MB/s | ratio | batchbeam peak RSS | python peak RSS |"
    )?;
    writeln!(
        table,
        "|---------------------|--------:|---------------:|------------:|------:|-------------------:|----------------:|"
    )?;
    for (name, ours, base) in rows {
        writeln!(
            table,
            "| {name:<19} | {:>7.1} | {:>14.0} | {:>11.0} | {:>4.1}x | {:>15.1} MB | {:>12.1} MB |",
            ours.bytes as f64 / 1e6,
            ours.mb_per_s(),
            base.mb_per_s(),
            ours.mb_per_s() / base.mb_per_s(),
            ours.peak_rss_kib as f64 / 1024.0,
            base.peak_rss_kib as f64 / 1024.0,
        )?;
    }
    println!("{table}");
    let streaming_rss = [
        &validate,
        &validate_par,
        &validate_tok,
        &validate_text,
        &text_process,
        &parse,
    ]
    .iter()
    .map(|m| m.peak_rss_kib)
    .max()
    .unwrap_or_default() as f64
        / 1024.0;
    // `batchbeam batch validate` and the job manager use the all-cores paths.
    let min_ratio = [
        validate_par.mb_per_s() / py_validate.mb_per_s(),
        validate_text.mb_per_s() / py_text.mb_per_s(),
        text_process.mb_per_s() / py_text_process.mb_per_s(),
        parse.mb_per_s() / py_parse.mb_per_s(),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    println!(
        "targets: validate (all cores), validate + tokens on the text-heavy file (in the worker and as `batchbeam batch validate`), and parse >= 5x python: {} (worst {min_ratio:.1}x); streaming peak RSS < 64 MB on a {:.0} MB file: {} ({streaming_rss:.1} MB)",
        if min_ratio >= 5.0 { "met" } else { "MISSED" },
        validate.bytes as f64 / 1e6,
        if streaming_rss < 64.0 {
            "met"
        } else {
            "MISSED"
        },
    );
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("non-UTF-8 path {}", p.display()))
}

/// Runs one worker step in a fresh process and reads its `bytes secs peak_rss_kib` line.
/// Runs of each streaming step; the fastest counts, and the highest peak RSS.
const RUNS: usize = 3;

fn best_of(mut run: impl FnMut() -> anyhow::Result<Measure>) -> anyhow::Result<Measure> {
    let mut best = run()?;
    for _ in 1..RUNS {
        let m = run()?;
        let peak = best.peak_rss_kib.max(m.peak_rss_kib);
        if m.secs < best.secs {
            best = m;
        }
        best.peak_rss_kib = peak;
    }
    Ok(best)
}

fn measure(worker: &Path, args: &[&str]) -> anyhow::Result<Measure> {
    let out = Command::new(worker)
        .arg("format")
        .args(args)
        .output()
        .with_context(|| format!("running {}", worker.display()))?;
    if !out.status.success() {
        bail!(
            "bench worker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_measure(&String::from_utf8_lossy(&out.stdout))
}

fn python(script: &str, args: &[&str], env: &[(&str, &String)]) -> anyhow::Result<Measure> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .context("running python3 for the baseline")?;
    if !out.status.success() {
        bail!(
            "python baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_measure(&String::from_utf8_lossy(&out.stdout))
}

fn parse_measure(stdout: &str) -> anyhow::Result<Measure> {
    let line = stdout
        .lines()
        .last()
        .with_context(|| format!("no measurement in {stdout:?}"))?;
    let mut it = line.split_whitespace();
    let mut next = |what: &str| {
        it.next()
            .with_context(|| format!("measurement {line:?} lacks {what}"))
    };
    Ok(Measure {
        bytes: next("bytes")?.parse()?,
        secs: next("secs")?.parse()?,
        peak_rss_kib: next("peak RSS")?.parse()?,
    })
}

/// A plain `json.loads` loop over a JSONL file: the baseline for validating and parsing.
const PY_LOADS: &str = r#"
import json, resource, sys, time
t = time.perf_counter(); n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line); n += len(line)
dt = time.perf_counter() - t
print(n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;

/// Runs a command (`argv[2:]`) as a whole process and reports the size of `argv[1]`, the
/// wall time from start to exit, and the child's peak RSS: times `batchbeam batch validate`
/// and the Python loop alike.
const PY_PROCESS: &str = r#"
import os, resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[2:], check=True, stdout=subprocess.DEVNULL)
dt = time.perf_counter() - t
print(os.path.getsize(sys.argv[1]), dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"#;

/// The same requests built as dicts and written with `json.dumps`: the baseline for building.
const PY_BUILD: &str = r#"
import json, os, resource, sys, time
requests = int(os.environ["BENCH_REQUESTS"]); img_len = int(os.environ["BENCH_IMAGE_B64_LEN"])
alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
t = time.perf_counter(); n = 0
with open(sys.argv[1], "w") as f:
    for i in range(requests):
        img = "".join(alphabet[(i * 7 + j * 13) % 64] for j in range(0, img_len, 37)) * 37
        img = img[:img_len]
        body = {"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "You are an art critic. Score the image for alignment and aesthetics."},
            {"role": "user", "content": [
                {"type": "text", "text": f"Idea: a lighthouse in a storm. Candidate {i}: judge it."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + img, "detail": "low"}}]}],
            "max_tokens": 300, "temperature": 0.3}
        line = json.dumps({"custom_id": f"judge-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}, separators=(",", ":")) + "\n"
        f.write(line); n += len(line)
dt = time.perf_counter() - t
print(n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;
