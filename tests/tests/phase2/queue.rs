//! BatchRequestQueue against openai-sim: concurrent sessions share one batch, a restart between
//! enqueue and result loses nothing, expired and failed requests come back through a retry or
//! the standard API with the tier recorded (or reach the caller as errors), and every request is
//! billed once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use batch_client::{
    ApiKey, BatchJobManager, ClientConfig, ManagerConfig, OpenAiClient, RetryPolicy, SubmitStep,
};
use batch_format::{ChatOptions, ImageGenerationRequest, Message};
use batch_queue::{
    BatchRequestQueue, Completed, Error, QueueConfig, QueuedRequest, RequestHandle, RequestId, Tier,
};
use batchbeam_tests::Clock;
use openai_sim::{BatchOutcome, BatchOutcomeRule, FaultConfig, SimConfig, SimHandle};

const KEY: &str = "sk-phase2-queue-0000";

fn client(sim: &SimHandle) -> OpenAiClient {
    OpenAiClient::new(
        ClientConfig::new(sim.base_url(), ApiKey::new(KEY)).with_retry(RetryPolicy::fast()),
    )
    .unwrap()
}

async fn open(sim: &SimHandle, dir: &Path, config: QueueConfig) -> BatchRequestQueue {
    open_with_manager(sim, dir, config).await.0
}

async fn open_with_manager(
    sim: &SimHandle,
    dir: &Path,
    config: QueueConfig,
) -> (BatchRequestQueue, BatchJobManager) {
    let mut manager_config = ManagerConfig::new(dir.join("files"));
    manager_config.poll_interval = Duration::from_millis(2);
    manager_config.poll_ceiling = Duration::from_millis(5);
    manager_config.lease = Duration::from_millis(30);
    let manager = BatchJobManager::open(client(sim), &dir.join("batchbeam.db"), manager_config)
        .await
        .unwrap();
    let queue = BatchRequestQueue::new(Arc::new(manager.clone()), client(sim), config)
        .await
        .unwrap();
    (queue, manager)
}

fn chat(session: &str, i: usize) -> QueuedRequest {
    QueuedRequest::Chat(
        ChatOptions {
            max_tokens: Some(100),
            ..ChatOptions::new("gpt-4o-mini")
        }
        .into_request(vec![Message::user(format!(
            "Session {session}, candidate {i}: critique 'a lighthouse in a storm'."
        ))]),
    )
}

/// A request's result fetched by id (as after a restart), polling until it is there.
async fn result_by_id(queue: &BatchRequestQueue, id: &RequestId) -> Completed {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(done) = queue.result_for(id).await.unwrap() {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no result for {id}"))
}

async fn wait_all(handles: Vec<RequestHandle>) -> Vec<Result<Completed, Error>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(
            tokio::time::timeout(Duration::from_secs(60), h.wait())
                .await
                .expect("a request never finished"),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sessions_share_one_batch() {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    let session = |name: &'static str| {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..5 {
                handles.push(queue.enqueue("critique", chat(name, i)).await.unwrap());
            }
            handles
        })
    };
    let (a, b) = tokio::join!(session("a"), session("b"));
    let mut handles = a.unwrap();
    handles.extend(b.unwrap());
    queue.flush().await.unwrap();
    queue.flush().await.unwrap(); // a second barrier with nothing pending submits nothing
    let _clock = Clock::start(&sim);
    let results = wait_all(handles).await;
    let batch_ids: Vec<_> = results
        .iter()
        .map(|r| {
            let done = r.as_ref().unwrap();
            assert_eq!((done.tier, done.attempts), (Tier::Batch, 1));
            assert!(done.usage.is_some());
            assert!(done.body["choices"][0]["message"]["content"].is_string());
            done.batch_ids.clone()
        })
        .collect();
    assert!(
        batch_ids
            .iter()
            .all(|ids| ids.len() == 1 && ids == &batch_ids[0])
    );
    let stats = sim.stats().await;
    assert_eq!(stats.batches_created, 1, "both sessions in one batch");
    assert_eq!(stats.batch_requests_billed, 10);
    assert_eq!(stats.sync_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_between_enqueue_and_result_delivers_everything() {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut ids: Vec<RequestId> = Vec::new();
    {
        let queue = open(&sim, dir.path(), QueueConfig::default()).await;
        for i in 0..4 {
            ids.push(
                queue
                    .enqueue("critique", chat("r", i))
                    .await
                    .unwrap()
                    .id()
                    .clone(),
            );
            let image =
                ImageGenerationRequest::new("gpt-image-1", format!("a lighthouse, take {i}"));
            ids.push(
                queue
                    .enqueue("render", QueuedRequest::Image(image))
                    .await
                    .unwrap()
                    .id()
                    .clone(),
            );
        }
        queue.flush().await.unwrap(); // two groups: two batches, submitted, not finished
        // Queued after the barrier and never flushed before the "crash".
        for i in 4..6 {
            ids.push(
                queue
                    .enqueue("critique", chat("r", i))
                    .await
                    .unwrap()
                    .id()
                    .clone(),
            );
        }
        assert!(queue.result_for(&ids[0]).await.unwrap().is_none());
    } // queue, manager and handles dropped: the process is gone
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    assert_eq!(queue.resume().await.unwrap(), 10);
    queue.flush().await.unwrap();
    let _clock = Clock::start(&sim);
    for id in &ids {
        let done = result_by_id(&queue, id).await;
        assert_eq!((&done.request_id, done.tier), (id, Tier::Batch));
    }
    let stats = sim.stats().await;
    assert_eq!(stats.batches_created, 3);
    assert_eq!(stats.batch_requests_billed, 10, "each request billed once");
    assert_eq!(stats.sync_requests, 0);
    assert!(matches!(
        queue.result_for(&RequestId::from("rq_never")).await,
        Err(Error::UnknownRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_requests_are_retried_in_a_later_batch() {
    let faults = FaultConfig::default()
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Expire).next(1));
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock().with_faults(faults))
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    let mut handles = Vec::new();
    for i in 0..8 {
        handles.push(queue.enqueue("critique", chat("x", i)).await.unwrap());
    }
    queue.flush().await.unwrap();
    let _clock = Clock::start(&sim);
    let results = wait_all(handles).await;
    let mut retried = 0;
    for r in &results {
        let done = r.as_ref().unwrap();
        assert_eq!(done.tier, Tier::Batch);
        assert_eq!(done.batch_ids.len(), done.attempts as usize);
        if done.attempts == 2 {
            retried += 1;
        }
    }
    assert!(
        retried > 0 && retried < 8,
        "half expired, retried: {retried}"
    );
    let stats = sim.stats().await;
    assert_eq!(stats.batches_created, 2);
    assert_eq!(stats.faults.get("batch_expire"), Some(&1));
    assert_eq!(stats.batch_requests_billed, 8, "each request billed once");
    assert_eq!(stats.sync_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_batches_fall_back_to_the_standard_api() {
    let faults =
        FaultConfig::default().with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Fail));
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock().with_faults(faults))
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    // One retry in a batch (which fails too), then the standard API.
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    let mut handles = Vec::new();
    for i in 0..3 {
        handles.push(queue.enqueue("critique", chat("f", i)).await.unwrap());
    }
    let image = ImageGenerationRequest::new("gpt-image-1", "a lighthouse at dawn");
    handles.push(
        queue
            .enqueue("render", QueuedRequest::Image(image))
            .await
            .unwrap(),
    );
    queue.flush().await.unwrap();
    let _clock = Clock::start(&sim);
    for r in wait_all(handles).await {
        let done = r.unwrap();
        assert_eq!(done.tier, Tier::Standard);
        assert_eq!(done.attempts, 3, "two batches, then the standard API");
        assert_eq!(done.batch_ids.len(), 2);
        assert!(done.usage.is_some() || done.body["data"].is_array());
        let again = queue.result_for(&done.request_id).await.unwrap().unwrap();
        assert_eq!(again, done);
    }
    let stats = sim.stats().await;
    assert_eq!(stats.batches_created, 4, "two groups, each tried twice");
    assert_eq!(stats.batch_requests_billed, 0);
    assert_eq!(
        stats.sync_requests, 4,
        "each request sent to the standard API once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_fallback_the_error_reaches_the_caller() {
    let faults =
        FaultConfig::default().with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Fail));
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock().with_faults(faults))
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        max_retries: 0,
        fallback_to_standard: false,
        ..QueueConfig::default()
    };
    let queue = open(&sim, dir.path(), config).await;
    let handle = queue.enqueue("critique", chat("e", 0)).await.unwrap();
    let id = handle.id().clone();
    queue.flush().await.unwrap();
    let _clock = Clock::start(&sim);
    let err = wait_all(vec![handle]).await.pop().unwrap().unwrap_err();
    match &err {
        Error::Request {
            id: failed,
            tier,
            attempts,
            code,
            ..
        } => {
            assert_eq!((failed, *tier, *attempts), (&id, Tier::Batch, 1));
            assert_eq!(code.as_deref(), Some("server_error"));
        }
        other => panic!("expected the request own error, got {other:?}"),
    }
    assert!(matches!(
        queue.result_for(&id).await,
        Err(Error::Request { .. })
    ));
    let stats = sim.stats().await;
    assert_eq!((stats.batches_created, stats.sync_requests), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_flush_at_their_size_limit_and_after_the_delay() {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        max_group_size: 3,
        flush_delay: Some(Duration::from_millis(200)),
        ..QueueConfig::default()
    };
    let queue = open(&sim, dir.path(), config).await;
    let mut handles = Vec::new();
    for i in 0..7 {
        handles.push(queue.enqueue("critique", chat("g", i)).await.unwrap());
    }
    // No flush(): two full groups go at once, the seventh after the delay.
    let _clock = Clock::start(&sim);
    let results = wait_all(handles).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().tier == Tier::Batch)
    );
    let stats = sim.stats().await;
    assert_eq!(stats.batches_created, 3);
    assert!(stats.batches.values().all(|b| b.total <= 3));
    assert_eq!(stats.batch_requests_billed, 7);
}

#[tokio::test]
async fn bad_requests_and_configs_are_refused_up_front() {
    let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    let empty = QueuedRequest::Chat(ChatOptions::new("gpt-4o-mini").into_request(vec![]));
    assert!(matches!(
        queue.enqueue("critique", empty).await,
        Err(Error::InvalidRequest(_))
    ));
    let no_model = QueuedRequest::Raw {
        endpoint: batch_format::Endpoint::Embeddings,
        body: serde_json::json!({"input": "x"})
            .as_object()
            .unwrap()
            .clone(),
    };
    assert!(matches!(
        queue.enqueue("embed", no_model).await,
        Err(Error::InvalidRequest(_))
    ));
    for bad in [0, 50_001] {
        let config = QueueConfig {
            max_group_size: bad,
            ..QueueConfig::default()
        };
        assert!(matches!(config.validate(), Err(Error::Config(_))));
    }
    assert_eq!(sim.stats().await.files_uploaded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flush_that_dies_inside_submit_is_adopted_and_sent_once() {
    for step in [SubmitStep::AfterIntent, SubmitStep::AfterCreateSent] {
        let sim = Arc::new(
            openai_sim::spawn(SimConfig::default().with_frozen_clock())
                .await
                .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let mut ids = Vec::new();
        {
            let (queue, manager) =
                open_with_manager(&sim, dir.path(), QueueConfig::default()).await;
            for i in 0..4 {
                ids.push(
                    queue
                        .enqueue("critique", chat("d", i))
                        .await
                        .unwrap()
                        .id()
                        .clone(),
                );
            }
            manager.set_failpoint(Some(step));
            queue.flush().await.unwrap(); // submit "dies"; the queue finds the record by metadata
            manager.set_failpoint(None);
        } // and the process goes away before anything else happens
        let queue = open(&sim, dir.path(), QueueConfig::default()).await;
        assert_eq!(queue.resume().await.unwrap(), 4, "{step}");
        let _clock = Clock::start(&sim);
        for id in &ids {
            let done = result_by_id(&queue, id).await;
            assert_eq!((done.tier, done.attempts), (Tier::Batch, 1), "{step}");
        }
        let stats = sim.stats().await;
        assert_eq!(
            (
                stats.files_uploaded,
                stats.batches_created,
                stats.batch_requests_billed
            ),
            (1, 1, 4),
            "{step}: one upload, one batch, each request billed once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_queues_on_one_database_settle_each_request_once() {
    let faults = FaultConfig::default()
        .with_batch_outcome(BatchOutcomeRule::new(BatchOutcome::Expire).next(1));
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock().with_faults(faults))
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (first, manager) = open_with_manager(&sim, dir.path(), QueueConfig::default()).await;
    // A second queue on the same database (as a second process would be) settles too.
    let second = BatchRequestQueue::new(Arc::new(manager), client(&sim), QueueConfig::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            first
                .enqueue("critique", chat("two", i))
                .await
                .unwrap()
                .id()
                .clone(),
        );
    }
    first.flush().await.unwrap();
    let _clock = Clock::start(&sim);
    for id in &ids {
        let done = result_by_id(&second, id).await;
        assert_eq!(done.tier, Tier::Batch);
        assert_eq!(done.batch_ids.len(), done.attempts as usize);
    }
    let stats = sim.stats().await;
    assert_eq!(
        stats.batches_created, 2,
        "the expired half retried in one batch, not two"
    );
    assert_eq!(stats.batch_requests_billed, 8);
    assert_eq!(stats.sync_requests, 0);
}

#[tokio::test]
async fn a_request_the_batch_validator_would_refuse_is_refused_at_enqueue() {
    let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    let QueuedRequest::Chat(mut streaming) = chat("v", 0) else {
        unreachable!()
    };
    // Valid for the synchronous API, refused in a batch: it must not sink its batch-mates.
    streaming
        .extra
        .insert("stream".into(), serde_json::Value::Bool(true));
    match queue
        .enqueue("critique", QueuedRequest::Chat(streaming))
        .await
    {
        Err(Error::InvalidRequest(message)) => assert!(message.contains("stream"), "{message}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    let good = queue.enqueue("critique", chat("v", 1)).await.unwrap();
    queue.flush().await.unwrap();
    let sim = Arc::new(sim);
    let _clock = Clock::start(&sim);
    assert_eq!(
        wait_all(vec![good]).await.pop().unwrap().unwrap().tier,
        Tier::Batch
    );
    assert_eq!(sim.stats().await.batches_created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_the_model_refuses_fails_at_once_with_openais_status() {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    // Valid batch input; the endpoint refuses the model (it is not a chat model).
    let refused = ChatOptions::new("text-embedding-3-small")
        .into_request(vec![Message::user("Critique 'a lighthouse'.")]);
    let handle = match queue
        .enqueue("critique", QueuedRequest::Chat(refused))
        .await
    {
        Ok(handle) => handle,
        Err(e) => panic!("refused at enqueue: {e}"),
    };
    queue.flush().await.unwrap();
    let _clock = Clock::start(&sim);
    match wait_all(vec![handle]).await.pop().unwrap() {
        Err(Error::Request {
            tier,
            attempts,
            status,
            message,
            ..
        }) => {
            assert_eq!(
                (tier, attempts),
                (Tier::Batch, 1),
                "neither retried nor sent again"
            );
            assert_eq!(status, Some(404), "{message}");
            assert!(message.contains("not a chat model"), "{message}");
        }
        other => panic!("expected OpenAI's refusal, got {other:?}"),
    }
    let stats = sim.stats().await;
    assert_eq!((stats.batches_created, stats.sync_requests), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_requests_are_sent_once_across_a_restart() {
    let sim = Arc::new(
        openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..4).map(|i| format!("session-k/judge/{i}")).collect();
    let ids: Vec<RequestId> = keys.iter().map(|k| RequestId::for_key(k)).collect();
    {
        let queue = open(&sim, dir.path(), QueueConfig::default()).await;
        assert_eq!(queue.known(&ids).await.unwrap(), 0);
        for (i, key) in keys.iter().enumerate() {
            let handle = queue
                .enqueue_keyed("judge", key, chat("k", i))
                .await
                .unwrap();
            assert_eq!(handle.id(), &ids[i]);
        }
        assert_eq!(queue.known(&ids).await.unwrap(), 4);
        // The same key again (a caller retrying before the batch is out) stores nothing new.
        let again = queue.enqueue_keyed("judge", &keys[0], chat("k", 0)).await;
        assert_eq!(again.unwrap().id(), &ids[0]);
        // A key reused for another request is refused, naming the key.
        let err = queue
            .enqueue_keyed("judge", &keys[0], chat("k", 99))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidRequest(m) if m.contains(&keys[0])),
            "{err}"
        );
        queue.flush().await.unwrap();
    } // the process dies with its batch in flight
    let queue = open(&sim, dir.path(), QueueConfig::default()).await;
    queue.resume().await.unwrap();
    let _clock = Clock::start(&sim);
    // The restarted caller asks again under the same keys and gets the first batch's results.
    let mut handles = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        handles.push(
            queue
                .enqueue_keyed("judge", key, chat("k", i))
                .await
                .unwrap(),
        );
    }
    queue.flush().await.unwrap();
    for result in wait_all(handles).await {
        assert_eq!(result.unwrap().tier, Tier::Batch);
    }
    // Asking once more after the results are in answers at once from the database.
    let done = queue
        .enqueue_keyed("judge", &keys[3], chat("k", 3))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(done.request_id, ids[3]);
    let stats = sim.stats().await;
    assert_eq!(stats.batches_created, 1, "no batch for the repeated keys");
    assert_eq!(stats.batch_requests_billed, 4);
}
