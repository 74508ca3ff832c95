//! Never pay twice: a finished session run again with the same seed is answered from the
//! request cache: the simulator sees nothing (no batch, no synchronous call), the report says
//! $0 with every call `cached`, and the search finds the same best prompt. Without the cache
//! (`--no-cache`) every call is sent again.

use std::path::Path;
use std::sync::Arc;

use batchbeam_tests::{Clock, cached_batch_rig, small};
use openai_sim::{SimConfig, SimHandle, StatsSnapshot};
use orchestrator::{BeamSearch, SessionOutcome};
use providers::ProvidersConfig;

/// The guide's session, small, in batch mode with seed 42, on `sim`, with the database in
/// `dir` (a new rig each time: what a new `batchbeam run` process opens).
async fn run(sim: &Arc<SimHandle>, dir: &Path, cache: bool) -> SessionOutcome {
    let _clock = Clock::start(sim);
    let mut config = ProvidersConfig::default();
    config.batch.enabled = true;
    config.cache = cache;
    let rig = cached_batch_rig(sim, dir, config).await;
    let mut params = small("a lighthouse in a storm");
    params.seed = 42;
    BeamSearch::start(params, rig.engines, rig.store, dir)
        .await
        .unwrap()
        .run()
        .await
        .unwrap()
}

/// What the simulator served: batches created, synchronous calls, batch lines billed.
fn served(s: &StatsSnapshot) -> (u64, u64, u64) {
    (s.batches_created, s.sync_requests, s.batch_requests_billed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_with_the_same_seed_sends_nothing_and_costs_nothing() {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();

    let first = run(&sim, dir.path(), true).await;
    let after_first = sim.stats().await;
    let report = &first.report;
    assert!(after_first.batches_created > 0, "{after_first:?}");
    assert_eq!(report.total.cached_calls, 0, "{report}");
    assert_eq!(
        after_first.sync_requests + after_first.batch_requests_billed,
        report.total.calls,
        "the first run sends every call once"
    );
    assert!(report.total.cost > 0.0);

    // A new session, the same seed: every call is answered from the store.
    let second = run(&sim, dir.path(), true).await;
    assert_ne!(second.id, first.id, "a session of its own");
    let after_second = sim.stats().await;
    assert_eq!(
        served(&after_second),
        served(&after_first),
        "nothing sent: {after_second:?}"
    );
    let report = &second.report;
    assert_eq!(report.total.calls, first.report.total.calls, "{report}");
    assert_eq!(report.total.cached_calls, report.total.calls, "{report}");
    assert_eq!(report.total.sent_calls(), 0);
    assert_eq!(report.total.cost, 0.0, "{report}");
    assert!(
        (report.total.cache_saved - first.report.total.cost).abs() < 1e-9,
        "the saving is what the first run paid: {report}"
    );
    assert!(report.rows.iter().all(|r| r.cached), "{report}");
    assert!(
        report
            .to_string()
            .contains("answered from the request cache")
    );
    assert_eq!(second.best.combined, first.best.combined, "the same search");
    assert_eq!(
        std::fs::read(second.folder.join(second.best.image.as_ref().unwrap())).unwrap(),
        std::fs::read(first.folder.join(first.best.image.as_ref().unwrap())).unwrap(),
        "the same image"
    );

    // `--no-cache`: every call is sent again, and billed.
    let third = run(&sim, dir.path(), false).await;
    let after_third = sim.stats().await;
    assert_eq!(third.report.total.cached_calls, 0);
    assert_eq!(
        (after_third.sync_requests + after_third.batch_requests_billed)
            - (after_first.sync_requests + after_first.batch_requests_billed),
        third.report.total.calls,
        "{after_third:?}"
    );
    assert!(after_third.batches_created > after_first.batches_created);
    assert_eq!(third.best.combined, first.best.combined);
}
