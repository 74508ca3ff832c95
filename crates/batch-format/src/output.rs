//! Streaming reader for batch output and error files: one [`OutcomeLine`] per request line, bad
//! lines reported as [`LineProblem`]s without stopping, and [`ResultMatcher`] to check the
//! results against the ids that were sent.
//!
//! Lines follow `BatchRequestOutput`: `{id, custom_id, response: {status_code, request_id,
//! body} | null, error: {code, message} | null}`. Unknown fields are ignored everywhere, and
//! response bodies are kept raw so that nothing a caller might need is lost.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::io::BufRead;
use std::ops::AddAssign;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::blocks::{parallel_blocks, split_lines, worker_threads};
use crate::error::Result;
use crate::scan::{Nested, Scan, Scanner};
use crate::validate::{Field, find_newline};

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
/// returned.
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
    read_output_blocks(reader, threads, OUTPUT_BLOCK_BYTES, on_item)
}

/// Size of the blocks [`read_output_parallel`] hands to workers. Smaller than validation's:
/// every byte of an output line is kept, so a block's parsed lines are as big as the block, and
/// both should stay in cache until the calling thread takes them (measured: 256 KiB beat 128 KiB,
/// 512 KiB and 1 MiB).
const OUTPUT_BLOCK_BYTES: usize = 256 << 10;

/// [`read_output_parallel`] on blocks of about `block_bytes`, even on one thread.
fn read_output_blocks<R: BufRead + Send>(
    reader: R,
    threads: usize,
    block_bytes: usize,
    mut on_item: impl FnMut(std::result::Result<OutcomeLine, LineProblem>),
) -> Result<u64> {
    // Workers copy the strings of a block's lines into one arena, and the calling thread makes
    // the items' own strings from it: memory an item owns is then allocated and freed on the
    // same thread, which keeps the allocator fast (freeing another thread's memory is not).
    // Arenas and item lists go round, like blocks, so that no thread allocates them afresh.
    let spare = Mutex::new(Vec::<BlockItems>::new());
    // Workers number the lines of their block from 1; the calling thread, which knows how
    // many lines came before, shifts them.
    let mut before = 0u64;
    parallel_blocks(
        reader,
        threads,
        block_bytes,
        || (),
        |(), block| {
            let reused = spare.lock().ok().and_then(|mut spare| spare.pop());
            let mut out = reused.unwrap_or_default();
            // Enough, in practice, for the strings of every line: what is kept is parts of them.
            out.arena.reserve(block.len());
            let BlockItems {
                lines,
                items,
                arena,
            } = &mut out;
            let mut keep = |text: &str| {
                let start = arena.len();
                arena.push_str(text);
                start..arena.len()
            };
            for line in split_lines(block) {
                *lines += 1;
                if !is_blank(line) {
                    items.push(parse_line(*lines, line, &mut keep));
                }
            }
            out
        },
        |_, mut out| {
            for item in out.items.drain(..) {
                on_item(match item {
                    Ok(parsed) => {
                        let mut line = parsed
                            .map(|range| Box::<str>::from(&out.arena[range]))
                            .into_line();
                        line.line += before;
                        Ok(line)
                    }
                    Err(mut problem) => {
                        problem.line += before;
                        Err(problem)
                    }
                });
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

/// What a worker made of one block: how many lines it has, the readable ones with their
/// strings as places in `arena`, and the problems.
#[derive(Default)]
struct BlockItems {
    lines: u64,
    items: Vec<std::result::Result<Parsed<std::ops::Range<usize>>, LineProblem>>,
    arena: String,
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

/// A response body: its text, and the text of its top-level `usage` and `error` members.
struct BodyFields<'a> {
    raw: &'a str,
    usage: Option<&'a str>,
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
    s.end()?;
    Ok(Some(line))
}

/// A response body: kept whole, with its top-level `usage` and `error` noted on the way.
fn scan_body<'a>(s: &mut Scanner<'a>) -> Scan<BodyFields<'a>> {
    let start = s.pos();
    let (mut usage, mut error) = (None, None);
    if s.peek() == Some(b'{') {
        s.object(|s, key| {
            match key.as_ref() {
                b"usage" => usage = Some(s.value()?),
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
    parse_line(line, bytes, &mut |text: &str| Box::<str>::from(text)).map(Parsed::into_line)
}

/// Parses one non-blank line, keeping each string it needs with `keep`.
fn parse_line<T>(
    line: u64,
    bytes: &[u8],
    keep: &mut impl FnMut(&str) -> T,
) -> std::result::Result<Parsed<T>, LineProblem> {
    let bytes = trim_line_ending(bytes);
    let problem = |kind, custom_id: Option<&str>, message: String| LineProblem {
        line,
        kind,
        custom_id: custom_id.map(str::to_owned),
        message,
        raw: String::from_utf8_lossy(bytes).into_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        problem(
            LineProblemKind::InvalidJson,
            None,
            format!("The line is not UTF-8: {e}."),
        )
    })?;
    let fields = match scan_line(text) {
        Ok(Some(fields)) => fields,
        Ok(None) => {
            return Err(problem(
                LineProblemKind::InvalidJson,
                None,
                "The line is not a JSON object.".to_owned(),
            ));
        }
        Err(e) => {
            return Err(problem(
                LineProblemKind::InvalidJson,
                None,
                format!("The line is not valid JSON: {e}."),
            ));
        }
    };
    let Some(custom_id) = fields.custom_id.as_str() else {
        return Err(problem(
            LineProblemKind::MissingCustomId,
            None,
            "The line has no string 'custom_id'.".to_owned(),
        ));
    };
    let outcome = match (fields.response, fields.error) {
        (Nested::Object(response), _) => response_outcome(response, keep).map_err(|message| {
            problem(LineProblemKind::InvalidResponse, Some(custom_id), message)
        })?,
        (Nested::NotObject, _) => {
            return Err(problem(
                LineProblemKind::InvalidResponse,
                Some(custom_id),
                "'response' is not an object.".to_owned(),
            ));
        }
        (Nested::Missing | Nested::Null, Nested::Object(error)) => ParsedOutcome::Failed {
            code: error.code.as_str().unwrap_or_default().to_owned(),
            message: error.message.as_str().unwrap_or_default().to_owned(),
        },
        (Nested::Missing | Nested::Null, Nested::NotObject) => {
            return Err(problem(
                LineProblemKind::InvalidError,
                Some(custom_id),
                "'error' is not an object.".to_owned(),
            ));
        }
        (Nested::Missing | Nested::Null, Nested::Missing | Nested::Null) => {
            return Err(problem(
                LineProblemKind::NoOutcome,
                Some(custom_id),
                "The line has neither a 'response' nor an 'error'.".to_owned(),
            ));
        }
    };
    Ok(Parsed {
        line,
        id: fields.id.as_str().map(&mut *keep),
        custom_id: keep(custom_id),
        outcome,
    })
}

/// Turns a `response` object into a success or an HTTP error; `Err` explains why it cannot.
fn response_outcome<T>(
    response: ResponseFields<'_>,
    keep: &mut impl FnMut(&str) -> T,
) -> std::result::Result<ParsedOutcome<T>, String> {
    let status = match response.status_code {
        Field::Count(n) => u16::try_from(n).ok().filter(|s| (100..=599).contains(s)),
        _ => None,
    }
    .ok_or_else(|| "'response.status_code' is missing or not an HTTP status.".to_owned())?;
    let request_id = response.request_id.as_str().map(&mut *keep);
    let (body, usage, error) = match response.body {
        Some(b) => (keep(b.raw), b.usage, b.error),
        None => (keep("null"), None, None),
    };
    Ok(if (200..300).contains(&status) {
        ParsedOutcome::Succeeded {
            status,
            request_id,
            usage: usage.and_then(read_usage),
            body,
        }
    } else {
        ParsedOutcome::HttpError {
            status,
            request_id,
            error: error.map(read_error_body).unwrap_or_default(),
            body,
        }
    })
}

/// A readable line as [`parse_line`] leaves it: an [`OutcomeLine`] whose strings (the body
/// included) are `T`s, `Box<str>` or places in a worker's arena.
struct Parsed<T> {
    line: u64,
    id: Option<T>,
    custom_id: T,
    outcome: ParsedOutcome<T>,
}

/// An [`Outcome`] whose strings from the line are `T`s.
enum ParsedOutcome<T> {
    Succeeded {
        status: u16,
        request_id: Option<T>,
        body: T,
        usage: Option<Usage>,
    },
    HttpError {
        status: u16,
        request_id: Option<T>,
        error: ApiErrorBody,
        body: T,
    },
    Failed {
        code: String,
        message: String,
    },
}

impl<T> Parsed<T> {
    fn map<U>(self, mut f: impl FnMut(T) -> U) -> Parsed<U> {
        Parsed {
            line: self.line,
            id: self.id.map(&mut f),
            custom_id: f(self.custom_id),
            outcome: match self.outcome {
                ParsedOutcome::Succeeded {
                    status,
                    request_id,
                    body,
                    usage,
                } => ParsedOutcome::Succeeded {
                    status,
                    request_id: request_id.map(&mut f),
                    body: f(body),
                    usage,
                },
                ParsedOutcome::HttpError {
                    status,
                    request_id,
                    error,
                    body,
                } => ParsedOutcome::HttpError {
                    status,
                    request_id: request_id.map(&mut f),
                    error,
                    body: f(body),
                },
                ParsedOutcome::Failed { code, message } => ParsedOutcome::Failed { code, message },
            },
        }
    }
}

impl Parsed<Box<str>> {
    fn into_line(self) -> OutcomeLine {
        let outcome = match self.outcome {
            ParsedOutcome::Succeeded {
                status,
                request_id,
                body,
                usage,
            } => Outcome::Succeeded {
                status,
                request_id: request_id.map(String::from),
                body: RawJson(body),
                usage,
            },
            ParsedOutcome::HttpError {
                status,
                request_id,
                error,
                body,
            } => Outcome::HttpError {
                status,
                request_id: request_id.map(String::from),
                error,
                body: RawJson(body),
            },
            ParsedOutcome::Failed { code, message } => Outcome::Failed { code, message },
        };
        OutcomeLine {
            line: self.line,
            id: self.id.map(String::from),
            custom_id: String::from(self.custom_id),
            outcome,
        }
    }
}

fn trim_line_ending(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// A `usage` object, under either naming; `None` when it is not a readable object.
fn read_usage(usage: &str) -> Option<Usage> {
    #[derive(Deserialize)]
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
    #[derive(Deserialize)]
    struct Details {
        cached_tokens: Option<u64>,
        reasoning_tokens: Option<u64>,
    }
    if !usage.starts_with('{') {
        return None;
    }
    let raw = serde_json::from_str::<RawUsage>(usage).ok()?;
    let input = raw.input_tokens.or(raw.prompt_tokens).unwrap_or(0);
    let output = raw.output_tokens.or(raw.completion_tokens).unwrap_or(0);
    let input_details = raw.input_tokens_details.or(raw.prompt_tokens_details);
    let output_details = raw.output_tokens_details.or(raw.completion_tokens_details);
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: raw.total_tokens.unwrap_or(input + output),
        cached_tokens: input_details.and_then(|d| d.cached_tokens),
        reasoning_tokens: output_details.and_then(|d| d.reasoning_tokens),
    })
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
    /// Every id seen or expected: (place in the manifest, if expected; lines seen).
    // foldhash: matching is on the hot path of reading a 50,000-line output file, and SipHash
    // was a tenth of it; foldhash's per-map random seed keeps it resistant to crafted ids.
    ids: HashMap<String, (Option<usize>, u32), foldhash::fast::RandomState>,
    expected: usize,
    duplicates: Vec<String>,
    unknown: Vec<String>,
}

impl ResultMatcher {
    /// A matcher expecting exactly these ids (repeats in the list count once).
    pub fn new(expected: impl IntoIterator<Item = String>) -> Self {
        let expected = expected.into_iter();
        let mut matcher = ResultMatcher::default();
        matcher.ids.reserve(expected.size_hint().0);
        for id in expected {
            if let Entry::Vacant(slot) = matcher.ids.entry(id) {
                slot.insert((Some(matcher.expected), 0));
                matcher.expected += 1;
            }
        }
        matcher
    }

    /// Records a result line. Returns `true` when it is the first line for an expected id, the
    /// one to use; `false` for repeats and unknown ids.
    pub fn record(&mut self, line: &OutcomeLine) -> bool {
        self.record_id(&line.custom_id)
    }

    /// Records a line for `custom_id`, e.g. from a [`LineProblem`] that named one; see
    /// [`ResultMatcher::record`].
    pub fn record_id(&mut self, custom_id: &str) -> bool {
        let (place, seen) = match self.ids.get_mut(custom_id) {
            Some(entry) => entry,
            None => {
                self.unknown.push(custom_id.to_owned());
                self.ids.insert(custom_id.to_owned(), (None, 1));
                return false;
            }
        };
        *seen += 1;
        if *seen == 2 {
            self.duplicates.push(custom_id.to_owned());
        }
        place.is_some() && *seen == 1
    }

    /// Number of distinct expected ids.
    pub fn expected(&self) -> usize {
        self.expected
    }

    /// The comparison, once every line has been recorded.
    pub fn finish(self) -> ManifestMatch {
        let mut missing: Vec<(usize, String)> = self
            .ids
            .into_iter()
            .filter_map(|(id, (place, seen))| match place {
                Some(place) if seen == 0 => Some((place, id)),
                _ => None,
            })
            .collect();
        missing.sort_unstable();
        ManifestMatch {
            missing: missing.into_iter().map(|(_, id)| id).collect(),
            duplicates: self.duplicates,
            unknown: self.unknown,
        }
    }
}

#[cfg(test)]
mod tests {
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
            "",
            "  \t",
            "\u{c}",
        ]
        .iter()
        .map(|l| l.as_bytes().to_vec())
        .collect();
        lines.push(b"{\"custom_id\":\"\xff\"}".to_vec());
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
            items.push(format!("{item:?}"));
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
