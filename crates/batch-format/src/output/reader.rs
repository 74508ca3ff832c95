//! `OutputReader`: reads an output or error file one line at a time, in place in the reader's
//! buffer where a line fits.

use std::io::BufRead;

use super::outcome::{LineProblem, OutcomeLine};
use super::parse::{is_blank, parse_output_line};
use crate::error::Result;
use crate::jsonl::find_newline;

/// Reads an output or error file one line at a time.
///
/// Each item is `Ok(Ok(line))` for a readable line, `Ok(Err(problem))` for a bad line (reading
/// goes on), or `Err(Error::Io)` when the stream fails, after which the iterator ends. Blank
/// lines are skipped.
///
/// ```
/// use batch_format::{Outcome, OutputReader};
///
/// let file = br#"{"id": "batch_req_1", "custom_id": "request-3", "response": null, "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}
/// not json
/// "#;
/// let mut expired = Vec::new();
/// let mut bad_lines = Vec::new();
/// for item in OutputReader::new(&file[..]) {
///     match item? {
///         Ok(line) => {
///             if let Outcome::Failed { code, .. } = &line.outcome {
///                 expired.push((line.custom_id.clone(), code.clone()));
///             }
///         }
///         Err(problem) => bad_lines.push(problem.line),
///     }
/// }
/// assert_eq!(expired, [("request-3".to_string(), "batch_expired".to_string())]);
/// assert_eq!(bad_lines, [2]);
/// # Ok::<(), batch_format::Error>(())
/// ```
#[derive(Debug)]
pub struct OutputReader<R> {
    reader: R,
    /// A line that straddles refills of the reader's buffer, collected so far.
    carry: Vec<u8>,
    line: u64,
    done: bool,
}

impl<R: BufRead> OutputReader<R> {
    /// A reader positioned at the start of the file.
    pub fn new(reader: R) -> Self {
        OutputReader {
            reader,
            carry: Vec::new(),
            line: 0,
            done: false,
        }
    }

    /// Number of lines read so far, blank ones included.
    pub fn lines_read(&self) -> u64 {
        self.line
    }
}

/// Parses one line unless it is blank.
fn parse_nonblank(
    line: u64,
    bytes: &[u8],
) -> Option<std::result::Result<OutcomeLine, LineProblem>> {
    (!is_blank(bytes)).then(|| parse_output_line(line, bytes))
}

impl<R: BufRead> Iterator for OutputReader<R> {
    type Item = Result<std::result::Result<OutcomeLine, LineProblem>>;

    fn next(&mut self) -> Option<Self::Item> {
        // Lines that fit in the reader's buffer are parsed in place; only lines that straddle a
        // refill are copied.
        while !self.done {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            };
            if buf.is_empty() {
                self.done = true;
                if self.carry.is_empty() {
                    return None;
                }
                self.line += 1;
                let parsed = parse_nonblank(self.line, &self.carry);
                self.carry.clear();
                return parsed.map(Ok);
            }
            let Some(end) = find_newline(buf) else {
                self.carry.extend_from_slice(buf);
                let n = buf.len();
                self.reader.consume(n);
                continue;
            };
            self.line += 1;
            let parsed = if self.carry.is_empty() {
                parse_nonblank(self.line, &buf[..=end])
            } else {
                self.carry.extend_from_slice(&buf[..=end]);
                let parsed = parse_nonblank(self.line, &self.carry);
                self.carry.clear();
                parsed
            };
            self.reader.consume(end + 1);
            if let Some(parsed) = parsed {
                return Some(Ok(parsed));
            }
        }
        None
    }
}

impl<R: BufRead> std::iter::FusedIterator for OutputReader<R> {}

/// Reads a whole output or error file: the readable lines and the problems, in file order.
/// Only an I/O error is `Err`.
pub fn read_output<R: BufRead>(reader: R) -> Result<(Vec<OutcomeLine>, Vec<LineProblem>)> {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for item in OutputReader::new(reader) {
        match item? {
            Ok(line) => lines.push(line),
            Err(problem) => problems.push(problem),
        }
    }
    Ok((lines, problems))
}
