//! The batch lifecycle on the simulated clock.
//!
//! Each batch has a schedule fixed when it is created (validation, queue, one finish time per
//! request, finalizing), so its state is a function of the clock. [`Engine::advance_all`] brings
//! every batch up to a given time, processing validations in time order (they are the only
//! events where batches affect each other, through enqueued-token limits) and running each
//! request line through the models when its finish time passes. It is called on every read and
//! by one background tick; nothing runs per request.

pub(crate) mod object;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

use batch_format::{Endpoint, ValidationOptions};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::clock::secs;
use crate::faults::BatchOutcome;
use crate::files::THIRTY_DAYS;
use crate::jsonfmt::write_python_line;
use crate::state::{Sim, lock};
use crate::stats::{BatchStats, RequestStats};
use object::{
    BatchObject, ErrorItem, ErrorList, LineError, LineResponse, Metadata, OutputLine,
    RequestCounts, UsageObject,
};

/// The completion window, the only one the API accepts.
pub(crate) const WINDOW_SECS: i64 = 86_400;

const EXPIRED_MESSAGE: &str =
    "This request could not be executed before the completion window expired.";
const CANCELLED_MESSAGE: &str = "This request was cancelled before it could be executed.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not validated yet.
    Validating,
    /// Validated and waiting in the queue (shown as `validating`).
    Queued,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Phase {
    fn status(self) -> &'static str {
        match self {
            Phase::Validating | Phase::Queued => "validating",
            Phase::InProgress => "in_progress",
            Phase::Finalizing => "finalizing",
            Phase::Completed => "completed",
            Phase::Failed => "failed",
            Phase::Expired => "expired",
            Phase::Cancelling => "cancelling",
            Phase::Cancelled => "cancelled",
        }
    }

    /// Whether the batch's tokens count against its model's enqueued-token limit.
    fn holds_tokens(self) -> bool {
        matches!(self, Phase::Queued | Phase::InProgress)
    }
}

/// What a cancel request found.
#[derive(Debug)]
pub(crate) enum CancelOutcome {
    /// The batch is (now or already) cancelling or cancelled.
    Ok,
    /// The batch cannot be cancelled in this status.
    Conflict(&'static str),
    NotFound,
}

/// A JSONL spool that becomes an output or error file.
#[derive(Debug)]
struct Spool {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    lines: u64,
}

impl Spool {
    fn new(path: PathBuf) -> Spool {
        Spool {
            path,
            writer: None,
            lines: 0,
        }
    }

    fn write<T: serde::Serialize>(&mut self, line: &T) -> std::io::Result<()> {
        if self.writer.is_none() {
            self.writer = Some(BufWriter::new(File::create(&self.path)?));
        }
        if let Some(w) = self.writer.as_mut() {
            write_python_line(w, line)?;
        }
        self.lines += 1;
        Ok(())
    }

    /// Flushes and returns the path and size, or `None` when nothing was written.
    fn close(&mut self) -> std::io::Result<Option<(PathBuf, u64)>> {
        match self.writer.take() {
            None => Ok(None),
            Some(mut w) => {
                w.flush()?;
                drop(w);
                let len = std::fs::metadata(&self.path)?.len();
                Ok(Some((self.path.clone(), len)))
            }
        }
    }
}

/// The running part of a validated batch.
#[derive(Debug)]
struct Run {
    input: BufReader<File>,
    offsets: Vec<u64>,
    /// Execution order: a seeded shuffle of the line indices.
    order: Vec<u32>,
    /// Precise simulated time the batch went `in_progress`.
    start: f64,
    /// Lines of `order` run so far, and whether each one succeeded.
    outcomes: Vec<bool>,
    /// How many lines will ever run (fewer for forced stall or expire).
    cap: usize,
    out: Spool,
    err: Spool,
}

#[derive(Debug)]
struct BatchRec {
    id: String,
    seq: u64,
    endpoint: Endpoint,
    input_file_id: String,
    metadata: Option<Metadata>,
    created: f64,
    created_at: i64,
    expires_at: i64,
    forced: Option<BatchOutcome>,
    output_ttl: Option<i64>,
    phase: Phase,
    in_progress_at: Option<i64>,
    finalizing_at: Option<i64>,
    completed_at: Option<i64>,
    failed_at: Option<i64>,
    expired_at: Option<i64>,
    cancelling_at: Option<i64>,
    cancelled_at: Option<i64>,
    cancel_time: Option<f64>,
    errors: Option<Vec<ErrorItem>>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    input_model: Option<String>,
    resolved_model: Option<String>,
    tokens: u64,
    total: u64,
    input_tokens: u64,
    output_tokens: u64,
    executed: u64,
    billed: u64,
    /// The custom id of every line run so far, and whether it was billed.
    lines_run: Vec<(String, bool)>,
    /// Final `(completed, failed)` once the batch has ended.
    finals: Option<(u64, u64)>,
    run: Option<Run>,
}

/// Every batch, and the logic that moves them along.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    batches: HashMap<String, BatchRec>,
    seq: u64,
}

/// What `POST /v1/batches` passes once its parameters are valid.
#[derive(Debug)]
pub(crate) struct NewBatch {
    pub(crate) endpoint: Endpoint,
    pub(crate) input_file_id: String,
    pub(crate) metadata: Option<Metadata>,
    pub(crate) forced: Option<BatchOutcome>,
    /// Seconds the output and error files live (`output_expires_after.seconds`).
    pub(crate) output_ttl: Option<i64>,
}

impl Engine {
    /// Creates a batch in `validating` at simulated time `now`; returns its id.
    pub(crate) fn create(&mut self, sim: &Sim, new: NewBatch, now: f64) -> String {
        self.seq += 1;
        let created_at = secs(now);
        let id = loop {
            let id = lock(&sim.ids).batch(created_at);
            if !self.batches.contains_key(&id) {
                break id;
            }
        };
        let rec = BatchRec {
            id: id.clone(),
            seq: self.seq,
            endpoint: new.endpoint,
            input_file_id: new.input_file_id,
            metadata: new.metadata,
            created: now,
            created_at,
            expires_at: created_at + WINDOW_SECS,
            forced: new.forced,
            output_ttl: new.output_ttl,
            phase: Phase::Validating,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            cancel_time: None,
            errors: None,
            output_file_id: None,
            error_file_id: None,
            input_model: None,
            resolved_model: None,
            tokens: 0,
            total: 0,
            input_tokens: 0,
            output_tokens: 0,
            executed: 0,
            billed: 0,
            lines_run: Vec::new(),
            finals: None,
            run: None,
        };
        self.batches.insert(id.clone(), rec);
        id
    }

    /// Brings every batch up to simulated time `now`.
    pub(crate) fn advance_all(&mut self, sim: &Sim, now: f64) {
        loop {
            let next = self
                .batches
                .values()
                .filter(|b| b.phase == Phase::Validating && validate_at(sim, b) <= now)
                .min_by(|a, b| {
                    validate_at(sim, a)
                        .total_cmp(&validate_at(sim, b))
                        .then(a.seq.cmp(&b.seq))
                })
                .map(|b| (b.id.clone(), validate_at(sim, b)));
            let Some((id, at)) = next else { break };
            for b in self.batches.values_mut() {
                if b.id != id {
                    b.advance(sim, at);
                }
            }
            self.validate(sim, &id, at);
        }
        for b in self.batches.values_mut() {
            b.advance(sim, now);
        }
    }

    fn validate(&mut self, sim: &Sim, id: &str, at: f64) {
        let Some(b) = self.batches.get(id) else {
            return;
        };
        let result = check_input(sim, b);
        let enqueued: u64 = match &result {
            Ok(v) => self
                .batches
                .values()
                .filter(|o| o.id != id && o.phase.holds_tokens())
                .filter(|o| o.input_model.is_some() && o.input_model == v.model)
                .map(|o| o.tokens)
                .sum(),
            Err(_) => 0,
        };
        let Some(b) = self.batches.get_mut(id) else {
            return;
        };
        match result {
            Err(errors) => b.fail(at, errors),
            Ok(v) => {
                b.input_model = v.model.clone();
                b.tokens = v.tokens;
                let limit = v.model.as_deref().and_then(|m| sim.config.token_limit(m));
                let forced = b.forced == Some(BatchOutcome::TokenLimit);
                // A forced refusal names the configured limit, else one just below what it asks.
                let limit = limit.or(forced.then_some(enqueued + v.tokens.saturating_sub(1)));
                let model = v.model.as_deref().unwrap_or("gpt-4o-mini");
                if let Some(limit) = limit
                    && (forced || (v.model.is_some() && enqueued + v.tokens > limit))
                {
                    let message = format!(
                        "Enqueued token limit reached for {model} in organization {}. Limit: {} enqueued tokens. Please try again once some in_progress batches have been completed.",
                        sim.config.organization,
                        thousands(limit)
                    );
                    b.fail(
                        at,
                        vec![ErrorItem {
                            code: "token_limit_exceeded".to_owned(),
                            message,
                            param: None,
                            line: None,
                        }],
                    );
                    return;
                }
                let n = v.offsets.len();
                let mut order: Vec<u32> = (0..n as u32).collect();
                let mut rng = ChaCha8Rng::seed_from_u64(sim.config.seed ^ fnv(&b.id));
                order.shuffle(&mut rng);
                if n > 1 && order.iter().enumerate().all(|(i, &x)| i as u32 == x) {
                    order.rotate_left(1);
                }
                let cap = match b.forced {
                    Some(BatchOutcome::Stall) => 0,
                    Some(BatchOutcome::Expire | BatchOutcome::Cancel) => n / 2,
                    _ => n,
                };
                let dir = lock(&sim.files).dir().to_owned();
                b.total = n as u64;
                b.run = Some(Run {
                    input: BufReader::new(v.file),
                    offsets: v.offsets,
                    order,
                    start: at + sim.config.timing.queue_secs,
                    outcomes: Vec::with_capacity(n),
                    cap,
                    out: Spool::new(dir.join(format!("{}.output.part", b.id))),
                    err: Spool::new(dir.join(format!("{}.error.part", b.id))),
                });
                b.phase = Phase::Queued;
            }
        }
    }

    /// The API object of batch `id`.
    pub(crate) fn object_json(
        &self,
        sim: &Sim,
        id: &str,
        now: f64,
        pretty: bool,
    ) -> Option<String> {
        let b = self.batches.get(id)?;
        Some(b.to_json(sim, now, pretty))
    }

    /// Moves a batch to `cancelling` (the caller advanced everything to `now` first).
    pub(crate) fn cancel(&mut self, id: &str, now: f64) -> CancelOutcome {
        let Some(b) = self.batches.get_mut(id) else {
            return CancelOutcome::NotFound;
        };
        match b.phase {
            Phase::Validating | Phase::Queued | Phase::InProgress | Phase::Finalizing => {
                b.phase = Phase::Cancelling;
                b.cancelling_at = Some(secs(now));
                b.cancel_time = Some(now);
                CancelOutcome::Ok
            }
            Phase::Cancelling | Phase::Cancelled => CancelOutcome::Ok,
            Phase::Completed | Phase::Failed | Phase::Expired => {
                CancelOutcome::Conflict(b.phase.status())
            }
        }
    }

    /// One page of batches, newest first, as JSON objects; plus whether more follow.
    pub(crate) fn list_json(
        &self,
        sim: &Sim,
        after: Option<&str>,
        limit: usize,
        now: f64,
    ) -> (Vec<(String, String)>, bool) {
        let mut all: Vec<&BatchRec> = self.batches.values().collect();
        all.sort_by_key(|b| std::cmp::Reverse(b.seq));
        let start = match after {
            Some(a) => all
                .iter()
                .position(|b| b.id == a)
                .map_or(all.len(), |i| i + 1),
            None => 0,
        };
        let rest = &all[start..];
        let page = rest
            .iter()
            .take(limit)
            .map(|b| (b.id.clone(), b.to_json(sim, now, false)))
            .collect();
        (page, rest.len() > limit)
    }

    /// Per custom id, over every batch: lines run and billed, for `/sim/stats/requests`.
    pub(crate) fn request_stats(&self) -> BTreeMap<String, RequestStats> {
        let mut by_id: BTreeMap<String, RequestStats> = BTreeMap::new();
        for b in self.batches.values() {
            for (id, billed) in &b.lines_run {
                let s = by_id.entry(id.clone()).or_default();
                s.executed += 1;
                s.billed += u64::from(*billed);
                s.batches.push(b.id.clone());
            }
        }
        by_id
    }

    /// Per-batch counters for `/sim/stats`.
    pub(crate) fn stats(&self) -> Vec<(String, BatchStats)> {
        let mut v: Vec<&BatchRec> = self.batches.values().collect();
        v.sort_by_key(|b| b.seq);
        v.into_iter()
            .map(|b| {
                let s = BatchStats {
                    status: b.phase.status().to_owned(),
                    total: b.total,
                    estimated_tokens: b.tokens,
                    requests_executed: b.executed,
                    requests_billed: b.billed,
                    input_tokens: b.input_tokens,
                    output_tokens: b.output_tokens,
                };
                (b.id.clone(), s)
            })
            .collect()
    }
}

fn validate_at(sim: &Sim, b: &BatchRec) -> f64 {
    b.created + sim.config.timing.validating_secs
}

/// What a successful validation hands over.
struct Validated {
    file: File,
    offsets: Vec<u64>,
    model: Option<String>,
    tokens: u64,
}

/// Validates the input file of `b`; `Err` holds the `errors.data[]` entries.
fn check_input(sim: &Sim, b: &BatchRec) -> Result<Validated, Vec<ErrorItem>> {
    let one = |code: &str, message: String, param: Option<&str>| {
        vec![ErrorItem {
            code: code.to_owned(),
            message,
            param: param.map(str::to_owned),
            line: None,
        }]
    };
    if b.forced == Some(BatchOutcome::Fail) {
        return Err(one(
            "server_error",
            "The batch could not be processed because of an internal error. Please try again."
                .to_owned(),
            None,
        ));
    }
    let not_found = || {
        one(
            "invalid_request",
            format!(
                "Cannot find file {}, or organization {} does not have access to it.",
                b.input_file_id, sim.config.organization
            ),
            Some("file_id"),
        )
    };
    let path = {
        let files = lock(&sim.files);
        match files.get(&b.input_file_id, secs(b.created)) {
            Some(f) if f.purpose == "batch" => files.path_of(&f.id),
            Some(f) => {
                return Err(one(
                    "invalid_request",
                    format!(
                        "The input file {} has purpose '{}'; a batch input file must have purpose 'batch'.",
                        f.id, f.purpose
                    ),
                    Some("input_file_id"),
                ));
            }
            None => return Err(not_found()),
        }
    };
    let file = File::open(&path).map_err(|_| not_found())?;
    let opts = ValidationOptions {
        max_lines: sim.config.max_batch_lines as u64,
        max_bytes: sim.config.max_batch_file_bytes,
        expected_endpoint: Some(b.endpoint),
        known_models: sim
            .config
            .known_models
            .as_ref()
            .map(|m| m.iter().cloned().collect()),
        estimate_tokens: true,
        // OpenAI documents no limit per line: a line may be as long as the file may be.
        max_line_bytes: usize::try_from(sim.config.max_batch_file_bytes).unwrap_or(usize::MAX),
    };
    let mut problems = Vec::new();
    let summary = batch_format::validate_jsonl(BufReader::new(&file), &opts, |p| {
        problems.push(ErrorItem {
            code: p.code.as_str().to_owned(),
            message: p.message,
            param: p.param,
            line: p.line,
        })
    });
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("reading batch input {}: {e}", path.display());
            return Err(not_found());
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let offsets = line_offsets(&file).map_err(|_| not_found())?;
    if opts.known_models.is_none()
        && summary
            .model
            .as_deref()
            .is_some_and(|m| !crate::models::Models::knows(m))
    {
        // The Batch API refuses unknown models at validation, one entry per line.
        let opts = ValidationOptions {
            known_models: Some(Default::default()),
            estimate_tokens: false,
            ..opts
        };
        let mut problems = Vec::new();
        let read = File::open(&path).and_then(|f| {
            batch_format::validate_jsonl(BufReader::new(f), &opts, |p| {
                problems.push(ErrorItem {
                    code: p.code.as_str().to_owned(),
                    message: p.message,
                    param: p.param,
                    line: p.line,
                })
            })
            .map_err(std::io::Error::other)
        });
        if read.is_ok() && !problems.is_empty() {
            return Err(problems);
        }
    }
    Ok(Validated {
        file,
        offsets,
        model: summary.model,
        tokens: summary.estimated_tokens,
    })
}

/// Byte offsets of the non-blank lines of `file`.
fn line_offsets(file: &File) -> std::io::Result<Vec<u64>> {
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(0))?;
    let mut offsets = Vec::new();
    let mut buf = Vec::new();
    let mut pos = 0u64;
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.iter().any(|c| !c.is_ascii_whitespace()) {
            offsets.push(pos);
        }
        pos += n as u64;
    }
    Ok(offsets)
}

impl BatchRec {
    fn fail(&mut self, at: f64, errors: Vec<ErrorItem>) {
        self.phase = Phase::Failed;
        self.failed_at = Some(secs(at));
        self.errors = Some(errors);
    }

    fn finish_time(&self, sim: &Sim, run: &Run, k: usize) -> f64 {
        let t = &sim.config.timing;
        let _ = self;
        run.start + t.work_base_secs + k as f64 * t.per_request_secs
    }

    /// Moves this batch along up to `now`; stops at `Validating` (see `Engine::advance_all`).
    fn advance(&mut self, sim: &Sim, now: f64) {
        let expires = self.expires_at as f64;
        loop {
            match self.phase {
                Phase::Validating
                | Phase::Completed
                | Phase::Failed
                | Phase::Expired
                | Phase::Cancelled => return,
                Phase::Queued => {
                    let Some(start) = self.run.as_ref().map(|r| r.start) else {
                        return;
                    };
                    if start >= expires && now >= expires {
                        self.end(sim, Phase::Expired, expires);
                    } else if now >= start {
                        self.phase = Phase::InProgress;
                        self.in_progress_at = Some(secs(start));
                    } else {
                        return;
                    }
                }
                Phase::InProgress => {
                    let until = now.min(expires);
                    self.run_lines(sim, until);
                    let Some(run) = self.run.as_ref() else { return };
                    let n = run.offsets.len();
                    let done = run.outcomes.len();
                    if self.forced == Some(BatchOutcome::Cancel) && done >= run.cap {
                        // Cancelled on OpenAI's side once the lines it lets run have run.
                        let at = match run.cap {
                            0 => run.start,
                            cap => self.finish_time(sim, run, cap - 1),
                        };
                        if at <= until {
                            self.phase = Phase::Cancelling;
                            self.cancelling_at = Some(secs(at));
                            self.cancel_time = Some(at);
                            continue;
                        }
                    }
                    let last = if n == 0 {
                        run.start + sim.config.timing.work_base_secs
                    } else {
                        self.finish_time(sim, run, n - 1)
                    };
                    if done == n && last <= now && last <= expires {
                        self.phase = Phase::Finalizing;
                        self.finalizing_at = Some(secs(last));
                    } else if now >= expires {
                        self.end(sim, Phase::Expired, expires);
                    } else {
                        return;
                    }
                }
                Phase::Finalizing => {
                    let Some(run) = self.run.as_ref() else { return };
                    let n = run.offsets.len();
                    let last = if n == 0 {
                        run.start + sim.config.timing.work_base_secs
                    } else {
                        self.finish_time(sim, run, n - 1)
                    };
                    let at = last + sim.config.timing.finalizing_secs;
                    if now >= at {
                        self.end(sim, Phase::Completed, at);
                    } else {
                        return;
                    }
                }
                Phase::Cancelling => {
                    let at = self.cancel_time.unwrap_or(now) + sim.config.timing.cancelling_secs;
                    if now >= at {
                        self.end(sim, Phase::Cancelled, at);
                    } else {
                        return;
                    }
                }
            }
        }
    }

    /// Runs every line whose finish time is at or before `until`.
    fn run_lines(&mut self, sim: &Sim, until: f64) {
        loop {
            let Some(run) = self.run.as_ref() else { return };
            let k = run.outcomes.len();
            if k >= run.cap || k >= run.order.len() || self.finish_time(sim, run, k) > until {
                return;
            }
            let at = self.finish_time(sim, run, k);
            if let Err(e) = self.run_line(sim, k, at) {
                tracing::error!("batch {}: running line {k}: {e}", self.id);
                if let Some(run) = self.run.as_mut() {
                    run.outcomes.push(false);
                }
            }
        }
    }

    fn read_line(run: &mut Run, k: usize) -> std::io::Result<Value> {
        let idx = run.order[k] as usize;
        run.input.seek(SeekFrom::Start(run.offsets[idx]))?;
        let mut buf = Vec::new();
        run.input.read_until(b'\n', &mut buf)?;
        serde_json::from_slice(&buf).map_err(std::io::Error::other)
    }

    fn run_line(&mut self, sim: &Sim, k: usize, at: f64) -> std::io::Result<()> {
        let endpoint = self.endpoint;
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let line = Self::read_line(run, k)?;
        let custom_id = line.get("custom_id").cloned().unwrap_or(Value::Null);
        let body = line.get("body").cloned().unwrap_or(Value::Null);
        let reply = sim
            .models
            .execute_at(endpoint, &body, secs(at).max(0) as u64);
        let (line_id, request_id) = {
            let mut ids = lock(&sim.ids);
            (ids.batch_request(secs(at)), ids.line_request_id())
        };
        let out = OutputLine {
            id: &line_id,
            custom_id: &custom_id,
            response: Some(LineResponse {
                status_code: reply.status,
                request_id: &request_id,
                body: crate::error::ReplyBody(&reply.body),
            }),
            error: None,
        };
        let ok = reply.status == 200;
        if ok {
            run.out.write(&out)?;
        } else {
            run.err.write(&out)?;
        }
        run.outcomes.push(ok);
        let id = match &custom_id {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        self.lines_run.push((id, ok));
        self.executed += 1;
        if ok {
            self.billed += 1;
            self.input_tokens += reply.input_tokens;
            self.output_tokens += reply.output_tokens;
            if self.resolved_model.is_none() {
                self.resolved_model = reply
                    .body
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
        }
        Ok(())
    }

    /// Ends the batch in `phase` at time `at`: writes an error line for every request that never
    /// ran (expired or cancelled) and publishes the output and error files.
    fn end(&mut self, sim: &Sim, phase: Phase, at: f64) {
        let stamp = Some(secs(at));
        match phase {
            Phase::Completed => self.completed_at = stamp,
            Phase::Expired => self.expired_at = stamp,
            Phase::Cancelled => self.cancelled_at = stamp,
            _ => {}
        }
        self.phase = phase;
        let Some(mut run) = self.run.take() else {
            return;
        };
        let (code, message) = match phase {
            Phase::Expired => ("batch_expired", EXPIRED_MESSAGE),
            _ => ("batch_cancelled", CANCELLED_MESSAGE),
        };
        for k in run.outcomes.len()..run.order.len() {
            let line = match Self::read_line(&mut run, k) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!("batch {}: reading line {k}: {e}", self.id);
                    continue;
                }
            };
            let custom_id = line.get("custom_id").cloned().unwrap_or(Value::Null);
            let line_id = lock(&sim.ids).batch_request(secs(at));
            let out = OutputLine {
                id: &line_id,
                custom_id: &custom_id,
                response: None,
                error: Some(LineError { code, message }),
            };
            if let Err(e) = run.err.write(&out) {
                tracing::error!("batch {}: writing error file: {e}", self.id);
            }
        }
        let created_at = secs(at);
        let publish = |spool: &mut Spool, kind: &str| -> Option<String> {
            let (path, len) = match spool.close() {
                Ok(Some(p)) => p,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!("batch {}: closing {kind} file: {e}", self.id);
                    return None;
                }
            };
            let id = lock(&sim.ids).file();
            let mut files = lock(&sim.files);
            if let Err(e) = std::fs::rename(&path, files.path_of(&id)) {
                tracing::error!("batch {}: storing {kind} file: {e}", self.id);
                return None;
            }
            files.insert(
                id.clone(),
                "batch_output",
                &format!("{}_{kind}.jsonl", self.id),
                len,
                created_at,
                Some(created_at + self.output_ttl.unwrap_or(THIRTY_DAYS)),
            );
            Some(id)
        };
        self.output_file_id = publish(&mut run.out, "output");
        self.error_file_id = publish(&mut run.err, "error");
        let completed = run.outcomes.iter().filter(|ok| **ok).count() as u64;
        self.finals = Some((completed, run.outcomes.len() as u64 - completed));
    }

    fn counts(&self, sim: &Sim, now: f64) -> RequestCounts {
        if let Some((completed, failed)) = self.finals {
            return RequestCounts {
                total: self.total,
                completed,
                failed,
            };
        }
        let Some(run) = self.run.as_ref() else {
            return RequestCounts {
                total: self.total,
                ..RequestCounts::default()
            };
        };
        let visible = match self.phase {
            Phase::Validating | Phase::Queued | Phase::Failed => return RequestCounts::default(),
            Phase::InProgress => {
                let t = &sim.config.timing;
                let step = t.progress_step_secs;
                let boundary = if step > 0.0 {
                    run.start + ((now - run.start) / step).floor() * step
                } else {
                    now
                };
                let first = run.start + t.work_base_secs;
                let finished = if boundary < first {
                    0
                } else if t.per_request_secs > 0.0 {
                    ((boundary - first) / t.per_request_secs).floor() as usize + 1
                } else {
                    usize::MAX
                };
                finished.min(run.outcomes.len())
            }
            _ => run.outcomes.len(),
        };
        let completed = run.outcomes[..visible].iter().filter(|ok| **ok).count() as u64;
        RequestCounts {
            total: self.total,
            completed,
            failed: visible as u64 - completed,
        }
    }

    fn to_json(&self, sim: &Sim, now: f64, pretty: bool) -> String {
        let terminal_or_late = matches!(
            self.phase,
            Phase::Finalizing
                | Phase::Completed
                | Phase::Expired
                | Phase::Cancelled
                | Phase::Cancelling
        );
        let model = match self.phase {
            Phase::Validating | Phase::Queued => None,
            _ if terminal_or_late && self.billed > 0 => self
                .resolved_model
                .clone()
                .or_else(|| self.input_model.as_deref().map(snapshot_of)),
            _ => self.input_model.clone(),
        };
        let usage = if terminal_or_late {
            UsageObject::new(self.input_tokens, self.output_tokens)
        } else {
            UsageObject::new(0, 0)
        };
        let obj = BatchObject {
            id: &self.id,
            object: "batch",
            endpoint: self.endpoint.as_str(),
            model: model.as_deref(),
            errors: self.errors.as_deref().map(|data| ErrorList {
                object: "list",
                data,
            }),
            input_file_id: &self.input_file_id,
            completion_window: "24h",
            status: self.phase.status(),
            output_file_id: self.output_file_id.as_deref(),
            error_file_id: self.error_file_id.as_deref(),
            created_at: self.created_at,
            in_progress_at: self.in_progress_at,
            expires_at: self.expires_at,
            finalizing_at: self.finalizing_at,
            completed_at: self.completed_at,
            failed_at: self.failed_at,
            expired_at: self.expired_at,
            cancelling_at: self.cancelling_at,
            cancelled_at: self.cancelled_at,
            request_counts: self.counts(sim, now),
            usage,
            metadata: self.metadata.as_ref(),
        };
        let text = if pretty {
            serde_json::to_string_pretty(&obj)
        } else {
            serde_json::to_string(&obj)
        };
        text.unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The dated snapshot a model alias resolves to, for the models the simulator knows by name.
pub(crate) fn snapshot_of(model: &str) -> String {
    let dated = match model {
        "gpt-4o-mini" => "gpt-4o-mini-2024-07-18",
        "gpt-4o" => "gpt-4o-2024-08-06",
        "gpt-3.5-turbo" => "gpt-3.5-turbo-0125",
        "gpt-4.1" => "gpt-4.1-2025-04-14",
        "gpt-4.1-mini" => "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano" => "gpt-4.1-nano-2025-04-14",
        "gpt-5" => "gpt-5-2025-08-07",
        "gpt-5-mini" => "gpt-5-mini-2025-08-07",
        "gpt-5-nano" => "gpt-5-nano-2025-08-07",
        "o3" => "o3-2025-04-16",
        "o4-mini" => "o4-mini-2025-04-16",
        other => other,
    };
    dated.to_owned()
}

/// `2000000` -> `2,000,000`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// FNV-1a, to derive a per-batch shuffle seed from its id.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(2_000_000), "2,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }

    #[test]
    fn aliases_resolve_to_snapshots() {
        assert_eq!(snapshot_of("gpt-4o-mini"), "gpt-4o-mini-2024-07-18");
        assert_eq!(snapshot_of("my-model"), "my-model");
    }
}
