//! The price file's TOML, as read (with the spans of its keys), then checked into the table:
//! every error names the line, the model and the field.

use std::collections::BTreeMap;
use std::ops::Range;

use providers::Tier;
use serde::Deserialize;
use toml::Spanned;

use super::super::QUALITIES;
use super::{ImagePrices, ModelEntry, Pricing, PricingError, Tiered, TokenPrices};

impl Pricing {
    /// Parses a price table (the format of `pricing.toml`; see `docs/cost.md`). The result
    /// holds only the models `toml` names; combine it with [`Pricing::with_overrides`].
    ///
    /// Errors name the line and, past the TOML syntax, the model and field: an unknown tier,
    /// a missing field, a negative or non-finite price, an unknown image quality
    /// ([`Error::Pricing`](crate::Error::Pricing), its [`PricingError`] saying which).
    pub fn from_toml_str(toml: &str) -> crate::Result<Pricing> {
        Ok(Pricing::parse_toml(toml)?)
    }

    /// [`Pricing::from_toml_str`], its error as found.
    pub(in crate::cost) fn parse_toml(toml: &str) -> Result<Pricing, PricingError> {
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

pub(in crate::cost) fn is_size(size: &str) -> bool {
    let mut parts = size.split('x');
    let dim = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    dim(parts.next()) && dim(parts.next()) && parts.next().is_none()
}

/// One `[models."<id>"]` being checked: where its errors point.
struct At<'a> {
    src: &'a str,
    model: &'a str,
    /// The line of its table.
    line: usize,
}

impl At<'_> {
    fn invalid(&self, problem: String, line: usize) -> PricingError {
        PricingError::InvalidEntry {
            model: self.model.to_owned(),
            problem,
            line,
        }
    }

    fn missing(&self, field: String, line: usize) -> PricingError {
        PricingError::MissingField {
            model: self.model.to_owned(),
            field,
            line,
        }
    }
}

fn convert_model(
    src: &str,
    model: &str,
    line: usize,
    raw: RawModel,
) -> Result<ModelEntry, PricingError> {
    let at = At { src, model, line };
    if model.trim().is_empty() {
        return Err(at.invalid("a model needs a non-empty name".into(), line));
    }
    let tokens = match raw.tokens {
        None => None,
        Some(raw_tiers) => Some(convert_tokens(&at, raw_tiers)?),
    };
    let images = match raw.images {
        None => {
            if let Some(key) = raw.default_size.as_ref().or(raw.default_quality.as_ref()) {
                return Err(at.invalid(
                    "default_size and default_quality need image prices (`images`)".into(),
                    line_of(src, &key.span()),
                ));
            }
            None
        }
        Some(raw_tiers) => Some(convert_images(
            &at,
            raw_tiers,
            raw.default_size,
            raw.default_quality,
        )?),
    };
    if tokens.is_none() && images.is_none() {
        return Err(at.invalid(
            "no prices: give `tokens` (per 1M tokens) or `images` (per image)".into(),
            line,
        ));
    }
    Ok(ModelEntry { tokens, images })
}

/// `tokens.<tier>`: every tier's three prices, standard required.
fn convert_tokens(
    at: &At<'_>,
    raw_tiers: BTreeMap<Spanned<String>, Spanned<RawTokens>>,
) -> Result<Tiered<TokenPrices>, PricingError> {
    let (src, model) = (at.src, at.model);
    let mut tiers = Tiered::default();
    for (key, prices) in raw_tiers {
        let tier = parse_tier(src, model, &key)?;
        let table_line = line_of(src, &prices.span());
        let prices = prices.into_inner();
        let field = |name: &'static str, value: Option<Spanned<f64>>| match value {
            Some(v) => check_price(src, model, || format!("tokens.{tier}.{name}"), &v),
            None => Err(at.missing(format!("tokens.{tier}.{name}"), table_line)),
        };
        *tiers.slot(tier) = Some(TokenPrices {
            input: field("input", prices.input)?,
            cached_input: field("cached_input", prices.cached_input)?,
            output: field("output", prices.output)?,
        });
    }
    if tiers.standard.is_none() {
        return Err(at.missing("tokens.standard".into(), at.line));
    }
    Ok(tiers)
}

/// `images.<tier>.<quality>.<size>`, standard required, with the defaults it must price.
fn convert_images(
    at: &At<'_>,
    raw_tiers: BTreeMap<Spanned<String>, RawQualities>,
    default_size: Option<Spanned<String>>,
    default_quality: Option<Spanned<String>>,
) -> Result<ImagePrices, PricingError> {
    let mut prices: Tiered<BTreeMap<(String, String), f64>> = Tiered::default();
    for (key, qualities) in raw_tiers {
        let tier = parse_tier(at.src, at.model, &key)?;
        *prices.slot(tier) = Some(convert_qualities(at, tier, qualities)?);
    }
    let Some(standard) = &prices.standard else {
        return Err(at.missing("images.standard".into(), at.line));
    };
    let default_size = default_size.ok_or_else(|| at.missing("default_size".into(), at.line))?;
    let default_quality =
        default_quality.ok_or_else(|| at.missing("default_quality".into(), at.line))?;
    let has = |pred: &dyn Fn(&(String, String)) -> bool| standard.keys().any(pred);
    if !has(&|(_, s)| s == default_size.get_ref()) {
        return Err(at.invalid(
            format!(
                "default_size `{}` has no price in images.standard",
                default_size.get_ref()
            ),
            line_of(at.src, &default_size.span()),
        ));
    }
    if !has(&|(q, _)| q == default_quality.get_ref()) {
        return Err(at.invalid(
            format!(
                "default_quality `{}` has no price in images.standard",
                default_quality.get_ref()
            ),
            line_of(at.src, &default_quality.span()),
        ));
    }
    debug_assert!(!prices.is_empty());
    Ok(ImagePrices {
        default_size: default_size.into_inner(),
        default_quality: default_quality.into_inner(),
        prices,
    })
}

/// One tier's `quality -> size -> USD`, every quality and size checked.
fn convert_qualities(
    at: &At<'_>,
    tier: Tier,
    qualities: RawQualities,
) -> Result<BTreeMap<(String, String), f64>, PricingError> {
    let mut table = BTreeMap::new();
    for (quality_key, sizes) in qualities {
        let quality = quality_key.get_ref().as_str();
        if !QUALITIES.contains(&quality) {
            return Err(at.invalid(
                format!(
                    "unknown image quality `{quality}` in images.{tier} (expected {})",
                    QUALITIES.join(", ")
                ),
                line_of(at.src, &quality_key.span()),
            ));
        }
        for (size_key, price) in sizes {
            let size = size_key.get_ref().as_str();
            if !is_size(size) {
                return Err(at.invalid(
                    format!(
                        "image size `{size}` in images.{tier}.{quality} is not \
                         WIDTHxHEIGHT, e.g. 1024x1024"
                    ),
                    line_of(at.src, &size_key.span()),
                ));
            }
            let field = || format!("images.{tier}.{quality}.{size}");
            let usd = check_price(at.src, at.model, field, &price)?;
            table.insert((quality.to_owned(), size.to_owned()), usd);
        }
    }
    Ok(table)
}
