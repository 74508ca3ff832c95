//! `batchbeam run`, `batchbeam resume`, `batchbeam sessions` and `batchbeam cost`: beam-search
//! sessions on OpenAI (or, without a key, on an in-process openai-sim), each operation on its
//! configured tier, checkpointed in the database.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use batch_client::{BatchJobManager, ClientConfig, OpenAiClient};
use batch_format::ImageDetail;
use batch_queue::BatchRequestQueue;
use clap::{Args, Subcommand};
use openai_sim::{SimConfig, SimHandle};
use orchestrator::{
    BeamSearch, Engines, Hybrid, JudgingMode, Plan, Pricing, ProgressEvent, SearchParams,
    SessionOutcome, SessionStore, Turnaround,
};
use providers::{Operation, ProviderFactory, ProvidersConfig};

/// Where sessions and their database live, and how to reach the models.
#[derive(Args, Clone)]
pub(crate) struct Place {
    /// The SQLite database of sessions and batches (default ./batchbeam.db, or DATABASE_URL
    /// when it is a sqlite: URL).
    #[arg(long, env = "BATCHBEAM_DB", value_name = "PATH")]
    db: Option<PathBuf>,
    /// The folder sessions write their images and session.json to (one folder each).
    #[arg(long, env = "BATCHBEAM_SESSIONS", default_value = "batchbeam-sessions")]
    sessions: PathBuf,
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
    /// Image quality asked of the image model (low, medium, high...).
    #[arg(long)]
    quality: Option<String>,
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
    /// The SQLite database (as for `run`).
    #[arg(long, env = "BATCHBEAM_DB", value_name = "PATH")]
    db: Option<PathBuf>,
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
    /// The SQLite database (as for `run`).
    #[arg(long, env = "BATCHBEAM_DB", value_name = "PATH")]
    db: Option<PathBuf>,
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
}

impl Place {
    /// The flags a resume needs to run where this run did (tiers, database, simulator).
    fn resume_flags(&self) -> String {
        let mut flags = String::new();
        if let Some(db) = &self.db {
            flags.push_str(&format!(" --db {}", db.display()));
        }
        if self.sim {
            flags.push_str(" --sim");
        }
        if self.batch {
            flags.push_str(" --batch");
        }
        if let Some(d) = self.deadline {
            flags.push_str(&format!(" --deadline {}s", d.as_secs()));
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

/// `90s`, `45m`, `6h`, `2d` or a number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 90s, 45m, 6h or 2d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("'{s}': the unit must be s, m, h or d")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("'{s}' must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn db_path(db: Option<&Path>) -> anyhow::Result<PathBuf> {
    crate::batch_remote::db_path(db, &|name| std::env::var(name).ok())
}

/// What a session runs on: the engines, the store, and the simulator kept alive if there is one.
struct Rig {
    engines: Engines,
    store: SessionStore,
    _sim: Option<SimHandle>,
    pricing: Pricing,
    /// Hybrid mode's deadline: `--deadline`, else `BATCH_MAX_WAIT_HOURS` when
    /// `BATCH_HYBRID_MODE` is on.
    deadline: Option<Duration>,
    /// `BATCH_COST_TRACKING`: print the cost report.
    cost_tracking: bool,
}

async fn rig(place: &Place, out: &mut dyn Write) -> anyhow::Result<Rig> {
    let mut config = ProvidersConfig::load()?;
    if place.batch {
        config.batch.enabled = true;
    }
    let use_sim = place.sim
        || std::env::var("OPENAI_API_KEY")
            .map(|k| k.trim().is_empty())
            .unwrap_or(true);
    let (client, sim) = if use_sim {
        if !place.sim {
            writeln!(
                out,
                "OPENAI_API_KEY is not set: running on an in-process openai-sim (simulated models, no cost)"
            )?;
        }
        if !(place.sim_time_scale.is_finite() && place.sim_time_scale > 0.0) {
            bail!("--sim-time-scale must be more than zero");
        }
        let sim = openai_sim::spawn(
            SimConfig::default()
                .with_addr(([127, 0, 0, 1], 0).into())
                .with_time_scale(place.sim_time_scale)
                .with_seed(config.simulated_seed),
        )
        .await
        .context("starting openai-sim")?;
        // Batches on the simulator finish in seconds: poll accordingly.
        config.batch.poll_interval_ms = config.batch.poll_interval_ms.min(200);
        let client = ClientConfig::new(sim.base_url(), batch_client::ApiKey::new("sk-sim"));
        (client, Some(sim))
    } else {
        // Every call that is retried says so on stderr (a dead OPENAI_BASE_URL is not silent).
        let client =
            ClientConfig::from_env()?.with_retry_notice(crate::batch_remote::retry_printer());
        (client, None)
    };
    let db = db_path(place.db.as_deref())?;
    let data_dir = std::path::absolute(
        db.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?
    .join("batchbeam-files");
    let deadline = place.deadline.or_else(|| {
        config
            .batch
            .hybrid_mode
            .then(|| Duration::from_secs(u64::from(config.batch.max_wait_hours) * 3600))
    });
    let batch_used = deadline.is_some()
        || Operation::ALL
            .iter()
            .any(|op| config.tier_for(*op) == providers::Tier::Batch);
    let mut factory = ProviderFactory::new(config.clone()).with_client(client.clone());
    let (store, queue) = if batch_used {
        let manager = BatchJobManager::open(
            OpenAiClient::new(client.clone())?,
            &db,
            config.manager_config(&data_dir),
        )
        .await
        .with_context(|| format!("opening {}", db.display()))?;
        let store = SessionStore::new(manager.store().pool().clone()).await?;
        let queue = Arc::new(
            BatchRequestQueue::new(
                Arc::new(manager),
                OpenAiClient::new(client)?,
                config.queue_config(),
            )
            .await?,
        );
        queue.resume().await?;
        factory = factory.with_queue(Arc::clone(&queue));
        (store, Some(queue))
    } else {
        (SessionStore::open(&db).await?, None)
    };
    let hybrid = deadline.map(|deadline| Hybrid {
        deadline,
        turnaround: Turnaround::default(),
    });
    let engines = Engines::from_factory(&factory, queue.clone(), hybrid)?;
    let pricing = match &place.pricing {
        Some(path) => Pricing::builtin().with_overrides(Pricing::load(path)?),
        None => Pricing::builtin(),
    };
    Ok(Rig {
        engines,
        store,
        _sim: sim,
        pricing,
        deadline,
        cost_tracking: config.batch.cost_tracking,
    })
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
    params.image_quality = args.quality;
    params.validate()?;
    let mut err = std::io::stderr();
    let rig = rig(&args.place, &mut err).await?;
    let mut search = BeamSearch::start(params, rig.engines, rig.store, &args.place.sessions)
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
        search
            .params()
            .plan
            .stages(search.params().iterations)
            .len(),
        search.id(),
        args.place.resume_flags(),
    )?;
    drive(search, args.place.json, rig.cost_tracking).await
}

/// `batchbeam resume`.
pub(crate) async fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let rig = rig(&args.place, &mut err).await?;
    let mut search = BeamSearch::resume(&args.id, rig.engines, rig.store)
        .await?
        .with_pricing(rig.pricing);
    if let Some(d) = rig.deadline {
        search = search.with_deadline(d);
    }
    drive(search, args.place.json, rig.cost_tracking).await
}

async fn drive(search: BeamSearch, json: bool, cost_tracking: bool) -> anyhow::Result<ExitCode> {
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
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &outcome)?;
        writeln!(out)?;
    } else {
        print_outcome(&outcome, cost_tracking, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(event: &ProgressEvent) -> Option<String> {
    Some(match event {
        ProgressEvent::SessionStarted {
            next_stage, stages, ..
        } if *next_stage > 0 => format!("resuming at stage {} of {stages}", next_stage + 1),
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
            ..
        } => match wins {
            Some((won, of)) => {
                format!("iteration {iteration}: best {best_id} won {won} of its {of} comparisons")
            }
            None => format!("iteration {iteration}: best {best_id} scores {best_score:.2}"),
        },
        _ => return None,
    })
}

fn print_outcome(o: &SessionOutcome, cost: bool, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "session {}: {} stages, {} calls",
        o.id,
        o.stages.len(),
        o.calls
    )?;
    // Comparative scores are shares of comparisons won within each iteration's pool: they rank
    // a pool, they do not compare across iterations.
    let comparative = o.best.verdict.as_ref().is_some_and(|v| v.comparisons > 0);
    let what = if comparative { "wins (of 10)" } else { "score" };
    for (it, id, score) in &o.best_by_iteration {
        writeln!(out, "  iteration {it}: best {id} ({what} {score:.2})")?;
    }
    writeln!(out, "best: {} ({what} {:.2})", o.best.id, o.best.score())?;
    if let Some(v) = &o.best.verdict {
        if comparative {
            writeln!(
                out,
                "  won {} of {} comparisons; alignment {:.1}, aesthetic {:.1} (share of votes won, of 10)",
                v.wins, v.comparisons, v.alignment, v.aesthetic
            )?;
        } else {
            writeln!(
                out,
                "  alignment {:.1}, aesthetic {:.1} over {} votes",
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
    writeln!(out, "tree: {}", o.folder.join("session.json").display())?;
    if cost {
        writeln!(out)?;
        write!(out, "{}", o.report)?;
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
    let store = SessionStore::open(&db_path(args.db.as_deref())?).await?;
    let rows = store.sessions().await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"id": r.id, "idea": r.idea, "state": r.state,
                    "next_stage": r.next_stage, "folder": r.folder})
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
        let params: serde_json::Value = serde_json::from_str(&r.params).unwrap_or_default();
        let plan = params["plan"].as_str().unwrap_or("?");
        let iterations = params["iterations"].as_u64().unwrap_or(0);
        let total = plan
            .parse::<Plan>()
            .map(|p| p.stages(u32::try_from(iterations).unwrap_or(0)).len())
            .unwrap_or(0);
        writeln!(
            out,
            "{}  {:<9}  stage {}/{}  {}  {}",
            r.id,
            format!("{:?}", r.state).to_lowercase(),
            r.next_stage,
            total,
            plan,
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
            let store = SessionStore::open(&db_path(args.db.as_deref())?).await?;
            let row = store
                .session(&args.id)
                .await?
                .ok_or_else(|| orchestrator::Error::UnknownSession(args.id.clone()))?;
            let state: orchestrator::SearchState = match &row.snapshot {
                Some(s) => serde_json::from_str(s).context("reading the session's checkpoint")?,
                None => orchestrator::SearchState::default(),
            };
            let report = state.costs.report();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "session {} ({} of its stages finished)",
                    row.id, row.next_stage
                )?;
                write!(out, "{report}")?;
            }
        }
        CostCommand::Prices(args) => {
            let pricing = match &args.pricing {
                Some(path) => Pricing::builtin().with_overrides(Pricing::load(path)?),
                None => Pricing::builtin(),
            };
            print_prices(&pricing, &mut out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Token prices per model and tier (USD per 1M tokens), and each image model's default image.
fn print_prices(pricing: &Pricing, out: &mut impl Write) -> anyhow::Result<()> {
    use providers::Tier;
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
    }
}
