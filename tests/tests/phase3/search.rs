//! The beam search on the in-process simulated models: it improves, its plans have the
//! documented stage counts, a seed replays it, and its folder holds the tree.

use batchbeam_tests::{simulated_engines, small};
use orchestrator::{BeamSearch, JudgingMode, Plan, SearchParams, SessionStore};

const IDEA: &str = "a lighthouse in a storm at night with crashing waves";

async fn run(params: SearchParams, seed: u64) -> orchestrator::SessionOutcome {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let search = BeamSearch::start(params, simulated_engines(seed), store, dir.path())
        .await
        .unwrap();
    let outcome = search
        .run()
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    // Keep the folder alive for the caller's asserts by leaking the temp dir into the outcome's
    // path (tests are short-lived).
    std::mem::forget(dir);
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_best_score_rises_from_iteration_to_iteration() {
    // Scoring mode: scores are absolute, so iterations compare. Averaged over seeds, each
    // iteration beats the one before, and no seed's best ever falls (parents stay in the pool).
    let seeds = [1u64, 2, 3, 4];
    let mut sums = [0.0f64; 3];
    for seed in seeds {
        let mut p = SearchParams::new(IDEA);
        p.judging = JudgingMode::Scoring;
        p.seed = seed;
        let outcome = run(p, seed).await;
        let best: Vec<f64> = outcome.best_by_iteration.iter().map(|b| b.score).collect();
        assert_eq!(best.len(), 3);
        assert!(
            best.windows(2).all(|w| w[1] >= w[0]),
            "seed {seed}: {best:?}"
        );
        for (s, b) in sums.iter_mut().zip(&best) {
            *s += b;
        }
    }
    let means: Vec<f64> = sums.iter().map(|s| s / seeds.len() as f64).collect();
    assert!(
        means[1] > means[0] && means[2] > means[1],
        "mean best per iteration {means:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plans_take_14_9_and_7_stages_and_write_their_tree() {
    for (plan, stages) in [
        (Plan::Classic, 14),
        (Plan::Fused, 9),
        (Plan::JudgeRefines, 7),
    ] {
        let mut p = SearchParams::new(IDEA);
        p.plan = plan;
        (p.n, p.m, p.ensemble) = (6, 2, 1);
        let outcome = run(p, 5).await;
        assert_eq!(outcome.stages.len(), stages, "{plan}");
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(outcome.folder.join("session.json")).unwrap())
                .unwrap();
        let candidates = doc["candidates"].as_array().unwrap();
        // 3 iterations of 6 children.
        assert_eq!(candidates.len(), 18, "{plan}");
        for c in candidates {
            let image = c["image"].as_str().expect("every candidate rendered");
            assert!(outcome.folder.join(image).is_file());
            assert!(!c["what"].as_str().unwrap().is_empty());
            assert!(!c["combined"].as_str().unwrap().is_empty());
            assert!(c["verdict"].is_object(), "{plan}: {c}");
        }
        // Every child of a later iteration names a parent of the iteration before.
        for c in candidates.iter().filter(|c| c["iteration"] != 0) {
            let parent = c["parent"].as_str().unwrap();
            let it = c["iteration"].as_u64().unwrap();
            assert!(
                parent.starts_with(&format!("i{}c", it - 1)),
                "{plan}: {parent}"
            );
        }
        assert_eq!(doc["stages"].as_array().unwrap().len(), stages);
        assert!(doc["cost"]["total"]["calls"].as_u64().unwrap() > 0);
        assert_eq!(doc["best_by_iteration"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_replays_the_search_and_another_seed_does_not() {
    let with_seed = |seed| {
        let mut p = small(IDEA);
        p.seed = seed;
        p
    };
    let a = run(with_seed(11), 3).await;
    let b = run(with_seed(11), 3).await;
    let c = run(with_seed(12), 3).await;
    assert_eq!(a.best.combined, b.best.combined);
    assert_eq!(a.best_by_iteration, b.best_by_iteration);
    assert_ne!(a.best.combined, c.best.combined);
}

#[tokio::test]
async fn bad_parameters_are_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let mut p = SearchParams::new(IDEA);
    p.n = 8;
    let err = BeamSearch::start(p, simulated_engines(1), store.clone(), dir.path())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter n: 8 is not a multiple of m = 3 (each survivor gets n / m children)"
    );
    assert!(store.sessions().await.unwrap().is_empty());
}
