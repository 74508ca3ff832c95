//! The price table: per model, token prices per tier and prices per image, and the lookups
//! that price a call from it.

use std::collections::BTreeMap;
use std::path::Path;

use batch_format::Usage;
use providers::{Operation, Tier};
use serde::{Deserialize, Serialize};

use super::{BUILTIN, Call, PricedCall, PricingError};

pub(super) mod parse;

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
/// stands in for. Its methods fail with the crate's [`Error::Pricing`](crate::Error::Pricing),
/// whose [`PricingError`] names the model, tier, line or field.
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

    /// The built-in table overlaid with the file at `path`: every model the file names
    /// replaces the built-in entry for it (all its tiers), the others stay. This is the one
    /// function here that does I/O. Fails with [`Error::Pricing`](crate::Error::Pricing).
    pub fn load(path: impl AsRef<Path>) -> crate::Result<Pricing> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = Pricing::parse_toml(&text).map_err(|e| PricingError::InFile {
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
    pub fn resolve(&self, model: &str) -> crate::Result<&str> {
        Ok(self.find_model(model)?)
    }

    fn find_model(&self, model: &str) -> Result<&str, PricingError> {
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
        let name = self.find_model(model)?;
        Ok((name, &self.models[name]))
    }

    /// `model`'s token prices on `tier`.
    pub fn token_prices(&self, model: &str, tier: Tier) -> crate::Result<TokenPrices> {
        Ok(self.find_token_prices(model, tier)?)
    }

    fn find_token_prices(&self, model: &str, tier: Tier) -> Result<TokenPrices, PricingError> {
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
    ) -> crate::Result<f64> {
        Ok(self.find_image_price(model, tier, size, quality)?)
    }

    fn find_image_price(
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
    pub fn chat_cost(&self, model: &str, tier: Tier, usage: &Usage) -> crate::Result<f64> {
        Ok(self.chat_cost_of(model, tier, usage)?)
    }

    fn chat_cost_of(&self, model: &str, tier: Tier, usage: &Usage) -> Result<f64, PricingError> {
        Ok(self.find_token_prices(model, tier)?.cost(usage))
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
    ) -> crate::Result<f64> {
        Ok(self.image_cost_of(model, tier, size, quality, usage)?)
    }

    fn image_cost_of(
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
        let per_image = self.find_image_price(name, tier, size, quality)?;
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
    pub fn call_cost(&self, call: &Call, tier: Tier) -> crate::Result<f64> {
        Ok(self.call_cost_of(call, tier)?)
    }

    fn call_cost_of(&self, call: &Call, tier: Tier) -> Result<f64, PricingError> {
        match &call.image {
            Some(image) => self.image_cost_of(
                &call.model,
                tier,
                image.size.as_deref(),
                image.quality.as_deref(),
                &call.usage,
            ),
            None => self.chat_cost_of(&call.model, tier, &call.usage),
        }
    }

    /// What OpenAI's prompt cache saved on `call` priced at `cost` on `tier`: the same call
    /// without cached input tokens, less `cost`. `None` when no input token was cached.
    fn prompt_cache_saved(
        &self,
        call: &Call,
        tier: Tier,
        cost: f64,
    ) -> Result<Option<f64>, PricingError> {
        if call.usage.cached_tokens.unwrap_or(0) == 0 {
            return Ok(None);
        }
        let mut uncached = call.clone();
        uncached.usage.cached_tokens = None;
        Ok(Some(self.call_cost_of(&uncached, tier)? - cost))
    }

    /// `call` with its actual cost (on `call.tier`; $0 when the request cache answered it,
    /// the cost on its tier then in [`PricedCall::cache_saved`]) and its all-standard cost.
    pub fn price(&self, call: Call) -> crate::Result<PricedCall> {
        Ok(self.price_of(call)?)
    }

    fn price_of(&self, call: Call) -> Result<PricedCall, PricingError> {
        let cost = self.call_cost_of(&call, call.tier)?;
        let standard_cost = self.call_cost_of(&call, Tier::Standard)?;
        let prompt_cache_saved = self.prompt_cache_saved(&call, call.tier, cost)?;
        Ok(PricedCall {
            call,
            cost,
            cache_saved: None,
            prompt_cache_saved,
            standard_cost,
            unpriced: None,
        }
        .settled())
    }

    /// `call` priced as well as the table allows: on its own tier ([`Pricing::price`]); when
    /// the table has no price for the model on that tier, at the standard price (an upper
    /// bound) and saying so; when it cannot price the model at all, at zero and saying so.
    /// Every call that was sent is counted, whatever the table knows.
    pub fn price_or_note(&self, call: Call) -> PricedCall {
        let problem = match self.price_of(call.clone()) {
            Ok(priced) => return priced,
            Err(e) => e,
        };
        match self.call_cost_of(&call, Tier::Standard) {
            Ok(standard) => PricedCall {
                prompt_cache_saved: self
                    .prompt_cache_saved(&call, Tier::Standard, standard)
                    .unwrap_or(None),
                call,
                cost: standard,
                cache_saved: None,
                standard_cost: standard,
                unpriced: Some(format!("{problem}: priced at standard")),
            }
            .settled(),
            Err(e) => PricedCall {
                call,
                cost: 0.0,
                cache_saved: None,
                prompt_cache_saved: None,
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
            self.find_image_price(model, tier, None, None).map(|_| ())
        } else {
            self.find_token_prices(model, tier).map(|_| ())
        };
        !matches!(
            priced,
            Err(PricingError::TierNotOffered { .. } | PricingError::TierNotPriced { .. })
        )
    }
}

/// `-YYYY-MM-DD` or `-MMDD`: the date OpenAI appends to a snapshot's id.
pub(super) fn is_snapshot_suffix(rest: &str) -> bool {
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
