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
    client_timing_out(
        base_url,
        ClientConfig::new(base_url, ApiKey::new(KEY)).timeout,
    )
}

/// A client whose requests time out after `timeout`: a create it sends bounds its manager's
/// lease on the record by this plus one lease.
pub(crate) fn client_timing_out(base_url: &str, timeout: Duration) -> OpenAiClient {
    let config = ClientConfig::new(base_url, ApiKey::new(KEY))
        .with_retry(RetryPolicy::fast())
        .with_timeout(timeout);
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

/// Polls and advances simulated time until every record is finished, for at most `limit` of
/// wall time (generous: a record may wait out a dead process's lease first).
pub(crate) async fn drive_for(
    sim: &SimHandle,
    manager: &BatchJobManager,
    limit: Duration,
) -> Vec<JobRecord> {
    let started = std::time::Instant::now();
    drive_while(sim, manager, Duration::from_millis(20), || {
        started.elapsed() < limit
    })
    .await
}

/// Polls and advances simulated time until every record is finished (at most `rounds` rounds).
pub(crate) async fn drive(
    sim: &SimHandle,
    manager: &BatchJobManager,
    rounds: usize,
) -> Vec<JobRecord> {
    let mut round = 0;
    drive_while(sim, manager, Duration::from_millis(3), || {
        round += 1;
        round <= rounds
    })
    .await
}

/// A round (pause, poll, advance simulated time) while `more` says so, until every record is
/// finished; panics when `more` gives up first.
async fn drive_while(
    sim: &SimHandle,
    manager: &BatchJobManager,
    pause: Duration,
    mut more: impl FnMut() -> bool,
) -> Vec<JobRecord> {
    while more() {
        tokio::time::sleep(pause).await;
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
