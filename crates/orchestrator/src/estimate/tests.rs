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
