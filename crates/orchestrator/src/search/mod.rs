//! `BeamSearch`: runs a plan's stages in order (one unit per stage kind: `stages`, `judge`),
//! each stage's calls all at once on the stage's tier through the call runner (`calls`), which
//! passes the tier's stage barrier; checkpoints every call as it finishes and the whole state
//! (`state`) after every stage, so that a session resumes where it stopped and never sends a
//! call whose result it has.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::candidate::{Candidate, Proposal};
use crate::components::Writing;
use crate::cost::{CostReport, Pricing};
use crate::engines::Engines;
use crate::estimate::{Forecast, PlannedStage, forecast_of, planned_stages, units};
use crate::events::{Progress, ProgressEvent};
use crate::params::{SearchParams, StageKind};
use crate::rating::RatingScale;
use crate::store::{CheckpointStore, SessionState};
use crate::{Error, Result};

mod calls;
mod judge;
mod stages;
mod state;

pub use calls::{CallRecord, Payload};
pub use state::{IterationBest, SearchState, SessionOutcome};

use calls::write_atomic;
use state::outcome_of;

/// The beam search over one idea.
pub struct BeamSearch {
    id: String,
    params: SearchParams,
    engines: Engines,
    store: Arc<dyn CheckpointStore>,
    folder: PathBuf,
    progress: Progress,
    pricing: Arc<Pricing>,
    deadline: Option<Instant>,
    state: SearchState,
    next_stage: usize,
}

/// What a session is, new or read back: the rest of a [`BeamSearch`] is how it runs.
struct Session {
    id: String,
    params: SearchParams,
    folder: PathBuf,
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
        store: impl CheckpointStore + 'static,
        sessions_dir: &Path,
    ) -> Result<BeamSearch> {
        params.validate()?;
        let id = format!("s_{}", ulid::Ulid::new().to_string().to_lowercase());
        // Absolute, so that a resume from another working directory finds it.
        let folder = std::path::absolute(sessions_dir.join(&id)).map_err(|source| Error::Io {
            path: sessions_dir.to_owned(),
            source,
        })?;
        let params_json = serde_json::to_string(&params).map_err(Error::Encode)?;
        store
            .create(&id, &params.idea, &params_json, &folder.to_string_lossy())
            .await?;
        let session = Session {
            id,
            params,
            folder,
            state: SearchState::default(),
            next_stage: 0,
        };
        Ok(BeamSearch::new(session, engines, Arc::new(store)))
    }

    /// An interrupted session, from its last checkpoint.
    pub async fn resume(
        id: &str,
        engines: Engines,
        store: impl CheckpointStore + 'static,
    ) -> Result<BeamSearch> {
        let row = store
            .session(id)
            .await?
            .ok_or_else(|| Error::UnknownSession(id.to_owned()))?;
        let session = Session {
            params: row.search_params()?,
            state: row.search_state()?,
            folder: row.folder_path()?,
            next_stage: row.next_stage,
            id: row.id,
        };
        Ok(BeamSearch::new(session, engines, Arc::new(store)))
    }

    /// A search of `session` on `engines`, priced with the built-in table until told otherwise.
    fn new(session: Session, mut engines: Engines, store: Arc<dyn CheckpointStore>) -> BeamSearch {
        engines.priced_by(&Pricing::builtin());
        BeamSearch {
            id: session.id,
            params: session.params,
            engines,
            store,
            folder: session.folder,
            progress: Progress::new(),
            pricing: Arc::new(Pricing::builtin()),
            deadline: None,
            state: session.state,
            next_stage: session.next_stage,
        }
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
        let images = self.folder.join("images");
        tokio::fs::create_dir_all(&images)
            .await
            .map_err(|source| Error::Io {
                path: images,
                source,
            })?;
        self.progress.send(ProgressEvent::SessionStarted {
            session: self.id.clone(),
            stages: self.params.stage_count(),
            next_stage: self.next_stage,
        });
        self.store
            .set_state(&self.id, SessionState::Running)
            .await?;
        if self.state.forecast.is_none() && self.next_stage == 0 {
            self.state.forecast = Some(self.forecast(0..usize::MAX));
        }
        if let Err(e) = self.run_stages().await {
            tracing::warn!(session = %self.id, error = %e, "session stopped");
            self.store.set_state(&self.id, SessionState::Failed).await?;
            return Err(e);
        }
        self.store
            .set_state(&self.id, SessionState::Completed)
            .await?;
        let outcome = outcome_of(&self.id, &self.folder, &self.params, &self.state)?;
        self.write_session_json(Some(&outcome.report)).await?;
        self.progress.send(ProgressEvent::SessionFinished {
            session: self.id.clone(),
            best_id: outcome.best.id.clone(),
            best_score: outcome.best.score(),
            best_rating: outcome.best.rating,
            scale: outcome.rating_scale,
            cost: outcome.report.total.cost,
        });
        Ok(outcome)
    }

    /// Whether every stage has run (a resumed finished session has nothing left to do).
    pub fn is_finished(&self) -> bool {
        self.next_stage >= self.params.stage_count()
    }

    /// The first stage still to run (0-based; the number of stages when finished).
    pub fn next_stage(&self) -> usize {
        self.next_stage
    }

    /// The outcome of session `id` when every stage of it has run, read from `store` (no
    /// engines needed: nothing is sent); `None` while it has stages left.
    pub async fn finished(id: &str, store: &dyn CheckpointStore) -> Result<Option<SessionOutcome>> {
        let row = store
            .session(id)
            .await?
            .ok_or_else(|| Error::UnknownSession(id.to_owned()))?;
        let params = row.search_params()?;
        if row.next_stage < params.stage_count() {
            return Ok(None);
        }
        let state = row.search_state()?;
        outcome_of(&row.id, &row.folder_path()?, &params, &state).map(Some)
    }

    /// The forecast of the stages in `stages` on the tiers they would go to now.
    pub(super) fn forecast(&self, stages: std::ops::Range<usize>) -> Forecast {
        let planned: Vec<PlannedStage> = planned_stages(&self.params)
            .into_iter()
            .enumerate()
            .filter(|(idx, _)| stages.contains(idx))
            .map(|(_, s)| self.as_it_stands(s))
            .collect();
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let stages_left = self.params.stage_count().saturating_sub(self.next_stage);
        forecast_of(
            planned,
            &self.engines.models(),
            &self.pricing,
            |op| self.engines.tier_for(op, left, stages_left.max(1)),
            &self.engines.turnaround(),
        )
    }

    /// A planned stage with what the session knows now: a polish draws again only those of
    /// its candidates that are drafts.
    fn as_it_stands(&self, mut stage: PlannedStage) -> PlannedStage {
        if stage.kind == StageKind::Polish && !self.state.candidates.is_empty() {
            let full = self.params.full_render();
            let drafts = (self.state.ranked().into_iter())
                .filter(|c| c.image.is_some())
                .take(self.params.polish as usize)
                .filter(|c| self.rendered_as(c) != full)
                .count() as u64;
            for (_, count) in &mut stage.calls {
                *count = drafts;
            }
        }
        stage
    }

    /// With a budget, before the first stage of an iteration (or of the polish): whether its
    /// forecast fits what is left. When an iteration does not, the search goes on to the
    /// polish (if it has one and it fits), else ends; `Ok(None)` to run stage `idx`, or the
    /// stage to go on from.
    fn budget_gate(&mut self, idx: usize) -> Result<Option<usize>> {
        let Some(budget) = self.params.budget_usd else {
            return Ok(None);
        };
        let units = units(&self.params);
        let Some(unit) = units.iter().find(|u| u.start == idx) else {
            return Ok(None);
        };
        let schedule = self.params.schedule();
        let (it, kind) = schedule[idx];
        let spent = self.state.costs.report().total.cost;
        let need = self.forecast(unit.clone()).cost;
        // An iteration leaves room for the polish (as planned: its drafts drawn again).
        let polish = units
            .iter()
            .find(|u| schedule[u.start].1 == StageKind::Polish && kind != StageKind::Polish);
        let reserve = polish.map_or(0.0, |u| {
            let params = &self.params;
            let planned = planned_stages(params)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| u.contains(i))
                .map(|(_, s)| s);
            let left = self
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            forecast_of(
                planned,
                &self.engines.models(),
                &self.pricing,
                |op| self.engines.tier_for(op, left, 1),
                &self.engines.turnaround(),
            )
            .cost
        });
        if spent + need + reserve <= budget {
            return Ok(None);
        }
        let what = if kind == StageKind::Polish {
            "the polish".to_owned()
        } else if reserve > 0.0 {
            format!("iteration {it} (with ${reserve:.4} kept for the polish)")
        } else {
            format!("iteration {it}")
        };
        let need = need + reserve;
        let reason = format!(
            "budget ${budget:.4}: spent ${spent:.4}; {what} is forecast at ${need:.4}, which would              take the total to ${:.4}",
            spent + need
        );
        if self.state.best_so_far().is_none() {
            return Err(Error::Param {
                name: "budget",
                problem: format!("{reason}: no image could be judged within it"),
            });
        }
        tracing::info!(session = %self.id, %reason, "stopping at the budget");
        self.state.stopped = Some(match self.state.stopped.take() {
            Some(before) => format!("{before}; {reason}"),
            None => reason,
        });
        let polish = (schedule.iter()).position(|(_, k)| *k == StageKind::Polish);
        Ok(Some(match polish {
            Some(p) if p > idx => p,
            _ => schedule.len(),
        }))
    }

    async fn run_stages(&mut self) -> Result<()> {
        let schedule = self.params.schedule();
        while self.next_stage < schedule.len() {
            let idx = self.next_stage;
            if let Some(next) = self.budget_gate(idx)? {
                self.next_stage = next;
                let snapshot = serde_json::to_string(&self.state).map_err(Error::Encode)?;
                self.store
                    .checkpoint(&self.id, self.next_stage, &snapshot)
                    .await?;
                continue;
            }
            let (iteration, kind) = schedule[idx];
            self.stage(idx, kind, iteration, schedule.len() - idx)
                .await?;
            self.next_stage = idx + 1;
            let snapshot = serde_json::to_string(&self.state).map_err(Error::Encode)?;
            self.store
                .checkpoint(&self.id, self.next_stage, &snapshot)
                .await?;
            self.write_session_json(None).await?;
        }
        Ok(())
    }

    pub(super) fn writing(&self) -> Writing {
        Writing {
            idea: self.params.idea.clone(),
            temperature: self.params.temperature,
            seed: self.params.seed,
        }
    }

    pub(super) fn new_candidates(
        &mut self,
        iteration: u32,
        parents: &[Option<String>],
    ) -> Vec<String> {
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

    pub(super) fn adopt_proposals(
        &mut self,
        it: u32,
        proposals: Vec<(String, Proposal)>,
    ) -> Result<()> {
        let lineage: Vec<Option<String>> = proposals.iter().map(|(p, _)| Some(p.clone())).collect();
        let ids = self.new_candidates(it, &lineage);
        for (id, (_, p)) in ids.iter().zip(proposals) {
            let c = self.state.candidate_mut(&self.id, id)?;
            (c.what, c.how, c.combined) = (p.what, p.how, p.combined);
        }
        Ok(())
    }

    pub(super) fn require_alive(
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

    async fn write_session_json(&self, report: Option<&CostReport>) -> Result<()> {
        let doc = serde_json::json!({
            "id": self.id,
            "params": self.params,
            "stages_done": self.next_stage,
            "stages": self.state.stages,
            "pool": self.state.pool,
            "rating_scale": RatingScale::of(self.params.judging),
            "best_by_iteration": self.state.best_by_iteration(),
            "comparisons": self.state.comparisons,
            "candidates": self.state.candidates,
            "calls": self.state.costs,
            "cost": report,
            "forecast": self.state.forecast,
            "stopped": self.state.stopped,
            "draft_best": self.state.draft_best,
            "polished": self.state.polished,
        });
        let path = self.folder.join("session.json");
        let tmp = self.folder.join("session.json.tmp");
        let text = serde_json::to_vec_pretty(&doc).map_err(Error::Encode)?;
        write_atomic(&tmp, &path, &text)
            .await
            .map_err(|source| Error::Io { path, source })
    }
}
