//! What a session keeps between stages (its checkpoint), and what a finished one returns.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::candidate::Candidate;
use crate::cost::{CostReport, CostTracker};
use crate::params::SearchParams;
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
