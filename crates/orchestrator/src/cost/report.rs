//! The cost report: totals per operation and tier against the all-standard cost, and its
//! table as text.

use std::fmt;
use std::ops::AddAssign;

use providers::{Operation, Tier};
use serde::{Deserialize, Serialize};

use super::PricedCall;

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
    /// Of the calls, those answered from the request cache (nothing sent, $0).
    #[serde(default)]
    pub cached_calls: u64,
    /// USD the cached calls would have cost sent again on their tiers.
    #[serde(default)]
    pub cache_saved: f64,
    /// USD OpenAI's prompt cache saved (the `cached` input tokens at their discount).
    #[serde(default)]
    pub prompt_cache_saved: f64,
}

impl CostTotals {
    pub(super) fn add_call(&mut self, c: &PricedCall) {
        let u = &c.call.usage;
        self.calls += 1;
        self.unpriced += u64::from(c.unpriced.is_some());
        self.input_tokens += u.input_tokens;
        self.cached_tokens += u.cached_tokens.unwrap_or(0).min(u.input_tokens);
        self.output_tokens += u.output_tokens;
        self.cost += c.cost;
        self.standard_cost += c.standard_cost;
        self.cached_calls += u64::from(c.call.cached);
        self.cache_saved += c.cache_saved.unwrap_or(0.0);
        self.prompt_cache_saved += c.prompt_cache_saved.unwrap_or(0.0);
    }

    /// Calls actually sent: the calls less those the request cache answered.
    pub fn sent_calls(&self) -> u64 {
        self.calls - self.cached_calls
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
        self.cached_calls += rhs.cached_calls;
        self.cache_saved += rhs.cache_saved;
        self.prompt_cache_saved += rhs.prompt_cache_saved;
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
    /// Answered from the request cache ($0; `tier` carried the stored answers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
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
            let cached = c.call.cached;
            if let Some(note) = &c.unpriced
                && !report.notes.contains(note)
            {
                report.notes.push(note.clone());
            }
            let i = match report.rows.iter().position(|r| {
                r.operation == op && r.tier == tier && r.fallback_from == from && r.cached == cached
            }) {
                Some(i) => i,
                None => {
                    report.rows.push(CostRow {
                        operation: op,
                        tier,
                        fallback_from: from,
                        cached,
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
                r.cached,
                tier.unwrap_or(usize::MAX),
                r.tier.as_str(),
                from,
            )
        });
        report
    }

    /// The totals over the rows of calls carried by `tier` (sent in this session: cached
    /// answers are in [`CostReport::cached_totals`]).
    pub fn tier_totals(&self, tier: Tier) -> CostTotals {
        self.sum(|r| r.tier == tier && !r.cached)
    }

    /// The totals over the calls the request cache answered.
    pub fn cached_totals(&self) -> CostTotals {
        self.sum(|r| r.cached)
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
pub(super) fn grouped(n: u64) -> String {
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

pub(super) fn usd(v: f64) -> String {
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
                _ if r.cached => "cached".to_owned(),
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
        let t = &self.total;
        if t.cached_calls > 0 {
            writeln!(
                f,
                "cached: {} of {} calls answered from the request cache at $0 ({} not spent)",
                grouped(t.cached_calls),
                grouped(t.calls),
                usd(t.cache_saved)
            )?;
        }
        // The prompt cache of the calls sent (a cached answer's tokens were its first call's).
        let sent = self.sum(|r| !r.cached);
        if sent.cached_tokens > 0 {
            writeln!(
                f,
                "prompt cache: {} of {} input tokens sent were cached by OpenAI, {} saved",
                grouped(sent.cached_tokens),
                grouped(sent.input_tokens),
                usd(sent.prompt_cache_saved)
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
