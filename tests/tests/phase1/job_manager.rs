//! The builder, the job manager and the simulator together: a beam-search round's critique and
//! image requests built into shards by model, submitted through `BatchJobManager`, the process
//! "dying" mid-submit, resumed on the same database, and every outcome mapped back to the custom
//! id it answers, billed exactly once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use batch_client::{
    ApiKey, BatchJobManager, BatchStatus, ClientConfig, JobState, ManagerConfig, OpenAiClient,
    RetryPolicy, SubmitStep,
};
use batch_format::{
    BatchRequestBuilder, ChatOptions, Endpoint, ImageGenerationRequest, Message, Outcome, Shard,
};
use openai_sim::{FaultConfig, FaultKind, FaultRule, SimConfig, SimHandle};

const KEY: &str = "sk-phase1-0000111122223333";

fn round(candidates: usize) -> Vec<Shard> {
    let mut builder = BatchRequestBuilder::new();
    for i in 0..candidates {
        builder
            .add_chat_completion_request(
                format!("critique-{i}"),
                vec![
                    Message::system("You critique image prompts."),
                    Message::user(format!(
                        "Prompt {i}: a lighthouse in a storm, oil painting."
                    )),
                ],
                ChatOptions {
                    max_tokens: Some(200),
                    ..ChatOptions::new("gpt-4o-mini")
                },
            )
            .unwrap();
        builder
            .add_image_generation_request(
                format!("render-{i}"),
                ImageGenerationRequest::new(
                    "gpt-image-1",
                    format!("a lighthouse in a storm, take {i}"),
                ),
            )
            .unwrap();
    }
    builder.build_batch("round-1").unwrap().into_shards()
}

async fn open(sim: &SimHandle, dir: &Path) -> BatchJobManager {
    let client = OpenAiClient::new(
        ClientConfig::new(sim.base_url(), ApiKey::new(KEY)).with_retry(RetryPolicy::fast()),
    )
    .unwrap();
    let mut config = ManagerConfig::new(dir.join("files"));
    config.poll_interval = Duration::from_millis(1);
    config.poll_ceiling = Duration::from_millis(2);
    config.lease = Duration::from_millis(30);
    BatchJobManager::open(client, &dir.join("batchbeam.db"), config)
        .await
        .unwrap()
}

async fn drive(sim: &SimHandle, manager: &BatchJobManager) {
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let _ = manager.poll_once().await;
        if manager
            .list()
            .await
            .unwrap()
            .iter()
            .all(|r| r.state.is_finished())
        {
            return;
        }
        sim.advance_clock(15.0).await;
    }
    panic!("unfinished: {:#?}", manager.list().await.unwrap());
}

#[tokio::test]
async fn a_round_survives_a_crash_mid_submit_and_maps_back_to_its_ids() {
    let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shards = round(4);
    assert_eq!(shards.len(), 2, "one shard per endpoint and model");
    {
        let manager = open(&sim, dir.path()).await;
        manager
            .submit_batch(&shards[0], BTreeMap::new())
            .await
            .unwrap();
        // The answer to the second create is lost with the process.
        manager.set_failpoint(Some(SubmitStep::AfterCreateSent));
        manager
            .submit_batch(&shards[1], BTreeMap::from([("round".into(), "1".into())]))
            .await
            .unwrap_err();
    }
    let manager = open(&sim, dir.path()).await;
    assert_eq!(manager.resume().await.unwrap().len(), 2);
    drive(&sim, &manager).await;

    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    for record in manager.list().await.unwrap() {
        assert_eq!(record.state, JobState::Done);
        let results = manager.retrieve_results(&record.id).await.unwrap();
        assert_eq!(results.status, Some(BatchStatus::Completed));
        assert!(results.unfinished.is_empty(), "{results:?}");
        results
            .for_each_outcome(|line| {
                outcomes.insert(line.custom_id.clone(), line.outcome.clone());
            })
            .unwrap();
    }
    assert_eq!(outcomes.len(), 8);
    for i in 0..4 {
        let Some(Outcome::Succeeded { body, .. }) = outcomes.get(&format!("critique-{i}")) else {
            panic!("critique-{i}: {:?}", outcomes.get(&format!("critique-{i}")));
        };
        let body: serde_json::Value = body.parse().unwrap();
        assert_eq!(body["object"], "chat.completion");
        let Some(Outcome::Succeeded { body, .. }) = outcomes.get(&format!("render-{i}")) else {
            panic!("render-{i}");
        };
        let body: serde_json::Value = body.parse().unwrap();
        assert!(body["data"][0]["b64_json"].is_string(), "{body}");
    }
    let stats = sim.stats().await;
    assert_eq!((stats.files_uploaded, stats.batches_created), (2, 2));
    assert_eq!(stats.batch_requests_billed, 8);
    let endpoints: Vec<Endpoint> = manager
        .list()
        .await
        .unwrap()
        .iter()
        .map(|r| r.manifest.endpoint)
        .collect();
    assert!(endpoints.contains(&Endpoint::ImagesGenerations));
}

#[tokio::test]
async fn flaky_wire_and_a_restart_mid_poll_still_bill_each_request_once() {
    let faults = FaultConfig::default()
        .with_rule(FaultRule::new(FaultKind::RateLimit).probability(0.25))
        .with_rule(FaultRule::new(FaultKind::ConnectionReset).probability(0.1))
        .with_rule(
            FaultRule::new(FaultKind::TruncatedDownload)
                .on("GET", "/v1/files/*/content")
                .next(2),
        );
    let sim = openai_sim::spawn(
        SimConfig::default()
            .with_frozen_clock()
            .with_seed(3)
            .with_faults(faults),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shards = round(6);
    {
        let manager = open(&sim, dir.path()).await;
        for shard in &shards {
            let _ = manager.submit_batch(shard, BTreeMap::new()).await;
        }
        for _ in 0..3 {
            let _ = manager.poll_once().await;
            sim.advance_clock(10.0).await;
        }
    }
    let manager = open(&sim, dir.path()).await;
    manager.resume().await.unwrap();
    drive(&sim, &manager).await;
    let mut succeeded = 0;
    for record in manager.list().await.unwrap() {
        let results = manager.retrieve_results(&record.id).await.unwrap();
        assert!(results.unfinished.is_empty() && results.duplicates.is_empty());
        succeeded += results.succeeded;
    }
    assert_eq!(succeeded, 12);
    let stats = sim.stats().await;
    assert_eq!(
        (stats.files_uploaded, stats.batches_created),
        (2, 2),
        "{stats:?}"
    );
    assert_eq!(stats.batch_requests_billed, 12);
}
