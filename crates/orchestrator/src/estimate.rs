//! What a session is expected to cost before it runs: the calls its plan makes (every stage,
//! no failures, each iteration's renders at its scheduled quality, the polish) priced with the
//! price table on the tier each operation is routed to; and the forecast a session and its
//! user see: calls, tokens, images and cost per operation and tier, and the wall time per tier.
//!
//! The call counts are exact for a session in which nothing fails. Token counts are typical
//! figures per call ([`typical_usage`], measured on openai-sim's models): real models write
//! longer or shorter answers, but the renders, priced per image, are most of a session's cost.

use std::time::Duration;

use batch_format::Usage;
use providers::{Operation, Role, RoleModels, Tier};
use serde::{Deserialize, Serialize};

use crate::cost::{Call, Pricing};
use crate::engines::Turnaround;
use crate::params::{JudgingMode, Plan, RenderSetting, SearchParams, StageKind};

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
    /// For a render or polish stage: the setting its images are made at.
    pub render: Option<RenderSetting>,
}

impl PlannedStage {
    /// How many calls it makes.
    pub fn total(&self) -> u64 {
        self.calls.iter().map(|(_, n)| n).sum()
    }
}

/// Every stage of `params`' plan with its calls, for a session in which nothing fails.
///
/// A render stage whose setting differs from the last iteration's also renders the parents
/// again (they are judged with the children, at one quality). A polish renders again the top
/// `polish` candidates, which are expected from the last pool: none when the last iteration
/// rendered at full quality (its pool, parents included, is at full quality then), all of them
/// otherwise; then compares them all.
pub fn planned_stages(params: &SearchParams) -> Vec<PlannedStage> {
    let (n, m, e) = (
        u64::from(params.n),
        u64::from(params.m),
        u64::from(params.ensemble),
    );
    let pairs = |k: u64| k * k.saturating_sub(1) / 2;
    let last = params.iterations.saturating_sub(1);
    let k = u64::from(params.polish).min(if params.iterations > 1 { n + m } else { n });
    let full = params.full_render();
    params
        .schedule()
        .into_iter()
        .map(|(it, kind)| {
            let write = |count| vec![(CallKind::Write(kind), count)];
            let mut render = None;
            let calls = match kind {
                StageKind::Expand => write(2 * n),
                StageKind::ExpandFused | StageKind::Combine | StageKind::Refine => write(n),
                StageKind::Critique | StageKind::RefineFused => write(m),
                StageKind::Render => {
                    render = Some(params.render_at(it));
                    let again = if params.rerenders_parents(it) { m } else { 0 };
                    vec![(CallKind::Render, n + again)]
                }
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
                StageKind::Polish => {
                    render = Some(full.clone());
                    let drafts = params.render_at(last) != full;
                    vec![(CallKind::Render, if drafts { k } else { 0 })]
                }
                StageKind::PolishJudge => vec![match params.judging {
                    JudgingMode::Scoring => (CallKind::Score, k * e),
                    JudgingMode::Comparative => (CallKind::Compare, pairs(k) * e),
                }],
            };
            PlannedStage {
                iteration: it,
                kind,
                calls,
                render,
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
    let f = forecast(
        params,
        from_stage..usize::MAX,
        models,
        pricing,
        tier_of,
        &Turnaround::default(),
    );
    Estimate {
        calls: f.calls,
        cost: f.cost,
    }
}

/// One operation on one tier in a [`Forecast`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastRow {
    /// The operation.
    pub operation: Operation,
    /// The tier it is expected on.
    pub tier: Tier,
    /// Calls.
    pub calls: u64,
    /// Input tokens (typical figures).
    pub input_tokens: u64,
    /// Output tokens (typical figures; renders' images are priced per image instead).
    pub output_tokens: u64,
    /// Images rendered.
    pub images: u64,
    /// USD.
    pub cost: f64,
}

/// The stages expected on one tier and how long they take, from the turnaround estimates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierWait {
    /// The tier.
    pub tier: Tier,
    /// Stages on it.
    pub stages: usize,
    /// Expected wall time of those stages, in seconds.
    pub seconds: f64,
}

/// What a session (or part of one) is expected to make and cost before it sends anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Per operation and tier, in pipeline order.
    pub rows: Vec<ForecastRow>,
    /// Calls in all.
    pub calls: u64,
    /// Images in all.
    pub images: u64,
    /// USD in all, at the tiers forecast.
    pub cost: f64,
    /// Stages and wall time per tier.
    pub wait: Vec<TierWait>,
    /// Expected wall time of the whole, in seconds (stages run one after another).
    pub seconds: f64,
}

/// The forecast of `params`' stages whose index is in `stages` (`0..usize::MAX`: the whole
/// session), each operation on `tier_of(op)`, priced by `pricing`, the wall time from
/// `turnaround`. A simulated tier is priced as standard, as the cost tracker records it.
pub fn forecast(
    params: &SearchParams,
    stages: std::ops::Range<usize>,
    models: &RoleModels,
    pricing: &Pricing,
    tier_of: impl Fn(Operation) -> Tier,
    turnaround: &Turnaround,
) -> Forecast {
    let planned = planned_stages(params)
        .into_iter()
        .enumerate()
        .filter(|(idx, _)| stages.contains(idx))
        .map(|(_, s)| s);
    forecast_of(planned, models, pricing, tier_of, turnaround)
}

/// The forecast of the given planned stages (as [`forecast`]).
pub fn forecast_of(
    stages: impl IntoIterator<Item = PlannedStage>,
    models: &RoleModels,
    pricing: &Pricing,
    tier_of: impl Fn(Operation) -> Tier,
    turnaround: &Turnaround,
) -> Forecast {
    let mut out = Forecast::default();
    for stage in stages {
        let op = stage.kind.operation();
        let tier = match tier_of(op) {
            Tier::Simulated => Tier::Standard,
            t => t,
        };
        let took = turnaround.of(tier);
        match out.wait.iter_mut().find(|w| w.tier == tier) {
            Some(w) => {
                w.stages += 1;
                w.seconds += took.as_secs_f64();
            }
            None => out.wait.push(TierWait {
                tier,
                stages: 1,
                seconds: took.as_secs_f64(),
            }),
        }
        out.seconds += took.as_secs_f64();
        for (kind, count) in stage.calls {
            if count == 0 {
                continue;
            }
            let usage = typical_usage(kind);
            let call = match kind {
                CallKind::Render => {
                    let setting = stage.render.clone().unwrap_or_default();
                    Call::render(tier, &models.image, usage, setting.size, setting.quality)
                }
                _ => {
                    let model = match op.role() {
                        Role::Vision => &models.vision,
                        _ => &models.llm,
                    };
                    Call::chat(op, tier, model, usage)
                }
            };
            // Counts are small: the conversions are exact.
            let cost = pricing.price_or_note(call).cost * count as f64;
            let images = if kind == CallKind::Render { count } else { 0 };
            let row = match out
                .rows
                .iter_mut()
                .find(|r| r.operation == op && r.tier == tier)
            {
                Some(r) => r,
                None => {
                    out.rows.push(ForecastRow {
                        operation: op,
                        tier,
                        calls: 0,
                        input_tokens: 0,
                        output_tokens: 0,
                        images: 0,
                        cost: 0.0,
                    });
                    let last = out.rows.len() - 1;
                    &mut out.rows[last]
                }
            };
            row.calls += count;
            row.input_tokens += usage.input_tokens * count;
            row.output_tokens += usage.output_tokens * count;
            row.images += images;
            row.cost += cost;
            out.calls += count;
            out.images += images;
            out.cost += cost;
        }
    }
    out.rows.sort_by_key(|r| {
        (
            Operation::ALL.iter().position(|o| *o == r.operation),
            r.tier.as_str(),
        )
    });
    out
}

/// The stage ranges a budget is checked on: each iteration's stages, then the polish's.
pub fn units(params: &SearchParams) -> Vec<std::ops::Range<usize>> {
    let schedule = params.schedule();
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (idx, (it, _)) in schedule.iter().enumerate() {
        match out.last_mut() {
            Some(r) if schedule[r.start].0 == *it => r.end = idx + 1,
            _ => out.push(idx..idx + 1),
        }
    }
    out
}

impl Forecast {
    /// The expected wall time of the whole.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.0))
    }
}

impl std::fmt::Display for Forecast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<10} {:<9} {:>6} {:>7} {:>9} {:>9} {:>10}",
            "operation", "tier", "calls", "images", "input", "output", "cost"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<10} {:<9} {:>6} {:>7} {:>9} {:>9} {:>10}",
                r.operation.as_str(),
                r.tier.as_str(),
                r.calls,
                r.images,
                r.input_tokens,
                r.output_tokens,
                format!("${:.4}", r.cost)
            )?;
        }
        writeln!(
            f,
            "{:<10} {:<9} {:>6} {:>7} {:>9} {:>9} {:>10}",
            "total",
            "",
            self.calls,
            self.images,
            self.rows.iter().map(|r| r.input_tokens).sum::<u64>(),
            self.rows.iter().map(|r| r.output_tokens).sum::<u64>(),
            format!("${:.4}", self.cost)
        )?;
        for w in &self.wait {
            writeln!(
                f,
                "wall time on {}: {} stage{}, ≈ {}",
                w.tier.as_str(),
                w.stages,
                if w.stages == 1 { "" } else { "s" },
                hours(w.seconds)
            )?;
        }
        Ok(())
    }
}

/// `45 s`, `12 min`, `3.5 h`.
fn hours(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7_200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3_600.0)
    }
}

#[cfg(test)]
mod tests;
