//! Record leases on every backend (SQLite always, PostgreSQL with `BATCHBEAM_TEST_POSTGRES`):
//! a dead holder's record is taken over once its short lease runs out, a live holder keeps a
//! record through a long step, and a record whose holder died with a create in flight is not
//! looked up again before that create's bound, so it gets exactly one batch.

use std::time::Instant;

use openai_sim::{FaultConfig, FaultKind, FaultRule, SimConfig, SimHandle};

use super::*;
use crate::store::tests::backends;
use crate::{ApiKey, ClientConfig, RetryPolicy, SubmitStep};

/// Where a suite's database is, so that each manager opens its own pool (another process).
enum Spot {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Spot {
    async fn open(&self) -> Database {
        match self {
            Spot::Sqlite(path) => Database::sqlite(path).await.unwrap(),
            Spot::Postgres(url) => Database::postgres(url, 4).await.unwrap(),
        }
    }
}

async fn spots(dir: &Path) -> Vec<(&'static str, Spot)> {
    let mut out = vec![("sqlite", Spot::Sqlite(dir.join("leases.db")))];
    if let Some(url) = backends::fresh_postgres().await {
        out.push(("postgres", Spot::Postgres(url)));
    }
    out
}

/// A client of `sim` whose requests time out after `timeout`, and a manager configuration
/// polling every millisecond and holding leases for `lease`.
fn client_and_config(
    sim: &SimHandle,
    dir: &Path,
    lease: Duration,
    timeout: Duration,
) -> (OpenAiClient, ManagerConfig) {
    let client = ClientConfig::new(sim.base_url(), ApiKey::new("sk-lease-test"))
        .with_retry(RetryPolicy::fast())
        .with_timeout(timeout);
    let mut config = ManagerConfig::new(dir.join("data"));
    config.poll_interval = Duration::from_millis(1);
    config.poll_ceiling = Duration::from_millis(2);
    config.lease = lease;
    (OpenAiClient::new(client).unwrap(), config)
}

/// A manager on `spot` (see [`client_and_config`]).
async fn manager(
    sim: &SimHandle,
    spot: &Spot,
    dir: &Path,
    lease: Duration,
    timeout: Duration,
) -> BatchJobManager {
    let (client, config) = client_and_config(sim, dir, lease, timeout);
    BatchJobManager::on(client, spot.open().await, config)
        .await
        .unwrap()
}

/// A store that stops right after storing a new record until `resume` is notified (it
/// notifies `inserted` first): the moment between a submit's intent and its next step, held
/// open for another process to act in.
struct PausedAfterInsert {
    store: DbStore,
    inserted: Arc<Notify>,
    resume: Arc<Notify>,
}

impl JobStore for PausedAfterInsert {
    async fn insert(
        &self,
        record: &JobRecord,
        change: &StatusChange,
        lease: (&str, i64),
    ) -> Result<()> {
        self.store.insert(record, change, lease).await?;
        self.inserted.notify_one();
        self.resume.notified().await;
        Ok(())
    }
    async fn update(&self, record: &JobRecord, change: Option<&StatusChange>) -> Result<()> {
        self.store.update(record, change).await
    }
    async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        self.store.get(id).await
    }
    async fn find_by_batch_id(&self, batch_id: &str) -> Result<Option<JobRecord>> {
        self.store.find_by_batch_id(batch_id).await
    }
    async fn list(&self) -> Result<Vec<JobRecord>> {
        self.store.list().await
    }
    async fn unfinished(&self) -> Result<Vec<JobRecord>> {
        self.store.unfinished().await
    }
    async fn due(&self, now_ms: Option<i64>) -> Result<Vec<String>> {
        self.store.due(now_ms).await
    }
    async fn unfinished_summary(&self) -> Result<crate::store::UnfinishedSummary> {
        self.store.unfinished_summary().await
    }
    async fn statuses(&self, ids: &[String]) -> Result<Vec<crate::store::RecordStatus>> {
        self.store.statuses(ids).await
    }
    async fn history(&self, id: &str) -> Result<Vec<StatusChange>> {
        self.store.history(id).await
    }
    async fn try_lease(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        self.store.try_lease(id, owner, now_ms, until_ms).await
    }
    async fn release_lease(&self, id: &str, owner: &str) -> Result<()> {
        self.store.release_lease(id, owner).await
    }
    async fn insert_submission(
        &self,
        submission: &Submission,
        records: &[(JobRecord, StatusChange)],
        lease: (&str, i64),
    ) -> Result<bool> {
        self.store
            .insert_submission(submission, records, lease)
            .await
    }
    async fn find_submission(&self, content_key: &str) -> Result<Option<Submission>> {
        self.store.find_submission(content_key).await
    }
    async fn submission_records(&self, submission_id: &str) -> Result<Vec<JobRecord>> {
        self.store.submission_records(submission_id).await
    }
}

fn shard(name: &str) -> Shard {
    let mut builder = batch_format::BatchRequestBuilder::new();
    for n in 0..2 {
        builder
            .add_chat_completion_request(
                format!("{name}-r{n}"),
                vec![batch_format::Message::user(format!(
                    "Prompt {n} about a fox."
                ))],
                batch_format::ChatOptions::new("gpt-4o-mini"),
            )
            .unwrap();
    }
    builder.build_batch(name).unwrap().into_shards().remove(0)
}

/// A simulator whose clock moves only when a test moves it.
async fn frozen_sim() -> SimHandle {
    openai_sim::spawn(SimConfig::default().with_frozen_clock())
        .await
        .unwrap()
}

/// Waits (generously) until `done` holds of the simulator's counters.
async fn until_sim(sim: &SimHandle, what: &str, done: impl Fn(&openai_sim::StatsSnapshot) -> bool) {
    let started = Instant::now();
    while !done(&sim.stats().await) {
        assert!(started.elapsed() < Duration::from_secs(60), "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls with `manager`, moving simulated time on, until record `id` is finished.
async fn poll_to_the_end(sim: &SimHandle, manager: &BatchJobManager, id: &str) -> JobRecord {
    let started = Instant::now();
    loop {
        manager.poll_once().await.unwrap();
        let record = manager.record(id).await.unwrap();
        if record.state.is_finished() {
            return record;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{id} never finished: {record:?}"
        );
        sim.advance_clock(15.0).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Submits a shard with `a`, then starts a poll of it that the simulator holds for
/// `delay_ms`; returns once that poll is held there, with the record's id and the poll's task.
async fn poll_held_in_the_sim(
    sim: &SimHandle,
    a: &BatchJobManager,
    name: &str,
    delay_ms: u64,
) -> (String, tokio::task::JoinHandle<Result<PollReport>>) {
    let id = a.submit_batch(&shard(name), BTreeMap::new()).await.unwrap();
    sim.set_faults(
        FaultConfig::default().with_rule(
            FaultRule::new(FaultKind::Slow)
                .on("GET", "/v1/batches/*")
                .next(1)
                .delay_ms(delay_ms),
        ),
    );
    // Due a millisecond after it was submitted.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let step = tokio::spawn({
        let a = a.clone();
        async move { a.poll_once().await }
    });
    until_sim(sim, "the poll reached the simulator", |s| {
        s.faults.get("slow") == Some(&1)
    })
    .await;
    (id, step)
}

/// A manager dies while it polls a record (its step is dropped mid-request): its lease is no
/// longer renewed, and another manager takes the record once that short lease has run out and
/// carries it to the end.
#[tokio::test]
async fn a_dead_holders_record_is_taken_after_its_short_lease_and_finished() {
    let dir = tempfile::tempdir().unwrap();
    for (name, spot) in spots(dir.path()).await {
        let sim = frozen_sim().await;
        let lease = Duration::from_millis(400);
        let timeout = Duration::from_secs(30);
        let a = manager(&sim, &spot, dir.path(), lease, timeout).await;
        // A's next poll hangs in the simulator: it dies there.
        let (id, step) = poll_held_in_the_sim(&sim, &a, "dead", 600_000).await;
        step.abort();
        let died_ms = now_ms();
        let b = manager(&sim, &spot, dir.path(), lease, timeout).await;
        sim.advance_clock(3600.0).await;
        let record = poll_to_the_end(&sim, &b, &id).await;
        assert_eq!(record.state, JobState::Done, "{name}");
        let stats = sim.stats().await;
        assert_eq!(
            (stats.batches_created, stats.batch_requests_billed),
            (1, 2),
            "{name}"
        );
        // B stepped it only once A's lease had run out.
        let after_submit: Vec<_> = b
            .history(&id)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| matches!(c.state, JobState::Ended | JobState::Done))
            .collect();
        assert!(!after_submit.is_empty(), "{name}");
        for change in after_submit {
            assert!(change.at_ms >= died_ms, "{name}: {change:?}");
        }
    }
}

/// A record whose holder is alive through a step far longer than the lease stays its: the
/// lease is renewed beside the step, and another manager leaves the record alone until the
/// step is over, then carries it on.
#[tokio::test]
async fn a_live_holder_keeps_its_record_through_a_long_step() {
    let dir = tempfile::tempdir().unwrap();
    for (name, spot) in spots(dir.path()).await {
        let sim = frozen_sim().await;
        let lease = Duration::from_millis(1_500);
        let timeout = Duration::from_secs(30);
        let a = manager(&sim, &spot, dir.path(), lease, timeout).await;
        // A's next poll is held 6 s in the simulator; it cannot end before then.
        let held_from = Instant::now();
        let (id, step) = poll_held_in_the_sim(&sim, &a, "alive", 6_000).await;
        let b = manager(&sim, &spot, dir.path(), lease, timeout).await;
        // B tries through more than two leases, and stops 2 s before A's step could end (a
        // poll by B that starts before then and finds the record free would be a renewal lost,
        // however slowly it ran).
        let mut tries = 0;
        while held_from.elapsed() < Duration::from_secs(4) {
            // Due (every millisecond): only A's lease keeps B from stepping it.
            let report = b.poll_once().await.unwrap();
            assert_eq!(report.polled, 0, "{name}: B stepped a record A held");
            assert!(!step.is_finished(), "{name}: A's held poll ended early");
            tries += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(tries > 0, "{name}");
        assert_eq!(step.await.unwrap().unwrap().polled, 1, "{name}");
        sim.advance_clock(3600.0).await;
        let record = poll_to_the_end(&sim, &b, &id).await;
        assert_eq!(record.state, JobState::Done, "{name}");
        assert_eq!(sim.stats().await.batch_requests_billed, 2, "{name}");
    }
}

/// A manager dies with its create in flight, and the simulator creates the batch only later
/// (the request had reached it). Its lease ran to the create's bound (the request timeout plus
/// a lease) when the create was sent, so another manager does not look the batch up before
/// then: it finds the batch the dead one made instead of creating a second.
#[tokio::test]
async fn a_record_whose_holder_died_mid_create_gets_exactly_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    for (name, spot) in spots(dir.path()).await {
        let sim = frozen_sim().await;
        let lease = Duration::from_millis(300);
        // The create lands 1.5 s after it was sent, well inside its 8 s timeout.
        let timeout = Duration::from_secs(8);
        sim.set_faults(
            FaultConfig::default().with_rule(
                FaultRule::new(FaultKind::Slow)
                    .on("POST", "/v1/batches")
                    .next(1)
                    .delay_ms(1_500),
            ),
        );
        let a = manager(&sim, &spot, dir.path(), lease, timeout).await;
        // A writes nothing after its create (as if killed), and the create still lands.
        *a.inner.failpoint.lock().unwrap() = Some(SubmitStep::AfterCreateSent);
        let sent_ms = now_ms();
        let submit = tokio::spawn({
            let a = a.clone();
            async move { a.submit_batch(&shard("mid"), BTreeMap::new()).await }
        });
        until_sim(&sim, "A's create reached the simulator", |s| {
            s.faults.get("slow") == Some(&1)
        })
        .await;
        // A dies: nothing renews its lease any more.
        a.abandon_leases();
        let b = manager(&sim, &spot, dir.path(), lease, timeout).await;
        let id = b.list().await.unwrap().remove(0).id;
        assert_eq!(b.record(&id).await.unwrap().state, JobState::Uploaded);
        let record = poll_to_the_end(&sim, &b, &id).await;
        assert_eq!(record.state, JobState::Done, "{name}");
        assert!(
            matches!(submit.await.unwrap(), Err(Error::Failpoint(_))),
            "{name}"
        );
        let stats = sim.stats().await;
        assert_eq!(
            (stats.batches_created, stats.batch_requests_billed),
            (1, 2),
            "{name}: {stats:?}"
        );
        // B carried it on (found A's batch) only after the create's bound.
        let submitted = b
            .history(&id)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.state == JobState::Submitted)
            .unwrap();
        assert!(
            submitted.at_ms >= sent_ms + duration_ms(timeout),
            "{name}: {submitted:?}"
        );
    }
}

/// A record is its submitter's from the moment its intent is stored: another process polling
/// at that very moment (the record is due at once) leaves it alone, the submitter uploads and
/// creates its one batch, and the other carries it on afterwards. Before the lease was stored
/// with the record, the other process created a batch here too, and its requests were billed
/// twice.
#[tokio::test]
async fn a_record_is_its_submitters_from_the_moment_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    for (name, spot) in spots(dir.path()).await {
        let sim = frozen_sim().await;
        let (lease, timeout) = (Duration::from_secs(30), Duration::from_secs(30));
        let (client, config) = client_and_config(&sim, dir.path(), lease, timeout);
        let (inserted, resume) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let store = PausedAfterInsert {
            store: DbStore::on(spot.open().await).await.unwrap(),
            inserted: Arc::clone(&inserted),
            resume: Arc::clone(&resume),
        };
        let a = BatchJobManager::new(client, store, config);
        let b = manager(&sim, &spot, dir.path(), lease, timeout).await;
        let submit =
            tokio::spawn(async move { a.submit_batch(&shard("gated"), BTreeMap::new()).await });
        inserted.notified().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = b.poll_once().await.unwrap();
        assert_eq!(
            report.polled, 0,
            "{name}: B stepped a record A was submitting"
        );
        assert_eq!(sim.stats().await.files_uploaded, 0, "{name}");
        resume.notify_one();
        let id = submit.await.unwrap().unwrap();
        sim.advance_clock(3600.0).await;
        let record = poll_to_the_end(&sim, &b, &id).await;
        assert_eq!(record.state, JobState::Done, "{name}");
        let stats = sim.stats().await;
        assert_eq!(
            (stats.batches_created, stats.batch_requests_billed),
            (1, 2),
            "{name}: {stats:?}"
        );
    }
}
