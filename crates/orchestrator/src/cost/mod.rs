//! Cost tracking: OpenAI's prices per model and tier, the cost of every call, and the report
//! that compares what a session paid with what the same calls would have cost on the standard
//! tier.
//!
//! [`Pricing`] is a price table read from TOML: the built-in one (`pricing.toml` beside this
//! crate's `Cargo.toml`, see [`BUILTIN_PRICING_TOML`]) or the built-in one overlaid with a user
//! file ([`Pricing::load`]). It prices a chat call by its [`Usage`] and an image by its size and
//! quality (or by its tokens, for the GPT image models that report them). A [`CostTracker`]
//! records every [`Call`] with its actual cost and its all-standard cost, serialises into a
//! session's state, and summarises into a [`CostReport`] per operation and tier.
//!
//! Pure and synchronous: the one function that touches the file system is [`Pricing::load`].
//!
//! ```
//! use batch_format::Usage;
//! use orchestrator::cost::{Call, CostTracker, Pricing};
//! use providers::{Operation, Tier};
//!
//! let pricing = Pricing::builtin();
//! let usage = Usage { input_tokens: 1_000_000, output_tokens: 1_000_000, ..Usage::default() };
//! let mut tracker = CostTracker::new();
//! let call = Call::chat(Operation::Expand, Tier::Batch, "gpt-4o-mini-2024-07-18", usage);
//! let priced = tracker.record(&pricing, call);
//! assert!((priced.cost - 0.375).abs() < 1e-9); // $0.075 + $0.30
//! assert!((priced.standard_cost - 0.75).abs() < 1e-9); // $0.15 + $0.60
//! let batch = tracker.report().tier_totals(Tier::Batch);
//! assert!(batch.cost <= 0.5 * batch.standard_cost + 1e-12);
//! println!("{}", tracker.report());
//! ```

use std::sync::LazyLock;

mod error;
mod pricing;
mod report;
#[cfg(test)]
mod tests;
mod tracker;

pub use error::PricingError;
pub use pricing::{Pricing, TokenPrices};
pub use report::{CostReport, CostRow, CostTotals};
pub use tracker::{Call, CostTracker, ImageSpec, PricedCall};

/// The built-in price table, `crates/orchestrator/pricing.toml`, as compiled in.
pub const BUILTIN_PRICING_TOML: &str = include_str!("../../pricing.toml");

/// The image qualities a price table may name.
const QUALITIES: [&str; 5] = ["standard", "hd", "low", "medium", "high"];

#[allow(
    clippy::expect_used,
    reason = "compiled in, and parsed by a test: a broken table never ships"
)]
static BUILTIN: LazyLock<Pricing> = LazyLock::new(|| {
    Pricing::from_toml_str(BUILTIN_PRICING_TOML).expect("the built-in pricing.toml is valid")
});
