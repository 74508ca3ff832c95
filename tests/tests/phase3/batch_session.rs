//! Whole sessions in batch mode against openai-sim: the guide's session completes on every
//! plan with one batch per stage, costs at most half the all-standard price, and gives the same
//! prompts as the standard tier for the same seed.

use std::sync::Arc;

use batchbeam_tests::{Clock, batch_rig, small, standard_engines};
use openai_sim::SimConfig;
use orchestrator::{BeamSearch, Plan, ProgressEvent, SearchParams, SessionStore};
use providers::{Operation, Tier};

const IDEA: &str = "a red fox curled asleep in fresh snow under pine trees";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guides_session_runs_in_batch_mode_on_every_plan() {
    for (plan, stages) in [
        (Plan::Classic, 14),
        (Plan::Fused, 9),
        (Plan::JudgeRefines, 7),
    ] {
        let sim = Arc::new(
            openai_sim::spawn(SimConfig::default().with_frozen_clock())
                .await
                .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let rig = batch_rig(&sim, dir.path()).await;
        let _clock = Clock::start(&sim);
        let mut params = SearchParams::new(IDEA); // n 9, m 3, 3 iterations, ensemble 3
        params.plan = plan;
        let search = BeamSearch::start(params, rig.engines, rig.store, dir.path())
            .await
            .unwrap();
        let mut events = search.progress().subscribe();
        let outcome = search.run().await.unwrap();

        assert_eq!(outcome.stages.len(), stages, "{plan}");
        let stats = sim.stats().await;
        assert_eq!(
            stats.batches_created as usize, stages,
            "{plan}: one batch per stage"
        );
        assert_eq!(
            stats.sync_requests, 0,
            "{plan}: nothing left the batch tier"
        );
        assert_eq!(
            stats.batch_requests_billed as usize, outcome.calls,
            "{plan}: each call billed once"
        );
        for stage in &outcome.stages {
            assert_eq!(stage.tier, "batch");
            assert_eq!(stage.batch_ids.len(), 1, "{plan}: {stage:?}");
        }
        // The judge stage after the first compares 9 children and 3 parents in every pair but
        // parent-parent (63 pairs), 3 votes each.
        let judge = outcome
            .stages
            .iter()
            .filter(|s| s.kind == "judge")
            .nth(1)
            .unwrap();
        let reviews = if plan == Plan::JudgeRefines { 12 } else { 0 };
        assert_eq!(judge.calls, 63 * 3 + reviews, "{plan}");

        let report = &outcome.report;
        let batch = report.tier_totals(Tier::Batch);
        assert_eq!(batch.calls as usize, outcome.calls);
        assert!(batch.cost > 0.0);
        assert!(
            batch.cost <= 0.5 * batch.standard_cost + 1e-9,
            "{plan}: batch {} vs all-standard {}",
            batch.cost,
            batch.standard_cost
        );
        assert!(report.operation_totals(Operation::Judge).calls > 0);
        assert!(report.to_string().contains("judge"));

        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        let submitted = seen
            .iter()
            .filter(|e| matches!(e, ProgressEvent::BatchSubmitted { .. }))
            .count();
        assert_eq!(submitted, stages, "{plan}: a barrier per stage");
        assert!(
            seen.iter()
                .any(|e| matches!(e, ProgressEvent::SessionFinished { .. }))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seed_gives_the_same_prompts_on_the_standard_and_batch_tiers() {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let _clock = Clock::start(&sim);
    let mut params = small(IDEA);
    params.seed = 42;

    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("standard.db"))
        .await
        .unwrap();
    let standard = BeamSearch::start(params.clone(), standard_engines(&sim), store, dir.path())
        .await
        .unwrap()
        .run()
        .await
        .unwrap();

    let batch_dir = tempfile::tempdir().unwrap();
    let rig = batch_rig(&sim, batch_dir.path()).await;
    let batch = BeamSearch::start(params, rig.engines, rig.store, batch_dir.path())
        .await
        .unwrap()
        .run()
        .await
        .unwrap();

    assert_eq!(standard.best.combined, batch.best.combined);
    assert_eq!(standard.best_by_iteration, batch.best_by_iteration);
    assert!(standard.stages.iter().all(|s| s.tier == "standard"));
    assert!(batch.stages.iter().all(|s| s.tier == "batch"));
    let (s, b) = (standard.report.total, batch.report.total);
    assert_eq!(
        (s.input_tokens, s.output_tokens),
        (b.input_tokens, b.output_tokens)
    );
    assert!(b.cost < s.cost);
}
