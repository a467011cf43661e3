//! Diagnostics as editor markers: ranges in UTF-16 code units (what the
//! editor counts in), each covering the token the diagnostic points at.

use kiln_shared::{Diagnostic, Severity};
use serde::Serialize;

/// One inline marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Marker {
    /// Start and end offsets in UTF-16 code units.
    pub from: u32,
    pub to: u32,
    pub severity: Severity,
    pub message: String,
    /// The diagnostic's code (`unknown-key`, ...).
    pub source: String,
    pub line: u32,
    pub col: u32,
}

/// Start offset (UTF-16) of each line of `text`.
fn line_starts(text: &str) -> Vec<u32> {
    let mut starts = vec![0u32];
    let mut offset = 0u32;
    for c in text.chars() {
        offset += c.len_utf16() as u32;
        if c == '\n' {
            starts.push(offset);
        }
    }
    starts
}

/// Markers for `diagnostics` over `text`. Positions past the end of a line
/// or of the text are clamped, so a marker always lies inside the text.
pub fn markers(text: &str, diagnostics: &[Diagnostic]) -> Vec<Marker> {
    let lines: Vec<&str> = text.split('\n').collect();
    let starts = line_starts(text);
    let total: u32 = text.chars().map(|c| c.len_utf16() as u32).sum();
    diagnostics
        .iter()
        .map(|d| {
            let index = (d.line.max(1) as usize - 1).min(lines.len() - 1);
            let line = lines[index].strip_suffix('\r').unwrap_or(lines[index]);
            let (from, to) = token_range(line, d.col.max(1) as usize - 1);
            let base = starts[index];
            Marker {
                from: (base + from).min(total),
                to: (base + to).min(total),
                severity: d.severity,
                message: d.message.clone(),
                source: d.code.as_str().to_owned(),
                line: index as u32 + 1,
                col: d.col.max(1),
            }
        })
        .collect()
}

/// The UTF-16 range within `line` of the token starting at character
/// `col`: up to whitespace, or the `:` that ends a key. A token of nothing
/// (the end of the line) becomes the character before it, or an empty
/// range on an empty line.
fn token_range(line: &str, col: usize) -> (u32, u32) {
    let chars: Vec<char> = line.chars().collect();
    let start = col.min(chars.len());
    let mut end = start;
    while end < chars.len() && !chars[end].is_whitespace() {
        if chars[end] == ':' && end > start && chars.get(end + 1).is_none_or(|c| c.is_whitespace())
        {
            break;
        }
        end += 1;
    }
    let (start, end) = if end == start && start > 0 && start == chars.len() {
        (start - 1, start)
    } else {
        (start, end)
    };
    let width = |cs: &[char]| cs.iter().map(|c| c.len_utf16() as u32).sum::<u32>();
    (width(&chars[..start]), width(&chars[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Vec<(String, u32, String)> {
        let v = kiln_shared::validate(text);
        markers(text, &v.diagnostics)
            .into_iter()
            .map(|m| {
                let utf16: Vec<u16> = text.encode_utf16().collect();
                let covered = String::from_utf16(&utf16[m.from as usize..m.to as usize]).unwrap();
                (m.source, m.line, covered)
            })
            .collect()
    }

    #[test]
    fn an_unknown_key_is_marked_on_its_line_without_the_colon() {
        let text = "init:\n  - linuxkit/init:v1.2.0\nservics:\n  - name: x\n";
        assert_eq!(
            at(text),
            [("unknown-key".to_owned(), 3, "servics".to_owned())]
        );
    }

    #[test]
    fn offsets_count_utf16_units() {
        // `é` is one unit, `😀` two: the marker must start after both.
        let text = "files:\n  - path: \"é😀\"\n    contents: x\n    mdoe: 1\n";
        let got = at(text);
        assert_eq!(got, [("unknown-key".to_owned(), 4, "mdoe".to_owned())]);
    }

    #[test]
    fn positions_past_the_end_are_clamped() {
        let d = kiln_shared::validate("x: [").diagnostics;
        assert!(!d.is_empty());
        for m in markers("x: [", &d) {
            assert!(m.from <= m.to && m.to <= 4, "{m:?}");
        }
        assert_eq!(token_range("", 5), (0, 0));
        assert_eq!(token_range("abc", 3), (2, 3));
    }

    #[test]
    fn a_value_token_ends_at_whitespace() {
        assert_eq!(token_range("    net: hots # comment", 9), (9, 13));
        assert_eq!(token_range("  image: a:b", 9), (9, 12));
    }
}
