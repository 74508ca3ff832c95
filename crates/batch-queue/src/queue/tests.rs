//! The queue's own suite: restarts, and several queues (processes) on one database, on every
//! backend (PostgreSQL when `BATCHBEAM_TEST_POSTGRES` names a server).

use std::collections::BTreeMap;

use super::*;
use crate::Tier;
use crate::store::tests::backends::{self, Backend};
use batch_client::{ApiKey, ClientConfig, ManagerConfig, RetryPolicy};
use batch_format::ChatCompletionRequest;
use batch_format::{BatchRequestBuilder, BatchRequestLine};
use batch_format::{ChatOptions, Message};
use openai_sim::SimConfig;
use sqlx::Row;

fn chat(i: usize) -> ChatCompletionRequest {
    ChatOptions::new("gpt-4o-mini").into_request(vec![Message::user(format!("Critique {i}."))])
}

async fn mark_dispatching(pool: &sqlx::SqlitePool, dispatch: &str, ids: &[RequestId]) {
    for id in ids {
        sqlx::query(
            "UPDATE queue_requests SET state = 'dispatching', dispatch_id = ? WHERE id = ?",
        )
        .bind(dispatch.to_owned())
        .bind(id.as_str().to_owned())
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn state_of(pool: &sqlx::SqlitePool, id: &RequestId) -> String {
    sqlx::query("SELECT state FROM queue_requests WHERE id = ?")
        .bind(id.as_str().to_owned())
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0)
}

async fn dispatch_of(pool: &sqlx::SqlitePool, id: &RequestId) -> Option<String> {
    sqlx::query("SELECT dispatch_id FROM queue_requests WHERE id = ?")
        .bind(id.as_str().to_owned())
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0)
}

/// A simulator on a frozen clock and a manager polling it fast, in a temporary folder.
async fn frozen_sim_manager() -> (
    openai_sim::SimHandle,
    tempfile::TempDir,
    OpenAiClient,
    Arc<BatchJobManager>,
) {
    let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = OpenAiClient::new(
        ClientConfig::new(sim.base_url(), ApiKey::new("sk-unit")).with_retry(RetryPolicy::fast()),
    )
    .unwrap();
    let mut config = ManagerConfig::new(dir.path().join("files"));
    config.poll_interval = Duration::from_millis(2);
    config.poll_ceiling = Duration::from_millis(5);
    let manager = Arc::new(
        BatchJobManager::open(client.clone(), &dir.path().join("db.sqlite"), config)
            .await
            .unwrap(),
    );
    (sim, dir, client, manager)
}

/// A database of the queue's first schema, with requests pending and left dispatching by a
/// flush that died, is migrated to spans: the old rows are dispatched after the upgrade
/// beside requests enqueued after it, each sent and billed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pending_before_the_spans_migration_are_dispatched_after_it() {
    let (sim, _dir, client, manager) = frozen_sim_manager().await;
    let pool = manager.store().sqlite_pool().unwrap().clone();
    for sql in crate::store::tests::SCHEMA_BEFORE_MIGRATIONS {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    let mut old = Vec::new();
    for i in 0..5 {
        let id = RequestId::new();
        let checked = crate::line::check(&id, QueuedRequest::Chat(chat(i))).unwrap();
        let (state, dispatch) = if i < 3 {
            ("pending", None)
        } else {
            ("dispatching", Some("qd_died"))
        };
        sqlx::query(
            "INSERT INTO queue_requests (id, operation, endpoint, model, body, state, dispatch_id, created_at_ms, updated_at_ms) VALUES (?, 'critique', ?, ?, ?, ?, ?, 1, 1)",
        )
        .bind(id.as_str().to_owned())
        .bind(checked.endpoint.as_str())
        .bind(checked.model)
        .bind(checked.body)
        .bind(state)
        .bind(dispatch)
        .execute(&pool)
        .await
        .unwrap();
        old.push(id);
    }

    let queue = BatchRequestQueue::new(Arc::clone(&manager), client, QueueConfig::default())
        .await
        .unwrap();
    assert_eq!(queue.resume().await.unwrap(), 5);
    let mut handles = Vec::new();
    for i in 5..8 {
        handles.push(
            queue
                .enqueue("critique", QueuedRequest::Chat(chat(i)))
                .await
                .unwrap(),
        );
    }
    let ids: Vec<RequestId> = old
        .iter()
        .cloned()
        .chain(handles.iter().map(|h| h.id().clone()))
        .collect();
    queue.flush().await.unwrap();
    each_sent_once_in_a_batch(&sim, &queue, &ids).await;
    let stats = sim.stats().await;
    assert_eq!((stats.batches_created, stats.batch_requests_billed), (1, 8));
}

/// A process that died inside a flush left requests `dispatching`: those whose submit
/// reached batch-client (a record with their dispatch id) are adopted, the rest go back to
/// pending; each is sent and billed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_adopts_or_releases_requests_left_dispatching() {
    let (sim, _dir, client, manager) = frozen_sim_manager().await;
    let pool = manager.store().sqlite_pool().unwrap().clone();
    let queue =
        BatchRequestQueue::new(Arc::clone(&manager), client.clone(), QueueConfig::default())
            .await
            .unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            queue
                .enqueue("critique", QueuedRequest::Chat(chat(i)))
                .await
                .unwrap()
                .id()
                .clone(),
        );
    }
    drop(queue);
    mark_dispatching(&pool, "qd_lost", &ids[..3]).await;
    mark_dispatching(&pool, "qd_sent", &ids[3..]).await;
    let mut builder = BatchRequestBuilder::new();
    for (i, id) in ids.iter().enumerate().skip(3) {
        builder
            .add_line(BatchRequestLine::chat(id.as_str(), chat(i)))
            .unwrap();
    }
    let batch = builder.build_batch("sent").unwrap();
    let metadata = BTreeMap::from([(METADATA_DISPATCH.to_owned(), "qd_sent".to_owned())]);
    manager
        .submit_batch(&batch.shards()[0], metadata)
        .await
        .unwrap();

    let queue = BatchRequestQueue::new(Arc::clone(&manager), client, QueueConfig::default())
        .await
        .unwrap();
    assert_eq!(queue.resume().await.unwrap(), 6);
    for id in &ids[..3] {
        // Released: pending, unless the queue's driver (woken by `resume`) already flushed it.
        let (state, dispatch) = (state_of(&pool, id).await, dispatch_of(&pool, id).await);
        assert!(
            state == "pending" || dispatch.as_deref() != Some("qd_lost"),
            "{id}: {state} under {dispatch:?}"
        );
    }
    for id in &ids[3..] {
        assert_eq!(state_of(&pool, id).await, "submitted");
    }
    queue.flush().await.unwrap();
    each_sent_once_in_a_batch(&sim, &queue, &ids).await;
    let stats = sim.stats().await;
    assert_eq!((stats.batches_created, stats.batch_requests_billed), (2, 6));
}

/// One process of a shared-database test: its own pool, files, manager and queue.
struct Instance {
    manager: Arc<BatchJobManager>,
    queue: BatchRequestQueue,
    db: batch_client::Database,
}

impl Instance {
    /// An instance on `backend`'s database talking to `sim`, its files under `dir`, holding
    /// leases for `lease`.
    async fn start(
        backend: &Backend,
        sim: &openai_sim::SimHandle,
        dir: &std::path::Path,
        lease: Duration,
    ) -> Instance {
        let client = OpenAiClient::new(
            ClientConfig::new(sim.base_url(), ApiKey::new("sk-unit"))
                .with_retry(RetryPolicy::fast()),
        )
        .unwrap();
        let mut config = ManagerConfig::new(dir.join(ulid::Ulid::new().to_string()));
        config.poll_interval = Duration::from_millis(2);
        config.poll_ceiling = Duration::from_millis(5);
        config.lease = lease;
        let db = backend.open().await;
        let manager = Arc::new(
            BatchJobManager::on(client.clone(), db.clone(), config)
                .await
                .unwrap(),
        );
        let queue = BatchRequestQueue::new(Arc::clone(&manager), client, QueueConfig::default())
            .await
            .unwrap();
        Instance { manager, queue, db }
    }

    async fn enqueue(&self, i: usize) -> RequestHandle {
        self.queue
            .enqueue("critique", QueuedRequest::Chat(chat(i)))
            .await
            .unwrap()
    }
}

/// Steps the simulator's clock until `done` holds (a generous wall-clock deadline, never a
/// measure of speed).
async fn run_until<F, Fut>(sim: &openai_sim::SimHandle, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done().await {
        assert!(Instant::now() < deadline, "not settled within two minutes");
        sim.advance_clock(60.0).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Steps the simulator until none of `ids` is in flight, then checks that each was answered by
/// its first batch.
async fn each_sent_once_in_a_batch(
    sim: &openai_sim::SimHandle,
    queue: &BatchRequestQueue,
    ids: &[RequestId],
) {
    run_until(sim, || async {
        queue.in_flight(ids).await.unwrap().is_empty()
    })
    .await;
    for id in ids {
        let done = queue.result_for(id).await.unwrap().expect("a result");
        assert_eq!(
            (done.tier, done.attempts, done.batch_ids.len()),
            (Tier::Batch, 1, 1)
        );
    }
}

/// Waits for every handle, whichever instance settles its request.
async fn wait_all(sim: &openai_sim::SimHandle, handles: Vec<RequestHandle>) -> Vec<Completed> {
    let tasks: Vec<_> = handles
        .into_iter()
        .map(|h| tokio::spawn(h.wait()))
        .collect();
    run_until(sim, || async { tasks.iter().all(|t| t.is_finished()) }).await;
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.unwrap().unwrap());
    }
    done
}

/// Requests enqueued by sessions on two instances go out in one batch when one of them
/// flushes, and each handle resolves on the instance that enqueued it, whichever polled the
/// batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_two_instances_coalesce_into_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends::all(dir.path()).await {
        eprintln!("backend: {}", backend.name);
        let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let a = Instance::start(&backend, &sim, dir.path(), lease).await;
        let b = Instance::start(&backend, &sim, dir.path(), lease).await;
        let mut handles = Vec::new();
        for i in 0..6 {
            handles.push(if i % 2 == 0 {
                a.enqueue(i).await
            } else {
                b.enqueue(i).await
            });
        }
        a.queue.flush().await.unwrap();
        assert_eq!(sim.stats().await.batches_created, 1);
        for done in wait_all(&sim, handles).await {
            assert_eq!((done.tier, done.attempts), (Tier::Batch, 1));
        }
        let stats = sim.stats().await;
        assert_eq!((stats.batches_created, stats.batch_requests_billed), (1, 6));
    }
}

/// Two instances enqueueing and flushing one group at once: every request is sent once and
/// answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_flushing_at_once_send_each_request_once() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends::all(dir.path()).await {
        eprintln!("backend: {}", backend.name);
        let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let a = Arc::new(Instance::start(&backend, &sim, dir.path(), lease).await);
        let b = Arc::new(Instance::start(&backend, &sim, dir.path(), lease).await);
        let sessions: Vec<_> = [&a, &b]
            .into_iter()
            .enumerate()
            .map(|(n, instance)| {
                let instance = Arc::clone(instance);
                tokio::spawn(async move {
                    let mut handles = Vec::new();
                    for i in 0..20 {
                        handles.push(instance.enqueue(n * 100 + i).await);
                        if i % 5 == 4 {
                            instance.queue.flush().await.unwrap();
                        }
                    }
                    handles
                })
            })
            .collect();
        let mut handles = Vec::new();
        for session in sessions {
            handles.extend(session.await.unwrap());
        }
        a.queue.flush().await.unwrap();
        b.queue.flush().await.unwrap();
        let done = wait_all(&sim, handles).await;
        assert_eq!(done.len(), 40);
        for done in &done {
            assert_eq!((done.tier, done.attempts), (Tier::Batch, 1));
        }
        assert_eq!(sim.stats().await.batch_requests_billed, 40);
    }
}

/// An instance dies mid-flush: one shard submitted (its upload done, its batch not created,
/// the record leased), the rest of its claim never sent. Another instance leaves its flush and
/// record alone while their leases hold, takes both over once they expire, and every request
/// ends done, each billed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_flush_is_carried_on_after_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends::all(dir.path()).await {
        eprintln!("backend: {}", backend.name);
        let sim = openai_sim::spawn(SimConfig::default().with_frozen_clock())
            .await
            .unwrap();
        let lease = Duration::from_secs(600);
        let a = Instance::start(&backend, &sim, dir.path(), lease).await;
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(a.enqueue(i).await.id().clone());
        }
        // A's flush: it claims all six, then dies after uploading its first shard of three.
        let key: GroupKey = (
            batch_format::Endpoint::ChatCompletions,
            "gpt-4o-mini".into(),
        );
        assert_eq!(
            a.queue
                .inner
                .store
                .claim("qd_dead", a.queue.inner.dispatch_lease(), &key, 100)
                .await
                .unwrap(),
            6
        );
        let mut builder = BatchRequestBuilder::new();
        for (i, id) in ids.iter().enumerate().take(3) {
            builder
                .add_line(BatchRequestLine::chat(id.as_str(), chat(i)))
                .unwrap();
        }
        let batch = builder.build_batch("dead").unwrap();
        let metadata = BTreeMap::from([(METADATA_DISPATCH.to_owned(), "qd_dead".to_owned())]);
        a.manager
            .set_failpoint(Some(batch_client::SubmitStep::AfterUpload));
        assert!(
            a.manager
                .submit_batch(&batch.shards()[0], metadata)
                .await
                .is_err()
        );
        let db = a.db.clone();
        drop(a);

        let b = Instance::start(&backend, &sim, dir.path(), lease).await;
        assert_eq!(b.queue.resume().await.unwrap(), 6);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Both leases hold: nothing of A's is touched.
        for (id, record) in b.queue.in_flight(&ids).await.unwrap() {
            assert_eq!(record, None, "{id} adopted while its flush was leased");
            assert_eq!(backends::state_of(&db, id.as_str()).await, "queued");
        }
        assert_eq!(sim.stats().await.batches_created, 0);

        // Time passes: the leases expire.
        backends::exec(&db, "UPDATE queue_dispatches SET lease_until_ms = 0").await;
        backends::exec(&db, "UPDATE batch_jobs SET lease_until_ms = 0").await;
        // The first shard is adopted and carried on, the rest of the claim flushed again.
        each_sent_once_in_a_batch(&sim, &b.queue, &ids).await;
        let stats = sim.stats().await;
        assert_eq!((stats.batches_created, stats.batch_requests_billed), (2, 6));
    }
}

/// Stage barriers of several sessions reached one after another share one batch when the queue
/// coalesces (`QueueConfig::coalesce`): each `flush_soon` returns once its requests are
/// submitted, and all of them are in the one batch. Without coalescing, each barrier sends its
/// own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barriers_of_several_sessions_share_one_batch_when_coalescing() {
    for (coalesce, batches) in [(Some(Duration::from_secs(60)), 1), (None, 3)] {
        let (sim, _dir, client, manager) = frozen_sim_manager().await;
        let config = QueueConfig {
            coalesce,
            ..QueueConfig::default()
        };
        let queue = BatchRequestQueue::new(manager, client, config)
            .await
            .unwrap();
        let mut barriers = Vec::new();
        let mut ids = Vec::new();
        for session in 0..3u64 {
            for i in 0..3 {
                let handle = queue
                    .enqueue(
                        "critique",
                        QueuedRequest::Chat(chat(session as usize * 10 + i)),
                    )
                    .await
                    .unwrap();
                ids.push(handle.id().clone());
            }
            let queue = queue.clone();
            let barrier = tokio::spawn(async move { queue.flush_soon().await });
            if coalesce.is_none() {
                // Not coalescing, the next session comes once this barrier has returned: had
                // it come while the flush still ran, the flush could take some of its requests
                // too (it takes what is pending), and the count would depend on timing.
                barrier.await.unwrap().unwrap();
                assert_eq!(sim.stats().await.batches_created, session + 1);
            } else {
                barriers.push(barrier);
            }
        }
        for barrier in barriers {
            barrier.await.unwrap().unwrap();
        }
        // Every request enqueued before its barrier is submitted when the barrier returns.
        let carried = queue.in_flight(&ids).await.unwrap();
        assert_eq!(carried.len(), ids.len());
        assert!(
            carried.iter().all(|(_, record)| record.is_some()),
            "{carried:?}"
        );
        assert_eq!(
            sim.stats().await.batches_created,
            batches,
            "coalesce {coalesce:?}"
        );
    }
}
