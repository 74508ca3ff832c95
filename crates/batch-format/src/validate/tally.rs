//! Token estimates of a line: the texts and fixed costs collected from its body, and a cache
//! of the counts of long texts already seen.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::ids::{IdSet, PreHashed, id_hash};
use crate::tokens::TokenEstimator;

/// Borrowed text and fixed costs of one body, counted once its model is known. Mirrors
/// [`TokenEstimator::estimate_json_body`] exactly (a test holds them together).
#[derive(Debug, Default)]
pub(super) struct Tally<'a> {
    pub(super) fixed: u64,
    pub(super) texts: Vec<Cow<'a, str>>,
}

impl<'a> Tally<'a> {
    pub(super) fn total(&self, est: &TokenEstimator, cache: &mut CountCache) -> u64 {
        self.fixed + self.texts.iter().map(|t| cache.count(est, t)).sum::<u64>()
    }

    pub(super) fn append(&mut self, other: Tally<'a>) {
        self.fixed += other.fixed;
        self.texts.extend(other.texts);
    }
}

/// Counts texts for the summary's token estimate, in bounded time.
///
/// Texts under 16 bytes are counted exactly, and a text already counted is looked up (the same
/// system prompt usually opens every line). Other texts fall into one of a few kinds by their
/// encoding, length (under 256 bytes or not), script and bytes (how much is non-ASCII, how much
/// punctuation and digits); the first
/// [`Self::EXACT_FIRST`] bytes of each kind are counted exactly, and after that only one new
/// text in [`Self::SAMPLE_ONE_IN`] (chosen by its hash: deterministic and unbiased) and any text
/// seen a second time. The rest are estimated from their length at the ratio of tokens to bytes
/// measured on their kind. BPE is by far the slowest part of validating, and the summary's total
/// is an estimate either way: it stays within 2% of the exact count on prose, code and
/// non-Latin text, mixed or in long runs (a test holds it), at a fraction of the work.
#[derive(Debug, Default)]
pub(super) struct CountCache {
    counts: HashMap<u128, u64, BuildHasherDefault<PreHashed>>,
    /// Long texts estimated once: counted exactly if they come again.
    estimated: IdSet,
    /// Bytes and tokens of the long texts counted exactly, per encoding and kind of text.
    measured: HashMap<(usize, (u32, u8)), (u64, u64)>,
}

impl CountCache {
    /// Texts shorter than this are cheaper to count than to look up.
    const MIN_LEN: usize = 16;
    /// Bound on entries of each table; a table starts over when full.
    const MAX_ENTRIES: usize = 4096;
    /// Bytes of each kind of long text counted exactly before sampling starts.
    const EXACT_FIRST: u64 = 256 << 10;
    /// After [`Self::EXACT_FIRST`], one new long text in this many is counted exactly.
    const SAMPLE_ONE_IN: u128 = 32;

    pub(super) fn count(&mut self, est: &TokenEstimator, text: &str) -> u64 {
        if text.len() < Self::MIN_LEN {
            return est.count_text(text);
        }
        let key = id_hash((est.encoding_name(), text));
        if let Some(&n) = self.counts.get(&key) {
            return n;
        }
        let kind = (
            usize::from(est.encoding_name() != "o200k_base"),
            text_kind(text),
        );
        let (bytes, tokens) = self.measured.get(&kind).copied().unwrap_or_default();
        let sampled = key.is_multiple_of(Self::SAMPLE_ONE_IN);
        if bytes < Self::EXACT_FIRST || sampled || self.estimated.remove(&key) {
            let n = est.count_text(text);
            if self.measured.len() >= Self::MAX_ENTRIES {
                self.measured.clear();
            }
            self.measured
                .insert(kind, (bytes + text.len() as u64, tokens + n));
            if self.counts.len() >= Self::MAX_ENTRIES {
                self.counts.clear();
            }
            self.counts.insert(key, n);
            return n;
        }
        if self.estimated.len() >= Self::MAX_ENTRIES {
            self.estimated.clear();
        }
        self.estimated.insert(key);
        let scaled = u128::from(tokens) * text.len() as u128 / u128::from(bytes.max(1));
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

/// A text's kind for [`CountCache`]: the Unicode block (128 code points) of its first
/// non-ASCII character, which tells scripts apart (CJK and Devanagari tokenize very
/// differently); its share of non-ASCII bytes and, of the ASCII ones, of punctuation and
/// digits, each in four steps. Texts of one kind tokenize at similar ratios.
fn text_kind(text: &str) -> (u32, u8) {
    let (mut other, mut marks) = (0usize, 0usize);
    for &b in text.as_bytes() {
        if !b.is_ascii() {
            other += 1;
        } else if b.is_ascii_punctuation() || b.is_ascii_digit() {
            marks += 1;
        }
    }
    let script = if other == 0 {
        0
    } else {
        text.chars()
            .find(|c| !c.is_ascii())
            .map_or(0, |c| u32::from(c) >> 7)
    };
    let step = |part: usize, whole: usize, cuts: [usize; 3]| {
        let percent = part * 100 / whole.max(1);
        cuts.iter().filter(|&&c| percent >= c).count() as u8
    };
    let ascii = text.len() - other;
    (
        script,
        step(other, text.len(), [1, 10, 50]) * 4 + step(marks, ascii, [5, 15, 30]),
    )
}
