//! `BatchRequestQueue`: enqueue (group-committed to the database), flush by group, dispatch
//! through `BatchJobManager`, settle each finished record back onto its requests, retry or fall
//! back; several queues (processes) may share one database.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use batch_client::{BatchJobManager, OpenAiClient};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::task::AbortOnDropHandle;

use crate::now_ms;
use crate::store::{GroupKey, Lease, Lookup, NewRequest, QueueDb, QueueStore};
use crate::{Completed, Error, QueueConfig, QueuedRequest, RequestId, Result};

mod dispatch;
mod settle;

mod standard;

/// Batch metadata naming the flush that submitted a record, so a restart finds the record of a
/// flush that died between `submit_batch` and storing its answer.
pub const METADATA_DISPATCH: &str = "queue_dispatch";

/// Rows written per enqueue transaction at most (group commit).
const WRITE_BATCH: usize = 2_048;
/// Standard-API fallbacks run at once.
const STANDARD_CONCURRENCY: usize = 16;
/// The longest lease of a flush in flight (shorter when `ManagerConfig::lease` is).
const DISPATCH_LEASE: Duration = Duration::from_secs(60);
/// A standard-API fallback's claim, at least: it is not renewed, so it outlasts the call with
/// its retries.
const STANDARD_LEASE: Duration = Duration::from_secs(600);
/// How often the driver asks the database whether requests it holds waiters for were settled
/// by another queue (another process polled their batch), at least.
const FOREIGN_CHECK: Duration = Duration::from_millis(500);

type Waiter = oneshot::Sender<Result<Completed>>;

/// Accumulates requests from any number of sessions, submits them as batches grouped by
/// endpoint and model, and hands every request its own result. Cheap to clone; the background
/// task stops when the last clone is dropped.
#[derive(Clone)]
pub struct BatchRequestQueue {
    inner: Arc<Inner<QueueDb>>,
    _driver: Arc<AbortOnDropHandle<()>>,
}

/// The queue's state, over any [`QueueStore`] (the manager's database, SQLite or PostgreSQL).
struct Inner<S: QueueStore> {
    manager: Arc<BatchJobManager>,
    standard: OpenAiClient,
    config: QueueConfig,
    store: Arc<S>,
    /// Names this queue in the leases of its flushes and standard-API claims.
    owner: String,
    /// When the driver last looked for requests settled by another queue.
    foreign_checked: StdMutex<Option<Instant>>,
    writer: mpsc::Sender<Insert>,
    waiters: StdMutex<HashMap<RequestId, Waiter>>,
    groups: StdMutex<HashMap<GroupKey, GroupState>>,
    dispatch: tokio::sync::Mutex<()>,
    /// Held shared by every `enqueue` while it stores its request, and taken exclusively by
    /// `flush` before it looks for pending requests: a flush includes every enqueue that had
    /// begun before it, however slowly the database answers.
    enqueuing: tokio::sync::RwLock<()>,
    /// What stage barriers asked since the last flush, and when requests last arrived.
    asks: StdMutex<Asks>,
    /// Held by the one [`BatchRequestQueue::flush_soon`] that flushes for all who asked.
    flushing: tokio::sync::Mutex<()>,
    wake: Notify,
}

/// The state [`BatchRequestQueue::flush_soon`] decides on.
#[derive(Debug, Default)]
struct Asks {
    /// When the first barrier asked since the last flush began.
    first: Option<Instant>,
    /// When the last barrier's flush began.
    flushed: Option<Instant>,
    /// When a request was last enqueued.
    enqueued: Option<Instant>,
}

#[derive(Debug, Default, Clone, Copy)]
struct GroupState {
    pending: usize,
    oldest: Option<Instant>,
}

struct Insert {
    row: NewRequest,
    ack: oneshot::Sender<Result<()>>,
}

impl std::fmt::Debug for BatchRequestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRequestQueue")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One queued request: its id at once, its result when the batch (or a retry, or the standard
/// API) has carried it. Dropping it loses nothing: the result stays in the database.
#[derive(Debug)]
pub struct RequestHandle {
    id: RequestId,
    rx: oneshot::Receiver<Result<Completed>>,
}

impl RequestHandle {
    /// The request's stable id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// Waits for the request's result: [`Completed`], or its own failure ([`Error::Request`]
    /// with OpenAI's status, code and message) once no tier is left to try.
    pub async fn wait(self) -> Result<Completed> {
        match self.rx.await {
            Ok(result) => result,
            Err(_) => Err(Error::Closed(self.id)),
        }
    }
}

impl IntoFuture for RequestHandle {
    type Output = Result<Completed>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Completed>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

impl BatchRequestQueue {
    /// A queue keeping its requests in the manager's database, SQLite or PostgreSQL (its own
    /// `queue_*` tables), and sending fallbacks through `standard`. Starts one background task
    /// that flushes on size and delay, polls the queue's batches and settles them. Other
    /// queues (other processes) may share the database: their requests coalesce with these,
    /// and leases keep each flush, record and fallback to one.
    pub async fn new(
        manager: Arc<BatchJobManager>,
        standard: OpenAiClient,
        config: QueueConfig,
    ) -> Result<Self> {
        config.validate()?;
        let store = Arc::new(QueueDb::open(manager.store().database()).await?);
        let (writer, rx) = mpsc::channel(WRITE_BATCH * 2);
        tokio::spawn(write_loop(Arc::clone(&store), rx));
        let inner = Arc::new(Inner {
            manager,
            standard,
            config,
            store,
            owner: format!("qo_{}", ulid::Ulid::new().to_string().to_lowercase()),
            foreign_checked: StdMutex::new(None),
            writer,
            waiters: StdMutex::new(HashMap::new()),
            groups: StdMutex::new(HashMap::new()),
            dispatch: tokio::sync::Mutex::new(()),
            enqueuing: tokio::sync::RwLock::new(()),
            asks: StdMutex::new(Asks::default()),
            flushing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        });
        inner.reload_groups().await?;
        let driver = tokio::spawn(drive(Arc::clone(&inner)));
        Ok(BatchRequestQueue {
            inner,
            _driver: Arc::new(AbortOnDropHandle::new(driver)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// Checks the request with batch-format's builder (a chat request is normalised for its
    /// model, and the changes logged), stores it durably as pending and returns its handle.
    /// `operation` (e.g. `critique`, `render`) is kept with it for accounting.
    pub async fn enqueue(&self, operation: &str, request: QueuedRequest) -> Result<RequestHandle> {
        let _in_flight = self.inner.enqueuing.read().await;
        let id = RequestId::new();
        let checked = crate::line::check(&id, request)?;
        self.insert(id, operation, checked).await
    }

    /// [`enqueue`](Self::enqueue) under a caller's key, at most once per key: the request's id
    /// is [`RequestId::for_key`], and a later call with the same key (after a restart, say)
    /// returns a handle to the request already stored — its result when it has one — instead
    /// of sending it again. A key reused for a different request body is an
    /// [`Error::InvalidRequest`].
    pub async fn enqueue_keyed(
        &self,
        operation: &str,
        key: &str,
        request: QueuedRequest,
    ) -> Result<RequestHandle> {
        let _in_flight = self.inner.enqueuing.read().await;
        let id = RequestId::for_key(key);
        let checked = crate::line::check(&id, request)?;
        let Some(stored) = self.inner.store.stored_body(&id).await? else {
            return self.insert(id, operation, checked).await;
        };
        if stored != checked.body {
            return Err(Error::InvalidRequest(format!(
                "key '{key}' ({id}) was already used for a different request"
            )));
        }
        // Listen first, then look: a result settled in between is seen by one or the other.
        let (tx, rx) = oneshot::channel();
        self.inner.lock_waiters().insert(id.clone(), tx);
        let settled = match self.inner.store.lookup(&id).await {
            Ok(Lookup::Waiting) => None,
            Ok(Lookup::Done(done)) => Some(Ok(done)),
            Ok(Lookup::Failed(e)) => Some(Err(e)),
            Ok(Lookup::Unknown) => Some(Err(Error::UnknownRequest(id.clone()))),
            Err(e) => Some(Err(e)),
        };
        if let Some(result) = settled
            && let Some(tx) = self.inner.lock_waiters().remove(&id)
        {
            let _ = tx.send(result);
        }
        Ok(RequestHandle { id, rx })
    }

    /// How many of `ids` this queue's database holds (in any state): the stage barrier's way
    /// to know that every keyed request of a stage is stored before it flushes.
    pub async fn known(&self, ids: &[RequestId]) -> Result<usize> {
        self.inner.store.count_known(ids).await
    }

    async fn insert(
        &self,
        id: RequestId,
        operation: &str,
        checked: crate::line::CheckedBody,
    ) -> Result<RequestHandle> {
        let crate::line::CheckedBody {
            endpoint,
            model,
            body,
        } = checked;
        let (tx, rx) = oneshot::channel();
        self.inner.lock_waiters().insert(id.clone(), tx);
        let (ack, acked) = oneshot::channel();
        let sent = self
            .inner
            .writer
            .send(Insert {
                row: NewRequest {
                    id: id.clone(),
                    operation: operation.to_owned(),
                    endpoint,
                    model: model.clone(),
                    body,
                },
                ack,
            })
            .await;
        let stored = match sent {
            Ok(()) => acked
                .await
                .unwrap_or_else(|_| Err(Error::store("the writer stopped"))),
            Err(_) => Err(Error::store("the writer stopped")),
        };
        if let Err(e) = stored {
            self.inner.lock_waiters().remove(&id);
            return Err(e);
        }
        let full = {
            let mut groups = self.inner.lock_groups();
            let group = groups.entry((endpoint, model)).or_default();
            group.pending += 1;
            group.oldest.get_or_insert_with(Instant::now);
            group.pending >= self.inner.config.max_group_size
        };
        self.inner.lock_asks().enqueued = Some(Instant::now());
        if full || self.inner.config.flush_delay.is_some() {
            self.inner.wake.notify_one();
        }
        Ok(RequestHandle { id, rx })
    }

    /// The stage barrier: submits every pending group now (split into shards of at most
    /// `max_group_size` lines, and at OpenAI's byte limit) and returns once they are submitted.
    /// Requests of every session queued so far share the batches, including those whose
    /// `enqueue` had begun but not yet returned when `flush` was called: it waits for them.
    pub async fn flush(&self) -> Result<()> {
        drop(self.inner.enqueuing.write().await);
        let keys: Vec<GroupKey> = self.inner.pending_groups(false).await?;
        for key in keys {
            self.inner.flush_group(&key).await?;
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// A stage barrier's flush that lets other sessions join: with
    /// [`QueueConfig::coalesce`] set, the pending groups go once no request has been enqueued
    /// for a tenth of it, or once it has passed since the first barrier asked, in one flush for
    /// every barrier that asked meanwhile; without it, at once, as [`flush`](Self::flush).
    /// Returns once the requests enqueued before the call are submitted.
    pub async fn flush_soon(&self) -> Result<()> {
        let Some(window) = self.inner.config.coalesce else {
            return self.flush().await;
        };
        let asked = Instant::now();
        let quiet = window / 10;
        loop {
            let due = {
                let mut asks = self.inner.lock_asks();
                let first = *asks.first.get_or_insert(asked);
                let calm = asks.enqueued.map_or(asked, |at| at + quiet);
                (first + window).min(calm)
            };
            let now = Instant::now();
            if due <= now {
                break;
            }
            tokio::time::sleep(due - now).await;
        }
        let _one = self.inner.flushing.lock().await;
        let before = {
            let mut asks = self.inner.lock_asks();
            // Another barrier's flush began after this one asked: it covered these requests.
            if asks.flushed.is_some_and(|at| at >= asked) {
                return Ok(());
            }
            asks.first = None;
            asks.flushed.replace(Instant::now())
        };
        let flushed = self.flush().await;
        if flushed.is_err() {
            // The barriers waiting behind this one flush for themselves.
            self.inner.lock_asks().flushed = before;
        }
        flushed
    }

    /// A request's result: `Some` when it succeeded, `None` while it is still on its way, its
    /// own failure as [`Error::Request`], [`Error::UnknownRequest`] for an id this database
    /// never held. Works after a restart for every id the queue knew.
    pub async fn result_for(&self, id: &RequestId) -> Result<Option<Completed>> {
        match self.inner.store.lookup(id).await? {
            Lookup::Unknown => Err(Error::UnknownRequest(id.clone())),
            Lookup::Waiting => Ok(None),
            Lookup::Done(done) => Ok(Some(done)),
            Lookup::Failed(e) => Err(e),
        }
    }

    /// Those of `ids` not finished yet (neither done nor failed), each with the batch-client
    /// record carrying it now (`None` while it waits for a flush or the standard API): what a
    /// caller that put a session aside asks before taking it up again.
    pub async fn in_flight(&self, ids: &[RequestId]) -> Result<Vec<(RequestId, Option<String>)>> {
        self.inner.store.in_flight(ids).await
    }

    /// After a restart: adopts the records of flushes that died mid-submit (found by their
    /// [`METADATA_DISPATCH`] metadata; requests without one go back to pending, since nothing
    /// was sent for them), lets the manager carry every unfinished record on, and wakes the
    /// background task to settle them. Returns how many requests are still unfinished. A flush
    /// whose lease has not expired (another process is submitting it) is left alone; the
    /// background task takes it over if that lease runs out.
    pub async fn resume(&self) -> Result<usize> {
        self.inner.take_over_dispatches().await?;
        self.inner.manager.resume().await?;
        self.inner.reload_groups().await?;
        self.inner.wake.notify_one();
        self.inner.store.unfinished().await
    }
}

/// Stores requests as they come, many per transaction (group commit), and acknowledges each.
async fn write_loop<S: QueueStore>(store: Arc<S>, mut rx: mpsc::Receiver<Insert>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut rows = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        // The enqueuers the last commit released are checking their next request now: let
        // those that are ready hand it in first, so that one commit (one fsync) carries them
        // all instead of the first few.
        tokio::task::yield_now().await;
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(insert) => batch.push(insert),
                Err(_) => break,
            }
        }
        let mut acks = Vec::with_capacity(batch.len());
        for insert in batch.drain(..) {
            rows.push(insert.row);
            acks.push(insert.ack);
        }
        let result = store.insert_pending(&rows).await;
        rows.clear();
        for ack in acks {
            let _ = ack.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::store(e.to_string())),
            });
        }
    }
}

/// The one background task: flushes groups that are full or due, polls the queue's open
/// records through the manager, settles finished ones and runs standard fallbacks.
async fn drive<S: QueueStore>(inner: Arc<Inner<S>>) {
    loop {
        let sleep = match inner.tick().await {
            Ok(sleep) => sleep,
            Err(e) => {
                tracing::warn!(error = %e, "queue pass failed");
                inner.poll_interval()
            }
        };
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

impl<S: QueueStore> Inner<S> {
    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Waiter>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_asks(&self) -> std::sync::MutexGuard<'_, Asks> {
        self.asks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, GroupState>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poll_interval(&self) -> Duration {
        self.manager
            .config()
            .poll_interval
            .clamp(Duration::from_millis(1), Duration::from_secs(60))
    }

    async fn reload_groups(&self) -> Result<()> {
        let groups = self
            .store
            .pending_counts()
            .await?
            .into_iter()
            .map(|(key, pending)| {
                let oldest = Some(Instant::now());
                (key, GroupState { pending, oldest })
            })
            .collect();
        *self.lock_groups() = groups;
        Ok(())
    }

    /// A standard-API claim for this queue from now: not renewed, so it must outlast the call
    /// (`STANDARD_LEASE`, or the manager's lease when that is longer).
    fn lease(&self) -> Lease<'_> {
        self.lease_for(self.manager.config().lease.max(STANDARD_LEASE))
    }

    /// A flush's lease: renewed every third of it while the flush submits, so it can be
    /// shorter than the manager's, and a restart after a crash waits at most this long for
    /// the flush its previous life left.
    fn dispatch_lease(&self) -> Lease<'_> {
        self.lease_for(self.dispatch_lease_span())
    }

    fn dispatch_lease_span(&self) -> Duration {
        self.manager.config().lease.min(DISPATCH_LEASE)
    }

    fn lease_for(&self, span: Duration) -> Lease<'_> {
        let now = now_ms();
        let span = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        Lease {
            owner: &self.owner,
            now_ms: now,
            until_ms: now.saturating_add(span),
        }
    }

    /// Flushes whose lease has expired (their process died mid-submit, or stopped renewing):
    /// each is taken over, its records (found by their [`METADATA_DISPATCH`] metadata) adopted
    /// and the rest of its requests put back to pending, since nothing was sent for them.
    /// Whether any was taken over.
    async fn take_over_dispatches(&self) -> Result<bool> {
        let _guard = self.dispatch.lock().await;
        let dispatches = self.store.interrupted_dispatches(now_ms()).await?;
        if dispatches.is_empty() {
            return Ok(false);
        }
        let mut taken = false;
        let records = self.manager.list().await?;
        for dispatch in dispatches {
            if !self
                .store
                .lease_dispatch(&dispatch, self.dispatch_lease())
                .await?
            {
                continue;
            }
            tracing::info!(dispatch, "taking over an interrupted flush");
            taken = true;
            for record in records.iter().filter(|r| {
                r.metadata.get(METADATA_DISPATCH).map(String::as_str) == Some(dispatch.as_str())
            }) {
                self.store
                    .adopt(&dispatch, &record.id, &record.manifest.custom_ids)
                    .await?;
            }
            self.store.release_dispatch(&dispatch).await?;
        }
        self.reload_groups().await?;
        Ok(taken)
    }

    /// How often the driver looks at what other queues did: every poll interval, at least
    /// [`FOREIGN_CHECK`] apart.
    fn foreign_every(&self) -> Duration {
        FOREIGN_CHECK.max(self.poll_interval())
    }

    /// Hands their results to the waiters of requests another queue settled (it polled their
    /// batch, or sent their fallback), and takes over flushes whose lease expired: at most
    /// every [`foreign_every`](Self::foreign_every), one query per 500 waiters.
    async fn check_foreign(&self) -> Result<()> {
        let every = self.foreign_every();
        {
            let mut checked = self
                .foreign_checked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if checked.is_some_and(|at| at.elapsed() < every) {
                return Ok(());
            }
            *checked = Some(Instant::now());
        }
        if self.take_over_dispatches().await? {
            // What the dead flush had not sent already waited for a flush: it goes out now.
            for key in self.pending_groups(false).await? {
                self.flush_group(&key).await?;
            }
        }
        let waiting: Vec<RequestId> = {
            // A handle dropped (its session was put aside to wait) needs no result handed to
            // it: its waiter goes, so that parked sessions cost this check nothing.
            let mut waiters = self.lock_waiters();
            waiters.retain(|_, tx| !tx.is_closed());
            waiters.keys().cloned().collect()
        };
        if waiting.is_empty() {
            return Ok(());
        }
        let mut settled = Vec::new();
        for id in self.store.settled_among(&waiting).await? {
            let result = match self.store.lookup(&id).await? {
                Lookup::Done(done) => Ok(done),
                Lookup::Failed(e) => Err(e),
                Lookup::Waiting | Lookup::Unknown => continue,
            };
            settled.push((id, result));
        }
        self.send_all(settled);
        Ok(())
    }

    /// Groups with pending requests (only those holding a retry when `retries_only`).
    async fn pending_groups(&self, retries_only: bool) -> Result<Vec<GroupKey>> {
        self.store.pending_groups(retries_only).await
    }

    async fn tick(self: &Arc<Self>) -> Result<Duration> {
        // 1. Groups that are full or whose delay ran out.
        let now = Instant::now();
        let mut next = Duration::from_secs(3600);
        let mut due: Vec<GroupKey> = {
            let groups = self.lock_groups();
            groups
                .iter()
                .filter(|(_, g)| g.pending > 0)
                .filter(|(_, g)| {
                    if g.pending >= self.config.max_group_size {
                        return true;
                    }
                    match (self.config.flush_delay, g.oldest) {
                        (Some(delay), Some(oldest)) => {
                            let at = oldest + delay;
                            if at <= now {
                                true
                            } else {
                                next = next.min(at - now);
                                false
                            }
                        }
                        _ => false,
                    }
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in self.pending_groups(true).await? {
            if !due.contains(&key) {
                due.push(key);
            }
        }
        // One group or record failing (a store hiccup, an API outage) must not hold up the others:
        // it is logged and tried again on the next pass.
        for key in due {
            if let Err(e) = self.flush_group(&key).await {
                tracing::warn!(error = %e, endpoint = %key.0, model = %key.1, "flush failed");
            }
        }
        // 2. The queue's open records.
        let open = self.store.open_records().await?;
        if !open.is_empty() {
            let report = self.manager.poll_once().await;
            if let Err(e) = &report {
                tracing::warn!(error = %e, "manager poll failed");
            }
            // Which of them finished: their states in a few set-based reads, no manifests.
            let open: std::collections::HashSet<String> = open.into_iter().collect();
            let listed: Vec<String> = open.iter().cloned().collect();
            let finished = match self.manager.statuses(&listed).await {
                Ok(statuses) => statuses
                    .into_iter()
                    .filter(|s| s.state.is_finished() && open.contains(&s.id))
                    .map(|s| s.id)
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the open records' states failed");
                    Vec::new()
                }
            };
            for record_id in finished {
                if let Err(e) = self.settle_leased(&record_id).await {
                    tracing::warn!(error = %e, record = %record_id, "settling failed");
                }
            }
            let wait = match report {
                Ok(r) => r
                    .next_due_ms
                    .map(|due| Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(1))),
                Err(_) => None,
            }
            .unwrap_or_else(|| self.poll_interval());
            next = next.min(wait.clamp(Duration::from_millis(1), self.poll_interval()));
        }
        // 3. Standard fallbacks.
        if self.run_standard().await? {
            next = Duration::from_millis(1);
        }
        // 4. What other queues on the database did for this one's waiters, and what they left.
        if let Err(e) = self.check_foreign().await {
            tracing::warn!(error = %e, "checking for requests settled elsewhere failed");
        }
        Ok(next.min(self.foreign_every()))
    }
}

#[cfg(test)]
mod tests;
