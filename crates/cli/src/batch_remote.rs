//! `batchbeam batch submit|status|list|cancel|results|resume`: batches on any OpenAI-compatible
//! API (the simulator or the real one) through batch-client's `BatchJobManager`.
//!
//! Exit codes of `submit --wait`, `resume --wait` and `results`: 0 every request succeeded; 1 the
//! command ran but not every request succeeded (some failed, a batch ended failed, expired or
//! cancelled, a record stopped in error, or results could not be downloaded; what was kept is
//! kept), and `submit` of an invalid file; 2 it could not run (bad arguments, no database, no
//! key, the API unreachable after its retries).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use batch_client::{
    BatchJobManager, BatchResults, BatchStatus, ClientConfig, JobRecord, JobState, OpenAiClient,
    RetryHook, SubmitOptions, SubmitOutcome,
};
use clap::{Args, Subcommand};
use providers::{ConfigError, Settings};
use serde::Serialize;

/// Exit code: the command ran, but not every request succeeded (or the input is invalid).
const INCOMPLETE: u8 = 1;

/// While only the counts move, a status line at most this often when stderr is not a terminal.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// The remote `batch` subcommands (flattened into `batchbeam batch`).
#[derive(Subcommand)]
pub(crate) enum RemoteCommand {
    /// Validate a JSONL file and submit it as one batch, or as several shards when it is over
    /// OpenAI's per-batch limits. Prints our record id(s). The same file (same endpoint and
    /// bytes) submitted again attaches to the first submission instead of creating a second
    /// batch; --new submits it again on purpose. With --wait: exit 0 when every request
    /// succeeded, 1 when not (or the input is invalid), 2 when it could not run.
    Submit(SubmitArgs),
    /// Poll a batch now and show it. ID is our record id (bb_…) or OpenAI's batch id. Without
    /// OPENAI_API_KEY it shows the stored record. Exit 2 when it could not be refreshed.
    Status(IdArgs),
    /// List the batches in the database, newest first (no key needed).
    List(Common),
    /// Ask OpenAI to cancel a batch; its finished requests are kept.
    Cancel(IdArgs),
    /// Download a finished batch's results and write them, one line per request, to --out.
    /// Exit 0 when every request succeeded, 1 when not, 2 when there are no results to write.
    Results(ResultsArgs),
    /// Carry on every unfinished batch after a restart (finish submits, poll, collect results,
    /// retry downloads that failed). Exit codes as for submit.
    Resume(ResumeArgs),
}

/// Options every remote command takes.
#[derive(Args, Clone)]
pub(crate) struct Common {
    /// The database of batch records: --db PATH (BATCHBEAM_DB; default ./batchbeam.db) or
    /// --database-url (DATABASE_URL: postgres://… or sqlite:PATH). Results are kept in
    /// batchbeam-files/<record id>/ beside the SQLite file (in the working directory with
    /// PostgreSQL). Only `submit` creates an SQLite file.
    #[command(flatten)]
    db: crate::settings::DbArgs,
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
    /// Submit again even if the same file was submitted before (a new batch, billed again).
    #[arg(long)]
    new: bool,
    /// Metadata for the batch, `key=value` (repeatable).
    #[arg(long = "metadata", value_name = "K=V", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
    /// Most requests per batch; bigger inputs are split into shards.
    #[arg(long, default_value_t = 50_000)]
    max_lines: usize,
    /// Most bytes per batch input file; bigger inputs are split into shards.
    #[arg(long, default_value_t = 200 * 1024 * 1024)]
    max_bytes: u64,
    /// The longest line checked, in bytes; a longer one makes the file invalid and is read
    /// past without being held (raise it for requests with large inline images).
    #[arg(long, default_value_t = 4 << 20)]
    max_line_bytes: usize,
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

/// Where a command writes: results on `out`, progress and reasons on `err`.
pub(crate) struct Io<'a> {
    pub(crate) out: &'a mut dyn Write,
    pub(crate) err: &'a mut dyn Write,
    /// Whether `err` is a terminal (a progress bar) or a log (status lines).
    pub(crate) err_tty: bool,
}

/// Prints every retry of an API request on stderr: what failed, the attempt, the next try.
pub(crate) fn retry_printer() -> RetryHook {
    RetryHook::new(|notice| eprintln!("retrying: {notice}"))
}

/// Runs one remote command with the settings (`--db` over the environment and
/// `batchbeam.toml`).
pub(crate) async fn run(cmd: RemoteCommand) -> anyhow::Result<ExitCode> {
    let settings = cmd.common().settings(Settings::load)?;
    let client = match settings.client_config() {
        Ok(client) => Some(client.with_retry_notice(retry_printer())),
        // These answer from the database without a key; what needs the API says so.
        Err(ConfigError::NotSet(_)) if cmd.reads_only() => None,
        Err(e) => return Err(e.into()),
    };
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let err_tty = stderr.is_terminal();
    let mut io = Io {
        out: &mut stdout,
        err: &mut stderr,
        err_tty,
    };
    execute(cmd, &settings, client, &mut io).await
}

impl Common {
    /// The settings, with `--db` as the top layer, read by `read` (`Settings::load`, or a
    /// test's lookup).
    fn settings(
        &self,
        read: impl FnOnce(&[(&str, String)]) -> Result<Settings, ConfigError>,
    ) -> anyhow::Result<Settings> {
        Ok(read(&crate::settings::flags(&self.db, None))?)
    }
}

impl RemoteCommand {
    fn common(&self) -> &Common {
        match self {
            RemoteCommand::Submit(a) => &a.common,
            RemoteCommand::Status(a) | RemoteCommand::Cancel(a) => &a.common,
            RemoteCommand::List(c) => c,
            RemoteCommand::Results(a) => &a.common,
            RemoteCommand::Resume(a) => &a.common,
        }
    }

    /// Whether the command can answer from the database alone (no key needed).
    fn reads_only(&self) -> bool {
        matches!(
            self,
            RemoteCommand::List(_) | RemoteCommand::Status(_) | RemoteCommand::Results(_)
        )
    }
}

/// Runs one remote command; `client` is `None` without a key.
async fn execute(
    cmd: RemoteCommand,
    settings: &Settings,
    client: Option<ClientConfig>,
    io: &mut Io<'_>,
) -> anyhow::Result<ExitCode> {
    let common = cmd.common().clone();
    let db = settings.data.db.clone();
    let config = settings.manager_config();
    let has_key = client.is_some();
    // Without a key every request is refused before it is sent.
    let client = client.unwrap_or_else(|| {
        ClientConfig::new(
            batch_client::DEFAULT_BASE_URL,
            batch_client::ApiKey::new(""),
        )
    });
    let client = OpenAiClient::new(client)?;
    let manager = if let Some(url) = &settings.data.postgres {
        let database = batch_client::Database::open(url.expose())
            .await
            .with_context(|| format!("opening {}", url.redacted()))?;
        BatchJobManager::on(client, database, config)
            .await
            .with_context(|| format!("opening {}", url.redacted()))?
    } else if matches!(cmd, RemoteCommand::Submit(_)) {
        BatchJobManager::open(client, &db, config)
            .await
            .with_context(|| format!("opening {}", db.display()))?
    } else {
        // Only submit creates a database: a mistyped --db is an error, not a new empty file.
        BatchJobManager::open_existing(client, &db, config).await?
    };
    let json = common.json;
    match cmd {
        RemoteCommand::Submit(args) => submit(&manager, args, io).await,
        RemoteCommand::Status(args) => status(&manager, &args.id, has_key, json, io).await,
        RemoteCommand::List(_) => {
            let records = manager.list().await?;
            if json {
                let views: Vec<View<'_>> = records.iter().map(View::of).collect();
                writeln!(io.out, "{}", serde_json::to_string_pretty(&views)?)?;
            } else if records.is_empty() {
                writeln!(io.out, "no batches")?;
            } else {
                writeln!(
                    io.out,
                    "{:<30} {:<39} {:<16} {:<11} {:>9}",
                    "RECORD", "BATCH", "STATE", "STATUS", "DONE/ALL"
                )?;
                for r in &records {
                    writeln!(
                        io.out,
                        "{:<30} {:<39} {:<16} {:<11} {:>9}",
                        r.id,
                        r.batch_id.as_deref().unwrap_or("-"),
                        r.state.as_str(),
                        r.remote_status.as_ref().map_or("-", |s| s.as_str()),
                        format!("{}/{}", done(r), r.manifest.custom_ids.len())
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Cancel(args) => {
            let record = manager.cancel(&args.id).await?;
            if json {
                writeln!(
                    io.out,
                    "{}",
                    serde_json::to_string_pretty(&View::of(&record))?
                )?;
            } else {
                writeln!(io.out, "cancel requested for {}", record.id)?;
                write_record(io.out, &record)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        RemoteCommand::Results(args) => {
            if !has_key {
                let record = manager.record(&args.id).await?;
                if record.state != JobState::Done {
                    bail!(
                        "{} is {}: its results are not on disk yet, and downloading them needs OPENAI_API_KEY, which is not set",
                        record.id,
                        record.state
                    );
                }
            }
            let results = manager.retrieve_results(&args.id).await?;
            let lines = write_results(&results, &args.out)?;
            if json {
                writeln!(io.out, "{}", serde_json::to_string_pretty(&results)?)?;
            } else {
                writeln!(
                    io.out,
                    "wrote {lines} result lines to {}",
                    args.out.display()
                )?;
                write_summary(io.out, &results)?;
            }
            Ok(match shortfall(&results) {
                None => ExitCode::SUCCESS,
                Some(why) => {
                    writeln!(
                        io.err,
                        "{}: not every request succeeded: {why}",
                        results.record_id
                    )?;
                    ExitCode::from(INCOMPLETE)
                }
            })
        }
        RemoteCommand::Resume(args) => {
            let ids = manager.resume().await?;
            let records = if args.wait && !ids.is_empty() {
                wait(&manager, &ids, json, io).await?
            } else {
                let mut records = Vec::new();
                for id in &ids {
                    records.push(manager.record(id).await?);
                }
                records
            };
            if json {
                let views: Vec<View<'_>> = records.iter().map(View::of).collect();
                writeln!(io.out, "{}", serde_json::to_string_pretty(&views)?)?;
            } else {
                writeln!(io.out, "resumed {} unfinished batch(es)", ids.len())?;
                for record in &records {
                    write_record(io.out, record)?;
                }
            }
            if args.wait {
                verdict(&manager, &records, io).await
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// `batch status`: polls the record now (unless there is no key) and shows it with its history.
async fn status(
    manager: &BatchJobManager,
    id: &str,
    has_key: bool,
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<ExitCode> {
    let stored = manager.record(id).await?;
    let (record, not_refreshed) = if stored.state.is_finished() {
        // Nothing more will happen to it: the database has the last word.
        (stored, None)
    } else if !has_key {
        (
            stored,
            Some("OPENAI_API_KEY is not set, so it could not be refreshed from OpenAI".to_owned()),
        )
    } else {
        match manager.refresh(&stored.id).await {
            Ok(record) => (record, None),
            Err(e) => (
                manager.record(&stored.id).await?,
                Some(format!("could not refresh it from OpenAI: {e}")),
            ),
        }
    };
    let history = manager.history(&record.id).await?;
    if json {
        let mut value = serde_json::to_value(View::of(&record))?;
        value["history"] = serde_json::to_value(&history)?;
        value["refresh_error"] = serde_json::to_value(&not_refreshed)?;
        writeln!(io.out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write_record(io.out, &record)?;
        writeln!(io.out, "  history (time since the intent):")?;
        for change in history {
            let secs = (change.at_ms - record.created_at_ms) as f64 / 1000.0;
            writeln!(
                io.out,
                "  {:>+10.3}s  {:<16} {:<11} {}",
                secs,
                change.state.as_str(),
                change.remote_status.as_deref().unwrap_or("-"),
                change.detail.as_deref().unwrap_or("")
            )?;
        }
    }
    match not_refreshed {
        None => Ok(ExitCode::SUCCESS),
        Some(why) => {
            writeln!(io.err, "{}: showing the stored record: {why}", record.id)?;
            // Without a key the stored record is the answer asked for; a failed refresh is not.
            Ok(if has_key {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn submit(
    manager: &BatchJobManager,
    args: SubmitArgs,
    io: &mut Io<'_>,
) -> anyhow::Result<ExitCode> {
    let options = SubmitOptions {
        metadata: args.metadata.iter().cloned().collect(),
        max_lines: args.max_lines,
        max_bytes: args.max_bytes,
        new: args.new,
        max_line_bytes: args.max_line_bytes,
    };
    let outcome = match manager.submit_file(&args.file, options).await {
        Ok(outcome) => outcome,
        Err(batch_client::Error::InvalidInput(problems)) => {
            for p in &problems {
                let place = p.line.map_or("file".to_owned(), |n| format!("line {n}"));
                writeln!(io.err, "{place}: {}: {}", p.code.as_str(), p.message)?;
            }
            writeln!(
                io.err,
                "invalid: {} problem(s); nothing was submitted",
                problems.len()
            )?;
            return Ok(ExitCode::from(INCOMPLETE));
        }
        Err(e @ (batch_client::Error::Api(_) | batch_client::Error::Transport { .. })) => {
            return Err(anyhow::Error::new(e).context(format!(
                "submitting {}: the submission is stored; run this command again (it carries on where it stopped, creating nothing twice) or `batchbeam batch resume`",
                args.file.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    tell_submitted(&args.file, &outcome, io)?;
    let ids: Vec<String> = outcome.records.iter().map(|r| r.id.clone()).collect();
    let records = if args.wait {
        wait(manager, &ids, args.common.json, io).await?
    } else {
        outcome.records.clone()
    };
    if args.common.json {
        let value = serde_json::json!({
            "submission": outcome.submission,
            "attached": outcome.attached,
            "records": records.iter().map(View::of).collect::<Vec<_>>(),
        });
        writeln!(io.out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        for record in &records {
            if args.wait {
                write_record(io.out, record)?;
            } else if outcome.attached {
                writeln!(io.out, "{}", already(record))?;
            } else {
                writeln!(
                    io.out,
                    "submitted {} as {} ({} requests)",
                    record.id,
                    record.batch_id.as_deref().unwrap_or("-"),
                    record.manifest.custom_ids.len()
                )?;
            }
        }
    }
    if args.wait {
        verdict(manager, &records, io).await
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// What `submit` did with the file, on stderr: shards, normalisations, or an earlier
/// submission it attached to.
fn tell_submitted(file: &Path, outcome: &SubmitOutcome, io: &mut Io<'_>) -> std::io::Result<()> {
    let s = &outcome.submission;
    if outcome.attached {
        writeln!(
            io.err,
            "{}: the same requests (sha256 {}…) were already submitted as {} from {}; attaching to {} instead of submitting again (--new submits again, billed again)",
            file.display(),
            &s.sha256[..s.sha256.len().min(12)],
            s.id,
            s.source_path,
            if outcome.records.len() == 1 {
                "its batch"
            } else {
                "its batches"
            }
        )?;
        return Ok(());
    }
    for change in &outcome.changes {
        writeln!(io.err, "normalised {change}")?;
    }
    if outcome.records.len() > 1 {
        writeln!(
            io.err,
            "{} ({} requests, {} bytes) is over one batch's limits: submitted as {} shards (submission {})",
            file.display(),
            s.lines,
            s.bytes,
            outcome.records.len(),
            s.id
        )?;
    }
    Ok(())
}

/// `already submitted as bb_… (completed); results: …`: one record of an earlier submission.
fn already(r: &JobRecord) -> String {
    let status = r.remote_status.as_ref().map_or("-", |s| s.as_str());
    match r.state {
        JobState::Done => format!(
            "already submitted as {} ({status}); results: batchbeam batch results {} --out FILE",
            r.id, r.id
        ),
        JobState::Error => format!(
            "already submitted as {} (stopped: {}); --new submits it again",
            r.id,
            r.last_error.as_deref().unwrap_or("error")
        ),
        _ => format!(
            "already submitted as {} ({}, {status}, {}/{} done); follow it: batchbeam batch status {}",
            r.id,
            r.state,
            done(r),
            r.manifest.custom_ids.len(),
            r.id
        ),
    }
}

/// Requests a record's batch has finished, failed ones included.
fn done(r: &JobRecord) -> u64 {
    r.request_counts.completed + r.request_counts.failed
}

/// Why not every request of a record's results succeeded, if so.
fn shortfall(r: &BatchResults) -> Option<String> {
    let status = r.status.as_ref().map_or("-", |s| s.as_str());
    if r.failed == 0 && r.unfinished.is_empty() && r.status == Some(BatchStatus::Completed) {
        return None;
    }
    Some(format!(
        "batch {status}: {} succeeded, {} failed, {} never ran",
        r.succeeded,
        r.failed,
        r.unfinished.len()
    ))
}

/// After a wait: exit 0 when every request of every record succeeded; else 1, with each
/// record's reason on stderr.
async fn verdict(
    manager: &BatchJobManager,
    records: &[JobRecord],
    io: &mut Io<'_>,
) -> anyhow::Result<ExitCode> {
    let mut incomplete = 0;
    for record in records {
        let why = match record.state {
            JobState::Done => shortfall(&manager.retrieve_results(&record.id).await?).map(|why| {
                format!(
                    "{why} (the results are kept: batchbeam batch results {} --out FILE)",
                    record.id
                )
            }),
            JobState::Error => Some(format!(
                "stopped: {}",
                record.last_error.as_deref().unwrap_or("error")
            )),
            state => Some(format!("still {state}")),
        };
        if let Some(why) = why {
            incomplete += 1;
            writeln!(io.err, "{}: not every request succeeded: {why}", record.id)?;
        }
    }
    Ok(if incomplete == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INCOMPLETE)
    })
}

/// One line of where the records are, for a log: `3/7 requests done; bb_…: submitted (in_progress)`.
fn status_line(records: &[JobRecord]) -> (String, String) {
    let total: usize = records.iter().map(|r| r.manifest.custom_ids.len()).sum();
    let finished: u64 = records.iter().map(done).sum();
    let states: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{}: {} ({})",
                r.id,
                r.state,
                r.remote_status.as_ref().map_or("-", |s| s.as_str())
            )
        })
        .collect();
    let states = states.join(", ");
    (
        format!("{finished}/{total} requests done; {states}"),
        states,
    )
}

/// Waits for `ids`: a progress bar on a terminal, else a line when waiting starts and status
/// lines on every change of state (while only the counts move, at most every 30 s).
async fn wait(
    manager: &BatchJobManager,
    ids: &[String],
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<Vec<JobRecord>> {
    let bar = (!json && io.err_tty).then(|| {
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
    if bar.is_none() {
        writeln!(
            io.err,
            "waiting for {} batch record(s): {} (a status line on every change, at most every {} s while only the counts move)",
            ids.len(),
            ids.join(", "),
            STATUS_EVERY.as_secs()
        )?;
    }
    let mut last: Option<(String, String, Instant)> = None;
    let err = &mut *io.err;
    let records = manager
        .wait(ids, |records| {
            if let Some(bar) = &bar {
                let total: u64 = records
                    .iter()
                    .map(|r| r.manifest.custom_ids.len() as u64)
                    .sum();
                let finished: u64 = records.iter().map(done).sum();
                bar.set_length(total);
                bar.set_position(finished.min(total));
                let states: Vec<&str> = records
                    .iter()
                    .map(|r| {
                        r.remote_status
                            .as_ref()
                            .map_or(r.state.as_str(), |s| s.as_str())
                    })
                    .collect();
                bar.set_message(states.join(" "));
                return;
            }
            let (line, states) = status_line(records);
            let due = match &last {
                None => true,
                Some((last_line, last_states, at)) => {
                    *last_states != states || (*last_line != line && at.elapsed() >= STATUS_EVERY)
                }
            };
            if due {
                let _ = writeln!(err, "{line}");
                last = Some((line, states, Instant::now()));
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

fn write_summary(out: &mut (impl Write + ?Sized), r: &BatchResults) -> std::io::Result<()> {
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

fn write_record(out: &mut (impl Write + ?Sized), r: &JobRecord) -> std::io::Result<()> {
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
    submission_id: Option<&'a str>,
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
            submission_id: r.submission_id.as_deref(),
            last_error: r.last_error.as_deref(),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use batch_client::ManagerConfig;
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

    /// Runs one command with environment variables from `env` (`--db` over them).
    async fn run_with(
        cmd: RemoteCommand,
        client: Option<ClientConfig>,
        env: &dyn Fn(&str) -> Option<String>,
        io: &mut Io<'_>,
    ) -> anyhow::Result<ExitCode> {
        let settings = cmd
            .common()
            .settings(|flags| Settings::from_lookup(env, flags))?;
        execute(cmd, &settings, client, io).await
    }

    async fn run_args(sim: &openai_sim::SimHandle, args: &[&str]) -> anyhow::Result<ExitCode> {
        run_io(Some(sim), &env, args).await.0
    }

    /// Runs a command with stderr not a terminal; returns its outcome, stdout and stderr.
    /// `sim: None` runs it without a key.
    async fn run_io(
        sim: Option<&openai_sim::SimHandle>,
        env: &dyn Fn(&str) -> Option<String>,
        args: &[&str],
    ) -> (anyhow::Result<ExitCode>, String, String) {
        let cmd = Cli::try_parse_from(std::iter::once("batch").chain(args.iter().copied()))
            .unwrap()
            .cmd;
        let client = sim.map(|sim| {
            ClientConfig::new(sim.base_url(), batch_client::ApiKey::new("sk-cli"))
                .with_retry(batch_client::RetryPolicy::fast())
        });
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            err_tty: false,
        };
        let code = run_with(cmd, client, env, &mut io).await;
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (code, text(out), text(err))
    }

    /// `batch submit FILE --db DB EXTRA…` on the simulator.
    async fn submit_io(
        sim: &openai_sim::SimHandle,
        env: &dyn Fn(&str) -> Option<String>,
        file: &Path,
        db: &Path,
        extra: &[&str],
    ) -> (anyhow::Result<ExitCode>, String, String) {
        let mut args = vec![
            "submit",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_io(Some(sim), env, &args).await
    }

    fn code(result: &anyhow::Result<ExitCode>) -> u8 {
        match result {
            Ok(c) if *c == ExitCode::SUCCESS => 0,
            Ok(c) if *c == ExitCode::from(1) => 1,
            Ok(c) if *c == ExitCode::from(2) => 2,
            Ok(c) => panic!("unexpected {c:?}"),
            Err(_) => 2,
        }
    }

    /// A simulator 5000 times faster than real time, a folder, a database path in it and an
    /// input of `n` requests.
    async fn setup(n: usize) -> (openai_sim::SimHandle, tempfile::TempDir, PathBuf, PathBuf) {
        let sim = openai_sim::spawn(openai_sim::SimConfig::default().with_time_scale(5000.0))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let file = input(dir.path(), n);
        (sim, dir, db, file)
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
    fn metadata_is_key_value() {
        assert_eq!(parse_pair("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_pair("=b").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submit_splits_waits_and_every_command_finds_the_batches() {
        let (sim, dir, db, file) = setup(5).await;
        let db = db.to_str().unwrap();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submitting_the_same_file_again_attaches_instead_of_billing_twice() {
        let (sim, dir, db, file) = setup(3).await;
        let db = db.to_str().unwrap();
        let file = file.to_str().unwrap();
        let (first, out, _) =
            run_io(Some(&sim), &env, &["submit", file, "--db", db, "--wait"]).await;
        assert_eq!(code(&first), 0, "{out}");
        // The same bytes under another name are the same requests.
        let copy = dir.path().join("copy.jsonl");
        std::fs::copy(file, &copy).unwrap();
        let (again, out, err) = run_io(
            Some(&sim),
            &env,
            &["submit", copy.to_str().unwrap(), "--db", db],
        )
        .await;
        assert_eq!(code(&again), 0, "{err}");
        assert!(out.starts_with("already submitted as bb_"), "{out}");
        assert!(
            out.contains("(completed); results: batchbeam batch results bb_"),
            "{out}"
        );
        assert!(err.contains("were already submitted as bs_"), "{err}");
        assert!(err.contains("--new submits again"), "{err}");
        // --wait on the earlier submission waits on its records: still one batch.
        let (waited, _, err) = run_io(
            Some(&sim),
            &env,
            &["submit", file, "--db", db, "--wait", "--json"],
        )
        .await;
        assert_eq!(code(&waited), 0, "{err}");
        assert_eq!(sim.stats().await.batches_created, 1);
        let (fresh, out, _) = run_io(
            Some(&sim),
            &env,
            &["submit", file, "--db", db, "--new", "--json"],
        )
        .await;
        assert_eq!(code(&fresh), 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["attached"], false);
        assert_eq!(v["submission"]["seq"], 1);
        assert_eq!(sim.stats().await.batches_created, 2);

        // A sharded input is one submission: all its shards are found again.
        let big = dir.path().join("big.jsonl");
        let lines: String = (0..5)
            .map(|i| {
                std::fs::read_to_string(file)
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .replace("\"r0\"", &format!("\"s{i}\""))
                    + "\n"
            })
            .collect();
        std::fs::write(&big, lines).unwrap();
        let big = big.to_str().unwrap();
        let (sharded, _, err) = run_io(
            Some(&sim),
            &env,
            &["submit", big, "--db", db, "--max-lines", "2"],
        )
        .await;
        assert_eq!(code(&sharded), 0, "{err}");
        assert!(err.contains("submitted as 3 shards"), "{err}");
        let (again, out, _) = run_io(
            Some(&sim),
            &env,
            &["submit", big, "--db", db, "--max-lines", "2"],
        )
        .await;
        assert_eq!(code(&again), 0);
        assert_eq!(out.matches("already submitted as bb_").count(), 3, "{out}");
        assert_eq!(sim.stats().await.batches_created, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_exits_one_with_the_reason_unless_every_request_succeeded() {
        use openai_sim::{BatchOutcome, BatchOutcomeRule, FaultConfig};
        // A stalled batch is cancelled after BATCH_MAX_WAIT_HOURS.
        let short = |n: &str| match n {
            "BATCH_MAX_WAIT_HOURS" => Some("0.0001".to_owned()),
            other => env(other),
        };
        for (outcome, scale, expect) in [
            (
                BatchOutcome::Fail,
                200_000.0,
                "batch failed: 0 succeeded, 0 failed, 4 never ran",
            ),
            (
                BatchOutcome::Expire,
                200_000.0,
                "batch expired: 2 succeeded, 0 failed, 2 never ran",
            ),
            (
                BatchOutcome::Stall,
                1000.0,
                "batch cancelled: 0 succeeded, 0 failed, 4 never ran",
            ),
        ] {
            let faults =
                FaultConfig::default().with_batch_outcome(BatchOutcomeRule::new(outcome).next(1));
            let config = openai_sim::SimConfig::default().with_time_scale(scale);
            let sim = openai_sim::spawn(config.with_faults(faults)).await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("b.db");
            let file = input(dir.path(), 4);
            let vars: &dyn Fn(&str) -> Option<String> = match outcome {
                BatchOutcome::Stall => &short,
                _ => &env,
            };
            let (result, _, err) = submit_io(&sim, vars, &file, &db, &["--wait"]).await;
            assert_eq!(code(&result), 1, "{expect}: {err}");
            assert!(err.contains("not every request succeeded"), "{err}");
            assert!(err.contains(expect), "{err}");
            assert!(err.contains("batchbeam batch results bb_"), "{err}");
            // `results` agrees.
            let id = err
                .split_whitespace()
                .find(|w| w.starts_with("bb_"))
                .unwrap()
                .trim_end_matches(':');
            let out_file = dir.path().join("r.jsonl");
            let (db, out_file) = (db.to_str().unwrap(), out_file.to_str().unwrap());
            let args = ["results", id, "--db", db, "--out", out_file];
            let (results, _, err) = run_io(Some(&sim), &env, &args).await;
            assert_eq!(code(&results), 1, "{expect}");
            assert!(err.contains(expect), "{err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_api_exits_two_and_a_rerun_carries_the_stored_submission_on() {
        let (sim, _dir, db, file) = setup(2).await;
        // A port nothing listens on (held, so no parallel test's server can take it).
        let dead = openai_sim::RefusedPort::new().unwrap();
        let url = dead.base_url();
        let cmd = Cli::try_parse_from([
            "batch",
            "submit",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .unwrap()
        .cmd;
        let client = ClientConfig::new(url, batch_client::ApiKey::new("sk-cli"))
            .with_retry(batch_client::RetryPolicy::NONE);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            err_tty: false,
        };
        let e = run_with(cmd, Some(client), &env, &mut io)
            .await
            .unwrap_err();
        let message = format!("{e:#}");
        assert!(
            message.contains("the submission is stored; run this command again"),
            "{message}"
        );
        assert!(message.contains("connect"), "{message}");
        let (again, out, _) = submit_io(&sim, &env, &file, &db, &["--wait"]).await;
        assert_eq!(code(&again), 0, "{out}");
        let stats = sim.stats().await;
        assert_eq!((stats.files_uploaded, stats.batches_created), (1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_in_a_log_prints_a_start_line_and_status_lines() {
        /// stderr the test can read while the command runs.
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl Shared {
            fn text(&self) -> String {
                String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
            }
        }
        // Simulated time stands still until the test moves it.
        let sim = openai_sim::spawn(openai_sim::SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (db, file) = (dir.path().join("b.db"), input(dir.path(), 3));
        let args = [
            "batch",
            "submit",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--wait",
        ];
        let cmd = Cli::try_parse_from(args).unwrap().cmd;
        let client = ClientConfig::new(sim.base_url(), batch_client::ApiKey::new("sk-cli"));
        let (mut out, mut err) = (Vec::new(), Shared::default());
        let log = err.clone();
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            err_tty: false,
        };
        let (result, ()) = tokio::join!(run_with(cmd, Some(client), &env, &mut io), async {
            // Once the wait has said where the batch is, let it finish.
            while !log.text().contains("0/3 requests done; bb_") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sim.advance_clock(3600.0).await;
        });
        let err = log.text();
        assert_eq!(code(&result), 0, "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines[0].starts_with("waiting for 1 batch record(s): bb_"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("0/3 requests done; bb_")
                && lines[1].ends_with(": submitted (validating)"),
            "{err}"
        );
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("3/3 requests done; bb_") && last.ends_with(": done (completed)"),
            "{err}"
        );
        // One line per change, not one per poll (the poll interval here is 1 ms).
        assert!(lines.len() <= 4, "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_commands_need_no_key_and_create_no_database() {
        let sim = openai_sim::spawn(openai_sim::SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let db_s = db.to_str().unwrap();
        let file = input(dir.path(), 2);
        let (submitted, _, _) = run_io(
            Some(&sim),
            &env,
            &["submit", file.to_str().unwrap(), "--db", db_s],
        )
        .await;
        assert_eq!(code(&submitted), 0);
        let (_, out, _) = run_io(None, &env, &["list", "--db", db_s, "--json"]).await;
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = list[0]["id"].as_str().unwrap().to_owned();
        // Without a key: the stored record, and why it was not refreshed.
        let (shown, out, err) = run_io(None, &env, &["status", &id, "--db", db_s]).await;
        assert_eq!(code(&shown), 0, "{err}");
        assert!(out.starts_with(&id), "{out}");
        assert!(
            err.contains("OPENAI_API_KEY is not set, so it could not be refreshed"),
            "{err}"
        );
        let out_file = dir.path().join("r.jsonl");
        let (results, _, _) = run_io(
            None,
            &env,
            &[
                "results",
                &id,
                "--db",
                db_s,
                "--out",
                out_file.to_str().unwrap(),
            ],
        )
        .await;
        let e = results.unwrap_err().to_string();
        assert!(e.contains("needs OPENAI_API_KEY"), "{e}");

        // A mistyped database is an error naming it, and nothing is created.
        let typo = dir.path().join("sub").join("typo.db");
        for args in [
            vec!["list", "--db", typo.to_str().unwrap()],
            vec!["status", id.as_str(), "--db", typo.to_str().unwrap()],
            vec![
                "results",
                id.as_str(),
                "--db",
                typo.to_str().unwrap(),
                "--out",
                out_file.to_str().unwrap(),
            ],
            vec!["resume", "--db", typo.to_str().unwrap()],
        ] {
            let (result, _, _) = run_io(Some(&sim), &env, &args).await;
            let e = result.unwrap_err().to_string();
            assert!(
                e.contains("no batch database at") && e.contains("typo.db"),
                "{args:?}: {e}"
            );
        }
        assert!(!dir.path().join("sub").exists());
    }
}
