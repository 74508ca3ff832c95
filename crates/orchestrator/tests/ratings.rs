//! Ratings on the simulated models: in comparative mode the best rating rises across the
//! iterations of a working search, and the ratings of candidates of different iterations
//! agree with the simulated judge's hidden quality (which they could not if they were fitted
//! per iteration).

// A failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use orchestrator::{
    Backend, BeamSearch, Candidate, Engines, JudgingMode, Plan, RatingScale, SearchParams,
    SessionOutcome, SessionStore,
};
use providers::transport::SimulatedTransport;
use providers::{OpenAiProvider, RoleModels, Tier};

const IDEA: &str = "a lighthouse in a storm at night with crashing waves";
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

/// A comparative, fused, 3-iteration session (n 9, m 3, ensemble 3) on the simulated models
/// of `seed`, and every candidate it wrote.
async fn session(seed: u64) -> (SessionOutcome, Vec<Candidate>) {
    let dir = tempfile::tempdir().unwrap();
    let provider = OpenAiProvider::new(
        Arc::new(SimulatedTransport::new(seed)),
        RoleModels::default(),
    );
    let backend = Backend {
        llm: Arc::new(provider.clone()),
        image: Arc::new(provider.clone()),
        vision: Arc::new(provider),
    };
    let mut params = SearchParams::new(IDEA);
    (params.judging, params.plan, params.iterations, params.seed) =
        (JudgingMode::Comparative, Plan::Fused, 3, seed);
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let engines = Engines::single(Tier::Simulated, backend);
    let search = BeamSearch::start(params, engines, store, dir.path())
        .await
        .unwrap();
    let outcome = search.run().await.unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outcome.folder.join("session.json")).unwrap())
            .unwrap();
    let candidates: Vec<Candidate> = serde_json::from_value(doc["candidates"].clone()).unwrap();
    // The images are read below, before the folder goes.
    let candidates = candidates
        .into_iter()
        .map(|mut c| {
            // The prompt the image shows, as the simulated judge reads it.
            let png = std::fs::read(outcome.folder.join(c.image.as_deref().unwrap())).unwrap();
            c.combined = openai_sim::models::read_prompt(&png).unwrap();
            c
        })
        .collect();
    (outcome, candidates)
}

fn quality(c: &Candidate) -> f64 {
    openai_sim::models::hidden_quality(&c.combined, IDEA, 0.7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_best_rating_rises_and_ratings_compare_across_iterations() {
    let (mut rising, mut agree, mut across) = (0, 0usize, 0usize);
    let mut later_above = 0;
    for seed in SEEDS {
        let (outcome, candidates) = session(seed).await;
        assert_eq!(outcome.rating_scale, RatingScale::Elo);
        let best: Vec<f64> = (outcome.best_by_iteration.iter())
            .map(|b| b.rating.expect("every iteration's best is rated"))
            .collect();
        let quality_of_best: Vec<f64> = (outcome.best_by_iteration.iter())
            .map(|b| quality(candidates.iter().find(|c| c.id == b.id).unwrap()))
            .collect();
        let mean = |it: u32| {
            let r: Vec<f64> = (candidates.iter())
                .filter(|c| c.iteration == it)
                .filter_map(|c| c.rating)
                .collect();
            r.iter().sum::<f64>() / r.len() as f64
        };
        let mean_quality = |it: u32| {
            let q: Vec<f64> = (candidates.iter())
                .filter(|c| c.iteration == it)
                .map(quality)
                .collect();
            q.iter().sum::<f64>() / q.len() as f64
        };
        eprintln!(
            "seed {seed}: best rating per iteration {best:?} (hidden quality {quality_of_best:.2?}); \
             mean rating of each iteration's candidates {:.1?} (hidden quality {:.2?})",
            [mean(0), mean(1), mean(2)],
            [mean_quality(0), mean_quality(1), mean_quality(2)],
        );
        assert_eq!(best.len(), 3, "seed {seed}");
        assert!(best[2] >= best[0], "seed {seed}: {best:?}");
        rising += usize::from(best[2] > best[0]);
        later_above += usize::from(mean(2) > mean(0));
        // The session's best is its highest-rated candidate, rated as after the last iteration.
        let top = (candidates.iter())
            .filter_map(|c| c.rating)
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(outcome.best.rating, Some(top), "seed {seed}");
        assert_eq!(
            outcome.best.id, outcome.best_by_iteration[2].id,
            "seed {seed}"
        );
        // Candidates of different iterations whose hidden quality differs clearly: the better
        // one rates higher.
        for x in &candidates {
            for y in &candidates {
                if x.iteration < y.iteration
                    && let (Some(rx), Some(ry)) = (x.rating, y.rating)
                    && (quality(x) - quality(y)).abs() >= 1.0
                {
                    across += 1;
                    agree += usize::from((quality(x) > quality(y)) == (rx > ry));
                }
            }
        }
    }
    let share = agree as f64 / across as f64;
    eprintln!(
        "best rating higher after the last iteration than after the first: {rising} of {} seeds; \
         later candidates rated above the first's on average: {later_above} of {}; \
         rating order agrees with hidden quality for {agree} of {across} pairs across iterations ({share:.3})",
        SEEDS.len(),
        SEEDS.len()
    );
    assert!(rising >= 4, "{rising} of {} seeds", SEEDS.len());
    assert_eq!(later_above, SEEDS.len());
    assert!(share >= 0.9, "{share}");
}

/// Each pool's judgement is kept: a survivor judged again as a parent keeps its rank among its
/// own iteration's candidates (the dashboard shows each iteration's ranks from it), and each
/// pool's ranks (its children and the parents carried into it) are exactly 1..=pool size.
#[tokio::test]
async fn each_iteration_keeps_its_own_judgements() {
    let (_, candidates) = session(SEEDS[0]).await;
    let parents: Vec<&str> = candidates
        .iter()
        .filter_map(|c| c.parent.as_deref())
        .collect();
    for c in &candidates {
        let own = c.verdict_in(c.iteration).expect("judged in its own pool");
        if parents.contains(&c.id.as_str()) {
            // Judged in its pool, and again in the next one as a parent.
            let next = c
                .verdict_in(c.iteration + 1)
                .expect("judged again as a parent");
            assert_eq!(c.judged.len(), 2, "{}", c.id);
            assert_eq!(
                c.verdict.as_ref(),
                Some(next),
                "the latest verdict is the last pool's"
            );
            assert!(own.comparisons > 0 && next.comparisons > 0);
        }
    }
    for it in 0..3 {
        let mut ranks: Vec<u32> = candidates
            .iter()
            .filter_map(|c| c.verdict_in(it))
            .map(|v| v.rank)
            .collect();
        ranks.sort_unstable();
        let n = ranks.len() as u32;
        assert_eq!(ranks, (1..=n).collect::<Vec<_>>(), "iteration {it}");
    }
}
