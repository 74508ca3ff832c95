//! The queue store's suite, run on every backend: SQLite always, PostgreSQL when
//! `BATCHBEAM_TEST_POSTGRES` names a server to create a database on (`cargo xtask pg -- cargo
//! nextest run -p batch-queue`). Two stores on one database, each with its own pool, are two
//! processes.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::Row;

use super::*;

/// Fresh databases of each backend available, shared with the queue's own suite.
pub(crate) mod backends {
    use std::path::Path;

    use batch_client::Database;

    use crate::store::QueueDb;

    /// The variable naming a PostgreSQL server the suites may create databases on.
    const VAR: &str = "BATCHBEAM_TEST_POSTGRES";

    /// A fresh database of one backend: where it is, so that every "process" opens its own pool.
    pub(crate) struct Backend {
        pub(crate) name: &'static str,
        pub(crate) location: String,
    }

    impl Backend {
        /// A new pool on the database: one more process.
        pub(crate) async fn open(&self) -> Database {
            Database::open(&self.location).await.unwrap()
        }

        /// The queue's tables on a new pool.
        pub(crate) async fn store(&self) -> QueueDb {
            QueueDb::open(self.open().await).await.unwrap()
        }
    }

    /// SQLite in `dir`, and PostgreSQL when the test server is named.
    pub(crate) async fn all(dir: &Path) -> Vec<Backend> {
        let path = dir.join(format!("q-{}.db", ulid::Ulid::new()));
        let mut out = vec![Backend {
            name: "sqlite",
            location: path.display().to_string(),
        }];
        if let Some(url) = fresh_postgres().await {
            out.push(Backend {
                name: "postgres",
                location: url,
            });
        }
        out
    }

    /// A new database on the test server, or `None` (said on stderr) without one.
    async fn fresh_postgres() -> Option<String> {
        let Ok(admin) = std::env::var(VAR) else {
            eprintln!("{VAR} is not set: the PostgreSQL half of the suite is skipped");
            return None;
        };
        let name = format!("bq_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(format!("{base}/{name}"))
    }

    /// Runs `sql` (no parameters) on the database.
    pub(crate) async fn exec(db: &Database, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match db {
            Database::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop).unwrap(),
            Database::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop).unwrap(),
        }
    }

    /// A request's state.
    pub(crate) async fn state_of(db: &Database, id: &str) -> String {
        let sql = "SELECT state FROM queue_requests WHERE id = ";
        let sql = sqlx::AssertSqlSafe(format!("{sql}'{id}'"));
        match db {
            Database::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Database::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }
}

/// A time past every lease the tests take.
const FAR: i64 = i64::MAX / 2;

/// A lease for `owner` from now until far ahead.
fn lease(owner: &str) -> Lease<'_> {
    Lease {
        owner,
        now_ms: crate::now_ms(),
        until_ms: FAR,
    }
}

/// The queue's schema before it had migrations, as `create_tables` made it.
pub(crate) const SCHEMA_BEFORE_MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        operation TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        dispatch_id TEXT,
        record_id TEXT,
        batch_ids TEXT NOT NULL DEFAULT '[]',
        tier TEXT,
        result TEXT,
        usage TEXT,
        error TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS queue_requests_group ON queue_requests (state, endpoint, model, seq)",
    "CREATE INDEX IF NOT EXISTS queue_requests_record ON queue_requests (record_id, state)",
    "CREATE INDEX IF NOT EXISTS queue_requests_dispatch ON queue_requests (dispatch_id)",
    "CREATE TABLE IF NOT EXISTS queue_batches (
        record_id TEXT PRIMARY KEY,
        dispatch_id TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS queue_batches_state ON queue_batches (state)",
];

/// Rows in that schema: a request done, one pending, a record open.
const ROWS_BEFORE_MIGRATIONS: &[&str] = &[
    "INSERT INTO queue_requests (id, operation, endpoint, model, body, state, attempts, batch_ids, tier, result, created_at_ms, updated_at_ms)
        VALUES ('rq_done', 'critique', '/v1/chat/completions', 'gpt-4o-mini', '{}', 'done', 1, '[\"batch_1\"]', 'batch', '{\"ok\":true}', 1, 1)",
    "INSERT INTO queue_requests (id, operation, endpoint, model, body, state, created_at_ms, updated_at_ms)
        VALUES ('rq_pending', 'critique', '/v1/chat/completions', 'gpt-4o-mini', '{}', 'pending', 1, 1)",
    "INSERT INTO queue_batches (record_id, dispatch_id, state, created_at_ms) VALUES ('bb_1', 'qd_1', 'open', 1)",
];

/// A database the queue made before it had migrations is adopted with its rows, both
/// migration sets run again as no-ops, and neither sees the other's history.
#[tokio::test]
async fn a_database_from_before_migrations_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let client = batch_client::SqliteStore::open(&path).await.unwrap();
    for sql in SCHEMA_BEFORE_MIGRATIONS
        .iter()
        .chain(ROWS_BEFORE_MIGRATIONS)
    {
        sqlx::query(*sql).execute(client.pool()).await.unwrap();
    }
    client.close().await;
    for _ in 0..2 {
        let client = batch_client::SqliteStore::open(&path).await.unwrap();
        let store = SqliteQueueStore::open(client.pool().clone()).await.unwrap();
        match store.lookup(&RequestId::from("rq_done")).await.unwrap() {
            Lookup::Done(done) => {
                assert_eq!(done.body, serde_json::json!({"ok": true}));
                assert_eq!(
                    (done.tier, done.batch_ids),
                    (Tier::Batch, vec!["batch_1".to_owned()])
                );
            }
            _ => panic!("rq_done lost"),
        }
        assert!(matches!(
            store.lookup(&RequestId::from("rq_pending")).await.unwrap(),
            Lookup::Waiting
        ));
        assert_eq!(store.open_records().await.unwrap(), ["bb_1"]);
        assert_eq!(store.unfinished().await.unwrap(), 1);
        let versions = |table: &str| {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let pool = client.pool().clone();
            async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                row.get::<i64, _>(0)
            }
        };
        assert_eq!(versions(MIGRATIONS_TABLE).await, 3);
        let ours = "_sqlx_migrations WHERE description LIKE 'queue%'";
        assert_eq!(versions(ours).await, 0);
        client.close().await;
    }
}

fn new_request(i: usize, model: &str) -> NewRequest {
    NewRequest {
        id: RequestId::from(format!("rq_{model}_{i}")),
        operation: "critique".into(),
        endpoint: Endpoint::ChatCompletions,
        model: model.into(),
        body: format!(r#"{{"model":"{model}","n":{i}}}"#),
    }
}

fn ids(model: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("rq_{model}_{i}")).collect()
}

/// A flush claims a group's requests as one span, each shard adopted takes its run of it
/// (in any number of pieces, twice without effect), a flush released puts what it still
/// held back to pending, and a settled record leaves every request it carried its own
/// state: nothing is lost, carried twice or counted twice.
#[tokio::test]
async fn spans_carry_shards_and_hand_every_request_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends::all(dir.path()).await {
        eprintln!("backend: {}", backend.name);
        spans_carry_shards(&backend.store().await).await;
    }
}

async fn spans_carry_shards(store: &QueueDb) {
    let rows: Vec<NewRequest> = (0..10)
        .map(|i| new_request(i / 2, if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    store.insert_pending(&rows).await.unwrap();
    let a: GroupKey = (Endpoint::ChatCompletions, "a".into());
    let b: GroupKey = (Endpoint::ChatCompletions, "b".into());
    let mut counts = store.pending_counts().await.unwrap();
    counts.sort();
    assert_eq!(counts, [(a.clone(), 5), (b.clone(), 5)]);

    assert_eq!(store.claim("qd_1", lease("qo_a"), &a, 4).await.unwrap(), 4);
    assert_eq!(store.pending_count(&a).await.unwrap(), 1);
    let claimed: Vec<String> = store
        .claimed("qd_1")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(claimed, ids("a", 0..4));
    // A second flush finds only what the first left.
    assert_eq!(
        store
            .claim("qd_other", lease("qo_a"), &a, 10)
            .await
            .unwrap(),
        1
    );
    store.release_dispatch("qd_other").await.unwrap();

    store.adopt("qd_1", "rec_1", &ids("a", 0..2)).await.unwrap();
    store.adopt("qd_1", "rec_1", &ids("a", 0..2)).await.unwrap();
    let all: Vec<RequestId> = ids("a", 0..5).into_iter().map(RequestId::from).collect();
    let records: Vec<Option<String>> = store
        .in_flight(&all)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let rec_1 = Some("rec_1".to_owned());
    assert_eq!(records, [rec_1.clone(), rec_1, None, None, None]);
    let mut carried: Vec<String> = store.carried("rec_1").await.unwrap().into_keys().collect();
    carried.sort();
    assert_eq!(carried, ids("a", 0..2));
    assert_eq!(
        store.interrupted_dispatches(FAR + 1).await.unwrap(),
        ["qd_1"]
    );

    // The flush dies: what it did not submit goes back to pending, with a_4.
    store.release_dispatch("qd_1").await.unwrap();
    assert!(
        store
            .interrupted_dispatches(FAR + 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.pending_count(&a).await.unwrap(), 3);
    assert_eq!(store.claim("qd_2", lease("qo_a"), &a, 10).await.unwrap(), 3);
    let claimed: Vec<String> = store
        .claimed("qd_2")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(claimed, ids("a", 2..5));
    store.adopt("qd_2", "rec_2", &ids("a", 2..5)).await.unwrap();
    assert_eq!(store.carried("rec_2").await.unwrap().len(), 3);
    assert_eq!(store.carried("rec_1").await.unwrap().len(), 2);

    let policy = Policy {
        max_retries: 1,
        fallback_to_standard: true,
    };
    let how = Apply {
        carrier: Carrier::Record("rec_1"),
        policy,
        count_attempt: false,
        close_record: true,
    };
    let verdicts = || {
        vec![
            VerdictFor {
                id: "rq_a_0".into(),
                verdict: Verdict::Done {
                    body: "{}".into(),
                    usage: None,
                },
                batch_ids: Some(vec!["batch_1".into()]),
            },
            VerdictFor {
                id: "rq_a_1".into(),
                verdict: Verdict::Again(StoredError {
                    tier: Tier::Batch,
                    status: None,
                    code: None,
                    message: "expired".into(),
                }),
                batch_ids: Some(vec!["batch_1".into()]),
            },
        ]
    };
    let settled = store.apply_verdicts(verdicts(), how).await.unwrap();
    assert_eq!(settled.len(), 1);
    match store.lookup(&RequestId::from("rq_a_0")).await.unwrap() {
        Lookup::Done(done) => assert_eq!(
            (done.attempts, done.batch_ids),
            (1, vec!["batch_1".to_owned()])
        ),
        _ => panic!("rq_a_0 not done"),
    }
    // a_1 waits for a retry, its first attempt counted; a second settling changes nothing.
    assert_eq!(
        store.pending_groups(true).await.unwrap(),
        std::slice::from_ref(&a)
    );
    assert!(
        store
            .apply_verdicts(verdicts(), how)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.carried("rec_1").await.unwrap().is_empty());
    assert_eq!(store.pending_count(&a).await.unwrap(), 1);
    assert_eq!(store.pending_count(&b).await.unwrap(), 5);
    assert_eq!(store.unfinished().await.unwrap(), 9);
}

#[test]
fn usage_round_trips_and_reads_both_namings() {
    let u = Usage {
        input_tokens: 3,
        output_tokens: 4,
        total_tokens: 7,
        cached_tokens: Some(1),
        reasoning_tokens: None,
    };
    assert_eq!(usage_from_json(&usage_to_json(&u)), Some(u));
    let chat = serde_json::json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}}});
    assert_eq!(usage_from_body(&chat), Some(u));
    let image = serde_json::json!({"usage": {"input_tokens": 3, "output_tokens": 4}});
    assert_eq!(usage_from_body(&image).map(|u| u.total_tokens), Some(7));
    assert_eq!(usage_from_body(&serde_json::json!({"data": []})), None);
}

/// Two processes enqueueing and claiming one group at once never claim a request twice and
/// never pass one over: on PostgreSQL, a `seq` handed out to an enqueue that has not committed
/// yet is never inside a span claimed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_and_claims_take_each_request_once() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends::all(dir.path()).await {
        eprintln!("backend: {}", backend.name);
        let (a, b) = (
            Arc::new(backend.store().await),
            Arc::new(backend.store().await),
        );
        let key: GroupKey = (Endpoint::ChatCompletions, "m".into());
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = Arc::clone(if w % 2 == 0 { &a } else { &b });
                tokio::spawn(async move {
                    for round in 0..25 {
                        let rows: Vec<NewRequest> = (0..4)
                            .map(|i| new_request(w * 1000 + round * 10 + i, "m"))
                            .collect();
                        store.insert_pending(&rows).await.unwrap();
                    }
                })
            })
            .collect();
        let claimers: Vec<_> = [&a, &b]
            .into_iter()
            .enumerate()
            .map(|(c, store)| {
                let store = Arc::clone(store);
                let key = key.clone();
                tokio::spawn(async move {
                    let mut dispatches = Vec::new();
                    for n in 0..40 {
                        let dispatch = format!("qd_{c}_{n}");
                        if store.claim(&dispatch, lease("qo"), &key, 7).await.unwrap() > 0 {
                            dispatches.push(dispatch);
                        }
                        tokio::task::yield_now().await;
                    }
                    dispatches
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let mut dispatches = Vec::new();
        for c in claimers {
            dispatches.extend(c.await.unwrap());
        }
        // What is left goes to one last claim.
        while a.claim("qd_last", lease("qo"), &key, 1_000).await.unwrap() > 0 {
            dispatches.push("qd_last".into());
            assert_eq!(dispatches.iter().filter(|d| *d == "qd_last").count(), 1);
        }
        let mut seen = HashSet::new();
        dispatches.dedup();
        for dispatch in &dispatches {
            for (id, _) in a.claimed(dispatch).await.unwrap() {
                assert!(seen.insert(id.clone()), "{id} claimed twice");
            }
        }
        assert_eq!(seen.len(), 400, "every request claimed once");
        assert_eq!(a.pending_count(&key).await.unwrap(), 0);
    }
}

/// A flush in flight is another process's until its lease expires: then (and not before) it is
/// interrupted, and one process takes it over.
#[tokio::test]
async fn a_flush_is_taken_over_only_once_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends::all(dir.path()).await {
        eprintln!("backend: {}", backend.name);
        let (a, b) = (backend.store().await, backend.store().await);
        let rows: Vec<NewRequest> = (0..3).map(|i| new_request(i, "m")).collect();
        a.insert_pending(&rows).await.unwrap();
        let key: GroupKey = (Endpoint::ChatCompletions, "m".into());
        let now = crate::now_ms();
        let until = now + 60_000;
        let held = Lease {
            owner: "qo_a",
            now_ms: now,
            until_ms: until,
        };
        assert_eq!(a.claim("qd_a", held, &key, 10).await.unwrap(), 3);
        assert!(b.interrupted_dispatches(now).await.unwrap().is_empty());
        let b_now = Lease {
            owner: "qo_b",
            now_ms: now,
            until_ms: until,
        };
        assert!(!b.lease_dispatch("qd_a", b_now).await.unwrap());
        // The owner renews its own.
        let renewed = Lease {
            until_ms: until + 1,
            ..held
        };
        assert!(a.lease_dispatch("qd_a", renewed).await.unwrap());
        // Past the lease: interrupted, and taken over by one process.
        let later = until + 2;
        assert_eq!(b.interrupted_dispatches(later).await.unwrap(), ["qd_a"]);
        let b_later = Lease {
            owner: "qo_b",
            now_ms: later,
            until_ms: later + 60_000,
        };
        let c_later = Lease {
            owner: "qo_c",
            ..b_later
        };
        assert!(b.lease_dispatch("qd_a", b_later).await.unwrap());
        assert!(!a.lease_dispatch("qd_a", c_later).await.unwrap());
        b.release_dispatch("qd_a").await.unwrap();
        assert!(b.interrupted_dispatches(FAR + 1).await.unwrap().is_empty());
        assert_eq!(b.pending_count(&key).await.unwrap(), 3);
    }
}

/// A request waiting for the standard API is claimed by one process: two claiming at once get
/// disjoint requests, a claim is not taken again until it expires, and an answer is written
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_fallbacks_are_claimed_by_one_process() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends::all(dir.path()).await {
        eprintln!("backend: {}", backend.name);
        let db = backend.open().await;
        let (a, b) = (
            Arc::new(QueueDb::open(db.clone()).await.unwrap()),
            Arc::new(backend.store().await),
        );
        let rows: Vec<NewRequest> = (0..40).map(|i| new_request(i, "m")).collect();
        a.insert_pending(&rows).await.unwrap();
        backends::exec(&db, "UPDATE queue_requests SET state = 'standard'").await;
        let take = |store: Arc<QueueDb>, owner: &'static str| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let rows = store.standard_waiting(lease(owner), 3).await.unwrap();
                    if rows.is_empty() {
                        return got;
                    }
                    got.extend(rows.into_iter().map(|(id, _, _)| id));
                }
            })
        };
        let (ta, tb) = (take(Arc::clone(&a), "qo_a"), take(Arc::clone(&b), "qo_b"));
        let (got_a, got_b) = (ta.await.unwrap(), tb.await.unwrap());
        let all: HashSet<&String> = got_a.iter().chain(&got_b).collect();
        assert_eq!((all.len(), got_a.len() + got_b.len()), (40, 40));
        // Expired claims are taken again.
        let later = Lease {
            owner: "qo_c",
            now_ms: FAR + 1,
            until_ms: FAR + 2,
        };
        assert_eq!(a.standard_waiting(later, 100).await.unwrap().len(), 40);
        let id = got_a.first().or(got_b.first()).unwrap().clone();
        let answer = || Ok(serde_json::json!({"ok": true}));
        assert!(a.finish_standard(&id, answer()).await.unwrap().is_some());
        assert!(b.finish_standard(&id, answer()).await.unwrap().is_none());
        assert_eq!(backends::state_of(&db, &id).await, "done");
        let settled = b
            .settled_among(&[RequestId::from(id.as_str())])
            .await
            .unwrap();
        assert_eq!(settled, [RequestId::from(id.as_str())]);
    }
}
