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

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{AddAssign, Range};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use batch_format::Usage;
use providers::{Operation, Tier};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The built-in price table, `crates/orchestrator/pricing.toml`, as compiled in.
pub const BUILTIN_PRICING_TOML: &str = include_str!("../pricing.toml");

/// The image qualities a price table may name.
const QUALITIES: [&str; 5] = ["standard", "hd", "low", "medium", "high"];

static BUILTIN: LazyLock<Pricing> = LazyLock::new(|| {
    Pricing::from_toml_str(BUILTIN_PRICING_TOML).expect("the built-in pricing.toml is valid")
});

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a price table could not be read, or a call could not be priced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The pricing file could not be read.
    #[error("cannot read the pricing file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A problem inside a pricing file; `source` says what and where.
    #[error("pricing file {}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The problem.
        #[source]
        source: Box<PricingError>,
    },
    /// Not TOML, or not the table's shape: a value of the wrong type, an unknown field.
    #[error("invalid pricing table{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Syntax {
        /// The line of the problem (1-based), when known.
        line: Option<usize>,
        /// The TOML parser's message.
        message: String,
    },
    /// A tier name other than `standard`, `flex` or `batch`.
    #[error(
        "line {line}: model `{model}`: unknown tier `{tier}` (expected standard, flex or batch)"
    )]
    UnknownTier {
        /// The model whose entry names it.
        model: String,
        /// The name found.
        tier: String,
        /// Its line (1-based).
        line: usize,
    },
    /// A required field or table is missing.
    #[error("line {line}: model `{model}`: missing `{field}`")]
    MissingField {
        /// The model.
        model: String,
        /// The missing field's path within the model's entry, e.g. `tokens.batch.cached_input`.
        field: String,
        /// The line of the table that lacks it (1-based).
        line: usize,
    },
    /// A price that is negative, infinite or not a number.
    #[error(
        "line {line}: model `{model}`: `{field}` = {value} is not a price (expected a finite number >= 0)"
    )]
    InvalidPrice {
        /// The model.
        model: String,
        /// The field's path within the model's entry, e.g. `tokens.standard.output`.
        field: String,
        /// The value found.
        value: f64,
        /// Its line (1-based).
        line: usize,
    },
    /// Any other inconsistency in a model's entry (an unknown image quality, a malformed size,
    /// a default size without a price, an entry without prices).
    #[error("line {line}: model `{model}`: {problem}")]
    InvalidEntry {
        /// The model.
        model: String,
        /// What is wrong.
        problem: String,
        /// Its line (1-based).
        line: usize,
    },
    /// The table has no entry for the model (nor for the model it is a dated snapshot of).
    #[error(
        "no price for model `{model}`: the price table knows {} (a dated snapshot such as \
         `gpt-4o-2024-08-06` is priced as its model)",
        known.join(", ")
    )]
    UnknownModel {
        /// The model asked for.
        model: String,
        /// Every model the table prices.
        known: Vec<String>,
    },
    /// The model has no price on the tier: OpenAI does not offer it there (flex is offered
    /// for few models), or the table does not say.
    #[error(
        "model `{model}` is not offered on the {tier} tier (the price table has no {tier} price for it)"
    )]
    TierNotOffered {
        /// The model (as the table names it).
        model: String,
        /// The tier asked for.
        tier: Tier,
    },
    /// The tier has no prices at all: [`Tier::Simulated`] calls cost nothing; price them as
    /// the tier they stand in for.
    #[error("the {tier} tier has no prices: price a simulated call as the tier it stands in for")]
    TierNotPriced {
        /// The tier asked for.
        tier: Tier,
    },
    /// A chat call priced with a model that is priced per image only (DALL·E).
    #[error("model `{model}` is priced per image, not per token: it cannot price a chat call")]
    NotTokenPriced {
        /// The model (as the table names it).
        model: String,
    },
    /// An image priced with a model that has no image prices.
    #[error("model `{model}` has no image prices: it cannot price a rendered image")]
    NotImagePriced {
        /// The model (as the table names it).
        model: String,
    },
    /// The image model has no price for the size and quality on the tier.
    #[error(
        "model `{model}` has no {tier} price for a {quality} {size} image (priced: {})",
        offered.join(", ")
    )]
    NoImagePrice {
        /// The model (as the table names it).
        model: String,
        /// The tier asked for.
        tier: Tier,
        /// The size asked for (after defaults).
        size: String,
        /// The quality asked for (after defaults).
        quality: String,
        /// The `quality size` pairs the tier prices.
        offered: Vec<String>,
    },
}

// ---------------------------------------------------------------------------------------------
// The price table

/// A model's token prices on one tier, in USD per 1,000,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenPrices {
    /// Input tokens not served from the prompt cache.
    pub input: f64,
    /// Input tokens served from the prompt cache.
    pub cached_input: f64,
    /// Output tokens, reasoning tokens included (GPT image models: image output tokens).
    pub output: f64,
}

impl TokenPrices {
    /// The cost of `usage` at these prices, in USD.
    ///
    /// Cached input tokens (never more than the input tokens) are priced at `cached_input`, the
    /// rest of the input at `input`. Output tokens, which include reasoning tokens, are priced
    /// at `output`; should a response report more reasoning tokens than output tokens, the
    /// reasoning tokens are priced instead.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_tokens.unwrap_or(0).min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        let output = usage.output_tokens.max(usage.reasoning_tokens.unwrap_or(0));
        (fresh as f64 * self.input
            + cached as f64 * self.cached_input
            + output as f64 * self.output)
            / 1_000_000.0
    }
}

/// One value per priced tier; `None` where the model is not offered.
#[derive(Debug, Clone, PartialEq)]
struct Tiered<T> {
    standard: Option<T>,
    flex: Option<T>,
    batch: Option<T>,
}

impl<T> Default for Tiered<T> {
    fn default() -> Self {
        Tiered {
            standard: None,
            flex: None,
            batch: None,
        }
    }
}

impl<T> Tiered<T> {
    /// The value for `tier`; `Err` for a tier that has no prices at all (simulated).
    fn get(&self, tier: Tier) -> Result<Option<&T>, PricingError> {
        match tier {
            Tier::Standard => Ok(self.standard.as_ref()),
            Tier::Flex => Ok(self.flex.as_ref()),
            Tier::Batch => Ok(self.batch.as_ref()),
            _ => Err(PricingError::TierNotPriced { tier }),
        }
    }

    fn slot(&mut self, tier: Tier) -> &mut Option<T> {
        match tier {
            Tier::Flex => &mut self.flex,
            Tier::Batch => &mut self.batch,
            _ => &mut self.standard,
        }
    }

    fn is_empty(&self) -> bool {
        self.standard.is_none() && self.flex.is_none() && self.batch.is_none()
    }
}

/// An image model's prices per image: per tier, `(quality, size) -> USD`.
#[derive(Debug, Clone, PartialEq)]
struct ImagePrices {
    default_size: String,
    default_quality: String,
    prices: Tiered<BTreeMap<(String, String), f64>>,
}

/// Everything the table says about one model.
#[derive(Debug, Clone, PartialEq)]
struct ModelEntry {
    tokens: Option<Tiered<TokenPrices>>,
    images: Option<ImagePrices>,
}

/// OpenAI's prices: per model, token prices per tier and, for image models, prices per image
/// by size and quality per tier.
///
/// Models are looked up by their id or, for a dated snapshot (`gpt-4o-mini-2024-07-18`,
/// `gpt-4-0613`), by the longest table entry it extends with a `-` and a date. Every model
/// has a standard price; a tier the table omits for a model is not offered for it, and pricing
/// a call there is [`PricingError::TierNotOffered`]. [`Tier::Simulated`] has no price
/// ([`PricingError::TierNotPriced`]): the caller prices a simulated call as the tier it
/// stands in for.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    models: BTreeMap<String, ModelEntry>,
}

impl Pricing {
    /// The built-in table ([`BUILTIN_PRICING_TOML`]): OpenAI's published prices as found on
    /// the date its header gives.
    pub fn builtin() -> Pricing {
        BUILTIN.clone()
    }

    /// Parses a price table (the format of `pricing.toml`; see `docs/cost.md`). The result
    /// holds only the models `toml` names; combine it with [`Pricing::with_overrides`].
    ///
    /// Errors name the line and, past the TOML syntax, the model and field: an unknown tier,
    /// a missing field, a negative or non-finite price, an unknown image quality.
    pub fn from_toml_str(toml: &str) -> Result<Pricing, PricingError> {
        let raw: RawTable = toml::from_str(toml).map_err(|e| PricingError::Syntax {
            line: e.span().map(|s| line_of(toml, &s)),
            message: e.message().trim().to_owned(),
        })?;
        let mut models = BTreeMap::new();
        for (name, model) in raw.models {
            let line = line_of(toml, &name.span());
            let name = name.into_inner();
            let entry = convert_model(toml, &name, line, model)?;
            models.insert(name, entry);
        }
        Ok(Pricing { models })
    }

    /// The built-in table overlaid with the file at `path`: every model the file names
    /// replaces the built-in entry for it (all its tiers), the others stay. This is the one
    /// function here that does I/O.
    pub fn load(path: impl AsRef<Path>) -> Result<Pricing, PricingError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = Pricing::from_toml_str(&text).map_err(|e| PricingError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Ok(Pricing::builtin().with_overrides(file))
    }

    /// This table with every model of `overrides` replacing (or adding) its entry.
    pub fn with_overrides(mut self, overrides: Pricing) -> Pricing {
        self.models.extend(overrides.models);
        self
    }

    /// The models the table prices, in name order.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// The table entry that prices `model`: the model itself, or for a dated snapshot the
    /// longest entry that `model` extends with `-YYYY-MM-DD` or `-MMDD`
    /// (`gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`; `gpt-image-1-mini` is not a snapshot of
    /// `gpt-image-1`).
    pub fn resolve(&self, model: &str) -> Result<&str, PricingError> {
        if let Some((name, _)) = self.models.get_key_value(model) {
            return Ok(name);
        }
        self.models
            .keys()
            .filter(|name| {
                model
                    .strip_prefix(name.as_str())
                    .is_some_and(is_snapshot_suffix)
            })
            .max_by_key(|name| name.len())
            .map(String::as_str)
            .ok_or_else(|| PricingError::UnknownModel {
                model: model.to_owned(),
                known: self.models.keys().cloned().collect(),
            })
    }

    fn entry(&self, model: &str) -> Result<(&str, &ModelEntry), PricingError> {
        let name = self.resolve(model)?;
        Ok((name, &self.models[name]))
    }

    /// `model`'s token prices on `tier`.
    pub fn token_prices(&self, model: &str, tier: Tier) -> Result<TokenPrices, PricingError> {
        let (name, entry) = self.entry(model)?;
        let tokens = entry
            .tokens
            .as_ref()
            .ok_or_else(|| PricingError::NotTokenPriced {
                model: name.to_owned(),
            })?;
        tokens
            .get(tier)?
            .copied()
            .ok_or_else(|| PricingError::TierNotOffered {
                model: name.to_owned(),
                tier,
            })
    }

    /// The price of one image from `model` on `tier`. `None` or `auto` stands for the model's
    /// default size or quality (for the GPT image models, whose `auto` quality the model
    /// chooses, the table's default is `high`: an upper bound).
    pub fn image_price(
        &self,
        model: &str,
        tier: Tier,
        size: Option<&str>,
        quality: Option<&str>,
    ) -> Result<f64, PricingError> {
        let (name, entry) = self.entry(model)?;
        let images = entry
            .images
            .as_ref()
            .ok_or_else(|| PricingError::NotImagePriced {
                model: name.to_owned(),
            })?;
        let table = images
            .prices
            .get(tier)?
            .ok_or_else(|| PricingError::TierNotOffered {
                model: name.to_owned(),
                tier,
            })?;
        let pick = |asked: Option<&str>, default: &str| match asked.map(str::trim) {
            None | Some("") => default.to_owned(),
            Some(a) if a.eq_ignore_ascii_case("auto") => default.to_owned(),
            Some(a) => a.to_ascii_lowercase(),
        };
        let size = pick(size, &images.default_size);
        let quality = pick(quality, &images.default_quality);
        match table.get(&(quality.clone(), size.clone())) {
            Some(price) => Ok(*price),
            None => Err(PricingError::NoImagePrice {
                model: name.to_owned(),
                tier,
                size,
                quality,
                offered: table.keys().map(|(q, s)| format!("{q} {s}")).collect(),
            }),
        }
    }

    /// The cost in USD of a chat (or vision) call to `model` on `tier` that used `usage`.
    ///
    /// Cached input tokens are priced at the cached-input rate and the rest of the input at
    /// the input rate; output tokens, reasoning included, at the output rate (see
    /// [`TokenPrices::cost`]).
    pub fn chat_cost(&self, model: &str, tier: Tier, usage: &Usage) -> Result<f64, PricingError> {
        Ok(self.token_prices(model, tier)?.cost(usage))
    }

    /// The cost in USD of one image rendered by `model` on `tier` at `size` and `quality`
    /// (`None` or `auto`: the model's default), whose response reported `usage`.
    ///
    /// What OpenAI bills decides: a model with token prices on the tier (the GPT image models)
    /// whose response reports output tokens is priced by its tokens, prompt at the text-input
    /// rates and the image at the image-output rate, which is exactly the bill. Otherwise the
    /// image is priced from the per-image table by size and quality (the table's prices are
    /// the cost of the image's output tokens), plus, for a model with token prices, the
    /// prompt's input tokens. DALL·E bills per image only; its usage is ignored.
    pub fn image_cost(
        &self,
        model: &str,
        tier: Tier,
        size: Option<&str>,
        quality: Option<&str>,
        usage: &Usage,
    ) -> Result<f64, PricingError> {
        let (name, entry) = self.entry(model)?;
        let tokens = match &entry.tokens {
            Some(tokens) => tokens.get(tier)?.copied(),
            None => None,
        };
        if let Some(prices) = tokens
            && usage.output_tokens > 0
        {
            return Ok(prices.cost(usage));
        }
        let per_image = self.image_price(name, tier, size, quality)?;
        let prompt = tokens.map_or(0.0, |prices| {
            prices.cost(&Usage {
                output_tokens: 0,
                reasoning_tokens: None,
                ..*usage
            })
        });
        Ok(per_image + prompt)
    }

    /// The cost of `call` on `tier`: [`Pricing::image_cost`] for a call with an
    /// [`ImageSpec`], [`Pricing::chat_cost`] otherwise.
    pub fn call_cost(&self, call: &Call, tier: Tier) -> Result<f64, PricingError> {
        match &call.image {
            Some(image) => self.image_cost(
                &call.model,
                tier,
                image.size.as_deref(),
                image.quality.as_deref(),
                &call.usage,
            ),
            None => self.chat_cost(&call.model, tier, &call.usage),
        }
    }

    /// `call` with its actual cost (on `call.tier`) and its all-standard cost.
    pub fn price(&self, call: Call) -> Result<PricedCall, PricingError> {
        let cost = self.call_cost(&call, call.tier)?;
        let standard_cost = self.call_cost(&call, Tier::Standard)?;
        Ok(PricedCall {
            call,
            cost,
            standard_cost,
            unpriced: None,
        })
    }

    /// `call` priced as well as the table allows: on its own tier ([`Pricing::price`]); when
    /// the table has no price for the model on that tier, at the standard price (an upper
    /// bound) and saying so; when it cannot price the model at all, at zero and saying so.
    /// Every call that was sent is counted, whatever the table knows.
    pub fn price_or_note(&self, call: Call) -> PricedCall {
        let problem = match self.price(call.clone()) {
            Ok(priced) => return priced,
            Err(e) => e,
        };
        match self.call_cost(&call, Tier::Standard) {
            Ok(standard) => PricedCall {
                call,
                cost: standard,
                standard_cost: standard,
                unpriced: Some(format!("{problem}: priced at standard")),
            },
            Err(e) => PricedCall {
                call,
                cost: 0.0,
                standard_cost: 0.0,
                unpriced: Some(format!("{e}: counted at $0")),
            },
        }
    }

    /// Whether the table prices `model` on `tier` for `operation` (an image for renders,
    /// tokens otherwise). A model the table does not know counts as offered: the table cannot
    /// say it is not.
    pub fn offers(&self, model: &str, tier: Tier, operation: Operation) -> bool {
        let priced = if operation == Operation::Render {
            self.image_price(model, tier, None, None).map(|_| ())
        } else {
            self.token_prices(model, tier).map(|_| ())
        };
        !matches!(
            priced,
            Err(PricingError::TierNotOffered { .. } | PricingError::TierNotPriced { .. })
        )
    }
}

/// `-YYYY-MM-DD` or `-MMDD`: the date OpenAI appends to a snapshot's id.
fn is_snapshot_suffix(rest: &str) -> bool {
    let Some(date) = rest.strip_prefix('-') else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match date.split('-').collect::<Vec<_>>()[..] {
        [y, m, d] => digits(y, 4) && digits(m, 2) && digits(d, 2),
        [md] => digits(md, 4),
        _ => false,
    }
}

/// The 1-based line of the byte offset `span.start` of `src`.
fn line_of(src: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------------------------
// The file format, as read, then checked into the table

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    models: BTreeMap<Spanned<String>, RawModel>,
}

/// `[models."<id>"]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    tokens: Option<BTreeMap<Spanned<String>, Spanned<RawTokens>>>,
    /// tier -> quality -> size -> USD per image.
    images: Option<BTreeMap<Spanned<String>, RawQualities>>,
    default_size: Option<Spanned<String>>,
    default_quality: Option<Spanned<String>>,
}

/// quality -> size -> USD per image.
type RawQualities = BTreeMap<Spanned<String>, RawSizes>;

/// size -> USD per image.
type RawSizes = BTreeMap<Spanned<String>, Spanned<f64>>;

/// `{ input = .., cached_input = .., output = .. }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    input: Option<Spanned<f64>>,
    cached_input: Option<Spanned<f64>>,
    output: Option<Spanned<f64>>,
}

fn parse_tier(src: &str, model: &str, key: &Spanned<String>) -> Result<Tier, PricingError> {
    match key.get_ref().as_str() {
        "standard" => Ok(Tier::Standard),
        "flex" => Ok(Tier::Flex),
        "batch" => Ok(Tier::Batch),
        other => Err(PricingError::UnknownTier {
            model: model.to_owned(),
            tier: other.to_owned(),
            line: line_of(src, &key.span()),
        }),
    }
}

fn check_price(
    src: &str,
    model: &str,
    field: impl FnOnce() -> String,
    value: &Spanned<f64>,
) -> Result<f64, PricingError> {
    let v = *value.get_ref();
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(PricingError::InvalidPrice {
            model: model.to_owned(),
            field: field(),
            value: v,
            line: line_of(src, &value.span()),
        })
    }
}

fn is_size(size: &str) -> bool {
    let mut parts = size.split('x');
    let dim = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    dim(parts.next()) && dim(parts.next()) && parts.next().is_none()
}

fn convert_model(
    src: &str,
    model: &str,
    line: usize,
    raw: RawModel,
) -> Result<ModelEntry, PricingError> {
    let invalid = |problem: String, line: usize| PricingError::InvalidEntry {
        model: model.to_owned(),
        problem,
        line,
    };
    let missing = |field: String, line: usize| PricingError::MissingField {
        model: model.to_owned(),
        field,
        line,
    };
    if model.trim().is_empty() {
        return Err(invalid("a model needs a non-empty name".into(), line));
    }

    let tokens = match raw.tokens {
        None => None,
        Some(raw_tiers) => {
            let mut tiers = Tiered::default();
            for (key, prices) in raw_tiers {
                let tier = parse_tier(src, model, &key)?;
                let table_line = line_of(src, &prices.span());
                let prices = prices.into_inner();
                let field = |name: &'static str, value: Option<Spanned<f64>>| match value {
                    Some(v) => check_price(src, model, || format!("tokens.{tier}.{name}"), &v),
                    None => Err(missing(format!("tokens.{tier}.{name}"), table_line)),
                };
                *tiers.slot(tier) = Some(TokenPrices {
                    input: field("input", prices.input)?,
                    cached_input: field("cached_input", prices.cached_input)?,
                    output: field("output", prices.output)?,
                });
            }
            if tiers.standard.is_none() {
                return Err(missing("tokens.standard".into(), line));
            }
            Some(tiers)
        }
    };

    let images = match raw.images {
        None => {
            if let Some(key) = raw.default_size.as_ref().or(raw.default_quality.as_ref()) {
                return Err(invalid(
                    "default_size and default_quality need image prices (`images`)".into(),
                    line_of(src, &key.span()),
                ));
            }
            None
        }
        Some(raw_tiers) => {
            let mut prices: Tiered<BTreeMap<(String, String), f64>> = Tiered::default();
            for (key, qualities) in raw_tiers {
                let tier = parse_tier(src, model, &key)?;
                let mut table = BTreeMap::new();
                for (quality_key, sizes) in qualities {
                    let quality = quality_key.get_ref().as_str();
                    if !QUALITIES.contains(&quality) {
                        return Err(invalid(
                            format!(
                                "unknown image quality `{quality}` in images.{tier} (expected {})",
                                QUALITIES.join(", ")
                            ),
                            line_of(src, &quality_key.span()),
                        ));
                    }
                    for (size_key, price) in sizes {
                        let size = size_key.get_ref().as_str();
                        if !is_size(size) {
                            return Err(invalid(
                                format!(
                                    "image size `{size}` in images.{tier}.{quality} is not \
                                     WIDTHxHEIGHT, e.g. 1024x1024"
                                ),
                                line_of(src, &size_key.span()),
                            ));
                        }
                        let usd = check_price(
                            src,
                            model,
                            || format!("images.{tier}.{quality}.{size}"),
                            &price,
                        )?;
                        table.insert((quality.to_owned(), size.to_owned()), usd);
                    }
                }
                *prices.slot(tier) = Some(table);
            }
            let Some(standard) = &prices.standard else {
                return Err(missing("images.standard".into(), line));
            };
            let default_size = raw
                .default_size
                .ok_or_else(|| missing("default_size".into(), line))?;
            let default_quality = raw
                .default_quality
                .ok_or_else(|| missing("default_quality".into(), line))?;
            let has = |pred: &dyn Fn(&(String, String)) -> bool| standard.keys().any(pred);
            if !has(&|(_, s)| s == default_size.get_ref()) {
                return Err(invalid(
                    format!(
                        "default_size `{}` has no price in images.standard",
                        default_size.get_ref()
                    ),
                    line_of(src, &default_size.span()),
                ));
            }
            if !has(&|(q, _)| q == default_quality.get_ref()) {
                return Err(invalid(
                    format!(
                        "default_quality `{}` has no price in images.standard",
                        default_quality.get_ref()
                    ),
                    line_of(src, &default_quality.span()),
                ));
            }
            debug_assert!(!prices.is_empty());
            Some(ImagePrices {
                default_size: default_size.into_inner(),
                default_quality: default_quality.into_inner(),
                prices,
            })
        }
    };

    if tokens.is_none() && images.is_none() {
        return Err(invalid(
            "no prices: give `tokens` (per 1M tokens) or `images` (per image)".into(),
            line,
        ));
    }
    Ok(ModelEntry { tokens, images })
}

// ---------------------------------------------------------------------------------------------
// Calls and the tracker

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
        }
    }

    /// The same call, recorded as having fallen back from `from` (when it did).
    pub fn fell_back_from(mut self, from: Option<Tier>) -> Call {
        self.fallback_from = from;
        self
    }
}

/// A recorded call with what it cost and what it would have cost on the standard tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricedCall {
    /// The call.
    #[serde(flatten)]
    pub call: Call,
    /// USD at the prices of the tier that carried it.
    pub cost: f64,
    /// USD had the same usage been priced at the standard tier.
    pub standard_cost: f64,
    /// Why the call is not priced at its own tier's prices, when it is not: a tier the table
    /// has no price for the model on (priced at standard, an upper bound), or a model the
    /// table does not know (priced at zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpriced: Option<String>,
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
        self.calls.push(pricing.price_or_note(call));
        self.calls.last().expect("just pushed")
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

// ---------------------------------------------------------------------------------------------
// The report

/// Counts and costs over a set of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CostTotals {
    /// Calls (for renders: images).
    pub calls: u64,
    /// Input tokens, cached ones included.
    pub input_tokens: u64,
    /// Of which served from the prompt cache.
    pub cached_tokens: u64,
    /// Output tokens, reasoning tokens included.
    pub output_tokens: u64,
    /// USD actually paid.
    pub cost: f64,
    /// USD the same calls would have cost on the standard tier.
    pub standard_cost: f64,
    /// Calls not priced at their own tier's prices (see [`PricedCall::unpriced`]).
    #[serde(default)]
    pub unpriced: u64,
}

impl CostTotals {
    fn add_call(&mut self, c: &PricedCall) {
        let u = &c.call.usage;
        self.calls += 1;
        self.unpriced += u64::from(c.unpriced.is_some());
        self.input_tokens += u.input_tokens;
        self.cached_tokens += u.cached_tokens.unwrap_or(0).min(u.input_tokens);
        self.output_tokens += u.output_tokens;
        self.cost += c.cost;
        self.standard_cost += c.standard_cost;
    }

    /// USD saved against the all-standard cost (negative if the calls cost more).
    pub fn saving(&self) -> f64 {
        self.standard_cost - self.cost
    }

    /// The saving as a percentage of the all-standard cost; `None` when that is zero.
    pub fn saving_percent(&self) -> Option<f64> {
        (self.standard_cost > 0.0).then(|| 100.0 * self.saving() / self.standard_cost)
    }
}

impl AddAssign for CostTotals {
    fn add_assign(&mut self, rhs: CostTotals) {
        self.calls += rhs.calls;
        self.unpriced += rhs.unpriced;
        self.input_tokens += rhs.input_tokens;
        self.cached_tokens += rhs.cached_tokens;
        self.output_tokens += rhs.output_tokens;
        self.cost += rhs.cost;
        self.standard_cost += rhs.standard_cost;
    }
}

/// The totals of one operation on one tier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    /// The operation.
    pub operation: Operation,
    /// The tier that carried the calls.
    pub tier: Tier,
    /// The tier they were first sent to, when they fell back to `tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<Tier>,
    /// Their totals.
    #[serde(flatten)]
    pub totals: CostTotals,
}

/// What a session's calls cost, per (operation, tier), against the all-standard cost.
///
/// Its `Display` is an aligned plain-text table for the CLI: a row per operation and tier
/// (pipeline order, then price order) with calls, input, cached and output tokens, cost,
/// all-standard cost, saving and saving in percent, then the totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// One row per operation and tier (and tier fallen back from) that has calls.
    pub rows: Vec<CostRow>,
    /// The totals over every row.
    pub total: CostTotals,
    /// Why some calls are not priced at their tier's prices, each reason once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl CostReport {
    /// The report over `calls`.
    pub fn from_calls<'a>(calls: impl IntoIterator<Item = &'a PricedCall>) -> CostReport {
        let mut report = CostReport::default();
        for c in calls {
            let (op, tier, from) = (c.call.operation, c.call.tier, c.call.fallback_from);
            if let Some(note) = &c.unpriced
                && !report.notes.contains(note)
            {
                report.notes.push(note.clone());
            }
            let i = match report
                .rows
                .iter()
                .position(|r| r.operation == op && r.tier == tier && r.fallback_from == from)
            {
                Some(i) => i,
                None => {
                    report.rows.push(CostRow {
                        operation: op,
                        tier,
                        fallback_from: from,
                        totals: CostTotals::default(),
                    });
                    report.rows.len() - 1
                }
            };
            report.rows[i].totals.add_call(c);
            report.total.add_call(c);
        }
        report.rows.sort_by_key(|r| {
            let op = Operation::ALL.iter().position(|o| *o == r.operation);
            let tier = Tier::ALL.iter().position(|t| *t == r.tier);
            let from = r
                .fallback_from
                .map(|f| Tier::ALL.iter().position(|t| *t == f));
            (
                op.unwrap_or(usize::MAX),
                r.operation.as_str(),
                tier.unwrap_or(usize::MAX),
                r.tier.as_str(),
                from,
            )
        });
        report
    }

    /// The totals over the rows of calls carried by `tier`.
    pub fn tier_totals(&self, tier: Tier) -> CostTotals {
        self.sum(|r| r.tier == tier)
    }

    /// The totals over the rows of `operation`, whatever the tier.
    pub fn operation_totals(&self, operation: Operation) -> CostTotals {
        self.sum(|r| r.operation == operation)
    }

    fn sum(&self, keep: impl Fn(&CostRow) -> bool) -> CostTotals {
        let mut t = CostTotals::default();
        self.rows
            .iter()
            .filter(|r| keep(r))
            .for_each(|r| t += r.totals);
        t
    }
}

/// `1234567` -> `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn usd(v: f64) -> String {
    if v < 0.0 {
        format!("-${:.6}", -v)
    } else {
        format!("${v:.6}")
    }
}

fn cells(label: [&str; 2], t: &CostTotals) -> Vec<String> {
    vec![
        label[0].to_owned(),
        label[1].to_owned(),
        grouped(t.calls),
        grouped(t.input_tokens),
        grouped(t.cached_tokens),
        grouped(t.output_tokens),
        usd(t.cost),
        usd(t.standard_cost),
        usd(t.saving()),
        t.saving_percent()
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%")),
    ]
}

impl fmt::Display for CostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADER: [&str; 10] = [
            "operation",
            "tier",
            "calls",
            "input",
            "cached",
            "output",
            "cost",
            "standard",
            "saving",
            "saving %",
        ];
        let mut lines: Vec<Vec<String>> = vec![HEADER.iter().map(|h| (*h).to_owned()).collect()];
        for r in &self.rows {
            let tier = match r.fallback_from {
                Some(from) => format!("{}→{}", from.as_str(), r.tier.as_str()),
                None => r.tier.as_str().to_owned(),
            };
            lines.push(cells([r.operation.as_str(), &tier], &r.totals));
        }
        let total = cells(["total", ""], &self.total);
        let mut widths = [0usize; HEADER.len()];
        for line in lines.iter().chain(std::iter::once(&total)) {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let write_line = |f: &mut fmt::Formatter<'_>, line: &[String]| -> fmt::Result {
            let mut out = String::new();
            for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                if i < 2 {
                    out.push_str(&format!("{cell:<w$}"));
                } else {
                    out.push_str(&format!("{cell:>w$}"));
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        for line in &lines {
            write_line(f, line)?;
        }
        let rule = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        writeln!(f, "{}", "-".repeat(rule))?;
        write_line(f, &total)?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: Option<u64>, output: u64, reasoning: Option<u64>) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: input + output,
            cached_tokens: cached,
            reasoning_tokens: reasoning,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
    }

    #[track_caller]
    fn assert_close(actual: f64, expected: f64) {
        assert!(close(actual, expected), "{actual} != {expected}");
    }

    #[test]
    fn the_builtin_table_parses_and_covers_the_required_models() {
        let p = Pricing::builtin();
        for m in [
            "gpt-4o-mini",
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "o4-mini",
            "o3",
        ] {
            let standard = p.token_prices(m, Tier::Standard).unwrap();
            let batch = p.token_prices(m, Tier::Batch).unwrap();
            assert!(
                standard.input > 0.0 && standard.output > standard.input,
                "{m}"
            );
            assert!(standard.cached_input < standard.input, "{m}");
            // The Batch API is half price, on every token kind.
            assert_close(batch.input, standard.input / 2.0);
            assert_close(batch.cached_input, standard.cached_input / 2.0);
            assert_close(batch.output, standard.output / 2.0);
        }
        for m in ["gpt-image-1", "gpt-image-1-mini", "dall-e-3", "dall-e-2"] {
            let s = p.image_price(m, Tier::Standard, None, None).unwrap();
            let b = p.image_price(m, Tier::Batch, None, None).unwrap();
            assert_close(b, s / 2.0);
        }
    }

    /// Costs computed by hand: (model, tier, input, cached, output, USD).
    #[test]
    fn chat_costs_match_hand_computed_figures() {
        let p = Pricing::builtin();
        type Case = (&'static str, Tier, u64, Option<u64>, u64, f64);
        let cases: &[Case] = &[
            // 1M in at $0.15 + 1M out at $0.60
            (
                "gpt-4o-mini",
                Tier::Standard,
                1_000_000,
                None,
                1_000_000,
                0.75,
            ),
            (
                "gpt-4o-mini",
                Tier::Batch,
                1_000_000,
                None,
                1_000_000,
                0.375,
            ),
            // 2,000 in (500 cached) and 300 out on gpt-4o: 1500*2.5 + 500*1.25 + 300*10 per 1M
            ("gpt-4o", Tier::Standard, 2_000, Some(500), 300, 0.007_375),
            ("gpt-4o", Tier::Batch, 2_000, Some(500), 300, 0.003_687_5),
            // gpt-5 flex: 10,000 in (all cached: 0.0625) + 1,000 out (5.00)
            ("gpt-5", Tier::Flex, 10_000, Some(10_000), 1_000, 0.005_625),
            // gpt-4.1-nano: 100k in at $0.10 + 10k out at $0.40
            (
                "gpt-4.1-nano",
                Tier::Standard,
                100_000,
                Some(0),
                10_000,
                0.014,
            ),
            // o3 standard: 1,000 in, 4,000 out (reasoning included) at $2 / $8
            ("o3", Tier::Standard, 1_000, None, 4_000, 0.034),
            // o4-mini flex: 1M cached at $0.1375
            ("o4-mini", Tier::Flex, 1_000_000, Some(1_000_000), 0, 0.1375),
            ("gpt-5-nano", Tier::Batch, 1_000_000, None, 1_000_000, 0.225),
        ];
        for &(model, tier, input, cached, output, expected) in cases {
            let cost = p
                .chat_cost(model, tier, &usage(input, cached, output, None))
                .unwrap();
            assert!(
                close(cost, expected),
                "{model} {tier}: {cost} != {expected}"
            );
        }
    }

    #[test]
    fn batch_is_half_of_standard_and_cached_tokens_are_cheaper() {
        let p = Pricing::builtin();
        let u = usage(12_345, Some(4_096), 678, Some(300));
        for m in p.models().filter(|m| !m.starts_with("dall-e")) {
            let s = p.chat_cost(m, Tier::Standard, &u).unwrap();
            let b = p.chat_cost(m, Tier::Batch, &u).unwrap();
            assert_close(b, s / 2.0);
        }
        let uncached = p
            .chat_cost("gpt-4.1", Tier::Standard, &usage(10_000, None, 0, None))
            .unwrap();
        let cached = p
            .chat_cost(
                "gpt-4.1",
                Tier::Standard,
                &usage(10_000, Some(8_000), 0, None),
            )
            .unwrap();
        assert_close(uncached, 0.02);
        assert_close(cached, (2_000.0 * 2.0 + 8_000.0 * 0.5) / 1e6);
        // More cached tokens than input tokens cannot make the call cheaper than all cached.
        let odd = p
            .chat_cost("gpt-4.1", Tier::Standard, &usage(100, Some(500), 0, None))
            .unwrap();
        assert_close(odd, 100.0 * 0.5 / 1e6);
        // Reasoning tokens are part of the output tokens, not added to them.
        let r = p
            .chat_cost("o3", Tier::Standard, &usage(0, None, 1_000, Some(800)))
            .unwrap();
        assert_close(r, 0.008);
    }

    #[test]
    fn snapshots_resolve_to_their_model() {
        let p = Pricing::builtin();
        assert_eq!(p.resolve("gpt-4o-mini-2024-07-18").unwrap(), "gpt-4o-mini");
        assert_eq!(p.resolve("gpt-4o-2024-08-06").unwrap(), "gpt-4o");
        assert_eq!(
            p.resolve("gpt-4.1-mini-2025-04-14").unwrap(),
            "gpt-4.1-mini"
        );
        assert_eq!(p.resolve("gpt-5-2025-08-07").unwrap(), "gpt-5");
        assert_eq!(p.resolve("o3-2025-04-16").unwrap(), "o3");
        assert_eq!(p.resolve("gpt-image-1-mini").unwrap(), "gpt-image-1-mini");
        assert_eq!(p.resolve("gpt-4o-0613").unwrap(), "gpt-4o");
        let u = usage(1_000, None, 1_000, None);
        assert_eq!(
            p.chat_cost("gpt-4o-mini-2024-07-18", Tier::Batch, &u)
                .unwrap(),
            p.chat_cost("gpt-4o-mini", Tier::Batch, &u).unwrap()
        );
        // Not a date: not a snapshot.
        for m in [
            "gpt-4o-audio-preview",
            "gpt-4o-mini-tts",
            "gpt-5-pro",
            "gpt-5.1",
            "o3-mini",
            "gpt-4o-2024-8-6",
            "gpt-4o-",
            "ft:gpt-4o-mini-2024-07-18:org::abc",
        ] {
            assert!(
                matches!(p.resolve(m), Err(PricingError::UnknownModel { .. })),
                "{m}"
            );
        }
        // An entry of a snapshot's own wins over its model's.
        let own = Pricing::builtin().with_overrides(
            Pricing::from_toml_str(
                r#"[models."gpt-4o-2024-05-13".tokens]
                   standard = { input = 5.0, cached_input = 5.0, output = 15.0 }"#,
            )
            .unwrap(),
        );
        assert_eq!(
            own.resolve("gpt-4o-2024-05-13").unwrap(),
            "gpt-4o-2024-05-13"
        );
        assert_eq!(own.resolve("gpt-4o-2024-08-06").unwrap(), "gpt-4o");
    }

    #[test]
    fn pricing_errors_name_the_model_and_the_tier() {
        let p = Pricing::builtin();
        let u = usage(10, None, 10, None);
        let e = p.chat_cost("gpt-9", Tier::Standard, &u).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`gpt-9`") && msg.contains("gpt-4o-mini"),
            "{msg}"
        );

        let e = p.chat_cost("gpt-4o-mini", Tier::Flex, &u).unwrap_err();
        assert!(matches!(
            e,
            PricingError::TierNotOffered {
                tier: Tier::Flex,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "model `gpt-4o-mini` is not offered on the flex tier (the price table has no flex \
             price for it)"
        );
        assert!(p.chat_cost("gpt-5-mini", Tier::Flex, &u).is_ok());

        let e = p.chat_cost("gpt-4o", Tier::Simulated, &u).unwrap_err();
        assert!(matches!(
            e,
            PricingError::TierNotPriced {
                tier: Tier::Simulated
            }
        ));
        assert!(e.to_string().contains("simulated"), "{e}");

        let e = p.chat_cost("dall-e-3", Tier::Standard, &u).unwrap_err();
        assert!(matches!(e, PricingError::NotTokenPriced { .. }), "{e}");
        let e = p
            .image_cost("gpt-4o", Tier::Standard, None, None, &Usage::default())
            .unwrap_err();
        assert!(matches!(e, PricingError::NotImagePriced { .. }), "{e}");
        let e = p
            .image_cost("dall-e-3", Tier::Flex, None, None, &Usage::default())
            .unwrap_err();
        assert!(matches!(e, PricingError::TierNotOffered { .. }), "{e}");
        let e = p
            .image_cost("dall-e-2", Tier::Standard, Some("2048x2048"), None, &u)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("standard 2048x2048") && msg.contains("standard 256x256"),
            "{msg}"
        );
    }

    #[test]
    fn images_are_priced_per_image_or_by_their_tokens() {
        let p = Pricing::builtin();
        let none = Usage::default();
        // DALL·E: per image only, usage ignored.
        let d3 = |tier, size, quality| {
            p.image_cost("dall-e-3", tier, size, quality, &usage(50, None, 0, None))
                .unwrap()
        };
        assert_close(d3(Tier::Standard, None, None), 0.04);
        assert_close(d3(Tier::Standard, Some("1792x1024"), Some("hd")), 0.12);
        assert_close(d3(Tier::Batch, Some("1024x1792"), Some("standard")), 0.04);
        assert_close(d3(Tier::Standard, Some("auto"), Some("AUTO")), 0.04);
        assert_close(
            p.image_cost("dall-e-2", Tier::Batch, Some("512x512"), None, &none)
                .unwrap(),
            0.009,
        );
        // gpt-image-1 with no usage: the per-image table; `auto` is the table's default (high).
        let g = |tier, size, quality, u: &Usage| {
            p.image_cost("gpt-image-1", tier, size, quality, u).unwrap()
        };
        assert_close(
            g(Tier::Standard, Some("1024x1024"), Some("low"), &none),
            0.011,
        );
        assert_close(
            g(Tier::Standard, Some("1536x1024"), Some("medium"), &none),
            0.063,
        );
        assert_close(g(Tier::Standard, None, Some("auto"), &none), 0.167);
        assert_close(
            g(Tier::Batch, Some("1024x1536"), Some("high"), &none),
            0.125,
        );
        // gpt-image-1 with usage: the tokens are the bill. 100 prompt tokens at $5 and 4,160
        // image tokens (high, square) at $40 per 1M.
        let billed = usage(100, None, 4_160, None);
        assert_close(
            g(Tier::Standard, Some("1024x1024"), Some("high"), &billed),
            (100.0 * 5.0 + 4_160.0 * 40.0) / 1e6,
        );
        assert_close(
            g(Tier::Batch, Some("1024x1024"), Some("high"), &billed),
            (100.0 * 2.5 + 4_160.0 * 20.0) / 1e6,
        );
        // Prompt tokens but no output tokens: the per-image price plus the prompt.
        assert_close(
            g(
                Tier::Standard,
                Some("1024x1024"),
                Some("low"),
                &usage(1_000, None, 0, None),
            ),
            0.011 + 1_000.0 * 5.0 / 1e6,
        );
        assert_close(
            p.image_cost(
                "gpt-image-1-mini",
                Tier::Standard,
                None,
                Some("medium"),
                &none,
            )
            .unwrap(),
            0.011,
        );
        // A dated snapshot of an image model is priced as the model.
        assert_close(
            p.image_cost(
                "gpt-image-1-2025-04-23",
                Tier::Standard,
                None,
                Some("low"),
                &none,
            )
            .unwrap(),
            0.011,
        );
    }

    #[test]
    fn user_files_override_whole_models_and_keep_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(
            &path,
            "# cheaper, and flex now\n\
             [models.\"gpt-4o-mini\".tokens]\n\
             standard = { input = 0.10, cached_input = 0.05, output = 0.40 }\n\
             flex = { input = 0.05, cached_input = 0.025, output = 0.20 }\n\
             [models.\"my-model\".tokens]\n\
             standard = { input = 1, cached_input = 1, output = 2 }\n",
        )
        .unwrap();
        let p = Pricing::load(&path).unwrap();
        let u = usage(1_000_000, None, 0, None);
        assert_close(
            p.chat_cost("gpt-4o-mini", Tier::Standard, &u).unwrap(),
            0.10,
        );
        assert_close(p.chat_cost("gpt-4o-mini", Tier::Flex, &u).unwrap(), 0.05);
        // The entry is replaced whole: the file gives no batch price.
        assert!(matches!(
            p.chat_cost("gpt-4o-mini", Tier::Batch, &u),
            Err(PricingError::TierNotOffered { .. })
        ));
        assert_close(
            p.chat_cost("my-model-2026-01-01", Tier::Standard, &u)
                .unwrap(),
            1.0,
        );
        assert_close(p.chat_cost("gpt-4o", Tier::Standard, &u).unwrap(), 2.5);

        let missing = dir.path().join("nope.toml");
        let e = Pricing::load(&missing).unwrap_err();
        assert!(matches!(e, PricingError::Read { .. }));
        assert!(e.to_string().contains("nope.toml"), "{e}");

        std::fs::write(
            &path,
            "[models.x.tokens]\nstandard = { input = -1, cached_input = 0, output = 0 }\n",
        )
        .unwrap();
        let e = Pricing::load(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("prices.toml") && msg.contains("line 2"),
            "{msg}"
        );
    }

    /// Bad tables: (TOML, what the message must contain).
    #[test]
    fn bad_tables_are_refused_with_the_line_model_and_field() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[models.m.tokens]\nstandard = { input = 1, cached_input = 0.5, output = -2 }\n",
                &["line 2", "`m`", "tokens.standard.output", "-2"],
            ),
            (
                "[models.m.tokens]\nstandard = { input = 1, output = 2 }\n",
                &["line 2", "`m`", "missing `tokens.standard.cached_input`"],
            ),
            (
                "[models.m.tokens]\nstandard = { input = 1, cached_input = 1, output = 2 }\n\
                 priority = { input = 2, cached_input = 2, output = 4 }\n",
                &["line 3", "`m`", "unknown tier `priority`"],
            ),
            (
                "[models.m.tokens]\nbatch = { input = 1, cached_input = 1, output = 2 }\n",
                &["line 1", "`m`", "missing `tokens.standard`"],
            ),
            (
                "[models.m.tokens]\nstandard = { input = nan, cached_input = 1, output = 2 }\n",
                &["line 2", "tokens.standard.input", "NaN"],
            ),
            (
                "[models.m.tokens]\nstandard = { input = 1, cached_input = 1, output = 2, extra = 3 }\n",
                &["line 2", "unknown field `extra`"],
            ),
            (
                "[models.m.tokens]\nstandard = { input = \"cheap\", cached_input = 1, output = 2 }\n",
                &["line 2", "invalid type"],
            ),
            ("[models.m]\n", &["line 1", "`m`", "no prices"]),
            ("models = 3\n", &["line 1", "invalid type"]),
            ("[models.m.tokens\n", &["line 1"]),
            (
                "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
                 [models.img.images.standard]\nultra = { \"1024x1024\" = 1 }\n",
                &["line 5", "`img`", "unknown image quality `ultra`"],
            ),
            (
                "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
                 [models.img.images.standard]\nlow = { \"big\" = 1 }\n",
                &["line 5", "image size `big`"],
            ),
            (
                "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
                 [models.img.images.standard]\nlow = { \"1024x1024\" = -0.5 }\n",
                &["line 5", "images.standard.low.1024x1024", "-0.5"],
            ),
            (
                "[models.img]\ndefault_quality = \"low\"\n\
                 [models.img.images.standard]\nlow = { \"1024x1024\" = 1 }\n",
                &["line 1", "`img`", "missing `default_size`"],
            ),
            (
                "[models.img]\ndefault_size = \"512x512\"\ndefault_quality = \"low\"\n\
                 [models.img.images.standard]\nlow = { \"1024x1024\" = 1 }\n",
                &["line 2", "default_size `512x512` has no price"],
            ),
            (
                "[models.img]\ndefault_size = \"1024x1024\"\ndefault_quality = \"low\"\n\
                 [models.img.images.flex]\nlow = { \"1024x1024\" = 1 }\n",
                &["line 1", "missing `images.standard`"],
            ),
            (
                "[models.img]\ndefault_size = \"1024x1024\"\n\
                 [models.img.tokens]\nstandard = { input = 1, cached_input = 1, output = 2 }\n",
                &["line 2", "need image prices"],
            ),
        ];
        for (toml, needles) in cases {
            let e = Pricing::from_toml_str(toml).unwrap_err();
            let msg = e.to_string();
            for needle in *needles {
                assert!(msg.contains(needle), "{toml:?}: {msg:?} lacks {needle:?}");
            }
        }
        // Integers are prices too, and an empty file is an empty table.
        let p = Pricing::from_toml_str(
            "[models.m.tokens]\nstandard = { input = 1, cached_input = 0, output = 2 }\n",
        )
        .unwrap();
        assert_eq!(p.models().collect::<Vec<_>>(), ["m"]);
        assert_eq!(Pricing::from_toml_str("").unwrap().models().count(), 0);
    }

    fn session() -> (Pricing, CostTracker) {
        let p = Pricing::builtin();
        let mut t = CostTracker::new();
        let m = "gpt-4o-mini-2024-07-18";
        for _ in 0..3 {
            t.record(
                &p,
                Call::chat(
                    Operation::Expand,
                    Tier::Batch,
                    m,
                    usage(1_000, None, 500, None),
                ),
            );
        }
        t.record(
            &p,
            Call::chat(
                Operation::Critique,
                Tier::Standard,
                m,
                usage(2_000, Some(1_000), 100, None),
            ),
        );
        for _ in 0..2 {
            t.record(
                &p,
                Call::render(
                    Tier::Batch,
                    "gpt-image-1",
                    usage(100, None, 272, None),
                    Some("1024x1024".into()),
                    Some("low".into()),
                ),
            );
        }
        t.record(
            &p,
            Call::chat(
                Operation::Judge,
                Tier::Flex,
                "gpt-5-mini",
                usage(10_000, None, 2_000, Some(1_500)),
            ),
        );
        (p, t)
    }

    #[test]
    fn the_tracker_prices_each_call_and_the_report_adds_up() {
        let (p, mut t) = session();
        assert_eq!(t.len(), 7);
        let expand = (1_000.0 * 0.075 + 500.0 * 0.30) / 1e6;
        let critique = (1_000.0 * 0.15 + 1_000.0 * 0.075 + 100.0 * 0.60) / 1e6;
        let render = (100.0 * 2.5 + 272.0 * 20.0) / 1e6;
        let judge = (10_000.0 * 0.125 + 2_000.0 * 1.0) / 1e6;
        assert_close(t.calls()[0].cost, expand);
        assert_close(t.calls()[0].standard_cost, 2.0 * expand);
        assert_close(t.calls()[3].cost, critique);
        assert_close(t.calls()[3].standard_cost, critique);
        assert_close(t.calls()[4].cost, render);
        assert_close(t.calls()[6].standard_cost, 2.0 * judge);

        let r = t.report();
        let keys: Vec<_> = r.rows.iter().map(|r| (r.operation, r.tier)).collect();
        assert_eq!(
            keys,
            [
                (Operation::Expand, Tier::Batch),
                (Operation::Critique, Tier::Standard),
                (Operation::Render, Tier::Batch),
                (Operation::Judge, Tier::Flex),
            ]
        );
        let total_cost = 3.0 * expand + critique + 2.0 * render + judge;
        assert_close(r.total.cost, total_cost);
        assert_close(
            r.total.standard_cost,
            6.0 * expand + critique + 4.0 * render + 2.0 * judge,
        );
        assert_eq!(r.total.calls, 7);
        assert_eq!(r.total.input_tokens, 3_000 + 2_000 + 200 + 10_000);
        assert_eq!(r.total.cached_tokens, 1_000);
        assert_eq!(r.total.output_tokens, 1_500 + 100 + 544 + 2_000);
        let summed = r.rows.iter().fold(CostTotals::default(), |mut a, row| {
            a += row.totals;
            a
        });
        assert_eq!(summed.calls, r.total.calls);
        assert_close(summed.cost, r.total.cost);
        assert_eq!(r.total, t.totals());

        // The proof's claim: calls carried by batch cost at most half their all-standard cost.
        let batch = r.tier_totals(Tier::Batch);
        assert_eq!(batch, t.tier_totals(Tier::Batch));
        assert_eq!(batch.calls, 5);
        assert_close(batch.cost, 3.0 * expand + 2.0 * render);
        assert!(batch.cost <= 0.5 * batch.standard_cost + 1e-12);
        assert_close(batch.saving_percent().unwrap(), 50.0);
        let standard = r.tier_totals(Tier::Standard);
        assert_close(standard.saving(), 0.0);
        assert_eq!(r.operation_totals(Operation::Render).calls, 2);
        assert_eq!(r.tier_totals(Tier::Simulated), CostTotals::default());
        assert_eq!(CostTotals::default().saving_percent(), None);

        // A call the table has no price for on its tier is still counted: at the standard
        // price, with the reason; one whose model it does not know is counted at $0.
        let flex = usage(1_000, None, 100, None);
        let std_cost = p.chat_cost("gpt-4o", Tier::Standard, &flex).unwrap();
        let off = t.record(
            &p,
            Call::chat(Operation::Refine, Tier::Flex, "gpt-4o", flex),
        );
        assert_close(off.cost, std_cost);
        assert!(
            off.unpriced
                .as_deref()
                .unwrap()
                .contains("not offered on the flex tier")
        );
        let unknown =
            Call::chat(Operation::Refine, Tier::Batch, "my-model", flex).fell_back_from(None);
        assert_eq!(t.record(&p, unknown).cost, 0.0);
        assert_eq!(t.len(), 9);
        let r = t.report();
        assert_eq!((r.total.calls, r.total.unpriced), (9, 2));
        assert_close(r.total.cost, total_cost + std_cost);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        let text = r.to_string();
        assert!(
            text.contains("note: model `gpt-4o` is not offered on the flex tier"),
            "{text}"
        );
        assert!(text.contains("no price for model `my-model`"), "{text}");
    }

    #[test]
    fn the_tracker_round_trips_through_json() {
        let (_, t) = session();
        let json = serde_json::to_string(&t).unwrap();
        let back: CostTracker = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        let first = &serde_json::to_value(&t).unwrap()["calls"][0];
        assert_eq!(first["operation"], "expand");
        assert_eq!(first["tier"], "batch");
        assert_eq!(first["model"], "gpt-4o-mini-2024-07-18");
        assert_eq!(first["usage"]["input_tokens"], 1_000);
        assert!(first.get("image").is_none());
        let render = &serde_json::to_value(&t).unwrap()["calls"][4];
        assert_eq!(render["image"]["quality"], "low");
        // Older or hand-written records may omit the optional usage fields.
        let minimal = r#"{"calls":[{"operation":"judge","tier":"standard","model":"gpt-4o",
            "usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3},
            "cost":0.5,"standard_cost":0.5}]}"#;
        let t: CostTracker = serde_json::from_str(minimal).unwrap();
        assert_eq!(t.calls()[0].call.usage.cached_tokens, None);
        let report = serde_json::to_value(t.report()).unwrap();
        assert_eq!(report["rows"][0]["calls"], 1);
        assert_eq!(report["rows"][0]["operation"], "judge");
        let back: CostReport = serde_json::from_value(report).unwrap();
        assert_eq!(back, t.report());
    }

    #[test]
    fn the_report_displays_as_an_aligned_table() {
        let (_, t) = session();
        let text = t.report().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 4 + 2, "{text}");
        assert!(lines[0].starts_with("operation  tier"), "{text}");
        assert!(lines[0].ends_with("saving %"), "{text}");
        assert!(lines[1].starts_with("expand     batch"), "{text}");
        assert!(lines[1].ends_with("50.0%"), "{text}");
        assert!(lines[2].starts_with("critique   standard"), "{text}");
        assert!(lines[2].ends_with("0.0%"), "{text}");
        assert!(lines[5].chars().all(|c| c == '-'), "{text}");
        assert!(lines[6].starts_with("total"), "{text}");
        assert!(lines[6].contains("15,200"), "{text}");
        // Right-aligned numeric columns: every row is as wide as the rule.
        let width = lines[5].len();
        for line in lines.iter().filter(|l| !l.starts_with('-')) {
            assert_eq!(line.len(), width, "{line:?} in\n{text}");
            assert_eq!(*line, line.trim_end());
        }
        assert!(text.contains(&format!("${:.6}", t.totals().cost)), "{text}");

        let empty = CostTracker::new().report().to_string();
        assert_eq!(empty.lines().count(), 3, "{empty}");
        assert!(empty.lines().last().unwrap().ends_with('-'), "{empty}");
    }

    #[test]
    fn numbers_are_grouped_and_dollars_signed() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(usd(0.5), "$0.500000");
        assert_eq!(usd(-0.25), "-$0.250000");
        assert!(is_snapshot_suffix("-2024-07-18"));
        assert!(is_snapshot_suffix("-0613"));
        assert!(!is_snapshot_suffix("-mini"));
        assert!(!is_snapshot_suffix("2024-07-18"));
        assert!(is_size("1024x1536") && !is_size("1024x") && !is_size("x1") && !is_size("1x2x3"));
    }
}
