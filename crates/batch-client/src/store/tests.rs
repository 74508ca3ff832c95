//! The store suite, run on every backend: SQLite always, PostgreSQL when
//! `BATCHBEAM_TEST_POSTGRES` names a server to create a database on (`cargo xtask ci` starts
//! one; by hand: `cargo xtask pg -- cargo test -p batch-client`).

pub(crate) mod backends {
    use std::path::{Path, PathBuf};

    use crate::store::{PgStore, SqliteStore};

    /// The variable naming a PostgreSQL server the suite may create databases on.
    const VAR: &str = "BATCHBEAM_TEST_POSTGRES";

    /// A store on a fresh, empty database of each backend available: `(name, store)` pairs,
    /// as a boxed enum so one suite body drives both.
    pub(super) enum Backend {
        Sqlite(SqliteStore, PathBuf),
        Postgres(PgStore, String),
    }

    impl Backend {
        /// A second store on the same database, with its own pool: another process.
        pub(super) async fn another(&self) -> Backend {
            match self {
                Backend::Sqlite(_, path) => {
                    Backend::Sqlite(SqliteStore::open(path).await.unwrap(), path.clone())
                }
                Backend::Postgres(_, url) => {
                    Backend::Postgres(PgStore::connect(url, 4).await.unwrap(), url.clone())
                }
            }
        }
    }

    pub(super) async fn all(dir: &Path) -> Vec<(&'static str, Backend)> {
        let path = dir.join("nested").join("j.db");
        let mut out = vec![(
            "sqlite",
            Backend::Sqlite(SqliteStore::open(&path).await.unwrap(), path),
        )];
        if let Some(url) = fresh_postgres().await {
            let store = PgStore::connect(&url, 4).await.unwrap();
            out.push(("postgres", Backend::Postgres(store, url)));
        }
        out
    }

    /// A new database on the test server, or `None` (said on stderr) without one.
    pub(crate) async fn fresh_postgres() -> Option<String> {
        let Ok(admin) = std::env::var(VAR) else {
            eprintln!("{VAR} is not set: the PostgreSQL half of the store suite is skipped");
            return None;
        };
        let name = format!("bb_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(format!("{base}/{name}"))
    }
}

mod suite {
    use batch_format::Endpoint;

    use super::backends::{self, Backend};
    use crate::store::*;

    /// A lease that has run out before any test's clock starts.
    const NO_LEASE: (&str, i64) = ("p0", 0);

    fn record(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            shard_name: "s-0".into(),
            manifest: ShardManifest {
                shard_name: "s-0".into(),
                index: 0,
                endpoint: Endpoint::ChatCompletions,
                model: Some("gpt-4o-mini".into()),
                custom_ids: vec!["a".into(), "b".into()],
            },
            idempotency_key: format!("key-{id}"),
            input_path: "/tmp/in.jsonl".into(),
            input_bytes: 10,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            input_file_id: None,
            batch_id: None,
            state: JobState::Intent,
            remote_status: None,
            request_counts: RequestCounts::default(),
            attempts: 1,
            output_file_id: None,
            error_file_id: None,
            output_path: None,
            error_path: None,
            batch_errors: Vec::new(),
            last_error: None,
            cancel_requested: false,
            created_at_ms: 1,
            updated_at_ms: 1,
            submitted_at_ms: None,
            next_poll_at_ms: 0,
            poll_interval_ms: 30_000,
            submission_id: None,
        }
    }

    fn change(state: JobState) -> StatusChange {
        StatusChange {
            at_ms: 2,
            state,
            remote_status: None,
            detail: Some(state.as_str().into()),
        }
    }

    /// Runs `body` on a store of every backend.
    macro_rules! on_every_backend {
        (|$store:ident| $body:block) => {{
            let dir = tempfile::tempdir().unwrap();
            for (name, backend) in backends::all(dir.path()).await {
                eprintln!("backend: {name}");
                match backend {
                    Backend::Sqlite($store, _) => $body,
                    Backend::Postgres($store, _) => $body,
                }
            }
        }};
    }

    #[tokio::test]
    async fn records_round_trip_and_leases_exclude_other_owners() {
        on_every_backend!(|store| { round_trip(&store).await });
    }

    async fn round_trip(store: &impl JobStore) {
        let mut r = record("bb_1");
        store
            .insert(&r, &change(JobState::Intent), ("p0", 90))
            .await
            .unwrap();
        assert_eq!(store.get("bb_1").await.unwrap().unwrap(), r);
        // Stored leased to its submitter: nobody else takes it before that lease runs out.
        assert!(!store.try_lease("bb_1", "p1", 80, 200).await.unwrap());

        r.state = JobState::Submitted;
        r.batch_id = Some("batch_a".into());
        r.remote_status = Some(BatchStatus::InProgress);
        r.batch_errors = vec![BatchError {
            line: Some(3),
            ..Default::default()
        }];
        store
            .update(&r, Some(&change(JobState::Submitted)))
            .await
            .unwrap();
        r.attempts = 2;
        r.batch_id = Some("batch_b".into());
        store.update(&r, None).await.unwrap();
        assert_eq!(store.get("bb_1").await.unwrap().unwrap(), r);
        // Both attempts' batch ids find the record.
        for b in ["batch_a", "batch_b"] {
            assert_eq!(store.find_by_batch_id(b).await.unwrap().unwrap().id, "bb_1");
        }
        assert!(store.find_by_batch_id("batch_c").await.unwrap().is_none());
        let history = store.history("bb_1").await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].state, JobState::Submitted);

        assert!(store.try_lease("bb_1", "p1", 100, 200).await.unwrap());
        assert!(
            !store.try_lease("bb_1", "p2", 150, 300).await.unwrap(),
            "held"
        );
        assert!(
            store.try_lease("bb_1", "p1", 150, 300).await.unwrap(),
            "renewed"
        );
        assert!(
            store.try_lease("bb_1", "p2", 301, 400).await.unwrap(),
            "expired"
        );
        store.release_lease("bb_1", "p1").await.unwrap();
        assert!(
            !store.try_lease("bb_1", "p1", 302, 400).await.unwrap(),
            "not p1's to release"
        );
        store.release_lease("bb_1", "p2").await.unwrap();
        assert!(store.try_lease("bb_1", "p1", 302, 400).await.unwrap());

        r.state = JobState::Done;
        store.update(&r, None).await.unwrap();
        store
            .insert(&record("bb_2"), &change(JobState::Intent), NO_LEASE)
            .await
            .unwrap();
        let unfinished: Vec<String> = store
            .unfinished()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(unfinished, ["bb_2"]);
        assert_eq!(store.list().await.unwrap().len(), 2);
        // The key is unique: a second record with the same key is refused.
        let mut dup = record("bb_3");
        dup.idempotency_key = "key-bb_1".into();
        assert!(
            store
                .insert(&dup, &change(JobState::Intent), NO_LEASE)
                .await
                .is_err()
        );
        assert!(matches!(
            store.update(&record("bb_9"), None).await,
            Err(Error::NotFound(_))
        ));
    }

    /// Two processes (two pools on one database) racing: one lease holder, one submission.
    #[tokio::test]
    async fn two_processes_racing_get_one_lease_and_one_submission() {
        let dir = tempfile::tempdir().unwrap();
        for (name, backend) in backends::all(dir.path()).await {
            eprintln!("backend: {name}");
            match (backend.another().await, backend) {
                (Backend::Sqlite(a, _), Backend::Sqlite(b, _)) => race(&a, &b).await,
                (Backend::Postgres(a, _), Backend::Postgres(b, _)) => race(&a, &b).await,
                _ => unreachable!("another() keeps the backend"),
            }
        }
    }

    async fn race<S: JobStore>(a: &S, b: &S) {
        a.insert(&record("bb_r"), &change(JobState::Intent), NO_LEASE)
            .await
            .unwrap();
        for round in 0..20_i64 {
            let now = 1_000 * (round + 1);
            let (x, y) = tokio::join!(
                a.try_lease("bb_r", "p1", now, now + 500),
                b.try_lease("bb_r", "p2", now, now + 500)
            );
            let won = [x.unwrap(), y.unwrap()];
            assert_eq!(
                won.iter().filter(|w| **w).count(),
                1,
                "round {round}: {won:?}"
            );
            let owner = if won[0] { "p1" } else { "p2" };
            a.release_lease("bb_r", owner).await.unwrap();
        }
        let submission = |id: &str| Submission {
            id: id.into(),
            content_key: "/v1/chat/completions sha256:ab".into(),
            seq: 0,
            source_path: "/tmp/in.jsonl".into(),
            endpoint: "/v1/chat/completions".into(),
            sha256: "ab".into(),
            lines: 2,
            bytes: 10,
            created_at_ms: 1,
        };
        let shard = |id: &str, sub: &str| {
            let mut r = record(id);
            r.submission_id = Some(sub.into());
            (r, change(JobState::Intent))
        };
        let (s1, s2) = (submission("bs_1"), submission("bs_2"));
        let (r1, r2) = ([shard("bb_s1", "bs_1")], [shard("bb_s2", "bs_2")]);
        let (x, y) = tokio::join!(
            a.insert_submission(&s1, &r1, ("p1", 9)),
            b.insert_submission(&s2, &r2, ("p2", 9))
        );
        let stored = [x.unwrap(), y.unwrap()];
        assert_eq!(stored.iter().filter(|s| **s).count(), 1, "{stored:?}");
        let kept = a
            .find_submission("/v1/chat/completions sha256:ab")
            .await
            .unwrap()
            .unwrap();
        let records = b.submission_records(&kept.id).await.unwrap();
        assert_eq!(records.len(), 1, "the loser stored nothing");
    }

    #[tokio::test]
    async fn the_sqlite_database_is_in_wal_mode_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        store
            .insert(&record("bb_1"), &change(JobState::Intent), NO_LEASE)
            .await
            .unwrap();
        store.close().await;
        let again = SqliteStore::open_url(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        assert!(again.get("bb_1").await.unwrap().is_some());
    }

    #[test]
    fn states_parse_back() {
        for s in [
            JobState::Intent,
            JobState::Uploaded,
            JobState::Submitted,
            JobState::WaitingResubmit,
            JobState::Ended,
            JobState::Done,
            JobState::Error,
        ] {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("nope".parse::<JobState>().is_err());
    }
}
