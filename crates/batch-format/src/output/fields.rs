//! One pass per line: a validating scanner that picks out the few fields of an output line
//! that matter on the way.

use super::usage::{Usage, read_usage, scan_usage};
use crate::field::Field;
use crate::scan::{Nested, Scan, Scanner};

/// The fields of an output line that matter, borrowed from it.
#[derive(Default)]
pub(super) struct LineFields<'a> {
    pub(super) id: Field<'a>,
    pub(super) custom_id: Field<'a>,
    pub(super) response: Nested<ResponseFields<'a>>,
    pub(super) error: Nested<ErrorFields<'a>>,
}

#[derive(Default)]
pub(super) struct ResponseFields<'a> {
    pub(super) status_code: Field<'a>,
    pub(super) request_id: Field<'a>,
    pub(super) body: Option<BodyFields<'a>>,
}

#[derive(Default)]
pub(super) struct ErrorFields<'a> {
    pub(super) code: Field<'a>,
    pub(super) message: Field<'a>,
}

/// A response body: its text, its top-level `usage` when readable, and the text of its
/// top-level `error` member.
pub(super) struct BodyFields<'a> {
    pub(super) raw: &'a str,
    pub(super) usage: Option<Usage>,
    pub(super) error: Option<&'a str>,
}

/// Reads the fields of one line (without its line ending), checking that the whole line is
/// valid JSON. `Ok(None)`: valid JSON, but not an object.
pub(super) fn scan_line(text: &str) -> Scan<Option<LineFields<'_>>> {
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

/// The members of the object at the cursor, with the fields that matter picked out.
pub(super) fn scan_fields<'a>(s: &mut Scanner<'a>) -> Scan<LineFields<'a>> {
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
        raw: s.since(start)?,
        usage,
        error,
    })
}
