//! The batch tier's stage barrier: it opens once every keyed call is stored, and the flush
//! lets them go.

use std::time::Duration;

use batch_client::{
    ApiKey, BatchJobManager, ClientConfig, ManagerConfig, OpenAiClient, RetryPolicy,
};
use batch_queue::QueueConfig;
use openai_sim::SimConfig;

use super::*;
use crate::{ChatRequest, LlmProvider, OpenAiProvider, RoleModels};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_barrier_opens_once_every_keyed_call_is_stored() {
    let sim = openai_sim::spawn(SimConfig::default().with_time_scale(1000.0))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = || {
        let config = ClientConfig::new(sim.base_url(), ApiKey::new("sk-test"));
        OpenAiClient::new(config.with_retry(RetryPolicy::fast())).unwrap()
    };
    let mut config = ManagerConfig::new(dir.path().join("files"));
    config.poll_interval = Duration::from_millis(2);
    config.poll_ceiling = Duration::from_millis(5);
    let manager = BatchJobManager::open(client(), &dir.path().join("batchbeam.db"), config)
        .await
        .unwrap();
    let queue = BatchRequestQueue::new(Arc::new(manager), client(), QueueConfig::default())
        .await
        .unwrap();
    let transport = BatchTransport::new(Arc::new(queue), BatchMode::Deferred);
    let barrier = transport.barrier();
    assert!(barrier.holds_calls());
    let keys = vec!["s/0/a".to_owned(), "s/0/b".to_owned()];
    let waits = |keys: Vec<String>| {
        let barrier = barrier.clone();
        async move {
            tokio::time::timeout(Duration::from_millis(200), barrier.stored(&keys))
                .await
                .is_err()
        }
    };
    assert!(waits(keys.clone()).await, "nothing is stored yet");

    let llm = Arc::new(OpenAiProvider::new(
        Arc::new(transport),
        RoleModels::default(),
    ));
    let send = |key: &str| {
        let (llm, key) = (llm.clone(), key.to_owned());
        tokio::spawn(async move {
            let request = ChatRequest::new(Operation::Expand, "Idea: a fox").with_key(key);
            llm.chat(request).await
        })
    };
    let first = send(&keys[0]);
    tokio::time::timeout(Duration::from_secs(10), barrier.stored(&keys[..1]))
        .await
        .expect("the first call is stored")
        .unwrap();
    assert!(
        waits(keys.clone()).await,
        "the second call is not stored yet"
    );
    let second = send(&keys[1]);
    tokio::time::timeout(Duration::from_secs(10), barrier.stored(&keys))
        .await
        .expect("both calls are stored")
        .unwrap();
    assert!(
        !first.is_finished(),
        "deferred: nothing goes before the flush"
    );
    barrier.flush().await.unwrap();
    for call in [first, second] {
        let reply = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("the flush lets the calls go")
            .unwrap()
            .unwrap();
        assert_eq!(reply.meta.tier, Tier::Batch);
    }
    assert_eq!(barrier.batches(&keys).await.len(), 1, "one batch for both");
    // Answered: no longer stored, so a barrier on them waits (the caller no longer asks).
    assert!(waits(keys).await);
    sim.shutdown().await;
}
