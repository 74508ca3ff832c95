//! Calls as the cost tracker records them, priced as they are recorded.

use batch_format::Usage;
use providers::{Operation, Tier};
use serde::{Deserialize, Serialize};

use super::{CostReport, CostTotals, Pricing};

/// The size and quality an image was asked for (`None`: the model's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// `1024x1024` and the like, or `auto`.
    pub size: Option<String>,
    /// `low`, `medium`, `high`, `standard`, `hd` or `auto`.
    pub quality: Option<String>,
}

/// One model call as the cost tracker records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The pipeline step that made it.
    pub operation: Operation,
    /// The tier whose prices apply: the tier that actually carried the call (after any
    /// fallback). A call answered by the simulated models is recorded as the tier it stands in
    /// for; [`Tier::Simulated`] itself has no price.
    pub tier: Tier,
    /// The tier first tried, when the call fell back to `tier` (flex or batch to standard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<Tier>,
    /// The model the response names (a dated snapshot is fine).
    pub model: String,
    /// The tokens the response reported.
    pub usage: Usage,
    /// For a rendered image, its size and quality; `None` for chat and vision calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// Answered from the request cache: nothing was sent, so it costs $0 (`tier` is the tier
    /// that carried the stored answer, `usage` what that call was billed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

impl Call {
    /// A chat or vision call (expand, combine, critique, refine, judge).
    pub fn chat(operation: Operation, tier: Tier, model: impl Into<String>, usage: Usage) -> Call {
        Call {
            operation,
            tier,
            fallback_from: None,
            model: model.into(),
            usage,
            image: None,
            cached: false,
        }
    }

    /// One rendered image ([`Operation::Render`]).
    pub fn render(
        tier: Tier,
        model: impl Into<String>,
        usage: Usage,
        size: Option<String>,
        quality: Option<String>,
    ) -> Call {
        Call {
            operation: Operation::Render,
            tier,
            fallback_from: None,
            model: model.into(),
            usage,
            image: Some(ImageSpec { size, quality }),
            cached: false,
        }
    }

    /// The same call, recorded as having fallen back from `from` (when it did).
    pub fn fell_back_from(mut self, from: Option<Tier>) -> Call {
        self.fallback_from = from;
        self
    }

    /// The same call, recorded as answered from the request cache (when it was).
    pub fn from_cache(mut self, cached: bool) -> Call {
        self.cached = cached;
        self
    }
}

/// A recorded call with what it cost and what it would have cost on the standard tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricedCall {
    /// The call.
    #[serde(flatten)]
    pub call: Call,
    /// USD at the prices of the tier that carried it; $0 for a cached answer.
    pub cost: f64,
    /// For a cached answer: what it would have cost sent again on its tier (the saving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_saved: Option<f64>,
    /// USD OpenAI's prompt cache saved on it: its cached input tokens at the input rate less
    /// the cached-input rate (on its tier). `None` when no input token was cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_saved: Option<f64>,
    /// USD had the same usage been priced at the standard tier.
    pub standard_cost: f64,
    /// Why the call is not priced at its own tier's prices, when it is not: a tier the table
    /// has no price for the model on (priced at standard, an upper bound), or a model the
    /// table does not know (priced at zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpriced: Option<String>,
}

impl PricedCall {
    /// A cached answer costs nothing: its price on its tier becomes what the cache saved.
    pub(super) fn settled(mut self) -> PricedCall {
        if self.call.cached {
            self.cache_saved = Some(self.cost);
            self.cost = 0.0;
            // Nothing was sent: no prompt cache was used.
            self.prompt_cache_saved = None;
        }
        self
    }
}

/// Every call of a session, priced when recorded. Serialises (as a list of calls) into
/// `session.json` and checkpoints, so that a resumed session keeps counting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostTracker {
    calls: Vec<PricedCall>,
}

impl CostTracker {
    /// An empty tracker.
    pub fn new() -> CostTracker {
        CostTracker::default()
    }

    /// Prices `call` with `pricing` and records it. Every call is recorded: one the table
    /// cannot price on its tier is priced as [`Pricing::price_or_note`] says, with the reason
    /// in [`PricedCall::unpriced`] (the report lists it).
    pub fn record(&mut self, pricing: &Pricing, call: Call) -> &PricedCall {
        let i = self.calls.len();
        self.calls.push(pricing.price_or_note(call));
        &self.calls[i]
    }

    /// Every recorded call, in recording order.
    pub fn calls(&self) -> &[PricedCall] {
        &self.calls
    }

    /// How many calls are recorded.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is recorded.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The totals over every call.
    pub fn totals(&self) -> CostTotals {
        let mut t = CostTotals::default();
        self.calls.iter().for_each(|c| t.add_call(c));
        t
    }

    /// The totals over the calls carried by `tier`, with their all-standard cost: the batch
    /// saving claim is `tier_totals(Tier::Batch).cost <= 0.5 * .standard_cost`.
    pub fn tier_totals(&self, tier: Tier) -> CostTotals {
        let mut t = CostTotals::default();
        self.calls
            .iter()
            .filter(|c| c.call.tier == tier)
            .for_each(|c| t.add_call(c));
        t
    }

    /// The report per operation and tier.
    pub fn report(&self) -> CostReport {
        CostReport::from_calls(&self.calls)
    }
}
