//! `xtask-worker format STEP ARGS…`: one measured step of `cargo xtask bench format`, run in a
//! process of its own so that its peak RSS is its own; prints `bytes secs peak_rss_kib`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use batch_format::{
    BatchRequestBuilder, ChatOptions, ContentPart, ImageDetail, Message, ResultMatcher,
    ValidationOptions, read_output_parallel_ref, validate_jsonl, validate_jsonl_parallel,
};

use crate::rss::peak_rss_kib;

/// Requests in the benchmark batch: the Batch API's per-file maximum.
const REQUESTS: usize = 50_000;
/// Base64 characters of the image in each request; sized so the file is just under 200 MB.
const IMAGE_B64_LEN: usize = 3_700;
/// Characters of generated text in each output line; sized so the output is about 100 MB.
const OUTPUT_TEXT_LEN: usize = 1_550;

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

/// One measured step, printing `bytes secs peak_rss_kib`; `params` prints the batch's shape
/// (`requests image_b64_len`) for the Python baseline instead.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let arg = |i: usize| -> anyhow::Result<PathBuf> {
        args.get(i)
            .map(PathBuf::from)
            .with_context(|| format!("format: missing argument {i}"))
    };
    let step = args.first().map(String::as_str).unwrap_or_default();
    if step == "params" {
        println!("{REQUESTS} {IMAGE_B64_LEN}");
        return Ok(());
    }
    let (bytes, secs) = match step {
        "build" => timed(|| build(&arg(1)?))?,
        "gen-output" => timed(|| gen_output(&arg(1)?, &arg(2)?))?,
        "validate" => timed(|| validate(&arg(1)?, Mode::Single))?,
        "validate-parallel" => timed(|| validate(&arg(1)?, Mode::Parallel))?,
        "validate-tokens" => timed(|| validate(&arg(1)?, Mode::WithTokens))?,
        "gen-text" => timed(|| gen_text(&arg(1)?))?,
        "parse" => {
            // Reading the expected ids from the input is set-up, not parsing: keep it untimed.
            let ids = custom_ids(&arg(2)?)?;
            let output = arg(1)?;
            timed(move || parse(&output, ids))?
        }
        other => bail!("format: unknown step `{other}`"),
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

/// Characters of prose in each text-heavy request: about 115 MB for the file.
const PROSE_LEN: usize = 2_200;

/// Words of the text-heavy requests' prose.
const WORDS: &[&str] = &[
    "the",
    "a",
    "of",
    "and",
    "in",
    "with",
    "on",
    "at",
    "from",
    "under",
    "over",
    "through",
    "lighthouse",
    "storm",
    "waves",
    "rocks",
    "keeper",
    "lantern",
    "harbour",
    "gulls",
    "spray",
    "cliff",
    "night",
    "dawn",
    "fog",
    "rain",
    "wind",
    "ship",
    "sail",
    "beacon",
    "shore",
    "tide",
    "painted",
    "rendered",
    "photographed",
    "sketched",
    "glowing",
    "crashing",
    "towering",
    "lonely",
    "weathered",
    "dramatic",
    "cinematic",
    "moody",
    "vivid",
    "soft",
    "golden",
    "cold",
    "oil",
    "watercolour",
    "charcoal",
    "lens",
    "35mm",
    "wide-angle",
    "close-up",
    "aerial",
    "composition",
    "contrast",
    "texture",
    "palette",
    "shadows",
    "highlights",
    "horizon",
    "should",
    "could",
    "would",
    "describe",
    "imagine",
    "consider",
    "because",
    "although",
    "Critique:",
    "Score",
    "7/10;",
    "(good)",
    "detail,",
    "light.",
    "colour,",
    "mood;",
    "framing:",
];

/// Writes [`REQUESTS`] chat requests of varied prose, about 115 MB: the file on which the token
/// estimate, not JSON parsing, decides how fast `batch validate` is.
fn gen_text(out: &Path) -> anyhow::Result<u64> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut w = BufWriter::new(File::create(out)?);
    for i in 0..REQUESTS {
        let mut prose = String::with_capacity(PROSE_LEN + 16);
        while prose.len() < PROSE_LEN {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            prose.push_str(WORDS[(seed % WORDS.len() as u64) as usize]);
            prose.push(' ');
        }
        let line = serde_json::json!({
            "custom_id": format!("text-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "max_tokens": 400, "messages": [
                {"role": "system", "content": "You write image prompts: one paragraph, concrete and visual."},
                {"role": "user", "content": prose},
            ]}
        });
        serde_json::to_writer(&mut w, &line)?;
        w.write_all(b"\n")?;
    }
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
