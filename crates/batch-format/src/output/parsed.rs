//! A parsed line whose strings are places (in the text it was read from, or in an arena)
//! rather than copies, and the `Keeper` that notes those places.

use super::outcome::{ApiErrorBody, LineProblem, OutcomeLineRef, OutcomeRef};
use super::usage::Usage;

/// Where a kept string of a parsed line is: in the text it was read from (a block's, or a
/// line's), or copied into an arena.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
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
pub(super) struct Keeper<'k> {
    pub(super) base: &'k str,
    pub(super) arena: &'k mut String,
}

impl Keeper<'_> {
    pub(super) fn keep(&mut self, s: &str) -> Span {
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

/// What [`parse_line`](super::parse::parse_line) makes of a line.
pub(super) type ParsedLine = std::result::Result<Parsed, Box<LineProblem>>;

/// A readable line as [`parse_line`](super::parse::parse_line) leaves it: an
/// [`OutcomeLineRef`] whose strings (the body included) are [`Span`]s.
pub(super) struct Parsed {
    pub(super) line: u64,
    pub(super) id: Option<Span>,
    pub(super) custom_id: Span,
    pub(super) outcome: ParsedOutcome,
}

/// An [`OutcomeRef`] whose strings are [`Span`]s.
pub(super) enum ParsedOutcome {
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
    pub(super) fn as_ref<'a>(&'a self, text: &'a str, arena: &'a str) -> OutcomeLineRef<'a> {
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
