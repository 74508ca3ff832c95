//! Hybrid mode: each stage on the cheapest tier whose expected turnaround fits its share of the
//! time left before the deadline.

use std::sync::Arc;
use std::time::Duration;

use batchbeam_tests::{Clock, batch_rig_with, small};
use openai_sim::SimConfig;
use orchestrator::{BeamSearch, Hybrid, Turnaround};
use providers::ProvidersConfig;

async fn run(deadline: Duration) -> Vec<String> {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let _clock = Clock::start(&sim);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProvidersConfig::default();
    config.batch.enabled = true;
    config.batch.hybrid_mode = true;
    // The writer on a model with a flex tier (gpt-4o-mini has none: hybrid keeps it off flex).
    config.models.llm = "gpt-5-mini".into();
    let hybrid = Hybrid {
        deadline,
        turnaround: Turnaround {
            standard: Duration::from_secs(60),
            flex: Duration::from_secs(600),
            batch: Duration::from_secs(3_600),
        },
    };
    let rig = batch_rig_with(&sim, dir.path(), config, Some(hybrid)).await;
    let outcome = BeamSearch::start(
        small("a koi pond in autumn"),
        rig.engines,
        rig.store,
        dir.path(),
    )
    .await
    .unwrap()
    .with_deadline(deadline)
    .run()
    .await
    .unwrap();
    outcome.stages.iter().map(|s| s.tier.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stages_take_the_cheapest_tier_that_fits_the_deadline() {
    // A day for 6 stages: every stage fits a batch round trip.
    assert!(
        run(Duration::from_secs(86_400))
            .await
            .iter()
            .all(|t| t == "batch")
    );
    // Six minutes: only the standard tier fits.
    assert!(
        run(Duration::from_secs(360))
            .await
            .iter()
            .all(|t| t == "standard")
    );
    // An hour and a half: flex for the writer's stages, standard for renders (no flex for
    // images) and for the judge (gpt-4o-mini has no flex); the batch rounds trips measured in this run are far quicker than the
    // estimate, so later stages may move to batch.
    let tiers = run(Duration::from_secs(5_400)).await;
    assert_eq!(tiers[0], "flex", "{tiers:?}");
    assert_eq!(tiers[1], "standard", "{tiers:?}");
}
