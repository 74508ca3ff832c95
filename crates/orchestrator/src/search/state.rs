//! What a session keeps between stages (its checkpoint), and what a finished one returns.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::candidate::Candidate;
use crate::cost::{CostReport, CostTracker};
use crate::estimate::Forecast;
use crate::params::SearchParams;
use crate::rating::{PairResult, RatingScale};
use crate::store::StageRecord;
use crate::{Error, Result};

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
    /// The rating of the best of each iteration, as fitted then: `(iteration, rating)`.
    #[serde(default)]
    pub best_ratings: Vec<(u32, f64)>,
    /// Comparative mode: every pair judged in the session, with the votes each side won (the
    /// evidence the ratings are fitted to). Empty in checkpoints from before ratings.
    #[serde(default)]
    pub comparisons: Vec<PairResult>,
    /// The forecast made before the session sent anything (its whole plan, on the tiers then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
    /// Why the session ended before its last stage (its budget), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Polish: the best before it (the draft judges' pick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_best: Option<String>,
    /// Polish: the candidates rendered (or already) at full quality and judged again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polished: Vec<String>,
    /// Polish: its judges' pick, the session's best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_pick: Option<String>,
}

impl SearchState {
    pub(super) fn get(&self, id: &str) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.id == id)
    }

    /// Candidate `id`, which the state must hold (ids come from its own lists): a checkpoint
    /// whose lists name a candidate it does not hold is corrupt.
    pub(super) fn candidate_mut(&mut self, session: &str, id: &str) -> Result<&mut Candidate> {
        self.candidates
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::Checkpoint {
                session: session.to_owned(),
                field: "snapshot",
                problem: format!("its lists name candidate '{id}', which it does not hold"),
            })
    }

    /// The best judged candidate so far: the highest rating (a candidate without one ranks
    /// below every rated one), then the earlier place in the current pool, then the id.
    pub(super) fn best_so_far(&self) -> Option<&Candidate> {
        if let Some(pick) = self.final_pick.as_deref().and_then(|id| self.get(id))
            && pick.alive()
        {
            return Some(pick);
        }
        self.ranked().into_iter().next()
    }

    /// Every judged candidate, best first: the highest rating (a candidate without one ranks
    /// below every rated one), then the earlier place in the current pool, then the id.
    pub(super) fn ranked(&self) -> Vec<&Candidate> {
        let place = |c: &Candidate| self.pool.iter().position(|p| *p == c.id);
        let mut out: Vec<&Candidate> = self
            .candidates
            .iter()
            .filter(|c| c.alive() && c.verdict.is_some())
            .collect();
        out.sort_by(|x, y| {
            let rating = |c: &Candidate| c.rating.unwrap_or(f64::NEG_INFINITY);
            rating(y)
                .total_cmp(&rating(x))
                .then_with(|| match (place(x), place(y)) {
                    (Some(a), Some(b)) => a.cmp(&b),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                })
                .then_with(|| x.id.cmp(&y.id))
        });
        out
    }

    /// The best candidate after each iteration, with its score, wins and rating then.
    pub fn best_by_iteration(&self) -> Vec<IterationBest> {
        self.best
            .iter()
            .map(|(it, id, score)| IterationBest {
                iteration: *it,
                id: id.clone(),
                score: *score,
                wins: self
                    .best_wins
                    .iter()
                    .find(|(i, _, _)| i == it)
                    .map(|(_, won, of)| (*won, *of)),
                rating: self
                    .best_ratings
                    .iter()
                    .find(|(i, _)| i == it)
                    .map(|(_, r)| *r),
            })
            .collect()
    }

    pub(super) fn alive(&self, ids: &[String]) -> Vec<Candidate> {
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
    /// The scale of the ratings (`best.rating`, `best_by_iteration[].rating`).
    pub rating_scale: RatingScale,
    /// The forecast made before it sent anything (`None` for sessions from before forecasts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
    /// Why it ended before its last stage (its budget), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// With a polish: the best before it, as the draft judges ranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_best: Option<String>,
    /// With a polish: the candidates judged again at full quality.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub polished: Vec<String>,
}

/// The best candidate after one iteration, as judged then: the highest-rated of the session so
/// far.
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
    /// Its rating across the session as fitted after this iteration (comparative: Elo-like,
    /// from every comparison so far; scoring: its total); `None` in sessions from before
    /// ratings.
    pub rating: Option<f64>,
}

/// The outcome of a session whose stages have all run, from its state.
pub(super) fn outcome_of(
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
    let best = state.best_so_far().cloned().ok_or_else(no_best)?;
    Ok(SessionOutcome {
        id: id.to_owned(),
        folder: folder.to_owned(),
        best,
        calls: state.stages.iter().map(|s| s.calls).sum(),
        stages: state.stages.clone(),
        report: state.costs.report(),
        best_by_iteration: state.best_by_iteration(),
        rating_scale: RatingScale::of(params.judging),
        forecast: state.forecast.clone(),
        stopped: state.stopped.clone(),
        draft_best: state.draft_best.clone(),
        polished: state.polished.clone(),
    })
}
