//! JSON written byte for byte as Go's `json.MarshalIndent(v, "", "    ")`
//! writes it, so kiln's `config.json` and `runtime.json` match linuxkit's.
//!
//! serde_json's pretty printer already agrees with Go on layout (4-space
//! indent, `[]` and `{}` for empty containers, `": "` after keys, no trailing
//! newline) and on the escapes of control characters (Go 1.22 and later also
//! write `\b` and `\f`). What Go adds is HTML-safe escaping: `<`, `>` and `&`
//! become `\u003c`, `\u003e` and `\u0026`, and U+2028/U+2029 become
//! `\u2028`/`\u2029`. [`GoFormatter`] adds exactly that.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// Serialises `value` as Go's `json.MarshalIndent` with a 4-space indent
/// would.
pub(crate) fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter::new());
    // The bundle types are plain derived structs with string-keyed maps and
    // the writer is a Vec, so serialisation has no way to fail.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

struct GoFormatter {
    pretty: PrettyFormatter<'static>,
}

impl GoFormatter {
    fn new() -> Self {
        GoFormatter {
            pretty: PrettyFormatter::with_indent(b"    "),
        }
    }
}

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::to_go_json;
    use serde_json::json;

    #[test]
    fn matches_go_marshal_indent() {
        let v = json!({"a": [], "b": {}, "c": ["x<y>&z\u{2028}", 1], "d": "tab\there\u{1}"});
        let text = String::from_utf8(to_go_json(&v)).unwrap();
        assert_eq!(
            text,
            "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": [\n        \"x\\u003cy\\u003e\\u0026z\\u2028\",\n        1\n    ],\n    \"d\": \"tab\\there\\u0001\"\n}"
        );
    }
}
