//! `batchbeam batch …`: commands on Batch API files.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use batch_format::{Endpoint, ValidationOptions, validate_jsonl_parallel};
use clap::{Args, Subcommand};

/// The `batch` subcommands.
#[derive(Subcommand)]
pub(crate) enum BatchCommand {
    /// Check a batch input file the way the Batch API will, one line at a time in constant
    /// memory. Exit 0 and a one-line summary when valid; exit 1 with one line per problem; exit
    /// 2 when the file cannot be read. --json prints one JSON object instead.
    Validate(ValidateArgs),
    /// submit, status, list, cancel, results, resume: batches on the OpenAI API.
    #[command(flatten)]
    Remote(crate::batch_remote::RemoteCommand),
}

/// Arguments of `batchbeam batch validate`.
#[derive(Args)]
pub(crate) struct ValidateArgs {
    /// The JSONL file to check.
    file: PathBuf,
    /// The endpoint every line must target (default: the first line's).
    #[arg(long, value_parser = parse_endpoint)]
    endpoint: Option<Endpoint>,
    /// The most lines one batch may hold.
    #[arg(long, default_value_t = 50_000)]
    max_lines: u64,
    /// The largest file one batch may be, in bytes.
    #[arg(long, default_value_t = 200 * 1024 * 1024)]
    max_bytes: u64,
    /// The longest line checked, in bytes; a longer one is reported and read past without
    /// being held (raise it for requests with large inline images).
    #[arg(long, default_value_t = 4 << 20)]
    max_line_bytes: usize,
    /// Skip the token estimate (faster on very large files).
    #[arg(long)]
    no_tokens: bool,
    /// Print one JSON object: valid, file, lines, endpoint, model, bytes, tokens (null with
    /// --no-tokens), problem_count and problems (the first 10,000, each with line, code,
    /// param and message).
    #[arg(long)]
    json: bool,
}

/// The most problems `validate --json` lists (all are counted).
const MAX_JSON_PROBLEMS: usize = 10_000;

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    Endpoint::from_url(s).ok_or_else(|| {
        let allowed: Vec<&str> = Endpoint::ALL.iter().map(|e| e.as_str()).collect();
        format!(
            "'{s}' is not a Batch API endpoint; allowed: {}",
            allowed.join(", ")
        )
    })
}

pub(crate) fn run(cmd: BatchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BatchCommand::Validate(args) => validate(args),
        BatchCommand::Remote(cmd) => crate::async_main(crate::batch_remote::run(cmd)),
    }
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let options = ValidationOptions {
        max_lines: args.max_lines,
        max_bytes: args.max_bytes,
        expected_endpoint: args.endpoint,
        estimate_tokens: !args.no_tokens,
        max_line_bytes: args.max_line_bytes,
        ..ValidationOptions::default()
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_error = None;
    let mut problems = Vec::new();
    // A file over the size limit is said at once, from its metadata, before a byte is read;
    // the lines are checked all the same, so that every problem is found in one run.
    let early = file
        .metadata()
        .ok()
        .and_then(|m| options.file_size_problem(m.len()));
    if let (Some(problem), false) = (&early, args.json) {
        writeln!(out, "file: {}: {}", problem.code.as_str(), problem.message)?;
        out.flush()?;
    }
    // Every core: problems still come out in line order, and memory stays bounded.
    let summary = validate_jsonl_parallel(
        BufReader::with_capacity(1 << 20, file),
        &options,
        0,
        |problem| {
            if early
                .as_ref()
                .is_some_and(|e| e.code == problem.code && e.line.is_none())
                && !args.json
            {
                return; // said above
            }
            if args.json {
                if problems.len() < MAX_JSON_PROBLEMS {
                    problems.push(problem);
                }
                return;
            }
            let place = match problem.line {
                Some(n) => format!("line {n}"),
                None => "file".to_owned(),
            };
            if let Err(e) = writeln!(
                out,
                "{place}: {}: {}",
                problem.code.as_str(),
                problem.message
            ) {
                write_error.get_or_insert(e);
            }
        },
    )
    .with_context(|| format!("reading {}", args.file.display()))?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    let code = if summary.problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if args.json {
        let value = serde_json::json!({
            "valid": summary.problems == 0,
            "file": args.file.display().to_string(),
            "lines": summary.lines,
            "endpoint": summary.endpoint.map(|e| e.as_str()),
            "model": summary.model,
            "bytes": summary.bytes,
            "tokens": (!args.no_tokens).then_some(summary.estimated_tokens),
            "problem_count": summary.problems,
            "problems": problems,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        out.flush()?;
        return Ok(code);
    }
    let endpoint = summary.endpoint.map_or("-", |e| e.as_str());
    let model = summary.model.as_deref().unwrap_or("-");
    let tokens = if args.no_tokens {
        "not estimated".to_owned()
    } else {
        format!("{} estimated tokens", summary.estimated_tokens)
    };
    let facts = format!(
        "{}, endpoint {endpoint}, model {model}, {} bytes, {tokens}",
        plural(summary.lines, "line"),
        summary.bytes
    );
    if summary.problems == 0 {
        writeln!(out, "valid: {facts}")?;
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    } else {
        out.flush()?;
        drop(out);
        eprintln!("invalid: {}; {facts}", plural(summary.problems, "problem"));
        Ok(ExitCode::from(1))
    }
}

/// "1 line", "2 lines".
fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
