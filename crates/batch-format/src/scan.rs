//! A validating JSON scanner for the hot paths (input validation, output reading): as strict
//! as serde_json, but it skips string contents 64 bytes at a time and hands out borrowed
//! slices, so each line is read once.

use std::borrow::Cow;
use std::fmt;

use crate::validate::Field;

/// A JSON value that should be an object.
#[derive(Debug, Default)]
pub(crate) enum Nested<T> {
    /// The key is absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    /// Any other non-object value.
    NotObject,
    /// An object, read into `T`.
    Object(T),
}

pub(crate) type Scan<T> = std::result::Result<T, ScanError>;

/// Where and why a line is not valid JSON.
#[derive(Debug)]
pub(crate) struct ScanError {
    /// Byte offset in the text (shown 1-based, as a column).
    pub(crate) at: usize,
    what: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at column {}", self.what, self.at + 1)
    }
}

/// Deepest nesting accepted, the same as serde_json's.
const MAX_DEPTH: u32 = 127;

/// A JSON scanner as strict as serde_json (RFC 8259: no trailing commas, no comments, no
/// NaN, no leading zeros) that skips string contents 64 bytes at a time. It checks UTF-8 as it
/// goes (in strings; everything else must be ASCII anyway), so raw bytes need no separate
/// pass, and every slice it hands out is valid UTF-8.
pub(crate) struct Scanner<'a> {
    b: &'a [u8],
    /// The same bytes as `&str`, when the caller already had them as one.
    text: Option<&'a str>,
    i: usize,
    depth: u32,
    /// Whether `\n` counts as whitespace. Not when reading JSONL straight from a buffer of
    /// many lines: there a line break ends the line, wherever it is.
    newline_is_ws: bool,
}

impl<'a> Scanner<'a> {
    /// A scanner for one JSON text (line breaks are whitespace, as in serde_json).
    pub(crate) fn new(text: &'a str) -> Self {
        Scanner {
            b: text.as_bytes(),
            text: Some(text),
            i: 0,
            depth: 0,
            newline_is_ws: true,
        }
    }

    /// A scanner for the JSONL line starting at `start` in `bytes` (which may hold more
    /// lines, and need not be UTF-8); it stops at the line's `\n` instead of reading past it.
    pub(crate) fn for_line(bytes: &'a [u8], start: usize) -> Self {
        Scanner {
            b: bytes,
            text: None,
            i: start,
            depth: 0,
            newline_is_ws: false,
        }
    }

    fn fail<T>(&self, what: &'static str) -> Scan<T> {
        Err(ScanError { at: self.i, what })
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// The cursor, as a byte offset.
    pub(crate) fn pos(&self) -> usize {
        self.i
    }

    /// The text from `start` to the cursor, which must span whole scanned values.
    pub(crate) fn since(&self, start: usize) -> &'a str {
        self.str_at(start, self.i)
    }

    /// Bytes the scanner has checked, as `&str`.
    fn str_at(&self, start: usize, end: usize) -> &'a str {
        match self.text {
            Some(text) => &text[start..end],
            None => std::str::from_utf8(&self.b[start..end]).expect("the scanner checked UTF-8"),
        }
    }

    pub(crate) fn ws(&mut self) {
        while let Some(c @ (b' ' | b'\t' | b'\n' | b'\r')) = self.peek() {
            if c == b'\n' && !self.newline_is_ws {
                return;
            }
            self.i += 1;
        }
    }

    /// Only whitespace may follow the value.
    pub(crate) fn end(&mut self) -> Scan<()> {
        self.ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("trailing characters"),
        }
    }

    /// Checks and skips one value, returning its text.
    pub(crate) fn value(&mut self) -> Scan<&'a str> {
        self.ws();
        let start = self.i;
        self.skip()?;
        Ok(self.str_at(start, self.i))
    }

    /// Checks and skips one value.
    pub(crate) fn skip(&mut self) -> Scan<()> {
        self.ws();
        match self.peek() {
            Some(b'"') => {
                self.string_end()?;
            }
            Some(b'{') => self.object(|s, _| s.skip())?,
            Some(b'[') => self.array()?,
            Some(b't') => self.literal("true")?,
            Some(b'f') => self.literal("false")?,
            Some(b'n') => self.literal("null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return self.fail("expected a value"),
            None => return self.fail("EOF while parsing a value"),
        }
        Ok(())
    }

    fn enter(&mut self) -> Scan<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("recursion limit exceeded");
        }
        self.i += 1;
        self.ws();
        Ok(())
    }

    fn array(&mut self) -> Scan<()> {
        self.enter()?;
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                self.skip()?;
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    None => return self.fail("EOF while parsing a list"),
                    _ => return self.fail("expected ',' or ']'"),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// An object at the cursor. For each member, `member` gets the key (unescaped, as bytes:
    /// comparing bytes spares a UTF-8 conversion per key) with the cursor on the value, and
    /// must consume the value.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, [u8]>) -> Scan<()>,
    ) -> Scan<()> {
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return self.fail("expected a key");
                }
                let key = self.key()?;
                self.ws();
                if self.peek() != Some(b':') {
                    return self.fail("expected ':'");
                }
                self.i += 1;
                self.ws();
                member(self, key)?;
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    None => return self.fail("EOF while parsing an object"),
                    _ => return self.fail("expected ',' or '}'"),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// A string at the cursor, unescaped (escapes are rare; only then is anything copied).
    fn string(&mut self) -> Scan<Cow<'a, str>> {
        let open = self.i;
        let escaped = self.string_end()?;
        let quoted = self.str_at(open, self.i);
        if !escaped {
            return Ok(Cow::Borrowed(&quoted[1..quoted.len() - 1]));
        }
        // serde_json decodes the escapes; a lone surrogate (which it refuses) stays as written.
        Ok(Cow::Owned(
            serde_json::from_str::<String>(quoted)
                .unwrap_or_else(|_| quoted[1..quoted.len() - 1].to_owned()),
        ))
    }

    /// An object key at the cursor, unescaped.
    fn key(&mut self) -> Scan<Cow<'a, [u8]>> {
        let open = self.i;
        if self.string_end()? {
            self.i = open;
            return Ok(Cow::Owned(self.string()?.into_owned().into_bytes()));
        }
        Ok(Cow::Borrowed(&self.b[open + 1..self.i - 1]))
    }

    /// Checks and skips the string at the cursor; returns whether it holds escapes.
    fn string_end(&mut self) -> Scan<bool> {
        self.i += 1;
        let mut escaped = false;
        loop {
            match find_string_special(&self.b[self.i..]) {
                Some(n) => self.i += n,
                None => {
                    self.i = self.b.len();
                    return self.fail("EOF while parsing a string");
                }
            }
            match self.b[self.i] {
                b'"' => break,
                0x80.. => self.non_ascii()?,
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.i += 1;
                        }
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.fail("invalid \\u escape");
                            }
                            self.i += 5;
                        }
                        _ => return self.fail("invalid escape"),
                    }
                }
                _ => return self.fail("control character while parsing a string"),
            }
        }
        self.i += 1;
        Ok(escaped)
    }

    /// A run of string content at the cursor that starts with a non-ASCII byte: checked as
    /// UTF-8 in one go, up to the next `"`, `\\` or control character (which cannot fall inside
    /// a multi-byte character).
    fn non_ascii(&mut self) -> Scan<()> {
        let rest = &self.b[self.i..];
        let end = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .unwrap_or(rest.len());
        match std::str::from_utf8(&rest[..end]) {
            Ok(_) => {
                self.i += end;
                Ok(())
            }
            Err(e) => {
                self.i += e.valid_up_to();
                if e.error_len().is_none() && end == rest.len() {
                    // Cut off by the end of the bytes, not invalid (yet).
                    self.i = self.b.len();
                    self.fail("EOF while parsing a string")
                } else {
                    self.fail("invalid UTF-8")
                }
            }
        }
    }

    fn literal(&mut self, word: &str) -> Scan<()> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            self.fail("expected a value")
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Scan<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return self.fail("invalid number");
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        Ok(())
    }

    /// A value that should be a string (or a bool, or a non-negative integer); any other value
    /// is checked, skipped and remembered only by kind. Same result as deserialising a `Field`.
    pub(crate) fn field(&mut self) -> Scan<Field<'a>> {
        Ok(match self.peek() {
            Some(b'"') => Field::Str(self.string()?),
            Some(b'n') => {
                self.literal("null")?;
                Field::Null
            }
            Some(b't') => {
                self.literal("true")?;
                Field::Bool(true)
            }
            Some(b'f') => {
                self.literal("false")?;
                Field::Bool(false)
            }
            Some(b'-' | b'0'..=b'9') => {
                let text = self.value()?;
                text.parse().map_or(Field::Other, Field::Count)
            }
            _ => {
                self.skip()?;
                Field::Other
            }
        })
    }

    /// A value that should be an object, read member by member into a `T`.
    pub(crate) fn nested<T: Default>(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8], &mut T) -> Scan<()>,
    ) -> Scan<Nested<T>> {
        match self.peek() {
            Some(b'{') => {
                let mut fields = T::default();
                self.object(|s, key| member(s, &key, &mut fields))?;
                Ok(Nested::Object(fields))
            }
            Some(b'n') => {
                self.literal("null")?;
                Ok(Nested::Null)
            }
            _ => {
                self.skip()?;
                Ok(Nested::NotObject)
            }
        }
    }
}

/// Position of the first byte that ends a run of plain ASCII string content: `"`, `\`, a
/// control character or a non-ASCII byte. Scans 64-byte blocks in a way the compiler
/// vectorises, since long strings (generated text, base64 images) are most of every line.
fn find_string_special(hay: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let special = |c: u8| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c);
    let mut blocks = hay.chunks_exact(BLOCK);
    let mut offset = 0;
    for block in &mut blocks {
        let block: &[u8; BLOCK] = block.try_into().expect("chunks_exact yields full blocks");
        let mut seen = 0u8;
        for &c in block {
            seen |= u8::from(special(c));
        }
        if seen != 0 {
            return block.iter().position(|&c| special(c)).map(|p| offset + p);
        }
        offset += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&c| special(c))
        .map(|p| offset + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realistic output line (real format, body trimmed), with escapes and non-ASCII text.
    const SAMPLE: &str = r#"{"id": "batch_req_67fe330d8b5481908f01ae063d9b8e2e", "custom_id": "sou_2003_115", "response": {"status_code": 200, "request_id": "97d81ac7354608175784538d9d367611", "body": {"id": "chatcmpl-Ao2bZ", "object": "chat.completion", "created": 1736489777, "choices": [{"index": 0, "message": {"role": "assistant", "content": "Score: 7/10 \u2014 \"café\" at dusk\n", "refusal": null}, "logprobs": null, "finish_reason": "stop"}], "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33}, "temperature": -0.5e-1, "system_fingerprint": null}}, "error": null}"#;

    /// The scanner must accept exactly what serde_json accepts, and hand back the same text.
    fn check_scanner(text: &str) {
        let serde = serde_json::from_str::<serde_json::Value>(text);
        let mut s = Scanner::new(text);
        let scanned = s.value().and_then(|v| s.end().map(|()| v));
        match (&serde, &scanned) {
            (Ok(_), Ok(v)) => assert_eq!(*v, text.trim_matches([' ', '\t', '\n', '\r'])),
            (Err(_), Err(_)) => {}
            _ => panic!("serde {serde:?} but scanner {scanned:?} on {text:?}"),
        }
    }

    #[test]
    fn scanner_agrees_with_serde() {
        let valid = [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "12",
            "-1.5e3",
            "1E+2",
            "0.25e-7",
            "\"\"",
            r#""a\"b\\c\/\b\f\n\r\t\u00e9\uD83E\uDD8A""#,
            "\"caf\u{e9} \u{1F98A}\"",
            "[]",
            "{}",
            " [ 1 , [ ] , { } ] ",
            r#"{"a":{"b":[{"c":null}]},"d":"}]"}"#,
            r#"{"k":1,"k":2}"#,
            "\t{\"a\" :\n1 }\r\n",
        ];
        let invalid = [
            "",
            " ",
            "nul",
            "nulls",
            "tru",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "NaN",
            "Infinity",
            "\"abc",
            "\"a\\x\"",
            "\"\\u12G4\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{a:1}",
            "{'a':1}",
            "{\"a\":1",
            "[1",
            "1 2",
            "{} {}",
            "[1]]",
            "/* c */ 1",
        ];
        for text in valid {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
            check_scanner(text);
        }
        for text in invalid {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
            check_scanner(text);
        }
        // Nesting: serde_json's limit is 128.
        for depth in [127, 128, 129, 200] {
            check_scanner(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        }
        // Every prefix and every one-byte corruption of a realistic line.
        let line = SAMPLE;
        for end in 0..line.len() {
            if line.is_char_boundary(end) {
                check_scanner(&line[..end]);
            }
        }
        for at in (0..line.len()).step_by(3) {
            for c in [b'"', b'\\', b'{', b'}', b',', b'x', b'1', 0x01] {
                let mut bytes = line.as_bytes().to_vec();
                bytes[at] = c;
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    check_scanner(text);
                }
            }
        }
    }

    #[test]
    fn fields_read_like_serde() {
        for text in [
            r#""s""#,
            r#""e\u0073c""#,
            "null",
            "true",
            "false",
            "7",
            "-7",
            "1.5",
            "1e2",
            "[1]",
            r#"{"a":1}"#,
            "18446744073709551615",
            "18446744073709551616",
        ] {
            let expect: Field<'_> = serde_json::from_str(text).unwrap();
            let mut s = Scanner::new(text);
            assert_eq!(s.field().unwrap(), expect, "{text}");
            s.end().unwrap();
        }
    }

    #[test]
    fn utf8_is_checked_like_serde() {
        let cases: [&[u8]; 11] = [
            b"\"\xc3\xa9\"",
            b"\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\\n\xe8\xaa\x9e \xf0\x9f\xa6\x8a\"",
            b"\"\xc3\"",
            b"\"\xc3x\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xc0\xaf\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\xff",
            b"[\"a\",\xc3\xa9]",
            b"{\"k\xc3\xa9\":1}",
            b"\"\xe6\x97",
        ];
        for bytes in cases {
            let serde = serde_json::from_slice::<serde_json::Value>(bytes);
            let mut s = Scanner::for_line(bytes, 0);
            let scanned = s.value().and_then(|v| s.end().map(|()| v.to_owned()));
            assert_eq!(
                serde.is_ok(),
                scanned.is_ok(),
                "{:?}: {scanned:?}",
                bytes.escape_ascii()
            );
        }
        // Cut inside a character at the end of the bytes: reported at the end, so that a
        // caller holding more bytes knows to read on.
        let mut s = Scanner::for_line(b"\"ab\xe6\x97", 0);
        assert_eq!(s.value().unwrap_err().at, 5);
    }
}
