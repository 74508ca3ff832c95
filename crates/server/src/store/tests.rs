//! The job store on every backend (SQLite; PostgreSQL when `BATCHBEAM_TEST_POSTGRES` is set,
//! `cargo xtask pg -- cargo nextest run -p server`): rows round trip, claims exclude live
//! owners and take over expired ones (counted, given up after the limit), writes of a job an
//! instance no longer holds are refused, a cancel reaches the owner's renewal, and two
//! instances numbering one job's events never lose one.

use providers::db::testing;

use super::*;

/// Runs `body` with `store` and `other` (a second pool on the same database: another
/// instance) on every backend available.
macro_rules! on_every_backend {
    (|$store:ident, $other:ident| $body:block) => {{
        let dir = tempfile::tempdir().unwrap();
        let admin = std::env::var(testing::VAR).ok();
        for (name, db, location) in testing::every_backend(dir.path(), admin).await {
            eprintln!("backend: {name}");
            let $store = DbJobStore::new(db).await.unwrap();
            let $other = DbJobStore::new(testing::open(&location).await)
                .await
                .unwrap();
            $body
        }
    }};
}

fn job(id: &str, at: i64) -> JobRow {
    JobRow::new(id.into(), "{\"prompt\":\"x\"}".into(), 0.25, at)
}

#[tokio::test]
async fn rows_round_trip_and_list_by_status_and_cursor() {
    on_every_backend!(|store, _other| {
        let mut a = job("j_a", 1);
        a.best = Some(serde_json::json!({"id": "c1"}));
        a.batch_ids = vec!["batch_1".into()];
        store.save(&a).await.unwrap();
        store.save(&job("j_b", 2)).await.unwrap();
        assert_eq!(store.get("j_a").await.unwrap().unwrap(), a);
        assert!(store.get("j_none").await.unwrap().is_none());
        let listed = store.list(None, 10, None).await.unwrap();
        assert_eq!(
            listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["j_b", "j_a"]
        );
        let after = store.list(None, 10, Some((2, "j_b".into()))).await.unwrap();
        assert_eq!(after.len(), 1);
        let queued = store.list(Some(JobStatus::Queued), 1, None).await.unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(store.counts().await.unwrap(), vec![(JobStatus::Queued, 2)]);
        store.ping().await.unwrap();
    });
}

#[tokio::test]
async fn claims_leases_takeovers_and_cancels_between_instances() {
    on_every_backend!(|a, b| {
        a.save(&job("j_1", 1)).await.unwrap();
        assert_eq!(a.claimable("x", 100).await.unwrap(), ["j_1"]);
        let Claim::Claimed { row, taken_from } = a.claim("j_1", "A", 100, 50, 2).await.unwrap()
        else {
            panic!("a queued job is claimable")
        };
        assert_eq!(
            (row.owner.as_deref(), row.lease_until),
            (Some("A"), Some(150))
        );
        assert_eq!((row.status, taken_from), (JobStatus::Running, None));
        // B sees it held until the lease expires.
        assert!(b.claimable("B", 120).await.unwrap().is_empty());
        assert_eq!(
            b.claim("j_1", "B", 120, 50, 2).await.unwrap(),
            Claim::NotClaimable
        );
        assert!(a.renew("j_1", "A", 200).await.unwrap());
        assert!(!b.renew("j_1", "B", 200).await.unwrap());
        assert_eq!(
            b.claim("j_1", "B", 180, 50, 2).await.unwrap(),
            Claim::NotClaimable
        );
        // A restarted under its own name takes it back at once.
        assert_eq!(a.claimable("A", 180).await.unwrap(), ["j_1"]);
        // A dies: after its lease, B takes it over (counted), and A's writes are refused.
        assert_eq!(b.claimable("B", 201).await.unwrap(), ["j_1"]);
        let Claim::Claimed { row, taken_from } = b.claim("j_1", "B", 201, 50, 2).await.unwrap()
        else {
            panic!("an expired lease is claimable")
        };
        assert_eq!(taken_from.as_deref(), Some("A"));
        assert_eq!((row.owner.as_deref(), row.takeovers), (Some("B"), 1));
        let mut stale = row.clone();
        stale.owner = Some("A".into());
        stale.stage = 3;
        assert!(
            !a.save_owned(&stale, "A").await.unwrap(),
            "A no longer holds it"
        );
        assert!(!a.renew("j_1", "A", 400).await.unwrap());
        let mut fresh = row.clone();
        fresh.stage = 2;
        assert!(b.save_owned(&fresh, "B").await.unwrap());
        assert_eq!(a.get("j_1").await.unwrap().unwrap().stage, 2);
        // Taken over again, then once too often: failed with the reason.
        assert!(matches!(
            a.claim("j_1", "A", 300, 50, 2).await.unwrap(),
            Claim::Claimed { .. }
        ));
        let Claim::GaveUp(failed) = b.claim("j_1", "B", 400, 50, 2).await.unwrap() else {
            panic!("a third takeover with a limit of 2 gives up")
        };
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(failed.error.unwrap().contains("3 times"));
        assert!(failed.owner.is_none());

        // A cancel posted anywhere: the owner's renewal fails, its writes too.
        a.save(&job("j_2", 2)).await.unwrap();
        assert!(matches!(
            a.claim("j_2", "A", 500, 50, 2).await.unwrap(),
            Claim::Claimed { .. }
        ));
        let (row, changed) = b.cancel("j_2", 510).await.unwrap().unwrap();
        assert!(changed);
        assert_eq!(
            (row.status, row.owner.as_deref()),
            (JobStatus::Cancelled, None)
        );
        assert!(!b.cancel("j_2", 511).await.unwrap().unwrap().1, "once");
        assert!(!a.renew("j_2", "A", 600).await.unwrap());
        let mut late = row.clone();
        late.status = JobStatus::Running;
        late.owner = Some("A".into());
        assert!(!a.save_owned(&late, "A").await.unwrap());
        assert_eq!(
            b.claim("j_2", "B", 700, 50, 2).await.unwrap(),
            Claim::NotClaimable
        );

        // A parked job is taken back to the queue by one instance only.
        let mut parked = job("j_3", 3);
        parked.status = JobStatus::Waiting;
        parked.wait_keys = vec!["s/0/c0".into()];
        a.save(&parked).await.unwrap();
        assert!(a.claimable("A", 800).await.unwrap().is_empty());
        assert!(b.requeue_waiting("j_3", 800).await.unwrap());
        assert!(!a.requeue_waiting("j_3", 800).await.unwrap());
        let row = a.get("j_3").await.unwrap().unwrap();
        assert_eq!(row.status, JobStatus::Queued);
        assert!(row.wait_keys.is_empty());
        // A stopping instance gives its running jobs back.
        assert!(matches!(
            a.claim("j_3", "A", 900, 50, 2).await.unwrap(),
            Claim::Claimed { .. }
        ));
        assert_eq!(a.release_all("A", 910).await.unwrap(), 1);
        assert_eq!(b.claimable("B", 911).await.unwrap(), ["j_3"]);
    });
}

#[tokio::test]
async fn an_event_number_is_taken_once() {
    on_every_backend!(|a, b| {
        assert!(a.last_event("j_1").await.unwrap().is_none());
        assert!(a.append_event("j_1", 1, "t", "{\"n\":1}").await.unwrap());
        assert!(!b.append_event("j_1", 1, "t", "{\"n\":2}").await.unwrap());
        assert!(b.append_event("j_1", 2, "t", "{\"n\":2}").await.unwrap());
        let events = a.events("j_1", 0).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
            ["{\"n\":1}", "{\"n\":2}"]
        );
        assert_eq!(a.events("j_1", 1).await.unwrap().len(), 1);
        assert_eq!(b.last_event("j_1").await.unwrap().unwrap().seq, 2);
    });
}
