//! Streaming validation of a batch input JSONL file, reporting what OpenAI would put in a failed
//! batch's `errors.data[]`.
//!
//! Each line is read once, borrowing what it needs (no `serde_json::Value`, no copy of the
//! base64 image strings): by the scanner of `scan.rs`, which finds where a line ends while it
//! checks it, or, when tokens are estimated, by serde probes that also collect the message
//! texts. Memory stays constant apart from one 128-bit hash per `custom_id`. The work is split
//! in two so that it can run on several threads: the facts of one line are found without
//! looking at any other, then `Validator` applies the checks that need the lines before it
//! (duplicate ids, one endpoint, one model) strictly in line order.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::io::BufRead;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::blocks::{BLOCK_BYTES, parallel_blocks, worker_threads};
use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::field::Field;
use crate::jsonl::{find_newline, split_lines};
use crate::scan::{Nested, Scan, Scanner};
use crate::tokens::{MESSAGE_OVERHEAD, TokenEstimator, is_image_part};

/// Limits and expectations for [`validate_jsonl`] and [`Validator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Most lines (requests) a file may have; OpenAI's limit is 50,000.
    pub max_lines: u64,
    /// Largest file size in bytes; OpenAI's limit is 200 MB.
    pub max_bytes: u64,
    /// The endpoint the batch will be created for. When `None`, the first line whose `url` is a
    /// Batch API endpoint decides.
    pub expected_endpoint: Option<Endpoint>,
    /// Models the Batch API accepts, matched exactly against `body.model`; a model not in the set
    /// is `model_not_found`. `None` accepts any model.
    pub known_models: Option<HashSet<String>>,
    /// Whether to estimate prompt tokens (see [`TokenEstimator`]); this costs a BPE pass over
    /// every text part, so it is off unless asked for.
    pub estimate_tokens: bool,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            max_lines: 50_000,
            max_bytes: 200 * 1024 * 1024,
            expected_endpoint: None,
            known_models: None,
            estimate_tokens: false,
        }
    }
}

/// What is wrong, in OpenAI's words: [`ProblemCode::as_str`] is the `code` of an
/// `errors.data[]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemCode {
    /// The line is not valid JSON (or not UTF-8, or blank in the middle of the file).
    InvalidJsonLine,
    /// `custom_id`, `method`, `url` or `body` is missing or null.
    MissingRequiredParameter,
    /// `method` is not `"POST"`.
    InvalidMethod,
    /// `url` is not the batch's endpoint (or not a Batch API endpoint at all).
    InvalidUrl,
    /// `body.model` differs from the model of the batch's first request.
    MismatchedModel,
    /// The `custom_id` was already used by an earlier line.
    DuplicateCustomId,
    /// `body.stream` is `true`.
    StreamingUnsupported,
    /// The file has more lines than [`ValidationOptions::max_lines`].
    TooManyLines,
    /// The file has more bytes than [`ValidationOptions::max_bytes`].
    FileTooLarge,
    /// The file has no request lines.
    EmptyFile,
    /// The request is malformed in another way: the line or body is not an object, `body.model`
    /// or `body.messages` is missing, `custom_id` is empty or not a string.
    InvalidRequest,
    /// `body.model` is not in [`ValidationOptions::known_models`].
    ModelNotFound,
}

impl ProblemCode {
    /// The OpenAI-style snake_case code, e.g. `"invalid_json_line"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProblemCode::InvalidJsonLine => "invalid_json_line",
            ProblemCode::MissingRequiredParameter => "missing_required_parameter",
            ProblemCode::InvalidMethod => "invalid_method",
            ProblemCode::InvalidUrl => "invalid_url",
            ProblemCode::MismatchedModel => "mismatched_model",
            ProblemCode::DuplicateCustomId => "duplicate_custom_id",
            ProblemCode::StreamingUnsupported => "streaming_unsupported",
            ProblemCode::TooManyLines => "too_many_lines",
            ProblemCode::FileTooLarge => "file_too_large",
            ProblemCode::EmptyFile => "empty_file",
            ProblemCode::InvalidRequest => "invalid_request",
            ProblemCode::ModelNotFound => "model_not_found",
        }
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in an input file, shaped like an entry of a failed batch's `errors.data[]`
/// (serialises as `{code, message, param, line}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What kind of problem.
    pub code: ProblemCode,
    /// Human-readable explanation; OpenAI's wording where it is known.
    pub message: String,
    /// The offending parameter, e.g. `custom_id` or `body.model`.
    pub param: Option<String>,
    /// 1-based line number, or `None` for problems with the whole file.
    pub line: Option<u64>,
}

impl Problem {
    fn at(line: u64, code: ProblemCode, param: Option<&str>, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
            param: param.map(str::to_owned),
            line: Some(line),
        }
    }

    fn file(code: ProblemCode, message: String) -> Self {
        Problem {
            code,
            message,
            param: None,
            line: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: ")?,
            None => f.write_str("file: ")?,
        }
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What a validation run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValidationSummary {
    /// Lines in the file, not counting blank lines at its end.
    pub lines: u64,
    /// Bytes in the file, newlines included.
    pub bytes: u64,
    /// The batch endpoint: the expected one, or the first valid `url` seen.
    pub endpoint: Option<Endpoint>,
    /// The batch model: the first string `body.model` seen.
    pub model: Option<String>,
    /// Sum of the per-line token estimates; 0 unless [`ValidationOptions::estimate_tokens`].
    pub estimated_tokens: u64,
    /// How many problems were reported, file-level ones included.
    pub problems: u64,
}

impl ValidationSummary {
    /// Whether the file passed: no problem at all.
    pub fn is_valid(&self) -> bool {
        self.problems == 0
    }
}

/// Validates a whole JSONL stream, calling `on_problem` for each problem in line order, then
/// for the file-level ones (`empty_file`, `too_many_lines`, `file_too_large`).
///
/// Lines are read straight from the reader's buffer, and each byte is looked at about once:
/// the scanner finds where a line ends while it checks it. Lines cut by a buffer refill are
/// copied into one reused buffer. Only I/O errors are `Err`.
pub fn validate_jsonl<R: BufRead>(
    mut reader: R,
    opts: &ValidationOptions,
    mut on_problem: impl FnMut(Problem),
) -> Result<ValidationSummary> {
    let mut v = Validator::new(opts.clone());
    if opts.estimate_tokens {
        for_each_line(reader, |line| v.push_line(line, &mut on_problem))?;
        return Ok(v.finish(on_problem));
    }
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            if !carry.is_empty() {
                v.push_line(&carry, &mut on_problem);
            }
            return Ok(v.finish(on_problem));
        }
        if !carry.is_empty() {
            // Finish the line cut by the last refill.
            let used = match find_newline(buf) {
                Some(end) => {
                    carry.extend_from_slice(&buf[..=end]);
                    v.push_line(&carry, &mut on_problem);
                    carry.clear();
                    end + 1
                }
                None => {
                    carry.extend_from_slice(buf);
                    buf.len()
                }
            };
            reader.consume(used);
            continue;
        }
        // A window at a time: an in-memory reader hands out the whole file at once, and a
        // line cut by the window's end is simply scanned again from the next window.
        let window = &buf[..buf.len().min(SCAN_WINDOW)];
        let mut used = scan_lines(window, false, |len, facts| {
            v.summary.bytes += len as u64;
            v.apply(facts, &mut on_problem);
        });
        if used == 0 {
            // The first line is cut by the end of the buffer or longer than the window: take
            // it whole when its end is in the buffer.
            match find_newline(buf) {
                Some(end) => {
                    v.push_line(&buf[..=end], &mut on_problem);
                    used = end + 1;
                }
                None => {
                    carry.extend_from_slice(buf);
                    used = buf.len();
                }
            }
        }
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
    let resume = match scan_request(&mut s) {
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
/// plus two.
pub fn validate_jsonl_parallel<R: BufRead + Send>(
    reader: R,
    opts: &ValidationOptions,
    threads: usize,
    mut on_problem: impl FnMut(Problem),
) -> Result<ValidationSummary> {
    let threads = worker_threads(threads);
    if threads == 1 {
        return validate_jsonl(reader, opts, on_problem);
    }
    let mut validator = Validator::new(opts.clone());
    let estimate = opts.estimate_tokens;
    parallel_blocks(
        reader,
        threads,
        BLOCK_BYTES,
        || estimate.then(CountCache::default),
        |cache, lines| {
            let mut facts = Vec::new();
            match cache.as_mut() {
                None => {
                    scan_lines(lines, true, |_, f| facts.push(f.into_owned()));
                }
                Some(cache) => facts.extend(
                    split_lines(lines).map(|line| analyse_line(line, Some(cache)).into_owned()),
                ),
            }
            facts
        },
        |lines, facts| {
            validator.summary.bytes += lines.len() as u64;
            for f in facts {
                validator.apply(f, &mut on_problem);
            }
        },
    )?;
    Ok(validator.finish(on_problem))
}

/// Calls `f` with each line of `reader`, newline included (the last line may lack one).
fn for_each_line<R: BufRead>(mut reader: R, mut f: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !carry.is_empty() {
                f(&carry);
            }
            return Ok(());
        }
        let mut start = 0;
        if !carry.is_empty() {
            match find_newline(buf) {
                Some(end) => {
                    carry.extend_from_slice(&buf[..=end]);
                    f(&carry);
                    carry.clear();
                    start = end + 1;
                }
                None => {
                    carry.extend_from_slice(buf);
                    let consumed = buf.len();
                    reader.consume(consumed);
                    continue;
                }
            }
        }
        while let Some(end) = find_newline(&buf[start..]) {
            f(&buf[start..=start + end]);
            start += end + 1;
        }
        carry.extend_from_slice(&buf[start..]);
        let consumed = buf.len();
        reader.consume(consumed);
    }
}

/// Push-based validator: feed it lines with [`Validator::push_line`], then call
/// [`Validator::finish`].
#[derive(Debug)]
pub struct Validator {
    opts: ValidationOptions,
    /// Physical lines pushed so far; the number of the last one.
    line: u64,
    /// Blank lines not yet known to be in the middle of the file: `(first, count)`.
    pending_blank: Option<(u64, u64)>,
    summary: ValidationSummary,
    ids: IdSet,
    /// Present when estimating tokens.
    token_cache: Option<CountCache>,
}

impl Validator {
    /// A validator with nothing pushed yet.
    pub fn new(opts: ValidationOptions) -> Self {
        let summary = ValidationSummary {
            endpoint: opts.expected_endpoint,
            ..ValidationSummary::default()
        };
        Validator {
            token_cache: opts.estimate_tokens.then(CountCache::default),
            opts,
            line: 0,
            pending_blank: None,
            summary,
            ids: IdSet::default(),
        }
    }

    /// Validates the next line. `line` is one line as read, with or without its `\n` or `\r\n`
    /// (its length counts towards the byte limit as given). Problems go to `on_problem`.
    pub fn push_line(&mut self, line: &[u8], on_problem: impl FnMut(Problem)) {
        self.summary.bytes += line.len() as u64;
        let facts = analyse_line(line, self.token_cache.as_mut());
        self.apply(facts, on_problem);
    }

    /// Applies one line's facts, found by [`analyse_line`], as the next line of the file.
    fn apply(&mut self, facts: LineFacts<'_>, mut on_problem: impl FnMut(Problem)) {
        self.line += 1;
        let n = self.line;
        if let LineFacts::Blank = facts {
            // Blank lines at the end of the file are harmless; only a later non-blank line
            // shows that they were in the middle.
            match &mut self.pending_blank {
                Some((_, count)) => *count += 1,
                None => self.pending_blank = Some((n, 1)),
            }
            return;
        }
        let mut emit = |p: Problem| {
            self.summary.problems += 1;
            on_problem(p);
        };
        if let Some((first, count)) = self.pending_blank.take() {
            for blank in first..first + count {
                emit(Problem::at(
                    blank,
                    ProblemCode::InvalidJsonLine,
                    None,
                    MSG_INVALID_JSON,
                ));
            }
        }
        self.summary.lines = n;
        match facts {
            LineFacts::Blank => unreachable!("handled above"),
            LineFacts::NotJson => emit(Problem::at(
                n,
                ProblemCode::InvalidJsonLine,
                None,
                MSG_INVALID_JSON,
            )),
            LineFacts::NotObject => emit(Problem::at(
                n,
                ProblemCode::InvalidRequest,
                None,
                "This line is not a JSON object.",
            )),
            LineFacts::Object(obj) => {
                self.summary.estimated_tokens += obj.tokens;
                check_object(
                    n,
                    obj,
                    &self.opts,
                    &mut self.summary.endpoint,
                    &mut self.summary.model,
                    &mut self.ids,
                    &mut emit,
                );
            }
        }
    }

    /// Reports the file-level problems and returns the summary. Blank lines at the end of the
    /// file are not problems.
    pub fn finish(mut self, mut on_problem: impl FnMut(Problem)) -> ValidationSummary {
        let s = &mut self.summary;
        let mut file_problems = Vec::new();
        if s.lines == 0 {
            file_problems.push(Problem::file(
                ProblemCode::EmptyFile,
                "The input file has no requests.".to_owned(),
            ));
        }
        if s.lines > self.opts.max_lines {
            file_problems.push(Problem::file(
                ProblemCode::TooManyLines,
                format!(
                    "The input file has {} lines; a batch may have at most {} requests.",
                    s.lines, self.opts.max_lines
                ),
            ));
        }
        if s.bytes > self.opts.max_bytes {
            file_problems.push(Problem::file(
                ProblemCode::FileTooLarge,
                format!(
                    "File is too large: {} bytes; a batch input file may be at most {} bytes.",
                    s.bytes, self.opts.max_bytes
                ),
            ));
        }
        for p in file_problems {
            s.problems += 1;
            on_problem(p);
        }
        self.summary
    }
}

const MSG_INVALID_JSON: &str = "This line is not parseable as valid JSON.";

fn missing(line: u64, param: &str) -> Problem {
    Problem::at(
        line,
        ProblemCode::MissingRequiredParameter,
        Some(param),
        format!("Missing required parameter: '{param}'."),
    )
}

/// The checks of one request line that need the state of the lines before it.
fn check_object(
    n: u64,
    obj: ObjectFacts<'_>,
    opts: &ValidationOptions,
    batch_endpoint: &mut Option<Endpoint>,
    batch_model: &mut Option<String>,
    ids: &mut IdSet,
    emit: &mut impl FnMut(Problem),
) {
    match obj.custom_id {
        Field::Missing | Field::Null => emit(missing(n, "custom_id")),
        Field::Str(id) if id.is_empty() => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("custom_id"),
            "Invalid 'custom_id': empty string. Expected a non-empty string.",
        )),
        Field::Str(id) => {
            if !ids.insert(id_hash(id.as_ref())) {
                emit(Problem::at(
                    n,
                    ProblemCode::DuplicateCustomId,
                    Some("custom_id"),
                    format!(
                        "The custom_id '{id}' is used by an earlier request; \
                         each request in a batch needs a unique custom_id."
                    ),
                ));
            }
        }
        Field::Bool(_) | Field::Count(_) | Field::Other => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("custom_id"),
            "Invalid type for 'custom_id': expected a string.",
        )),
    }

    match obj.method {
        Field::Missing | Field::Null => emit(missing(n, "method")),
        Field::Str(m) if m == "POST" => {}
        Field::Str(m) => emit(Problem::at(
            n,
            ProblemCode::InvalidMethod,
            Some("method"),
            format!("Invalid method '{m}'. Only 'POST' is supported."),
        )),
        Field::Bool(_) | Field::Count(_) | Field::Other => emit(Problem::at(
            n,
            ProblemCode::InvalidMethod,
            Some("method"),
            "Invalid type for 'method': expected the string 'POST'.",
        )),
    }

    let line_endpoint = match &obj.url {
        Field::Missing | Field::Null => {
            emit(missing(n, "url"));
            None
        }
        other => {
            let endpoint = other.as_str().and_then(Endpoint::from_url);
            if batch_endpoint.is_none() {
                *batch_endpoint = endpoint;
            }
            if endpoint.is_none() || endpoint != *batch_endpoint {
                emit(Problem::at(
                    n,
                    ProblemCode::InvalidUrl,
                    Some("url"),
                    "The URL provided for this request does not match the batch endpoint.",
                ));
            }
            endpoint
        }
    };
    let endpoint = batch_endpoint.or(line_endpoint);

    match obj.body {
        Body::Missing | Body::Null => emit(missing(n, "body")),
        Body::NotObject => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("body"),
            "Invalid type for 'body': expected an object.",
        )),
        Body::Object(body) => check_body(n, body, endpoint, opts, batch_model, emit),
    }
}

fn check_body(
    n: u64,
    body: BodyFacts<'_>,
    endpoint: Option<Endpoint>,
    opts: &ValidationOptions,
    batch_model: &mut Option<String>,
    emit: &mut impl FnMut(Problem),
) {
    match body.model {
        Field::Missing | Field::Null => {
            if endpoint.is_none_or(Endpoint::requires_model) {
                emit(Problem::at(
                    n,
                    ProblemCode::InvalidRequest,
                    Some("body.model"),
                    "Model parameter is required.",
                ));
            }
        }
        Field::Bool(_) | Field::Count(_) | Field::Other => emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("body.model"),
            "Invalid type for 'body.model': expected a string.",
        )),
        Field::Str(model) => {
            if let Some(known) = &opts.known_models
                && !known.contains(model.as_ref())
            {
                emit(Problem::at(
                    n,
                    ProblemCode::ModelNotFound,
                    Some("body.model"),
                    format!("The provided model '{model}' is not supported by the Batch API."),
                ));
            }
            match batch_model {
                None => *batch_model = Some(model.into_owned()),
                Some(first) if *first != model => emit(Problem::at(
                    n,
                    ProblemCode::MismatchedModel,
                    Some("body.model"),
                    format!(
                        "The model '{model}' does not match the batch's model '{first}'. \
                         All requests in a batch must use the same model."
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    if endpoint == Some(Endpoint::ChatCompletions) && !body.has_messages {
        emit(Problem::at(
            n,
            ProblemCode::InvalidRequest,
            Some("body.messages"),
            "Messages parameter is required.",
        ));
    }
    if body.stream {
        emit(Problem::at(
            n,
            ProblemCode::StreamingUnsupported,
            Some("body.stream"),
            format!(
                "{}: Streaming is not supported in the Batch API.",
                endpoint_title(endpoint)
            ),
        ));
    }
}

/// The endpoint's name as OpenAI's messages spell it ("Chat Completions: Streaming is ...").
fn endpoint_title(endpoint: Option<Endpoint>) -> &'static str {
    match endpoint {
        Some(Endpoint::Responses) => "Responses",
        Some(Endpoint::ChatCompletions) => "Chat Completions",
        Some(Endpoint::Embeddings) => "Embeddings",
        Some(Endpoint::Completions) => "Completions",
        Some(Endpoint::Moderations) => "Moderations",
        Some(Endpoint::ImagesGenerations | Endpoint::ImagesEdits) => "Images",
        Some(Endpoint::Videos) => "Videos",
        _ => "This endpoint",
    }
}

// ---------------------------------------------------------------------------------------------
// Duplicate detection: a 128-bit hash per custom_id instead of the string.

/// A set of 128-bit id hashes; the hash is already uniform, so the table uses its low 64 bits
/// as is instead of hashing it again.
type IdSet = HashSet<u128, BuildHasherDefault<PreHashed>>;

#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Two independent SipHash-1-3 passes. With 128 bits a false duplicate among 50,000 ids has
/// odds of about 1 in 10^29.
fn id_hash(id: impl Hash) -> u128 {
    let half = |salt: u64| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x9e37_79b9_7f4a_7c15)) << 64) | u128::from(half(0x6a09_e667_f3bc_c909))
}

// ---------------------------------------------------------------------------------------------
// Per-line analysis: the facts of one line, borrowed from it.

/// What one line says, found without looking at any other line.
#[derive(Debug)]
enum LineFacts<'a> {
    /// Empty or whitespace only.
    Blank,
    /// Not UTF-8 or not JSON.
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// A JSON object.
    Object(ObjectFacts<'a>),
}

#[derive(Debug, Default)]
struct ObjectFacts<'a> {
    custom_id: Field<'a>,
    method: Field<'a>,
    url: Field<'a>,
    body: Body<'a>,
    /// Estimated prompt tokens of the body; 0 unless asked for.
    tokens: u64,
}

impl LineFacts<'_> {
    /// Detaches the facts from the line's buffer (for handing them to another thread).
    fn into_owned(self) -> LineFacts<'static> {
        match self {
            LineFacts::Blank => LineFacts::Blank,
            LineFacts::NotJson => LineFacts::NotJson,
            LineFacts::NotObject => LineFacts::NotObject,
            LineFacts::Object(obj) => LineFacts::Object(ObjectFacts {
                custom_id: obj.custom_id.into_owned(),
                method: obj.method.into_owned(),
                url: obj.url.into_owned(),
                body: match obj.body {
                    Body::Missing => Body::Missing,
                    Body::Null => Body::Null,
                    Body::NotObject => Body::NotObject,
                    Body::Object(b) => Body::Object(BodyFacts {
                        model: b.model.into_owned(),
                        stream: b.stream,
                        has_messages: b.has_messages,
                    }),
                },
                tokens: obj.tokens,
            }),
        }
    }
}

#[derive(Debug, Default)]
enum Body<'a> {
    #[default]
    Missing,
    Null,
    NotObject,
    Object(BodyFacts<'a>),
}

#[derive(Debug, Default)]
struct BodyFacts<'a> {
    model: Field<'a>,
    /// `stream` is `true`.
    stream: bool,
    /// `messages` is present and not null.
    has_messages: bool,
}

/// Looks at one line (with or without its line ending) on its own. With a `token_cache`, also
/// estimates the body's prompt tokens with the line's own model.
fn analyse_line<'a>(line: &'a [u8], token_cache: Option<&mut CountCache>) -> LineFacts<'a> {
    if line
        .iter()
        .all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return LineFacts::Blank;
    }
    // Validating UTF-8 once up front lets the parsers borrow strings without checking them.
    let Ok(text) = std::str::from_utf8(line) else {
        return LineFacts::NotJson;
    };
    let Some(cache) = token_cache else {
        // The usual case: the scanner skips the long strings (base64 images) fastest.
        return match scan_request_line(text) {
            Ok(Some(obj)) => LineFacts::Object(obj),
            Ok(None) => LineFacts::NotObject,
            Err(_) => LineFacts::NotJson,
        };
    };
    // Estimating tokens needs the message texts too: serde probes collect them.
    let mut tally = Tally::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = LineSeed {
        tally: Some(&mut tally),
    }
    .deserialize(&mut de)
    .and_then(|facts| de.end().map(|()| facts));
    match parsed {
        Err(_) => LineFacts::NotJson,
        Ok(None) => LineFacts::NotObject,
        Ok(Some(mut obj)) => {
            let model = match &obj.body {
                Body::Object(body) => body.model.as_str().unwrap_or(""),
                _ => "",
            };
            obj.tokens = tally.total(&TokenEstimator::for_model(model), cache);
            LineFacts::Object(obj)
        }
    }
}

/// The facts of a request line, read with the scanner; `Ok(None)` when the line is JSON but
/// not an object. Gives the same facts as the serde probes (tests hold them together).
fn scan_request_line(text: &str) -> Scan<Option<ObjectFacts<'_>>> {
    let mut s = Scanner::new(text);
    let facts = scan_request(&mut s)?;
    s.end()?;
    Ok(facts)
}

/// The request line value at the scanner's cursor (what follows it is the caller's business).
fn scan_request<'a>(s: &mut Scanner<'a>) -> Scan<Option<ObjectFacts<'a>>> {
    s.ws();
    if s.peek() != Some(b'{') {
        s.value()?;
        return Ok(None);
    }
    let mut facts = ObjectFacts::default();
    // Repeated keys: the last wins, as with the serde probes and Python's json module.
    s.object(|s, key| {
        match key.as_ref() {
            b"custom_id" => facts.custom_id = s.field()?,
            b"method" => facts.method = s.field()?,
            b"url" => facts.url = s.field()?,
            b"body" => {
                let body = s.nested(|s, key, body: &mut BodyFacts<'_>| {
                    match key {
                        b"model" => body.model = s.field()?,
                        b"stream" => body.stream = s.field()? == Field::Bool(true),
                        b"messages" => body.has_messages = s.field()? != Field::Null,
                        _ => s.skip()?,
                    }
                    Ok(())
                })?;
                facts.body = match body {
                    Nested::Missing => Body::Missing,
                    Nested::Null => Body::Null,
                    Nested::NotObject => Body::NotObject,
                    Nested::Object(body) => Body::Object(body),
                };
            }
            _ => s.skip()?,
        }
        Ok(())
    })?;
    Ok(Some(facts))
}

/// Borrowed text and fixed costs of one body, counted once its model is known. Mirrors
/// [`TokenEstimator::estimate_json_body`] exactly (a test holds them together).
#[derive(Debug, Default)]
struct Tally<'a> {
    fixed: u64,
    texts: Vec<Cow<'a, str>>,
}

impl<'a> Tally<'a> {
    fn total(&self, est: &TokenEstimator, cache: &mut CountCache) -> u64 {
        self.fixed + self.texts.iter().map(|t| cache.count(est, t)).sum::<u64>()
    }

    fn append(&mut self, other: Tally<'a>) {
        self.fixed += other.fixed;
        self.texts.extend(other.texts);
    }
}

/// Token counts of long texts already seen: the same system prompt usually opens every line,
/// and BPE is by far the slowest part of estimating.
#[derive(Debug, Default)]
struct CountCache {
    counts: HashMap<u128, u64, BuildHasherDefault<PreHashed>>,
}

impl CountCache {
    /// Texts shorter than this are cheaper to count than to look up.
    const MIN_LEN: usize = 64;
    /// Bound on entries; the cache starts over when full.
    const MAX_ENTRIES: usize = 4096;

    fn count(&mut self, est: &TokenEstimator, text: &str) -> u64 {
        if text.len() < Self::MIN_LEN {
            return est.count_text(text);
        }
        let key = id_hash((est.encoding_name(), text));
        if let Some(&n) = self.counts.get(&key) {
            return n;
        }
        if self.counts.len() >= Self::MAX_ENTRIES {
            self.counts.clear();
        }
        let n = est.count_text(text);
        self.counts.insert(key, n);
        n
    }
}

/// Generates a field-name enum (with an `Other` catch-all) that deserialises without
/// allocating.
macro_rules! keys {
    ($name:ident { $($variant:ident = $key:literal),* $(,)? }) => {
        #[derive(Clone, Copy)]
        enum $name { $($variant,)* Other }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct KeyVisitor;
                impl Visitor<'_> for KeyVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a field name")
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        Ok(match s { $($key => $name::$variant,)* _ => $name::Other })
                    }
                }
                d.deserialize_identifier(KeyVisitor)
            }
        }
    };
}

keys!(LineKey {
    CustomId = "custom_id",
    Method = "method",
    Url = "url",
    Body = "body",
});
keys!(BodyKey {
    Model = "model",
    Stream = "stream",
    Messages = "messages",
    Input = "input",
    Prompt = "prompt",
    MaxCompletionTokens = "max_completion_tokens",
    MaxTokens = "max_tokens",
    MaxOutputTokens = "max_output_tokens",
});
keys!(ItemKey {
    Content = "content",
    Type = "type",
    Text = "text",
    ImageUrl = "image_url",
    Detail = "detail",
});
keys!(DetailKey { Detail = "detail" });

/// Visitor methods that accept a JSON value of an unexpected kind (skipping its contents,
/// syntax still checked) and produce `$value`, so that a wrong type is a validation problem
/// rather than a parse error.
macro_rules! accept_other {
    ($value:expr; $($kind:ident),*) => { $(accept_other!(@ $kind, $value);)* };
    (@ bool, $value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ i64, $value:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ u64, $value:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ f64, $value:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ unit, $value:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ str, $value:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($value) }
    };
    (@ seq, $value:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_seq(seq).map(|_| $value)
        }
    };
    (@ map, $value:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_map(map).map(|_| $value)
        }
    };
}

/// Skips a map value of any type, checking its syntax (serde_json's fast path).
fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

/// A request line; `None` when the line is JSON but not an object.
struct LineSeed<'t, 'de> {
    tally: Option<&'t mut Tally<'de>>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_, 'de> {
    type Value = Option<ObjectFacts<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_, 'de> {
    type Value = Option<ObjectFacts<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request line")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut facts = ObjectFacts::default();
        while let Some(key) = map.next_key::<LineKey>()? {
            match key {
                LineKey::CustomId => facts.custom_id = map.next_value()?,
                LineKey::Method => facts.method = map.next_value()?,
                LineKey::Url => facts.url = map.next_value()?,
                LineKey::Body => {
                    facts.body = map.next_value_seed(BodySeed {
                        tally: self.tally.as_deref_mut(),
                    })?;
                }
                LineKey::Other => skip_value(&mut map)?,
            }
        }
        Ok(Some(facts))
    }
    accept_other!(None; bool, i64, u64, f64, unit, str, seq);
}

/// A request body; collects token material into `tally` when there is one.
struct BodySeed<'t, 'de> {
    tally: Option<&'t mut Tally<'de>>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, 'de> {
    type Value = Body<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, 'de> {
    type Value = Body<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request body")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut facts = BodyFacts::default();
        while let Some(key) = map.next_key::<BodyKey>()? {
            match (key, self.tally.as_deref_mut()) {
                (BodyKey::Model, _) => facts.model = map.next_value()?,
                (BodyKey::Stream, _) => {
                    facts.stream = map.next_value::<Field>()? == Field::Bool(true);
                }
                (BodyKey::Messages, None) => {
                    facts.has_messages = map.next_value::<Option<IgnoredAny>>()?.is_some();
                }
                (BodyKey::Messages, Some(tally)) => {
                    facts.has_messages = map.next_value_seed(MessagesSeed(tally))?;
                }
                (BodyKey::Input | BodyKey::Prompt, Some(tally)) => {
                    map.next_value_seed(InputSeed(tally))?;
                }
                (
                    BodyKey::MaxCompletionTokens | BodyKey::MaxTokens | BodyKey::MaxOutputTokens,
                    Some(tally),
                ) => {
                    if let Field::Count(n) = map.next_value()? {
                        tally.fixed += n;
                    }
                }
                _ => skip_value(&mut map)?,
            }
        }
        Ok(Body::Object(facts))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Body::Null)
    }
    accept_other!(Body::NotObject; bool, i64, u64, f64, str, seq);
}

/// `messages`: returns whether it is present and not null. Every array element costs
/// [`MESSAGE_OVERHEAD`], plus its `content`.
struct MessagesSeed<'t, 'de>(&'t mut Tally<'de>);

impl<'de> DeserializeSeed<'de> for MessagesSeed<'_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessagesSeed<'_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(item) = seq.next_element::<Item>()? {
            self.0.fixed += MESSAGE_OVERHEAD;
            if let Some(content) = item.content {
                self.0.append(content);
            }
        }
        Ok(true)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    accept_other!(true; bool, i64, u64, f64, str, map);
}

/// `input` or `prompt`: a string, or an array of strings, message items or content parts.
struct InputSeed<'t, 'de>(&'t mut Tally<'de>);

impl<'de> DeserializeSeed<'de> for InputSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InputSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an input")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.0.texts.push(Cow::Borrowed(s));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.texts.push(Cow::Owned(s.to_owned()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Item>()? {
            if let Some(text) = item.string {
                self.0.texts.push(text);
            } else if let Some(content) = item.content {
                self.0.fixed += MESSAGE_OVERHEAD;
                self.0.append(content);
            } else if item.is_object {
                item.tally_as_part(self.0);
            }
        }
        Ok(())
    }
    accept_other!((); bool, i64, u64, f64, unit, map);
}

/// A message `content`: a string or an array of parts.
struct ContentSeed<'t, 'de>(&'t mut Tally<'de>);

impl<'de> DeserializeSeed<'de> for ContentSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message content")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.0.texts.push(Cow::Borrowed(s));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.texts.push(Cow::Owned(s.to_owned()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(part) = seq.next_element::<Item>()? {
            part.tally_as_part(self.0);
        }
        Ok(())
    }
    accept_other!((); bool, i64, u64, f64, unit, map);
}

/// An element of `messages`, `input` or `content`: a message, a content part or a string.
#[derive(Default)]
struct Item<'de> {
    string: Option<Cow<'de, str>>,
    is_object: bool,
    /// `Some` when the object has a `content` key, whatever its value.
    content: Option<Tally<'de>>,
    kind: Field<'de>,
    text: Field<'de>,
    detail: Field<'de>,
    /// `image_url.detail` when `image_url` is an object.
    url_detail: Field<'de>,
}

impl<'de> Item<'de> {
    /// Counts this item as a content part: an image by its detail, or its `text`.
    fn tally_as_part(self, tally: &mut Tally<'de>) {
        if is_image_part(self.kind.as_str().unwrap_or("")) {
            let detail = match &self.detail {
                Field::Missing => self.url_detail.as_str(),
                other => other.as_str(),
            };
            tally.fixed += TokenEstimator::image_tokens(detail);
        } else if let Field::Str(text) = self.text {
            tally.texts.push(text);
        }
    }
}

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message or content part")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
                let mut item = Item {
                    is_object: true,
                    ..Item::default()
                };
                while let Some(key) = map.next_key::<ItemKey>()? {
                    match key {
                        ItemKey::Content => {
                            let mut content = Tally::default();
                            map.next_value_seed(ContentSeed(&mut content))?;
                            item.content = Some(content);
                        }
                        ItemKey::Type => item.kind = map.next_value()?,
                        ItemKey::Text => item.text = map.next_value()?,
                        ItemKey::ImageUrl => item.url_detail = map.next_value::<UrlDetail>()?.0,
                        ItemKey::Detail => item.detail = map.next_value()?,
                        ItemKey::Other => skip_value(&mut map)?,
                    }
                }
                Ok(item)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Item<'de>, E> {
                Ok(Item {
                    string: Some(Cow::Borrowed(s)),
                    ..Item::default()
                })
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Item<'de>, E> {
                Ok(Item {
                    string: Some(Cow::Owned(s.to_owned())),
                    ..Item::default()
                })
            }
            accept_other!(Item::default(); bool, i64, u64, f64, unit, seq);
        }
        d.deserialize_any(ItemVisitor)
    }
}

/// `image_url`: the `detail` inside it when it is an object (chat), else `Missing`.
struct UrlDetail<'de>(Field<'de>);

impl<'de> Deserialize<'de> for UrlDetail<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UrlVisitor;
        impl<'de> Visitor<'de> for UrlVisitor {
            type Value = UrlDetail<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an image_url")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut detail = Field::Missing;
                while let Some(key) = map.next_key::<DetailKey>()? {
                    match key {
                        DetailKey::Detail => detail = map.next_value()?,
                        DetailKey::Other => skip_value(&mut map)?,
                    }
                }
                Ok(UrlDetail(detail))
            }
            accept_other!(UrlDetail(Field::Missing); bool, i64, u64, f64, unit, str, seq);
        }
        d.deserialize_any(UrlVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use serde_json::json;

    use super::*;

    /// A valid chat line with the given id.
    fn ok(id: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}]}}}}"#
        )
    }

    /// Renders problems one per line as `<line> <code> <param>: <message>`.
    fn render(problems: &[Problem]) -> String {
        problems
            .iter()
            .map(|p| {
                let line = p.line.map_or("-".to_owned(), |l| l.to_string());
                let param = p.param.as_deref().unwrap_or("-");
                format!("{line} {} {param}: {}\n", p.code, p.message)
            })
            .collect()
    }

    fn run(input: &str, opts: &ValidationOptions) -> (String, ValidationSummary) {
        let mut problems = Vec::new();
        let summary = validate_jsonl(input.as_bytes(), opts, |p| problems.push(p)).unwrap();
        assert_eq!(summary.problems, problems.len() as u64);
        assert_eq!(summary.bytes, input.len() as u64);
        // The same input through a tiny buffer (lines straddle refills) and through the
        // parallel path must give the same answer.
        let mut small = Vec::new();
        let reader = BufReader::with_capacity(7, input.as_bytes());
        let s = validate_jsonl(reader, opts, |p| small.push(p)).unwrap();
        assert_eq!((&s, &small), (&summary, &problems), "small buffer");
        let mut par = Vec::new();
        let s = validate_jsonl_parallel(input.as_bytes(), opts, 3, |p| par.push(p)).unwrap();
        assert_eq!((&s, &par), (&summary, &problems), "parallel");
        // With and without token estimates, lines are read by different parsers (serde probes,
        // the scanner): they must find the same problems.
        let flipped = ValidationOptions {
            estimate_tokens: !opts.estimate_tokens,
            ..opts.clone()
        };
        let mut other = Vec::new();
        let s = validate_jsonl(input.as_bytes(), &flipped, |p| other.push(p)).unwrap();
        assert_eq!(other, problems, "estimate_tokens flipped");
        assert_eq!(s.model, summary.model);
        (render(&problems), summary)
    }

    fn check_with(opts: &ValidationOptions, input: &str, expect: &str) {
        let (got, _) = run(input, opts);
        let expect: String = expect
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(got, expect, "input:\n{input}");
    }

    fn check(input: &str, expect: &str) {
        check_with(&ValidationOptions::default(), input, expect);
    }

    #[test]
    fn valid_files_have_no_problems() {
        let two = format!("{}\n{}\n", ok("a"), ok("b"));
        let (problems, summary) = run(&two, &ValidationOptions::default());
        assert_eq!(problems, "");
        assert_eq!(
            summary,
            ValidationSummary {
                lines: 2,
                bytes: two.len() as u64,
                endpoint: Some(Endpoint::ChatCompletions),
                model: Some("gpt-4o-mini".into()),
                estimated_tokens: 0,
                problems: 0,
            }
        );
        assert!(summary.is_valid());
        // No final newline, CRLF endings, trailing blank lines: all fine.
        check(&format!("{}\n{}", ok("a"), ok("b")), "");
        check(&format!("{}\r\n{}\r\n", ok("a"), ok("b")), "");
        check(&format!("{}\n{}\n\n\r\n  \n", ok("a"), ok("b")), "");
        // Unknown fields anywhere are accepted.
        check(
            r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","extra":[1,{"x":null}],"body":{"model":"m","messages":[],"temperature":0.5,"metadata":{"k":"v"}}}"#,
            "",
        );
    }

    #[test]
    fn crlf_bytes_are_counted_exactly() {
        let input = format!("{}\r\n{}\r\n", ok("a"), ok("b"));
        let (_, summary) = run(&input, &ValidationOptions::default());
        assert_eq!(summary.bytes, input.len() as u64);
        assert_eq!(summary.lines, 2);
    }

    #[test]
    fn empty_file() {
        check("", "- empty_file -: The input file has no requests.");
        check("\n\n", "- empty_file -: The input file has no requests.");
        check("\r\n", "- empty_file -: The input file has no requests.");
    }

    #[test]
    fn invalid_json_line() {
        let a = ok("a");
        check(
            &format!("{a}\n{{\"custom_id\": \n{a}x\n"),
            "
            2 invalid_json_line -: This line is not parseable as valid JSON.
            3 invalid_json_line -: This line is not parseable as valid JSON.
            ",
        );
        // A blank line in the middle is a bad line; only trailing ones are forgiven.
        check(
            &format!("{}\n\n \r\n{}\n\n", ok("a"), ok("b")),
            "
            2 invalid_json_line -: This line is not parseable as valid JSON.
            3 invalid_json_line -: This line is not parseable as valid JSON.
            ",
        );
        // Two values on one line; a raw control character inside a string.
        check(
            &format!("{{}} {{}}\n{}\n", ok("a\tb")),
            "
            1 invalid_json_line -: This line is not parseable as valid JSON.
            2 invalid_json_line -: This line is not parseable as valid JSON.
            ",
        );
        // Not UTF-8 (inside the custom_id).
        let mut invalid_utf8 = ok("a").into_bytes();
        invalid_utf8[14] = 0xff;
        let mut problems = Vec::new();
        validate_jsonl(&invalid_utf8[..], &ValidationOptions::default(), |p| {
            problems.push(p)
        })
        .unwrap();
        assert_eq!(
            render(&problems),
            "1 invalid_json_line -: This line is not parseable as valid JSON.\n"
        );
    }

    #[test]
    fn not_an_object() {
        check(
            "[1, 2]\n\"x\"\nnull\n",
            "
            1 invalid_request -: This line is not a JSON object.
            2 invalid_request -: This line is not a JSON object.
            3 invalid_request -: This line is not a JSON object.
            ",
        );
    }

    #[test]
    fn missing_required_parameter() {
        let body = r#""body":{"model":"m","messages":[]}"#;
        let url = r#""url":"/v1/chat/completions""#;
        check(
            &[
                format!(r#"{{"method":"POST",{url},{body}}}"#),
                format!(r#"{{"custom_id":"b",{url},{body}}}"#),
                format!(r#"{{"custom_id":"c","method":"POST",{body}}}"#),
                format!(r#"{{"custom_id":"d","method":"POST",{url}}}"#),
                format!(r#"{{"custom_id":null,"method":"POST",{url},"body":null}}"#),
            ]
            .join("\n"),
            "
            1 missing_required_parameter custom_id: Missing required parameter: 'custom_id'.
            2 missing_required_parameter method: Missing required parameter: 'method'.
            3 missing_required_parameter url: Missing required parameter: 'url'.
            4 missing_required_parameter body: Missing required parameter: 'body'.
            5 missing_required_parameter custom_id: Missing required parameter: 'custom_id'.
            5 missing_required_parameter body: Missing required parameter: 'body'.
            ",
        );
    }

    #[test]
    fn several_problems_on_one_line_in_field_order() {
        check(
            "{}\n",
            "
            1 missing_required_parameter custom_id: Missing required parameter: 'custom_id'.
            1 missing_required_parameter method: Missing required parameter: 'method'.
            1 missing_required_parameter url: Missing required parameter: 'url'.
            1 missing_required_parameter body: Missing required parameter: 'body'.
            ",
        );
        check(
            &format!(
                "{}\n{}\n",
                ok("a"),
                r#"{"custom_id":"a","method":"GET","url":"/v1/embeddings","body":{"stream":true}}"#
            ),
            "
            2 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
            2 invalid_method method: Invalid method 'GET'. Only 'POST' is supported.
            2 invalid_url url: The URL provided for this request does not match the batch endpoint.
            2 invalid_request body.model: Model parameter is required.
            2 invalid_request body.messages: Messages parameter is required.
            2 streaming_unsupported body.stream: Chat Completions: Streaming is not supported in the Batch API.
            ",
        );
    }

    #[test]
    fn invalid_method() {
        check(
            &[
                r#"{"custom_id":"a","method":"post","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#,
                r#"{"custom_id":"b","method":1,"url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#,
            ]
            .join("\n"),
            "
            1 invalid_method method: Invalid method 'post'. Only 'POST' is supported.
            2 invalid_method method: Invalid type for 'method': expected the string 'POST'.
            ",
        );
    }

    #[test]
    fn invalid_url() {
        let line = |id: &str, url: &str| {
            format!(
                r#"{{"custom_id":"{id}","method":"POST","url":{url},"body":{{"model":"m","input":"x"}}}}"#
            )
        };
        let msg =
            "invalid_url url: The URL provided for this request does not match the batch endpoint.";
        // Not an endpoint at all; then the first valid url fixes the endpoint, and a
        // different one after it is wrong.
        check(
            &[
                line("a", r#""/v1/nope""#),
                line("b", r#""/v1/embeddings""#),
                line("c", r#""/v1/responses""#),
                line("d", "42"),
                line("e", r#""/v1/embeddings""#),
            ]
            .join("\n"),
            &format!("1 {msg}\n3 {msg}\n4 {msg}"),
        );
        // With an expected endpoint, the first line is held to it too.
        let opts = ValidationOptions {
            expected_endpoint: Some(Endpoint::Responses),
            ..ValidationOptions::default()
        };
        check_with(
            &opts,
            &[
                line("a", r#""/v1/embeddings""#),
                line("b", r#""/v1/responses""#),
            ]
            .join("\n"),
            &format!("1 {msg}"),
        );
    }

    #[test]
    fn endpoint_comes_from_the_first_valid_line() {
        let input = format!(
            "{}\n{}\n",
            r#"{"custom_id":"a","method":"POST","url":"/v1/x","body":{"model":"m"}}"#,
            r#"{"custom_id":"b","method":"POST","url":"/v1/moderations","body":{"input":"x"}}"#
        );
        let (problems, summary) = run(&input, &ValidationOptions::default());
        assert_eq!(summary.endpoint, Some(Endpoint::Moderations));
        // Moderations needs no model; line 1's `model` still fixes the batch model.
        assert_eq!(
            problems,
            "1 invalid_url url: The URL provided for this request does not match the batch endpoint.\n"
        );
        assert_eq!(summary.model.as_deref(), Some("m"));
    }

    #[test]
    fn invalid_request_in_body() {
        let line = |id: &str, body: &str| {
            format!(
                r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{body}}}"#
            )
        };
        check(
            &[
                line("a", r#"{"messages":[]}"#),
                line("b", r#"{"model":"m"}"#),
                line("c", r#"{"model":"m","messages":null}"#),
                line("d", r#"{"model":7,"messages":[]}"#),
                line("e", r#""not an object""#),
                line("f", "[]"),
            ]
            .join("\n"),
            "
            1 invalid_request body.model: Model parameter is required.
            2 invalid_request body.messages: Messages parameter is required.
            3 invalid_request body.messages: Messages parameter is required.
            4 invalid_request body.model: Invalid type for 'body.model': expected a string.
            5 invalid_request body: Invalid type for 'body': expected an object.
            6 invalid_request body: Invalid type for 'body': expected an object.
            ",
        );
        // `messages` is only required for chat completions.
        check(
            r#"{"custom_id":"a","method":"POST","url":"/v1/responses","body":{"model":"m","input":"x"}}"#,
            "",
        );
    }

    #[test]
    fn custom_id_must_be_a_non_empty_string() {
        let line = |id: &str| {
            format!(
                r#"{{"custom_id":{id},"method":"POST","url":"/v1/chat/completions","body":{{"model":"m","messages":[]}}}}"#
            )
        };
        check(
            &[line(r#""""#), line("7"), line(r#"{"a":1}"#)].join("\n"),
            "
            1 invalid_request custom_id: Invalid 'custom_id': empty string. Expected a non-empty string.
            2 invalid_request custom_id: Invalid type for 'custom_id': expected a string.
            3 invalid_request custom_id: Invalid type for 'custom_id': expected a string.
            ",
        );
    }

    #[test]
    fn duplicate_custom_id() {
        check(
            &[ok("a"), ok("b"), ok("a"), ok("c"), ok("b"), ok("a")].join("\n"),
            "
            3 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
            5 duplicate_custom_id custom_id: The custom_id 'b' is used by an earlier request; each request in a batch needs a unique custom_id.
            6 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
            ",
        );
        // Ids compare after JSON unescaping: "\u0061" is "a".
        check(
            &[ok("a"), ok(r"\u0061"), ok(r#"q\"q"#), ok(r#"q\u0022q"#)].join("\n"),
            r#"
            2 duplicate_custom_id custom_id: The custom_id 'a' is used by an earlier request; each request in a batch needs a unique custom_id.
            4 duplicate_custom_id custom_id: The custom_id 'q"q' is used by an earlier request; each request in a batch needs a unique custom_id.
            "#,
        );
    }

    #[test]
    fn mismatched_model() {
        let line = |id: &str, model: &str| {
            format!(
                r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[]}}}}"#
            )
        };
        let input = [
            line("a", "gpt-4o-mini"),
            line("b", "gpt-4o"),
            line("c", "gpt-4o-mini"),
        ]
        .join("\n");
        check(
            &input,
            "2 mismatched_model body.model: The model 'gpt-4o' does not match the batch's model 'gpt-4o-mini'. All requests in a batch must use the same model.",
        );
        let (_, summary) = run(&input, &ValidationOptions::default());
        assert_eq!(summary.model.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn model_not_found() {
        let opts = ValidationOptions {
            known_models: Some(["gpt-4o-mini".to_owned()].into()),
            ..ValidationOptions::default()
        };
        let line = |id: &str, model: &str| {
            format!(
                r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[]}}}}"#
            )
        };
        check_with(
            &opts,
            &[
                line("a", "nonexistent-model-xyz"),
                line("b", "nonexistent-model-xyz"),
                line("c", "gpt-4o-mini"),
            ]
            .join("\n"),
            "
            1 model_not_found body.model: The provided model 'nonexistent-model-xyz' is not supported by the Batch API.
            2 model_not_found body.model: The provided model 'nonexistent-model-xyz' is not supported by the Batch API.
            3 mismatched_model body.model: The model 'gpt-4o-mini' does not match the batch's model 'nonexistent-model-xyz'. All requests in a batch must use the same model.
            ",
        );
    }

    #[test]
    fn streaming_unsupported() {
        let line = |id: &str, url: &str, stream: &str| {
            format!(
                r#"{{"custom_id":"{id}","method":"POST","url":"{url}","body":{{"model":"m","messages":[],"stream":{stream}}}}}"#
            )
        };
        check(
            &[
                line("a", "/v1/chat/completions", "true"),
                line("b", "/v1/chat/completions", "false"),
                line("c", "/v1/chat/completions", "null"),
                line("d", "/v1/chat/completions", "\"true\""),
            ]
            .join("\n"),
            "1 streaming_unsupported body.stream: Chat Completions: Streaming is not supported in the Batch API.",
        );
        check(
            &line("a", "/v1/responses", "true"),
            "1 streaming_unsupported body.stream: Responses: Streaming is not supported in the Batch API.",
        );
    }

    #[test]
    fn file_limits_are_reported_once_after_the_lines() {
        let opts = ValidationOptions {
            max_lines: 2,
            max_bytes: 100,
            ..ValidationOptions::default()
        };
        let input = [ok("a"), "{".into(), ok("b"), "[]".into()].join("\n") + "\n";
        check_with(
            &opts,
            &input,
            &format!(
                "
                2 invalid_json_line -: This line is not parseable as valid JSON.
                4 invalid_request -: This line is not a JSON object.
                - too_many_lines -: The input file has 4 lines; a batch may have at most 2 requests.
                - file_too_large -: File is too large: {} bytes; a batch input file may be at most 100 bytes.
                ",
                input.len()
            ),
        );
        // Exactly at the limits is fine.
        let input = format!("{}\n{}\n", ok("a"), ok("b"));
        let opts = ValidationOptions {
            max_lines: 2,
            max_bytes: input.len() as u64,
            ..ValidationOptions::default()
        };
        check_with(&opts, &input, "");
    }

    #[test]
    fn problems_on_many_lines_are_all_reported_in_order() {
        let mut input = String::new();
        let mut expect = String::new();
        for n in 1..=200u64 {
            if n % 3 == 0 {
                input.push_str("not json\n");
                expect.push_str(&format!(
                    "{n} invalid_json_line -: This line is not parseable as valid JSON.\n"
                ));
            } else if n % 7 == 0 {
                input.push_str(&ok("dup"));
                input.push('\n');
                if n > 7 {
                    expect.push_str(&format!("{n} duplicate_custom_id custom_id: The custom_id 'dup' is used by an earlier request; each request in a batch needs a unique custom_id.\n"));
                }
            } else {
                input.push_str(&ok(&format!("id-{n}")));
                input.push('\n');
            }
        }
        let (got, summary) = run(&input, &ValidationOptions::default());
        assert_eq!(got, expect);
        assert_eq!(summary.lines, 200);
    }

    #[test]
    fn parallel_matches_sequential_across_block_boundaries() {
        // About 3 MiB: several blocks, with lines straddling the block size.
        let image = "A".repeat(4000);
        let mut input = String::new();
        for n in 0..800 {
            match n % 97 {
                0 => input.push_str("{bad\n"),
                1 => input.push('\n'),
                _ => input.push_str(&format!(
                    r#"{{"custom_id":"c{}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o","messages":[{{"role":"user","content":[{{"type":"text","text":"fox {n}"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}"}}}}]}}]}}}}{}"#,
                    n % 400,
                    if n % 5 == 0 { "\r\n" } else { "\n" }
                )),
            }
        }
        for estimate_tokens in [false, true] {
            let opts = ValidationOptions {
                estimate_tokens,
                ..ValidationOptions::default()
            };
            let mut seq = Vec::new();
            let s1 = validate_jsonl(input.as_bytes(), &opts, |p| seq.push(p)).unwrap();
            for threads in [2, 4] {
                let mut par = Vec::new();
                let s2 = validate_jsonl_parallel(
                    BufReader::new(input.as_bytes()),
                    &opts,
                    threads,
                    |p| par.push(p),
                )
                .unwrap();
                assert_eq!(s1, s2);
                assert_eq!(seq, par);
            }
            assert_eq!(s1.bytes, input.len() as u64);
            assert!(seq.len() > 100, "{}", seq.len());
            assert_eq!(s1.estimated_tokens > 0, estimate_tokens);
        }
    }

    #[test]
    fn io_errors_are_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let opts = ValidationOptions::default();
        let err = validate_jsonl(BufReader::new(Failing), &opts, |_| ()).unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
        let err = validate_jsonl_parallel(BufReader::new(Failing), &opts, 2, |_| ()).unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    #[test]
    fn push_based_validator() {
        let mut v = Validator::new(ValidationOptions::default());
        let mut problems = Vec::new();
        v.push_line(ok("a").as_bytes(), |p| problems.push(p));
        v.push_line(b"\n", |p| problems.push(p));
        v.push_line(b"", |p| problems.push(p));
        assert!(
            problems.is_empty(),
            "blank lines wait to see whether more follow"
        );
        v.push_line(b"nope\r\n", |p| problems.push(p));
        assert_eq!(
            problems.iter().map(|p| p.line).collect::<Vec<_>>(),
            [Some(2), Some(3), Some(4)]
        );
        let summary = v.finish(|p| problems.push(p));
        assert_eq!(summary.lines, 4);
        assert_eq!(summary.problems, 3);
    }

    #[test]
    fn problems_serialise_like_openai_errors() {
        let p = Problem::at(2, ProblemCode::InvalidUrl, Some("url"), "m");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"code": "invalid_url", "message": "m", "param": "url", "line": 2})
        );
        assert_eq!(p.to_string(), "line 2: invalid_url: m");
        for code in [
            ProblemCode::InvalidJsonLine,
            ProblemCode::MissingRequiredParameter,
            ProblemCode::InvalidMethod,
            ProblemCode::InvalidUrl,
            ProblemCode::MismatchedModel,
            ProblemCode::DuplicateCustomId,
            ProblemCode::StreamingUnsupported,
            ProblemCode::TooManyLines,
            ProblemCode::FileTooLarge,
            ProblemCode::EmptyFile,
            ProblemCode::InvalidRequest,
            ProblemCode::ModelNotFound,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn token_estimates_match_the_json_body_estimate() {
        let bodies = [
            json!({"model": "gpt-4o", "max_completion_tokens": 100, "messages": [
                {"role": "system", "content": "You judge images. Be terse."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Prompt: a red fox in snow. Score 1-10."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
                    {"type": "image_url", "image_url": "https://x/z.png"},
                    {"type": "text", "text": "caf\u{e9} \"quoted\" \n newline"}
                ]},
                {"role": "assistant", "content": null},
                "not a message"
            ]}),
            json!({"model": "gpt-4", "max_tokens": 7, "messages": []}),
            json!({"model": "gpt-5", "max_output_tokens": 10, "input": [
                {"role": "user", "content": [
                    {"type": "input_text", "text": "hello world"},
                    {"type": "input_image", "image_url": "data:,", "detail": "low"},
                    {"type": "input_image", "image_url": "data:,", "detail": null}
                ]},
                {"type": "input_text", "text": "loose part"},
                "loose string",
                {"role": "user", "content": null}
            ]}),
            json!({"model": "text-embedding-3-small", "input": ["a b c", "d e"]}),
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": -1}),
            json!({"model": "gpt-4o", "messages": "nope", "input": 3, "max_tokens": 1.5}),
        ];
        let opts = ValidationOptions {
            estimate_tokens: true,
            ..ValidationOptions::default()
        };
        for body in bodies {
            let model = body["model"].as_str().unwrap();
            let expect = TokenEstimator::for_model(model).estimate_json_body(&body);
            let line =
                json!({"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": body});
            let (_, summary) = run(&line.to_string(), &opts);
            assert_eq!(summary.estimated_tokens, expect, "{body}");
            assert!(expect > 0 || body["messages"] == "nope");
        }
    }

    #[test]
    fn repeated_long_texts_are_counted_once_but_add_up() {
        let system = "You judge how well an image matches its prompt. ".repeat(4);
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "hello world"}
        ]});
        let per_line = TokenEstimator::for_model("gpt-4o").estimate_json_body(&body);
        let lines: Vec<String> = (0..3)
            .map(|i| {
                json!({"custom_id": format!("c{i}"), "method": "POST",
                       "url": "/v1/chat/completions", "body": body})
                .to_string()
            })
            .collect();
        let opts = ValidationOptions {
            estimate_tokens: true,
            ..ValidationOptions::default()
        };
        let (problems, summary) = run(&lines.join("\n"), &opts);
        assert_eq!(problems, "");
        assert_eq!(summary.estimated_tokens, 3 * per_line);
        // Another model on the same text uses another BPE, not the cached count.
        let mut cache = CountCache::default();
        let o200k = TokenEstimator::for_model("gpt-4o");
        let cl100k = TokenEstimator::for_model("gpt-4");
        let text = "नमस्ते दुनिया ".repeat(20);
        assert_eq!(cache.count(&o200k, &text), o200k.count_text(&text));
        assert_eq!(cache.count(&cl100k, &text), cl100k.count_text(&text));
        assert_ne!(o200k.count_text(&text), cl100k.count_text(&text));
    }

    #[test]
    fn parsers_agree_on_corrupted_lines() {
        // Every one-byte corruption and every prefix of a realistic line: the scanner (used
        // without token estimates) and the serde probes (with) must report the same problems.
        let line = r#"{"custom_id":"judge-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":[{"type":"text","text":"Score \"this\" 1-10"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}}]}],"max_tokens":300,"temperature":0.3}}"#;
        let agree = |text: &str| {
            let problems = |estimate_tokens| {
                let opts = ValidationOptions {
                    estimate_tokens,
                    ..ValidationOptions::default()
                };
                let mut problems = Vec::new();
                validate_jsonl(text.as_bytes(), &opts, |p| problems.push(p)).unwrap();
                problems
            };
            assert_eq!(problems(false), problems(true), "{text}");
        };
        for end in 1..line.len() {
            agree(&line[..end]);
        }
        for at in 0..line.len() {
            for c in [
                b'"', b'\\', b'{', b']', b',', b':', b'n', b'1', b'-', b' ', 0x01,
            ] {
                let mut bytes = line.as_bytes().to_vec();
                bytes[at] = c;
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    agree(text);
                }
            }
        }
    }

    #[test]
    fn buffer_scanning_matches_line_by_line() {
        // Reference: split on `\n` by hand and push each line.
        let reference = |input: &[u8]| {
            let mut v = Validator::new(ValidationOptions::default());
            let mut problems = Vec::new();
            let mut rest = input;
            while !rest.is_empty() {
                let end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |p| p + 1);
                v.push_line(&rest[..end], |p| problems.push(p));
                rest = &rest[end..];
            }
            (v.finish(|p| problems.push(p)), problems)
        };
        let mut bad_utf8 = format!("{}\n", ok("a")).into_bytes();
        bad_utf8.extend_from_slice(b"{\"custom_id\":\"\xff\"}\n");
        bad_utf8.extend_from_slice(format!("{}\n", ok("b")).as_bytes());
        bad_utf8.extend_from_slice(b"\xc3");
        let inputs: Vec<Vec<u8>> = vec![
            // A pretty-printed object: every physical line is a bad line.
            format!("{{\n  \"custom_id\": \"a\"\n}}\n{}\n", ok("b")).into_bytes(),
            // Multi-byte characters that refills will split.
            format!(
                "{}\n{}\n",
                ok("caf\u{e9}-\u{1F98A}"),
                ok("\u{65e5}\u{672c}")
            )
            .into_bytes(),
            // Garbage after a value, a form feed line, a lone value, spaces around.
            format!("{} x\n\u{c}\n  {}  \r\n42\n", ok("a"), ok("b")).into_bytes(),
            // A line break inside a string is a line break.
            format!("{{\"custom_id\":\"a\nb\"}}\n{}", ok("c")).into_bytes(),
            bad_utf8,
            format!("{}\n\n\n", ok("a")).into_bytes(),
            b"\n\n{}".to_vec(),
        ];
        for input in &inputs {
            let expect = reference(input);
            for capacity in [1, 2, 3, 5, 16, 64, 100, 1 << 16] {
                let mut problems = Vec::new();
                let reader = BufReader::with_capacity(capacity, &input[..]);
                let summary =
                    validate_jsonl(reader, &ValidationOptions::default(), |p| problems.push(p))
                        .unwrap();
                assert_eq!(
                    (summary, problems),
                    expect,
                    "capacity {capacity}: {}",
                    String::from_utf8_lossy(input)
                );
            }
            let mut par = Vec::new();
            let s = validate_jsonl_parallel(&input[..], &ValidationOptions::default(), 2, |p| {
                par.push(p)
            })
            .unwrap();
            assert_eq!((s, par), expect);
        }
        // The pretty-printed object, spelled out.
        assert_eq!(
            render(&reference(&inputs[0]).1),
            "1 invalid_json_line -: This line is not parseable as valid JSON.\n\
             2 invalid_json_line -: This line is not parseable as valid JSON.\n\
             3 invalid_json_line -: This line is not parseable as valid JSON.\n"
        );
    }
}
