//! `Usage`: the token usage of one response under either naming, read in place by the
//! scanner when it is plain, else by serde.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::field::Field;
use crate::scan::{Nested, Scan, Scanner};

/// Token usage of one response, under either naming: chat and embeddings say
/// `prompt_tokens`/`completion_tokens`, responses and images say `input_tokens`/`output_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// `input_tokens` or `prompt_tokens`.
    pub input_tokens: u64,
    /// `output_tokens` or `completion_tokens` (0 for embeddings).
    pub output_tokens: u64,
    /// `total_tokens`, or input + output when absent.
    pub total_tokens: u64,
    /// `input_tokens_details.cached_tokens` or `prompt_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
    /// `output_tokens_details.reasoning_tokens` or
    /// `completion_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
        self.total_tokens += rhs.total_tokens;
        self.cached_tokens = add(self.cached_tokens, rhs.cached_tokens);
        self.reasoning_tokens = add(self.reasoning_tokens, rhs.reasoning_tokens);
    }
}

/// `usage`, field by field, as serde reads it.
#[derive(Default, Deserialize)]
pub(super) struct RawUsage {
    input_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    output_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
    prompt_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
}

#[derive(Default, Deserialize)]
pub(super) struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

/// A `usage` object, under either naming; `None` when it is not a readable object.
pub(super) fn read_usage(usage: &str) -> Option<Usage> {
    if !usage.starts_with('{') {
        return None;
    }
    serde_json::from_str::<RawUsage>(usage)
        .ok()
        .map(RawUsage::into_usage)
}

impl RawUsage {
    pub(super) fn into_usage(self) -> Usage {
        let input = self.input_tokens.or(self.prompt_tokens).unwrap_or(0);
        let output = self.output_tokens.or(self.completion_tokens).unwrap_or(0);
        let input_details = self.input_tokens_details.or(self.prompt_tokens_details);
        let output_details = self
            .output_tokens_details
            .or(self.completion_tokens_details);
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: self.total_tokens.unwrap_or(input + output),
            cached_tokens: input_details.and_then(|d| d.cached_tokens),
            reasoning_tokens: output_details.and_then(|d| d.reasoning_tokens),
        }
    }
}

/// A plain `usage` object at the cursor (each known member at most once, a count or `null`,
/// the details objects or `null`), read as the scanner checks it, which is much faster than
/// serde. An error for anything else (left to [`read_usage`]): what this reads is always what
/// serde makes of the text.
pub(super) fn scan_usage(s: &mut Scanner<'_>) -> Scan<RawUsage> {
    if s.peek() != Some(b'{') {
        return s.fail("not an object");
    }
    let mut raw = RawUsage::default();
    let mut seen = 0u16;
    s.object(|s, key| {
        let (bit, count, details) = match key.as_ref() {
            b"input_tokens" => (0, Some(&mut raw.input_tokens), None),
            b"prompt_tokens" => (1, Some(&mut raw.prompt_tokens), None),
            b"output_tokens" => (2, Some(&mut raw.output_tokens), None),
            b"completion_tokens" => (3, Some(&mut raw.completion_tokens), None),
            b"total_tokens" => (4, Some(&mut raw.total_tokens), None),
            b"input_tokens_details" => (5, None, Some(&mut raw.input_tokens_details)),
            b"prompt_tokens_details" => (6, None, Some(&mut raw.prompt_tokens_details)),
            b"output_tokens_details" => (7, None, Some(&mut raw.output_tokens_details)),
            b"completion_tokens_details" => (8, None, Some(&mut raw.completion_tokens_details)),
            _ => return s.skip(),
        };
        if seen & (1 << bit) != 0 {
            return s.fail("repeated key");
        }
        seen |= 1 << bit;
        if let Some(count) = count {
            *count = scan_count(s)?;
        }
        if let Some(details) = details {
            *details = scan_details(s)?;
        }
        Ok(())
    })?;
    Ok(raw)
}

/// A token count (an integer that fits `u64`) or `null`.
fn scan_count(s: &mut Scanner<'_>) -> Scan<Option<u64>> {
    match s.field()? {
        Field::Count(n) => Ok(Some(n)),
        Field::Null => Ok(None),
        _ => s.fail("not a count"),
    }
}

/// A details object of counts, or `null`.
fn scan_details(s: &mut Scanner<'_>) -> Scan<Option<Details>> {
    let mut seen = 0u8;
    let details = s.nested(|s, key, d: &mut Details| {
        let (bit, count) = match key {
            b"cached_tokens" => (1, &mut d.cached_tokens),
            b"reasoning_tokens" => (2, &mut d.reasoning_tokens),
            _ => return s.skip(),
        };
        if seen & bit != 0 {
            return s.fail("repeated key");
        }
        seen |= bit;
        *count = scan_count(s)?;
        Ok(())
    })?;
    match details {
        Nested::Object(d) => Ok(Some(d)),
        Nested::Null => Ok(None),
        Nested::Missing | Nested::NotObject => s.fail("not an object"),
    }
}
