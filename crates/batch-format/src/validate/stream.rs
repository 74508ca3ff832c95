//! The streaming drivers: `validate_jsonl` reads lines straight out of the reader's buffer,
//! `validate_jsonl_parallel` hands blocks of lines to worker threads.

use std::io::BufRead;

use super::analyse::{analyse_line, scan_request};
use super::facts::{LineFacts, ObjectFacts};
use super::options::ValidationOptions;
use super::problem::Problem;
use super::tally::CountCache;
use super::validator::{ValidationSummary, Validator};
use crate::blocks::{BLOCK_BYTES, parallel_blocks, worker_threads};
use crate::error::Result;
use crate::jsonl::{Line, LineCarry, find_newline, for_each_line, split_lines};
use crate::scan::Scanner;

/// Validates a whole JSONL stream, calling `on_problem` for each problem in line order, then
/// for the file-level ones (`empty_file`, `too_many_lines`, `file_too_large`).
///
/// Lines are read straight from the reader's buffer, and each byte is looked at about once:
/// the scanner finds where a line ends while it checks it. Lines cut by a buffer refill are
/// copied into one reused buffer, up to 4 MiB: a longer line is a `line_too_large` problem,
/// read past without being held, so memory stays bounded. Only I/O errors are `Err`.
pub fn validate_jsonl<R: BufRead>(
    reader: R,
    opts: &ValidationOptions,
    on_problem: impl FnMut(Problem),
) -> Result<ValidationSummary> {
    validate_lines(reader, opts, opts.max_line_bytes, on_problem)
}

/// [`validate_jsonl`] holding lines of at most `max_line` bytes.
pub(super) fn validate_lines<R: BufRead>(
    mut reader: R,
    opts: &ValidationOptions,
    max_line: usize,
    mut on_problem: impl FnMut(Problem),
) -> Result<ValidationSummary> {
    let mut v = Validator::new(opts.clone());
    if opts.estimate_tokens {
        for_each_line(reader, max_line, |line| {
            v.push(line, max_line, &mut on_problem)
        })?;
        return Ok(v.finish(on_problem));
    }
    let mut carry = LineCarry::new(max_line);
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            if !carry.is_empty() {
                carry.take(|line| v.push(line, max_line, &mut on_problem));
            }
            return Ok(v.finish(on_problem));
        }
        let scanned = if carry.is_empty() {
            // A window at a time: an in-memory reader hands out the whole file at once, and a
            // line cut by the window's end is simply scanned again from the next window. The
            // window is no longer than the cap, so the lines it holds are all under it.
            let window = &buf[..buf.len().min(SCAN_WINDOW).min(max_line)];
            scan_lines(window, false, |len, facts| {
                v.summary.bytes += len as u64;
                v.apply(facts, &mut on_problem);
            })
        } else {
            0
        };
        // Else the end of the line cut by the last refill, or a first line cut by the end of
        // the buffer or longer than the window: held to the cap.
        let used = if scanned > 0 {
            scanned
        } else if let Some(end) = find_newline(buf) {
            if carry.is_empty() {
                v.push(
                    Line::capped(&buf[..=end], max_line),
                    max_line,
                    &mut on_problem,
                );
            } else {
                carry.push(&buf[..=end]);
                carry.take(|line| v.push(line, max_line, &mut on_problem));
            }
            end + 1
        } else {
            carry.push(buf);
            buf.len()
        };
        reader.consume(used);
    }
}

/// Bytes scanned at a time by `validate_jsonl`; lines longer than this take a slower path.
const SCAN_WINDOW: usize = 64 * 1024;

/// One line read straight out of a buffer of many lines.
enum LineScan<'a> {
    /// The line ended with `\n`; the next line starts at `next`.
    Done { facts: LineFacts<'a>, next: usize },
    /// The text ended before the line did; `facts` are right if that is the end of the file.
    RanOut { facts: LineFacts<'a> },
}

/// Reads the line starting at `start`, finding its end on the way.
fn scan_one(text: &[u8], start: usize) -> LineScan<'_> {
    fn found(obj: Option<ObjectFacts<'_>>) -> LineFacts<'_> {
        obj.map_or(LineFacts::NotObject, LineFacts::Object)
    }
    let mut s = Scanner::for_line(text, start);
    s.ws();
    match s.peek() {
        None => {
            return LineScan::RanOut {
                facts: LineFacts::Blank,
            };
        }
        Some(b'\n') => {
            return LineScan::Done {
                facts: LineFacts::Blank,
                next: s.pos() + 1,
            };
        }
        Some(_) => {}
    }
    // The scanner never steps over a line break, so a bad line ends at the first `\n` after
    // the point where it went wrong.
    let resume = match scan_request(&mut s, None) {
        Ok(obj) => {
            s.ws();
            match s.peek() {
                Some(b'\n') => {
                    return LineScan::Done {
                        facts: found(obj),
                        next: s.pos() + 1,
                    };
                }
                None => return LineScan::RanOut { facts: found(obj) },
                Some(_) => s.pos(),
            }
        }
        Err(e) => e.at.min(text.len()),
    };
    match find_newline(&text[resume..]) {
        Some(end) => LineScan::Done {
            facts: LineFacts::NotJson,
            next: resume + end + 1,
        },
        None => LineScan::RanOut {
            facts: LineFacts::NotJson,
        },
    }
}

/// Reads the lines of `text`, calling `f(bytes, facts)` for each, and returns how many bytes
/// it read: all of them `at_eof`, else up to the end of the last complete line.
fn scan_lines<'a>(text: &'a [u8], at_eof: bool, mut f: impl FnMut(usize, LineFacts<'a>)) -> usize {
    let mut start = 0;
    while start < text.len() {
        match scan_one(text, start) {
            LineScan::Done { facts, next } => {
                f(next - start, facts);
                start = next;
            }
            LineScan::RanOut { facts } => {
                if at_eof {
                    f(text.len() - start, facts);
                    start = text.len();
                }
                break;
            }
        }
    }
    start
}

/// Like [`validate_jsonl`], but reads and parses blocks of lines on `threads` worker threads
/// (0: one per available core). Problems still arrive in line order, on the calling thread,
/// and the summary is the same. Memory stays bounded: one block of about 1 MiB per thread,
/// plus two, and one line of at most 4 MiB.
pub fn validate_jsonl_parallel<R: BufRead + Send>(
    reader: R,
    opts: &ValidationOptions,
    threads: usize,
    on_problem: impl FnMut(Problem),
) -> Result<ValidationSummary> {
    validate_blocks(reader, opts, threads, opts.max_line_bytes, on_problem)
}

/// [`validate_jsonl_parallel`] holding lines of at most `max_line` bytes.
pub(super) fn validate_blocks<R: BufRead + Send>(
    reader: R,
    opts: &ValidationOptions,
    threads: usize,
    max_line: usize,
    mut on_problem: impl FnMut(Problem),
) -> Result<ValidationSummary> {
    let threads = worker_threads(threads);
    if threads == 1 {
        return validate_lines(reader, opts, max_line, on_problem);
    }
    let mut validator = Validator::new(opts.clone());
    let estimate = opts.estimate_tokens;
    let too_long = |bytes: usize| LineFacts::TooLong {
        bytes: bytes as u64,
        max: max_line,
    };
    parallel_blocks(
        reader,
        threads,
        BLOCK_BYTES,
        max_line,
        || estimate.then(CountCache::default),
        |cache, lines| {
            let mut facts = Vec::new();
            match cache.as_mut() {
                None => {
                    scan_lines(lines, true, |len, f| {
                        facts.push(if len > max_line {
                            too_long(len)
                        } else {
                            f.into_owned()
                        });
                    });
                }
                Some(cache) => facts.extend(split_lines(lines).map(|line| {
                    if line.len() > max_line {
                        too_long(line.len())
                    } else {
                        analyse_line(line, Some(cache)).into_owned()
                    }
                })),
            }
            facts
        },
        |block, facts| {
            if let Some(bytes) = block.skipped_line() {
                validator.push(Line::TooLong(bytes), max_line, &mut on_problem);
            }
            validator.summary.bytes += block.lines().len() as u64;
            for f in facts {
                validator.apply(f, &mut on_problem);
            }
        },
    )?;
    Ok(validator.finish(on_problem))
}
