//! Streaming reader for batch output and error files: one [`OutcomeLine`] per request line, bad
//! lines reported as [`LineProblem`]s without stopping, and [`ResultMatcher`] to check the
//! results against the ids that were sent.
//!
//! Lines follow `BatchRequestOutput`: `{id, custom_id, response: {status_code, request_id,
//! body} | null, error: {code, message} | null}`. Unknown fields are ignored everywhere, and
//! response bodies are kept raw so that nothing a caller might need is lost.

use std::fmt;
use std::hash::BuildHasher;
use std::io::BufRead;
use std::ops::AddAssign;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::blocks::{parallel_text_blocks, worker_threads};
use crate::error::Result;
use crate::field::Field;
use crate::jsonl::{find_newline, split_lines};
use crate::scan::{Nested, Scan, Scanner};

/// What happened to one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// The endpoint answered with a 2xx status; `body` is its response body.
    Succeeded {
        /// HTTP status, 200 in practice.
        status: u16,
        /// `response.request_id` (32 hex digits on OpenAI).
        request_id: Option<String>,
        /// The response body exactly as it appeared in the line.
        body: RawJson,
        /// `body.usage`, when present and readable.
        usage: Option<Usage>,
    },
    /// The endpoint answered with an error status (4xx/5xx, or anything not 2xx). These lines
    /// go to the error file.
    HttpError {
        /// HTTP status, e.g. 400 or 429.
        status: u16,
        /// `response.request_id`.
        request_id: Option<String>,
        /// `body.error`, read liberally; fields that are absent or oddly typed are `None`.
        error: ApiErrorBody,
        /// The response body exactly as it appeared in the line.
        body: RawJson,
    },
    /// The request never got a response: `response` is null and `error` says why, e.g.
    /// `batch_expired`.
    Failed {
        /// `error.code`, e.g. `batch_expired`; empty when absent.
        code: String,
        /// `error.message`; empty when absent.
        message: String,
    },
}

impl Outcome {
    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }

    /// Token usage of a successful request.
    pub fn usage(&self) -> Option<&Usage> {
        match self {
            Outcome::Succeeded { usage, .. } => usage.as_ref(),
            _ => None,
        }
    }
}

/// A JSON value kept as the text it was read from, which is known to be valid JSON.
///
/// Not a `Box<RawValue>`: serde_json can only build one by parsing the text again, and the
/// reader has already checked it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// Deserialises the value, e.g. into a `serde_json::Value` or a typed response.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> serde_json::Result<T> {
        serde_json::from_str(&self.0)
    }

    /// The same text as a serde_json `RawValue` (this parses it once more).
    pub fn to_raw_value(&self) -> Box<RawValue> {
        RawValue::from_string(self.0.to_string()).expect("RawJson holds valid JSON")
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.0)
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `error` object of an OpenAI error body: `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiErrorBody {
    /// Human-readable message.
    pub message: Option<String>,
    /// Error type, e.g. `invalid_request_error` or `insufficient_quota`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The offending parameter, e.g. `max_tokens`.
    pub param: Option<String>,
    /// Machine-readable code, e.g. `rate_limit_exceeded` (numbers are kept as text).
    pub code: Option<String>,
}

/// Token usage of one response, under either naming: chat and embeddings say
/// `prompt_tokens`/`completion_tokens`, responses and images say `input_tokens`/`output_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// `input_tokens` or `prompt_tokens`.
    pub input_tokens: u64,
    /// `output_tokens` or `completion_tokens` (0 for embeddings).
    pub output_tokens: u64,
    /// `total_tokens`, or input + output when absent.
    pub total_tokens: u64,
    /// `input_tokens_details.cached_tokens` or `prompt_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
    /// `output_tokens_details.reasoning_tokens` or
    /// `completion_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
        self.total_tokens += rhs.total_tokens;
        self.cached_tokens = add(self.cached_tokens, rhs.cached_tokens);
        self.reasoning_tokens = add(self.reasoning_tokens, rhs.reasoning_tokens);
    }
}

/// One readable line of an output or error file.
#[derive(Debug, Clone)]
pub struct OutcomeLine {
    /// 1-based line number in the file.
    pub line: u64,
    /// The line's `id` (`batch_req_…`).
    pub id: Option<String>,
    /// The `custom_id` of the request this line answers.
    pub custom_id: String,
    /// What happened.
    pub outcome: Outcome,
}

/// A readable line of an output or error file as [`read_output_parallel_ref`] lends it: an
/// [`OutcomeLine`] whose strings borrow from the block of the file being read.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeLineRef<'a> {
    /// 1-based line number in the file.
    pub line: u64,
    /// The line's `id` (`batch_req_…`).
    pub id: Option<&'a str>,
    /// The `custom_id` of the request this line answers.
    pub custom_id: &'a str,
    /// What happened.
    pub outcome: OutcomeRef<'a>,
}

impl OutcomeLineRef<'_> {
    /// The same line, owning its strings.
    pub fn to_line(&self) -> OutcomeLine {
        OutcomeLine {
            line: self.line,
            id: self.id.map(str::to_owned),
            custom_id: self.custom_id.to_owned(),
            outcome: self.outcome.to_outcome(),
        }
    }
}

/// What happened to one request, borrowed: an [`Outcome`] whose strings borrow from the file
/// being read.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum OutcomeRef<'a> {
    /// The endpoint answered with a 2xx status; `body` is its response body.
    Succeeded {
        /// HTTP status, 200 in practice.
        status: u16,
        /// `response.request_id`.
        request_id: Option<&'a str>,
        /// The response body exactly as it appeared in the line (valid JSON).
        body: &'a str,
        /// `body.usage`, when present and readable.
        usage: Option<Usage>,
    },
    /// The endpoint answered with an error status (4xx/5xx, or anything not 2xx).
    HttpError {
        /// HTTP status, e.g. 400 or 429.
        status: u16,
        /// `response.request_id`.
        request_id: Option<&'a str>,
        /// `body.error`, read liberally; fields that are absent or oddly typed are `None`.
        error: &'a ApiErrorBody,
        /// The response body exactly as it appeared in the line (valid JSON).
        body: &'a str,
    },
    /// The request never got a response: `response` is null and `error` says why.
    Failed {
        /// `error.code`, e.g. `batch_expired`; empty when absent.
        code: &'a str,
        /// `error.message`; empty when absent.
        message: &'a str,
    },
}

impl OutcomeRef<'_> {
    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, OutcomeRef::Succeeded { .. })
    }

    /// The same outcome, owning its strings.
    pub fn to_outcome(&self) -> Outcome {
        match *self {
            OutcomeRef::Succeeded {
                status,
                request_id,
                body,
                usage,
            } => Outcome::Succeeded {
                status,
                request_id: request_id.map(str::to_owned),
                body: RawJson(body.into()),
                usage,
            },
            OutcomeRef::HttpError {
                status,
                request_id,
                error,
                body,
            } => Outcome::HttpError {
                status,
                request_id: request_id.map(str::to_owned),
                error: error.clone(),
                body: RawJson(body.into()),
            },
            OutcomeRef::Failed { code, message } => Outcome::Failed {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        }
    }
}

/// What is wrong with an unreadable line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LineProblemKind {
    /// Not UTF-8, not JSON, or not a JSON object.
    InvalidJson,
    /// `custom_id` is missing, null or not a string.
    MissingCustomId,
    /// Both `response` and `error` are missing or null.
    NoOutcome,
    /// `response` is not an object or has no usable `status_code`.
    InvalidResponse,
    /// `error` is not an object.
    InvalidError,
}

impl LineProblemKind {
    /// Snake-case name, e.g. `"invalid_json"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LineProblemKind::InvalidJson => "invalid_json",
            LineProblemKind::MissingCustomId => "missing_custom_id",
            LineProblemKind::NoOutcome => "no_outcome",
            LineProblemKind::InvalidResponse => "invalid_response",
            LineProblemKind::InvalidError => "invalid_error",
        }
    }
}

/// A line of an output or error file that could not be read as an outcome. It carries the raw
/// line, which is the first thing anyone debugging it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineProblem {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong.
    pub kind: LineProblemKind,
    /// The line's `custom_id`, when it could be read.
    pub custom_id: Option<String>,
    /// Explanation.
    pub message: String,
    /// The line as read, without its line ending (invalid UTF-8 replaced).
    pub raw: String,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)?;
        if let Some(id) = &self.custom_id {
            write!(f, " (custom_id '{id}')")?;
        }
        Ok(())
    }
}

impl std::error::Error for LineProblem {}

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

/// Blank lines are skipped (but counted).
fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
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
/// and keep little of it, e.g. matching it with [`ResultMatcher::record_id`];
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
fn read_output_blocks<R: BufRead + Send>(
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

/// Where a kept string of a parsed line is: in the text it was read from (a block's, or a
/// line's), or copied into an arena.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    copied: bool,
}

impl Span {
    fn get<'a>(self, text: &'a str, arena: &'a str) -> &'a str {
        let from = if self.copied { arena } else { text };
        &from[self.start..self.end]
    }
}

/// Keeps the strings of parsed lines: a string that lies in `base` as its place there, any
/// other (unescaped, or made up) as a copy in `arena`.
struct Keeper<'k> {
    base: &'k str,
    arena: &'k mut String,
}

impl Keeper<'_> {
    fn keep(&mut self, s: &str) -> Span {
        // Only addresses are compared: a `&str` whose bytes are inside `base` is part of it,
        // and starts and ends on its character boundaries.
        let offset = s.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr());
        if offset <= self.base.len() && s.len() <= self.base.len() - offset {
            return Span {
                start: offset,
                end: offset + s.len(),
                copied: false,
            };
        }
        let start = self.arena.len();
        self.arena.push_str(s);
        Span {
            start,
            end: self.arena.len(),
            copied: true,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One pass per line: a validating scanner that picks out the few fields needed on the way.

/// The fields of an output line that matter, borrowed from it.
#[derive(Default)]
struct LineFields<'a> {
    id: Field<'a>,
    custom_id: Field<'a>,
    response: Nested<ResponseFields<'a>>,
    error: Nested<ErrorFields<'a>>,
}

#[derive(Default)]
struct ResponseFields<'a> {
    status_code: Field<'a>,
    request_id: Field<'a>,
    body: Option<BodyFields<'a>>,
}

#[derive(Default)]
struct ErrorFields<'a> {
    code: Field<'a>,
    message: Field<'a>,
}

/// A response body: its text, its top-level `usage` when readable, and the text of its
/// top-level `error` member.
struct BodyFields<'a> {
    raw: &'a str,
    usage: Option<Usage>,
    error: Option<&'a str>,
}

/// Reads the fields of one line (without its line ending), checking that the whole line is
/// valid JSON. `Ok(None)`: valid JSON, but not an object.
fn scan_line(text: &str) -> Scan<Option<LineFields<'_>>> {
    let mut s = Scanner::new(text);
    s.ws();
    if s.peek() != Some(b'{') {
        s.value()?;
        s.end()?;
        return Ok(None);
    }
    let line = scan_fields(&mut s)?;
    s.end()?;
    Ok(Some(line))
}

/// Line `line`, at `start` of a block's text, read in place: its item goes to `items` (none
/// for a blank line), and the result is where the next line starts. `None` when the line is
/// anything but a valid JSON object or blank: it is then read on its own ([`parse_line`]),
/// which words the problem.
fn scan_block_line(
    text: &str,
    start: usize,
    line: u64,
    keep: &mut Keeper<'_>,
    items: &mut Vec<ParsedLine>,
) -> Option<usize> {
    let mut s = Scanner::for_text_line(text, start);
    s.ws();
    let fields = if s.peek() == Some(b'{') {
        let fields = scan_fields(&mut s).ok()?;
        s.ws();
        Some(fields)
    } else {
        None
    };
    let next = match s.peek() {
        None => text.len(),
        Some(b'\n') => s.pos() + 1,
        Some(_) => return None,
    };
    if let Some(fields) = fields {
        let raw = trim_line_ending(&text.as_bytes()[start..next]);
        items.push(line_outcome(line, fields, raw, keep));
    }
    Some(next)
}

/// The members of the object at the cursor, with the fields that matter picked out.
fn scan_fields<'a>(s: &mut Scanner<'a>) -> Scan<LineFields<'a>> {
    let mut line = LineFields::default();
    // Repeated keys: the last wins, as in Python's json module.
    s.object(|s, key| {
        match key.as_ref() {
            b"id" => line.id = s.field()?,
            b"custom_id" => line.custom_id = s.field()?,
            b"response" => {
                line.response = s.nested(|s, key, r: &mut ResponseFields<'_>| {
                    match key {
                        b"status_code" => r.status_code = s.field()?,
                        b"request_id" => r.request_id = s.field()?,
                        b"body" => r.body = Some(scan_body(s)?),
                        _ => s.skip()?,
                    }
                    Ok(())
                })?;
            }
            b"error" => {
                line.error = s.nested(|s, key, e: &mut ErrorFields<'_>| {
                    match key {
                        b"code" => e.code = s.field()?,
                        b"message" => e.message = s.field()?,
                        _ => s.skip()?,
                    }
                    Ok(())
                })?;
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(line)
}

/// A response body: kept whole, with its top-level `usage` read and `error` noted on the way.
fn scan_body<'a>(s: &mut Scanner<'a>) -> Scan<BodyFields<'a>> {
    let start = s.pos();
    let (mut usage, mut error) = (None, None);
    if s.peek() == Some(b'{') {
        s.object(|s, key| {
            match key.as_ref() {
                b"usage" => {
                    // Read as it is checked when plain; else checked, and read by serde.
                    let mut plain = s.clone();
                    usage = match scan_usage(&mut plain) {
                        Ok(raw) => {
                            *s = plain;
                            Some(raw.into_usage())
                        }
                        Err(_) => read_usage(s.value()?),
                    };
                }
                b"error" => error = Some(s.value()?),
                _ => s.skip()?,
            }
            Ok(())
        })?;
    } else {
        s.skip()?;
    }
    Ok(BodyFields {
        raw: s.since(start),
        usage,
        error,
    })
}

/// Parses one non-blank line.
fn parse_output_line(line: u64, bytes: &[u8]) -> std::result::Result<OutcomeLine, LineProblem> {
    let bytes = trim_line_ending(bytes);
    let text = line_text(line, bytes).map_err(|problem| *problem)?;
    let mut arena = String::new();
    let mut keep = Keeper {
        base: text,
        arena: &mut arena,
    };
    let parsed = parse_text_line(line, text, &mut keep).map_err(|problem| *problem)?;
    Ok(parsed.as_ref(text, &arena).to_line())
}

/// Parses one non-blank line, keeping each string it needs with `keep`.
fn parse_line(line: u64, bytes: &[u8], keep: &mut Keeper<'_>) -> ParsedLine {
    let bytes = trim_line_ending(bytes);
    parse_text_line(line, line_text(line, bytes)?, keep)
}

/// A line (without its line ending) as text.
fn line_text(line: u64, bytes: &[u8]) -> std::result::Result<&str, Box<LineProblem>> {
    std::str::from_utf8(bytes).map_err(|e| {
        problem(
            line,
            bytes,
            LineProblemKind::InvalidJson,
            None,
            format!("The line is not UTF-8: {e}."),
        )
    })
}

/// Parses one non-blank line of text (without its line ending).
fn parse_text_line(line: u64, text: &str, keep: &mut Keeper<'_>) -> ParsedLine {
    let json_problem = |message| {
        problem(
            line,
            text.as_bytes(),
            LineProblemKind::InvalidJson,
            None,
            message,
        )
    };
    match scan_line(text) {
        Ok(Some(fields)) => line_outcome(line, fields, text.as_bytes(), keep),
        Ok(None) => Err(json_problem("The line is not a JSON object.".to_owned())),
        Err(e) => Err(json_problem(format!("The line is not valid JSON: {e}."))),
    }
}

/// A problem with line `line`, whose text (without its line ending) is `raw` (boxed: problems
/// are rare, and readable lines move about the less for it).
fn problem(
    line: u64,
    raw: &[u8],
    kind: LineProblemKind,
    custom_id: Option<&str>,
    message: String,
) -> Box<LineProblem> {
    Box::new(LineProblem {
        line,
        kind,
        custom_id: custom_id.map(str::to_owned),
        message,
        raw: String::from_utf8_lossy(raw).into_owned(),
    })
}

/// What the fields of a line (whose text is `raw`) say, keeping each string with `keep`.
fn line_outcome(
    line: u64,
    fields: LineFields<'_>,
    raw: &[u8],
    keep: &mut Keeper<'_>,
) -> ParsedLine {
    let Some(custom_id) = fields.custom_id.as_str() else {
        return Err(problem(
            line,
            raw,
            LineProblemKind::MissingCustomId,
            None,
            "The line has no string 'custom_id'.".to_owned(),
        ));
    };
    let problem = |kind, message: &str| problem(line, raw, kind, Some(custom_id), message.into());
    let outcome = match (fields.response, fields.error) {
        (Nested::Object(response), _) => response_outcome(response, keep)
            .map_err(|message| problem(LineProblemKind::InvalidResponse, message))?,
        (Nested::NotObject, _) => {
            return Err(problem(
                LineProblemKind::InvalidResponse,
                "'response' is not an object.",
            ));
        }
        (Nested::Missing | Nested::Null, Nested::Object(error)) => ParsedOutcome::Failed {
            code: keep.keep(error.code.as_str().unwrap_or_default()),
            message: keep.keep(error.message.as_str().unwrap_or_default()),
        },
        (Nested::Missing | Nested::Null, Nested::NotObject) => {
            return Err(problem(
                LineProblemKind::InvalidError,
                "'error' is not an object.",
            ));
        }
        (Nested::Missing | Nested::Null, Nested::Missing | Nested::Null) => {
            return Err(problem(
                LineProblemKind::NoOutcome,
                "The line has neither a 'response' nor an 'error'.",
            ));
        }
    };
    Ok(Parsed {
        line,
        id: fields.id.as_str().map(|id| keep.keep(id)),
        custom_id: keep.keep(custom_id),
        outcome,
    })
}

/// Turns a `response` object into a success or an HTTP error; `Err` explains why it cannot.
fn response_outcome(
    response: ResponseFields<'_>,
    keep: &mut Keeper<'_>,
) -> std::result::Result<ParsedOutcome, &'static str> {
    let status = match response.status_code {
        Field::Count(n) => u16::try_from(n).ok().filter(|s| (100..=599).contains(s)),
        _ => None,
    }
    .ok_or("'response.status_code' is missing or not an HTTP status.")?;
    let request_id = response.request_id.as_str().map(|id| keep.keep(id));
    let (body, usage, error) = match response.body {
        Some(b) => (keep.keep(b.raw), b.usage, b.error),
        None => (keep.keep("null"), None, None),
    };
    Ok(if (200..300).contains(&status) {
        ParsedOutcome::Succeeded {
            status,
            request_id,
            usage,
            body,
        }
    } else {
        ParsedOutcome::HttpError {
            status,
            request_id,
            error: Box::new(error.map(read_error_body).unwrap_or_default()),
            body,
        }
    })
}

/// What [`parse_line`] makes of a line.
type ParsedLine = std::result::Result<Parsed, Box<LineProblem>>;

/// A readable line as [`parse_line`] leaves it: an [`OutcomeLineRef`] whose strings (the body
/// included) are [`Span`]s.
struct Parsed {
    line: u64,
    id: Option<Span>,
    custom_id: Span,
    outcome: ParsedOutcome,
}

/// An [`OutcomeRef`] whose strings are [`Span`]s.
enum ParsedOutcome {
    Succeeded {
        status: u16,
        request_id: Option<Span>,
        body: Span,
        usage: Option<Usage>,
    },
    HttpError {
        status: u16,
        request_id: Option<Span>,
        error: Box<ApiErrorBody>,
        body: Span,
    },
    Failed {
        code: Span,
        message: Span,
    },
}

impl Parsed {
    /// The line, its strings found in `text` (what it was read from) and `arena`.
    fn as_ref<'a>(&'a self, text: &'a str, arena: &'a str) -> OutcomeLineRef<'a> {
        let get = |span: Span| span.get(text, arena);
        let outcome = match &self.outcome {
            &ParsedOutcome::Succeeded {
                status,
                request_id,
                body,
                usage,
            } => OutcomeRef::Succeeded {
                status,
                request_id: request_id.map(get),
                body: get(body),
                usage,
            },
            ParsedOutcome::HttpError {
                status,
                request_id,
                error,
                body,
            } => OutcomeRef::HttpError {
                status: *status,
                request_id: request_id.map(get),
                error,
                body: get(*body),
            },
            &ParsedOutcome::Failed { code, message } => OutcomeRef::Failed {
                code: get(code),
                message: get(message),
            },
        };
        OutcomeLineRef {
            line: self.line,
            id: self.id.map(get),
            custom_id: get(self.custom_id),
            outcome,
        }
    }
}

fn trim_line_ending(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// `usage`, field by field, as serde reads it.
#[derive(Default, Deserialize)]
struct RawUsage {
    input_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    output_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
    prompt_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
}

#[derive(Default, Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

/// A `usage` object, under either naming; `None` when it is not a readable object.
fn read_usage(usage: &str) -> Option<Usage> {
    if !usage.starts_with('{') {
        return None;
    }
    serde_json::from_str::<RawUsage>(usage)
        .ok()
        .map(RawUsage::into_usage)
}

impl RawUsage {
    fn into_usage(self) -> Usage {
        let input = self.input_tokens.or(self.prompt_tokens).unwrap_or(0);
        let output = self.output_tokens.or(self.completion_tokens).unwrap_or(0);
        let input_details = self.input_tokens_details.or(self.prompt_tokens_details);
        let output_details = self
            .output_tokens_details
            .or(self.completion_tokens_details);
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: self.total_tokens.unwrap_or(input + output),
            cached_tokens: input_details.and_then(|d| d.cached_tokens),
            reasoning_tokens: output_details.and_then(|d| d.reasoning_tokens),
        }
    }
}

/// A plain `usage` object at the cursor (each known member at most once, a count or `null`,
/// the details objects or `null`), read as the scanner checks it, which is much faster than
/// serde. An error for anything else (left to [`read_usage`]): what this reads is always what
/// serde makes of the text.
fn scan_usage(s: &mut Scanner<'_>) -> Scan<RawUsage> {
    if s.peek() != Some(b'{') {
        return s.fail("not an object");
    }
    let mut raw = RawUsage::default();
    let mut seen = 0u16;
    s.object(|s, key| {
        let (bit, count, details) = match key.as_ref() {
            b"input_tokens" => (0, Some(&mut raw.input_tokens), None),
            b"prompt_tokens" => (1, Some(&mut raw.prompt_tokens), None),
            b"output_tokens" => (2, Some(&mut raw.output_tokens), None),
            b"completion_tokens" => (3, Some(&mut raw.completion_tokens), None),
            b"total_tokens" => (4, Some(&mut raw.total_tokens), None),
            b"input_tokens_details" => (5, None, Some(&mut raw.input_tokens_details)),
            b"prompt_tokens_details" => (6, None, Some(&mut raw.prompt_tokens_details)),
            b"output_tokens_details" => (7, None, Some(&mut raw.output_tokens_details)),
            b"completion_tokens_details" => (8, None, Some(&mut raw.completion_tokens_details)),
            _ => return s.skip(),
        };
        if seen & (1 << bit) != 0 {
            return s.fail("repeated key");
        }
        seen |= 1 << bit;
        if let Some(count) = count {
            *count = scan_count(s)?;
        }
        if let Some(details) = details {
            *details = scan_details(s)?;
        }
        Ok(())
    })?;
    Ok(raw)
}

/// A token count (an integer that fits `u64`) or `null`.
fn scan_count(s: &mut Scanner<'_>) -> Scan<Option<u64>> {
    match s.field()? {
        Field::Count(n) => Ok(Some(n)),
        Field::Null => Ok(None),
        _ => s.fail("not a count"),
    }
}

/// A details object of counts, or `null`.
fn scan_details(s: &mut Scanner<'_>) -> Scan<Option<Details>> {
    let mut seen = 0u8;
    let details = s.nested(|s, key, d: &mut Details| {
        let (bit, count) = match key {
            b"cached_tokens" => (1, &mut d.cached_tokens),
            b"reasoning_tokens" => (2, &mut d.reasoning_tokens),
            _ => return s.skip(),
        };
        if seen & bit != 0 {
            return s.fail("repeated key");
        }
        seen |= bit;
        *count = scan_count(s)?;
        Ok(())
    })?;
    match details {
        Nested::Object(d) => Ok(Some(d)),
        Nested::Null => Ok(None),
        Nested::Missing | Nested::NotObject => s.fail("not an object"),
    }
}

/// A body's `error` object, each field taken when it is a string (or, for `code`, a number).
fn read_error_body(error: &str) -> ApiErrorBody {
    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(default, borrow)]
        message: Field<'a>,
        #[serde(default, borrow, rename = "type")]
        kind: Field<'a>,
        #[serde(default, borrow)]
        param: Field<'a>,
        #[serde(default, borrow)]
        code: Field<'a>,
    }
    if !error.starts_with('{') {
        return ApiErrorBody::default();
    }
    let Ok(fields) = serde_json::from_str::<Fields<'_>>(error) else {
        return ApiErrorBody::default();
    };
    let text = |f: &Field<'_>| f.as_str().map(str::to_owned);
    ApiErrorBody {
        message: text(&fields.message),
        kind: text(&fields.kind),
        param: text(&fields.param),
        code: match &fields.code {
            Field::Count(n) => Some(n.to_string()),
            other => text(other),
        },
    }
}

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

    /// Records a line for `custom_id`, e.g. from a [`LineProblem`] that named one, or from an
    /// [`OutcomeLineRef`]; see [`ResultMatcher::record`].
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
        let entry = u32::try_from(self.ids.len() + 1).expect("fewer than 4 billion ids");
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
            self.table[slot] = u32::try_from(place + 1).expect("fewer than 4 billion ids");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{BufReader, Read};

    use super::*;

    /// A success line in the real format (CUR cassette, with `choices` and `usage` filled in).
    const SUCCESS: &str = r#"{"id": "batch_req_6780bb36c8508190a5254f418acd5ed0", "custom_id": "0", "response": {"status_code": 200, "request_id": "ed3ad7feb8ad212a440ab12a1175798e", "body": {"id": "chatcmpl-Ao2bZUcX4NWHN7CDnc08E2pPhqQ0Q", "object": "chat.completion", "created": 1736489777, "model": "gpt-3.5-turbo-0125", "choices": [{"index": 0, "message": {"role": "assistant", "content": "2 + 2 equals 4.", "refusal": null}, "logprobs": null, "finish_reason": "stop"}], "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}, "service_tier": "default", "system_fingerprint": null}}, "error": null}"#;
    /// A real 429 error-file line, verbatim from observed-behaviour.md §3.
    const QUOTA_429: &str = r#"{"id": "batch_req_67fe330d8b5481908f01ae063d9b8e2e", "custom_id": "sou_2003_115", "response": {"status_code": 429, "request_id": "97d81ac7354608175784538d9d367611", "body": {"error": {"message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}}, "error": null}"#;
    /// The guide's batch_expired line, verbatim.
    const EXPIRED: &str = r#"{"id": "batch_req_123", "custom_id": "request-3", "response": null, "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}"#;

    fn render_usage(u: &Usage) -> String {
        let mut s = format!(
            "usage={}/{}/{}",
            u.input_tokens, u.output_tokens, u.total_tokens
        );
        if let Some(c) = u.cached_tokens {
            s.push_str(&format!(" cached={c}"));
        }
        if let Some(r) = u.reasoning_tokens {
            s.push_str(&format!(" reasoning={r}"));
        }
        s
    }

    fn render(item: &std::result::Result<OutcomeLine, LineProblem>) -> String {
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
        match item {
            Ok(l) => {
                let head = format!("{} {} {}", l.line, opt(&l.id), l.custom_id);
                match &l.outcome {
                    Outcome::Succeeded {
                        status,
                        request_id,
                        usage,
                        ..
                    } => format!(
                        "{head} ok {status} req={} {}",
                        opt(request_id),
                        usage.as_ref().map_or("usage=-".into(), render_usage)
                    ),
                    Outcome::HttpError { status, error, .. } => format!(
                        "{head} http_error {status} type={} code={} param={}: {}",
                        opt(&error.kind),
                        opt(&error.code),
                        opt(&error.param),
                        opt(&error.message)
                    ),
                    Outcome::Failed { code, message } => {
                        format!("{head} failed {code}: {message}")
                    }
                }
            }
            Err(p) => format!(
                "{} problem {} id={}: {}",
                p.line,
                p.kind.as_str(),
                opt(&p.custom_id),
                p.message
            ),
        }
    }

    fn check(input: &str, expect: &str) {
        let got: Vec<String> = OutputReader::new(input.as_bytes())
            .map(|item| render(&item.unwrap()))
            .collect();
        let expect: Vec<&str> = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(got, expect, "input:\n{input}");
    }

    #[test]
    fn real_format_lines() {
        check(
            &format!("{SUCCESS}\n{QUOTA_429}\n{EXPIRED}\n"),
            "
            1 batch_req_6780bb36c8508190a5254f418acd5ed0 0 ok 200 req=ed3ad7feb8ad212a440ab12a1175798e usage=24/9/33 cached=0 reasoning=0
            2 batch_req_67fe330d8b5481908f01ae063d9b8e2e sou_2003_115 http_error 429 type=insufficient_quota code=insufficient_quota param=-: You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.
            3 batch_req_123 request-3 failed batch_expired: This request could not be executed before the completion window expired.
            ",
        );
    }

    #[test]
    fn success_keeps_the_raw_body() {
        let (lines, problems) = read_output(SUCCESS.as_bytes()).unwrap();
        assert!(problems.is_empty());
        let Outcome::Succeeded { body, .. } = &lines[0].outcome else {
            panic!("{:?}", lines[0]);
        };
        let body: serde_json::Value = serde_json::from_str(body.get()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "2 + 2 equals 4.");
        assert!(lines[0].outcome.is_success());
        assert_eq!(lines[0].outcome.usage().unwrap().total_tokens, 33);
    }

    #[test]
    fn usage_under_either_naming() {
        let line = |id: &str, body: &str| {
            format!(
                r#"{{"id":"r","custom_id":"{id}","response":{{"status_code":200,"request_id":"x","body":{body}}},"error":null}}"#
            )
        };
        check(
            &[
                line(
                    "responses",
                    r#"{"object":"response","usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":2},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":18}}"#,
                ),
                line(
                    "embeddings",
                    r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#,
                ),
                line("no-total", r#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#),
                line("no-usage", r#"{"object":"chat.completion"}"#),
                line("odd-usage", r#"{"usage":"lots"}"#),
                line("not-an-object", r#""fine""#),
            ]
            .join("\n"),
            "
            1 r responses ok 200 req=x usage=9/9/18 cached=2 reasoning=4
            2 r embeddings ok 200 req=x usage=5/0/5
            3 r no-total ok 200 req=x usage=3/4/7
            4 r no-usage ok 200 req=x usage=-
            5 r odd-usage ok 200 req=x usage=-
            6 r not-an-object ok 200 req=x usage=-
            ",
        );
        let mut total = Usage::default();
        total += Usage {
            input_tokens: 1,
            output_tokens: 2,
            total_tokens: 3,
            cached_tokens: Some(1),
            reasoning_tokens: None,
        };
        total += Usage {
            input_tokens: 10,
            output_tokens: 20,
            total_tokens: 30,
            cached_tokens: Some(5),
            reasoning_tokens: Some(7),
        };
        assert_eq!(
            total,
            Usage {
                input_tokens: 11,
                output_tokens: 22,
                total_tokens: 33,
                cached_tokens: Some(6),
                reasoning_tokens: Some(7),
            }
        );
    }

    #[test]
    fn http_errors_are_read_liberally() {
        let line = |id: &str, status: &str, body: &str| {
            format!(r#"{{"custom_id":"{id}","response":{{"status_code":{status},"body":{body}}}}}"#)
        };
        check(
            &[
                line(
                    "too-big",
                    "400",
                    r#"{"error":{"message":"max_tokens is too large: 1000000.","type":"invalid_request_error","param":"max_tokens","code":"invalid_value"}}"#,
                ),
                line("numeric-code", "500", r#"{"error":{"message":"oops","code":500}}"#),
                line("plain-text", "502", r#""Bad gateway""#),
                line("no-body", "503", "null"),
                line("redirect", "302", "{}"),
            ]
            .join("\n"),
            "
            1 - too-big http_error 400 type=invalid_request_error code=invalid_value param=max_tokens: max_tokens is too large: 1000000.
            2 - numeric-code http_error 500 type=- code=500 param=-: oops
            3 - plain-text http_error 502 type=- code=- param=-: -
            4 - no-body http_error 503 type=- code=- param=-: -
            5 - redirect http_error 302 type=- code=- param=-: -
            ",
        );
        // The raw body survives even when nothing in it could be read.
        let (lines, _) = read_output(line("x", "502", r#""Bad gateway""#).as_bytes()).unwrap();
        let Outcome::HttpError { body, .. } = &lines[0].outcome else {
            panic!("{:?}", lines[0]);
        };
        assert_eq!(body.get(), r#""Bad gateway""#);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        check(
            r#"{"id":"r1","custom_id":"a","extra":{"deep":[1,2]},"response":{"status_code":200,"request_id":"q","headers":{},"body":{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"new_field":true}}},"error":null,"trace":"t"}"#,
            "1 r1 a ok 200 req=q usage=1/1/2",
        );
    }

    #[test]
    fn bad_lines_are_problems_and_reading_goes_on() {
        let input = [
            "not json",
            r#"{"id":"r","response":{"status_code":200,"body":{}},"error":null}"#,
            r#"{"custom_id":7,"response":null,"error":{"code":"x","message":"y"}}"#,
            r#"{"custom_id":"n","response":null,"error":null}"#,
            r#"{"custom_id":"s","response":{"body":{}}}"#,
            r#"{"custom_id":"s2","response":{"status_code":"200"}}"#,
            r#"{"custom_id":"s3","response":[1]}"#,
            r#"{"custom_id":"e","response":null,"error":"boom"}"#,
            "[1,2]",
            r#"{"custom_id":"t""#,
            // Repeated keys: the last wins, as in Python's json module.
            r#"{"custom_id":"a","custom_id":"b","response":null}"#,
            EXPIRED,
        ]
        .join("\n");
        check(
            &input,
            "
            1 problem invalid_json id=-: The line is not valid JSON: expected a value at column 1.
            2 problem missing_custom_id id=-: The line has no string 'custom_id'.
            3 problem missing_custom_id id=-: The line has no string 'custom_id'.
            4 problem no_outcome id=n: The line has neither a 'response' nor an 'error'.
            5 problem invalid_response id=s: 'response.status_code' is missing or not an HTTP status.
            6 problem invalid_response id=s2: 'response.status_code' is missing or not an HTTP status.
            7 problem invalid_response id=s3: 'response' is not an object.
            8 problem invalid_error id=e: 'error' is not an object.
            9 problem invalid_json id=-: The line is not a JSON object.
            10 problem invalid_json id=-: The line is not valid JSON: EOF while parsing an object at column 17.
            11 problem no_outcome id=b: The line has neither a 'response' nor an 'error'.
            12 batch_req_123 request-3 failed batch_expired: This request could not be executed before the completion window expired.
            ",
        );
        let (_, problems) = read_output(input.as_bytes()).unwrap();
        assert_eq!(problems[0].raw, "not json");
        assert_eq!(
            problems[3].to_string(),
            "line 4: The line has neither a 'response' nor an 'error'. (custom_id 'n')"
        );
    }

    #[test]
    fn crlf_blank_lines_and_no_final_newline() {
        let input = format!("\r\n{SUCCESS}\r\n\n  \n{EXPIRED}");
        let got: Vec<u64> = OutputReader::new(input.as_bytes())
            .map(|item| item.unwrap().unwrap().line)
            .collect();
        assert_eq!(got, [2, 5]);
        let mut bad = b"{\"custom_id\":\"\xff\"}\n".to_vec();
        bad.extend_from_slice(EXPIRED.as_bytes());
        let (lines, problems) = read_output(&bad[..]).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(problems[0].kind, LineProblemKind::InvalidJson);
        assert_eq!(problems[0].raw, "{\"custom_id\":\"\u{fffd}\"}");
    }

    #[test]
    fn io_errors_end_the_iteration() {
        /// Yields one good line, then fails.
        struct Flaky(usize);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let line = format!("{EXPIRED}\n");
                if self.0 >= line.len() {
                    return Err(std::io::Error::other("connection reset"));
                }
                let n = buf.len().min(line.len() - self.0);
                buf[..n].copy_from_slice(&line.as_bytes()[self.0..self.0 + n]);
                self.0 += n;
                Ok(n)
            }
        }
        let mut reader = OutputReader::new(BufReader::new(Flaky(0)));
        assert!(reader.next().unwrap().unwrap().is_ok());
        let err = reader.next().unwrap().unwrap_err();
        assert!(matches!(err, crate::Error::Io(_)), "{err}");
        assert!(reader.next().is_none());
        assert_eq!(reader.lines_read(), 1);
        assert!(read_output(BufReader::new(Flaky(0))).is_err());
    }

    #[test]
    fn manifest_matching() {
        let ids = ["a", "b", "c", "d", "b"].map(String::from);
        let mut m = ResultMatcher::new(ids);
        assert_eq!(m.expected(), 4);
        let firsts: Vec<bool> = ["c", "a", "x", "a", "a", "x", "y"]
            .into_iter()
            .map(|id| m.record_id(id))
            .collect();
        assert_eq!(firsts, [true, true, false, false, false, false, false]);
        let (lines, _) = read_output(EXPIRED.as_bytes()).unwrap();
        assert!(!m.record(&lines[0]), "request-3 was never sent");
        let result = m.finish();
        assert_eq!(
            result,
            ManifestMatch {
                missing: vec!["b".into(), "d".into()],
                duplicates: vec!["a".into(), "x".into()],
                unknown: vec!["x".into(), "y".into(), "request-3".into()],
            }
        );
        assert!(!result.is_complete());

        let mut m = ResultMatcher::new(["0".to_owned(), "sou_2003_115".to_owned()]);
        let (lines, problems) =
            read_output(format!("{SUCCESS}\n{QUOTA_429}\n").as_bytes()).unwrap();
        assert!(problems.is_empty());
        assert!(lines.iter().all(|l| m.record(l)));
        assert!(m.finish().is_complete());
    }

    #[test]
    fn usage_read_in_place_is_what_serde_reads() {
        let usages = [
            r#"{"prompt_tokens":1,"completion_tokens":2}"#,
            r#"{ "prompt_tokens" : 5 , "total_tokens" : 7 }"#,
            "{}",
            r#"{"input_tokens":18446744073709551615,"output_tokens":0}"#,
            r#"{"input_tokens":18446744073709551616}"#,
            r#"{"prompt_tokens":1,"prompt_tokens":2}"#,
            r#"{"x":1,"x":[2],"prompt_tokens":3}"#,
            r#"{"prompt_tokens":1.0}"#,
            r#"{"prompt_tokens":1e2}"#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":-0}"#,
            r#"{"prompt_tokens":0,"completion_tokens":10}"#,
            r#"{"prompt_tokens":null,"total_tokens":null}"#,
            r#"{"prompt_tokens":"5"}"#,
            r#"{"prompt_tokens":true}"#,
            r#"{"prompt_tokens":{}}"#,
            r#"{"prompt_tokens_details":null,"prompt_tokens":4}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0}}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":2,"cached_tokens":3}}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":2},"prompt_tokens_details":{}}"#,
            r#"{"prompt_tokens_details":[1,2]}"#,
            r#"{"prompt_tokens_details":[1]}"#,
            r#"{"prompt_tokens_details":[]}"#,
            r#"{"prompt_tokens_details":[1,2,3]}"#,
            r#"{"prompt_tokens_details":"x"}"#,
            r#"{"completion_tokens_details":{"reasoning_tokens":null,"x":{"y":[1]}}}"#,
            r#"{"output_tokens_details":{"reasoning_tokens":9},"completion_tokens_details":{"reasoning_tokens":8}}"#,
            r#"{"prompt\u005ftokens":4,"cached_tokens":1}"#,
            r#"{"input_tokens_details":{"cached\u005ftokens":6}}"#,
            "[1,2]",
            "\"usage\"",
            "null",
            "12",
        ];
        for usage in usages {
            let line = format!(
                r#"{{"custom_id":"a","response":{{"status_code":200,"body":{{"usage":{usage}}}}}}}"#
            );
            let (lines, problems) = read_output(line.as_bytes()).unwrap();
            assert!(problems.is_empty(), "{usage}: {problems:?}");
            assert_eq!(
                lines[0].outcome.usage(),
                read_usage(usage).as_ref(),
                "{usage}"
            );
        }
        // Broken JSON inside `usage` is reported where it is, as before.
        check(
            r#"{"custom_id":"a","response":{"status_code":200,"body":{"usage":{"prompt_tokens":1,}}}}"#,
            "1 problem invalid_json id=-: The line is not valid JSON: expected a key at column 83.",
        );
    }

    #[test]
    fn borrowed_lines_are_the_owned_ones() {
        let mut rng = Rng(7);
        let file = sample_file(&mut rng, 300);
        let mut owned = Vec::new();
        let lines =
            read_output_parallel(&file[..], 2, |item| owned.push(format!("{item:?}"))).unwrap();
        for threads in [0, 1, 3] {
            let mut borrowed = Vec::new();
            let read = read_output_parallel_ref(&file[..], threads, |item| {
                if let Ok(line) = &item {
                    assert_eq!(
                        line.outcome.is_success(),
                        line.to_line().outcome.is_success()
                    );
                }
                borrowed.push(format!("{:?}", item.map(|line| line.to_line())));
            })
            .unwrap();
            assert_eq!(read, lines);
            assert!(borrowed == owned, "{threads} threads");
        }
    }

    #[test]
    fn matching_many_ids_agrees_with_a_plain_model() {
        let mut rng = Rng(99);
        for round in 0..20 {
            let sent: Vec<String> = (0..rng.below(3000))
                .map(|_| format!("id-{}", rng.below(4000)))
                .collect();
            let mut m = ResultMatcher::new(sent.clone());
            // The model: first place of each id sent, and the lines seen per id.
            let mut place: HashMap<&str, usize> = HashMap::new();
            let mut order = Vec::new();
            for id in &sent {
                place.entry(id).or_insert_with(|| {
                    order.push(id.clone());
                    order.len() - 1
                });
            }
            assert_eq!(m.expected(), order.len());
            let mut seen: HashMap<String, u32> = HashMap::new();
            let (mut duplicates, mut unknown) = (Vec::new(), Vec::new());
            let results: Vec<String> = (0..rng.below(5000))
                .map(|_| match rng.below(3) {
                    0 => format!("other-{}", rng.below(100 + round)),
                    _ => format!("id-{}", rng.below(4000)),
                })
                .collect();
            for id in &results {
                let count = seen.entry(id.clone()).or_insert(0);
                *count += 1;
                if *count == 2 {
                    duplicates.push(id.clone());
                }
                if *count == 1 && !place.contains_key(id.as_str()) {
                    unknown.push(id.clone());
                }
                let first = *count == 1 && place.contains_key(id.as_str());
                assert_eq!(m.record_id(id), first, "{id}");
            }
            let missing: Vec<String> = order
                .iter()
                .filter(|id| !seen.contains_key(id.as_str()))
                .cloned()
                .collect();
            assert_eq!(
                m.finish(),
                ManifestMatch {
                    missing,
                    duplicates,
                    unknown
                }
            );
        }
        // No ids expected, and the empty id.
        let mut m = ResultMatcher::default();
        assert!(!m.record_id(""));
        assert!(!m.record_id(""));
        assert_eq!(m.finish().unknown, [""]);
        let mut m = ResultMatcher::new([String::new()]);
        assert!(m.record_id(""));
        assert!(m.finish().is_complete());
    }

    #[test]
    fn body_members_are_found_at_the_top_level_only() {
        let line = |body: &str| {
            format!(r#"{{"custom_id":"a","response":{{"status_code":200,"body":{body}}}}}"#)
        };
        check(
            &[
                line(r#"{"choices":[{"usage":{"prompt_tokens":99}}],"usage":{"prompt_tokens":1}}"#),
                line(r#"{"meta":{"usage":{"prompt_tokens":99}}}"#),
                line(r#"{"text":"\"usage\": {\"prompt_tokens\": 99}"}"#),
                line(r#"{"us\u0061ge":{"prompt_tokens":5}}"#),
            ]
            .join("\n"),
            "
            1 - a ok 200 req=- usage=1/0/1
            2 - a ok 200 req=- usage=-
            3 - a ok 200 req=- usage=-
            4 - a ok 200 req=- usage=5/0/5
            ",
        );
    }

    #[test]
    fn long_lines_straddling_buffer_refills() {
        let text = "x".repeat(10_000);
        let line = |id: usize| {
            format!(
                r#"{{"custom_id":"c{id}","response":{{"status_code":200,"body":{{"choices":[{{"message":{{"content":"{text}"}}}}],"usage":{{"prompt_tokens":{id},"completion_tokens":1,"total_tokens":{}}}}}}},"error":null}}"#,
                id + 1
            )
        };
        let input = (0..20).map(line).collect::<Vec<_>>().join("\r\n");
        for capacity in [1, 7, 4096, 1 << 20] {
            let reader = BufReader::with_capacity(capacity, input.as_bytes());
            let (lines, problems) = read_output(reader).unwrap();
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(lines.len(), 20);
            for (n, l) in lines.iter().enumerate() {
                assert_eq!(l.line, n as u64 + 1);
                assert_eq!(l.custom_id, format!("c{n}"));
                assert_eq!(l.outcome.usage().unwrap().input_tokens, n as u64);
            }
        }
    }

    /// A small deterministic generator (xorshift), so that failures can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Lines of every kind the tests above use, good and bad, short and long.
    fn sample_lines() -> Vec<Vec<u8>> {
        let mut lines: Vec<Vec<u8>> = [
            SUCCESS,
            QUOTA_429,
            EXPIRED,
            "not json",
            r#"{"id":"r","response":{"status_code":200,"body":{}},"error":null}"#,
            r#"{"custom_id":7,"response":null,"error":{"code":"x","message":"y"}}"#,
            r#"{"custom_id":"n","response":null,"error":null}"#,
            r#"{"custom_id":"s","response":{"body":{}}}"#,
            r#"{"custom_id":"s3","response":[1]}"#,
            r#"{"custom_id":"e","response":null,"error":"boom"}"#,
            "[1,2]",
            r#"{"custom_id":"t""#,
            r#"{"custom_id":"a","custom_id":"b","response":null}"#,
            r#"{"custom_id":"u","response":{"status_code":200,"body":{"us\u0061ge":{"prompt_tokens":5}}}}"#,
            // Escaped strings, and no body at all (kept as `null`).
            r#"{"id":"r\/1","custom_id":"esc\"aped \u00e9","response":{"status_code":200,"request_id":"q\n"}}"#,
            r#"{"custom_id":"caf\u00e9","response":{"status_code":503}}"#,
            // Quotes and backslashes, escaped, at every place a block or read might cut them.
            r#"{"custom_id":"q\"uo\\te\\","response":{"status_code":200,"body":{"text":"a\\\"b\\\\\"","usage":{"prompt_tokens":1}}}}"#,
            // Multi-byte UTF-8, raw and escaped (a pair, and a lone surrogate kept as written).
            r#"{"custom_id":"日本語-🦊","response":{"status_code":200,"body":{"content":"café ☕ — 🦊 ünïcödé"}}}"#,
            r#"{"custom_id":"\ud83e\udd8a","response":{"status_code":201}}"#,
            r#"{"custom_id":"\ud800","response":null,"error":{"code":"x\u00e9","message":"\"m\""}}"#,
            // Whitespace around and inside, a carriage return inside, trailing characters.
            "  {\"custom_id\" : \"ws\" ,\r\"response\":null , \"error\":{\"code\":\"c\"} }  \t",
            r#"{"custom_id":"a","response":null,"error":{}} x"#,
            r#"{"custom_id":"a"}{}"#,
            "{\"custom_id\":\"t\tab\",\"response\":null}",
            // Usage that only serde can settle: a repeated key, details as a list, a fraction.
            r#"{"custom_id":"u2","response":{"status_code":200,"body":{"usage":{"prompt_tokens":1,"prompt_tokens":2}}}}"#,
            r#"{"custom_id":"u3","response":{"status_code":200,"body":{"usage":{"prompt_tokens_details":[3,4],"prompt_tokens":1}}}}"#,
            r#"{"custom_id":"u4","response":{"status_code":200,"body":{"usage":{"total_tokens":1.0,"x":[{"y":null}]}}}}"#,
            r#"{"custom_id":"u5","response":{"status_code":200,"body":{"usage":{"prompt_tokens":12,"completion_tokens":018}}}}"#,
            "",
            "  \t",
            "\u{c}",
            "\r",
        ]
        .iter()
        .map(|l| l.as_bytes().to_vec())
        .collect();
        lines.push(b"{\"custom_id\":\"\xff\"}".to_vec());
        lines.push(
            b"{\"custom_id\":\"ok\",\"response\":null,\"error\":{\"message\":\"\xc3\"}}".to_vec(),
        );
        lines.push(format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes());
        lines.push(
            format!(
                r#"{{"custom_id":"deep","response":{{"status_code":200,"body":{}1{}}}}}"#,
                "[".repeat(130),
                "]".repeat(130)
            )
            .into_bytes(),
        );
        lines.push(
            format!(
                r#"{{"custom_id":"long é","response":{{"status_code":200,"body":{{"content":"{}"}}}}}}"#,
                "é\\\"🦊".repeat(2_000)
            )
            .into_bytes(),
        );
        let text = "x".repeat(10_000);
        lines.push(
            format!(
                r#"{{"custom_id":"long","response":{{"status_code":200,"body":{{"choices":[{{"message":{{"content":"{text}"}}}}]}}}}}}"#
            )
            .into_bytes(),
        );
        lines
    }

    /// A file of `n` random sample lines with random line endings, ending with or without one.
    fn sample_file(rng: &mut Rng, n: usize) -> Vec<u8> {
        let lines = sample_lines();
        let mut file = Vec::new();
        for i in 0..n {
            file.extend_from_slice(&lines[rng.below(lines.len())]);
            if i + 1 < n || rng.below(2) == 0 {
                file.extend_from_slice(if rng.below(3) == 0 { b"\r\n" } else { b"\n" });
            }
        }
        file
    }

    /// Everything an item says (`OutcomeLine` has no `PartialEq`; its `Debug` shows all).
    type Items = Vec<String>;

    /// What `OutputReader` yields: the items, then the lines read or the I/O error.
    fn sequential(reader: impl BufRead) -> (Items, std::result::Result<u64, String>) {
        let mut reader = OutputReader::new(reader);
        let mut items = Vec::new();
        for item in &mut reader {
            match item {
                Ok(item) => items.push(format!("{item:?}")),
                Err(e) => return (items, Err(e.to_string())),
            }
        }
        (items, Ok(reader.lines_read()))
    }

    fn parallel(
        reader: impl BufRead + Send,
        threads: usize,
        block_bytes: usize,
    ) -> (Items, std::result::Result<u64, String>) {
        let mut items = Vec::new();
        let read = read_output_blocks(reader, threads, block_bytes, |item| {
            items.push(format!("{:?}", item.map(|line| line.to_line())));
        });
        (items, read.map_err(|e| e.to_string()))
    }

    #[test]
    fn parallel_reading_matches_the_sequential_reader() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\n".to_vec(),
            b"\r\n\r\n".to_vec(),
            EXPIRED.as_bytes().to_vec(),
            format!("\r\n{SUCCESS}\r\n\n  \n{EXPIRED}").into_bytes(),
            format!("{SUCCESS}\n{QUOTA_429}\n{EXPIRED}\n").into_bytes(),
        ];
        for n in [1, 2, 10, 100, 400] {
            inputs.push(sample_file(&mut rng, n));
        }
        for input in &inputs {
            let expect = sequential(BufReader::with_capacity(64, &input[..]));
            assert!(expect.1.is_ok());
            for _ in 0..6 {
                let threads = 1 + rng.below(4);
                let block_bytes = [1, 64, 1000, 20_000, 1 << 20][rng.below(5)] + rng.below(100);
                let capacity = 1 + rng.below(5000);
                let got = parallel(
                    BufReader::with_capacity(capacity, &input[..]),
                    threads,
                    block_bytes,
                );
                assert!(
                    got == expect,
                    "{threads} threads, blocks of {block_bytes}, buffer of {capacity}: {} items, {:?}, expected {} items, {:?}",
                    got.0.len(),
                    got.1,
                    expect.0.len(),
                    expect.1
                );
            }
            // The public entry point, on every core and on one.
            for threads in [0, 1, 2] {
                let mut items = Vec::new();
                let lines = read_output_parallel(&input[..], threads, |item| {
                    items.push(format!("{item:?}"))
                })
                .unwrap();
                assert_eq!((items, Ok(lines)), expect);
            }
        }
        // Line numbers run on across blocks.
        let (items, lines) = parallel(&inputs[inputs.len() - 1][..], 3, 500);
        assert_eq!(lines, Ok(400));
        assert!(items.len() > 300, "{}", items.len());
    }

    #[test]
    fn parallel_reading_stops_at_an_io_error_like_the_sequential_reader() {
        /// Hands out `data` in chunks of random size, then fails.
        struct Flaky {
            data: Vec<u8>,
            at: usize,
            rng: Rng,
        }
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.at == self.data.len() {
                    return Err(std::io::Error::other("connection reset"));
                }
                let n = buf
                    .len()
                    .min(self.data.len() - self.at)
                    .min(1 + self.rng.below(3000));
                buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
        }
        let mut rng = Rng(42);
        let file = sample_file(&mut rng, 300);
        for round in 0..12 {
            // Cut anywhere: mid-line, right after a newline, or at the very start.
            let cut = match round {
                0 => 0,
                1 => file.iter().position(|&b| b == b'\n').unwrap() + 1,
                _ => rng.below(file.len()),
            };
            let flaky = |seed| Flaky {
                data: file[..cut].to_vec(),
                at: 0,
                rng: Rng(seed),
            };
            let expect = sequential(BufReader::with_capacity(777, flaky(round + 1)));
            assert_eq!(expect.1, Err("I/O error: connection reset".to_owned()));
            for threads in [1, 2, 4] {
                let block_bytes = 1 + rng.below(30_000);
                let got = parallel(BufReader::new(flaky(round + 7)), threads, block_bytes);
                assert!(
                    got == expect,
                    "cut at {cut}, {threads} threads, blocks of {block_bytes}: {} items, expected {}",
                    got.0.len(),
                    expect.0.len()
                );
            }
            let got = read_output_parallel(BufReader::new(flaky(round)), 0, |_| ());
            assert!(matches!(got, Err(crate::Error::Io(_))), "{got:?}");
        }
    }
}
