//! What a stored session reads as: its parameters, its state and its report, each field
//! checked, so that a corrupt or foreign checkpoint is an error naming the session and the
//! field instead of a panic or a silent default.

use std::path::PathBuf;

use serde::Serialize;

use super::{SessionRow, SessionState};
use crate::cost::CostReport;
use crate::params::{Plan, SearchParams};
use crate::rating::RatingScale;
use crate::search::SearchState;
use crate::{Error, Result};

impl SessionRow {
    fn corrupt(&self, field: &'static str, problem: impl ToString) -> Error {
        Error::Checkpoint {
            session: self.id.clone(),
            field,
            problem: problem.to_string(),
        }
    }

    /// The parameters the session was started with.
    pub fn search_params(&self) -> Result<SearchParams> {
        serde_json::from_str(&self.params).map_err(|e| self.corrupt("params", e))
    }

    /// The state after its last finished stage (empty before the first).
    pub fn search_state(&self) -> Result<SearchState> {
        match &self.snapshot {
            Some(s) => serde_json::from_str(s).map_err(|e| self.corrupt("snapshot", e)),
            None => Ok(SearchState::default()),
        }
    }

    /// Its folder (images and `session.json`).
    pub fn folder_path(&self) -> Result<PathBuf> {
        match self.folder.as_deref() {
            Some(f) if !f.is_empty() => Ok(PathBuf::from(f)),
            _ => Err(self.corrupt("folder", "no session folder recorded")),
        }
    }
}

/// A session in a line, for listings: what its row says, the plan and its number of stages
/// when its parameters can be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The session id.
    pub id: String,
    /// The idea.
    pub idea: String,
    /// Its state.
    pub state: SessionState,
    /// The first stage not yet finished (the number of stages finished).
    pub next_stage: usize,
    /// Its folder.
    pub folder: Option<String>,
    /// The plan, when its parameters can be read.
    pub plan: Option<Plan>,
    /// The stages its plan has, when its parameters can be read.
    pub stages: Option<usize>,
    /// The best candidate so far and its rating, once an iteration was judged (and its
    /// checkpoint can be read).
    pub best: Option<BestSoFar>,
}

/// A session's best candidate so far, in a line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BestSoFar {
    /// The candidate.
    pub id: String,
    /// Its score in the pool it was last judged in (0-10).
    pub score: f64,
    /// Its rating across the session, on `scale` (`None` in sessions from before ratings).
    pub rating: Option<f64>,
    /// The scale of `rating`.
    pub scale: RatingScale,
}

impl BestSoFar {
    fn of(params: &SearchParams, state: &SearchState) -> Option<BestSoFar> {
        let best = (state.best_by_iteration().into_iter()).max_by_key(|b| b.iteration)?;
        Some(BestSoFar {
            id: best.id,
            score: best.score,
            rating: best.rating,
            scale: RatingScale::of(params.judging),
        })
    }
}

impl SessionSummary {
    pub(super) fn of(row: &SessionRow) -> SessionSummary {
        let params = row.search_params().ok();
        let best = params
            .as_ref()
            .zip(row.search_state().ok())
            .and_then(|(p, state)| BestSoFar::of(p, &state));
        SessionSummary {
            id: row.id.clone(),
            idea: row.idea.clone(),
            state: row.state,
            next_stage: row.next_stage,
            folder: row.folder.clone(),
            plan: params.as_ref().map(|p| p.plan),
            stages: params.map(|p| p.stage_count()),
            best,
        }
    }
}

/// One session's report: its line and the cost of every call it made so far.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    /// The session in a line.
    pub summary: SessionSummary,
    /// Its cost so far, per operation and tier.
    pub cost: CostReport,
}

impl SessionReport {
    pub(super) fn of(row: &SessionRow) -> Result<SessionReport> {
        let params = row.search_params()?;
        let state = row.search_state()?;
        let mut summary = SessionSummary::of(row);
        summary.plan = Some(params.plan);
        summary.stages = Some(params.stage_count());
        Ok(SessionReport {
            summary,
            cost: state.costs.report(),
        })
    }
}
