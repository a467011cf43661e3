//! Completion of keys and known values, driven by the spec's JSON Schema
//! (so it follows the model; build.rs turns it into the table `NODES`)
//! plus the value lists `shared` checks against: capability names and
//! namespace keywords.
//!
//! The context comes from indentation alone: the editor asks while the
//! text is mid-edit and often not valid YAML, so no parser is involved.

use kiln_shared::caps::CAPABILITIES;
use serde::Serialize;

/// What to offer at a cursor: replace `[from, cursor)` with one option.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completions {
    /// UTF-16 offset where the word being completed starts.
    pub from: u32,
    pub options: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub label: String,
    /// `property` for keys, `enum` for values, `keyword` for booleans.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The text inserted (a key gets its `: `).
    pub apply: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

/// Keys whose items are capability names.
const CAPABILITY_KEYS: [&str; 3] = ["capabilities", "capabilities_add", "ambient"];

/// A key of a mapping in the schema.
struct Prop {
    name: &'static str,
    /// The JSON Schema type(s), for the completion's detail.
    kind: &'static str,
    info: &'static str,
    /// The mapping under this key (or under each of its items).
    child: Option<usize>,
    /// Allowed values (of the key, or of each item).
    values: &'static [&'static str],
    boolean: bool,
}

// `NODES[0]` is the spec itself.
include!(concat!(env!("OUT_DIR"), "/schema_table.rs"));

/// Completes against the spec schema.
#[derive(Default)]
pub struct Completer;

/// One meaningful line, as the context search sees it.
struct Line<'a> {
    /// Column of a leading `- `, if the line starts a sequence item.
    dash: Option<usize>,
    /// Column where the content (key or scalar) starts.
    col: usize,
    /// `key` of `key:` / `key: value`.
    key: Option<&'a str>,
    /// Whether that key has no value on this line (a nested block follows).
    open: bool,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut rest = &line[indent..];
    if rest.is_empty() || rest.starts_with('#') {
        return None;
    }
    let mut col = indent;
    let mut dash = None;
    if rest == "-" || rest.starts_with("- ") {
        dash = Some(indent);
        let after = rest[1..].trim_start_matches(' ');
        col = indent + (rest.len() - after.len());
        rest = after;
    }
    let (key, open) = match split_key(rest) {
        Some((key, value)) => {
            let value = value.trim();
            (Some(key), value.is_empty() || value.starts_with('#'))
        }
        None => (None, false),
    };
    Some(Line {
        dash,
        col,
        key,
        open,
    })
}

/// `key: value` or `key:` split at the colon, for plain keys only.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let end = text.find(':')?;
    let key = &text[..end];
    let after = &text[end + 1..];
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && (after.is_empty() || after.starts_with(' '))).then_some((key, after))
}

/// The keys from the root down to the mapping that holds column `col` on
/// line `index` (`in_item`: that line starts a sequence item whose dash is
/// at `col`). `None` when the lines above do not nest cleanly.
fn ancestors(
    lines: &[&str],
    index: usize,
    mut col: usize,
    mut in_item: bool,
) -> Option<Vec<String>> {
    let mut path = Vec::new();
    for raw in lines[..index].iter().rev() {
        let Some(line) = parse_line(raw) else {
            continue;
        };
        let top = line.dash.unwrap_or(line.col);
        if col == 0 && !in_item {
            break;
        }
        match line.dash {
            Some(d) if d < col || (d == col && !in_item && line.col < col) => {
                if line.col == col && !in_item {
                    // The first key of the item we are in.
                } else if line.col < col && line.open {
                    path.push(line.key?.to_owned());
                } else if line.col != col {
                    continue;
                }
                col = d;
                in_item = true;
            }
            Some(_) => continue,
            None if top < col || (in_item && top == col) => {
                if !line.open {
                    return None;
                }
                path.push(line.key?.to_owned());
                col = top;
                in_item = false;
            }
            None => continue,
        }
    }
    path.reverse();
    Some(path)
}

/// Which UTF-16 offset the character at `chars` of `line` is.
fn utf16_len(s: &str) -> u32 {
    s.chars().map(|c| c.len_utf16() as u32).sum()
}

impl Completer {
    /// Completions at UTF-16 offset `cursor` of `text`, if the cursor is
    /// where a key or a known value goes.
    pub fn complete(&self, text: &str, cursor: u32) -> Option<Completions> {
        let (index, before) = locate(text, cursor)?;
        let lines: Vec<&str> = text.split('\n').collect();
        let line_start = cursor - utf16_len(before);
        let indent = before.len() - before.trim_start_matches(' ').len();
        let mut rest = &before[indent..];
        let mut col = indent;
        let mut item = false;
        if rest.starts_with("- ") {
            let after = rest[1..].trim_start_matches(' ');
            col = indent + (rest.len() - after.len());
            rest = after;
            item = true;
        }
        let word_start = |w: &str| line_start + utf16_len(&before[..before.len() - w.len()]);
        if let Some((key, value)) = split_key(rest) {
            let word = value_word(value)?;
            let path = ancestors(&lines, index, col, false)?;
            let items = self.value_items(&path, key, word);
            return (!items.is_empty()).then(|| Completions {
                from: word_start(word),
                options: items,
            });
        }
        if rest.contains(|c: char| c == ':' || c.is_whitespace()) {
            return None;
        }
        let path = if item {
            ancestors(&lines, index, indent, true)?
        } else {
            ancestors(&lines, index, col, false)?
        };
        let options = if item && !self.items_are_objects(&path) {
            let (last, parents) = path.split_last()?;
            self.value_items(parents, last, rest)
        } else {
            let present = siblings(&lines, index, col);
            self.key_items(&path, rest, &present)
        };
        (!options.is_empty()).then(|| Completions {
            from: word_start(rest),
            options,
        })
    }

    /// The mapping reached by `path`, as an index into `NODES`.
    fn at(&self, path: &[String]) -> Option<usize> {
        let mut node = 0;
        for key in path {
            node = NODES[node].iter().find(|p| p.name == key)?.child?;
        }
        Some(node)
    }

    fn prop(&self, path: &[String], key: &str) -> Option<&'static Prop> {
        NODES[self.at(path)?].iter().find(|p| p.name == key)
    }

    fn items_are_objects(&self, path: &[String]) -> bool {
        self.at(path).is_some()
    }

    fn key_items(&self, path: &[String], word: &str, present: &[String]) -> Vec<Item> {
        let Some(node) = self.at(path) else {
            return Vec::new();
        };
        NODES[node]
            .iter()
            .filter(|p| p.name.starts_with(word) && !present.iter().any(|k| k == p.name))
            .map(|p| Item {
                label: p.name.to_owned(),
                kind: "property",
                apply: format!("{}: ", p.name),
                detail: (!p.kind.is_empty()).then(|| p.kind.to_owned()),
                info: (!p.info.is_empty()).then(|| p.info.to_owned()),
            })
            .collect()
    }

    fn value_items(&self, path: &[String], key: &str, word: &str) -> Vec<Item> {
        let mut values: Vec<(String, &'static str)> = Vec::new();
        if CAPABILITY_KEYS.contains(&key) {
            if key == "capabilities" {
                values.push(("all".into(), "keyword"));
            }
            values.extend(CAPABILITIES.iter().map(|c| (c.to_string(), "enum")));
        } else if kiln_shared::namespace::KEYS.contains(&key) {
            values.extend(
                kiln_shared::namespace::keywords(key)
                    .iter()
                    .map(|k| (k.to_string(), "enum")),
            );
        } else if let Some(p) = self.prop(path, key) {
            values.extend(p.values.iter().map(|v| (v.to_string(), "enum")));
            if p.boolean {
                values.extend([("true".into(), "keyword"), ("false".into(), "keyword")]);
            }
        }
        let upper = word.to_ascii_uppercase();
        values
            .into_iter()
            .filter(|(v, _)| v.starts_with(word) || v.starts_with(&upper))
            .map(|(v, kind)| Item {
                apply: v.clone(),
                label: v,
                kind,
                detail: None,
                info: None,
            })
            .collect()
    }
}

/// The line index of UTF-16 offset `cursor` and the line's text before it.
fn locate(text: &str, cursor: u32) -> Option<(usize, &str)> {
    let mut offset = 0u32;
    let mut line_start = 0usize;
    let mut index = 0usize;
    for (i, c) in text.char_indices() {
        if offset == cursor {
            return Some((index, &text[line_start..i]));
        }
        offset += c.len_utf16() as u32;
        if c == '\n' {
            index += 1;
            line_start = i + 1;
        }
    }
    (offset == cursor).then(|| (index, &text[line_start..]))
}

/// The word a value completion replaces: after an opening quote or flow
/// `[`/`,`; `None` when the value is not a single plain word so far.
fn value_word(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let word = value
        .rsplit(['"', '\'', '[', ',', ' '])
        .next()
        .unwrap_or(value);
    word.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.'))
        .then_some(word)
}

/// Keys already present in the mapping at column `col` around line `index`.
fn siblings(lines: &[&str], index: usize, col: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut scan = |range: &mut dyn Iterator<Item = &&str>| {
        for raw in range {
            let Some(line) = parse_line(raw) else {
                continue;
            };
            if line.col < col || line.dash.is_some_and(|d| d < col && line.col != col) {
                break;
            }
            if line.col == col {
                if let Some(k) = line.key {
                    keys.push(k.to_owned());
                }
                if line.dash.is_some() {
                    break;
                }
            }
        }
    };
    scan(&mut lines[..index].iter().rev());
    scan(&mut lines[index + 1..].iter());
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Completions where `|` marks the cursor.
    fn at(marked: &str) -> Option<(String, Vec<String>)> {
        let cursor = marked.find('|').unwrap();
        let text = marked.replace('|', "");
        let c = Completer.complete(&text, utf16_len(&marked[..cursor]))?;
        let utf16: Vec<u16> = text.encode_utf16().collect();
        let word =
            String::from_utf16(&utf16[c.from as usize..utf16_len(&marked[..cursor]) as usize])
                .unwrap();
        Some((word, c.options.into_iter().map(|o| o.label).collect()))
    }

    #[test]
    fn top_level_keys_come_from_the_schema() {
        let (word, labels) = at("kernel:\n  image: k\nser|").unwrap();
        assert_eq!(word, "ser");
        assert_eq!(labels, ["services"]);
        let (_, all) = at("kernel:\n  image: k\n|").unwrap();
        assert!(all.contains(&"onboot".to_owned()) && all.contains(&"trust".to_owned()));
        assert!(
            !all.contains(&"kernel".to_owned()),
            "present keys are not offered"
        );
    }

    #[test]
    fn keys_inside_a_sequence_item() {
        for text in [
            "services:\n  - name: getty\n    ima|",
            "services:\n- name: getty\n  ima|",
        ] {
            let (word, labels) = at(text).unwrap();
            assert_eq!(
                (word.as_str(), labels),
                ("ima", vec!["image".to_owned()]),
                "{text}"
            );
        }
        let (_, labels) = at("onboot:\n  - |").unwrap();
        assert!(labels.contains(&"name".to_owned()) && labels.contains(&"capabilities".to_owned()));
    }

    #[test]
    fn nested_mappings() {
        let (_, labels) = at("services:\n  - name: x\n    resources:\n      mem|").unwrap();
        assert_eq!(labels, ["memory"]);
        let (_, labels) = at("kernel:\n  cmd|").unwrap();
        assert_eq!(labels, ["cmdline"]);
    }

    #[test]
    fn capability_names_and_namespace_modes() {
        let (word, labels) =
            at("services:\n  - name: x\n    capabilities:\n      - CAP_NET_|").unwrap();
        assert_eq!(word, "CAP_NET_");
        assert_eq!(
            labels,
            [
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_BROADCAST",
                "CAP_NET_ADMIN",
                "CAP_NET_RAW"
            ]
        );
        let (_, labels) = at("services:\n  - name: x\n    net: |").unwrap();
        assert_eq!(labels, ["host", "root", "new", "none"]);
        let (_, labels) = at("services:\n  - name: x\n    pid: h|").unwrap();
        assert_eq!(labels, ["host"]);
        let (_, labels) = at("onboot:\n  - name: x\n    capabilities: [CAP_SYS_AD|").unwrap();
        assert_eq!(labels, ["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn booleans() {
        let (_, labels) = at("services:\n  - name: x\n    readonly: |").unwrap();
        assert_eq!(labels, ["true", "false"]);
    }

    #[test]
    fn nothing_where_nothing_fits() {
        assert_eq!(at("services:\n  - name: x\n    image: linuxkit/|"), None);
        assert_eq!(at("nosuch:\n  ke|"), None);
        assert_eq!(at("kernel: \"a b|"), None);
    }

    #[test]
    fn keys_carry_their_schema_description() {
        let text = "onb";
        let c = Completer.complete(text, text.len() as u32).unwrap();
        assert_eq!(c.options[0].label, "onboot");
        assert!(c.options[0].info.as_deref().is_some_and(|i| !i.is_empty()));
    }

    #[test]
    fn cursor_outside_the_text_is_no_context() {
        assert_eq!(Completer.complete("abc", 10), None);
    }
}
