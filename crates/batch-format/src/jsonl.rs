//! Where the lines of JSONL bytes end: the one line splitter that the validator and the output
//! reader share.

/// Position of the first `\n`. Written so that the compiler vectorises the 64-byte blocks,
/// which makes it several times faster than `core::slice::memchr` on long lines.
pub(crate) fn find_newline(hay: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let (blocks, remainder) = hay.as_chunks::<BLOCK>();
    let mut offset = 0;
    for block in blocks {
        // A `u8` accumulator over a fixed-size array vectorises; a `bool` one does not.
        let mut seen = 0u8;
        for &b in block {
            seen |= u8::from(b == b'\n');
        }
        if seen != 0 {
            return block.iter().position(|&b| b == b'\n').map(|p| offset + p);
        }
        offset += BLOCK;
    }
    remainder
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| offset + p)
}

/// The lines of a block, each with its newline (the last may lack one).
pub(crate) fn split_lines(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = find_newline(rest).map_or(rest.len(), |p| p + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}
