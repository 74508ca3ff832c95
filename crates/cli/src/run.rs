//! `batchbeam run`, `batchbeam resume`, `batchbeam sessions` and `batchbeam cost`: beam-search
//! sessions on OpenAI (or, without a key, on an in-process openai-sim), each operation on its
//! configured tier, checkpointed in the database.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use batch_format::ImageDetail;
use clap::{Args, Subcommand};
use orchestrator::{
    BeamSearch, CheckpointStore, Engines, Hybrid, JudgingMode, Plan, Pricing, ProgressEvent,
    RatingScale, Routing, SearchParams, SessionOutcome, SessionStore, Turnaround, estimate,
};
use providers::{Operation, RoleModels, Settings, Stack, StackOptions, Tier};
// One rule for a deadline, the server's and the CLI's: `90s`, `45m`, `6h`, `2d`, at most 30 days.
use server::jobs::parse_duration;

/// Where sessions and their database live, and how to reach the models.
#[derive(Args, Clone)]
pub(crate) struct Place {
    /// The database of sessions and batches.
    #[command(flatten)]
    db: crate::settings::DbArgs,
    /// The folder sessions write their images and session.json to, one folder each
    /// (BATCHBEAM_SESSIONS; default batchbeam-sessions).
    #[arg(long, value_name = "DIR")]
    sessions: Option<PathBuf>,
    /// Run against an in-process openai-sim instead of OPENAI_BASE_URL (the default when
    /// OPENAI_API_KEY is not set).
    #[arg(long)]
    sim: bool,
    /// Simulated time runs this many times faster (with --sim), so batches finish in seconds.
    #[arg(long, default_value_t = 120.0, value_name = "X")]
    sim_time_scale: f64,
    /// Send every operation to the Batch API (sets BATCH_API_ENABLED for this run).
    #[arg(long)]
    batch: bool,
    /// Hybrid mode: finish within this long (e.g. 90m, 6h, 1d), each stage on the cheapest tier
    /// whose expected turnaround fits the time left.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    deadline: Option<Duration>,
    /// A pricing table (TOML) overriding the built-in prices; see docs/cost.md.
    #[arg(long, value_name = "FILE")]
    pricing: Option<PathBuf>,
    /// Print the outcome as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Send every call, even one whose exact request the request cache has answered before
    /// (sets BATCHBEAM_CACHE=false for this run).
    #[arg(long)]
    no_cache: bool,
}

/// Arguments of `batchbeam run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// The idea to find the best image prompt for.
    idea: String,
    /// Candidates per iteration (a multiple of -m).
    #[arg(short, long, default_value_t = 9)]
    n: u32,
    /// Survivors kept per iteration; each gets n / m children.
    #[arg(short, long, default_value_t = 3)]
    m: u32,
    /// Iterations, counting the first expansion.
    #[arg(short, long, default_value_t = 3)]
    iterations: u32,
    /// Weight of alignment against aesthetics in a score.
    #[arg(long, default_value_t = 0.7)]
    alpha: f64,
    /// Votes per judgement.
    #[arg(long, default_value_t = 3)]
    ensemble: u32,
    /// scoring (each image alone) or comparative (pairs, with parents).
    #[arg(long, default_value = "comparative", value_parser = parse_judging)]
    judging: JudgingMode,
    /// classic (14 stages for 3 iterations), fused (9) or judge_refines (7).
    #[arg(long, default_value = "fused", value_parser = parse_plan)]
    plan: Plan,
    /// The prompt writer's temperature (dropped for reasoning models).
    #[arg(long, default_value_t = 0.9)]
    temperature: f64,
    /// Seed for the calls and the A/B swaps (random when not given; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// The detail level judges see images at: low (512 px), high or auto.
    #[arg(long, default_value = "low", value_parser = parse_detail)]
    detail: ImageDetail,
    /// Image size asked of the image model (e.g. 1024x1024).
    #[arg(long)]
    size: Option<String>,
    /// Image quality asked of the image model (low, medium, high...): the full quality.
    #[arg(long)]
    quality: Option<String>,
    /// Per-iteration render quality (and size): `low,low,high`, a ramp `low..high`, or items
    /// `quality@WIDTHxHEIGHT`; a shorter list repeats its last item. See docs/cost.md.
    #[arg(long, value_name = "SCHEDULE")]
    render_schedule: Option<String>,
    /// After the search, draw the top K candidates again at full quality and judge them
    /// against each other for the final pick.
    #[arg(long, value_name = "K", default_value_t = 0)]
    polish: u32,
    /// The most the session may cost (USD): no iteration or polish is started whose forecast
    /// would take the total over it; the session ends with its best so far and says why.
    #[arg(long, value_name = "USD")]
    budget: Option<f64>,
    /// Print the forecast (calls, tokens, images and cost per operation and tier; wall time
    /// per tier) and exit without sending anything.
    #[arg(long)]
    estimate: bool,
    #[command(flatten)]
    place: Place,
}

/// Arguments of `batchbeam resume`.
#[derive(Args)]
pub(crate) struct ResumeArgs {
    /// The session id (s_…), as `run` and `sessions` print it.
    id: String,
    #[command(flatten)]
    place: Place,
}

/// Arguments of `batchbeam sessions`.
#[derive(Args)]
pub(crate) struct SessionsArgs {
    /// The database (as for `run`).
    #[command(flatten)]
    db: crate::settings::DbArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `batchbeam cost …`.
#[derive(Subcommand)]
pub(crate) enum CostCommand {
    /// A session's cost report: per operation and tier, with the all-standard cost and the
    /// saving.
    Report(CostReportArgs),
    /// The prices in use (built-in, or --pricing FILE over them), per model and tier.
    Prices(PricesArgs),
}

/// Arguments of `cost report`.
#[derive(Args)]
pub(crate) struct CostReportArgs {
    /// The session id.
    id: String,
    /// The database (as for `run`).
    #[command(flatten)]
    db: crate::settings::DbArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cost prices`.
#[derive(Args)]
pub(crate) struct PricesArgs {
    /// A pricing table (TOML) over the built-in one.
    #[arg(long, value_name = "FILE")]
    pricing: Option<PathBuf>,
    /// Print JSON: one object per model and tier, prices in USD per 1M tokens and per image.
    #[arg(long)]
    json: bool,
}

impl Place {
    /// Every setting, with `--db`, `--database-url`, `--sessions` and `--no-cache` as the top
    /// layer.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut flags = crate::settings::flags(&self.db, self.sessions.as_deref());
        if self.no_cache {
            flags.push(("cache.enabled", "false".to_owned()));
        }
        Ok(Settings::load(&flags)?)
    }

    /// The flags a resume needs to run where this run did (tiers, database, simulator).
    fn resume_flags(&self) -> String {
        let mut flags = String::new();
        if let Some(db) = &self.db.db {
            flags.push_str(&format!(" --db {}", db.display()));
        }
        if let Some(url) = &self.db.database_url {
            // Never the password: the hint names where it goes.
            let shown = providers::DatabaseUrl::new(url.clone()).redacted();
            flags.push_str(&format!(" --database-url {shown}"));
        }
        if self.sim {
            flags.push_str(" --sim");
        }
        if self.batch {
            flags.push_str(" --batch");
        }
        if self.no_cache {
            flags.push_str(" --no-cache");
        }
        if let Some(d) = self.deadline {
            flags.push_str(&format!(" --deadline {}", duration_words(d)));
        }
        if let Some(p) = &self.pricing {
            flags.push_str(&format!(" --pricing {}", p.display()));
        }
        flags
    }
}

fn parse_plan(s: &str) -> Result<Plan, String> {
    s.parse().map_err(|e: orchestrator::Error| e.to_string())
}

fn parse_judging(s: &str) -> Result<JudgingMode, String> {
    s.parse().map_err(|e: orchestrator::Error| e.to_string())
}

fn parse_detail(s: &str) -> Result<ImageDetail, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "low" => Ok(ImageDetail::Low),
        "high" => Ok(ImageDetail::High),
        "auto" => Ok(ImageDetail::Auto),
        _ => Err(format!("'{s}' is not one of low, high, auto")),
    }
}

/// `d` as its largest whole unit: `6h`, `90m`, `2d`, `45s`.
fn duration_words(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The sessions of the database `--db` or `--database-url` names (over the settings), read only.
async fn sessions_of(db: &crate::settings::DbArgs) -> anyhow::Result<SessionStore> {
    crate::settings::sessions_read_only(&crate::settings::load(db, None)?).await
}

/// What a session runs on: the engines, the store, and the simulator kept alive if there is one.
struct Rig {
    engines: Engines,
    store: SessionStore,
    /// The connections (and the simulator) kept alive while the session runs.
    _stack: Stack,
    /// Whether the models are openai-sim's (nothing is billed), and why.
    simulated: Option<&'static str>,
    pricing: Pricing,
    /// The models each role calls.
    models: RoleModels,
    /// `BATCH_API_ENABLED` as configured (before `--batch`).
    batch_configured: bool,
    /// Hybrid mode's deadline: `--deadline`, else `BATCH_MAX_WAIT_HOURS` when
    /// `BATCH_HYBRID_MODE` is on.
    deadline: Option<Duration>,
    /// `BATCH_COST_TRACKING`: print the cost report.
    cost_tracking: bool,
    /// Where sessions write their folders (`--sessions`).
    sessions: PathBuf,
}

async fn rig(place: &Place, settings: Settings) -> anyhow::Result<Rig> {
    if (place.sim || settings.openai.api_key.is_none())
        && !(place.sim_time_scale.is_finite() && place.sim_time_scale > 0.0)
    {
        bail!("--sim-time-scale must be more than zero");
    }
    let pricing = match &place.pricing {
        Some(path) => Pricing::builtin().with_overrides(Pricing::load(path)?),
        None => Pricing::builtin(),
    };
    let stack = Stack::open(
        &settings,
        StackOptions {
            sim: place.sim,
            sim_time_scale: place.sim_time_scale,
            batch: place.batch,
            always_queue: place.deadline.is_some(),
            // Every call that is retried says so on stderr (a dead OPENAI_BASE_URL is not silent).
            retry_notice: Some(crate::batch_remote::retry_printer()),
        },
    )
    .await?;
    let config = stack.factory.config().clone();
    let deadline = place
        .deadline
        .or_else(|| config.batch.hybrid_mode.then(|| config.batch.max_wait()));
    let store = SessionStore::on(stack.database.clone()).await?;
    let hybrid = deadline.map(|deadline| Hybrid {
        deadline,
        turnaround: Turnaround::default(),
    });
    let mut engines = Engines::from_factory(&stack.factory, hybrid)?;
    engines.priced_by(&pricing);
    Ok(Rig {
        engines,
        store,
        simulated: stack.simulated,
        batch_configured: stack.batch_configured,
        _stack: stack,
        pricing,
        models: config.models.clone(),
        deadline,
        cost_tracking: config.batch.cost_tracking,
        sessions: settings.data.sessions.clone(),
    })
}

/// The first lines of `run` and `resume`: which tier each operation of the stages left goes
/// to and what they are expected to cost there, against all on batch (the cheapest tier);
/// then, on simulated models, that nothing is billed.
fn opening_lines(
    rig: &Rig,
    place: &Place,
    params: &SearchParams,
    from_stage: usize,
) -> Vec<String> {
    let stages = estimate::planned_stages(params);
    let mut ops: Vec<Operation> = Vec::new();
    for s in stages.iter().skip(from_stage) {
        let op = s.kind.operation();
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    ops.sort_by_key(|op| Operation::ALL.iter().position(|o| o == op));
    let cost = |tier_of: &dyn Fn(Operation) -> Tier| {
        estimate::estimate(params, from_stage, &rig.models, &rig.pricing, tier_of).cost
    };
    let all_standard = cost(&|_| Tier::Standard);
    let all_batch = cost(&|_| Tier::Batch);
    let scope = if from_stage == 0 {
        "for the session".to_owned()
    } else {
        format!(
            "for the {} stages left",
            stages.len().saturating_sub(from_stage)
        )
    };
    let first = match (rig.engines.routing(), rig.deadline) {
        (Routing::Hybrid(_), Some(deadline)) => format!(
            "tiers: hybrid, each stage on the cheapest tier that fits the {} deadline (batch, \
             then flex, then standard); expected {scope} between ≈ {} (all on batch) and ≈ {} \
             (all on standard)",
            duration_words(deadline),
            dollars(all_batch),
            dollars(all_standard)
        ),
        _ => {
            let tier_of = |op: Operation| rig.engines.tier_for(op, None, 1);
            let list: Vec<String> = ops
                .iter()
                .map(|op| format!("{} {}", op.as_str(), tier_of(*op)))
                .collect();
            let here = cost(&tier_of);
            let all = |t: Tier| ops.iter().all(|op| tier_of(*op) == t);
            let (why, against) = if all(Tier::Standard) && !place.batch && !rig.batch_configured {
                (
                    "standard is the default: BATCH_API_ENABLED is not true".to_owned(),
                    format!(
                        "≈ {} with --batch (the Batch API at half price, results within 24 h)",
                        dollars(all_batch)
                    ),
                )
            } else if all(Tier::Batch) {
                let why = if place.batch {
                    "--batch"
                } else {
                    "BATCH_API_ENABLED=true"
                };
                (
                    format!("{why}: the Batch API at half price, results within 24 h"),
                    format!("≈ {} all on standard", dollars(all_standard)),
                )
            } else {
                (
                    "from BATCH_*_ENABLED and BATCHBEAM_TIER_* settings".to_owned(),
                    format!(
                        "≈ {} all on standard, ≈ {} all on batch",
                        dollars(all_standard),
                        dollars(all_batch)
                    ),
                )
            };
            format!(
                "tiers: {} ({why}); expected {scope} ≈ {} on these tiers, {against}",
                list.join(", "),
                dollars(here)
            )
        }
    };
    let mut lines = vec![first];
    if let Some(why) = rig.simulated {
        lines.push(format!(
            "simulated models ({why}): an in-process openai-sim answers and nothing is billed; \
             costs are what OpenAI would charge for the same calls at list prices"
        ));
    }
    lines
}

/// `run --estimate`: the session's forecast on the tiers in use (hybrid mode: all on batch,
/// the cheapest it may pick), and its total all on standard and all on batch.
fn print_forecast(rig: &Rig, params: &SearchParams, json: bool) -> anyhow::Result<()> {
    let turnaround = match rig.engines.routing() {
        Routing::Hybrid(h) => h.turnaround,
        Routing::PerOperation(_) => Turnaround::default(),
    };
    let hybrid = matches!(rig.engines.routing(), Routing::Hybrid(_));
    let forecast = |tier_of: &dyn Fn(Operation) -> Tier| {
        estimate::forecast(
            params,
            0..usize::MAX,
            &rig.models,
            &rig.pricing,
            tier_of,
            &turnaround,
        )
    };
    let here = if hybrid {
        forecast(&|_| Tier::Batch)
    } else {
        forecast(&|op| rig.engines.tier_for(op, None, 1))
    };
    let standard = forecast(&|_| Tier::Standard);
    let batch = forecast(&|_| Tier::Batch);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "forecast": here,
                "all_standard": standard.cost,
                "all_batch": batch.cost,
                "stages": params.stage_count(),
            }),
        )?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "forecast for {} stages{} (nothing sent):",
        params.stage_count(),
        if hybrid {
            ", hybrid mode at its cheapest (all on batch)"
        } else {
            ""
        }
    )?;
    write!(out, "{here}")?;
    writeln!(
        out,
        "all on standard ≈ {}, all on batch ≈ {}",
        dollars(standard.cost),
        dollars(batch.cost)
    )?;
    if let Some(budget) = params.budget_usd {
        writeln!(
            out,
            "budget {}: {}",
            dollars(budget),
            if here.cost <= budget {
                "the whole session fits".to_owned()
            } else {
                "the session will stop at an iteration whose forecast does not fit".to_owned()
            }
        )?;
    }
    if let Some(why) = rig.simulated {
        writeln!(out, "simulated models ({why}): nothing would be billed")?;
    }
    Ok(())
}

/// `$4.58`, or more digits below a cent.
fn dollars(v: f64) -> String {
    if v > 0.0 && v < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// `batchbeam run`.
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut params = SearchParams::new(args.idea);
    params.n = args.n;
    params.m = args.m;
    params.iterations = args.iterations;
    params.alpha = args.alpha;
    params.ensemble = args.ensemble;
    params.judging = args.judging;
    params.plan = args.plan;
    params.temperature = Some(args.temperature);
    params.seed = args.seed.unwrap_or_else(rand_seed);
    params.detail = args.detail;
    params.image_size = args.size;
    params.image_quality = args.quality.map(|q| q.trim().to_ascii_lowercase());
    if let Some(text) = &args.render_schedule {
        params.render_schedule = orchestrator::parse_schedule(text, params.iterations)?;
    }
    params.polish = args.polish;
    params.budget_usd = args.budget;
    params.validate()?;
    let mut err = std::io::stderr();
    let rig = rig(&args.place, args.place.settings()?).await?;
    if args.estimate {
        print_forecast(&rig, &params, args.place.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    for line in opening_lines(&rig, &args.place, &params, 0) {
        writeln!(err, "{line}")?;
    }
    let store = rig.store.clone();
    let mut search = BeamSearch::start(params, rig.engines, rig.store, &rig.sessions)
        .await?
        .with_pricing(rig.pricing);
    if let Some(d) = rig.deadline {
        search = search.with_deadline(d);
    }
    writeln!(
        err,
        "session {} (seed {}): {} plan, {} stages; resume with `batchbeam resume {}{}`",
        search.id(),
        search.params().seed,
        search.params().plan,
        search.params().stage_count(),
        search.id(),
        args.place.resume_flags(),
    )?;
    let shown = Shown {
        json: args.place.json,
        cost: rig.cost_tracking,
        simulated: rig.simulated.is_some(),
    };
    drive(search, shown, store).await
}

/// How the outcome is shown.
#[derive(Clone, Copy)]
struct Shown {
    /// One JSON object on stdout instead of text.
    json: bool,
    /// The cost report (`BATCH_COST_TRACKING`).
    cost: bool,
    /// The models were simulated: nothing was billed.
    simulated: bool,
}

/// `batchbeam resume`.
pub(crate) async fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    // A finished session is shown as it is: nothing to start, nothing created.
    let settings = args.place.settings()?;
    let store = crate::settings::sessions_read_only(&settings).await?;
    if let Some(outcome) = BeamSearch::finished(&args.id, &store).await? {
        writeln!(
            err,
            "session {} is already finished ({} of {} stages): nothing to resume; its result:",
            outcome.id,
            outcome.stages.len(),
            outcome.stages.len()
        )?;
        let shown = Shown {
            json: args.place.json,
            cost: settings.providers.batch.cost_tracking,
            simulated: false,
        };
        show(&outcome, shown)?;
        return Ok(ExitCode::SUCCESS);
    }
    drop(store);
    let rig = rig(&args.place, settings).await?;
    let mut search = BeamSearch::resume(&args.id, rig.engines.clone(), rig.store.clone())
        .await?
        .with_pricing(rig.pricing.clone());
    for line in opening_lines(&rig, &args.place, search.params(), search.next_stage()) {
        writeln!(err, "{line}")?;
    }
    if let Some(d) = rig.deadline {
        search = search.with_deadline(d);
    }
    let shown = Shown {
        json: args.place.json,
        cost: rig.cost_tracking,
        simulated: rig.simulated.is_some(),
    };
    drive(search, shown, rig.store).await
}

async fn drive(search: BeamSearch, shown: Shown, store: SessionStore) -> anyhow::Result<ExitCode> {
    let mut events = search.progress().subscribe();
    let printer = tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        while let Ok(event) = events.recv().await {
            if let Some(line) = describe(&event) {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}{line}", if tty { "· " } else { "" });
            }
        }
    });
    let outcome = search.run().await;
    printer.abort();
    let outcome = outcome?;
    // The report is a view of what session.json already holds: a failure to write it is said,
    // and the session still succeeded.
    let report = write_report(&store, &outcome, shown.simulated).await;
    show(&outcome, shown)?;
    match report {
        Ok(path) if shown.json => eprintln!("report: {}", path.display()),
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("warning: report.html was not written: {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `report.html` into the session folder, beside `session.json` and `images/`: the
/// dashboard's job view, static, with the session tree embedded and image links relative to
/// the folder. Returns its path.
async fn write_report(
    store: &SessionStore,
    outcome: &SessionOutcome,
    simulated: bool,
) -> anyhow::Result<PathBuf> {
    use server::view::{ImageUrls, SessionTree};
    let row = store
        .session(&outcome.id)
        .await?
        .with_context(|| format!("session {} is not in the database", outcome.id))?;
    let tree = SessionTree::of_session(&row, ImageUrls::Relative)?.for_job("completed", simulated);
    let path = outcome.folder.join("report.html");
    tokio::fs::write(&path, server::dashboard::report_html(&tree))
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The outcome on stdout: one JSON object, or text.
fn show(outcome: &SessionOutcome, shown: Shown) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if shown.json {
        serde_json::to_writer_pretty(&mut out, outcome)?;
        writeln!(out)?;
    } else {
        print_outcome(outcome, shown, &mut out)?;
    }
    Ok(())
}

/// How a candidate's judgement reads: `rating 1623, won 7 of 10 comparisons (score 7.0 of
/// 10)` in comparative mode (the rating is the session-wide one, the score the share of the
/// comparisons it won in its pool), `score 8.4 of 10` in scoring mode (where the rating is the
/// score). The one place scores and ratings are worded.
fn score_words(
    score: f64,
    wins: Option<(u32, u32)>,
    rating: Option<f64>,
    scale: RatingScale,
) -> String {
    let rating = match (scale, rating) {
        (RatingScale::Elo, Some(r)) => format!("rating {r:.0}, "),
        _ => String::new(),
    };
    match wins {
        Some((won, of)) => {
            format!("{rating}won {won} of {of} comparisons (score {score:.1} of 10)")
        }
        None => format!("{rating}score {score:.1} of 10"),
    }
}

/// What a rating on the Elo-like scale means, in a line.
const ELO_WORDS: &str = "ratings are on one scale across the session (a Bradley-Terry fit over all its comparisons): 1500 is the first iteration's average image, 400 more is 10 times the odds of being preferred";

fn describe(event: &ProgressEvent) -> Option<String> {
    Some(match event {
        ProgressEvent::SessionStarted {
            next_stage, stages, ..
        } if *next_stage > 0 => format!(
            "resuming at stage {} of {stages} ({next_stage} finished before)",
            next_stage + 1
        ),
        ProgressEvent::StageStarted {
            index,
            iteration,
            stage,
            tier,
            calls,
            reused,
            ..
        } => {
            let reused = if *reused > 0 {
                format!(", {reused} from checkpoints")
            } else {
                String::new()
            };
            format!(
                "stage {} (iteration {iteration}): {stage} on {tier}, {calls} calls{reused}",
                index + 1
            )
        }
        ProgressEvent::BatchSubmitted { requests, .. } => {
            format!("  {requests} requests submitted to the Batch API; waiting for the batch")
        }
        ProgressEvent::StageFinished {
            succeeded,
            failed,
            batch_ids,
            seconds,
            ..
        } => {
            let batches = if batch_ids.is_empty() {
                String::new()
            } else {
                format!(" [{}]", batch_ids.join(", "))
            };
            format!("  done in {seconds:.1} s: {succeeded} ok, {failed} failed{batches}")
        }
        ProgressEvent::IterationJudged {
            iteration,
            best_id,
            best_score,
            wins,
            best_rating,
            scale,
            ..
        } => format!(
            "iteration {iteration}: best so far {best_id}, {}",
            score_words(*best_score, *wins, *best_rating, *scale)
        ),
        _ => return None,
    })
}

fn print_outcome(o: &SessionOutcome, shown: Shown, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "session {}: {} stages, {} calls",
        o.id,
        o.stages.len(),
        o.calls
    )?;
    // Comparative scores are shares of comparisons won within each iteration's pool: they rank
    // a pool, they do not compare across iterations; ratings do.
    for b in &o.best_by_iteration {
        writeln!(
            out,
            "  iteration {}: best so far {}, {}",
            b.iteration,
            b.id,
            score_words(b.score, b.wins, b.rating, o.rating_scale)
        )?;
    }
    let wins = o
        .best
        .verdict
        .as_ref()
        .filter(|v| v.comparisons > 0)
        .map(|v| (v.wins, v.comparisons));
    writeln!(
        out,
        "best: {}, {}",
        o.best.id,
        score_words(o.best.score(), wins, o.best.rating, o.rating_scale)
    )?;
    if o.rating_scale == RatingScale::Elo && o.best.rating.is_some() {
        writeln!(out, "  {ELO_WORDS}")?;
    }
    if let Some(v) = &o.best.verdict {
        if wins.is_some() {
            writeln!(
                out,
                "  share of votes won: alignment {:.1} of 10, aesthetic {:.1} of 10",
                v.alignment, v.aesthetic
            )?;
        } else {
            writeln!(
                out,
                "  alignment {:.1} of 10, aesthetic {:.1} of 10, over {} votes",
                v.alignment, v.aesthetic, v.votes
            )?;
        }
    }
    writeln!(out, "  WHAT: {}", o.best.what)?;
    writeln!(out, "  HOW: {}", o.best.how)?;
    writeln!(out, "  prompt: {}", o.best.combined)?;
    if let Some(image) = &o.best.image {
        writeln!(out, "  image: {}", o.folder.join(image).display())?;
    }
    if let Some(draft) = &o.draft_best {
        writeln!(
            out,
            "polish: {} candidates drawn again at full quality; the drafts' best was {draft}, the \
             polish picked {}{}",
            o.polished.len(),
            o.best.id,
            if *draft == o.best.id {
                " (the same)"
            } else {
                ""
            }
        )?;
    }
    if let Some(why) = &o.stopped {
        writeln!(out, "stopped early: {why}")?;
    }
    if let Some(f) = &o.forecast {
        let actual = o.report.total.cost;
        let off = if actual > 0.0 {
            format!(" ({:+.1}%)", 100.0 * (f.cost - actual) / actual)
        } else {
            String::new()
        };
        writeln!(
            out,
            "cost: forecast {}, actual {}{off}",
            dollars(f.cost),
            dollars(actual)
        )?;
    }
    writeln!(out, "tree: {}", o.folder.join("session.json").display())?;
    if shown.cost {
        writeln!(out)?;
        write!(out, "{}", o.report)?;
        if shown.simulated {
            writeln!(
                out,
                "simulated models: nothing was billed; these are OpenAI's list prices for the same calls"
            )?;
        }
    }
    Ok(())
}

fn rand_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Small seeds are easier to type back.
    u64::try_from(nanos % 1_000_000).unwrap_or(0)
}

/// `batchbeam sessions`.
pub(crate) async fn sessions(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let store = sessions_of(&args.db).await?;
    let rows = store.summaries().await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"id": r.id, "idea": r.idea, "state": r.state,
                    "next_stage": r.next_stage, "folder": r.folder, "best": r.best})
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(out, "no sessions")?;
    }
    for r in rows {
        let best = r
            .best
            .as_ref()
            .map_or_else(String::new, |b| match (b.scale, b.rating) {
                (RatingScale::Elo, Some(rating)) => format!("  best {} rating {rating:.0}", b.id),
                _ => format!("  best {} score {:.1}", b.id, b.score),
            });
        writeln!(
            out,
            "{}  {:<9}  stage {}/{}  {}{best}  {}",
            r.id,
            format!("{:?}", r.state).to_lowercase(),
            r.next_stage,
            r.stages.unwrap_or(0),
            r.plan.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            r.idea
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `batchbeam cost …`.
pub(crate) async fn cost(cmd: CostCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        CostCommand::Report(args) => {
            let store = sessions_of(&args.db).await?;
            let report = store.report(&args.id).await?;
            if args.json {
                serde_json::to_writer_pretty(&mut out, &report.cost)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "session {} ({} of its stages finished)",
                    report.summary.id, report.summary.next_stage
                )?;
                write!(out, "{}", report.cost)?;
            }
        }
        CostCommand::Prices(args) => {
            let pricing = match &args.pricing {
                Some(path) => Pricing::builtin().with_overrides(Pricing::load(path)?),
                None => Pricing::builtin(),
            };
            if args.json {
                serde_json::to_writer_pretty(&mut out, &price_list(&pricing))?;
                writeln!(out)?;
            } else {
                print_prices(&pricing, &mut out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every model and tier the table prices: token prices (USD per 1M) and the default image.
fn price_list(pricing: &Pricing) -> Vec<serde_json::Value> {
    let mut list = Vec::new();
    for model in pricing.models() {
        for tier in [Tier::Standard, Tier::Flex, Tier::Batch] {
            let tokens = pricing.token_prices(model, tier).ok();
            let image = pricing.image_price(model, tier, None, None).ok();
            if tokens.is_some() || image.is_some() {
                list.push(serde_json::json!({
                    "model": model,
                    "tier": tier.as_str(),
                    "tokens_per_1m": tokens,
                    "default_image": image,
                }));
            }
        }
    }
    list
}

/// Token prices per model and tier (USD per 1M tokens), and each image model's default image.
fn print_prices(pricing: &Pricing, out: &mut impl Write) -> anyhow::Result<()> {
    let tiers = [Tier::Standard, Tier::Flex, Tier::Batch];
    writeln!(
        out,
        "{:<22} {:<9} {:>10} {:>10} {:>10} {:>12}",
        "model", "tier", "input/1M", "cached/1M", "output/1M", "image"
    )?;
    for model in pricing.models() {
        for tier in tiers {
            let tokens = pricing.token_prices(model, tier).ok();
            let image = pricing.image_price(model, tier, None, None).ok();
            if tokens.is_none() && image.is_none() {
                continue;
            }
            let money = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("${v:.3}"));
            writeln!(
                out,
                "{:<22} {:<9} {:>10} {:>10} {:>10} {:>12}",
                model,
                tier.as_str(),
                money(tokens.map(|t| t.input)),
                money(tokens.map(|t| t.cached_input)),
                money(tokens.map(|t| t.output)),
                money(image),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("5w").unwrap_err().contains("unit"));
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(
            parse_duration("31d").is_err(),
            "a deadline is at most 30 days"
        );
    }
}
