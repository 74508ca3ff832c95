//! Exactly-once submission: the manager stops (as if the process died) after every step of
//! submit, a new manager on the same database resumes, and the simulator's counters show one
//! upload and one batch per shard and every request answered and billed once.

use batch_client::{Error, JobState, SubmitStep};

use crate::support::{drive, manager, no_metadata, shards, sim};

const STEPS: [SubmitStep; 4] = [
    SubmitStep::AfterIntent,
    SubmitStep::AfterUpload,
    SubmitStep::AfterCreateSent,
    SubmitStep::AfterCreateStored,
];

#[tokio::test]
async fn a_crash_after_any_step_of_submit_never_loses_or_repeats_a_batch() {
    for step in STEPS {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let all = shards("crash", 3, 4);
        {
            let manager = manager(&sim, dir.path()).await;
            manager.set_failpoint(Some(step));
            for shard in &all {
                let err = manager
                    .submit_batch(shard, no_metadata())
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::Failpoint(s) if s == step),
                    "{step}: {err}"
                );
            }
            // Dropped here: everything the process knew is what the database holds.
        }
        let manager = manager(&sim, dir.path()).await;
        let resumed = manager.resume().await.unwrap();
        assert_eq!(resumed.len(), 3, "{step}");
        let records = drive(&sim, &manager, 60).await;
        assert_eq!(records.len(), 3, "{step}");
        for record in &records {
            assert_eq!(record.state, JobState::Done, "{step}: {record:?}");
            let results = manager.retrieve_results(&record.id).await.unwrap();
            assert_eq!(results.succeeded, 4, "{step}: {results:?}");
            assert!(results.unfinished.is_empty() && results.duplicates.is_empty());
        }
        let stats = sim.stats().await;
        assert_eq!(stats.files_uploaded, 3, "{step}: one upload per shard");
        assert_eq!(stats.batches_created, 3, "{step}: one batch per shard");
        assert_eq!(
            stats.batch_requests_executed, 12,
            "{step}: every request run once"
        );
        assert_eq!(
            stats.batch_requests_billed, 12,
            "{step}: every request billed once"
        );
        for batch in stats.batches.values() {
            assert_eq!((batch.total, batch.requests_billed), (4, 4), "{step}");
        }
    }
}

#[tokio::test]
async fn resuming_twice_or_polling_a_resumed_record_changes_nothing() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let all = shards("twice", 2, 3);
    {
        let manager = manager(&sim, dir.path()).await;
        manager.set_failpoint(Some(SubmitStep::AfterCreateSent));
        for shard in &all {
            manager
                .submit_batch(shard, no_metadata())
                .await
                .unwrap_err();
        }
    }
    for _ in 0..2 {
        let manager = manager(&sim, dir.path()).await;
        manager.resume().await.unwrap();
        manager.poll_once().await.unwrap();
    }
    let manager = manager(&sim, dir.path()).await;
    drive(&sim, &manager, 60).await;
    let stats = sim.stats().await;
    assert_eq!((stats.files_uploaded, stats.batches_created), (2, 2));
    assert_eq!(stats.batch_requests_billed, 6);
}

#[tokio::test]
async fn two_processes_resuming_at_once_create_each_batch_once() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let all = shards("race", 4, 2);
    {
        let manager = manager(&sim, dir.path()).await;
        manager.set_failpoint(Some(SubmitStep::AfterUpload));
        for shard in &all {
            manager
                .submit_batch(shard, no_metadata())
                .await
                .unwrap_err();
        }
    }
    // Let the dead manager's leases run out, then race two managers on one database.
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    let (a, b) = (
        manager(&sim, dir.path()).await,
        manager(&sim, dir.path()).await,
    );
    let (ra, rb) = tokio::join!(a.resume(), b.resume());
    ra.unwrap();
    rb.unwrap();
    let (pa, pb) = tokio::join!(a.poll_once(), b.poll_once());
    pa.unwrap();
    pb.unwrap();
    drive(&sim, &a, 60).await;
    let stats = sim.stats().await;
    assert_eq!(
        (stats.files_uploaded, stats.batches_created),
        (4, 4),
        "{stats:?}"
    );
    assert_eq!(stats.batch_requests_billed, 8);
}

#[tokio::test]
async fn submitting_while_the_poller_runs_creates_each_batch_once() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(&sim, dir.path()).await;
    let poller = manager.spawn_poller();
    for shard in &shards("busy", 6, 2) {
        manager.submit_batch(shard, no_metadata()).await.unwrap();
    }
    for _ in 0..100 {
        if manager
            .list()
            .await
            .unwrap()
            .iter()
            .all(|r| r.state == JobState::Done)
        {
            break;
        }
        sim.advance_clock(10.0).await;
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    poller.stop().await;
    let stats = sim.stats().await;
    assert_eq!(
        (stats.files_uploaded, stats.batches_created),
        (6, 6),
        "{stats:?}"
    );
    assert_eq!(stats.batch_requests_billed, 12);
}

/// A record is stepped (polled, its results downloaded) by one process at a time: while
/// another process holds its lease, `poll_once` leaves it alone, and once that lease is given
/// back (or expires) it is carried to the end.
#[tokio::test]
async fn a_record_leased_by_another_process_is_not_polled_until_its_lease_ends() {
    use batch_client::JobStore;
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::manager_config(dir.path());
    config.lease = std::time::Duration::from_secs(600);
    let manager = crate::support::manager_with(&sim, dir.path(), config).await;
    let shard = &shards("leased", 1, 2)[0];
    let id = manager.submit_batch(shard, no_metadata()).await.unwrap();
    let now = batch_client::now_ms();
    assert!(
        manager
            .store()
            .try_lease(&id, "mgr_other", now, now + 600_000)
            .await
            .unwrap()
    );
    assert!(!manager.lease_record(&id).await.unwrap());
    sim.advance_clock(3600.0).await;
    for _ in 0..5 {
        // Due (the poll interval is 1 ms): only the lease keeps it from being stepped.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        manager.poll_once().await.unwrap();
    }
    assert_eq!(
        manager.record(&id).await.unwrap().state,
        JobState::Submitted
    );
    manager
        .store()
        .release_lease(&id, "mgr_other")
        .await
        .unwrap();
    drive(&sim, &manager, 60).await;
    assert_eq!(manager.record(&id).await.unwrap().state, JobState::Done);
    assert_eq!(sim.stats().await.batch_requests_billed, 2);
}
