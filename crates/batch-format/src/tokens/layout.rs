//! The layout of a vocabulary table and its hash: shared by the build script, which writes
//! the tables from tiktoken-rs's vocabularies, and by [`super::vocab`], which reads them.
//!
//! A table is little-endian `u32`s and bytes, read in place (nothing is built at start):
//! a header of [`HEADER_WORDS`] words (ranks, slots, blob bytes), then `ranks + 1` offsets into
//! the blob (rank `r`'s bytes are `blob[off[r]..off[r + 1]]`), then `slots` slots of two words
//! (the key's [`fingerprint`], and `rank + 1`, 0 for an empty slot; open addressing, linear
//! probing from [`hash`] modulo `slots`, a power of two), then the blob.

/// Words in a table's header.
pub(crate) const HEADER_WORDS: usize = 3;

/// The hash of a token's bytes: eight bytes at a time (most tokens are one or two words of
/// them), each word mixed in with a multiply and a shift, finished with a multiply-xorshift so
/// the low bits (the slot) and the high bits (the fingerprint) both depend on every byte.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h = (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
    }
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 29)
}

/// The fingerprint stored beside a slot's rank: the hash's high word, never 0.
pub(crate) fn fingerprint(hash: u64) -> u32 {
    ((hash >> 32) as u32).max(1)
}
