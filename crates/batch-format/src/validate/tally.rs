//! Token estimates of a line: the texts and fixed costs collected from its body, and a cache
//! of the counts of long texts already seen.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};

use foldhash::fast::FixedState;

use super::ids::{IdSet, PreHashed};
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
/// encoding, script and bytes (how much is non-ASCII, how much punctuation and digits); the
/// first [`Self::EXACT_FIRST`] bytes of each kind are counted exactly, and after that only one new
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
    const EXACT_FIRST: u64 = 64 << 10;
    /// After [`Self::EXACT_FIRST`], one new long text in this many is counted exactly.
    const SAMPLE_ONE_IN: u128 = 1024;

    pub(super) fn count(&mut self, est: &TokenEstimator, text: &str) -> u64 {
        if text.len() < Self::MIN_LEN {
            return est.count_text(text);
        }
        let key = text_key(est, text);
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

/// A text's key in [`CountCache`]: one fixed-seed foldhash pass (a fifth of the two SipHash
/// passes it replaced; 64 bits are plenty for a table of 4,096 texts, and fixed, so the texts
/// sampled are the same in every run).
fn text_key(est: &TokenEstimator, text: &str) -> u128 {
    u128::from(FixedState::with_seed(0x9e37_79b9_7f4a_7c15).hash_one((est.encoding_name(), text)))
}

/// A text's kind for [`CountCache`]: the Unicode block (128 code points) of its first
/// non-ASCII character seen, which tells scripts apart (CJK and Devanagari tokenize very
/// differently); its share of non-ASCII bytes and, of the ASCII ones, of punctuation and
/// digits, each in four steps. Texts of one kind tokenize at similar ratios. A long text's mix
/// is read from a quarter of it, spread evenly ([`sampled_mix`]).
fn text_kind(text: &str) -> (u32, u8) {
    let mix = sampled_mix(text.as_bytes());
    let script = mix
        .first_other
        .and_then(|at| text.get(at..))
        .and_then(|rest| rest.chars().next())
        .map_or(0, |c| u32::from(c) >> 7);
    let step = |part: usize, whole: usize, cuts: [usize; 3]| {
        let percent = part * 100 / whole.max(1);
        cuts.iter().filter(|&&c| percent >= c).count() as u8
    };
    let ascii = mix.bytes - mix.other;
    (
        script,
        step(mix.other, mix.bytes, [1, 10, 50]) * 4 + step(mix.marks, ascii, [5, 15, 30]),
    )
}

/// What [`sampled_mix`] found.
#[derive(Debug, PartialEq)]
struct Mix {
    /// Bytes looked at.
    bytes: usize,
    /// Of those, non-ASCII bytes, and ASCII punctuation and digits.
    other: usize,
    marks: usize,
    /// Where the first non-ASCII character among them starts.
    first_other: Option<usize>,
}

/// Bytes in each piece [`sampled_mix`] reads.
const MIX_PIECE: usize = 240;

/// The byte mix of `bytes`: all of them up to four pieces long, else one piece in four,
/// evenly spaced (a text's mix is much the same throughout, and every long text of a file
/// passes through here).
fn sampled_mix(bytes: &[u8]) -> Mix {
    let stride = if bytes.len() <= 4 * MIX_PIECE {
        MIX_PIECE
    } else {
        4 * MIX_PIECE
    };
    let mut mix = Mix {
        bytes: 0,
        other: 0,
        marks: 0,
        first_other: None,
    };
    for start in (0..bytes.len()).step_by(stride) {
        let piece = &bytes[start..bytes.len().min(start + MIX_PIECE)];
        let (other, marks) = byte_mix(piece);
        if other > 0 && mix.first_other.is_none() {
            // The first byte that starts a character (not a continuation byte).
            mix.first_other = piece.iter().position(|&b| b >= 0xC0).map(|at| start + at);
        }
        mix.bytes += piece.len();
        mix.other += other;
        mix.marks += marks;
    }
    mix
}

/// Non-ASCII bytes, and ASCII punctuation and digits (`!` to `@`, `[` to `` ` ``, `{` to
/// `~`), of `bytes` (at most 255 of them): branch-free with byte-wide sums, which the compiler
/// turns into vector instructions.
fn byte_mix(bytes: &[u8]) -> (usize, usize) {
    let (mut o, mut m) = (0u8, 0u8);
    for &b in bytes {
        o += b >> 7;
        m += u8::from(b.wrapping_sub(b'!') < 32)
            + u8::from(b.wrapping_sub(b'[') < 6)
            + u8::from(b.wrapping_sub(b'{') < 4);
    }
    (usize::from(o), usize::from(m))
}

#[cfg(test)]
#[test]
fn the_byte_mix_counts_what_the_byte_classes_say() {
    let all: Vec<u8> = (0..=255u8).cycle().take(4 * MIX_PIECE).collect();
    let other = all.iter().filter(|b| !b.is_ascii()).count();
    let marks = all
        .iter()
        .filter(|b| b.is_ascii_punctuation() || b.is_ascii_digit())
        .count();
    // Up to four pieces, every byte is looked at.
    assert_eq!(
        sampled_mix(&all),
        Mix {
            bytes: all.len(),
            other,
            marks,
            first_other: Some(192),
        }
    );
    // Longer, one piece in four: a quarter of the bytes, the same shares.
    let piece = &all[..MIX_PIECE];
    let long = piece.repeat(40);
    let mix = sampled_mix(&long);
    assert_eq!(mix.bytes, 10 * MIX_PIECE);
    assert_eq!(sampled_mix(piece).other * 10, mix.other);
    assert_eq!(sampled_mix(piece).marks * 10, mix.marks);
}

#[cfg(test)]
#[test]
fn a_long_texts_script_is_its_first_sampled_characters() {
    let prose = "a lighthouse in a storm, ".repeat(100);
    let cjk = "灯塔在暴风雨中".repeat(100);
    assert_eq!(text_kind(&prose).0, 0);
    assert_eq!(text_kind(&cjk).0, u32::from('灯') >> 7);
    // Mostly prose, with CJK further on: the block of the first CJK character sampled.
    let mixed = format!("{prose}{cjk}");
    let cjk_blocks = (0x4e00 >> 7)..=(0x9fff >> 7);
    assert!(cjk_blocks.contains(&text_kind(&mixed).0));
    assert_ne!(text_kind(&mixed).1, text_kind(&prose).1);
}
