//! Planned stages and their expected cost.

use super::*;

#[test]
fn the_guides_session_makes_the_calls_the_search_makes() {
    let mut p = SearchParams::new("a fox");
    let count = |p: &SearchParams| -> u64 { planned_stages(p).iter().map(|s| s.total()).sum() };
    // fused: 9 expand, 3 × 9 renders, 108 + 2 × 189 comparisons, 2 × 3 refine.
    assert_eq!(count(&p), 9 + 27 + 108 + 378 + 6);
    p.plan = Plan::Classic;
    assert_eq!(count(&p), 18 + 27 + 27 + 486 + 6 + 18);
    p.plan = Plan::JudgeRefines;
    // The two first judges also review their pools (9, then 12).
    assert_eq!(count(&p), 9 + 27 + 486 + 9 + 12);
    p.judging = JudgingMode::Scoring;
    assert_eq!(
        planned_stages(&p)[2].calls,
        [(CallKind::Score, 27), (CallKind::Review, 9)]
    );
}

#[test]
fn the_estimate_prices_each_tier_and_batch_is_half() {
    let p = SearchParams::new("a fox");
    let models = RoleModels::default();
    let pricing = Pricing::builtin();
    let standard = estimate(&p, 0, &models, &pricing, |_| Tier::Standard);
    let batch = estimate(&p, 0, &models, &pricing, |_| Tier::Batch);
    assert_eq!(standard.calls, 528);
    // 27 high-quality 1024² images at $0.167 are most of it.
    assert!(
        standard.cost > 27.0 * 0.167 && standard.cost < 4.7,
        "{standard:?}"
    );
    assert!((batch.cost - standard.cost / 2.0).abs() < 1e-9, "{batch:?}");
    // Flex is not offered for gpt-4o-mini: priced at standard, as the tracker would.
    let flex = estimate(&p, 0, &models, &pricing, |op| match op {
        Operation::Judge => Tier::Flex,
        _ => Tier::Standard,
    });
    assert!((flex.cost - standard.cost).abs() < 1e-9);
    // Resuming after the first three stages leaves the later ones.
    let rest = estimate(&p, 3, &models, &pricing, |_| Tier::Standard);
    assert_eq!(rest.calls, 528 - 9 - 9 - 108);
}

#[test]
fn a_draft_schedule_and_polish_are_forecast_per_operation_and_tier() {
    let mut p = SearchParams::new("a fox");
    p.render_schedule = crate::params::parse_schedule("low,low,medium", 3).unwrap();
    p.polish = 3;
    let stages = planned_stages(&p);
    let renders: Vec<u64> = (stages.iter())
        .filter(|s| s.calls.iter().any(|(k, _)| *k == CallKind::Render))
        .map(|s| s.total())
        .collect();
    // 9, 9, then 9 children and the 3 parents at medium; the polish draws 3 at full quality.
    assert_eq!(renders, [9, 9, 12, 3]);
    let f = forecast(
        &p,
        0..usize::MAX,
        &RoleModels::default(),
        &Pricing::builtin(),
        |_| Tier::Batch,
        &Turnaround::default(),
    );
    assert_eq!(f.images, 33);
    let render = f
        .rows
        .iter()
        .find(|r| r.operation == Operation::Render)
        .unwrap();
    // Half of 18 × $0.011 + 12 × $0.042 + 3 × $0.167, and the prompts' input tokens.
    let images = (18.0 * 0.011 + 12.0 * 0.042 + 3.0 * 0.167) / 2.0;
    assert!(
        render.cost > images && render.cost < images + 0.005,
        "{render:?}"
    );
    assert_eq!((f.wait.len(), f.wait[0].stages), (1, 11));
    assert!((f.seconds - 11.0 * 3600.0).abs() < 1e-6);
    // The goal: at most 20% of today's all-standard session.
    let today = estimate(
        &SearchParams::new("a fox"),
        0,
        &RoleModels::default(),
        &Pricing::builtin(),
        |_| Tier::Standard,
    );
    assert!(f.cost <= 0.2 * today.cost, "{} of {}", f.cost, today.cost);
    // A last iteration at full quality leaves the polish nothing to draw. Settings compare as
    // written: `high` is the full quality when the session's quality says so.
    p.render_schedule = crate::params::parse_schedule("low,low,high", 3).unwrap();
    assert_eq!(planned_stages(&p)[9].total(), 3);
    p.image_quality = Some("high".into());
    assert_eq!(planned_stages(&p)[9].total(), 0);
}
