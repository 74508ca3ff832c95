//! What a session is expected to cost before it runs: the calls its plan makes (every stage,
//! no failures) priced with the price table on the tier each operation is routed to.
//!
//! The call counts are exact for a session in which nothing fails. Token counts are typical
//! figures per call ([`typical_usage`], measured on openai-sim's models): real models write
//! longer or shorter answers, but the renders, priced per image, are most of a session's cost.

use batch_format::Usage;
use providers::{Operation, Role, RoleModels, Tier};

use crate::cost::{Call, Pricing};
use crate::params::{JudgingMode, Plan, SearchParams, StageKind};

/// What one call of a plan does, as far as its size goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A writer's call of the stage's kind.
    Write(StageKind),
    /// One image.
    Render,
    /// One scoring vote (one image).
    Score,
    /// One comparison vote (two images).
    Compare,
    /// A `judge_refines` review: critique and proposed children from one image.
    Review,
}

/// One stage of a plan and the calls it makes when nothing fails.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStage {
    /// Its iteration.
    pub iteration: u32,
    /// What it does.
    pub kind: StageKind,
    /// Its calls, by kind.
    pub calls: Vec<(CallKind, u64)>,
}

impl PlannedStage {
    /// How many calls it makes.
    pub fn total(&self) -> u64 {
        self.calls.iter().map(|(_, n)| n).sum()
    }
}

/// Every stage of `params`' plan with its calls, for a session in which nothing fails.
pub fn planned_stages(params: &SearchParams) -> Vec<PlannedStage> {
    let (n, m, e) = (
        u64::from(params.n),
        u64::from(params.m),
        u64::from(params.ensemble),
    );
    let pairs = |k: u64| k * k.saturating_sub(1) / 2;
    params
        .plan
        .schedule(params.iterations)
        .into_iter()
        .map(|(it, kind)| {
            let write = |count| vec![(CallKind::Write(kind), count)];
            let calls = match kind {
                StageKind::Expand => write(2 * n),
                StageKind::ExpandFused | StageKind::Combine | StageKind::Refine => write(n),
                StageKind::Critique | StageKind::RefineFused => write(m),
                StageKind::Render => vec![(CallKind::Render, n)],
                StageKind::Judge => {
                    // The first pool is n new images; later ones add the m parents, whose
                    // pairs among themselves are known already.
                    let parents = if it == 0 { 0 } else { m };
                    let mut calls = vec![match params.judging {
                        JudgingMode::Scoring => (CallKind::Score, n * e),
                        JudgingMode::Comparative => {
                            (CallKind::Compare, (pairs(n + parents) - pairs(parents)) * e)
                        }
                    }];
                    if params.plan == Plan::JudgeRefines && it + 1 < params.iterations {
                        calls.push((CallKind::Review, n + parents));
                    }
                    calls
                }
            };
            PlannedStage {
                iteration: it,
                kind,
                calls,
            }
        })
        .collect()
}

/// Typical input and output tokens of one call of `kind` (openai-sim's models, judges seeing
/// images at `low` detail). Renders' output is left out: images are priced per image.
pub fn typical_usage(kind: CallKind) -> Usage {
    let (input, output) = match kind {
        CallKind::Write(StageKind::Expand) => (120, 20),
        CallKind::Write(StageKind::ExpandFused) => (135, 70),
        CallKind::Write(StageKind::Combine) => (155, 50),
        CallKind::Write(StageKind::Critique) => (500, 80),
        CallKind::Write(StageKind::RefineFused) => (520, 400),
        CallKind::Write(_) => (250, 30),
        CallKind::Render => (45, 0),
        CallKind::Score => (175, 135),
        CallKind::Compare => (270, 200),
        CallKind::Review => (280, 420),
    };
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: input + output,
        ..Usage::default()
    }
}

/// A session's expected calls and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Calls it makes.
    pub calls: u64,
    /// USD at the tiers it was estimated on.
    pub cost: f64,
}

/// The expected cost of `params`' stages from `from_stage` on, each operation on
/// `tier_of(op)`, with `models` priced by `pricing`. A call the table cannot price on its
/// tier is priced as the cost tracker would ([`Pricing::price_or_note`]).
pub fn estimate(
    params: &SearchParams,
    from_stage: usize,
    models: &RoleModels,
    pricing: &Pricing,
    tier_of: impl Fn(Operation) -> Tier,
) -> Estimate {
    let mut out = Estimate::default();
    for stage in planned_stages(params).into_iter().skip(from_stage) {
        let op = stage.kind.operation();
        let tier = tier_of(op);
        for (kind, count) in stage.calls {
            let usage = typical_usage(kind);
            let call = match kind {
                CallKind::Render => Call::render(
                    tier,
                    &models.image,
                    usage,
                    params.image_size.clone(),
                    params.image_quality.clone(),
                ),
                _ => {
                    let model = match op.role() {
                        Role::Vision => &models.vision,
                        _ => &models.llm,
                    };
                    Call::chat(op, tier, model, usage)
                }
            };
            out.calls += count;
            // Counts are small: the conversion is exact.
            out.cost += pricing.price_or_note(call).cost * count as f64;
        }
    }
    out
}

#[cfg(test)]
mod tests;
