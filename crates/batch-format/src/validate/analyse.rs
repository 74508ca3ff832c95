//! Reading one line into its facts: with the scanner, or, when tokens are estimated, with the
//! serde probes that also collect the message texts.

use serde::de::DeserializeSeed;

use super::facts::{Body, BodyFacts, LineFacts, ObjectFacts};
use super::probes::LineSeed;
use super::tally::{CountCache, Tally};
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
        // serde_json skips what the probes ignore without a depth limit; the scanner holds
        // the line to the same rules as without tokens (nesting deeper than serde_json's 128).
        Ok(_) if !scans(text) => LineFacts::NotJson,
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

/// Whether `text` is one JSON value as strict as the scanner reads it.
fn scans(text: &str) -> bool {
    let mut s = Scanner::new(text);
    s.skip().and_then(|()| s.end()).is_ok()
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
pub(super) fn scan_request<'a>(s: &mut Scanner<'a>) -> Scan<Option<ObjectFacts<'a>>> {
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
