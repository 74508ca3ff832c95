//! Reading an output or error file in blocks of lines on worker threads, the lines handed back
//! in file order (owned, or borrowed from the block).

use std::io::BufRead;
use std::sync::Mutex;

use super::outcome::{LineProblem, OutcomeLine, OutcomeLineRef};
use super::parse::{is_blank, parse_line, scan_block_line};
use super::parsed::{Keeper, ParsedLine};
use super::reader::OutputReader;
use crate::blocks::{parallel_text_blocks, worker_threads};
use crate::error::Result;
use crate::jsonl::{find_newline, split_lines};

/// Like [`OutputReader`], but parses blocks of lines on `threads` worker threads (0: one per
/// available core). `on_item` gets exactly the items `OutputReader` would yield, in the same
/// order, on the calling thread; the result is the number of lines read, blank ones included.
/// Memory stays bounded: one block of about 256 KiB (and its parsed lines) per thread, plus
/// two. Blocks are read straight from the reader's source when its buffer is no bigger than a
/// block (`BufReader::new` has 8 KiB); a bigger buffer costs a copy through it.
///
/// An I/O error ends the reading: the lines read before it are delivered first, then it is
/// returned. [`read_output_parallel_ref`] does the same without copying each line's strings.
///
/// ```
/// use batch_format::read_output_parallel;
///
/// let file = br#"{"custom_id": "a", "response": null, "error": {"code": "batch_expired"}}
///
/// not json
/// "#;
/// let mut seen = Vec::new();
/// let lines = read_output_parallel(&file[..], 2, |item| match item {
///     Ok(line) => seen.push(format!("{} {}", line.line, line.custom_id)),
///     Err(problem) => seen.push(format!("{} {}", problem.line, problem.kind.as_str())),
/// })?;
/// assert_eq!(seen, ["1 a", "3 invalid_json"]);
/// assert_eq!(lines, 3);
/// # Ok::<(), batch_format::Error>(())
/// ```
pub fn read_output_parallel<R: BufRead + Send>(
    reader: R,
    threads: usize,
    mut on_item: impl FnMut(std::result::Result<OutcomeLine, LineProblem>),
) -> Result<u64> {
    let threads = worker_threads(threads);
    if threads == 1 {
        let mut lines = OutputReader::new(reader);
        for item in &mut lines {
            on_item(item?);
        }
        return Ok(lines.lines_read());
    }
    read_output_blocks(reader, threads, OUTPUT_BLOCK_BYTES, |item| {
        on_item(item.map(|line| line.to_line()));
    })
}

/// Like [`read_output_parallel`], but each readable line is lent to `on_item` as an
/// [`OutcomeLineRef`] whose strings (the response body included) borrow from the block of the
/// file being read: nothing is copied or allocated for it. For callers that look at each line
/// and keep little of it, e.g. matching it with
/// [`ResultMatcher::record_id`](crate::ResultMatcher::record_id);
/// [`OutcomeLineRef::to_line`] makes the owned [`OutcomeLine`]. Same items, order, memory bound
/// and errors as [`read_output_parallel`]; one worker thread at least.
///
/// ```
/// use batch_format::{OutcomeRef, ResultMatcher, read_output_parallel_ref};
///
/// let file = br#"{"custom_id": "a", "response": {"status_code": 200, "body": {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}}}
/// {"custom_id": "b", "response": null, "error": {"code": "batch_expired"}}
/// "#;
/// let mut matcher = ResultMatcher::new(["a".to_owned(), "b".to_owned(), "c".to_owned()]);
/// let mut tokens = 0;
/// read_output_parallel_ref(&file[..], 2, |item| {
///     if let Ok(line) = item {
///         matcher.record_id(line.custom_id);
///         if let OutcomeRef::Succeeded { usage: Some(usage), .. } = line.outcome {
///             tokens += usage.total_tokens;
///         }
///     }
/// })?;
/// assert_eq!(tokens, 7);
/// assert_eq!(matcher.finish().missing, ["c"]);
/// # Ok::<(), batch_format::Error>(())
/// ```
pub fn read_output_parallel_ref<R: BufRead + Send>(
    reader: R,
    threads: usize,
    on_item: impl FnMut(std::result::Result<OutcomeLineRef<'_>, LineProblem>),
) -> Result<u64> {
    read_output_blocks(reader, worker_threads(threads), OUTPUT_BLOCK_BYTES, on_item)
}

/// Size of the blocks [`read_output_parallel`] hands to workers. Smaller than validation's:
/// a block and what a worker made of it should stay in cache until the calling thread takes
/// them (measured: 256 KiB beat 128 KiB; 512 KiB and 1 MiB were no faster, and hold more).
const OUTPUT_BLOCK_BYTES: usize = 256 << 10;

/// [`read_output_parallel_ref`] on blocks of about `block_bytes`.
pub(super) fn read_output_blocks<R: BufRead + Send>(
    reader: R,
    threads: usize,
    block_bytes: usize,
    mut on_item: impl FnMut(std::result::Result<OutcomeLineRef<'_>, LineProblem>),
) -> Result<u64> {
    // Workers check a block as UTF-8 once and note where the strings of its lines are; only
    // strings that had to be unescaped (or all of them, in a block that is not UTF-8) are
    // copied, into the block's arena. The calling thread lends the lines out from the two.
    // Item lists and arenas go round, like blocks, so that no thread allocates them afresh.
    let spare = Mutex::new(Vec::<BlockItems>::new());
    // Workers number the lines of their block from 1; the calling thread, which knows how
    // many lines came before, shifts them.
    let mut before = 0u64;
    parallel_text_blocks(
        reader,
        threads,
        block_bytes,
        // Output lines are OpenAI's answers: each is read whole, however long.
        usize::MAX,
        || (),
        |(), block| {
            let reused = spare.lock().ok().and_then(|mut spare| spare.pop());
            let mut out = reused.unwrap_or_default();
            match block.text() {
                Ok(text) => out.parse_text(text),
                Err(_) => out.parse_bytes(block.lines()),
            }
            out
        },
        |block, mut out| {
            let text = block.checked_text().unwrap_or_default();
            let arena = out.arena.as_str();
            for item in out.items.drain(..) {
                match item {
                    Ok(parsed) => {
                        let mut line = parsed.as_ref(text, arena);
                        line.line += before;
                        on_item(Ok(line));
                    }
                    Err(mut problem) => {
                        problem.line += before;
                        on_item(Err(*problem));
                    }
                }
            }
            before += out.lines;
            if out.arena.capacity() <= 4 * OUTPUT_BLOCK_BYTES {
                out.lines = 0;
                out.arena.clear();
                if let Ok(mut spare) = spare.lock() {
                    spare.push(out);
                }
            }
        },
    )?;
    Ok(before)
}

/// What a worker made of one block: how many lines it has, the readable ones with the places
/// of their strings, and the problems.
#[derive(Default)]
struct BlockItems {
    lines: u64,
    items: Vec<ParsedLine>,
    /// The strings that are not in the block's text as they are.
    arena: String,
}

impl BlockItems {
    /// Reads the lines of a block that is UTF-8: each in place where it is a clean JSON object
    /// (or blank), else on its own, like [`OutputReader`] does.
    fn parse_text(&mut self, text: &str) {
        let mut keep = Keeper {
            base: text,
            arena: &mut self.arena,
        };
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            self.lines += 1;
            start = match scan_block_line(text, start, self.lines, &mut keep, &mut self.items) {
                Some(next) => next,
                None => {
                    let next = find_newline(&bytes[start..]).map_or(bytes.len(), |p| start + p + 1);
                    let line = &bytes[start..next];
                    if !is_blank(line) {
                        self.items.push(parse_line(self.lines, line, &mut keep));
                    }
                    next
                }
            };
        }
    }

    /// Reads the lines of a block that is not all UTF-8 one by one, copying their strings.
    fn parse_bytes(&mut self, block: &[u8]) {
        let mut keep = Keeper {
            base: "",
            arena: &mut self.arena,
        };
        for line in split_lines(block) {
            self.lines += 1;
            if !is_blank(line) {
                self.items.push(parse_line(self.lines, line, &mut keep));
            }
        }
    }
}
