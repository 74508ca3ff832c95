//! Token estimates of a line: the texts and fixed costs collected from its body, and a cache
//! of the counts of long texts already seen.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::ids::{PreHashed, id_hash};
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

/// Token counts of long texts already seen: the same system prompt usually opens every line,
/// and BPE is by far the slowest part of estimating.
#[derive(Debug, Default)]
pub(super) struct CountCache {
    counts: HashMap<u128, u64, BuildHasherDefault<PreHashed>>,
}

impl CountCache {
    /// Texts shorter than this are cheaper to count than to look up.
    const MIN_LEN: usize = 64;
    /// Bound on entries; the cache starts over when full.
    const MAX_ENTRIES: usize = 4096;

    pub(super) fn count(&mut self, est: &TokenEstimator, text: &str) -> u64 {
        if text.len() < Self::MIN_LEN {
            return est.count_text(text);
        }
        let key = id_hash((est.encoding_name(), text));
        if let Some(&n) = self.counts.get(&key) {
            return n;
        }
        if self.counts.len() >= Self::MAX_ENTRIES {
            self.counts.clear();
        }
        let n = est.count_text(text);
        self.counts.insert(key, n);
        n
    }
}
