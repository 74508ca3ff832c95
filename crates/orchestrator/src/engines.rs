//! The providers a search calls, one set per tier with its stage barrier, and how each stage
//! picks its tier: fixed per operation as configured (asked of the provider factory), or in
//! hybrid mode the cheapest tier whose expected turnaround fits the time left before a
//! deadline.

use std::sync::Arc;
use std::time::Duration;

use providers::{
    ImageProvider, LlmProvider, NoBarrier, Operation, ProviderFactory, Role, RoleModels,
    StageBarrier, Tier, VisionProvider,
};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::cost::Pricing;

/// The three providers of one tier.
#[derive(Clone)]
pub struct Backend {
    /// The prompt writer.
    pub llm: Arc<dyn LlmProvider>,
    /// The image generator.
    pub image: Arc<dyn ImageProvider>,
    /// The judge.
    pub vision: Arc<dyn VisionProvider>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend")
    }
}

/// How long a stage is expected to take on each tier (hybrid mode's estimate; the batch figure
/// is updated from the batch stages the session has seen).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Turnaround {
    /// A stage of synchronous calls at full price.
    pub standard: Duration,
    /// A stage of flex calls (slower, and may fall back).
    pub flex: Duration,
    /// A batch round trip (OpenAI promises 24 h; most finish far sooner).
    pub batch: Duration,
}

impl Default for Turnaround {
    fn default() -> Self {
        Turnaround {
            standard: Duration::from_secs(60),
            flex: Duration::from_secs(5 * 60),
            batch: Duration::from_secs(60 * 60),
        }
    }
}

impl Turnaround {
    /// The estimate for `tier`.
    pub fn of(&self, tier: Tier) -> Duration {
        match tier {
            Tier::Flex => self.flex,
            Tier::Batch => self.batch,
            _ => self.standard,
        }
    }
}

/// Hybrid mode: a deadline for the whole session and the turnaround estimates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hybrid {
    /// The time the whole session may take, from its start.
    pub deadline: Duration,
    /// Expected turnaround per tier.
    pub turnaround: Turnaround,
}

impl Hybrid {
    /// Picks the cheapest of `offered` (batch, then flex, then standard) whose expected
    /// turnaround fits this stage's share of the time left: `left / stages_left`. When none
    /// fits, the fastest offered.
    pub fn pick(&self, offered: &[Tier], left: Duration, stages_left: usize) -> Option<Tier> {
        let share = left / u32::try_from(stages_left.max(1)).unwrap_or(u32::MAX);
        let by_price = [Tier::Batch, Tier::Flex, Tier::Standard, Tier::Simulated];
        by_price
            .into_iter()
            .filter(|t| offered.contains(t))
            .find(|t| self.turnaround.of(*t) <= share)
            .or_else(|| {
                offered
                    .iter()
                    .copied()
                    .min_by_key(|t| self.turnaround.of(*t))
            })
    }
}

/// How stages choose their tier.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Each operation on its configured tier.
    PerOperation(Vec<(Operation, Tier)>),
    /// Each stage on the cheapest tier that fits the deadline.
    Hybrid(Hybrid),
}

/// The backends of a search, one per tier with that tier's stage barrier, and the routing of
/// its stages.
#[derive(Clone, Debug)]
pub struct Engines {
    backends: Vec<TierBackend>,
    routing: Routing,
    /// Operations configuration keeps off the batch tier (hybrid mode honours it).
    no_batch: Vec<Operation>,
    /// The models each role calls, when known (from a factory's configuration).
    models: Option<RoleModels>,
    /// Tiers the price table does not offer an operation's model on (flex for gpt-4o-mini):
    /// hybrid mode does not pick them ([`Engines::priced_by`]).
    not_offered: Vec<(Operation, Tier)>,
}

/// The backend of one tier and the barrier its stages wait at.
#[derive(Clone, Debug)]
struct TierBackend {
    tier: Tier,
    backend: Backend,
    barrier: Arc<dyn StageBarrier>,
}

impl Engines {
    /// Every operation on one backend of `tier` (tests, and the in-process simulated tier),
    /// with no stage barrier.
    pub fn single(tier: Tier, backend: Backend) -> Engines {
        Engines::new(
            vec![(tier, backend)],
            Operation::ALL.iter().map(|op| (*op, tier)).collect(),
        )
    }

    /// Backends per tier as given (none with a stage barrier: see [`Engines::with_barrier`]),
    /// each operation routed to `routes`' tier.
    pub fn new(backends: Vec<(Tier, Backend)>, routes: Vec<(Operation, Tier)>) -> Engines {
        Engines {
            backends: backends
                .into_iter()
                .map(|(tier, backend)| TierBackend {
                    tier,
                    backend,
                    barrier: Arc::new(NoBarrier),
                })
                .collect(),
            routing: Routing::PerOperation(routes),
            no_batch: Vec::new(),
            models: None,
            not_offered: Vec::new(),
        }
    }

    /// The stages of `tier` wait at `barrier` once all their calls are sent.
    pub fn with_barrier(mut self, tier: Tier, barrier: Arc<dyn StageBarrier>) -> Engines {
        for b in self.backends.iter_mut().filter(|b| b.tier == tier) {
            b.barrier = barrier.clone();
        }
        self
    }

    /// From a provider factory: each operation on the tier the factory's configuration gives
    /// it ([`ProviderFactory::tier_for`]); with `hybrid`, every tier the factory can build
    /// ([`ProviderFactory::available`]; batch only for the operations
    /// [`ProviderFactory::may_batch`] allows) and each stage's tier picked by the deadline.
    pub fn from_factory(
        factory: &ProviderFactory,
        hybrid: Option<Hybrid>,
    ) -> crate::Result<Engines> {
        let mut tiers: Vec<Tier> = match hybrid {
            Some(_) => factory.available(),
            None => Operation::ALL
                .iter()
                .map(|op| factory.tier_for(*op))
                .collect(),
        };
        tiers.dedup();
        let mut backends: Vec<TierBackend> = Vec::new();
        for tier in tiers {
            if backends.iter().any(|b| b.tier == tier) {
                continue;
            }
            let providers = factory.tier(tier)?;
            backends.push(TierBackend {
                tier,
                backend: Backend {
                    llm: providers.llm(),
                    image: providers.image(),
                    vision: providers.vision(),
                },
                barrier: providers.barrier(Operation::ALL[0]),
            });
        }
        let routing = match hybrid {
            Some(h) => Routing::Hybrid(h),
            None => Routing::PerOperation(
                Operation::ALL
                    .iter()
                    .map(|op| (*op, factory.tier_for(*op)))
                    .collect(),
            ),
        };
        Ok(Engines {
            backends,
            routing,
            no_batch: Operation::ALL
                .into_iter()
                .filter(|op| !factory.may_batch(*op))
                .collect(),
            models: Some(factory.config().models.clone()),
            not_offered: Vec::new(),
        })
    }

    /// Keeps hybrid mode off the tiers `pricing` does not offer an operation's model on: OpenAI
    /// refuses `service_tier: "flex"` for a model without flex (gpt-4o-mini, gpt-4.1), so such
    /// a stage goes to batch or standard instead. Needs the models (engines from a factory).
    pub fn priced_by(&mut self, pricing: &Pricing) {
        self.not_offered.clear();
        let Some(models) = &self.models else {
            return;
        };
        for op in Operation::ALL {
            let model = model_of(models, op);
            for b in &self.backends {
                if !pricing.offers(model, b.tier, op) {
                    self.not_offered.push((op, b.tier));
                }
            }
        }
    }

    /// The models each role calls (the defaults when these engines were not made from a
    /// factory's configuration).
    pub fn models(&self) -> RoleModels {
        self.models.clone().unwrap_or_default()
    }

    /// The turnaround estimates: hybrid mode's, as it has learnt them, else the defaults.
    pub fn turnaround(&self) -> Turnaround {
        match &self.routing {
            Routing::Hybrid(h) => h.turnaround,
            Routing::PerOperation(_) => Turnaround::default(),
        }
    }

    /// The model `op` calls, when known.
    pub fn model_for(&self, op: Operation) -> Option<&str> {
        self.models.as_ref().map(|m| model_of(m, op))
    }

    /// Learns from a finished stage: in hybrid mode the tier's expected turnaround moves half
    /// way to what the stage took.
    pub fn observe(&mut self, tier: Tier, took: Duration) {
        if let Routing::Hybrid(h) = &mut self.routing {
            let slot = match tier {
                Tier::Batch => &mut h.turnaround.batch,
                Tier::Flex => &mut h.turnaround.flex,
                Tier::Standard => &mut h.turnaround.standard,
                _ => return,
            };
            *slot = (*slot + took) / 2;
        }
    }

    /// The routing.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The tiers a stage of `op` may use.
    pub fn offered(&self, op: Operation) -> Vec<Tier> {
        self.backends
            .iter()
            .map(|b| b.tier)
            // The image endpoint has no flex tier.
            .filter(|t| !(*t == Tier::Flex && op.role() == Role::Image))
            .filter(|t| !(*t == Tier::Batch && self.no_batch.contains(&op)))
            .filter(|t| !self.not_offered.contains(&(op, *t)))
            .collect()
    }

    /// The tier for a stage of `op`, with `left` until the deadline and `stages_left`
    /// stages (this one included) to run: the one place a stage's tier is decided.
    pub fn tier_for(&self, op: Operation, left: Option<Duration>, stages_left: usize) -> Tier {
        match &self.routing {
            Routing::PerOperation(routes) => routes
                .iter()
                .find(|(o, _)| *o == op)
                .map_or(Tier::Standard, |(_, t)| *t),
            Routing::Hybrid(h) => h
                .pick(
                    &self.offered(op),
                    left.unwrap_or(Duration::ZERO),
                    stages_left,
                )
                .unwrap_or(Tier::Standard),
        }
    }

    /// The backend of `tier`; [`Error::NoBackend`] when these engines have none for it.
    pub fn backend(&self, tier: Tier) -> crate::Result<&Backend> {
        self.tier_backend(tier).map(|b| &b.backend)
    }

    /// The stage barrier of `tier` (as [`Engines::backend`]).
    pub fn barrier(&self, tier: Tier) -> crate::Result<&Arc<dyn StageBarrier>> {
        self.tier_backend(tier).map(|b| &b.barrier)
    }

    fn tier_backend(&self, tier: Tier) -> crate::Result<&TierBackend> {
        self.backends
            .iter()
            .find(|b| b.tier == tier)
            .ok_or_else(|| Error::NoBackend {
                tier,
                have: self.backends.iter().map(|b| b.tier).collect(),
            })
    }
}

/// The model of `models` that `op` calls.
fn model_of(models: &RoleModels, op: Operation) -> &str {
    match op.role() {
        Role::Image => &models.image,
        Role::Vision => &models.vision,
        _ => &models.llm,
    }
}

#[cfg(test)]
mod tests;
