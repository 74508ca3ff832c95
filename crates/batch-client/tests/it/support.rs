//! Shared helpers: a simulator, a client and manager for it, shards to submit, and a driver that
//! moves simulated time instead of sleeping.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use batch_client::{
    ApiKey, BatchJobManager, ClientConfig, JobRecord, ManagerConfig, OpenAiClient, RetryPolicy,
};
use batch_format::{BatchRequestBuilder, ChatOptions, Message, Shard};
use openai_sim::{SimConfig, SimHandle};

pub(crate) const KEY: &str = "sk-proj-TESTKEY-9f8e7d6c5b4a39281706";

pub(crate) async fn sim() -> SimHandle {
    sim_with(SimConfig::default().with_frozen_clock()).await
}

pub(crate) async fn sim_with(config: SimConfig) -> SimHandle {
    openai_sim::spawn(config).await.expect("spawn sim")
}

pub(crate) fn client(base_url: &str) -> OpenAiClient {
    let config = ClientConfig::new(base_url, ApiKey::new(KEY)).with_retry(RetryPolicy::fast());
    OpenAiClient::new(config).expect("client")
}

pub(crate) fn manager_config(dir: &Path) -> ManagerConfig {
    let mut config = ManagerConfig::new(dir.join("data"));
    config.poll_interval = Duration::from_millis(1);
    config.poll_ceiling = Duration::from_millis(2);
    config.resubmit_delay = Duration::from_millis(1);
    // A "crashed" manager's lease runs out quickly.
    config.lease = Duration::from_millis(30);
    config
}

pub(crate) async fn manager(sim: &SimHandle, dir: &Path) -> BatchJobManager {
    manager_with(sim, dir, manager_config(dir)).await
}

pub(crate) async fn manager_with(
    sim: &SimHandle,
    dir: &Path,
    config: ManagerConfig,
) -> BatchJobManager {
    BatchJobManager::open(client(&sim.base_url()), &dir.join("batchbeam.db"), config)
        .await
        .expect("open manager")
}

/// `shards` shards of `per_shard` chat requests each (ids `s{shard}-r{n}`).
pub(crate) fn shards(name: &str, shards: usize, per_shard: usize) -> Vec<Shard> {
    let mut builder = BatchRequestBuilder::with_limits(batch_format::ShardLimits {
        max_lines: per_shard,
        ..Default::default()
    });
    for n in 0..shards * per_shard {
        builder
            .add_chat_completion_request(
                format!("{name}-r{n}"),
                vec![Message::user(format!(
                    "Write prompt number {n} about a fox."
                ))],
                ChatOptions::new("gpt-4o-mini"),
            )
            .expect("add request");
    }
    builder.build_batch(name).expect("build").into_shards()
}

pub(crate) fn no_metadata() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// Polls and advances simulated time until every record is finished (at most `rounds` rounds).
pub(crate) async fn drive(
    sim: &SimHandle,
    manager: &BatchJobManager,
    rounds: usize,
) -> Vec<JobRecord> {
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let _ = manager.poll_once().await;
        let records = manager.list().await.expect("list");
        if records.iter().all(|r| r.state.is_finished()) {
            return records;
        }
        sim.advance_clock(15.0).await;
    }
    panic!(
        "records still unfinished: {:#?}",
        manager.list().await.unwrap()
    );
}
