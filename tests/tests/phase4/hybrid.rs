//! Hybrid mode: each stage on the cheapest tier whose expected turnaround fits its share of the
//! time left before the deadline.

use std::sync::Arc;
use std::time::Duration;

use batch_client::{BatchJobManager, ManagerConfig, OpenAiClient};
use batch_queue::{BatchRequestQueue, QueueConfig};
use batchbeam_tests::{Clock, client_config, small};
use openai_sim::SimConfig;
use orchestrator::SessionStore;
use orchestrator::{BeamSearch, Engines, Hybrid, Turnaround};
use providers::{ProviderFactory, ProvidersConfig};

async fn run(deadline: Duration) -> Vec<String> {
    let sim = Arc::new(openai_sim::spawn(SimConfig::default()).await.unwrap());
    let _clock = Clock::start(&sim);
    let dir = tempfile::tempdir().unwrap();
    let mut manager_config = ManagerConfig::new(dir.path().join("files"));
    manager_config.poll_interval = Duration::from_millis(5);
    manager_config.poll_ceiling = Duration::from_millis(20);
    let client = OpenAiClient::new(client_config(&sim)).unwrap();
    let manager = BatchJobManager::open(client.clone(), &dir.path().join("b.db"), manager_config)
        .await
        .unwrap();
    let store = SessionStore::new(manager.store().pool().clone())
        .await
        .unwrap();
    let queue = Arc::new(
        BatchRequestQueue::new(Arc::new(manager), client, QueueConfig::default())
            .await
            .unwrap(),
    );
    let mut config = ProvidersConfig::default();
    config.batch.enabled = true;
    config.batch.hybrid_mode = true;
    let factory = ProviderFactory::new(config)
        .with_client(client_config(&sim))
        .with_queue(queue.clone());
    let hybrid = Hybrid {
        deadline,
        turnaround: Turnaround {
            standard: Duration::from_secs(60),
            flex: Duration::from_secs(600),
            batch: Duration::from_secs(3_600),
        },
    };
    let engines = Engines::from_factory(&factory, Some(queue), Some(hybrid)).unwrap();
    let outcome = BeamSearch::start(small("a koi pond in autumn"), engines, store, dir.path())
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
    // An hour and a half: flex for the LLM and judge stages, standard for renders (no flex
    // for images); the batch rounds trips measured in this run are far quicker than the
    // estimate, so later stages may move to batch.
    let tiers = run(Duration::from_secs(5_400)).await;
    assert_eq!(tiers[0], "flex", "{tiers:?}");
    assert_eq!(tiers[1], "standard", "{tiers:?}");
}
