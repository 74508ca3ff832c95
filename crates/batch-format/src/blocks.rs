//! Reading a JSONL stream as blocks of whole lines that worker threads parse, with the results
//! handed back to the calling thread in file order: the machinery shared by
//! `validate_jsonl_parallel` and `read_output_parallel`.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Condvar, Mutex, mpsc};

use crate::jsonl::find_newline;

/// Target size of one block of lines handed to a worker.
pub(crate) const BLOCK_BYTES: usize = 1 << 20;

/// Blocks in flight (being read, parsed, or waiting to be delivered) beyond one per worker
/// thread: enough for the workers never to wait on a slow block, and what bounds memory. More
/// only cost fresh memory (page faults) and cache.
const SPARE_BLOCKS: usize = 2;

/// `threads` as asked for, 0 meaning one per available core.
pub(crate) fn worker_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Reads `reader` in blocks of whole lines (about `block_bytes` each, [`BLOCK_BYTES`] but in
/// tests; a line longer than that gets a block of its own) on `threads` worker threads, which
/// call `analyse` on each block's lines with their own `new_state()`. The results come back to
/// the calling thread in file order: `deliver(block, result)`. The last block may end without a
/// newline. A line longer than `max_line` is read past, not held: the block after it has no
/// lines, and [`Block::skipped_line`] says how long it was.
///
/// At most one block per thread, plus `SPARE_BLOCKS`, is in flight at once, so memory
/// stays bounded however far ahead the workers get. An I/O error ends the reading: the whole
/// lines read before it are still analysed and delivered, then the error is returned.
pub(crate) fn parallel_blocks<R, S, T>(
    reader: R,
    threads: usize,
    block_bytes: usize,
    max_line: usize,
    new_state: impl Fn() -> S + Sync,
    analyse: impl Fn(&mut S, &[u8]) -> T + Sync,
    deliver: impl FnMut(&Block, T),
) -> std::io::Result<()>
where
    R: Read + Send,
    T: Send,
{
    parallel_text_blocks(
        reader,
        threads,
        block_bytes,
        max_line,
        new_state,
        |state, block| analyse(state, block.lines()),
        deliver,
    )
}

/// [`parallel_blocks`] handing out the [`Block`] itself, so that a worker can check it as
/// UTF-8 once ([`Block::text`]) and the calling thread can then borrow its text
/// ([`Block::checked_text`]) without checking it again.
pub(crate) fn parallel_text_blocks<R, S, T>(
    reader: R,
    threads: usize,
    block_bytes: usize,
    max_line: usize,
    new_state: impl Fn() -> S + Sync,
    analyse: impl Fn(&mut S, &mut Block) -> T + Sync,
    mut deliver: impl FnMut(&Block, T),
) -> std::io::Result<()>
where
    R: Read + Send,
    T: Send,
{
    let threads = threads.max(1);
    let block_bytes = block_bytes.max(1);
    // Workers take turns reading the next block under this lock, then analyse it unlocked; the
    // sequence number restores file order.
    let source = Mutex::new(BlockSource {
        reader,
        carry: Vec::new(),
        next_seq: 0,
        done: false,
    });
    let pool = Pool::new(threads + SPARE_BLOCKS, block_bytes);
    let (new_state, analyse) = (&new_state, &analyse);
    std::thread::scope(|scope| {
        // Never full: every message carries one of the pool's blocks.
        let (done_tx, done_rx) = mpsc::channel::<Analysed<T>>();
        for _ in 0..threads {
            let (source, pool, done_tx) = (&source, &pool, done_tx.clone());
            scope.spawn(move || {
                // However this worker ends, nobody should wait for blocks any more.
                let _close = ClosePool(pool);
                let mut state = new_state();
                while let Some(mut block) = pool.take() {
                    let (seq, error) = {
                        let Ok(mut src) = source.lock() else { return };
                        if src.done {
                            return;
                        }
                        let src = &mut *src;
                        let seq = src.next_seq;
                        src.next_seq += 1;
                        let sizes = (block_bytes, max_line);
                        let read = read_block(&mut src.reader, &mut block, sizes, &mut src.carry);
                        src.done = !matches!(read, Ok(false));
                        (seq, read.err())
                    };
                    let result = analyse(&mut state, &mut block);
                    if done_tx.send((seq, block, result, error)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // If `deliver` panics, or an error ends the loop, workers waiting for a block stop.
        let _close = ClosePool(&pool);
        // Ends when every worker has finished (all senders dropped). A panicking worker drops
        // its sender too and closes the pool, so this never waits forever; the panic
        // resurfaces when the scope joins.
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        for (seq, block, result, error) in done_rx {
            pending.insert(seq, (block, result, error));
            while let Some((block, result, error)) = pending.remove(&next) {
                deliver(&block, result);
                if let Some(e) = error {
                    return Err(e);
                }
                pool.give(block);
                next += 1;
            }
        }
        Ok(())
    })
}

/// A block of lines, what a worker made of it, and the I/O error that ended it if any, tagged
/// with the block's place in the file.
type Analysed<T> = (u64, Block, T, Option<std::io::Error>);

/// The reader shared by the workers.
struct BlockSource<R> {
    reader: R,
    /// The start of a line cut by the end of the last block.
    carry: Vec<u8>,
    next_seq: u64,
    done: bool,
}

/// A reusable buffer of whole lines: `data[..len]`. `data` stays zero-initialised at its full
/// size so that the reader can write into it directly (for a `BufReader` over a file, with no
/// copy through the reader's own buffer). Once a worker has found the lines to be UTF-8, the
/// same memory is held as a `String` instead, until the block is read into again.
#[derive(Default)]
pub(crate) struct Block {
    data: Vec<u8>,
    len: usize,
    /// The lines, known to be UTF-8 (`data` is then empty, and its size is `size`).
    text: Option<String>,
    size: usize,
    /// The length of a line too long to hold, read past just before this block's lines.
    skipped: Option<u64>,
}

impl Block {
    /// The lines, each with its newline (the last may lack one).
    pub(crate) fn lines(&self) -> &[u8] {
        match &self.text {
            Some(text) => text.as_bytes(),
            None => &self.data[..self.len],
        }
    }

    /// The lines as text, checked as UTF-8 once (in place, no copy); the error says where
    /// they are not.
    pub(crate) fn text(&mut self) -> Result<&str, std::str::Utf8Error> {
        if self.text.is_none() {
            let mut data = std::mem::take(&mut self.data);
            let size = data.len();
            data.truncate(self.len);
            match String::from_utf8(data) {
                Ok(text) => {
                    self.text = Some(text);
                    self.size = size;
                }
                Err(e) => {
                    let error = e.utf8_error();
                    self.data = e.into_bytes();
                    self.data.resize(size, 0);
                    return Err(error);
                }
            }
        }
        Ok(self.checked_text().unwrap_or_default())
    }

    /// The length (newline included) of a line longer than the reader's `max_line` that came
    /// just before this block's lines; it was read past, not held.
    pub(crate) fn skipped_line(&self) -> Option<u64> {
        self.skipped
    }

    /// The lines as text, if [`Block::text`] found them to be UTF-8.
    pub(crate) fn checked_text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Bytes of memory the block holds.
    fn size(&self) -> usize {
        self.data.len().max(self.size)
    }

    /// Makes `data` the buffer again, at its full size.
    fn back_to_bytes(&mut self) {
        if let Some(text) = self.text.take() {
            self.data = text.into_bytes();
            self.data.resize(self.size, 0);
            self.size = 0;
        }
    }
}

/// The blocks not in flight. There are only so many: a worker waits here for one until the
/// calling thread has delivered an earlier block.
struct Pool {
    state: Mutex<PoolState>,
    returned: Condvar,
    block_bytes: usize,
}

struct PoolState {
    spare: Vec<Block>,
    closed: bool,
}

impl Pool {
    fn new(blocks: usize, block_bytes: usize) -> Self {
        Pool {
            block_bytes,
            state: Mutex::new(PoolState {
                spare: (0..blocks).map(|_| Block::default()).collect(),
                closed: false,
            }),
            returned: Condvar::new(),
        }
    }

    /// A block to read into; `None` once the pool is closed.
    fn take(&self) -> Option<Block> {
        let mut state = self.state.lock().ok()?;
        loop {
            if state.closed {
                return None;
            }
            if let Some(block) = state.spare.pop() {
                return Some(block);
            }
            state = self.returned.wait(state).ok()?;
        }
    }

    fn give(&self, mut block: Block) {
        if block.size() > 2 * self.block_bytes {
            // Grown for a very long line: don't keep that much memory for the rest of the run.
            block = Block::default();
        }
        if let Ok(mut state) = self.state.lock() {
            state.spare.push(block);
        }
        self.returned.notify_one();
    }
}

/// Closes the pool when dropped, waking every worker waiting for a block.
struct ClosePool<'a>(&'a Pool);

impl Drop for ClosePool<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
            state.closed = true;
        }
        self.0.returned.notify_all();
    }
}

/// Fills `block` with whole lines, about `block_bytes` of them after `carry` (the
/// partial line left over last time) and leaving the new partial line in `carry`. Returns
/// whether the reader is exhausted; the last block may then end without a newline. On an
/// error the block keeps the whole lines read before it. A line longer than `max_line` is read
/// past instead ([`skip_line`]).
fn read_block<R: Read>(
    reader: &mut R,
    block: &mut Block,
    (block_bytes, max_line): (usize, usize),
    carry: &mut Vec<u8>,
) -> std::io::Result<bool> {
    block.back_to_bytes();
    block.skipped = None;
    // Room for `block_bytes` after the carry: a `BufReader` with no bigger a buffer then
    // reads straight into the block instead of copying through its own buffer.
    let size = (carry.len() + block_bytes).max(2 * carry.len());
    if block.data.len() < size {
        block.data.resize(size, 0);
    }
    block.data[..carry.len()].copy_from_slice(carry);
    block.len = carry.len();
    carry.clear();
    loop {
        if block.len == block.data.len() {
            if let Some(last) = block.lines().iter().rposition(|&b| b == b'\n') {
                carry.extend_from_slice(&block.data[last + 1..block.len]);
                block.len = last + 1;
                return Ok(false);
            }
            // One line longer than the whole block: more room for it, up to one byte over
            // `max_line`, which shows it too long to hold.
            if block.len > max_line {
                return skip_line(reader, block, carry);
            }
            let grown = (2 * block.data.len()).min(max_line.saturating_add(1));
            block.data.resize(grown, 0);
        }
        match reader.read(&mut block.data[block.len..]) {
            Ok(0) => return Ok(true),
            Ok(n) => block.len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                block.len = block
                    .lines()
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                return Err(e);
            }
        }
    }
}

/// Reads past the rest of the line that fills `block`, a line longer than the cap: the block
/// is left with no lines and the line's length in [`Block::skipped_line`], and what follows
/// the line goes to `carry`. Returns whether the reader is exhausted.
fn skip_line<R: Read>(
    reader: &mut R,
    block: &mut Block,
    carry: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut skipped = block.len as u64;
    block.len = 0;
    loop {
        match reader.read(&mut block.data) {
            Ok(0) => {
                block.skipped = Some(skipped);
                return Ok(true);
            }
            Ok(n) => match find_newline(&block.data[..n]) {
                Some(end) => {
                    carry.extend_from_slice(&block.data[end + 1..n]);
                    block.skipped = Some(skipped + end as u64 + 1);
                    return Ok(false);
                }
                None => skipped += n as u64,
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;
    use crate::jsonl::split_lines;

    /// Reads `input` through `parallel_blocks`, returning the lines as delivered.
    fn lines_of(input: &[u8], threads: usize) -> (Vec<Vec<u8>>, std::io::Result<()>) {
        let mut got = Vec::new();
        let result = parallel_blocks(
            input,
            threads,
            BLOCK_BYTES,
            usize::MAX,
            || (),
            |(), lines| split_lines(lines).map(<[u8]>::to_vec).collect::<Vec<_>>(),
            |block, analysed| {
                assert_eq!(analysed.concat(), block.lines());
                got.extend(analysed);
            },
        );
        (got, result)
    }

    #[test]
    fn blocks_hold_whole_lines_in_file_order() {
        let mut input = Vec::new();
        for n in 0..3_000 {
            match n % 1000 {
                // Lines longer than a block, and one several blocks long.
                7 => input.extend_from_slice(&vec![b'x'; BLOCK_BYTES + 3]),
                500 => input.extend_from_slice(&vec![b'y'; 3 * BLOCK_BYTES]),
                _ => input.extend_from_slice(format!("line {n}").as_bytes()),
            }
            input.extend_from_slice(if n % 3 == 0 { b"\r\n" } else { b"\n" });
        }
        input.extend_from_slice(b"no newline");
        let expect: Vec<Vec<u8>> = split_lines(&input).map(<[u8]>::to_vec).collect();
        for threads in [1, 2, 5] {
            let (got, result) = lines_of(&input, threads);
            result.unwrap();
            assert!(got == expect, "{threads} threads");
        }
        assert_eq!(lines_of(b"", 2).0, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn blocks_are_checked_as_text_in_place_and_read_into_again() {
        let mut input = Vec::new();
        for n in 0..5_000 {
            match n {
                // Not UTF-8, a character cut by the line's end, and long multi-byte lines.
                3 | 4003 => input.extend_from_slice(b"bad \xff byte"),
                2500 => input.extend_from_slice("cut \u{e9}".as_bytes().split_last().unwrap().1),
                _ if n % 700 == 650 => {
                    input.extend_from_slice("\u{1F98A}".repeat(20_000).as_bytes())
                }
                _ => input.extend_from_slice(format!("line {n} caf\u{e9}").as_bytes()),
            }
            input.push(b'\n');
        }
        for (threads, block_bytes) in [(1, 1000), (2, 4096), (5, 100_000), (3, 200_000)] {
            let mut got = Vec::new();
            let (mut text_blocks, mut byte_blocks) = (0, 0);
            parallel_text_blocks(
                &input[..],
                threads,
                block_bytes,
                usize::MAX,
                || (),
                |(), block| match block.text() {
                    Ok(text) => Some(text.len()),
                    Err(_) => None,
                },
                |block, text_len| {
                    assert_eq!(block.checked_text().map(str::len), text_len);
                    assert_eq!(
                        text_len.is_some(),
                        std::str::from_utf8(block.lines()).is_ok()
                    );
                    if text_len.is_some() {
                        text_blocks += 1;
                    } else {
                        byte_blocks += 1;
                    }
                    got.extend_from_slice(block.lines());
                },
            )
            .unwrap();
            assert!(got == input, "{threads} threads, blocks of {block_bytes}");
            assert!(
                text_blocks > 0 && byte_blocks > 0,
                "{text_blocks} {byte_blocks}"
            );
        }
    }

    #[test]
    fn lines_before_an_io_error_are_delivered() {
        /// `good` bytes, then an error.
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk on fire"));
                }
                let n = buf.len().min(1000);
                self.0.read(&mut buf[..n])
            }
        }
        let input: Vec<u8> = (0..300_000)
            .flat_map(|n| format!("line {n}\n").into_bytes())
            .collect();
        let cut = &input[..input.len() - 3];
        let mut got = Vec::new();
        let err = parallel_blocks(
            BufReader::new(Failing(cut)),
            3,
            BLOCK_BYTES,
            usize::MAX,
            || (),
            |(), lines| lines.to_vec(),
            |_, lines| got.extend_from_slice(&lines),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
        let whole = cut.iter().rposition(|&b| b == b'\n').unwrap() + 1;
        assert!(got == cut[..whole], "{} of {whole} bytes", got.len());
    }

    #[test]
    fn lines_longer_than_the_cap_are_read_past_not_held() {
        const MAX: usize = 100;
        // Every line, as read: its bytes when it is at most `MAX` long, else its length.
        let expect_of = |input: &[u8]| -> Vec<Result<Vec<u8>, u64>> {
            split_lines(input)
                .map(|l| match l.len() {
                    n if n > MAX => Err(n as u64),
                    _ => Ok(l.to_vec()),
                })
                .collect()
        };
        let mut input = Vec::new();
        for n in [10, 300, 64, 101, 102, 5000, 100, 1, 65, 250] {
            input.extend(std::iter::repeat_n(b'x', n - 1));
            input.push(b'\n');
        }
        for tail in [&b""[..], b"no newline", &[b'y'; 400]] {
            let input = [&input[..], tail].concat();
            let expect = expect_of(&input);
            for threads in [1, 2, 4] {
                let mut got = Vec::new();
                parallel_blocks(
                    &input[..],
                    threads,
                    64,
                    MAX,
                    || (),
                    |(), lines| split_lines(lines).map(<[u8]>::to_vec).collect::<Vec<_>>(),
                    |block, lines| {
                        got.extend(block.skipped_line().map(Err));
                        got.extend(lines.into_iter().map(Ok));
                    },
                )
                .unwrap();
                // A line one byte over the cap may still fit the block grown for it.
                let got: Vec<_> = got
                    .into_iter()
                    .map(|item| match item {
                        Ok(line) if line.len() > MAX => Err(line.len() as u64),
                        other => other,
                    })
                    .collect();
                assert_eq!(got, expect, "{threads} threads, tail {}", tail.len());
            }
        }
    }
}
