//! Shared helpers for the phase suites: a simulator with a running clock, and the batch,
//! standard and simulated set-ups the orchestrator suites run sessions on.

// A test-support library: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use batch_client::{
    ApiKey, BatchJobManager, ClientConfig, ManagerConfig, OpenAiClient, RetryPolicy,
};
use batch_queue::{BatchRequestQueue, QueueConfig};
use openai_sim::SimHandle;
use orchestrator::{Backend, Engines, Hybrid, SearchParams, SessionStore};
use providers::transport::SimulatedTransport;
use providers::{OpenAiProvider, ProviderFactory, ProvidersConfig, RequestCache, RoleModels, Tier};

/// The API key the suites give the simulator.
pub const KEY: &str = "sk-test-suite-0000";

/// A client for `sim` with quick retries.
pub fn client_config(sim: &SimHandle) -> ClientConfig {
    ClientConfig::new(sim.base_url(), ApiKey::new(KEY)).with_retry(RetryPolicy::fast())
}

/// Advances the simulator's clock in the background (600 simulated seconds every 5 ms) while
/// alive, so that batches finish in moments of real time.
pub struct Clock(Arc<AtomicBool>);

impl Clock {
    /// Starts the clock.
    pub fn start(sim: &Arc<SimHandle>) -> Clock {
        let stop = Arc::new(AtomicBool::new(false));
        let (sim, flag) = (Arc::clone(sim), Arc::clone(&stop));
        tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                sim.advance_clock(600.0).await;
            }
        });
        Clock(stop)
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Everything a batch-mode session needs: the queue over a job manager in `dir`, and engines
/// sending every operation to the batch tier of `sim`.
pub struct BatchRig {
    /// The engines.
    pub engines: Engines,
    /// The checkpoint store (the manager's database).
    pub store: SessionStore,
    /// The queue.
    pub queue: Arc<BatchRequestQueue>,
}

/// The batch set-up in `dir` (reopening it after a "crash" finds everything there).
pub async fn batch_rig(sim: &SimHandle, dir: &Path) -> BatchRig {
    let mut config = ProvidersConfig::default();
    config.batch.enabled = true;
    batch_rig_with(sim, dir, config, None).await
}

/// The batch set-up in `dir` with `config` (its batch settings and tiers), hybrid when given.
pub async fn batch_rig_with(
    sim: &SimHandle,
    dir: &Path,
    config: ProvidersConfig,
    hybrid: Option<Hybrid>,
) -> BatchRig {
    open_batch_rig(sim, dir, config, hybrid, false).await
}

/// The batch set-up in `dir` with the request cache in its database (images in
/// `dir/request-cache`), used as `config.cache` says: what `batchbeam run --batch` assembles.
pub async fn cached_batch_rig(sim: &SimHandle, dir: &Path, config: ProvidersConfig) -> BatchRig {
    open_batch_rig(sim, dir, config, None, true).await
}

async fn open_batch_rig(
    sim: &SimHandle,
    dir: &Path,
    config: ProvidersConfig,
    hybrid: Option<Hybrid>,
    cache: bool,
) -> BatchRig {
    let mut manager_config = ManagerConfig::new(dir.join("files"));
    manager_config.poll_interval = Duration::from_millis(5);
    manager_config.poll_ceiling = Duration::from_millis(20);
    manager_config.lease = Duration::from_millis(200);
    let client = OpenAiClient::new(client_config(sim)).unwrap();
    let manager = BatchJobManager::open(client.clone(), &dir.join("batchbeam.db"), manager_config)
        .await
        .unwrap();
    let pool = manager.store().sqlite_pool().unwrap().clone();
    let queue = Arc::new(
        BatchRequestQueue::new(Arc::new(manager), client, QueueConfig::default())
            .await
            .unwrap(),
    );
    let mut factory = ProviderFactory::new(config)
        .with_client(client_config(sim))
        .with_queue(Arc::clone(&queue));
    if cache {
        let cache = RequestCache::sqlite(pool.clone(), dir.join("request-cache"))
            .await
            .unwrap();
        factory = factory.with_cache(cache);
    }
    let engines = Engines::from_factory(&factory, hybrid).unwrap();
    BatchRig {
        engines,
        store: SessionStore::new(pool).await.unwrap(),
        queue,
    }
}

/// Engines sending every operation to `sim`'s synchronous (standard) endpoints.
pub fn standard_engines(sim: &SimHandle) -> Engines {
    let factory = ProviderFactory::new(ProvidersConfig::default()).with_client(client_config(sim));
    Engines::from_factory(&factory, None).unwrap()
}

/// Engines answering in process with the simulated models seeded `seed` (no HTTP).
pub fn simulated_engines(seed: u64) -> Engines {
    let p = OpenAiProvider::new(
        Arc::new(SimulatedTransport::new(seed)),
        RoleModels::default(),
    );
    Engines::single(
        Tier::Simulated,
        Backend {
            llm: Arc::new(p.clone()),
            image: Arc::new(p.clone()),
            vision: Arc::new(p),
        },
    )
}

/// A small search: n = 6, m = 2, 2 iterations, ensemble 1 (quick, still every stage kind).
pub fn small(idea: &str) -> SearchParams {
    let mut p = SearchParams::new(idea);
    (p.n, p.m, p.iterations, p.ensemble) = (6, 2, 2, 1);
    p
}
