//! JSON writing in the styles the real API uses: Python `json.dumps` separators for JSONL lines.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

/// Python's default `json.dumps` layout: `", "` between items and `": "` after keys.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        CompactFormatter.begin_object_value(w)?;
        w.write_all(b" ")
    }
}

/// Writes `value` as one JSONL line in Python style, newline included.
pub(crate) fn write_python_line<W: io::Write, T: Serialize>(
    w: &mut W,
    value: &T,
) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *w, PythonFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_use_python_separators_and_end_with_newline() {
        let mut out = Vec::new();
        let v = serde_json::json!({"a": [1, 2, {"b": null}], "c": "x: y, z"});
        write_python_line(&mut out, &v).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\": [1, 2, {\"b\": null}], \"c\": \"x: y, z\"}\n"
        );
    }
}
