//! The call runner: one stage's calls, those checkpointed reused and the rest sent at once on
//! the stage's tier, with its barrier, each answer checkpointed as it comes, then priced; the
//! stage's record and progress events.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use batch_format::Usage;
use providers::{
    ChatRequest, CompareRequest, ImageRequest, JsonRequest, JudgeRequest, Operation, Tier,
    VisionJsonRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::components::seed_for;
use crate::cost::Call;
use crate::engines::Backend;
use crate::events::ProgressEvent;
use crate::params::StageKind;
use crate::ranker::VoteResult;
use crate::store::{StageRecord, now_ms};
use crate::{Error, Result};

use super::BeamSearch;

/// Synchronous calls in flight at once per stage (batch and simulated calls are not limited:
/// they only queue).
const SYNC_CONCURRENCY: usize = 16;

/// What one finished call left behind, as checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The operation it served.
    pub operation: Operation,
    /// The tier that carried it.
    pub tier: Tier,
    /// The tier first tried, when it fell back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<Tier>,
    /// The model that answered.
    pub model: String,
    /// Tokens billed (for a cached answer: what its first call was billed).
    pub usage: Usage,
    /// Whether the request cache answered it: nothing sent, nothing paid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// For renders: the size and quality asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<(Option<String>, Option<String>)>,
    /// The answer.
    pub payload: Payload,
}

/// A call's answer, in the form the search keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// A text answer.
    Text {
        /// The text.
        text: String,
    },
    /// A JSON answer.
    Json {
        /// The value.
        value: Value,
    },
    /// A rendered image, saved in the session folder.
    Image {
        /// The file, relative to the session folder.
        file: String,
        /// The prompt as the model rewrote it.
        revised_prompt: Option<String>,
    },
    /// A judge's vote.
    Vote {
        /// The vote in pool terms.
        vote: VoteResult,
    },
}

/// One call a stage makes.
#[derive(Debug, Clone)]
pub(super) enum Spec {
    Chat(ChatRequest),
    Json(JsonRequest),
    Image(ImageRequest, String),
    Judge(JudgeRequest),
    Compare(CompareRequest, bool),
    Vision(VisionJsonRequest),
}

/// Where a stage stands in the plan: what the call runner needs to know of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct StageCalls {
    /// Its place in the plan (0-based).
    pub(super) idx: usize,
    /// What it does.
    pub(super) kind: StageKind,
    /// Its iteration.
    pub(super) it: u32,
    /// Stages left to run, this one included (hybrid mode's share of the time left).
    pub(super) left: usize,
}

/// A call's answer as its stage sees it: the payload, or why there is none.
pub(super) type Outcome = std::result::Result<Payload, String>;

/// A stage's calls as they come back, in the order of its specs.
struct Answers {
    out: Vec<Option<Outcome>>,
    records: Vec<Option<CallRecord>>,
    /// The calls not answered from a checkpoint: sent in this run.
    fresh: Vec<usize>,
}

impl Answers {
    fn keep(&mut self, i: usize, record: CallRecord) {
        self.out[i] = Some(Ok(record.payload.clone()));
        self.records[i] = Some(record);
    }
}

impl BeamSearch {
    /// Runs one stage's calls: those checkpointed are reused, the rest sent all at once on the
    /// stage's tier (its barrier passed once every one of them is stored). Each result is
    /// checkpointed as it arrives, priced, and the stage's record and progress events written.
    /// A call's own failure is its `Err` (the stage decides what that means); a failure of the
    /// machinery is the stage's.
    pub(super) async fn run_calls(
        &mut self,
        at: &StageCalls,
        specs: &[(String, Spec)],
    ) -> Result<Vec<Outcome>> {
        let started = Instant::now();
        let started_ms = now_ms();
        let before = (self.store.stages(&self.id).await?)
            .into_iter()
            .find(|s| s.index == at.idx);
        let tier = self.stage_tier(at, before.as_ref());
        let mut answers = self.reuse_checkpointed(at, specs).await?;
        let reused = specs.len() - answers.fresh.len();
        let mut stage = StageRecord {
            index: at.idx,
            iteration: at.it,
            kind: at.kind.as_str().into(),
            tier: tier.as_str().into(),
            calls: specs.len(),
            reused,
            batch_ids: Vec::new(),
            started_at_ms: before.map_or(started_ms, |s| s.started_at_ms),
            finished_at_ms: None,
        };
        self.store.put_stage(&self.id, &stage).await?;
        self.progress.send(ProgressEvent::StageStarted {
            session: self.id.clone(),
            index: at.idx,
            iteration: at.it,
            stage: at.kind.as_str().into(),
            tier: tier.as_str().into(),
            calls: specs.len(),
            reused,
        });
        stage.batch_ids = self.send_fresh(at, tier, specs, &mut answers).await?;
        self.price(&answers.records);
        // A stage the request cache answered whole says nothing of how fast its tier is.
        let sent =
            (answers.fresh.iter()).any(|&i| answers.records[i].as_ref().is_none_or(|r| !r.cached));
        if sent {
            self.engines.observe(tier, started.elapsed());
        }
        self.finish_stage(at, stage, &answers.out, started).await?;
        Ok(answers
            .out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("never sent".to_owned())))
            .collect())
    }

    /// The stage's tier: the one its calls were sent on when a resumed stage has one this run
    /// offers, else the one the engines route its operation to now.
    fn stage_tier(&self, at: &StageCalls, before: Option<&StageRecord>) -> Tier {
        let op = at.kind.operation();
        let sent_on = before
            .and_then(|s| s.tier.parse::<Tier>().ok())
            .filter(|t| self.engines.offered(op).contains(t));
        sent_on.unwrap_or_else(|| {
            let left = self
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            self.engines.tier_for(op, left, at.left)
        })
    }

    /// The answers a checkpoint holds (an image's only while its file is there); the other
    /// calls are fresh.
    async fn reuse_checkpointed(
        &self,
        at: &StageCalls,
        specs: &[(String, Spec)],
    ) -> Result<Answers> {
        let mut answers = Answers {
            out: vec![None; specs.len()],
            records: vec![None; specs.len()],
            fresh: Vec::new(),
        };
        for (i, (name, _)) in specs.iter().enumerate() {
            let key = self.call_key(at.idx, name);
            if let Some(json) = self.store.call(&self.id, &key).await?
                && let Ok(record) = serde_json::from_str::<CallRecord>(&json)
                && self.still_there(&record.payload).await
            {
                answers.keep(i, record);
            } else {
                answers.fresh.push(i);
            }
        }
        Ok(answers)
    }

    /// Sends the fresh calls on `tier` (at most [`SYNC_CONCURRENCY`] at once on a synchronous
    /// tier), passes the tier's barrier once every call still out is stored, and checkpoints
    /// each answer as it comes. Returns the batches that carried them.
    async fn send_fresh(
        &mut self,
        at: &StageCalls,
        tier: Tier,
        specs: &[(String, Spec)],
        answers: &mut Answers,
    ) -> Result<Vec<String>> {
        let backend = self.engines.backend(tier)?.clone();
        let barrier = self.engines.barrier(tier)?.clone();
        let keys: Vec<(usize, String)> = (answers.fresh.iter())
            .map(|&i| (i, self.call_key(at.idx, &specs[i].0)))
            .collect();
        let mut pending: VecDeque<CallFuture> = keys
            .iter()
            .map(|(i, key)| {
                let name = &specs[*i].0;
                let seed = seed_for(self.params.seed, &format!("{}/{name}", at.idx));
                let spec = with_call(specs[*i].1.clone(), key.clone(), seed);
                call(backend.clone(), spec, *i, self.folder.clone())
            })
            .collect();
        let limit = if matches!(tier, Tier::Standard | Tier::Flex) {
            SYNC_CONCURRENCY
        } else {
            usize::MAX
        };
        let mut done = vec![false; specs.len()];
        let mut tally = Tally::new(specs.len(), specs.len() - keys.len());
        let mut flushed = !barrier.holds_calls() || keys.is_empty();
        // Each call is its own task, so that calls keep moving (and give back the database
        // connections they hold) while this loop stores a result; dropping the set (a session
        // stopped mid-stage) aborts them.
        let mut running = JoinSet::new();
        while running.len() < limit
            && let Some(f) = pending.pop_front()
        {
            running.spawn(f);
        }
        while !running.is_empty() {
            // Asked again after every finished call: one that ended before it was stored
            // (an error, or an answer already in the queue) is no longer waited for.
            let unstored: Vec<String> = (keys.iter())
                .filter(|(i, _)| !done[*i])
                .map(|(_, k)| k.clone())
                .collect();
            tokio::select! {
                Some(joined) = running.join_next() => {
                    let (i, result) = joined.map_err(|e| Error::Stage {
                        stage: at.kind.as_str().into(),
                        iteration: at.it,
                        problem: format!("a call's task failed: {e}"),
                    })?;
                    done[i] = true;
                    if let Some(f) = pending.pop_front() {
                        running.spawn(f);
                    }
                    self.store_answer(at, &specs[i].0, i, result, answers).await?;
                    if let Some(done) = tally.one_more() {
                        self.progress.send(ProgressEvent::CallsDone {
                            session: self.id.clone(),
                            index: at.idx,
                            done,
                            total: specs.len(),
                        });
                    }
                }
                stored = barrier.stored(&unstored), if !flushed => {
                    stored?;
                    barrier.flush().await?;
                    flushed = true;
                    self.progress.send(ProgressEvent::BatchSubmitted {
                        session: self.id.clone(),
                        index: at.idx,
                        requests: unstored.len(),
                    });
                }
            }
        }
        let keys: Vec<String> = keys.into_iter().map(|(_, k)| k).collect();
        Ok(barrier.batches(&keys).await)
    }

    /// Checkpoints a call's answer, or notes its failure.
    async fn store_answer(
        &mut self,
        at: &StageCalls,
        name: &str,
        i: usize,
        result: Result<CallRecord>,
        answers: &mut Answers,
    ) -> Result<()> {
        match result {
            Ok(record) => {
                let key = self.call_key(at.idx, name);
                let json = serde_json::to_string(&record).map_err(Error::Encode)?;
                let (op, tier) = (at.kind.operation(), record.tier);
                (self.store)
                    .put_call(&self.id, &key, op.as_str(), tier.as_str(), &json)
                    .await?;
                answers.keep(i, record);
            }
            Err(e) => {
                tracing::warn!(session = %self.id, stage = %at.kind, call = %name, error = %e, "call failed");
                answers.out[i] = Some(Err(e.to_string()));
            }
        }
        Ok(())
    }

    /// Every answered call into the cost tracker, at its tier's prices.
    fn price(&mut self, records: &[Option<CallRecord>]) {
        for r in records.iter().flatten() {
            // Simulated answers stand in for the standard tier's.
            let tier = if r.tier == Tier::Simulated {
                Tier::Standard
            } else {
                r.tier
            };
            let call = match &r.image {
                Some((size, quality)) => {
                    Call::render(tier, &r.model, r.usage, size.clone(), quality.clone())
                }
                None => Call::chat(r.operation, tier, &r.model, r.usage),
            };
            let call = call.fell_back_from(r.fallback_from).from_cache(r.cached);
            let priced = (self.state.costs).record(&self.pricing, call);
            if let Some(why) = &priced.unpriced {
                tracing::warn!(session = %self.id, problem = %why, "a call's tier has no price");
            }
        }
    }

    /// The stage's record, finished, in the store and the state; then its progress event.
    async fn finish_stage(
        &mut self,
        at: &StageCalls,
        mut stage: StageRecord,
        out: &[Option<Outcome>],
        started: Instant,
    ) -> Result<()> {
        stage.finished_at_ms = Some(now_ms());
        self.store.put_stage(&self.id, &stage).await?;
        self.state.stages.retain(|s| s.index != at.idx);
        self.state.stages.push(stage.clone());
        let failed = out.iter().filter(|r| matches!(r, Some(Err(_)))).count();
        self.progress.send(ProgressEvent::StageFinished {
            session: self.id.clone(),
            index: at.idx,
            stage: at.kind.as_str().into(),
            succeeded: out.len() - failed,
            failed,
            batch_ids: stage.batch_ids,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn call_key(&self, idx: usize, name: &str) -> String {
        format!("{}/{idx}/{name}", self.id)
    }

    async fn still_there(&self, payload: &Payload) -> bool {
        match payload {
            Payload::Image { file, .. } => tokio::fs::metadata(self.folder.join(file))
                .await
                .is_ok_and(|m| m.is_file()),
            _ => true,
        }
    }
}

/// How many of a stage's calls are done, and when that is worth an event: after every call
/// of a stage of at most 20, else each time another twentieth (5%) of them is done.
#[derive(Debug)]
struct Tally {
    total: usize,
    done: usize,
    /// The twentieth last reported.
    reported: usize,
}

impl Tally {
    fn new(total: usize, done: usize) -> Tally {
        Tally {
            total,
            done,
            reported: Tally::twentieths(done, total),
        }
    }

    fn twentieths(done: usize, total: usize) -> usize {
        done.saturating_mul(20).checked_div(total).unwrap_or(20)
    }

    /// One more call done: the number done when it should be reported.
    fn one_more(&mut self) -> Option<usize> {
        self.done = (self.done + 1).min(self.total);
        let now = Tally::twentieths(self.done, self.total);
        (now > self.reported).then(|| {
            self.reported = now;
            self.done
        })
    }
}

/// Puts the call's key and seed on the request (the seed goes into the writer's bodies; for
/// renders and votes it is the replay seed the request cache keys on).
fn with_call(spec: Spec, key: String, seed: i64) -> Spec {
    match spec {
        Spec::Chat(mut r) => {
            r.seed = Some(seed);
            r.key = Some(key);
            Spec::Chat(r)
        }
        Spec::Json(mut r) => {
            r.chat.seed = Some(seed);
            r.chat.key = Some(key);
            Spec::Json(r)
        }
        Spec::Vision(mut r) => {
            r.chat.seed = Some(seed);
            r.chat.key = Some(key);
            Spec::Vision(r)
        }
        Spec::Image(mut r, file) => {
            r.seed = Some(seed);
            r.key = Some(key);
            Spec::Image(r, file)
        }
        Spec::Judge(mut r) => {
            r.seed = Some(seed);
            r.key = Some(key);
            Spec::Judge(r)
        }
        Spec::Compare(mut r, swapped) => {
            r.seed = Some(seed);
            r.key = Some(key);
            Spec::Compare(r, swapped)
        }
    }
}

type CallFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = (usize, Result<CallRecord>)> + Send>>;

fn call(backend: Backend, spec: Spec, i: usize, folder: PathBuf) -> CallFuture {
    Box::pin(async move { (i, send(&backend, spec, &folder).await) })
}

async fn send(backend: &Backend, spec: Spec, folder: &Path) -> Result<CallRecord> {
    let record = |op, meta: providers::CallMeta, payload| CallRecord {
        operation: op,
        tier: meta.tier,
        fallback_from: meta.fallback_from,
        model: meta.model,
        usage: meta.usage,
        cached: meta.cached,
        image: None,
        payload,
    };
    Ok(match spec {
        Spec::Chat(r) => {
            let op = r.operation;
            let reply = backend.llm.chat(r).await?;
            record(op, reply.meta, Payload::Text { text: reply.text })
        }
        Spec::Json(r) => {
            let op = r.chat.operation;
            let reply = backend.llm.json(r).await?;
            record(op, reply.meta, Payload::Json { value: reply.value })
        }
        Spec::Vision(r) => {
            let op = r.chat.operation;
            let reply = backend.vision.ask(r).await?;
            record(op, reply.meta, Payload::Json { value: reply.value })
        }
        Spec::Image(r, file) => {
            let (size, quality) = (r.size.clone(), r.quality.clone());
            let image = backend.image.generate(r).await?;
            let path = folder.join(&file);
            write_atomic(&path.with_extension("part"), &path, &image.png)
                .await
                .map_err(|source| Error::Io { path, source })?;
            let mut rec = record(
                Operation::Render,
                image.meta,
                Payload::Image {
                    file,
                    revised_prompt: image.revised_prompt,
                },
            );
            rec.image = Some((size, quality));
            rec
        }
        Spec::Judge(r) => {
            let j = backend.vision.judge(r).await?;
            let vote = VoteResult::from_judgement(&j);
            record(Operation::Judge, j.meta, Payload::Vote { vote })
        }
        Spec::Compare(r, swapped) => {
            let c = backend.vision.compare(r).await?;
            let vote = VoteResult::from_comparison(&c, swapped);
            record(Operation::Judge, c.meta, Payload::Vote { vote })
        }
    })
}

/// Writes `bytes` to `tmp`, then renames it to `path`: a reader never sees half a file.
pub(super) async fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::write(tmp, bytes).await?;
    tokio::fs::rename(tmp, path).await
}

#[cfg(test)]
mod tests;
