//! The tree view of a session (`GET /api/job/{jobId}/tree`): every iteration's candidates with
//! their prompts, images, judgements and lineage, the best, the rating curve and the cost. The
//! dashboard and `report.html` render exactly this; [`SessionTree::of_session`] builds it from
//! a stored session, inside the server or outside it (the CLI, with image links relative to
//! the session folder).

use serde::Serialize;

use orchestrator::{Candidate, CostReport, SessionRow, SessionState};

/// How image links are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUrls {
    /// Served by the server: `/api/job/{job}/images/{file}`.
    Job(String),
    /// Relative to the session folder (`images/i0c3.png`), for a report written beside it.
    Relative,
}

impl ImageUrls {
    fn url(&self, image: Option<&str>) -> Option<String> {
        let image = image?;
        match self {
            ImageUrls::Relative => Some(image.to_owned()),
            ImageUrls::Job(job) => {
                let file = image.rsplit('/').next().unwrap_or(image);
                Some(format!("/api/job/{job}/images/{file}"))
            }
        }
    }
}

/// A serde word (`comparative`) as text.
fn word<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A candidate's rating on the session's one scale (Elo-like in comparative mode, its 0-10
/// score in scoring mode; see the orchestrator's `rating`).
pub fn rating_of(c: &Candidate) -> Option<f64> {
    c.rating
}

/// The parameters a tree shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeParams {
    /// Candidates per iteration.
    pub n: u32,
    /// Survivors per iteration.
    pub m: u32,
    /// Iterations.
    pub iterations: u32,
    /// `classic`, `fused` or `judge_refines`.
    pub plan: String,
    /// `scoring` or `comparative`.
    pub judging: String,
    /// Votes per judgement.
    pub ensemble: u32,
    /// The session's seed.
    pub seed: u64,
}

/// One candidate in the tree.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeCandidate {
    /// `i{iteration}c{index}`.
    pub id: String,
    /// Its iteration.
    pub iteration: u32,
    /// The candidate it was refined from.
    pub parent: Option<String>,
    /// The WHAT prompt (content).
    pub what: String,
    /// The HOW prompt (treatment).
    pub how: String,
    /// The combined prompt sent to the image model.
    pub prompt: String,
    /// Its image, once rendered.
    pub image_url: Option<String>,
    /// Its rating (see [`rating_of`]).
    pub rating: Option<f64>,
    /// Its judged score (0-10).
    pub score: Option<f64>,
    /// Its rank in the pool it was judged in (1 = best).
    pub rank: Option<u32>,
    /// The judges' reasons.
    pub reasons: Vec<String>,
    /// What works.
    pub strengths: Vec<String>,
    /// What does not.
    pub weaknesses: Vec<String>,
    /// The critique it was given as a parent.
    pub critique: Option<String>,
    /// Why it dropped out, if a call it needed failed.
    pub failed: Option<String>,
    /// Whether it survived its iteration (kept as a parent, or among the final survivors).
    pub survived: bool,
}

/// One iteration.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeIteration {
    /// The iteration (0 = the first expansion).
    pub iteration: u32,
    /// Its best candidate, once judged.
    pub best_id: Option<String>,
    /// That candidate's rating.
    pub best_rating: Option<f64>,
    /// Its candidates, in order.
    pub candidates: Vec<TreeCandidate>,
}

/// The best candidate so far.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeBest {
    /// Its id.
    pub id: String,
    /// Its combined prompt.
    pub prompt: String,
    /// Its rating.
    pub rating: Option<f64>,
    /// Its image.
    pub image_url: Option<String>,
}

/// A point of the rating curve.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurvePoint {
    /// The iteration.
    pub iteration: u32,
    /// The best rating after it.
    pub best_rating: Option<f64>,
}

/// One operation on one tier in the cost breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostLine {
    /// `expand`, `combine`, `critique`, `refine`, `render`, `judge`.
    pub operation: String,
    /// The tier that carried the calls.
    pub tier: String,
    /// Calls.
    pub calls: u64,
    /// What they cost (USD).
    pub cost: f64,
    /// What they would have cost on the standard tier.
    pub standard_cost: f64,
}

/// The cost of a session.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeCost {
    /// USD spent.
    pub total: f64,
    /// USD the same calls cost all on the standard tier.
    pub all_standard: f64,
    /// `allStandard - total`.
    pub saved: f64,
    /// The models were openai-sim's: nothing was billed (list prices shown).
    pub simulated: bool,
    /// Per operation and tier.
    pub by_operation: Vec<CostLine>,
    /// What the session was forecast to cost before it sent anything.
    pub forecast: Option<f64>,
}

impl TreeCost {
    /// The cost view of a report.
    pub fn of(report: &CostReport, simulated: bool) -> TreeCost {
        TreeCost {
            total: report.total.cost,
            all_standard: report.total.standard_cost,
            saved: report.total.standard_cost - report.total.cost,
            simulated,
            by_operation: report
                .rows
                .iter()
                .map(|r| CostLine {
                    operation: r.operation.as_str().to_owned(),
                    tier: r.tier.as_str().to_owned(),
                    calls: r.totals.calls,
                    cost: r.totals.cost,
                    standard_cost: r.totals.standard_cost,
                })
                .collect(),
            forecast: None,
        }
    }
}

/// The whole tree of a session.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionTree {
    /// The job (empty outside the server).
    pub job_id: String,
    /// The session.
    pub session_id: String,
    /// The idea.
    pub prompt: String,
    /// The job's status (`queued`, `running`, `waiting`, `completed`, `failed`, `cancelled`),
    /// or outside the server the session's (`running`, `completed`, `failed`).
    pub status: String,
    /// The parameters.
    pub params: TreeParams,
    /// Every iteration so far.
    pub iterations: Vec<TreeIteration>,
    /// The best candidate so far.
    pub best: Option<TreeBest>,
    /// The best rating after each judged iteration.
    pub rating_curve: Vec<CurvePoint>,
    /// What the ratings mean: `elo` (comparative judging: one Bradley–Terry fit over the
    /// session's comparisons; 1500 is the first expansion's average, +400 is ten times the
    /// odds of being preferred) or `score` (scoring judging: the judges' 0-10 total).
    pub rating_scale: String,
    /// The cost so far.
    pub cost: TreeCost,
    /// Why the session ended before its last stage (its budget), when it did.
    pub stopped: Option<String>,
    /// With a polish: the drafts' pick, before the best was chosen among the candidates drawn
    /// again at full quality (`best`, whose image is its full-quality one).
    pub draft_best: Option<String>,
}

impl SessionTree {
    /// The tree of a stored session; image links as `urls` says. `status` is the session's
    /// state until [`SessionTree::for_job`] sets the job's.
    pub fn of_session(row: &SessionRow, urls: ImageUrls) -> orchestrator::Result<SessionTree> {
        let params = row.search_params()?;
        let state = row.search_state()?;
        let survivors: Vec<&str> = state.pool.iter().map(String::as_str).collect();
        let is_parent = |id: &str| {
            state
                .candidates
                .iter()
                .any(|c| c.parent.as_deref() == Some(id))
        };
        let mut iterations: Vec<TreeIteration> = Vec::new();
        for c in &state.candidates {
            let at = match iterations.iter().position(|i| i.iteration == c.iteration) {
                Some(at) => at,
                None => {
                    iterations.push(TreeIteration {
                        iteration: c.iteration,
                        best_id: None,
                        best_rating: None,
                        candidates: Vec::new(),
                    });
                    iterations.len() - 1
                }
            };
            // Its judgement among its own iteration's candidates (a survivor is judged again
            // in the next pool, as a parent).
            let v = c.verdict_in(c.iteration);
            iterations[at].candidates.push(TreeCandidate {
                id: c.id.clone(),
                iteration: c.iteration,
                parent: c.parent.clone(),
                what: c.what.clone(),
                how: c.how.clone(),
                prompt: c.combined.clone(),
                image_url: urls.url(c.image.as_deref()),
                rating: rating_of(c),
                score: v.map(|v| v.total),
                rank: v.map(|v| v.rank),
                reasons: v.map(|v| v.reasons.clone()).unwrap_or_default(),
                strengths: v.map(|v| v.strengths.clone()).unwrap_or_default(),
                weaknesses: v.map(|v| v.weaknesses.clone()).unwrap_or_default(),
                critique: c.critique.clone(),
                failed: c.failed.clone(),
                survived: c.failed.is_none()
                    && (is_parent(&c.id) || survivors.contains(&c.id.as_str())),
            });
        }
        iterations.sort_by_key(|i| i.iteration);
        let find = |id: &str| state.candidates.iter().find(|c| c.id == id);
        let mut rating_curve = Vec::new();
        for (iteration, id, _) in &state.best {
            let rating = find(id).and_then(rating_of);
            if let Some(it) = iterations.iter_mut().find(|i| i.iteration == *iteration) {
                it.best_id = Some(id.clone());
                it.best_rating = rating;
            }
            rating_curve.push(CurvePoint {
                iteration: *iteration,
                best_rating: rating,
            });
        }
        let best = (state.final_pick.as_deref())
            .or(state.best.last().map(|(_, id, _)| id.as_str()))
            .and_then(find)
            .map(|c| TreeBest {
                id: c.id.clone(),
                prompt: c.combined.clone(),
                rating: rating_of(c),
                image_url: urls.url(c.image.as_deref()),
            });
        let job_id = match &urls {
            ImageUrls::Job(job) => job.clone(),
            ImageUrls::Relative => String::new(),
        };
        let status = match row.state {
            SessionState::Running => "running",
            SessionState::Completed => "completed",
            SessionState::Failed => "failed",
        };
        Ok(SessionTree {
            job_id,
            session_id: row.id.clone(),
            prompt: params.idea.clone(),
            status: status.to_owned(),
            params: TreeParams {
                n: params.n,
                m: params.m,
                iterations: params.iterations,
                plan: params.plan.to_string(),
                judging: word(&params.judging),
                ensemble: params.ensemble,
                seed: params.seed,
            },
            iterations,
            best,
            rating_curve,
            rating_scale: word(&orchestrator::RatingScale::of(params.judging)),
            cost: TreeCost {
                forecast: state.forecast.as_ref().map(|f| f.cost),
                ..TreeCost::of(&state.costs.report(), false)
            },
            stopped: state.stopped.clone(),
            draft_best: state.draft_best.clone(),
        })
    }

    /// The tree with the job's status and whether its models were simulated.
    pub fn for_job(mut self, status: &str, simulated: bool) -> SessionTree {
        self.status = status.to_owned();
        self.cost.simulated = simulated;
        self
    }
}
