//! `batchbeam batch submit|status|list|cancel|results|resume`: batches on any OpenAI-compatible
//! API (the simulator or the real one) through batch-client's `BatchJobManager`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use batch_client::{
    BatchJobManager, BatchResults, ClientConfig, JobRecord, ManagerConfig, OpenAiClient,
};
use batch_format::{BatchRequestBuilder, BatchRequestLine, ShardLimits};
use clap::{Args, Subcommand};
use serde::Serialize;

/// The remote `batch` subcommands (flattened into `batchbeam batch`).
#[derive(Subcommand)]
pub(crate) enum RemoteCommand {
    /// Validate a JSONL file and submit it as one batch, or as several shards when it is over
    /// OpenAI's per-batch limits. Prints our record id(s).
    Submit(SubmitArgs),
    /// Poll a batch now and show it. ID is our record id (bb_…) or OpenAI's batch id.
    Status(IdArgs),
    /// List the batches in the database, newest first.
    List(Common),
    /// Ask OpenAI to cancel a batch; its finished requests are kept.
    Cancel(IdArgs),
    /// Download a finished batch's results and write them, one line per request, to --out.
    Results(ResultsArgs),
    /// Carry on every unfinished batch after a restart (finish submits, poll, collect results).
    Resume(ResumeArgs),
}

/// Options every remote command takes.
#[derive(Args, Clone)]
pub(crate) struct Common {
    /// The SQLite database of batch records (default ./batchbeam.db, or DATABASE_URL when it is
    /// a sqlite: URL). Results are kept beside it, in batchbeam-files/<record id>/.
    #[arg(long, env = "BATCHBEAM_DB", value_name = "PATH")]
    db: Option<PathBuf>,
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `batch submit`.
#[derive(Args)]
pub(crate) struct SubmitArgs {
    /// The JSONL input file.
    file: PathBuf,
    /// Wait for the batch(es) to end and collect their results.
    #[arg(long)]
    wait: bool,
    /// Metadata for the batch, `key=value` (repeatable).
    #[arg(long = "metadata", value_name = "K=V", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
    /// Most requests per batch; bigger inputs are split into shards.
    #[arg(long, default_value_t = 50_000)]
    max_lines: usize,
    /// Most bytes per batch input file; bigger inputs are split into shards.
    #[arg(long, default_value_t = 200 * 1024 * 1024)]
    max_bytes: u64,
    #[command(flatten)]
    common: Common,
}

/// Arguments of commands on one batch.
#[derive(Args)]
pub(crate) struct IdArgs {
    /// Our record id (bb_…) or OpenAI's batch id (batch_…).
    id: String,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `batch results`.
#[derive(Args)]
pub(crate) struct ResultsArgs {
    /// Our record id (bb_…) or OpenAI's batch id (batch_…).
    id: String,
    /// Where to write the result lines (output file lines, then error file lines).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `batch resume`.
#[derive(Args)]
pub(crate) struct ResumeArgs {
    /// Wait until every resumed batch has ended and its results are collected.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    common: Common,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("'{s}' is not key=value")),
    }
}

/// Runs one remote command with configuration from the environment.
pub(crate) async fn run(cmd: RemoteCommand) -> anyhow::Result<ExitCode> {
    let client = match ClientConfig::from_env() {
        Ok(client) => client,
        // Listing reads only the local database, so it works without a key (and offline).
        Err(_) if matches!(cmd, RemoteCommand::List(_)) => {
            ClientConfig::new("https://api.openai.com/v1", batch_client::ApiKey::new(""))
        }
        Err(e) => return Err(e.into()),
    };
    let env = |name: &str| std::env::var(name).ok();
    run_with(cmd, client, &env).await
}

/// Runs one remote command; `env` supplies `DATABASE_URL` and the `BATCH_*` settings.
pub(crate) async fn run_with(
    cmd: RemoteCommand,
    client: ClientConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    let common = match &cmd {
        RemoteCommand::Submit(a) => a.common.clone(),
        RemoteCommand::Status(a) | RemoteCommand::Cancel(a) => a.common.clone(),
        RemoteCommand::List(c) => c.clone(),
        RemoteCommand::Results(a) => a.common.clone(),
        RemoteCommand::Resume(a) => a.common.clone(),
    };
    let db = db_path(common.db.as_deref(), env)?;
    let data_dir = std::path::absolute(
        db.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?
    .join("batchbeam-files");
    let config = ManagerConfig::from_lookup(data_dir, env)?;
    let manager = BatchJobManager::open(OpenAiClient::new(client)?, &db, config)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let json = common.json;
    let mut out = std::io::stdout().lock();
    match cmd {
        RemoteCommand::Submit(args) => submit(&manager, args, &mut out).await,
        RemoteCommand::Status(args) => {
            let record = match manager.refresh(&args.id).await {
                Ok(r) => r,
                // Polling failed (e.g. offline): show what is stored, with the error in it.
                Err(batch_client::Error::NotFound(id)) => bail!("no batch record '{id}'"),
                Err(_) => manager.record(&args.id).await?,
            };
            let history = manager.history(&record.id).await?;
            if json {
                let mut value = serde_json::to_value(View::of(&record))?;
                value["history"] = serde_json::to_value(&history)?;
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                write_record(&mut out, &record)?;
                writeln!(out, "  history (time since the intent):")?;
                for change in history {
                    let secs = (change.at_ms - record.created_at_ms) as f64 / 1000.0;
                    writeln!(
                        out,
                        "  {:>+10.3}s  {:<16} {:<11} {}",
                        secs,
                        change.state.as_str(),
                        change.remote_status.as_deref().unwrap_or("-"),
                        change.detail.as_deref().unwrap_or("")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::List(_) => {
            let records = manager.list().await?;
            if json {
                let views: Vec<View<'_>> = records.iter().map(View::of).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&views)?)?;
            } else if records.is_empty() {
                writeln!(out, "no batches")?;
            } else {
                writeln!(
                    out,
                    "{:<30} {:<39} {:<16} {:<11} {:>9}",
                    "RECORD", "BATCH", "STATE", "STATUS", "DONE/ALL"
                )?;
                for r in &records {
                    writeln!(
                        out,
                        "{:<30} {:<39} {:<16} {:<11} {:>9}",
                        r.id,
                        r.batch_id.as_deref().unwrap_or("-"),
                        r.state.as_str(),
                        r.remote_status.as_ref().map_or("-", |s| s.as_str()),
                        format!(
                            "{}/{}",
                            r.request_counts.completed + r.request_counts.failed,
                            r.manifest.custom_ids.len()
                        )
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Cancel(args) => {
            let record = manager.cancel(&args.id).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&View::of(&record))?)?;
            } else {
                writeln!(out, "cancel requested for {}", record.id)?;
                write_record(&mut out, &record)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Results(args) => {
            let results = manager.retrieve_results(&args.id).await?;
            let lines = write_results(&results, &args.out)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?;
            } else {
                writeln!(out, "wrote {lines} result lines to {}", args.out.display())?;
                write_summary(&mut out, &results)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Resume(args) => {
            let ids = manager.resume().await?;
            let records = if args.wait && !ids.is_empty() {
                wait(&manager, &ids, json).await?
            } else {
                let mut records = Vec::new();
                for id in &ids {
                    records.push(manager.record(id).await?);
                }
                records
            };
            if json {
                let views: Vec<View<'_>> = records.iter().map(View::of).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&views)?)?;
            } else {
                writeln!(out, "resumed {} unfinished batch(es)", ids.len())?;
                for record in &records {
                    write_record(&mut out, record)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--db`/`BATCHBEAM_DB`, else a sqlite `DATABASE_URL`, else `./batchbeam.db`.
/// The database path: `--db`, else `DATABASE_URL` when it is a sqlite: URL, else
/// ./batchbeam.db.
pub(crate) fn db_path(
    db: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<PathBuf> {
    if let Some(db) = db {
        return Ok(db.to_owned());
    }
    if let Some(url) = env("DATABASE_URL")
        && let Some(rest) = url.strip_prefix("sqlite:")
    {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            bail!("DATABASE_URL must name a sqlite file, got '{url}'");
        }
        return Ok(PathBuf::from(path));
    }
    Ok(PathBuf::from("batchbeam.db"))
}

async fn submit(
    manager: &BatchJobManager,
    args: SubmitArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let metadata: BTreeMap<String, String> = args.metadata.iter().cloned().collect();
    let (lines, bytes) = count_lines(&args.file)?;
    let mut ids = Vec::new();
    if lines <= args.max_lines as u64 && bytes <= args.max_bytes {
        match manager.submit_batch(&args.file, metadata).await {
            Ok(id) => ids.push(id),
            Err(batch_client::Error::InvalidInput(problems)) => {
                for p in &problems {
                    let place = p.line.map_or("file".to_owned(), |n| format!("line {n}"));
                    eprintln!("{place}: {}: {}", p.code.as_str(), p.message);
                }
                eprintln!(
                    "invalid: {} problem(s); nothing was submitted",
                    problems.len()
                );
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        let name = args
            .file
            .file_stem()
            .map_or("batch".to_owned(), |s| s.to_string_lossy().into_owned());
        let shards = split(&args.file, &name, args.max_lines, args.max_bytes)?;
        eprintln!(
            "{} ({lines} requests, {bytes} bytes) is over one batch's limits: submitting {} shards",
            args.file.display(),
            shards.len()
        );
        for shard in &shards {
            ids.push(manager.submit_batch(shard, metadata.clone()).await?);
        }
    }
    let records = if args.wait {
        wait(manager, &ids, args.common.json).await?
    } else {
        let mut records = Vec::new();
        for id in &ids {
            records.push(manager.record(id).await?);
        }
        records
    };
    if args.common.json {
        let views: Vec<View<'_>> = records.iter().map(View::of).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&views)?)?;
    } else {
        for record in &records {
            if args.wait {
                write_record(out, record)?;
            } else {
                writeln!(
                    out,
                    "submitted {} as {} ({} requests)",
                    record.id,
                    record.batch_id.as_deref().unwrap_or("-"),
                    record.manifest.custom_ids.len()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn count_lines(path: &Path) -> anyhow::Result<(u64, u64)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        if !buf.trim_ascii().is_empty() {
            lines += 1;
        }
    }
    Ok((lines, bytes))
}

/// Splits an oversized input into shards with batch-format's builder (which also groups lines
/// by endpoint and model); every normalisation it makes is reported.
fn split(
    path: &Path,
    name: &str,
    max_lines: usize,
    max_bytes: u64,
) -> anyhow::Result<Vec<batch_format::Shard>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut builder = BatchRequestBuilder::with_limits(ShardLimits {
        max_lines,
        max_bytes,
        ..ShardLimits::default()
    });
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let request: BatchRequestLine = serde_json::from_str(&line)
            .with_context(|| format!("line {}: not a batch request line", n + 1))?;
        let custom_id = request.custom_id.clone();
        for change in builder
            .add_line(request)
            .with_context(|| format!("line {}", n + 1))?
        {
            eprintln!("line {} ({custom_id}): {change:?}", n + 1);
        }
    }
    Ok(builder.build_batch(name)?.into_shards())
}

/// Waits for `ids` with a progress bar on a terminal.
async fn wait(
    manager: &BatchJobManager,
    ids: &[String],
    json: bool,
) -> anyhow::Result<Vec<JobRecord>> {
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let records = manager
        .wait(ids, |records| {
            if let Some(bar) = &bar {
                let total: u64 = records
                    .iter()
                    .map(|r| r.manifest.custom_ids.len() as u64)
                    .sum();
                let done: u64 = records
                    .iter()
                    .map(|r| r.request_counts.completed + r.request_counts.failed)
                    .sum();
                bar.set_length(total);
                bar.set_position(done.min(total));
                let states: Vec<&str> = records
                    .iter()
                    .map(|r| {
                        r.remote_status
                            .as_ref()
                            .map_or(r.state.as_str(), |s| s.as_str())
                    })
                    .collect();
                bar.set_message(states.join(" "));
            }
        })
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(records)
}

/// Copies the output then the error file into `out`; returns the number of lines written.
fn write_results(results: &BatchResults, out: &Path) -> anyhow::Result<u64> {
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let mut lines = 0;
    for path in [&results.output_path, &results.error_path]
        .into_iter()
        .flatten()
    {
        let reader = BufReader::new(
            File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        );
        for line in reader.split(b'\n') {
            let line = line?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            w.write_all(&line)?;
            w.write_all(b"\n")?;
            lines += 1;
        }
    }
    w.flush()?;
    Ok(lines)
}

fn write_summary(out: &mut impl Write, r: &BatchResults) -> std::io::Result<()> {
    writeln!(
        out,
        "{} ({}): status {}, {} succeeded, {} failed, {} unfinished",
        r.record_id,
        r.batch_id.as_deref().unwrap_or("-"),
        r.status.as_ref().map_or("-", |s| s.as_str()),
        r.succeeded,
        r.failed,
        r.unfinished.len()
    )?;
    for e in &r.validation_errors {
        let place = e.line.map_or("file".to_owned(), |n| format!("line {n}"));
        writeln!(
            out,
            "  {place}: {}: {}",
            e.code.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("")
        )?;
    }
    if !r.unfinished.is_empty() {
        let shown: Vec<&str> = r.unfinished.iter().take(20).map(String::as_str).collect();
        let more = r.unfinished.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        writeln!(out, "  unfinished: {}{tail}", shown.join(", "))?;
    }
    for p in r.line_problems.iter().take(20) {
        writeln!(out, "  unreadable: {p}")?;
    }
    Ok(())
}

fn write_record(out: &mut impl Write, r: &JobRecord) -> std::io::Result<()> {
    writeln!(out, "{}", r.id)?;
    writeln!(
        out,
        "  shard      {} ({} requests, {})",
        r.shard_name,
        r.manifest.custom_ids.len(),
        r.manifest.endpoint
    )?;
    writeln!(out, "  batch      {}", r.batch_id.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "  state      {} (OpenAI: {})",
        r.state,
        r.remote_status.as_ref().map_or("-", |s| s.as_str())
    )?;
    writeln!(
        out,
        "  requests   {} completed, {} failed of {}",
        r.request_counts.completed, r.request_counts.failed, r.request_counts.total
    )?;
    writeln!(out, "  attempts   {}", r.attempts)?;
    if let Some(p) = &r.output_path {
        writeln!(out, "  output     {p}")?;
    }
    if let Some(p) = &r.error_path {
        writeln!(out, "  errors     {p}")?;
    }
    if let Some(e) = &r.last_error {
        writeln!(out, "  last error {e}")?;
    }
    Ok(())
}

/// A record as `--json` prints it: everything but the list of custom ids.
#[derive(Serialize)]
struct View<'a> {
    id: &'a str,
    batch_id: Option<&'a str>,
    shard_name: &'a str,
    endpoint: &'a str,
    model: Option<&'a str>,
    requests: usize,
    state: &'a str,
    status: Option<&'a str>,
    request_counts: batch_client::RequestCounts,
    attempts: u32,
    input_file_id: Option<&'a str>,
    output_file_id: Option<&'a str>,
    error_file_id: Option<&'a str>,
    output_path: Option<&'a str>,
    error_path: Option<&'a str>,
    metadata: &'a BTreeMap<String, String>,
    last_error: Option<&'a str>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl<'a> View<'a> {
    fn of(r: &'a JobRecord) -> View<'a> {
        View {
            id: &r.id,
            batch_id: r.batch_id.as_deref(),
            shard_name: &r.shard_name,
            endpoint: r.manifest.endpoint.as_str(),
            model: r.manifest.model.as_deref(),
            requests: r.manifest.custom_ids.len(),
            state: r.state.as_str(),
            status: r.remote_status.as_ref().map(|s| s.as_str()),
            request_counts: r.request_counts,
            attempts: r.attempts,
            input_file_id: r.input_file_id.as_deref(),
            output_file_id: r.output_file_id.as_deref(),
            error_file_id: r.error_file_id.as_deref(),
            output_path: r.output_path.as_deref(),
            error_path: r.error_path.as_deref(),
            metadata: &r.metadata,
            last_error: r.last_error.as_deref(),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: RemoteCommand,
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "BATCH_POLL_INTERVAL_MS" => Some("1".into()),
            "BATCH_POLL_MAX_INTERVAL_MS" => Some("5".into()),
            _ => None,
        }
    }

    async fn run_args(sim: &openai_sim::SimHandle, args: &[&str]) -> anyhow::Result<ExitCode> {
        let cmd = Cli::try_parse_from(std::iter::once("batch").chain(args.iter().copied()))?.cmd;
        let client = ClientConfig::new(sim.base_url(), batch_client::ApiKey::new("sk-cli"));
        run_with(cmd, client, &env).await
    }

    fn input(dir: &Path, n: usize) -> PathBuf {
        let path = dir.join("in.jsonl");
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "{{\"custom_id\":\"r{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi {i}\"}}]}}}}\n"
            ));
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn database_path_comes_from_the_flag_then_a_sqlite_url() {
        let none = |_: &str| None;
        assert_eq!(db_path(None, &none).unwrap(), PathBuf::from("batchbeam.db"));
        assert_eq!(
            db_path(Some(Path::new("x.db")), &none).unwrap(),
            PathBuf::from("x.db")
        );
        let url = |n: &str| (n == "DATABASE_URL").then(|| "sqlite:///tmp/a.db?mode=rwc".to_owned());
        assert_eq!(db_path(None, &url).unwrap(), PathBuf::from("/tmp/a.db"));
        let pg = |n: &str| (n == "DATABASE_URL").then(|| "postgres://h/db".to_owned());
        assert_eq!(db_path(None, &pg).unwrap(), PathBuf::from("batchbeam.db"));
        let mem = |n: &str| (n == "DATABASE_URL").then(|| "sqlite::memory:".to_owned());
        assert!(db_path(None, &mem).is_err());
        assert_eq!(parse_pair("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_pair("=b").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submit_splits_waits_and_every_command_finds_the_batches() {
        let sim = openai_sim::spawn(openai_sim::SimConfig::default().with_time_scale(5000.0))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let db = db.to_str().unwrap();
        let file = input(dir.path(), 5);
        let file = file.to_str().unwrap();
        let code = run_args(
            &sim,
            &[
                "submit",
                file,
                "--db",
                db,
                "--max-lines",
                "2",
                "--wait",
                "--metadata",
                "run=7",
            ],
        )
        .await
        .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let stats = sim.stats().await;
        assert_eq!((stats.batches_created, stats.batch_requests_billed), (3, 5));

        let client = ClientConfig::new(sim.base_url(), batch_client::ApiKey::new("sk-cli"));
        let manager = BatchJobManager::open(
            OpenAiClient::new(client).unwrap(),
            Path::new(db),
            ManagerConfig::new(dir.path().join("batchbeam-files")),
        )
        .await
        .unwrap();
        let records = manager.list().await.unwrap();
        assert_eq!(records.len(), 3);
        assert!(
            records
                .iter()
                .all(|r| r.state == batch_client::JobState::Done)
        );
        assert!(
            records
                .iter()
                .all(|r| r.metadata.get("run").map(String::as_str) == Some("7"))
        );
        let batch_id = records[0].batch_id.clone().unwrap();

        for args in [
            vec!["status", batch_id.as_str(), "--db", db],
            vec!["status", records[1].id.as_str(), "--db", db, "--json"],
            vec!["list", "--db", db],
            vec!["list", "--db", db, "--json"],
            vec!["resume", "--db", db, "--wait"],
        ] {
            assert_eq!(
                run_args(&sim, &args).await.unwrap(),
                ExitCode::SUCCESS,
                "{args:?}"
            );
        }
        let out = dir.path().join("results.jsonl");
        let out_s = out.to_str().unwrap();
        run_args(
            &sim,
            &["results", batch_id.as_str(), "--db", db, "--out", out_s],
        )
        .await
        .unwrap();
        let n = records[0].manifest.custom_ids.len();
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), n);
        assert!(
            run_args(&sim, &["status", "bb_nope", "--db", db])
                .await
                .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_input_exits_one_and_submits_nothing() {
        let sim = openai_sim::spawn(openai_sim::SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "not json\n").unwrap();
        let db = dir.path().join("b.db");
        let code = run_args(
            &sim,
            &[
                "submit",
                path.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ],
        )
        .await
        .unwrap();
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(sim.stats().await.files_uploaded, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_then_results_reports_the_unfinished_requests() {
        let sim = openai_sim::spawn(openai_sim::SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let db = db.to_str().unwrap();
        let file = input(dir.path(), 3);
        run_args(
            &sim,
            &["submit", file.to_str().unwrap(), "--db", db, "--json"],
        )
        .await
        .unwrap();
        let client = ClientConfig::new(sim.base_url(), batch_client::ApiKey::new("sk-cli"));
        let manager = BatchJobManager::open(
            OpenAiClient::new(client).unwrap(),
            Path::new(db),
            ManagerConfig::new(dir.path().join("batchbeam-files")),
        )
        .await
        .unwrap();
        let id = manager.list().await.unwrap()[0].id.clone();
        run_args(&sim, &["cancel", &id, "--db", db]).await.unwrap();
        sim.advance_clock(60.0).await;
        run_args(&sim, &["resume", "--db", db, "--wait"])
            .await
            .unwrap();
        let out = dir.path().join("r.jsonl");
        run_args(
            &sim,
            &[
                "results",
                &id,
                "--db",
                db,
                "--out",
                out.to_str().unwrap(),
                "--json",
            ],
        )
        .await
        .unwrap();
        let results = manager.retrieve_results(&id).await.unwrap();
        // Cancelled while validating: nothing ran, so no line came back for any request.
        assert_eq!(results.unfinished, ["r0", "r1", "r2"]);
        assert_eq!(results.missing, ["r0", "r1", "r2"]);
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 0);
    }
}
