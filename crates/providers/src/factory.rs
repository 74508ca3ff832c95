//! The one place that names concrete tiers: configuration in, providers out, each operation
//! on the tier configuration gives it (or, for a stage that picks its own, on a tier asked
//! for by name).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use batch_client::{ClientConfig, OpenAiClient, RetryPolicy};
use batch_format::{ChatCompletionRequest, ImageGenerationRequest};

use crate::transport::{FlexTransport, StandardTransport};
use crate::{
    ConfigError, Delivered, ImageProvider, LlmProvider, NoBarrier, OpenAiProvider, Operation,
    ProviderError, ProvidersConfig, RequestCache, Result, StageBarrier, Tier, Transport,
    VisionProvider,
};

/// Builds [`Providers`] from a [`ProvidersConfig`] and the connections the chosen tiers need.
#[derive(Debug, Clone)]
pub struct ProviderFactory {
    config: ProvidersConfig,
    client: Option<ClientConfig>,
    batch: Option<Arc<dyn Transport>>,
    cache: Option<RequestCache>,
}

impl ProviderFactory {
    /// A factory for `config`; add an API client for standard and flex, a batch transport for
    /// batch.
    pub fn new(config: ProvidersConfig) -> ProviderFactory {
        ProviderFactory {
            config,
            client: None,
            batch: None,
            cache: None,
        }
    }

    /// The API to call for the standard and flex tiers.
    pub fn with_client(mut self, client: ClientConfig) -> ProviderFactory {
        self.client = Some(client);
        self
    }

    /// The batch tier through `queue`, flushing after each call when `batch.mode` is
    /// immediate.
    pub fn with_queue(self, queue: Arc<batch_queue::BatchRequestQueue>) -> ProviderFactory {
        let mode = self.config.batch.mode;
        self.with_batch(Arc::new(crate::BatchTransport::new(queue, mode)))
    }

    /// The transport of the batch tier (any [`Transport`]; [`ProviderFactory::with_queue`] is
    /// the usual one).
    pub fn with_batch(mut self, batch: Arc<dyn Transport>) -> ProviderFactory {
        self.batch = Some(batch);
        self
    }

    /// The request cache the providers answer deterministic requests from, while the
    /// configuration has it on ([`ProvidersConfig::cache`]): every tier, one cache.
    pub fn with_cache(mut self, cache: RequestCache) -> ProviderFactory {
        self.cache = Some(cache);
        self
    }

    /// The request cache the providers use: the factory's, unless configuration turns it off.
    pub fn cache(&self) -> Option<&RequestCache> {
        self.cache.as_ref().filter(|_| self.config.cache)
    }

    /// The same connections (API client, batch transport, cache) under another configuration: one
    /// stack serving jobs that each choose their tiers.
    pub fn with_config(mut self, config: ProvidersConfig) -> ProviderFactory {
        self.config = config;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ProvidersConfig {
        &self.config
    }

    /// The tier an operation's calls are configured to use ([`ProvidersConfig::tier_for`]:
    /// the one rule for configured routing).
    pub fn tier_for(&self, operation: Operation) -> Tier {
        self.config.tier_for(operation)
    }

    /// Whether configuration lets `operation` use the batch tier when a stage picks its own
    /// tier (hybrid mode): its role's switch (`BATCH_LLM_ENABLED`, `BATCH_VISION_ENABLED`)
    /// as [`ProvidersConfig::tier_for`] reads it. Hybrid mode is itself a choice to batch, so
    /// `BATCH_API_ENABLED` is not asked.
    pub fn may_batch(&self, operation: Operation) -> bool {
        let mut config = self.config.clone().with_tier(operation, Tier::Batch);
        config.batch.enabled = true;
        config.tier_for(operation) == Tier::Batch
    }

    /// The tiers a stage that picks its own may choose from (hybrid mode): standard and flex
    /// (building them needs an API client), and batch when the factory has a batch transport.
    pub fn available(&self) -> Vec<Tier> {
        let mut tiers = vec![Tier::Standard, Tier::Flex];
        if self.batch.is_some() {
            tiers.push(Tier::Batch);
        }
        tiers
    }

    /// One transport per tier in use, and each operation routed to its configured tier
    /// ([`ProviderFactory::tier_for`]).
    pub fn build(&self) -> Result<Providers> {
        let mut by_tier: BTreeMap<&'static str, Arc<dyn Transport>> = BTreeMap::new();
        let mut routes = Vec::new();
        for op in Operation::ALL {
            let tier = self.tier_for(op);
            let transport = match by_tier.get(tier.as_str()) {
                Some(t) => t.clone(),
                None => {
                    let t = self.transport(op, tier)?;
                    by_tier.insert(tier.as_str(), t.clone());
                    t
                }
            };
            routes.push((op, tier, transport));
        }
        Ok(self.providers(routes))
    }

    /// Every operation on `tier`, whatever configuration routes it to (a stage that picks its
    /// own tier sends through these).
    pub fn tier(&self, tier: Tier) -> Result<Providers> {
        let transport = self.transport(Operation::ALL[0], tier)?;
        let routes = Operation::ALL
            .into_iter()
            .map(|op| (op, tier, transport.clone()))
            .collect();
        Ok(self.providers(routes))
    }

    fn providers(&self, routes: Vec<(Operation, Tier, Arc<dyn Transport>)>) -> Providers {
        let router = Arc::new(Router { routes });
        let mut provider = OpenAiProvider::new(router.clone(), self.config.models.clone());
        if let Some(cache) = self.cache() {
            provider = provider.with_cache(cache.clone());
        }
        Providers {
            provider,
            router,
            config: self.config.clone(),
        }
    }

    fn transport(&self, op: Operation, tier: Tier) -> Result<Arc<dyn Transport>> {
        let client = |config: ClientConfig| {
            OpenAiClient::new(config).map_err(|source| ProviderError::Client { tier, source })
        };
        let needs_client = || ConfigError::Missing {
            operation: op,
            tier,
            what: "an API client (OPENAI_API_KEY and OPENAI_BASE_URL)",
        };
        Ok(match tier {
            #[cfg(feature = "simulated")]
            Tier::Simulated => Arc::new(crate::transport::SimulatedTransport::new(
                self.config.simulated_seed,
            )),
            #[cfg(not(feature = "simulated"))]
            Tier::Simulated => {
                return Err(ConfigError::Missing {
                    operation: op,
                    tier,
                    what: "the `simulated` feature of the providers crate",
                }
                .into());
            }
            Tier::Standard => {
                let config = self.client.clone().ok_or_else(needs_client)?;
                Arc::new(StandardTransport::new(client(config)?))
            }
            Tier::Flex => {
                let config = self.client.clone().ok_or_else(needs_client)?;
                // A busy flex tier should fall back at once, not be retried into the timeout.
                let flex = config
                    .clone()
                    .with_timeout(self.config.flex_timeout)
                    .with_retry(RetryPolicy::NONE);
                Arc::new(FlexTransport::new(
                    client(flex)?,
                    client(config)?,
                    self.config.flex_timeout,
                    self.config.batch.fallback_to_standard,
                ))
            }
            Tier::Batch => self.batch.clone().ok_or(ConfigError::Missing {
                operation: op,
                tier,
                what: "a batch queue",
            })?,
        })
    }
}

/// The providers of one configuration: every operation on its tier.
#[derive(Debug, Clone)]
pub struct Providers {
    provider: OpenAiProvider,
    router: Arc<Router>,
    config: ProvidersConfig,
}

impl Providers {
    /// The prompt writer (each call on its operation's tier).
    pub fn llm(&self) -> Arc<dyn LlmProvider> {
        Arc::new(self.provider.clone())
    }

    /// The image generator (on the render tier).
    pub fn image(&self) -> Arc<dyn ImageProvider> {
        Arc::new(self.provider.clone())
    }

    /// The judge (on the judge tier).
    pub fn vision(&self) -> Arc<dyn VisionProvider> {
        Arc::new(self.provider.clone())
    }

    /// The tier an operation's calls are sent to.
    pub fn tier_for(&self, operation: Operation) -> Tier {
        self.router
            .routes
            .iter()
            .find(|(op, _, _)| *op == operation)
            .map_or(Tier::Standard, |(_, tier, _)| *tier)
    }

    /// The stage barrier of the tier an operation's calls are sent to.
    pub fn barrier(&self, operation: Operation) -> Arc<dyn StageBarrier> {
        match self.router.route(operation) {
            Ok(transport) => transport.barrier(),
            Err(_) => Arc::new(NoBarrier),
        }
    }

    /// The configuration they were built from.
    pub fn config(&self) -> &ProvidersConfig {
        &self.config
    }
}

/// Sends each call to its operation's transport.
#[derive(Debug)]
struct Router {
    routes: Vec<(Operation, Tier, Arc<dyn Transport>)>,
}

impl Router {
    fn route(&self, op: Operation) -> Result<&Arc<dyn Transport>> {
        self.routes
            .iter()
            .find(|(o, _, _)| *o == op)
            .map(|(_, _, t)| t)
            .ok_or_else(|| ProviderError::InvalidRequest(format!("no tier for {op}")))
    }
}

#[async_trait]
impl Transport for Router {
    fn tier(&self) -> Tier {
        // Mixed: callers read the tier each result reports.
        self.routes.first().map_or(Tier::Standard, |(_, t, _)| *t)
    }

    async fn chat(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ChatCompletionRequest,
    ) -> Result<Delivered> {
        self.route(op)?.chat(op, key, body).await
    }

    async fn image(
        &self,
        op: Operation,
        key: Option<&str>,
        body: ImageGenerationRequest,
    ) -> Result<Delivered> {
        self.route(op)?.image(op, key, body).await
    }
}

#[cfg(test)]
mod tests;
