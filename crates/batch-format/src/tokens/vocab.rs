//! A BPE vocabulary read in place from the table the build script wrote (see
//! [`super::layout`]), and the byte-pair merge that counts a piece's tokens with it: the same
//! merges as tiktoken's, so the same counts, without building a table at start.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::layout::{HEADER_WORDS, fingerprint, hash};

/// Pieces up to this many bytes are merged on the stack ([`Vocab::merge_short`]).
const SHORT: usize = 64;

/// One encoding's vocabulary: ranks by bytes.
#[derive(Clone, Copy)]
pub(super) struct Vocab {
    offsets: &'static [u8],
    slots: &'static [u8],
    blob: &'static [u8],
    mask: usize,
}

/// The `i`th little-endian `u32` of `bytes` (0 past the end, which a table never reads).
fn word(bytes: &[u8], i: usize) -> u32 {
    bytes
        .get(i * 4..i * 4 + 4)
        .and_then(|w| w.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

impl Vocab {
    /// The vocabulary in `table`, a build script's output.
    pub(super) fn new(table: &'static [u8]) -> Vocab {
        let ranks = word(table, 0) as usize;
        let slots = word(table, 1) as usize;
        let offsets_at = HEADER_WORDS * 4;
        let slots_at = offsets_at + (ranks + 1) * 4;
        let blob_at = slots_at + slots * 8;
        Vocab {
            offsets: table.get(offsets_at..slots_at).unwrap_or_default(),
            slots: table.get(slots_at..blob_at).unwrap_or_default(),
            blob: table.get(blob_at..).unwrap_or_default(),
            mask: slots.saturating_sub(1),
        }
    }

    fn token(&self, rank: u32) -> &'static [u8] {
        let (from, to) = (
            word(self.offsets, rank as usize),
            word(self.offsets, rank as usize + 1),
        );
        self.blob
            .get(from as usize..to as usize)
            .unwrap_or_default()
    }

    /// The rank of the token whose bytes are `bytes`, if there is one.
    pub(super) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let h = hash(bytes);
        let print = fingerprint(h);
        let mut i = (h as usize) & self.mask;
        loop {
            let rank = word(self.slots, 2 * i + 1);
            if rank == 0 {
                return None;
            }
            if word(self.slots, 2 * i) == print && self.token(rank - 1) == bytes {
                return Some(rank - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Tokens of one pre-tokenized piece: 1 if it is a token, else the parts left when the
    /// lowest-ranked adjacent pair is merged (the leftmost of equal ones) until no pair is a
    /// token.
    pub(super) fn count_piece(&self, piece: &[u8]) -> u64 {
        if piece.is_empty() {
            return 0;
        }
        if piece.len() == 1 || self.rank(piece).is_some() {
            return 1;
        }
        if piece.len() <= SHORT {
            self.merge_short(piece)
        } else {
            self.merge(piece)
        }
    }

    /// The merge for a short piece (most words): tiktoken's own loop over an array of parts
    /// on the stack, the lowest rank found by a scan; no allocation.
    fn merge_short(&self, piece: &[u8]) -> u64 {
        let n = piece.len();
        let mut starts = [0usize; SHORT + 1];
        let mut ranks = [u32::MAX; SHORT + 1];
        for (i, start) in starts.iter_mut().enumerate().take(n + 1) {
            *start = i;
        }
        for i in 0..n - 1 {
            ranks[i] = self.rank(&piece[i..i + 2]).unwrap_or(u32::MAX);
        }
        // Parts are `starts[..len]`; the last is the piece's end. `ranks[i]` ranks parts
        // `i` and `i + 1` together.
        let mut len = n + 1;
        while let Some((i, _)) = ranks[..len - 2]
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != u32::MAX)
            .min_by_key(|(i, r)| (**r, *i))
        {
            // Merge part `i` with part `i + 1`.
            starts.copy_within(i + 2..len, i + 1);
            ranks.copy_within(i + 2..len, i + 1);
            len -= 1;
            let pair = |j: usize| {
                if j + 2 < len {
                    self.rank(&piece[starts[j]..starts[j + 2]])
                        .unwrap_or(u32::MAX)
                } else {
                    u32::MAX
                }
            };
            ranks[i] = pair(i);
            if i > 0 {
                ranks[i - 1] = pair(i - 1);
            }
        }
        (len - 1) as u64
    }

    /// The byte-pair merge over a linked list of parts, the next merge taken from a heap of
    /// (rank, start) so a long piece costs `n log n`, not `n²`. Entries made stale by a merge
    /// are skipped when they come up.
    fn merge(&self, piece: &[u8]) -> u64 {
        let n = piece.len();
        // Parts by start: the next part's start, the previous part's, alive or not.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::with_capacity(n);
        let pair_rank = |start: usize, next: &[usize]| -> Option<u32> {
            let mid = next[start];
            if mid >= n {
                return None;
            }
            self.rank(&piece[start..next[mid]])
        };
        for i in 0..n - 1 {
            if let Some(r) = self.rank(&piece[i..i + 2]) {
                heap.push(Reverse((r, i, 2usize)));
            }
        }
        let mut parts = n as u64;
        while let Some(Reverse((rank, start, len))) = heap.pop() {
            // Stale: the part or its neighbour changed since this pair was ranked.
            let mid = next[start];
            if !alive[start] || mid >= n || next[mid] - start != len {
                continue;
            }
            debug_assert_eq!(self.rank(&piece[start..start + len]), Some(rank));
            // Merge `start` with the part after it.
            alive[mid] = false;
            next[start] = next[mid];
            if next[start] < n {
                prev[next[start]] = start;
            }
            parts -= 1;
            if let Some(r) = pair_rank(start, &next) {
                heap.push(Reverse((r, start, next[next[start]] - start)));
            }
            let before = prev[start];
            if before < n
                && let Some(r) = pair_rank(before, &next)
            {
                heap.push(Reverse((r, before, next[next[before]] - before)));
            }
        }
        parts
    }
}
