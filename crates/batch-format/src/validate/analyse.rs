//! Reading one line into its facts with the scanner, collecting the message texts on the way
//! when tokens are estimated.

use super::facts::{Body, BodyFacts, LineFacts, ObjectFacts};
use super::tally::{CountCache, Tally};
use super::texts::{self, Texts};
use crate::field::Field;
use crate::scan::{Nested, Scan, Scanner};
use crate::tokens::TokenEstimator;

/// Looks at one line (with or without its line ending) on its own. With a `token_cache`, also
/// estimates the body's prompt tokens with the line's own model.
pub(super) fn analyse_line<'a>(
    line: &'a [u8],
    token_cache: Option<&mut CountCache>,
) -> LineFacts<'a> {
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
    // One pass with the scanner: it skips the long strings (base64 images) fastest and, when
    // tokens are estimated, collects the message texts on the way.
    let mut tally = token_cache.is_some().then(Tally::default);
    let mut obj = match scan_request_line(text, tally.as_mut()) {
        Ok(Some(obj)) => obj,
        Ok(None) => return LineFacts::NotObject,
        Err(_) => return LineFacts::NotJson,
    };
    if let (Some(cache), Some(tally)) = (token_cache, tally) {
        let model = match &obj.body {
            Body::Object(body) => body.model.as_str().unwrap_or(""),
            _ => "",
        };
        obj.tokens = tally.total(&TokenEstimator::for_model(model), cache);
    }
    LineFacts::Object(obj)
}

/// The facts of a request line, read with the scanner; `Ok(None)` when the line is JSON but
/// not an object. With a `tally`, the body's token material goes into it.
fn scan_request_line<'a>(
    text: &'a str,
    tally: Option<&mut Tally<'a>>,
) -> Scan<Option<ObjectFacts<'a>>> {
    let mut s = Scanner::new(text);
    let facts = scan_request(&mut s, tally)?;
    s.end()?;
    Ok(facts)
}

/// The request line value at the scanner's cursor (what follows it is the caller's business).
pub(super) fn scan_request<'a>(
    s: &mut Scanner<'a>,
    mut tally: Option<&mut Tally<'a>>,
) -> Scan<Option<ObjectFacts<'a>>> {
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
                    match (key, tally.as_deref_mut()) {
                        (b"model", _) => body.model = s.field()?,
                        (b"stream", _) => body.stream = s.field()? == Field::Bool(true),
                        (b"messages", None) => body.has_messages = s.field()? != Field::Null,
                        (b"messages", Some(tally)) => {
                            body.has_messages = texts::messages(s, tally)?;
                        }
                        (b"input" | b"prompt", Some(tally)) => {
                            texts::texts(s, Texts::Input, tally)?;
                        }
                        (
                            b"max_completion_tokens" | b"max_tokens" | b"max_output_tokens",
                            Some(tally),
                        ) => {
                            if let Field::Count(n) = s.field()? {
                                tally.fixed += n;
                            }
                        }
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
