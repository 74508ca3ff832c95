//! Record leases: taken before a step, renewed from a task of their own while the step runs
//! (so a dead holder's lease lapses within [`ManagerConfig::lease`]), and stretched over a
//! create in flight, so that no other process looks a batch up before a create this one sent
//! has landed or been dropped.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use super::*;

/// A record this manager holds: how many of its steps hold it, until when a create it sent may
/// still land, and the task renewing it.
pub(super) struct Held {
    count: usize,
    /// Tells this holding apart from an earlier one of the same record (given up at a
    /// failpoint), so that a late drop of the earlier one's take counts for nothing.
    generation: u64,
    fence_ms: i64,
    /// Held around each write of the lease, so a renewal that read an older fence never lands
    /// after the write of a newer one.
    writes: Arc<Mutex<()>>,
    stop: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl<S: JobStore> Inner<S> {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        match self.held.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Writes this manager's lease on `id` from now: one lease long, or to the fence of a
    /// create in flight when that is later. `true` when this manager holds it now.
    async fn renew(&self, id: &str) -> Result<bool> {
        let writes = self.held().get(id).map(|h| Arc::clone(&h.writes));
        let _turn = match &writes {
            Some(w) => Some(w.lock().await),
            None => None,
        };
        let now = now_ms();
        let fence = self.held().get(id).map_or(0, |h| h.fence_ms);
        let until = now
            .saturating_add(duration_ms(self.config.lease))
            .max(fence);
        self.store.try_lease(id, &self.owner, now, until).await
    }
}

/// Renews the lease on `id` every third of its length until stopped, or until the manager is
/// gone or another process has taken the record (this one's lease had lapsed).
async fn keep_renewing<S: JobStore>(inner: Weak<Inner<S>>, id: String, stop: CancellationToken) {
    loop {
        let every = match inner.upgrade() {
            Some(inner) => (inner.config.lease / 3).max(Duration::from_millis(1)),
            None => return,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.renew(&id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(record = %id, "lost the record's lease to another process");
                return;
            }
            Err(e) => tracing::warn!(record = %id, error = %e, "renewing the record's lease"),
        }
    }
}

/// One take of a record's lease by a step of this manager: give it back with
/// [`RecordLease::give_back`]. Dropped instead (an error or a cancelled step), it stops counting
/// and leaves the lease to run out within one lease, or at the bound of a create sent under it.
#[must_use = "a lease is given back with give_back"]
pub(super) struct RecordLease<S: JobStore> {
    inner: Arc<Inner<S>>,
    id: String,
    generation: u64,
    given_back: bool,
}

impl<S: JobStore> RecordLease<S> {
    /// Gives this take back; the last one stops the renewal and releases the lease, unless a
    /// create sent under it may still land: then it runs out at that create's bound.
    pub(super) async fn give_back(mut self) {
        self.given_back = true;
        give_back(&self.inner, &self.id, Some(self.generation)).await;
    }
}

impl<S: JobStore> Drop for RecordLease<S> {
    fn drop(&mut self) {
        if !self.given_back {
            let mut held = self.inner.held();
            if let Some(h) = held.get_mut(&self.id)
                && h.generation == self.generation
            {
                h.count -= 1;
                if h.count == 0 {
                    held.remove(&self.id);
                }
            }
        }
    }
}

/// Gives back one take of `id` (of `generation`, or whichever is current); the last stops the
/// renewal and releases the lease unless a create's fence holds it.
async fn give_back<S: JobStore>(inner: &Inner<S>, id: &str, generation: Option<u64>) {
    let last = {
        let mut held = inner.held();
        match held.get_mut(id) {
            Some(h) if generation.is_some_and(|g| g != h.generation) => return,
            Some(h) if h.count > 1 => {
                h.count -= 1;
                return;
            }
            _ => held.remove(id),
        }
    };
    let mut fence = 0;
    if let Some(mut h) = last {
        h.stop.cancel();
        // A renewal in flight ends before the release, so it cannot take the lease again.
        let _ = (&mut h.renewer).await;
        fence = h.fence_ms;
    }
    if fence > now_ms() {
        tracing::debug!(record = %id, "a create may still land; the lease runs to its bound");
        return;
    }
    if let Err(e) = inner.store.release_lease(id, &inner.owner).await {
        tracing::warn!(record = %id, error = %e, "could not release the lease");
    }
}

impl<S: JobStore> BatchJobManager<S> {
    /// Takes (or, when this manager holds it, takes once more) the lease on a record, renewed
    /// until every take is given back. `None` when another process holds it.
    pub(super) async fn take_lease(&self, id: &str) -> Result<Option<RecordLease<S>>> {
        if !self.inner.renew(id).await? {
            return Ok(None);
        }
        let generation = {
            let mut held = self.inner.held();
            if let Some(h) = held.get_mut(id) {
                h.count += 1;
                h.generation
            } else {
                let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
                let stop = CancellationToken::new();
                let renewer = tokio::spawn(keep_renewing(
                    Arc::downgrade(&self.inner),
                    id.to_owned(),
                    stop.clone(),
                ));
                let first = Held {
                    count: 1,
                    generation,
                    fence_ms: 0,
                    writes: Arc::default(),
                    stop,
                    renewer,
                };
                held.insert(id.to_owned(), first);
                generation
            }
        };
        Ok(Some(RecordLease {
            inner: Arc::clone(&self.inner),
            id: id.to_owned(),
            generation,
            given_back: false,
        }))
    }

    /// A take of the lease kept past this call, for [`BatchJobManager::lease_record`]: given
    /// back by id.
    pub(super) fn keep_lease(&self, mut lease: RecordLease<S>) {
        lease.given_back = true;
    }

    /// Gives back a take kept with [`Self::keep_lease`], or releases a lease stored with a
    /// record and never taken.
    pub(super) async fn give_back_lease(&self, id: &str) {
        give_back(&self.inner, id, None).await;
    }

    /// Before a create is sent: the lease (and every renewal until the create has returned)
    /// runs to the create's bound, the request timeout plus one lease, so a process that dies
    /// now keeps every other one from looking the batch up until the create has landed or
    /// been dropped. [`Error::Busy`] when the lease is no longer this manager's.
    pub(super) async fn fence_create(&self, id: &str) -> Result<()> {
        let bound = self.inner.client.config().timeout + self.inner.config.lease;
        let until = now_ms().saturating_add(duration_ms(bound));
        let fenced = match self.inner.held().get_mut(id) {
            Some(h) => {
                h.fence_ms = h.fence_ms.max(until);
                true
            }
            None => false,
        };
        if !fenced || !self.inner.renew(id).await? {
            return Err(Error::Busy(id.to_owned()));
        }
        Ok(())
    }

    /// After a create returned a batch: it has landed, and a lookup finds it, so the lease
    /// shrinks back to one lease from now.
    pub(super) async fn unfence(&self, id: &str) {
        match self.inner.held().get_mut(id) {
            Some(h) => h.fence_ms = 0,
            // Given up meanwhile (a failpoint): the lease is left as it was.
            None => return,
        }
        match self.inner.renew(id).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(record = %id, "lost the record's lease to another process"),
            Err(e) => tracing::warn!(record = %id, error = %e, "renewing the record's lease"),
        }
    }

    /// As if the process had died (a failpoint): every renewal stops, every lease is left to
    /// run out.
    pub(super) fn abandon_leases(&self) {
        self.inner.held().clear();
    }
}
