//! Jobs: what a client asks for ([`BeamSearchRequest`]), checked by the orchestrator's own
//! rules; a bounded pool of workers running them; the waiter, one task that takes a job
//! parked on its batches back to the queue once they are settled, so that a job waiting on
//! the Batch API holds no worker and no task; and the scanner, which claims the jobs of the
//! shared database this instance may run (queued ones, and those whose owner's lease
//! expired). A worker runs a job only once it has claimed it, renews the lease while it runs
//! (each renewal also tells it of a cancel posted to another instance), and releases it when
//! the job parks, ends or the server stops.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orchestrator::{
    BeamSearch, Engines, Hybrid, JudgingMode, Plan, Pricing, ProgressEvent, SearchParams,
    SessionOutcome, SessionStore, Turnaround,
};
use providers::{Operation, Stack, Tier};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use crate::error::ApiError;
use crate::events::EventHub;
use crate::store::{Claim, JobRow, JobStatus, JobStore, Watched};
use crate::view::rating_of;

/// `POST /api/beam-search`: the guide's request. Absent fields take the orchestrator's
/// defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BeamSearchRequest {
    /// The idea to find the best image prompt for.
    pub prompt: String,
    /// Candidates per iteration (1-64, a multiple of `m`; 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Survivors per iteration (3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<u32>,
    /// Iterations, counting the first expansion (1-20; 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// `classic`, `fused` (default) or `judge_refines`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// `scoring` or `comparative` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judging: Option<String>,
    /// Votes per judgement (1-9; 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<u32>,
    /// Seed of the calls and the A/B swaps (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Send every operation to the Batch API (default: `BATCH_API_ENABLED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_batch: Option<bool>,
    /// `deferred` (default: the job holds no worker while its batch waits) or `poll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_wait_mode: Option<String>,
    /// Hybrid mode: finish within this long (`90m`, `6h`, `1d`, or seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// `false`: send every call, even one the request cache has answered before (default:
    /// `BATCHBEAM_CACHE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// Per-iteration render quality: `low,low,high`, `low..high`, items `quality@WxH` (every
    /// iteration at full quality when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_schedule: Option<String>,
    /// Draw the top this many candidates again at full quality after the search and judge
    /// them for the final pick (0-16; 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polish: Option<u32>,
    /// The most the session may cost (USD): it ends with its best so far rather than start an
    /// iteration whose forecast would take it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
}

/// How a batch-mode job waits on its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Parked without a worker until the batches are settled.
    Deferred,
    /// The worker waits.
    Poll,
}

/// A request checked: the search parameters and how to run them.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The parameters, validated.
    pub params: SearchParams,
    /// Batch for every operation.
    pub use_batch: bool,
    /// How to wait.
    pub wait: WaitMode,
    /// Hybrid mode's deadline.
    pub deadline: Option<Duration>,
    /// The request cache may answer (when the server has it on).
    pub cache: bool,
}

impl BeamSearchRequest {
    /// The request checked by the orchestrator's own rules; a 400 names the field.
    pub fn check(&self, batch_default: bool) -> Result<Checked, ApiError> {
        let mut params = SearchParams::new(self.prompt.clone());
        if let Some(n) = self.n {
            params.n = n;
        }
        if let Some(m) = self.m {
            params.m = m;
        }
        if let Some(i) = self.iterations {
            params.iterations = i;
        }
        if let Some(e) = self.ensemble {
            params.ensemble = e;
        }
        if let Some(s) = self.seed {
            params.seed = s;
        }
        if let Some(p) = &self.plan {
            params.plan = p
                .parse::<Plan>()
                .map_err(|e| ApiError::bad_param("plan", e.to_string()))?;
        }
        if let Some(text) = &self.render_schedule {
            params.render_schedule = orchestrator::parse_schedule(text, params.iterations)
                .map_err(|e| ApiError::bad_param("renderSchedule", e.to_string()))?;
        }
        if let Some(k) = self.polish {
            params.polish = k;
        }
        params.budget_usd = self.budget;
        if let Some(j) = &self.judging {
            params.judging = j
                .parse::<JudgingMode>()
                .map_err(|e| ApiError::bad_param("judging", e.to_string()))?;
        }
        params.validate().map_err(|e| match &e {
            orchestrator::Error::Param { name, .. } => {
                let field = match *name {
                    "idea" => "prompt",
                    "render_schedule" => "renderSchedule",
                    other => other,
                };
                ApiError::bad_param(field, e.to_string())
            }
            _ => ApiError::bad_param("prompt", e.to_string()),
        })?;
        let wait = match self.batch_wait_mode.as_deref() {
            None | Some("deferred") => WaitMode::Deferred,
            Some("poll") => WaitMode::Poll,
            Some(other) => {
                return Err(ApiError::bad_param(
                    "batchWaitMode",
                    format!("'{other}' is not one of deferred, poll"),
                ));
            }
        };
        let deadline = match &self.deadline {
            Some(d) => Some(
                parse_duration(d).map_err(|problem| ApiError::bad_param("deadline", problem))?,
            ),
            None => None,
        };
        Ok(Checked {
            params,
            use_batch: self.use_batch.unwrap_or(batch_default),
            wait,
            deadline,
            cache: self.cache.unwrap_or(true),
        })
    }
}

/// `90s`, `45m`, `6h`, `2d` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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
    if !(secs.is_finite() && secs > 0.0 && secs <= 30.0 * 86_400.0) {
        return Err(format!("'{s}' must be more than zero and at most 30 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Counters the metrics show.
#[derive(Debug, Default)]
pub struct Counters {
    /// Times the waiter looked at the waiting jobs' batches.
    pub polls: AtomicU64,
    /// Errors met asking the stack about batches.
    pub poll_errors: AtomicU64,
    /// Error responses given (4xx and 5xx).
    pub api_errors: AtomicU64,
    /// Workers running.
    pub workers_up: AtomicUsize,
    /// Jobs this instance took over after their owner's lease expired.
    pub takeovers: AtomicU64,
}

/// Everything the handlers and workers share.
#[derive(Debug)]
pub struct App {
    /// The stack the searches run on.
    pub stack: Arc<Stack>,
    /// Jobs and events.
    pub jobs: Arc<dyn JobStore>,
    /// Sessions (checkpoints).
    pub sessions: SessionStore,
    /// Events.
    pub events: EventHub,
    /// Prices.
    pub pricing: Pricing,
    /// Where sessions write their folders.
    pub sessions_dir: PathBuf,
    /// Workers configured.
    pub workers: usize,
    /// How often the waiter looks at what changed (records announced, jobs parked here).
    pub wait_poll: Duration,
    /// How often the waiter looks at every waiting job even without a notice (on
    /// PostgreSQL; on SQLite it looks every `wait_poll`).
    pub wait_sweep: Duration,
    /// This instance, as a lease owner.
    pub owner: String,
    /// How long a claimed job stays this instance's without a renewal.
    pub lease: Duration,
    /// How often leases are renewed and the database scanned for jobs to claim.
    pub heartbeat: Duration,
    /// Takeovers after which a job is failed instead.
    pub max_takeovers: u32,
    /// Counters.
    pub counters: Counters,
    queue: mpsc::UnboundedSender<String>,
    /// Jobs parked here since the waiter's last pass: it looks at them next, whatever it hears.
    parked: std::sync::Mutex<HashSet<String>>,
    /// Jobs on the workers' queue, not yet taken by a worker (each is queued once).
    pending: std::sync::Mutex<HashSet<String>>,
    /// Cancel switches of the jobs running here.
    running: std::sync::Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Serialises writes of a job's row between its worker and the API.
    pub row_lock: Mutex<()>,
    /// Stops the workers and the waiter.
    stop: watch::Sender<bool>,
    /// The workers', the waiter's and the scanner's tasks (for [`App::kill`]).
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl App {
    /// Shared state; the receiver is the workers' queue.
    pub fn new(
        stack: Arc<Stack>,
        jobs: Arc<dyn JobStore>,
        sessions: SessionStore,
        config: &crate::ServerConfig,
    ) -> (Arc<App>, mpsc::UnboundedReceiver<String>) {
        let (queue, rx) = mpsc::unbounded_channel();
        let app = App {
            stack,
            events: EventHub::new(jobs.clone()),
            jobs,
            sessions,
            pricing: config.pricing.clone(),
            sessions_dir: config.sessions_dir.clone(),
            workers: config.workers.max(1),
            wait_poll: config.wait_poll,
            wait_sweep: config.wait_sweep,
            owner: config.instance_id.clone(),
            lease: config.lease,
            heartbeat: config.heartbeat,
            max_takeovers: config.max_takeovers,
            counters: Counters::default(),
            queue,
            parked: std::sync::Mutex::new(HashSet::new()),
            pending: std::sync::Mutex::new(HashSet::new()),
            running: std::sync::Mutex::new(HashMap::new()),
            row_lock: Mutex::new(()),
            stop: watch::channel(false).0,
            tasks: std::sync::Mutex::new(Vec::new()),
        };
        (Arc::new(app), rx)
    }

    /// The lease, in ms.
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Stops every task at once, as a crash would: nothing is released or renewed (the stop
    /// switch is left off, so that no worker gives its job back on the way out).
    pub fn kill(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    fn keep(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task.abort_handle());
    }

    /// Whether the models are simulated.
    pub fn simulated(&self) -> bool {
        self.stack.simulated.is_some()
    }

    /// Puts a job on the workers' queue (once: a job already there or running here is not
    /// queued again). A worker claims it before running it.
    pub fn enqueue(&self, id: &str) {
        if self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
        {
            return;
        }
        let fresh = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
        if fresh {
            let _ = self.queue.send(id.to_owned());
        }
    }

    /// Tells the workers and the waiter to stop (jobs stay resumable).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops a running job here, if it runs here.
    pub fn cancel_running(&self, id: &str) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = running.get(id) {
            let _ = tx.send(true);
        }
    }

    /// What a search of `checked` would cost, priced as it would run.
    pub fn estimate(&self, checked: &Checked) -> f64 {
        self.forecast(checked).cost
    }

    /// The forecast of a search of `checked` as it would run (hybrid mode: all on batch, the
    /// cheapest it may pick): calls, tokens, images and cost per operation and tier, and the
    /// wall time per tier from the default turnaround estimates.
    pub fn forecast(&self, checked: &Checked) -> orchestrator::estimate::Forecast {
        let config = self.config_for(checked);
        let models = config.models.clone();
        let tier_of = |op: Operation| {
            if checked.deadline.is_some() {
                Tier::Batch
            } else {
                config.tier_for(op)
            }
        };
        orchestrator::estimate::forecast(
            &checked.params,
            0..usize::MAX,
            &models,
            &self.pricing,
            tier_of,
            &Turnaround::default(),
        )
    }

    fn config_for(&self, checked: &Checked) -> providers::ProvidersConfig {
        let mut config = self.stack.factory.config().clone();
        config.batch.enabled = checked.use_batch;
        config.cache &= checked.cache;
        config
    }

    /// Hours a job's batches may take (`BATCH_MAX_WAIT_HOURS` in batch mode, else 0).
    pub fn wait_hours(&self, use_batch: bool) -> f64 {
        if use_batch {
            self.stack.factory.config().batch.max_wait_hours
        } else {
            0.0
        }
    }
}

/// Starts `n` workers on the queue, the waiter and the scanner.
pub fn spawn_workers(app: &Arc<App>, rx: mpsc::UnboundedReceiver<String>) {
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..app.workers {
        let (worker_app, rx) = (app.clone(), rx.clone());
        app.keep(tokio::spawn(async move {
            let app = worker_app;
            app.counters.workers_up.fetch_add(1, Ordering::SeqCst);
            let mut stop = app.stop.subscribe();
            loop {
                let next = {
                    let mut rx = rx.lock().await;
                    tokio::select! {
                        id = rx.recv() => id,
                        () = stopped(&mut stop) => None,
                    }
                };
                let Some(id) = next else { break };
                if let Err(e) = run_job(&app, &id, stop.clone()).await {
                    tracing::warn!(job = %id, error = %e, "job stopped");
                }
                let stopping = *stop.borrow();
                if stopping {
                    break;
                }
            }
            app.counters.workers_up.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    let waiter_app = app.clone();
    app.keep(tokio::spawn(async move {
        let app = waiter_app;
        let mut stop = app.stop.subscribe();
        // On PostgreSQL the waiter hears of every record changed or settled by any instance,
        // and looks at every waiting job only every `wait_sweep`, as a safety net; on SQLite
        // (one process) it looks every `wait_poll`.
        let mut notices = match app.stack.batch_notices().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "listening for batch changes: polling instead");
                None
            }
        };
        let mut states: HashMap<String, (String, bool)> = HashMap::new();
        let mut swept: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(app.wait_poll) => {}
                () = stopped(&mut stop) => break,
            }
            let mut records = HashSet::new();
            let mut missed = false;
            if let Some(rx) = &mut notices {
                loop {
                    match rx.try_recv() {
                        Ok(providers::db::Notice::Record(id)) => {
                            records.insert(id);
                        }
                        Ok(providers::db::Notice::Missed) => missed = true,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            missed = true;
                            notices = None;
                            break;
                        }
                    }
                }
            }
            let parked: HashSet<String> =
                std::mem::take(&mut *app.parked.lock().unwrap_or_else(|p| p.into_inner()));
            let sweep_every = if notices.is_some() {
                app.wait_sweep
            } else {
                app.wait_poll
            };
            let sweep = missed || swept.is_none_or(|at| at.elapsed() >= sweep_every);
            if !sweep && records.is_empty() && parked.is_empty() {
                continue;
            }
            let scope = if sweep {
                Scope::All
            } else {
                Scope::Some { records, parked }
            };
            let looked = wake_settled(&app, &mut states, scope).await;
            app.counters.polls.fetch_add(1, Ordering::Relaxed);
            match looked {
                Ok(()) if sweep => swept = Some(Instant::now()),
                Ok(()) => {}
                Err(e) => {
                    app.counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "waiter");
                    // What this pass was told of is not lost: the next one looks at everything.
                    swept = None;
                }
            }
        }
    }));
    let scanner_app = app.clone();
    app.keep(tokio::spawn(async move {
        let app = scanner_app;
        let mut stop = app.stop.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(app.heartbeat) => {}
                () = stopped(&mut stop) => break,
            }
            if let Err(e) = scan(&app).await {
                tracing::warn!(error = %e, "scanning for jobs to claim");
            }
        }
    }));
}

/// Queues every job this instance may claim now: queued ones, and running ones whose
/// owner's lease expired (or that were this instance's before a restart).
pub(crate) async fn scan(app: &Arc<App>) -> Result<(), crate::Error> {
    for id in app.jobs.claimable(&app.owner, providers::now_ms()).await? {
        app.enqueue(&id);
    }
    Ok(())
}

/// Which jobs a pass of the waiter looks at.
enum Scope {
    /// Every waiting job (and this instance's running ones): the sweep.
    All,
    /// Those watching these records (by record id) and those parked here since the last pass.
    Some {
        /// Records announced as changed or settled.
        records: HashSet<String>,
        /// Jobs parked here.
        parked: HashSet<String>,
    },
}

/// The batches a watched job's events speak of: a waiting job's, and the one a running
/// (poll-mode) job waits on now.
fn watched_batches(job: &Watched) -> &[String] {
    if job.status == JobStatus::Waiting {
        &job.batch_ids
    } else {
        job.batch_id.as_slice()
    }
}

/// Reports the status changes of the batches the jobs in `scope` watch (once per job and
/// change, whichever instance says it first) and takes those of them whose calls are all
/// settled back to the queue. The work is per distinct batch and set-based: one read of the
/// watched jobs, a few of the batches, a few of the calls.
async fn wake_settled(
    app: &Arc<App>,
    states: &mut HashMap<String, (String, bool)>,
    scope: Scope,
) -> Result<(), crate::Error> {
    let watched = app.jobs.watched(&app.owner).await?;
    let jobs: Vec<&Watched> = match &scope {
        Scope::All => watched.iter().collect(),
        Scope::Some { records, parked } => {
            // A record is named by its id and, once created, by its batch's.
            let ids: Vec<String> = records.iter().cloned().collect();
            let mut names: HashSet<String> = records.clone();
            for info in app.stack.batches_among(&ids).await?.into_values() {
                names.extend(info.batch_id);
            }
            watched
                .iter()
                .filter(|j| {
                    parked.contains(&j.id) || watched_batches(j).iter().any(|b| names.contains(b))
                })
                .collect()
        }
    };
    // Each distinct batch once, and only those not known to be settled.
    let mut wanted: Vec<String> = Vec::new();
    let mut seen: HashSet<&String> = HashSet::new();
    for job in &jobs {
        for batch in watched_batches(job) {
            if seen.insert(batch) && !states.get(batch).is_some_and(|(_, settled)| *settled) {
                wanted.push(batch.clone());
            }
        }
    }
    let infos = app.stack.batches_among(&wanted).await?;
    let mut changed: HashMap<&String, &providers::BatchInfo> = HashMap::new();
    for batch in &wanted {
        let Some(info) = infos.get(batch) else {
            continue;
        };
        let now = info
            .remote_status
            .clone()
            .unwrap_or_else(|| info.state.clone());
        if states.get(batch).map(|(s, _)| s) != Some(&now) {
            changed.insert(batch, info);
        }
        states.insert(batch.clone(), (now, info.settled));
    }
    for job in &jobs {
        for batch in watched_batches(job) {
            let Some(info) = changed.get(batch) else {
                continue;
            };
            let now = info.remote_status.as_deref().unwrap_or(&info.state);
            // Another instance's waiter may have said it first.
            if app.jobs.last_batch_status(&job.id, batch).await?.as_deref() == Some(now) {
                continue;
            }
            let fields = json!({"batchId": batch, "status": now, "state": info.state,
                "completed": info.completed, "failed": info.failed, "total": info.total});
            app.events
                .publish(&job.id, "batch_status", map_of(fields))
                .await?;
        }
    }
    // The waiting jobs whose calls are all settled go back to the queue.
    let waiting: Vec<&&Watched> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Waiting)
        .collect();
    let keys: Vec<String> = waiting
        .iter()
        .flat_map(|j| j.wait_keys.iter().cloned())
        .collect();
    let open = app.stack.unsettled_among(&keys).await?;
    for job in waiting {
        if job.wait_keys.iter().any(|k| open.contains(k)) {
            continue;
        }
        if app
            .jobs
            .requeue_waiting(&job.id, providers::now_ms())
            .await?
        {
            // This instance's waiter saw it first; whichever worker claims it runs it.
            app.enqueue(&job.id);
        }
    }
    if matches!(scope, Scope::All) {
        // Forget the batches no job watches any more.
        let watching: HashSet<&String> = watched.iter().flat_map(watched_batches).collect();
        states.retain(|b, _| watching.contains(b));
    }
    Ok(())
}

/// Resolves once the switch is on (or its sender is gone).
async fn stopped(switch: &mut watch::Receiver<bool>) {
    let _ = switch.wait_for(|on| *on).await;
}

fn map_of(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Updates the row of `id` under the row lock, if this instance still holds the running job
/// (`None` when a client cancelled it or another instance took it over meanwhile).
async fn update(
    app: &App,
    id: &str,
    f: impl FnOnce(&mut JobRow),
) -> Result<Option<JobRow>, crate::Error> {
    let _lock = app.row_lock.lock().await;
    let Some(mut row) = app.jobs.get(id).await? else {
        return Ok(None);
    };
    if row.status != JobStatus::Running || row.owner.as_deref() != Some(app.owner.as_str()) {
        return Ok(None);
    }
    f(&mut row);
    row.updated_at_ms = providers::now_ms();
    if !app.jobs.save_owned(&row, &app.owner).await? {
        return Ok(None);
    }
    Ok(Some(row))
}

/// Claims job `id` and runs (or resumes) it until it finishes, fails, is cancelled, or
/// (deferred batch mode) parks on its stage's batches. A job another instance holds, or one
/// parked or finished, is left alone.
async fn run_job(
    app: &Arc<App>,
    id: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<(), crate::Error> {
    let (cancel_tx, mut cancel) = watch::channel(false);
    {
        // One run of a job per instance: the scanner may queue a job this instance runs.
        let mut running = app.running.lock().unwrap_or_else(|p| p.into_inner());
        app.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if running.contains_key(id) {
            return Ok(());
        }
        running.insert(id.to_owned(), cancel_tx);
    }
    let result = claim_and_drive(app, id, &mut cancel, &mut stop).await;
    app.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    result
}

async fn claim_and_drive(
    app: &Arc<App>,
    id: &str,
    cancel: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), crate::Error> {
    let claim = app
        .jobs
        .claim(
            id,
            &app.owner,
            providers::now_ms(),
            app.lease_ms(),
            i64::from(app.max_takeovers),
        )
        .await?;
    let (row, taken_from) = match claim {
        Claim::Claimed { row, taken_from } => (row, taken_from),
        Claim::NotClaimable => return Ok(()),
        Claim::GaveUp(row) => {
            let error = row.error.clone().unwrap_or_default();
            app.events
                .publish(id, "job_failed", map_of(json!({"error": error})))
                .await?;
            return Ok(());
        }
    };
    if let Some(from) = &taken_from {
        app.counters.takeovers.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(job = %id, from = %from, to = %app.owner, "job taken over: its instance's lease expired");
        app.events
            .publish(
                id,
                "job_taken_over",
                map_of(json!({"from": from, "to": app.owner, "takeovers": row.takeovers})),
            )
            .await?;
    }
    // The lease is renewed from its own task while this worker holds the job, so that a slow
    // resume or a long stretch of the search between two polls of the loop below never lets
    // it lapse while the job runs here. Dropped (and aborted) with this worker, as in a crash.
    let _keep_alive = KeepAlive::start(app, id);
    let request: BeamSearchRequest = match serde_json::from_str(&row.request) {
        Ok(r) => r,
        Err(e) => {
            fail(app, id, &format!("its stored request cannot be read: {e}")).await?;
            return Ok(());
        }
    };
    let checked = match request.check(false) {
        Ok(c) => c,
        Err(e) => {
            fail(app, id, &e.body.error.message).await?;
            return Ok(());
        }
    };
    let resumed = row.session_id.is_some();
    if let Err(e) = drive(app, id, row, checked, resumed, cancel, stop).await {
        fail(app, id, &e.to_string()).await?;
    }
    Ok(())
}

/// Renews this instance's lease on a job every heartbeat until dropped. A renewal that
/// changes nothing (the job is not running here yet, or no longer) is harmless; the run's own
/// loop is what notices a lost lease and stops.
struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    fn start(app: &Arc<App>, id: &str) -> KeepAlive {
        let (app, id) = (Arc::clone(app), id.to_owned());
        KeepAlive(tokio::spawn(async move {
            let mut tick = tokio::time::interval(app.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let until = providers::now_ms().saturating_add(app.lease_ms());
                if let Err(e) = app.jobs.renew(&id, &app.owner, until).await {
                    tracing::warn!(job = %id, error = %e, "renewing the job's lease");
                }
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn fail(app: &App, id: &str, message: &str) -> Result<(), crate::Error> {
    let now = providers::now_ms();
    if update(app, id, |r| {
        r.status = JobStatus::Failed;
        r.error = Some(message.to_owned());
        r.finished_at_ms = Some(now);
        r.owner = None;
        r.lease_until = None;
    })
    .await?
    .is_some()
    {
        app.events
            .publish(id, "job_failed", map_of(json!({"error": message})))
            .await?;
    }
    Ok(())
}

/// The best candidate of an outcome, as the job shows it.
fn best_json(job: &str, outcome: &SessionOutcome) -> Value {
    let file = outcome
        .best
        .image
        .as_deref()
        .map(|i| i.rsplit('/').next().unwrap_or(i).to_owned());
    json!({
        "id": outcome.best.id,
        "prompt": outcome.best.combined,
        "rating": rating_of(&outcome.best),
        "imageUrl": file.map(|f| format!("/api/job/{job}/images/{f}")),
    })
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    app: &Arc<App>,
    id: &str,
    row: JobRow,
    checked: Checked,
    resumed: bool,
    cancel: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), crate::Error> {
    let config = app.config_for(&checked);
    let factory = app.stack.factory_for(config);
    let hybrid = checked.deadline.map(|deadline| Hybrid {
        deadline,
        turnaround: Turnaround::default(),
    });
    let mut engines = Engines::from_factory(&factory, hybrid)?;
    engines.priced_by(&app.pricing);
    let now = providers::now_ms();
    let search = match &row.session_id {
        Some(session) => {
            if let Some(outcome) = BeamSearch::finished(session, &app.sessions).await? {
                return finish(app, id, &outcome).await;
            }
            BeamSearch::resume(session, engines, app.sessions.clone()).await?
        }
        None => {
            BeamSearch::start(
                checked.params.clone(),
                engines,
                app.sessions.clone(),
                &app.sessions_dir,
            )
            .await?
        }
    };
    let mut search = search.with_pricing(app.pricing.clone());
    if let Some(d) = checked.deadline {
        let elapsed = Duration::from_millis(u64::try_from(now - row.created_at_ms).unwrap_or(0));
        search = search.with_deadline(d.saturating_sub(elapsed).max(Duration::from_secs(1)));
    }
    let session = search.id().to_owned();
    let stages = i64::try_from(search.params().stage_count()).unwrap_or(0);
    let Some(_) = update(app, id, |r| {
        r.status = JobStatus::Running;
        r.session_id = Some(session.clone());
        r.stages = stages;
        r.started_at_ms.get_or_insert(now);
        r.owner = Some(app.owner.clone());
        // From now, not from before the resume: that may have taken a while.
        r.lease_until = Some(providers::now_ms().saturating_add(app.lease_ms()));
    })
    .await?
    else {
        return Ok(());
    };
    let kind = if resumed {
        "job_resumed"
    } else {
        "job_started"
    };
    app.events
        .publish(
            id,
            kind,
            map_of(json!({"sessionId": session, "stages": stages})),
        )
        .await?;
    let mut progress = search.progress().subscribe();
    // The search runs in a task of its own, so that it goes on while this loop stores its
    // events and renews the lease. Polled from here instead, it would stand still during each
    // of those writes, holding the connection of any query it had begun: with as many jobs
    // as connections, every job then waited for one another job held, until the pool's
    // acquire timeout (seen with 16 workers an instance). Dropping the handle (any return)
    // drops the search, as when it was polled here.
    let mut run = AbortOnDropHandle::new(tokio::spawn(search.run()));
    let mut listening = true;
    let mut heartbeat = tokio::time::interval(app.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                let until = providers::now_ms().saturating_add(app.lease_ms());
                if !app.jobs.renew(id, &app.owner, until).await? {
                    // Cancelled (on any instance) or taken over: this run stops here.
                    tracing::info!(job = %id, "job no longer held here: stopping its run");
                    return Ok(());
                }
            }
            outcome = &mut run => {
                // Events sent before the end, not yet read.
                while let Ok(event) = progress.try_recv() {
                    on_progress(app, id, &session, &event).await?;
                }
                return match outcome {
                    Ok(Ok(outcome)) => finish(app, id, &outcome).await,
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(crate::Error::Internal(format!("the search's task: {e}"))),
                };
            }
            event = progress.recv(), if listening => match event {
                Ok(event) => {
                    on_progress(app, id, &session, &event).await?;
                    if matches!(event, ProgressEvent::BatchSubmitted { .. }) {
                        let wait = app.stack.session_wait(&session).await?;
                        let parked = checked.wait == WaitMode::Deferred && !wait.keys.is_empty();
                        let batch_ids = wait.batch_ids.clone();
                        let updated = update(app, id, |r| {
                            for b in &batch_ids {
                                if !r.batch_ids.contains(b) {
                                    r.batch_ids.push(b.clone());
                                }
                            }
                            r.batch_id = batch_ids.first().cloned();
                            if parked {
                                r.status = JobStatus::Waiting;
                                r.wait_keys = wait.keys.clone();
                                r.owner = None;
                                r.lease_until = None;
                            }
                        })
                        .await?;
                        if updated.is_none() {
                            return Ok(());
                        }
                        if parked {
                            app.events
                                .publish(
                                    id,
                                    "job_waiting",
                                    map_of(json!({"batchIds": wait.batch_ids, "requests": wait.keys.len()})),
                                )
                                .await?;
                            // The waiter looks at it on its next pass: its batches may
                            // have settled before it was parked.
                            app.parked
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(id.to_owned());
                            // Dropping the search here is safe: its calls are in the queue's
                            // database and its stages checkpointed; a resume attaches to them.
                            return Ok(());
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => listening = false,
            },
            () = stopped(cancel) => return Ok(()),
            () = stopped(stop) => {
                // Shutting down: the job goes back to the queue on the next start.
                let _ = update(app, id, |r| {
                    r.status = JobStatus::Queued;
                    r.owner = None;
                    r.lease_until = None;
                })
                .await;
                return Ok(());
            }
        }
    }
}

/// Stores and forwards a progress event, and moves the job's counters.
async fn on_progress(
    app: &App,
    id: &str,
    _session: &str,
    event: &ProgressEvent,
) -> Result<(), crate::Error> {
    app.events.progress(id, event).await?;
    match event {
        ProgressEvent::StageStarted { iteration, .. } => {
            let it = i64::from(*iteration);
            update(app, id, |r| r.iteration = it).await?;
        }
        ProgressEvent::StageFinished {
            index, batch_ids, ..
        } => {
            let done = i64::try_from(*index).unwrap_or(0) + 1;
            let batch_ids = batch_ids.clone();
            update(app, id, |r| {
                r.stage = r.stage.max(done);
                for b in batch_ids {
                    if !r.batch_ids.contains(&b) {
                        r.batch_ids.push(b);
                    }
                }
                r.batch_id = None;
                r.lease_until = Some(providers::now_ms().saturating_add(app.lease_ms()));
            })
            .await?;
        }
        ProgressEvent::IterationJudged { best_id, .. } => {
            let best = best_id.clone();
            let session = _session.to_owned();
            let candidate = match app.sessions.session(&session).await? {
                Some(row) => row
                    .search_state()
                    .ok()
                    .and_then(|s| s.candidates.into_iter().find(|c| c.id == best)),
                None => None,
            };
            if let Some(c) = candidate {
                let file = c
                    .image
                    .as_deref()
                    .map(|i| i.rsplit('/').next().unwrap_or(i).to_owned());
                let value = json!({"id": c.id, "prompt": c.combined, "rating": rating_of(&c),
                    "imageUrl": file.map(|f| format!("/api/job/{id}/images/{f}"))});
                update(app, id, |r| r.best = Some(value)).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

async fn finish(app: &App, id: &str, outcome: &SessionOutcome) -> Result<(), crate::Error> {
    let best = best_json(id, outcome);
    let total = &outcome.report.total;
    let cost = json!({"total": total.cost, "allStandard": total.standard_cost,
        "saved": total.standard_cost - total.cost,
        "forecast": outcome.forecast.as_ref().map(|f| f.cost),
        "stopped": outcome.stopped});
    let now = providers::now_ms();
    let (b, c) = (best.clone(), cost.clone());
    let stages = i64::try_from(outcome.stages.len()).unwrap_or(0);
    if update(app, id, |r| {
        r.status = JobStatus::Completed;
        r.best = Some(b);
        r.cost = Some(c);
        r.stage = stages;
        r.stages = stages;
        r.batch_id = None;
        r.wait_keys.clear();
        r.finished_at_ms = Some(now);
        r.owner = None;
        r.lease_until = None;
    })
    .await?
    .is_some()
    {
        app.events
            .publish(
                id,
                "job_finished",
                map_of(json!({"best": best, "cost": cost})),
            )
            .await?;
    }
    Ok(())
}
