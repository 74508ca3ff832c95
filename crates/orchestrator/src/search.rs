//! `BeamSearch`: runs a plan's stages in order, each stage's calls all at once on the stage's
//! tier, with the batch queue flushed as the stage barrier; checkpoints every call as it
//! finishes and the whole state after every stage, so that a session resumes where it stopped
//! and never sends a call whose result it has.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_format::Usage;
use batch_queue::RequestId;
use providers::{
    ChatRequest, CompareRequest, ImageRequest, JsonRequest, JudgeRequest, Operation, ProviderError,
    Tier, VisionJsonRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::candidate::{Candidate, Proposal};
use crate::components::{
    CritiqueGenerator, Dimension, ImageGenerator, PromptCombiner, PromptExpander, PromptRefiner,
    Writing, combined_of, default_combined, field, read_children, seed_for,
};
use crate::cost::{Call, CostReport, CostTracker, Pricing};
use crate::engines::{Backend, Engines};
use crate::events::{Progress, ProgressEvent};
use crate::params::{Plan, SearchParams, StageKind};
use crate::ranker::{Ballot, Entrant, ImageRanker, VoteResult};
use crate::store::{SessionState, SessionStore, StageRecord, now_ms};
use crate::{Error, Result};

/// Synchronous calls in flight at once per stage (batch and simulated calls are not limited:
/// they only queue).
const SYNC_CONCURRENCY: usize = 16;
/// How often the batch barrier checks that every call of the stage is queued.
const BARRIER_TICK: Duration = Duration::from_millis(10);

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
    /// Tokens billed.
    pub usage: Usage,
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
enum Spec {
    Chat(ChatRequest),
    Json(JsonRequest),
    Image(ImageRequest, String),
    Judge(JudgeRequest),
    Compare(CompareRequest, bool),
    Vision(VisionJsonRequest),
}

/// The state a checkpoint keeps: the tree, the current pool and the calls' costs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SearchState {
    /// Every candidate so far.
    pub candidates: Vec<Candidate>,
    /// The survivors of the last judged iteration, best first.
    pub pool: Vec<String>,
    /// The candidates being built in the current iteration.
    pub working: Vec<String>,
    /// Every call, for cost tracking.
    pub costs: CostTracker,
    /// The stages run, in order.
    pub stages: Vec<StageRecord>,
    /// The best candidate and its score after each iteration.
    pub best: Vec<(u32, String, f64)>,
    /// In comparative mode, the comparisons the best of each iteration won and took part in:
    /// `(iteration, wins, comparisons)`.
    #[serde(default)]
    pub best_wins: Vec<(u32, u32, u32)>,
}

impl SearchState {
    fn get(&self, id: &str) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.id == id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Candidate> {
        self.candidates.iter_mut().find(|c| c.id == id)
    }

    fn alive(&self, ids: &[String]) -> Vec<Candidate> {
        ids.iter()
            .filter_map(|id| self.get(id))
            .filter(|c| c.alive())
            .cloned()
            .collect()
    }
}

/// The result of a finished session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionOutcome {
    /// The session id.
    pub id: String,
    /// Its folder (images and `session.json`).
    pub folder: PathBuf,
    /// The best candidate.
    pub best: Candidate,
    /// Stages run (batch round trips in batch mode).
    pub stages: Vec<StageRecord>,
    /// Calls made (answered, reused or not).
    pub calls: usize,
    /// The cost report.
    pub report: CostReport,
    /// The best candidate after each iteration.
    pub best_by_iteration: Vec<IterationBest>,
}

/// The best candidate of one iteration, as judged then.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IterationBest {
    /// The iteration (0 = the first expansion).
    pub iteration: u32,
    /// The candidate.
    pub id: String,
    /// Its score, 0-10 (comparative: 10 × the share of its comparisons it won).
    pub score: f64,
    /// Comparative mode: the comparisons it won and took part in that iteration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wins: Option<(u32, u32)>,
}

/// The beam search over one idea.
pub struct BeamSearch {
    id: String,
    params: SearchParams,
    engines: Engines,
    store: SessionStore,
    folder: PathBuf,
    progress: Progress,
    pricing: Arc<Pricing>,
    deadline: Option<Instant>,
    state: SearchState,
    next_stage: usize,
}

impl std::fmt::Debug for BeamSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeamSearch")
            .field("id", &self.id)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl BeamSearch {
    /// A new session of `params` (validated), recorded in `store`, its files in a folder named
    /// after it under `sessions_dir`.
    pub async fn start(
        params: SearchParams,
        engines: Engines,
        store: SessionStore,
        sessions_dir: &Path,
    ) -> Result<BeamSearch> {
        params.validate()?;
        let id = format!("s_{}", ulid::Ulid::new().to_string().to_lowercase());
        // Absolute, so that a resume from another working directory finds it.
        let folder = std::path::absolute(sessions_dir.join(&id)).map_err(|source| Error::Io {
            path: sessions_dir.to_owned(),
            source,
        })?;
        let params_json = serde_json::to_string(&params).map_err(Error::store)?;
        store
            .create(&id, &params.idea, &params_json, &folder.to_string_lossy())
            .await?;
        let mut engines = engines;
        engines.priced_by(&Pricing::builtin());
        Ok(BeamSearch {
            id,
            params,
            engines,
            store,
            folder,
            progress: Progress::new(),
            pricing: Arc::new(Pricing::builtin()),
            deadline: None,
            state: SearchState::default(),
            next_stage: 0,
        })
    }

    /// An interrupted session, from its last checkpoint.
    pub async fn resume(id: &str, engines: Engines, store: SessionStore) -> Result<BeamSearch> {
        let row = store
            .session(id)
            .await?
            .ok_or_else(|| Error::UnknownSession(id.to_owned()))?;
        let params: SearchParams = serde_json::from_str(&row.params).map_err(Error::store)?;
        let state = match &row.snapshot {
            Some(s) => serde_json::from_str(s).map_err(Error::store)?,
            None => SearchState::default(),
        };
        let folder = PathBuf::from(row.folder.unwrap_or_default());
        let mut engines = engines;
        engines.priced_by(&Pricing::builtin());
        Ok(BeamSearch {
            id: row.id,
            params,
            engines,
            store,
            folder,
            progress: Progress::new(),
            pricing: Arc::new(Pricing::builtin()),
            deadline: None,
            state,
            next_stage: row.next_stage,
        })
    }

    /// Sends progress events to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> BeamSearch {
        self.progress = progress;
        self
    }

    /// Prices calls with `pricing` instead of the built-in table (which also decides the
    /// tiers hybrid mode may pick for each model: see [`Engines::priced_by`]).
    pub fn with_pricing(mut self, pricing: Pricing) -> BeamSearch {
        self.engines.priced_by(&pricing);
        self.pricing = Arc::new(pricing);
        self
    }

    /// The deadline hybrid mode plans against, from now.
    pub fn with_deadline(mut self, within: Duration) -> BeamSearch {
        self.deadline = Some(Instant::now() + within);
        self
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The session folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The parameters.
    pub fn params(&self) -> &SearchParams {
        &self.params
    }

    /// The progress channel (subscribe before [`BeamSearch::run`]).
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Runs the remaining stages and returns the outcome. Every stage's calls are
    /// checkpointed as they finish, the state after every stage; an error leaves the session
    /// resumable.
    pub async fn run(mut self) -> Result<SessionOutcome> {
        std::fs::create_dir_all(self.folder.join("images")).map_err(|source| Error::Io {
            path: self.folder.join("images"),
            source,
        })?;
        self.progress.send(ProgressEvent::SessionStarted {
            session: self.id.clone(),
            stages: self.params.plan.stages(self.params.iterations).len(),
            next_stage: self.next_stage,
        });
        self.store
            .set_state(&self.id, SessionState::Running)
            .await?;
        if let Err(e) = self.run_stages().await {
            tracing::warn!(session = %self.id, error = %e, "session stopped");
            self.store.set_state(&self.id, SessionState::Failed).await?;
            return Err(e);
        }
        self.store
            .set_state(&self.id, SessionState::Completed)
            .await?;
        let outcome = outcome_of(&self.id, &self.folder, &self.params, &self.state)?;
        self.write_session_json(Some(&outcome.report))?;
        self.progress.send(ProgressEvent::SessionFinished {
            session: self.id.clone(),
            best_id: outcome.best.id.clone(),
            best_score: outcome.best.score(),
            cost: outcome.report.total.cost,
        });
        Ok(outcome)
    }

    /// Whether every stage has run (a resumed finished session has nothing left to do).
    pub fn is_finished(&self) -> bool {
        self.next_stage >= self.params.plan.stages(self.params.iterations).len()
    }

    /// The first stage still to run (0-based; the number of stages when finished).
    pub fn next_stage(&self) -> usize {
        self.next_stage
    }

    /// The outcome of session `id` when every stage of it has run, read from `store` (no
    /// engines needed: nothing is sent); `None` while it has stages left.
    pub async fn finished(id: &str, store: &SessionStore) -> Result<Option<SessionOutcome>> {
        let row = store
            .session(id)
            .await?
            .ok_or_else(|| Error::UnknownSession(id.to_owned()))?;
        let params: SearchParams = serde_json::from_str(&row.params).map_err(Error::store)?;
        if row.next_stage < params.plan.stages(params.iterations).len() {
            return Ok(None);
        }
        let state: SearchState = match &row.snapshot {
            Some(s) => serde_json::from_str(s).map_err(Error::store)?,
            None => SearchState::default(),
        };
        let folder = PathBuf::from(row.folder.unwrap_or_default());
        outcome_of(&row.id, &folder, &params, &state).map(Some)
    }

    async fn run_stages(&mut self) -> Result<()> {
        let schedule = self.params.plan.schedule(self.params.iterations);
        while self.next_stage < schedule.len() {
            let idx = self.next_stage;
            let (iteration, kind) = schedule[idx];
            self.stage(idx, kind, iteration, schedule.len() - idx)
                .await?;
            self.next_stage = idx + 1;
            let snapshot = serde_json::to_string(&self.state).map_err(Error::store)?;
            self.store
                .checkpoint(&self.id, self.next_stage, &snapshot)
                .await?;
            self.write_session_json(None)?;
        }
        Ok(())
    }

    fn writing(&self) -> Writing {
        Writing {
            idea: self.params.idea.clone(),
            temperature: self.params.temperature,
            seed: self.params.seed,
        }
    }

    fn ranker(&self) -> ImageRanker {
        ImageRanker {
            idea: self.params.idea.clone(),
            alpha: self.params.alpha,
            ensemble: self.params.ensemble,
            mode: self.params.judging,
            detail: self.params.detail,
            seed: self.params.seed,
        }
    }

    fn new_candidates(&mut self, iteration: u32, parents: &[Option<String>]) -> Vec<String> {
        let ids: Vec<String> = parents
            .iter()
            .enumerate()
            .map(|(k, parent)| {
                let c = Candidate::new(iteration, k, parent.clone());
                let id = c.id.clone();
                // A resumed stage rebuilds the same candidates: replace, do not duplicate.
                self.state.candidates.retain(|x| x.id != id);
                self.state.candidates.push(c);
                id
            })
            .collect();
        self.state.working = ids.clone();
        ids
    }

    async fn stage(&mut self, idx: usize, kind: StageKind, it: u32, left: usize) -> Result<()> {
        let k = self.params.children_per_parent();
        let n = self.params.n;
        match kind {
            StageKind::Expand | StageKind::ExpandFused => {
                let ids = self.new_candidates(0, &vec![None; n as usize]);
                let expander = PromptExpander(self.writing());
                let mut specs = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    if kind == StageKind::Expand {
                        for dim in [Dimension::What, Dimension::How] {
                            let name = format!("{id}/{}", dim.label().to_lowercase());
                            specs.push((name, Spec::Json(expander.half(i, n, dim))));
                        }
                    } else {
                        specs.push((id.clone(), Spec::Json(expander.fused(i, n))));
                    }
                }
                let results = self.run_calls(idx, kind, it, left, &specs).await?;
                for ((name, _), result) in specs.iter().zip(results) {
                    let id = name.split('/').next().unwrap_or_default().to_owned();
                    let c = self
                        .state
                        .get_mut(&id)
                        .expect("working ids name candidates");
                    match result {
                        Ok(Payload::Json { value }) if kind == StageKind::ExpandFused => {
                            c.what = field(&value, "what");
                            c.how = field(&value, "how");
                            c.combined = combined_of(&value, &c.what, &c.how);
                        }
                        Ok(Payload::Json { value }) if name.ends_with("/what") => {
                            c.what = field(&value, "what");
                        }
                        Ok(Payload::Json { value }) => c.how = field(&value, "how"),
                        Ok(other) => c.failed = Some(format!("unexpected answer {other:?}")),
                        Err(e) => c.failed = Some(e),
                    }
                }
                for id in ids {
                    let c = self
                        .state
                        .get_mut(&id)
                        .expect("working ids name candidates");
                    if c.failed.is_none() && (c.what.is_empty() || c.how.is_empty()) {
                        c.failed = Some("the writer left WHAT or HOW empty".into());
                    }
                }
                self.require_alive(kind, it, &self.state.working.clone(), 1)?;
            }
            StageKind::Combine => {
                let combiner = PromptCombiner(self.writing());
                let working = self.state.alive(&self.state.working);
                let specs: Vec<_> = working
                    .iter()
                    .map(|c| (c.id.clone(), Spec::Json(combiner.request(c))))
                    .collect();
                let results = self.run_calls(idx, kind, it, left, &specs).await?;
                for ((id, _), result) in specs.iter().zip(results) {
                    let c = self.state.get_mut(id).expect("working ids name candidates");
                    match result {
                        Ok(Payload::Json { value }) => {
                            c.combined = combined_of(&value, &c.what, &c.how)
                        }
                        Ok(_) => c.combined = default_combined(&c.what, &c.how),
                        Err(e) => c.failed = Some(e),
                    }
                }
                self.require_alive(kind, it, &self.state.working.clone(), 1)?;
            }
            StageKind::Critique => {
                let dim = Dimension::of_iteration(it);
                let critic = CritiqueGenerator(self.writing());
                let parents = self.state.alive(&self.state.pool);
                let specs: Vec<_> = parents
                    .iter()
                    .map(|p| (p.id.clone(), Spec::Chat(critic.request(p, dim))))
                    .collect();
                let results = self.run_calls(idx, kind, it, left, &specs).await?;
                for ((id, _), result) in specs.iter().zip(results) {
                    let c = self.state.get_mut(id).expect("pool ids name candidates");
                    // A parent whose critique failed is refined blind rather than dropped.
                    c.critique = match result {
                        Ok(Payload::Text { text }) => Some(text),
                        _ => None,
                    };
                }
            }
            StageKind::Refine => {
                let dim = Dimension::of_iteration(it);
                let refiner = PromptRefiner(self.writing());
                let parents = self.state.alive(&self.state.pool);
                let lineage: Vec<Option<String>> = parents
                    .iter()
                    .flat_map(|p| std::iter::repeat_n(Some(p.id.clone()), k as usize))
                    .collect();
                let ids = self.new_candidates(it, &lineage);
                let mut specs = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let parent = &parents[i / k as usize];
                    let child = u32::try_from(i % k as usize).unwrap_or(0);
                    let critique = parent.critique.clone().unwrap_or_default();
                    let c = self.state.get_mut(id).expect("new ids name candidates");
                    (c.what, c.how) = (parent.what.clone(), parent.how.clone());
                    specs.push((
                        id.clone(),
                        Spec::Json(refiner.request(parent, &critique, dim, child, k)),
                    ));
                }
                let results = self.run_calls(idx, kind, it, left, &specs).await?;
                for ((id, _), result) in specs.iter().zip(results) {
                    let c = self.state.get_mut(id).expect("new ids name candidates");
                    let (prop, slot) = match dim {
                        Dimension::What => ("what", &mut c.what),
                        Dimension::How => ("how", &mut c.how),
                    };
                    match result {
                        Ok(Payload::Json { value }) if !field(&value, prop).is_empty() => {
                            *slot = field(&value, prop);
                        }
                        Ok(_) => c.failed = Some(format!("the refiner wrote no {prop}")),
                        Err(e) => c.failed = Some(e),
                    }
                }
                self.require_alive(kind, it, &self.state.working.clone(), 1)?;
            }
            StageKind::RefineFused => {
                let dim = Dimension::of_iteration(it);
                let refiner = PromptRefiner(self.writing());
                let parents = self.state.alive(&self.state.pool);
                let specs: Vec<_> = parents
                    .iter()
                    .map(|p| (p.id.clone(), Spec::Json(refiner.fused(p, dim, k))))
                    .collect();
                let results = self.run_calls(idx, kind, it, left, &specs).await?;
                let mut proposals: Vec<(String, Proposal)> = Vec::new();
                for (parent, result) in parents.iter().zip(results) {
                    if let Ok(Payload::Json { value }) = result {
                        let critique = field(&value, "critique");
                        if let Some(p) = self.state.get_mut(&parent.id) {
                            p.critique = (!critique.is_empty()).then_some(critique);
                        }
                        for child in read_children(&value, parent, dim, k) {
                            proposals.push((parent.id.clone(), child));
                        }
                    }
                }
                self.adopt_proposals(it, proposals);
                self.require_alive(kind, it, &self.state.working.clone(), 1)?;
            }
            StageKind::Render => {
                if self.params.plan == Plan::JudgeRefines && it > 0 {
                    let proposals: Vec<(String, Proposal)> = self
                        .state
                        .alive(&self.state.pool)
                        .into_iter()
                        .flat_map(|p| {
                            let id = p.id.clone();
                            p.proposals.into_iter().map(move |x| (id.clone(), x))
                        })
                        .collect();
                    self.adopt_proposals(it, proposals);
                }
                let generator = ImageGenerator {
                    size: self.params.image_size.clone(),
                    quality: self.params.image_quality.clone(),
                };
                let working = self.state.alive(&self.state.working);
                let specs: Vec<_> = working
                    .iter()
                    .map(|c| {
                        let file = format!("images/{}.png", c.id);
                        (c.id.clone(), Spec::Image(generator.request(c), file))
                    })
                    .collect();
                let results = self.run_calls(idx, kind, it, left, &specs).await?;
                for ((id, _), result) in specs.iter().zip(results) {
                    let c = self.state.get_mut(id).expect("working ids name candidates");
                    match result {
                        Ok(Payload::Image {
                            file,
                            revised_prompt,
                        }) => {
                            c.image = Some(file);
                            c.revised_prompt = revised_prompt;
                        }
                        Ok(_) => c.failed = Some("the image model returned no image".into()),
                        Err(e) => c.failed = Some(e),
                    }
                }
                self.require_alive(kind, it, &self.state.working.clone(), 1)?;
            }
            StageKind::Judge => self.judge(idx, it, left).await?,
        }
        Ok(())
    }

    fn adopt_proposals(&mut self, it: u32, proposals: Vec<(String, Proposal)>) {
        let lineage: Vec<Option<String>> = proposals.iter().map(|(p, _)| Some(p.clone())).collect();
        let ids = self.new_candidates(it, &lineage);
        for (id, (_, p)) in ids.iter().zip(proposals) {
            let c = self.state.get_mut(id).expect("new ids name candidates");
            (c.what, c.how, c.combined) = (p.what, p.how, p.combined);
        }
    }

    fn require_alive(
        &self,
        kind: StageKind,
        it: u32,
        ids: &[String],
        at_least: usize,
    ) -> Result<()> {
        let alive = self.state.alive(ids);
        if alive.len() >= at_least {
            return Ok(());
        }
        let errors: Vec<String> = ids
            .iter()
            .filter_map(|id| self.state.get(id))
            .filter_map(|c| c.failed.clone())
            .take(3)
            .collect();
        Err(Error::Stage {
            stage: kind.as_str().into(),
            iteration: it,
            problem: format!(
                "every candidate failed ({} of {}); first errors: {}",
                ids.len() - alive.len(),
                ids.len(),
                errors.join(" | ")
            ),
        })
    }

    async fn judge(&mut self, idx: usize, it: u32, left: usize) -> Result<()> {
        let ranker = self.ranker();
        let parents = self.state.alive(&self.state.pool);
        let children: Vec<Candidate> = self
            .state
            .alive(&self.state.working)
            .into_iter()
            .filter(|c| c.image.is_some())
            .collect();
        let members: Vec<Candidate> = children.iter().chain(parents.iter()).cloned().collect();
        let pool: Vec<Entrant> = members
            .iter()
            .map(|c| {
                let is_parent = parents.iter().any(|p| p.id == c.id);
                Entrant {
                    prior_rank: is_parent.then(|| c.verdict.as_ref().map_or(u32::MAX, |v| v.rank)),
                    prior: if is_parent { c.verdict.clone() } else { None },
                }
            })
            .collect();
        let mut images: HashMap<String, Vec<u8>> = HashMap::new();
        for c in &members {
            images.insert(c.id.clone(), self.judge_image(c)?);
        }
        let ballots = ranker.ballots(it, &pool);
        let mut specs = Vec::new();
        for b in &ballots {
            let spec = match *b {
                Ballot::Score { who, vote } => {
                    Spec::Judge(ranker.judge_request(images[&members[who].id].clone(), vote))
                }
                Ballot::Pair {
                    first,
                    second,
                    vote,
                    swapped,
                } => {
                    let (a, b) = if swapped {
                        (second, first)
                    } else {
                        (first, second)
                    };
                    Spec::Compare(
                        ranker.compare_request(
                            images[&members[a].id].clone(),
                            images[&members[b].id].clone(),
                            vote,
                        ),
                        swapped,
                    )
                }
            };
            let name = match *b {
                Ballot::Score { who, vote } => format!("score/{}/{vote}", members[who].id),
                Ballot::Pair {
                    first,
                    second,
                    vote,
                    ..
                } => format!("pair/{}-{}/{vote}", members[first].id, members[second].id),
            };
            specs.push((name, spec));
        }
        // judge_refines: the judge also critiques each image and proposes its children.
        let reviews = self.params.plan == Plan::JudgeRefines && it + 1 < self.params.iterations;
        let dim = Dimension::of_iteration(it + 1);
        let k = self.params.children_per_parent();
        if reviews {
            let refiner = PromptRefiner(self.writing());
            for c in &members {
                let request = refiner.review(
                    c,
                    images[&c.id].clone(),
                    self.params.detail,
                    self.params.alpha,
                    dim,
                    k,
                );
                specs.push((format!("review/{}", c.id), Spec::Vision(request)));
            }
        }
        let results = self
            .run_calls(idx, StageKind::Judge, it, left, &specs)
            .await?;
        let (votes, review_results) = results.split_at(ballots.len());
        let votes: Vec<(Ballot, Option<VoteResult>)> = ballots
            .iter()
            .zip(votes)
            .map(|(b, r)| match r {
                Ok(Payload::Vote { vote }) => (*b, Some(vote.clone())),
                _ => (*b, None),
            })
            .collect();
        let verdicts = ranker.rank(&pool, &votes);
        for (c, verdict) in members.iter().zip(verdicts) {
            let slot = self.state.get_mut(&c.id).expect("pool ids name candidates");
            match verdict {
                Some(v) => slot.verdict = Some(v),
                None if slot.verdict.is_none() => {
                    slot.failed = Some("no judge's vote came back".into());
                }
                None => {}
            }
        }
        if reviews {
            for (c, result) in members.iter().zip(review_results) {
                let slot = self.state.get_mut(&c.id).expect("pool ids name candidates");
                slot.proposals.clear();
                if let Ok(Payload::Json { value }) = result {
                    let critique = field(value, "critique");
                    slot.critique = (!critique.is_empty()).then_some(critique);
                    slot.proposals = read_children(value, c, dim, k);
                }
            }
        }
        let mut ranked: Vec<Candidate> = self
            .state
            .alive(&members.iter().map(|c| c.id.clone()).collect::<Vec<_>>())
            .into_iter()
            .filter(|c| c.verdict.is_some())
            .collect();
        ranked.sort_by_key(|c| c.verdict.as_ref().map_or(u32::MAX, |v| v.rank));
        ranked.truncate(self.params.m as usize);
        if ranked.is_empty() {
            return Err(Error::Stage {
                stage: "judge".into(),
                iteration: it,
                problem: "no image could be judged".into(),
            });
        }
        self.state.pool = ranked.iter().map(|c| c.id.clone()).collect();
        let best = &ranked[0];
        self.state.best.retain(|(i, _, _)| *i != it);
        self.state.best.push((it, best.id.clone(), best.score()));
        self.state.best_wins.retain(|(i, _, _)| *i != it);
        if let Some(v) = best.verdict.as_ref().filter(|v| v.comparisons > 0) {
            self.state.best_wins.push((it, v.wins, v.comparisons));
        }
        self.progress.send(ProgressEvent::IterationJudged {
            session: self.id.clone(),
            iteration: it,
            best_id: best.id.clone(),
            best_score: best.score(),
            wins: best
                .verdict
                .as_ref()
                .filter(|v| v.comparisons > 0)
                .map(|v| (v.wins, v.comparisons)),
        });
        Ok(())
    }

    /// A candidate's image as the judge gets it: downscaled to what its detail level uses.
    fn judge_image(&self, c: &Candidate) -> Result<Vec<u8>> {
        let file = c.image.as_deref().unwrap_or_default();
        let path = self.folder.join(file);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        match crate::downscale::prepare_for_judge(&bytes, self.params.detail) {
            Ok(prepared) => Ok(prepared.bytes),
            Err(e) => {
                tracing::warn!(image = %path.display(), error = %e, "sent as rendered");
                Ok(bytes)
            }
        }
    }

    /// Runs one stage's calls: those checkpointed are reused, the rest sent all at once on the
    /// stage's tier (the batch queue flushed once every one of them is queued). Each result is
    /// checkpointed as it arrives. A call's own failure is its `Err` (the stage decides what
    /// that means); a failure of the machinery is the stage's.
    async fn run_calls(
        &mut self,
        idx: usize,
        kind: StageKind,
        it: u32,
        left: usize,
        specs: &[(String, Spec)],
    ) -> Result<Vec<std::result::Result<Payload, String>>> {
        let op = kind.operation();
        let started = Instant::now();
        let started_ms = now_ms();
        let recorded = self.store.stages(&self.id).await?;
        // A stage resumed mid-way keeps the tier its calls were sent on, when this run has it.
        let sent_on = recorded
            .iter()
            .find(|s| s.index == idx)
            .and_then(|s| s.tier.parse::<Tier>().ok())
            .filter(|t| self.engines.offered(op).contains(t));
        let tier = sent_on.unwrap_or_else(|| {
            self.engines.tier_for(
                op,
                self.deadline
                    .map(|d| d.saturating_duration_since(Instant::now())),
                left,
            )
        });
        let mut out: Vec<Option<std::result::Result<Payload, String>>> = vec![None; specs.len()];
        let mut records: Vec<Option<CallRecord>> = vec![None; specs.len()];
        let mut fresh = Vec::new();
        for (i, (name, _)) in specs.iter().enumerate() {
            let key = self.call_key(idx, name);
            if let Some(json) = self.store.call(&self.id, &key).await?
                && let Ok(record) = serde_json::from_str::<CallRecord>(&json)
                && self.still_there(&record.payload)
            {
                out[i] = Some(Ok(record.payload.clone()));
                records[i] = Some(record);
            } else {
                fresh.push(i);
            }
        }
        let reused = specs.len() - fresh.len();
        let mut stage = StageRecord {
            index: idx,
            iteration: it,
            kind: kind.as_str().into(),
            tier: tier.as_str().into(),
            calls: specs.len(),
            reused,
            batch_ids: Vec::new(),
            started_at_ms: recorded
                .iter()
                .find(|s| s.index == idx)
                .map_or(started_ms, |s| s.started_at_ms),
            finished_at_ms: None,
        };
        self.store.put_stage(&self.id, &stage).await?;
        self.progress.send(ProgressEvent::StageStarted {
            session: self.id.clone(),
            index: idx,
            iteration: it,
            stage: kind.as_str().into(),
            tier: tier.as_str().into(),
            calls: specs.len(),
            reused,
        });
        let backend = self.engines.backend(tier).clone();
        let mut pending: VecDeque<CallFuture> = fresh
            .iter()
            .map(|&i| {
                let (name, spec) = &specs[i];
                let seed = seed_for(self.params.seed, &format!("{idx}/{name}"));
                let spec = with_call(spec.clone(), self.call_key(idx, name), seed);
                call(backend.clone(), spec, i, self.folder.clone())
            })
            .collect();
        let batch_queue = (tier == Tier::Batch)
            .then(|| self.engines.queue().cloned())
            .flatten();
        let ids: Vec<(usize, RequestId)> = fresh
            .iter()
            .map(|&i| (i, RequestId::for_key(&self.call_key(idx, &specs[i].0))))
            .collect();
        let mut flushed = batch_queue.is_none() || fresh.is_empty();
        let mut done = vec![false; specs.len()];
        // Synchronous tiers have at most SYNC_CONCURRENCY calls in flight, started in order.
        let limit = if matches!(tier, Tier::Standard | Tier::Flex) {
            SYNC_CONCURRENCY
        } else {
            usize::MAX
        };
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
            tokio::select! {
                Some(joined) = running.join_next() => {
                    let (i, result) = joined.map_err(|e| Error::Stage {
                        stage: kind.as_str().into(),
                        iteration: it,
                        problem: format!("a call's task failed: {e}"),
                    })?;
                    done[i] = true;
                    if let Some(f) = pending.pop_front() {
                        running.spawn(f);
                    }
                    match result {
                        Ok(record) => {
                            let key = self.call_key(idx, &specs[i].0);
                            let json = serde_json::to_string(&record).map_err(Error::store)?;
                            self.store
                                .put_call(&self.id, &key, op.as_str(), record.tier.as_str(), &json)
                                .await?;
                            out[i] = Some(Ok(record.payload.clone()));
                            records[i] = Some(record);
                        }
                        Err(e) => {
                            tracing::warn!(session = %self.id, stage = %kind, call = %specs[i].0, error = %e, "call failed");
                            out[i] = Some(Err(e.to_string()));
                        }
                    }
                }
                () = tokio::time::sleep(BARRIER_TICK), if !flushed => {
                    let queue = batch_queue.as_ref().expect("only batch stages wait at the barrier");
                    let waiting: Vec<RequestId> = ids
                        .iter()
                        .filter(|(i, _)| !done[*i])
                        .map(|(_, id)| id.clone())
                        .collect();
                    if queue.known(&waiting).await? == waiting.len() {
                        queue.flush().await?;
                        flushed = true;
                        self.progress.send(ProgressEvent::BatchSubmitted {
                            session: self.id.clone(),
                            index: idx,
                            requests: waiting.len(),
                        });
                    }
                }
            }
        }
        if let Some(queue) = &batch_queue {
            let mut batch_ids: Vec<String> = Vec::new();
            for (_, id) in &ids {
                if let Ok(Some(done)) = queue.result_for(id).await {
                    for b in done.batch_ids {
                        if !batch_ids.contains(&b) {
                            batch_ids.push(b);
                        }
                    }
                }
            }
            stage.batch_ids = batch_ids;
        }
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
            let priced = self
                .state
                .costs
                .record(&self.pricing, call.fell_back_from(r.fallback_from));
            if let Some(why) = &priced.unpriced {
                tracing::warn!(session = %self.id, problem = %why, "a call's tier has no price");
            }
        }
        if !fresh.is_empty() {
            self.engines.observe(tier, started.elapsed());
        }
        stage.finished_at_ms = Some(now_ms());
        self.store.put_stage(&self.id, &stage).await?;
        self.state.stages.retain(|s| s.index != idx);
        self.state.stages.push(stage.clone());
        let failed = out.iter().filter(|r| matches!(r, Some(Err(_)))).count();
        self.progress.send(ProgressEvent::StageFinished {
            session: self.id.clone(),
            index: idx,
            stage: kind.as_str().into(),
            succeeded: specs.len() - failed,
            failed,
            batch_ids: stage.batch_ids.clone(),
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("never sent".to_owned())))
            .collect())
    }

    fn call_key(&self, idx: usize, name: &str) -> String {
        format!("{}/{idx}/{name}", self.id)
    }

    fn still_there(&self, payload: &Payload) -> bool {
        match payload {
            Payload::Image { file, .. } => self.folder.join(file).is_file(),
            _ => true,
        }
    }

    fn write_session_json(&self, report: Option<&CostReport>) -> Result<()> {
        let doc = serde_json::json!({
            "id": self.id,
            "params": self.params,
            "stages_done": self.next_stage,
            "stages": self.state.stages,
            "pool": self.state.pool,
            "best_by_iteration": self.state.best,
            "candidates": self.state.candidates,
            "calls": self.state.costs,
            "cost": report,
        });
        let path = self.folder.join("session.json");
        let tmp = self.folder.join("session.json.tmp");
        let text = serde_json::to_vec_pretty(&doc).map_err(Error::store)?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Io { path, source })
    }
}

/// The outcome of a session whose stages have all run, from its state.
fn outcome_of(
    id: &str,
    folder: &Path,
    params: &SearchParams,
    state: &SearchState,
) -> Result<SessionOutcome> {
    let no_best = || Error::Stage {
        stage: "judge".into(),
        iteration: params.iterations.saturating_sub(1),
        problem: "no candidate survived".into(),
    };
    let best_id = state.pool.first().ok_or_else(no_best)?;
    let best = state.get(best_id).cloned().ok_or_else(no_best)?;
    let best_by_iteration = state
        .best
        .iter()
        .map(|(it, id, score)| IterationBest {
            iteration: *it,
            id: id.clone(),
            score: *score,
            wins: state
                .best_wins
                .iter()
                .find(|(i, _, _)| i == it)
                .map(|(_, won, of)| (*won, *of)),
        })
        .collect();
    Ok(SessionOutcome {
        id: id.to_owned(),
        folder: folder.to_owned(),
        best,
        calls: state.stages.iter().map(|s| s.calls).sum(),
        stages: state.stages.clone(),
        report: state.costs.report(),
        best_by_iteration,
    })
}

/// Puts the call's key (and, for the writer's calls, its seed) on the request.
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
            r.key = Some(key);
            Spec::Image(r, file)
        }
        Spec::Judge(mut r) => {
            r.key = Some(key);
            Spec::Judge(r)
        }
        Spec::Compare(mut r, swapped) => {
            r.key = Some(key);
            Spec::Compare(r, swapped)
        }
    }
}

type CallFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (usize, std::result::Result<CallRecord, ProviderError>)>
            + Send,
    >,
>;

fn call(backend: Backend, spec: Spec, i: usize, folder: PathBuf) -> CallFuture {
    Box::pin(async move { (i, send(&backend, spec, &folder).await) })
}

async fn send(
    backend: &Backend,
    spec: Spec,
    folder: &Path,
) -> std::result::Result<CallRecord, ProviderError> {
    let record = |op, meta: providers::CallMeta, payload| CallRecord {
        operation: op,
        tier: meta.tier,
        fallback_from: meta.fallback_from,
        model: meta.model,
        usage: meta.usage,
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
            write_atomic(&folder.join(&file), &image.png)
                .map_err(|e| ProviderError::InvalidRequest(format!("saving {file}: {e}")))?;
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

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
