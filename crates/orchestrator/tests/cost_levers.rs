//! The cost levers on the simulated models: a render schedule (drafts, then full quality, the
//! parents drawn again so that a comparison is between images of one quality), the polish
//! (the top candidates drawn again at full quality and judged for the final pick), a budget
//! the session stops under, and the forecast against what the session actually cost.

// A failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use orchestrator::{
    Backend, BeamSearch, Candidate, Engines, Plan, SearchParams, SessionOutcome, SessionStore,
    parse_schedule,
};
use providers::transport::SimulatedTransport;
use providers::{OpenAiProvider, Operation, RoleModels, Tier};

const IDEA: &str = "a lighthouse in a storm at night with crashing waves";

fn engines(seed: u64) -> Engines {
    let provider = OpenAiProvider::new(
        Arc::new(SimulatedTransport::new(seed)),
        RoleModels::default(),
    );
    let backend = Backend {
        llm: Arc::new(provider.clone()),
        image: Arc::new(provider.clone()),
        vision: Arc::new(provider),
    };
    Engines::single(Tier::Simulated, backend)
}

/// The guide's session of `seed`, edited by `edit`, on the simulated models; its outcome and
/// every candidate it wrote.
async fn session(
    seed: u64,
    edit: impl FnOnce(&mut SearchParams),
) -> (SessionOutcome, Vec<Candidate>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut params = SearchParams::new(IDEA);
    params.seed = seed;
    edit(&mut params);
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let search = BeamSearch::start(params, engines(seed), store, dir.path())
        .await
        .unwrap();
    let outcome = search.run().await.unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outcome.folder.join("session.json")).unwrap())
            .unwrap();
    let candidates: Vec<Candidate> = serde_json::from_value(doc["candidates"].clone()).unwrap();
    (outcome, candidates, dir)
}

/// The quality an image file was drawn at, from the simulator's chunk (`high` without one).
fn drawn_at(outcome: &SessionOutcome, file: &str) -> String {
    let bytes = std::fs::read(outcome.folder.join(file)).unwrap();
    openai_sim::models::read_quality(&bytes)
        .unwrap_or("high")
        .to_owned()
}

fn images(outcome: &SessionOutcome) -> u64 {
    outcome.report.operation_totals(Operation::Render).calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_renders_each_iteration_at_its_quality_and_the_parents_again() {
    let (outcome, candidates, _dir) = session(3, |p| {
        p.render_schedule = parse_schedule("low,low,high", 3).unwrap();
    })
    .await;
    // 9 + 9 renders at low, then 9 children and the 3 parents at high.
    assert_eq!(images(&outcome), 30);
    let render_stages: Vec<usize> = (outcome.stages.iter())
        .filter(|s| s.kind == "render")
        .map(|s| s.calls)
        .collect();
    assert_eq!(render_stages, [9, 9, 12]);
    for c in &candidates {
        let file = c.image.as_deref().unwrap();
        let expected = if c.iteration == 2 { "high" } else { "low" };
        let survived_to_the_last_pool = c.judged.iter().any(|j| j.iteration == 2);
        let at = drawn_at(&outcome, file);
        if survived_to_the_last_pool {
            // Judged with high children: drawn again at high.
            assert_eq!(at, "high", "{} ({file})", c.id);
        } else {
            assert_eq!(at, expected, "{} ({file})", c.id);
        }
    }
    // Drafts are cheap: 18 low images and 12 high ones against 27 high.
    let (full, _, _dir2) = session(3, |_| {}).await;
    assert!(outcome.report.total.cost < 0.6 * full.report.total.cost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polish_draws_the_top_candidates_again_at_full_quality_and_picks_among_them() {
    let (outcome, candidates, _dir) = session(4, |p| {
        p.render_schedule = parse_schedule("low", 3).unwrap();
        p.polish = 3;
    })
    .await;
    let kinds: Vec<&str> = outcome.stages.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds[9..], ["polish", "polish_judge"]);
    assert_eq!(outcome.stages[9].calls, 3);
    // Three images, every pair, three votes.
    assert_eq!(outcome.stages[10].calls, 9);
    assert_eq!(outcome.polished.len(), 3);
    assert!(outcome.polished.contains(&outcome.best.id));
    assert!(
        outcome
            .draft_best
            .as_ref()
            .is_some_and(|d| outcome.polished.contains(d))
    );
    for id in &outcome.polished {
        let c = candidates.iter().find(|c| c.id == *id).unwrap();
        let file = c.image.as_deref().unwrap();
        assert!(file.ends_with("-polished.png"), "{file}");
        assert_eq!(drawn_at(&outcome, file), "high");
    }
    // The best's verdict is the polish's: it won most of its full-quality comparisons.
    let v = outcome.best.verdict.as_ref().unwrap();
    assert_eq!((v.rank, v.comparisons), (1, 2));
    assert_eq!(images(&outcome), 27 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stops_under_its_budget_with_its_best_so_far() {
    // The whole session is forecast at about $4.6; a first iteration at about $1.6.
    let budget = 2.5;
    let (outcome, _, _dir) = session(5, |p| p.budget_usd = Some(budget)).await;
    assert!(
        outcome.report.total.cost <= budget,
        "spent {} of {budget}",
        outcome.report.total.cost
    );
    assert_eq!(outcome.stages.len(), 3, "only the first iteration fits");
    let why = outcome.stopped.as_deref().expect("it says why it stopped");
    assert!(
        why.contains("budget $2.5000") && why.contains("iteration 1"),
        "{why}"
    );
    assert_eq!(outcome.best.iteration, 0);

    // With drafts and a polish, the polish is still run when an iteration no longer fits.
    let (outcome, _, _dir) = session(5, |p| {
        p.render_schedule = parse_schedule("low", 3).unwrap();
        p.polish = 3;
        p.budget_usd = Some(0.75);
    })
    .await;
    assert!(
        outcome.report.total.cost <= 0.75,
        "{}",
        outcome.report.total.cost
    );
    let kinds: Vec<&str> = outcome.stages.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds.last(), Some(&"polish_judge"), "{kinds:?}");
    // The first iteration and the money kept for the polish fit; the second does not.
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    assert!(outcome.stopped.is_some());
    assert!(outcome.polished.contains(&outcome.best.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_is_within_ten_percent_of_the_actual_cost() {
    type Edit = fn(&mut SearchParams);
    let cases: [(&str, Edit); 5] = [
        ("guide", |_| {}),
        ("classic", |p| p.plan = Plan::Classic),
        ("judge_refines", |p| p.plan = Plan::JudgeRefines),
        ("low,low,high", |p| {
            p.render_schedule = parse_schedule("low,low,high", 3).unwrap();
        }),
        ("low + polish 3", |p| {
            p.render_schedule = parse_schedule("low", 3).unwrap();
            p.polish = 3;
        }),
    ];
    for (name, edit) in cases {
        for seed in [1, 2] {
            let (outcome, _, _dir) = session(seed, edit).await;
            let forecast = outcome.forecast.as_ref().expect("a forecast").cost;
            let actual = outcome.report.total.cost;
            let off = (forecast - actual).abs() / actual;
            assert!(
                off <= 0.10,
                "{name}, seed {seed}: forecast ${forecast:.4}, actual ${actual:.4} ({:.1}% off)",
                100.0 * off
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_keeps_its_schedule_polish_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = SearchParams::new(IDEA);
    params.render_schedule = parse_schedule("low,medium", 3).unwrap();
    params.polish = 2;
    params.budget_usd = Some(3.0);
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let search = BeamSearch::start(params.clone(), engines(6), store.clone(), dir.path())
        .await
        .unwrap();
    let id = search.id().to_owned();
    drop(search);
    let resumed = BeamSearch::resume(&id, engines(6), store).await.unwrap();
    assert_eq!(resumed.params(), &params);
    let outcome = resumed.run().await.unwrap();
    assert_eq!(outcome.polished.len(), 2);
    assert!(outcome.report.total.cost <= 3.0);
}
