//! Why a price table could not be read, or a call could not be priced.

use std::path::PathBuf;

use providers::Tier;

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
