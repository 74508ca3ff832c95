//! Parsing one line of an output or error file into its outcome, or into the problem that
//! says why it cannot be read.

use serde::Deserialize;

use super::fields::{LineFields, ResponseFields, scan_fields, scan_line};
use super::outcome::{ApiErrorBody, LineProblem, LineProblemKind, OutcomeLine};
use super::parsed::{Keeper, Parsed, ParsedLine, ParsedOutcome};
use crate::field::Field;
use crate::scan::{Nested, Scanner};

/// Blank lines are skipped (but counted).
pub(super) fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Line `line`, at `start` of a block's text, read in place: its item goes to `items` (none
/// for a blank line), and the result is where the next line starts. `None` when the line is
/// anything but a valid JSON object or blank: it is then read on its own ([`parse_line`]),
/// which words the problem.
pub(super) fn scan_block_line(
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

/// Parses one non-blank line.
pub(super) fn parse_output_line(
    line: u64,
    bytes: &[u8],
) -> std::result::Result<OutcomeLine, LineProblem> {
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
pub(super) fn parse_line(line: u64, bytes: &[u8], keep: &mut Keeper<'_>) -> ParsedLine {
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

fn trim_line_ending(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
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
