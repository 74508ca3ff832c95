//! `cargo xtask bench`: benchmarks reported as ratios against a baseline measured in the same run.
//!
//! `bench format` measures batch-format on a realistic judge batch (50,000 chat requests, each with
//! an image as a data URL, about 195 MB) and a matching 50,000-line output file (about 100 MB):
//! build+serialise, validate and parse rates and peak RSS, beside a Python `json` loop over the
//! same files. Each measurement runs in its own release-built process so that its peak RSS is its
//! own.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use batch_format::{
    BatchRequestBuilder, ChatOptions, ContentPart, ImageDetail, Message, ResultMatcher,
    ValidationOptions, read_output_parallel_ref, validate_jsonl, validate_jsonl_parallel,
};

use crate::util::{cargo, exec};

/// Requests in the benchmark batch: the Batch API's per-file maximum.
const REQUESTS: usize = 50_000;
/// Base64 characters of the image in each request; sized so the file is just under 200 MB.
const IMAGE_B64_LEN: usize = 3_700;
/// Characters of generated text in each output line; sized so the output is about 100 MB.
const OUTPUT_TEXT_LEN: usize = 1_550;

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
        other => bail!("unknown benchmark `{other}`; available: format"),
    }
}

fn format(root: &Path) -> anyhow::Result<()> {
    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "--quiet", "-p", "xtask"]),
    )?;
    let worker = root.join("target/release/xtask");
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let input = dir.path().join("input.jsonl");
    let output = dir.path().join("output.jsonl");

    eprintln!("bench format: building {REQUESTS} chat requests with images ...");
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

    eprintln!("bench format: the Python baseline on the same files ...");
    let py_build = python(PY_BUILD, &[path_str(&dir.path().join("py-input.jsonl"))?])?;
    let py_validate = best_of(|| python(PY_LOADS, &[input_s]))?;
    let py_parse = best_of(|| python(PY_LOADS, &[output_s]))?;

    let rows = [
        ("build+serialise", &build, &py_build),
        ("validate", &validate, &py_validate),
        ("validate, all cores", &validate_par, &py_validate),
        ("validate + tokens", &validate_tok, &py_validate),
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
    let streaming_rss = [&validate, &validate_par, &validate_tok, &parse]
        .iter()
        .map(|m| m.peak_rss_kib)
        .max()
        .unwrap_or_default() as f64
        / 1024.0;
    // `batchbeam batch validate` and the job manager use the all-cores paths.
    let min_ratio = [
        validate_par.mb_per_s() / py_validate.mb_per_s(),
        parse.mb_per_s() / py_parse.mb_per_s(),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    println!(
        "targets: validate (all cores) and parse >= 5x python: {} (worst {min_ratio:.1}x); streaming peak RSS < 64 MB on a {:.0} MB file: {} ({streaming_rss:.1} MB)",
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
        .arg("bench-worker")
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

fn python(script: &str, args: &[&str]) -> anyhow::Result<Measure> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("BENCH_REQUESTS", REQUESTS.to_string())
        .env("BENCH_IMAGE_B64_LEN", IMAGE_B64_LEN.to_string())
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

/// The image payload of request `i`: deterministic base64 text (mirrors `PY_BUILD`).
fn image_b64(i: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let unit: String = (0..IMAGE_B64_LEN)
        .step_by(37)
        .map(|j| ALPHABET[(i * 7 + j * 13) % 64] as char)
        .collect();
    let mut s = unit.repeat(37);
    s.truncate(IMAGE_B64_LEN);
    s
}

/// `xtask bench-worker STEP ARGS…`: one measured step, printing `bytes secs peak_rss_kib`.
pub(crate) fn worker(args: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| -> anyhow::Result<PathBuf> {
        args.get(i)
            .map(PathBuf::from)
            .with_context(|| format!("bench-worker: missing argument {i}"))
    };
    let step = args.first().map(String::as_str).unwrap_or_default();
    let (bytes, secs) = match step {
        "build" => timed(|| build(&arg(1)?))?,
        "gen-output" => timed(|| gen_output(&arg(1)?, &arg(2)?))?,
        "validate" => timed(|| validate(&arg(1)?, Mode::Single))?,
        "validate-parallel" => timed(|| validate(&arg(1)?, Mode::Parallel))?,
        "validate-tokens" => timed(|| validate(&arg(1)?, Mode::WithTokens))?,
        "parse" => {
            // Reading the expected ids from the input is set-up, not parsing: keep it untimed.
            let ids = custom_ids(&arg(2)?)?;
            let output = arg(1)?;
            timed(move || parse(&output, ids))?
        }
        other => bail!("bench-worker: unknown step `{other}`"),
    };
    println!("{bytes} {secs} {}", peak_rss_kib()?);
    Ok(())
}

/// Runs `f`, returning what it measured (bytes) and how long it took.
fn timed(f: impl FnOnce() -> anyhow::Result<u64>) -> anyhow::Result<(u64, f64)> {
    let t = Instant::now();
    let bytes = f()?;
    Ok((bytes, t.elapsed().as_secs_f64()))
}

/// How `validate` runs.
#[derive(Clone, Copy)]
enum Mode {
    /// `validate_jsonl`, one thread.
    Single,
    /// `validate_jsonl_parallel` on every core.
    Parallel,
    /// `validate_jsonl_parallel` with token estimates, as `batchbeam batch validate` runs.
    WithTokens,
}

fn build(out: &Path) -> anyhow::Result<u64> {
    let mut builder = BatchRequestBuilder::new();
    for i in 0..REQUESTS {
        let messages = vec![
            Message::system("You are an art critic. Score the image for alignment and aesthetics."),
            Message::user_parts(vec![
                ContentPart::text(format!(
                    "Idea: a lighthouse in a storm. Candidate {i}: judge it."
                )),
                ContentPart::image_url(
                    format!("data:image/png;base64,{}", image_b64(i)),
                    ImageDetail::Low,
                ),
            ]),
        ];
        let options = ChatOptions {
            max_tokens: Some(300),
            temperature: Some(0.3),
            ..ChatOptions::new("gpt-4o-mini")
        };
        builder.add_chat_completion_request(format!("judge-{i}"), messages, options)?;
    }
    let batch = builder.build_batch("bench")?;
    if batch.shards().len() != 1 {
        bail!(
            "the benchmark batch split into {} shards; it should fit one",
            batch.shards().len()
        );
    }
    let mut w = BufWriter::new(File::create(out)?);
    batch.shards()[0].write_jsonl(&mut w)?;
    w.flush()?;
    Ok(std::fs::metadata(out)?.len())
}

fn validate(input: &Path, mode: Mode) -> anyhow::Result<u64> {
    let reader = BufReader::with_capacity(1 << 20, File::open(input)?);
    let mut problems = 0u64;
    let options = ValidationOptions {
        estimate_tokens: matches!(mode, Mode::WithTokens),
        ..ValidationOptions::default()
    };
    let summary = match mode {
        Mode::Single => validate_jsonl(reader, &options, |_| problems += 1)?,
        Mode::Parallel | Mode::WithTokens => {
            validate_jsonl_parallel(reader, &options, 0, |_| problems += 1)?
        }
    };
    if problems > 0 || summary.lines != REQUESTS as u64 {
        bail!(
            "the benchmark file did not validate: {problems} problems, {} lines",
            summary.lines
        );
    }
    Ok(summary.bytes)
}

/// Writes one success line per input line, in reverse order (outputs come in any order).
fn gen_output(input: &Path, output: &Path) -> anyhow::Result<u64> {
    let ids: Vec<String> = custom_ids(input)?;
    let text: String = "a storm-lashed lighthouse, cinematic rim light, "
        .chars()
        .cycle()
        .take(OUTPUT_TEXT_LEN)
        .collect();
    let mut w = BufWriter::new(File::create(output)?);
    for (n, id) in ids.iter().enumerate().rev() {
        let line = serde_json::json!({
            "id": format!("batch_req_{n:032x}"),
            "custom_id": id,
            "response": {
                "status_code": 200,
                "request_id": format!("{:032x}", n * 31),
                "body": {
                    "id": format!("chatcmpl-{n:029}"), "object": "chat.completion",
                    "created": 1_762_721_893, "model": "gpt-4o-mini-2024-07-18",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                                 "logprobs": null, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 300, "total_tokens": 420,
                              "prompt_tokens_details": {"cached_tokens": 0},
                              "completion_tokens_details": {"reasoning_tokens": 0}},
                    "service_tier": "default", "system_fingerprint": null
                }
            },
            "error": null
        });
        serde_json::to_writer(&mut w, &line)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(std::fs::metadata(output)?.len())
}

fn custom_ids(input: &Path) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Id {
        custom_id: String,
    }
    let mut ids = Vec::with_capacity(REQUESTS);
    for line in BufReader::new(File::open(input)?).lines() {
        ids.push(serde_json::from_str::<Id>(&line?)?.custom_id);
    }
    Ok(ids)
}

/// Streams the output file into outcomes (`read_output_parallel_ref`) and matches them against
/// the input's ids.
fn parse(output: &Path, ids: Vec<String>) -> anyhow::Result<u64> {
    let mut matcher = ResultMatcher::new(ids);
    let mut bytes = 0u64;
    let mut succeeded = 0u64;
    let mut first_problem = None;
    // A small buffer: the parallel reader reads its blocks straight from the file. Each line
    // is lent, not copied: what a caller that checks and counts the results needs.
    let reader = BufReader::new(File::open(output)?);
    read_output_parallel_ref(reader, 0, |item| match item {
        Ok(line) => {
            if line.outcome.is_success() {
                succeeded += 1;
            }
            matcher.record_id(line.custom_id);
        }
        Err(problem) => {
            first_problem.get_or_insert(problem);
        }
    })?;
    if let Some(problem) = first_problem {
        bail!("{problem}");
    }
    bytes += std::fs::metadata(output)?.len();
    let matched = matcher.finish();
    if succeeded != REQUESTS as u64 || !matched.missing.is_empty() {
        bail!(
            "parsed {succeeded} successes, {} ids missing",
            matched.missing.len()
        );
    }
    Ok(bytes)
}

/// This process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
