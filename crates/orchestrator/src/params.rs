//! The search's parameters, the plans that group its calls into stages, and their checks.

use std::fmt;
use std::str::FromStr;

use batch_format::ImageDetail;
use serde::{Deserialize, Serialize};

use crate::Error;

mod schedule;

use schedule::check_schedule;
pub use schedule::{QUALITIES, RenderSetting, parse_schedule};

/// How images are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgingMode {
    /// Each image scored alone, 0-10 on alignment and aesthetics; votes averaged.
    Scoring,
    /// Images compared in pairs, children together with their parents (whose order is known);
    /// each vote swaps A/B at random and the majority wins each pair.
    Comparative,
}

/// How the search's calls are grouped into stages (each stage one batch round trip in batch
/// mode); see `docs/orchestrator.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// The guide's chain: expand, combine, render, judge; then critique, refine, combine,
    /// render, judge (4 + 5 per later iteration).
    Classic,
    /// One structured call per candidate or parent writes WHAT, HOW and the combined prompt
    /// (and the critique): 3 stages per iteration.
    Fused,
    /// `fused` whose judge also critiques and proposes the children: 2 stages per iteration
    /// after the first expansion.
    JudgeRefines,
}

impl Plan {
    /// Every plan.
    pub const ALL: [Plan; 3] = [Plan::Classic, Plan::Fused, Plan::JudgeRefines];

    /// The name used on the command line and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Plan::Classic => "classic",
            Plan::Fused => "fused",
            Plan::JudgeRefines => "judge_refines",
        }
    }

    /// The stages of a search of `iterations` rounds, in order.
    pub fn stages(self, iterations: u32) -> Vec<StageKind> {
        self.schedule(iterations)
            .into_iter()
            .map(|(_, k)| k)
            .collect()
    }

    /// The stages of a search of `iterations` rounds, in order, each with its iteration.
    pub fn schedule(self, iterations: u32) -> Vec<(u32, StageKind)> {
        use StageKind::{
            Combine, Critique, Expand, ExpandFused, Judge, Refine, RefineFused, Render,
        };
        let mut out = Vec::new();
        for it in 0..iterations {
            let kinds: &[StageKind] = match (self, it == 0) {
                (Plan::Classic, true) => &[Expand, Combine, Render, Judge],
                (Plan::Classic, false) => &[Critique, Refine, Combine, Render, Judge],
                (Plan::Fused | Plan::JudgeRefines, true) => &[ExpandFused, Render, Judge],
                (Plan::Fused, false) => &[RefineFused, Render, Judge],
                (Plan::JudgeRefines, false) => &[Render, Judge],
            };
            out.extend(kinds.iter().map(|k| (it, *k)));
        }
        out
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = Error;

    fn from_str(s: &str) -> Result<Plan, Error> {
        let t = s.trim().to_ascii_lowercase().replace('-', "_");
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str() == t)
            .ok_or_else(|| Error::Param {
                name: "plan",
                problem: format!("'{s}' is not one of classic, fused, judge_refines"),
            })
    }
}

impl FromStr for JudgingMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<JudgingMode, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scoring" => Ok(JudgingMode::Scoring),
            "comparative" => Ok(JudgingMode::Comparative),
            _ => Err(Error::Param {
                name: "judging",
                problem: format!("'{s}' is not one of scoring, comparative"),
            }),
        }
    }
}

/// What a stage does; each is one set of independent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// WHAT and HOW written separately from the idea (2 calls per candidate).
    Expand,
    /// WHAT, HOW and the combined prompt in one structured call per candidate.
    ExpandFused,
    /// WHAT and HOW combined into the image prompt (1 call per candidate).
    Combine,
    /// Each parent critiqued (1 call per parent).
    Critique,
    /// Each child refined from its parent and the critique (1 call per child).
    Refine,
    /// Each parent's critique and its children, combined, in one structured call.
    RefineFused,
    /// Each combined prompt rendered (1 image per candidate).
    Render,
    /// The images judged (votes, or pairs times votes), and in `judge_refines` the proposals.
    Judge,
    /// After the search: the top `polish` candidates rendered again at full quality.
    Polish,
    /// The polished images judged against each other: the session's final pick.
    PolishJudge,
}

impl StageKind {
    /// The operation whose tier carries the stage's calls.
    pub const fn operation(self) -> providers::Operation {
        use providers::Operation;
        match self {
            StageKind::Expand | StageKind::ExpandFused => Operation::Expand,
            StageKind::Combine => Operation::Combine,
            StageKind::Critique => Operation::Critique,
            StageKind::Refine | StageKind::RefineFused => Operation::Refine,
            StageKind::Render | StageKind::Polish => Operation::Render,
            StageKind::Judge | StageKind::PolishJudge => Operation::Judge,
        }
    }

    /// The stage's name in events, keys and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            StageKind::Expand => "expand",
            StageKind::ExpandFused => "expand_fused",
            StageKind::Combine => "combine",
            StageKind::Critique => "critique",
            StageKind::Refine => "refine",
            StageKind::RefineFused => "refine_fused",
            StageKind::Render => "render",
            StageKind::Judge => "judge",
            StageKind::Polish => "polish",
            StageKind::PolishJudge => "polish_judge",
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The search's parameters; [`SearchParams::new`] gives the guide's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchParams {
    /// The user's idea.
    pub idea: String,
    /// Candidates per iteration (9).
    pub n: u32,
    /// Survivors kept (3); each parent gets `n / m` children.
    pub m: u32,
    /// Rounds, counting the first expansion (3).
    pub iterations: u32,
    /// Weight of alignment in the total (0.7).
    pub alpha: f64,
    /// Votes per judgement (3).
    pub ensemble: u32,
    /// How images are judged (comparative).
    pub judging: JudgingMode,
    /// How calls are grouped into stages (fused).
    pub plan: Plan,
    /// The prompt writer's temperature (0.9; dropped for reasoning models).
    pub temperature: Option<f64>,
    /// Seeds the calls and the A/B swaps: the same seed gives the same search.
    pub seed: u64,
    /// The detail level judges see images at (low: 512 px, the cheapest).
    pub detail: ImageDetail,
    /// Image size asked of the image model (its default when `None`).
    pub image_size: Option<String>,
    /// Image quality asked of the image model (its default when `None`): the full quality,
    /// which iterations render at unless `render_schedule` says otherwise and polish renders at.
    pub image_quality: Option<String>,
    /// Per-iteration render settings (a shorter list repeats its last item; empty: every
    /// iteration at full quality). Absent in sessions from before schedules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub render_schedule: Vec<RenderSetting>,
    /// After the search, the top this many candidates are rendered again at full quality and
    /// judged against each other for the final pick (0: no polish).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub polish: u32,
    /// The most the session may cost (USD at the tiers it runs on): no iteration (or polish)
    /// is started whose forecast would take the total over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Bounds a search is held to.
pub const MAX_N: u32 = 64;
/// The most iterations.
pub const MAX_ITERATIONS: u32 = 20;
/// The most votes per judgement.
pub const MAX_ENSEMBLE: u32 = 9;
/// The most candidates a polish renders again.
pub const MAX_POLISH: u32 = 16;
/// The longest idea, in characters.
pub const MAX_IDEA_CHARS: usize = 4_000;

impl SearchParams {
    /// The guide's session for `idea`: n=9, m=3, 3 iterations, alpha 0.7, ensemble 3,
    /// comparative judging, the fused plan.
    pub fn new(idea: impl Into<String>) -> SearchParams {
        SearchParams {
            idea: idea.into(),
            n: 9,
            m: 3,
            iterations: 3,
            alpha: 0.7,
            ensemble: 3,
            judging: JudgingMode::Comparative,
            plan: Plan::Fused,
            temperature: Some(0.9),
            seed: 0,
            detail: ImageDetail::Low,
            image_size: None,
            image_quality: None,
            render_schedule: Vec::new(),
            polish: 0,
            budget_usd: None,
        }
    }

    /// The full-quality setting: the session's `image_quality` and `image_size`.
    pub fn full_render(&self) -> RenderSetting {
        RenderSetting {
            quality: self.image_quality.clone(),
            size: self.image_size.clone(),
        }
    }

    /// What iteration `it` renders at: its schedule item (the last for iterations past the
    /// list) over the full-quality setting.
    pub fn render_at(&self, it: u32) -> RenderSetting {
        let full = self.full_render();
        match self
            .render_schedule
            .get(it as usize)
            .or(self.render_schedule.last())
        {
            Some(s) => s.or(&full),
            None => full,
        }
    }

    /// Whether the parents judged in iteration `it`'s pool were rendered at another setting
    /// (they are rendered again, so that every comparison is between images of one quality).
    pub fn rerenders_parents(&self, it: u32) -> bool {
        it > 0 && self.render_at(it) != self.render_at(it - 1)
    }

    /// Whether any iteration renders below full quality (a polish then renders again).
    pub fn has_drafts(&self) -> bool {
        let full = self.full_render();
        (0..self.iterations).any(|it| self.render_at(it) != full)
    }

    /// The session's stages in order, each with its iteration: the plan's, then, with
    /// `polish`, the polish render and its judge (iteration = `iterations`).
    pub fn schedule(&self) -> Vec<(u32, StageKind)> {
        let mut out = self.plan.schedule(self.iterations);
        if self.polish > 0 {
            out.push((self.iterations, StageKind::Polish));
            out.push((self.iterations, StageKind::PolishJudge));
        }
        out
    }

    /// How many stages the session has.
    pub fn stage_count(&self) -> usize {
        self.schedule().len()
    }

    /// Children per parent.
    pub fn children_per_parent(&self) -> u32 {
        self.n / self.m.max(1)
    }

    /// Checks every parameter, naming the first that is out of bounds and why.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |name: &'static str, problem: String| Err(Error::Param { name, problem });
        let idea = self.idea.trim();
        if idea.is_empty() {
            return bad("idea", "is empty".into());
        }
        if idea.chars().count() > MAX_IDEA_CHARS {
            return bad(
                "idea",
                format!(
                    "has {} characters; at most {MAX_IDEA_CHARS}",
                    idea.chars().count()
                ),
            );
        }
        if !(1..=MAX_N).contains(&self.n) {
            return bad("n", format!("{} is outside 1-{MAX_N}", self.n));
        }
        if self.m == 0 || self.m > self.n {
            return bad("m", format!("{} is outside 1-{} (n)", self.m, self.n));
        }
        if !self.n.is_multiple_of(self.m) {
            return bad(
                "n",
                format!(
                    "{} is not a multiple of m = {} (each survivor gets n / m children)",
                    self.n, self.m
                ),
            );
        }
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return bad(
                "iterations",
                format!("{} is outside 1-{MAX_ITERATIONS}", self.iterations),
            );
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return bad("alpha", format!("{} is outside 0-1", self.alpha));
        }
        if !(1..=MAX_ENSEMBLE).contains(&self.ensemble) {
            return bad(
                "ensemble",
                format!("{} is outside 1-{MAX_ENSEMBLE}", self.ensemble),
            );
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return bad("temperature", format!("{t} is outside 0-2"));
        }
        if let Some(q) = &self.image_quality
            && !QUALITIES.contains(&q.as_str())
        {
            return bad(
                "image_quality",
                format!("'{q}' is not one of {}", QUALITIES.join(", ")),
            );
        }
        check_schedule(&self.render_schedule, self.iterations)?;
        if self.polish > MAX_POLISH {
            return bad(
                "polish",
                format!("{} is outside 0-{MAX_POLISH}", self.polish),
            );
        }
        if let Some(b) = self.budget_usd
            && !(b.is_finite() && b > 0.0)
        {
            return bad("budget", format!("{b} is not a positive number of dollars"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
