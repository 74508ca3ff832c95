//! `ResultMatcher`: matches result lines (output and error files together) against the ids
//! that were sent.

use std::hash::BuildHasher;

use serde::Serialize;

use super::outcome::OutcomeLine;

/// How a set of result lines compares with the ids that were sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManifestMatch {
    /// Ids that were sent but have no line, in the order they were sent.
    pub missing: Vec<String>,
    /// Ids with more than one line, each listed once, in the order the repeat was seen.
    pub duplicates: Vec<String>,
    /// Ids that were never sent, each listed once, in the order first seen.
    pub unknown: Vec<String>,
}

impl ManifestMatch {
    /// Whether every id sent has exactly one line and no line is a stranger.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.duplicates.is_empty() && self.unknown.is_empty()
    }
}

/// Matches result lines (output and error files together) against the ids that were sent.
///
/// It holds fewer than 2^32 distinct ids (a batch has at most 50,000); one more panics, as a
/// `Vec` does past its capacity.
#[derive(Debug, Default)]
pub struct ResultMatcher {
    /// Every id expected or seen, one after another: the expected ones first, in the order
    /// they were sent, then the unknown ones in the order first seen. Kept together, with
    /// `ids` and `table`, in about 40 bytes an id, so that matching a large file stays in cache.
    names: String,
    /// For each id, in that order: where its name ends in `names`, and how many lines it had.
    ids: Vec<IdState>,
    /// Open addressing on the ids' hashes (linear probing, at most half full): each slot is 0
    /// or the place of an id in `ids` plus 1.
    table: Vec<u32>,
    // foldhash: matching is on the hot path of reading a 50,000-line output file, and SipHash
    // was a tenth of it; foldhash's per-matcher random seed keeps it resistant to crafted ids.
    hasher: foldhash::fast::RandomState,
    /// The first `expected` ids are the expected ones.
    expected: usize,
    /// Places of the ids with more than one line, in the order the repeat was seen.
    duplicates: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct IdState {
    end: usize,
    seen: u32,
}

impl ResultMatcher {
    /// A matcher expecting exactly these ids (repeats in the list count once).
    pub fn new(expected: impl IntoIterator<Item = String>) -> Self {
        let expected = expected.into_iter();
        let mut matcher = ResultMatcher::default();
        matcher.ids.reserve(expected.size_hint().0);
        matcher.grow(expected.size_hint().0);
        for id in expected {
            if let Err(slot) = matcher.find(&id) {
                matcher.insert(slot, &id, 0);
            }
        }
        matcher.expected = matcher.ids.len();
        matcher
    }

    /// Records a result line. Returns `true` when it is the first line for an expected id, the
    /// one to use; `false` for repeats and unknown ids.
    pub fn record(&mut self, line: &OutcomeLine) -> bool {
        self.record_id(&line.custom_id)
    }

    /// Records a line for `custom_id`, e.g. from a [`LineProblem`](crate::LineProblem) that
    /// named one, or from an [`OutcomeLineRef`](crate::OutcomeLineRef); see
    /// [`ResultMatcher::record`].
    pub fn record_id(&mut self, custom_id: &str) -> bool {
        let place = match self.find(custom_id) {
            Ok(place) => place,
            Err(slot) => {
                self.insert(slot, custom_id, 1);
                return false;
            }
        };
        let seen = &mut self.ids[place].seen;
        *seen = seen.saturating_add(1);
        if *seen == 2 {
            self.duplicates.push(place);
        }
        place < self.expected && *seen == 1
    }

    /// Number of distinct expected ids.
    pub fn expected(&self) -> usize {
        self.expected
    }

    /// The comparison, once every line has been recorded.
    pub fn finish(self) -> ManifestMatch {
        let name = |place| self.name(place).to_owned();
        ManifestMatch {
            missing: (0..self.expected)
                .filter(|&place| self.ids[place].seen == 0)
                .map(name)
                .collect(),
            duplicates: self.duplicates.iter().copied().map(name).collect(),
            unknown: (self.expected..self.ids.len()).map(name).collect(),
        }
    }

    /// The id at `place` in `ids`.
    fn name(&self, place: usize) -> &str {
        let start = place
            .checked_sub(1)
            .map_or(0, |before| self.ids[before].end);
        &self.names[start..self.ids[place].end]
    }

    /// Where `id` is in `ids`, or the free slot of `table` where it would go.
    fn find(&self, id: &str) -> std::result::Result<usize, usize> {
        if self.table.is_empty() {
            return Err(0);
        }
        let mask = self.table.len() - 1;
        let mut slot = self.slot_of(id);
        loop {
            match self.table[slot] {
                0 => return Err(slot),
                entry => {
                    let place = entry as usize - 1;
                    if self.name(place) == id {
                        return Ok(place);
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The first slot of `table` to look at for `id`.
    fn slot_of(&self, id: &str) -> usize {
        // Truncating the hash to the table's size is the point.
        let hash = self.hasher.hash_one(id) as usize;
        hash & (self.table.len() - 1)
    }

    /// Adds `id`, which `find` did not find, at `slot` (what `find` returned).
    fn insert(&mut self, slot: usize, id: &str, seen: u32) {
        let entry = table_entry(self.ids.len());
        self.names.push_str(id);
        self.ids.push(IdState {
            end: self.names.len(),
            seen,
        });
        if self.ids.len() * 2 > self.table.len() {
            self.grow(self.ids.len());
        } else {
            self.table[slot] = entry;
        }
    }

    /// Makes `table` at least twice as big as `ids` will be, `ids` included (the table is
    /// built anew from them).
    fn grow(&mut self, ids: usize) {
        let size = (ids.max(self.ids.len()) * 2).next_power_of_two().max(16);
        if size <= self.table.len() {
            return;
        }
        self.table = vec![0; size];
        for place in 0..self.ids.len() {
            let mut slot = self.slot_of(self.name(place));
            while self.table[slot] != 0 {
                slot = (slot + 1) & (size - 1);
            }
            self.table[slot] = table_entry(place);
        }
    }
}

/// The `table` entry of the id at `place` in `ids`. Entries are `u32` to keep the table small
/// enough to stay in cache.
#[allow(
    clippy::expect_used,
    reason = "a matcher holds fewer than 2^32 ids; its documentation says more panics"
)]
fn table_entry(place: usize) -> u32 {
    u32::try_from(place + 1).expect("a ResultMatcher holds fewer than 2^32 ids")
}
