//! Where the lines of JSONL bytes end: the one line splitter that the validator and the output
//! reader share, and the capped line reader that never holds a line longer than a bound.

use std::io::BufRead;

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

/// Longest line the streaming validators hold, newline included: a longer line is a problem on
/// its line, read past and counted without being held, so that memory stays bounded whatever
/// the input. 4 MiB keeps `batch validate` under 64 MiB at its peak on a 100 MB line, the
/// BPE tables (about 53 MiB) included; a judge request with a few downscaled images is well
/// under it.
pub(crate) const MAX_LINE_BYTES: usize = 4 << 20;

/// One line as a capped reader ([`for_each_jsonl_line`]) hands it out.
///
/// [`for_each_jsonl_line`]: crate::for_each_jsonl_line
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line, with its newline (the last line of a file may lack one).
    Whole(&'a [u8]),
    /// A line longer than the cap: only its length (newline included) is known.
    TooLong(u64),
}

impl<'a> Line<'a> {
    /// A whole line, unless it is longer than `max`.
    pub(crate) fn capped(line: &'a [u8], max: usize) -> Self {
        if line.len() > max {
            Line::TooLong(line.len() as u64)
        } else {
            Line::Whole(line)
        }
    }
}

/// The start of a line cut by the end of a buffer, held until the rest arrives, but only up to
/// a cap: past it, the line is counted and its bytes are dropped.
#[derive(Debug)]
pub(crate) struct LineCarry {
    bytes: Vec<u8>,
    max: usize,
    /// The length so far of a line found to be longer than `max`; 0 while it is not.
    over: u64,
}

impl LineCarry {
    /// Holds lines of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        LineCarry {
            bytes: Vec::new(),
            max,
            over: 0,
        }
    }

    /// Whether no line is started.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.over == 0
    }

    /// Adds the next bytes of the line.
    pub(crate) fn push(&mut self, part: &[u8]) {
        if self.over > 0 {
            self.over += part.len() as u64;
        } else if self.bytes.len() + part.len() > self.max {
            self.over = (self.bytes.len() + part.len()) as u64;
            // Give the memory back: the line is not read.
            self.bytes = Vec::new();
        } else {
            // Never more room than the cap, even where doubling would take it.
            let room = self.bytes.capacity() - self.bytes.len();
            if part.len() > room {
                let want =
                    (2 * self.bytes.capacity()).clamp(self.bytes.len() + part.len(), self.max);
                self.bytes.reserve_exact(want - self.bytes.len());
            }
            self.bytes.extend_from_slice(part);
        }
    }

    /// Hands the line over (its last bytes pushed) and starts the next one.
    pub(crate) fn take<T>(&mut self, f: impl FnOnce(Line<'_>) -> T) -> T {
        let line = if self.over > 0 {
            Line::TooLong(self.over)
        } else {
            Line::Whole(&self.bytes)
        };
        let result = f(line);
        self.bytes.clear();
        self.over = 0;
        result
    }
}

/// Calls `f` with each line of `reader`, newline included (the last line may lack one); a line
/// longer than `max` is read past and handed over as [`Line::TooLong`]. Lines that fit in the
/// reader's buffer are handed out in place; only those cut by a refill are copied, up to `max`,
/// so memory stays bounded by the reader's buffer and `max` whatever the input.
pub fn for_each_line<R: BufRead>(
    mut reader: R,
    max: usize,
    mut f: impl FnMut(Line<'_>),
) -> std::io::Result<()> {
    let mut carry = LineCarry::new(max);
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !carry.is_empty() {
                carry.take(&mut f);
            }
            return Ok(());
        }
        let mut start = 0;
        if !carry.is_empty() {
            let Some(end) = find_newline(buf) else {
                carry.push(buf);
                let consumed = buf.len();
                reader.consume(consumed);
                continue;
            };
            carry.push(&buf[..=end]);
            carry.take(&mut f);
            start = end + 1;
        }
        while let Some(end) = find_newline(&buf[start..]) {
            f(Line::capped(&buf[start..=start + end], max));
            start += end + 1;
        }
        carry.push(&buf[start..]);
        let consumed = buf.len();
        reader.consume(consumed);
    }
}
