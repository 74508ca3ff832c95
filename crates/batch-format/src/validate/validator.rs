//! `Validator`: the lines of one file in order, with the checks that need the lines before
//! them, the file-level limits, and the summary of what it saw.

use serde::Serialize;

use super::analyse::analyse_line;
use super::checks::check_object;
use super::facts::LineFacts;
use super::ids::IdSet;
use super::options::ValidationOptions;
use super::problem::{MSG_INVALID_JSON, Problem, ProblemCode};
use super::tally::CountCache;
use crate::endpoint::Endpoint;
use crate::jsonl::Line;

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

/// Push-based validator: feed it lines with [`Validator::push_line`], then call
/// [`Validator::finish`].
#[derive(Debug)]
pub struct Validator {
    opts: ValidationOptions,
    /// Physical lines pushed so far; the number of the last one.
    line: u64,
    /// Blank lines not yet known to be in the middle of the file: `(first, count)`.
    pending_blank: Option<(u64, u64)>,
    pub(super) summary: ValidationSummary,
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
    /// (its length counts towards the byte limit as given). Problems go to `on_problem`. A
    /// line over [`ValidationOptions::max_line_bytes`] is a `line_too_large` problem, as [`validate_jsonl`] reports it.
    ///
    /// [`validate_jsonl`]: crate::validate_jsonl
    pub fn push_line(&mut self, line: &[u8], on_problem: impl FnMut(Problem)) {
        let max = self.opts.max_line_bytes;
        self.push(Line::capped(line, max), max, on_problem);
    }

    /// Validates the next line as [`for_each_jsonl_line`] hands it out, capped at
    /// [`ValidationOptions::max_line_bytes`]: a line too long to be held is a `line_too_large`
    /// problem.
    ///
    /// [`for_each_jsonl_line`]: crate::for_each_jsonl_line
    pub fn push_capped(&mut self, line: Line<'_>, on_problem: impl FnMut(Problem)) {
        let max = self.opts.max_line_bytes;
        self.push(line, max, on_problem);
    }

    /// Validates the next line as a capped reader hands it out: one too long to be held (over
    /// `max` bytes) is a `line_too_large` problem.
    pub(super) fn push(&mut self, line: Line<'_>, max: usize, on_problem: impl FnMut(Problem)) {
        match line {
            Line::Whole(line) => {
                self.summary.bytes += line.len() as u64;
                let facts = analyse_line(line, self.token_cache.as_mut());
                self.apply(facts, on_problem);
            }
            Line::TooLong(bytes) => {
                self.summary.bytes += bytes;
                self.apply(LineFacts::TooLong { bytes, max }, on_problem);
            }
        }
    }

    /// Applies one line's facts, found by [`analyse_line`], as the next line of the file.
    pub(super) fn apply(&mut self, facts: LineFacts<'_>, mut on_problem: impl FnMut(Problem)) {
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
            LineFacts::TooLong { bytes, max } => emit(Problem::at(
                n,
                ProblemCode::LineTooLarge,
                None,
                format!(
                    "This line is {bytes} bytes, over the limit of {max} bytes on one line; \
                     it was read past, not checked."
                ),
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
        file_problems.extend(self.opts.file_size_problem(s.bytes));
        for p in file_problems {
            s.problems += 1;
            on_problem(p);
        }
        self.summary
    }
}
