//! The checkpoint store: round trips and corrupt rows on every backend (SQLite; PostgreSQL
//! when `BATCHBEAM_TEST_POSTGRES` is set, `cargo xtask pg -- cargo nextest run -p
//! orchestrator`), read-only opens and migrations of older SQLite files.

use providers::db::testing;
use sqlx::SqlitePool;

use super::*;

/// Runs `body` with `store`, a fresh store on every backend available.
macro_rules! on_every_backend {
    (|$store:ident| $body:block) => {{
        let dir = tempfile::tempdir().unwrap();
        let admin = std::env::var(testing::VAR).ok();
        for (name, db, _) in testing::every_backend(dir.path(), admin).await {
            eprintln!("backend: {name}");
            let $store = SessionStore::on(db).await.unwrap();
            $body
        }
    }};
}

/// Runs `sql` on the store's database.
async fn execute(store: &SessionStore, sql: &'static str) {
    on_pool!(store.database(), |pool| {
        sqlx::query(sql).execute(pool).await.unwrap();
    });
}

#[tokio::test]
async fn sessions_calls_and_stages_round_trip() {
    on_every_backend!(|store| { round_trip(&store).await });
}

async fn round_trip(store: &SessionStore) {
    store.create("s1", "a fox", "{}", "/tmp/s1").await.unwrap();
    assert!(store.call("s1", "k").await.unwrap().is_none());
    store
        .put_call("s1", "k", "judge", "batch", "{\"a\":1}")
        .await
        .unwrap();
    store
        .put_call("s1", "k", "judge", "batch", "{\"a\":2}")
        .await
        .unwrap();
    assert_eq!(
        store.call("s1", "k").await.unwrap().as_deref(),
        Some("{\"a\":1}")
    );
    store.checkpoint("s1", 3, "{\"x\":true}").await.unwrap();
    let stage = StageRecord {
        index: 2,
        iteration: 0,
        kind: "render".into(),
        tier: "batch".into(),
        calls: 9,
        reused: 0,
        batch_ids: vec!["batch_1".into()],
        started_at_ms: 5,
        finished_at_ms: Some(9),
    };
    store.put_stage("s1", &stage).await.unwrap();
    assert_eq!(store.stages("s1").await.unwrap(), vec![stage]);
    store
        .set_state("s1", SessionState::Completed)
        .await
        .unwrap();
    let row = store.session("s1").await.unwrap().unwrap();
    assert_eq!((row.next_stage, row.state), (3, SessionState::Completed));
    assert_eq!(row.snapshot.as_deref(), Some("{\"x\":true}"));
    assert!(store.session("s2").await.unwrap().is_none());
    assert_eq!(store.sessions().await.unwrap().len(), 1);
    let reader = SessionStore::reading(store.database().clone())
        .await
        .unwrap();
    assert_eq!(reader.sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_read_only_open_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo/batchbeam.db");
    let e = SessionStore::open_read_only(&typo).await.unwrap_err();
    assert!(matches!(e, Error::NoDatabase { .. }), "{e}");
    assert!(e.to_string().contains(&typo.display().to_string()), "{e}");
    assert!(!dir.path().join("typo").exists());

    // A database without session tables (the batch manager's alone) holds no sessions,
    // and stays without them.
    let other = dir.path().join("other.db");
    let options = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(&other)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE batch_jobs (id TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = SessionStore::open_read_only(&other).await.unwrap();
    assert!(store.sessions().await.unwrap().is_empty());
    assert!(store.session("s1").await.unwrap().is_none());
    assert!(store.create("s1", "x", "{}", "/tmp").await.is_err());

    // A real one reads, and refuses writes.
    let db = dir.path().join("batchbeam.db");
    SessionStore::open(&db)
        .await
        .unwrap()
        .create("s1", "a fox", "{}", "/tmp/s1")
        .await
        .unwrap();
    let store = SessionStore::open_read_only(&db).await.unwrap();
    assert_eq!(store.sessions().await.unwrap().len(), 1);
    assert!(store.set_state("s1", SessionState::Failed).await.is_err());
}

/// The tables as the orchestrator made them before migrations (`CREATE TABLE IF NOT EXISTS`
/// at every open), to check that such a database is adopted with its rows.
const BEFORE_MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS search_sessions (
        id TEXT PRIMARY KEY,
        idea TEXT NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        folder TEXT,
        next_stage INTEGER NOT NULL DEFAULT 0,
        snapshot TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS search_calls (
        session_id TEXT NOT NULL,
        key TEXT NOT NULL,
        operation TEXT NOT NULL,
        tier TEXT NOT NULL,
        record TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (session_id, key)
    )",
    "CREATE TABLE IF NOT EXISTS search_stages (
        session_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        iteration INTEGER NOT NULL,
        kind TEXT NOT NULL,
        tier TEXT NOT NULL,
        calls INTEGER NOT NULL,
        reused INTEGER NOT NULL,
        batch_ids TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        PRIMARY KEY (session_id, idx)
    )",
    "INSERT INTO search_sessions VALUES ('s_old', 'a fox', '{}', 'failed', '/tmp/s_old', 2, '{\"pool\":[]}', 1, 2)",
    "INSERT INTO search_calls VALUES ('s_old', 's_old/0/c0', 'expand', 'batch', '{\"a\":1}', 3)",
    "INSERT INTO search_stages VALUES ('s_old', 0, 0, 'expand', 'batch', 9, 0, '[\"batch_1\"]', 4, 5)",
    // Another set's history, as batch-client keeps it: ours must neither touch nor mind it.
    "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (20261128000001, 'batch jobs', 1, x'00', 0)",
];

async fn raw_pool(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(path)
        .create_if_missing(true);
    SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_database_from_before_migrations_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("batchbeam.db");
    let pool = raw_pool(&db).await;
    for sql in BEFORE_MIGRATIONS {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = SessionStore::open(&db).await.unwrap();
    let row = store.session("s_old").await.unwrap().unwrap();
    assert_eq!((row.state, row.next_stage), (SessionState::Failed, 2));
    assert_eq!(row.snapshot.as_deref(), Some("{\"pool\":[]}"));
    assert_eq!(
        store.call("s_old", "s_old/0/c0").await.unwrap().as_deref(),
        Some("{\"a\":1}")
    );
    assert_eq!(
        store.stages("s_old").await.unwrap()[0].batch_ids,
        ["batch_1"]
    );
    // Opened again: nothing to do, nothing lost.
    drop(store);
    let store = SessionStore::open(&db).await.unwrap();
    assert_eq!(store.sessions().await.unwrap().len(), 1);
    let Database::Sqlite(pool) = store.database() else {
        unreachable!("an SQLite file")
    };
    let ours: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {MIGRATIONS_TABLE}"
    )))
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(ours, 1);
    let theirs: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(
        theirs,
        [20261128000001],
        "batch-client's history is left alone"
    );
}

#[tokio::test]
async fn a_corrupt_or_foreign_checkpoint_names_the_session_and_the_field() {
    on_every_backend!(|store| { corrupt(&store).await });
}

async fn corrupt(store: &SessionStore) {
    let params = serde_json::to_string(&crate::SearchParams::new("a fox")).unwrap();
    store
        .create("s_bad_params", "x", "{\"plan\": 7}", "/tmp/a")
        .await
        .unwrap();
    store
        .create("s_bad_snapshot", "x", &params, "/tmp/b")
        .await
        .unwrap();
    store
        .checkpoint("s_bad_snapshot", 1, "[1, 2]")
        .await
        .unwrap();
    store
        .create("s_foreign", "x", &params, "/tmp/c")
        .await
        .unwrap();
    execute(
        store,
        "UPDATE search_sessions SET state = 'paused' WHERE id = 's_foreign'",
    )
    .await;
    store
        .create("s_good", "x", &params, "/tmp/d")
        .await
        .unwrap();

    let check = |e: Error, session: &str, field: &str| {
        assert!(
            matches!(&e, Error::Checkpoint { session: s, field: f, .. } if s == session && *f == field),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains(session) && text.contains(field), "{text}");
    };
    check(
        store.report("s_bad_params").await.unwrap_err(),
        "s_bad_params",
        "params",
    );
    check(
        store.report("s_bad_snapshot").await.unwrap_err(),
        "s_bad_snapshot",
        "snapshot",
    );
    check(
        store.session("s_foreign").await.unwrap_err(),
        "s_foreign",
        "state",
    );
    let report = store.report("s_good").await.unwrap();
    assert_eq!(report.summary.stages, Some(9));
    assert!(report.cost.rows.is_empty());
    assert!(matches!(
        store.report("s_none").await.unwrap_err(),
        Error::UnknownSession(_)
    ));
    // Reading a corrupt session back for a resume is the same error, not a panic.
    let e = crate::BeamSearch::finished("s_bad_params", store)
        .await
        .unwrap_err();
    check(e, "s_bad_params", "params");
}

#[tokio::test]
async fn a_checkpoint_from_before_ratings_loads_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessionStore::open(&dir.path().join("batchbeam.db"))
        .await
        .unwrap();
    let mut params = crate::SearchParams::new("a fox");
    params.iterations = 1;
    store
        .create(
            "s_old",
            "a fox",
            &serde_json::to_string(&params).unwrap(),
            "/tmp/o",
        )
        .await
        .unwrap();
    // The state as it was written before ratings: no comparisons, no best ratings, no
    // candidate ratings.
    let mut c = crate::Candidate::new(0, 0, None);
    c.verdict = Some(crate::Verdict {
        total: 10.0,
        alignment: 10.0,
        aesthetic: 10.0,
        votes: 3,
        comparisons: 1,
        wins: 1,
        rank: 1,
        reasons: Vec::new(),
        strengths: Vec::new(),
        weaknesses: Vec::new(),
    });
    let state = crate::SearchState {
        pool: vec![c.id.clone()],
        best: vec![(0, c.id.clone(), 10.0)],
        candidates: vec![c],
        ..crate::SearchState::default()
    };
    let mut snapshot = serde_json::to_value(&state).unwrap();
    let object = snapshot.as_object_mut().unwrap();
    assert!(object.remove("comparisons").is_some() && object.remove("best_ratings").is_some());
    let candidate = snapshot["candidates"][0].as_object_mut().unwrap();
    assert!(candidate.remove("rating").is_some());
    store
        .checkpoint("s_old", 3, &snapshot.to_string())
        .await
        .unwrap();

    let best = store.report("s_old").await.unwrap().summary.best.unwrap();
    assert_eq!(
        (best.id.as_str(), best.score, best.rating),
        ("i0c0", 10.0, None)
    );
    assert_eq!(best.scale, crate::RatingScale::Elo);
    let outcome = crate::BeamSearch::finished("s_old", &store)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.best.id, "i0c0");
    assert_eq!(outcome.best.rating, None);
    assert_eq!(outcome.best_by_iteration[0].rating, None);
}
