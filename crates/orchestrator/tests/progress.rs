//! Progress within a stage: `CallsDone` events on a simulated session, few per stage, rising,
//! the last one at the stage's total.

// A failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use orchestrator::{Backend, BeamSearch, Engines, ProgressEvent, SearchParams, SessionStore};
use providers::transport::SimulatedTransport;
use providers::{OpenAiProvider, RoleModels, Tier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_reports_its_calls_done_without_flooding() {
    let dir = tempfile::tempdir().unwrap();
    let provider = OpenAiProvider::new(Arc::new(SimulatedTransport::new(3)), RoleModels::default());
    let backend = Backend {
        llm: Arc::new(provider.clone()),
        image: Arc::new(provider.clone()),
        vision: Arc::new(provider),
    };
    // 9 children, ensemble 3: the judge stages have 108 and 189 calls, the others 9 or 3.
    let mut params = SearchParams::new("a lighthouse in a storm");
    (params.iterations, params.seed) = (2, 3);
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let engines = Engines::single(Tier::Simulated, backend);
    let search = BeamSearch::start(params, engines, store, dir.path())
        .await
        .unwrap();
    let mut events = search.progress().subscribe();
    search.run().await.unwrap();
    let mut calls = Vec::new();
    let mut done: Vec<Vec<(usize, usize)>> = Vec::new();
    while let Ok(event) = events.try_recv() {
        match event {
            ProgressEvent::StageStarted {
                index, calls: n, ..
            } => {
                assert_eq!(index, calls.len());
                calls.push(n);
                done.push(Vec::new());
            }
            ProgressEvent::CallsDone {
                index,
                done: d,
                total,
                ..
            } => done[index].push((d, total)),
            _ => {}
        }
    }
    assert_eq!(calls, [9, 9, 108, 3, 9, 189]);
    for (stage, (n, seen)) in calls.iter().zip(&done).enumerate() {
        assert!(
            seen.iter().all(|(_, total)| total == n),
            "stage {stage}: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "stage {stage}: {seen:?}"
        );
        assert_eq!(
            seen.last().map(|s| s.0),
            Some(*n),
            "stage {stage}: {seen:?}"
        );
        if *n <= 20 {
            assert_eq!(seen.len(), *n, "stage {stage}: {seen:?}");
        } else {
            assert_eq!(seen.len(), 20, "stage {stage}: {seen:?}");
        }
    }
}
