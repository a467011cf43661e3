//! A YAML document as a tree of nodes that remember where they came from.
//!
//! The tree is built from `saphyr-parser`'s event stream because serde_yaml
//! cannot report the position of more than one error, and a spec author
//! needs to see every problem at once. Scalars are typed the way yaml.v3
//! (linuxkit's parser) types them: YAML 1.2, so `yes` is a string and
//! `0666` is an integer.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::{Code, Diagnostic, Pos};

/// Alias expansion and nesting are capped so that a hostile document (the
/// "billion laughs") cannot exhaust memory or the stack.
const MAX_NODES: usize = 1_000_000;
const MAX_DEPTH: usize = 128;

/// One node and the position of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The name used in type errors, matching JSON Schema's vocabulary.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar key, for key lookups and paths.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Null => "~".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Seq(_) => "[...]".to_owned(),
            Value::Map(_) => "{...}".to_owned(),
        }
    }

    /// Looks up `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&(Node, Node)> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)),
            _ => None,
        }
    }
}

/// The result of loading a document: the tree, if the YAML was well formed,
/// and every problem found on the way.
#[derive(Debug, Default)]
pub struct Loaded {
    pub root: Option<Node>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads the first YAML document in `src`, as linuxkit does.
pub fn load(src: &str) -> Loaded {
    let mut builder = Builder::default();
    match builder.run(src) {
        Ok(root) => Loaded {
            root,
            diagnostics: builder.diagnostics,
        },
        Err(diagnostic) => {
            builder.diagnostics.push(diagnostic);
            Loaded {
                root: None,
                diagnostics: builder.diagnostics,
            }
        }
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line() as u32,
        col: span.start.col() as u32 + 1,
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
        size: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        pos: Pos,
        anchor: usize,
        size: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    diagnostics: Vec<Diagnostic>,
}

impl Builder {
    fn run(&mut self, src: &str) -> Result<Option<Node>, Diagnostic> {
        let mut parser = Parser::new_from_str(src);
        let mut root = None;
        let mut in_document = false;
        loop {
            let (event, span) = match parser.next_event() {
                None => break,
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    if root.is_some() {
                        // Later documents are never read by linuxkit either.
                        break;
                    }
                    let pos = Pos {
                        line: e.marker().line() as u32,
                        col: e.marker().col() as u32 + 1,
                    };
                    return Err(Diagnostic::new(Code::YamlSyntax, pos, "", e.info()));
                }
            };
            let pos = pos_of(&span);
            match event {
                Event::StreamStart | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        self.diagnostics.push(Diagnostic::new(
                            Code::ExtraDocument,
                            pos,
                            "",
                            "only the first YAML document is used; this one is ignored",
                        ));
                        break;
                    }
                    in_document = true;
                }
                Event::DocumentEnd => {
                    in_document = false;
                    if root.is_none() {
                        root = Some(Node {
                            value: Value::Null,
                            pos,
                        });
                    }
                }
                Event::Alias(id) => {
                    let Some((node, size)) = self.anchors.get(&id).cloned() else {
                        return Err(Diagnostic::new(
                            Code::YamlSyntax,
                            pos,
                            "",
                            "alias refers to an unknown anchor",
                        ));
                    };
                    self.count(size, pos)?;
                    let node = Node { pos, ..node };
                    root = self.complete(node, 0, size)?.or(root);
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.count(1, pos)?;
                    let force_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                    let value = if style == ScalarStyle::Plain && !force_str {
                        resolve_plain(&text)
                    } else {
                        Value::Str(text.into_owned())
                    };
                    root = self.complete(Node { value, pos }, anchor, 1)?.or(root);
                }
                Event::SequenceStart(anchor, _) => {
                    self.open(pos)?;
                    self.stack.push(Frame::Seq {
                        items: Vec::new(),
                        pos,
                        anchor,
                        size: 1,
                    });
                }
                Event::MappingStart(anchor, _) => {
                    self.open(pos)?;
                    self.stack.push(Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        pos,
                        anchor,
                        size: 1,
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor, size) = match self.stack.pop() {
                        Some(Frame::Seq {
                            items,
                            pos,
                            anchor,
                            size,
                        }) => (
                            Node {
                                value: Value::Seq(items),
                                pos,
                            },
                            anchor,
                            size,
                        ),
                        Some(Frame::Map {
                            entries,
                            pos,
                            anchor,
                            size,
                            ..
                        }) => {
                            self.check_duplicate_keys(&entries);
                            (
                                Node {
                                    value: Value::Map(entries),
                                    pos,
                                },
                                anchor,
                                size,
                            )
                        }
                        None => continue,
                    };
                    root = self.complete(node, anchor, size)?.or(root);
                }
            }
        }
        let _ = in_document;
        Ok(root)
    }

    fn count(&mut self, size: usize, pos: Pos) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::new(
                Code::TooComplex,
                pos,
                "",
                format!("document expands to more than {MAX_NODES} nodes (alias expansion?)"),
            ));
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos) -> Result<(), Diagnostic> {
        self.count(1, pos)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(Diagnostic::new(
                Code::TooComplex,
                pos,
                "",
                format!("document nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// Hands a finished node to its parent; returns it if it is the root.
    fn complete(
        &mut self,
        node: Node,
        anchor: usize,
        size: usize,
    ) -> Result<Option<Node>, Diagnostic> {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => Ok(Some(node)),
            Some(Frame::Seq { items, size: s, .. }) => {
                *s = s.saturating_add(size);
                items.push(node);
                Ok(None)
            }
            Some(Frame::Map {
                entries,
                key,
                size: s,
                ..
            }) => {
                *s = s.saturating_add(size);
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                }
                Ok(None)
            }
        }
    }

    fn check_duplicate_keys(&mut self, entries: &[(Node, Node)]) {
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for (key, _) in entries {
            let text = key.key_text();
            if let Some(first) = seen.get(&text) {
                self.diagnostics.push(Diagnostic::new(
                    Code::DuplicateKey,
                    key.pos,
                    "",
                    format!(
                        "mapping key `{text}` is already defined at line {}",
                        first.line
                    ),
                ));
            } else {
                seen.insert(text, key.pos);
            }
        }
    }
}

/// Types a plain scalar by the YAML 1.2 core schema, with yaml.v3's
/// integer forms (`0o17`, `0x1f`, `0b11` and the legacy `017`).
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Value::Int(i);
    }
    if looks_like_float(text) {
        if let Ok(x) = text.parse::<f64>() {
            return Value::Float(x);
        }
    }
    Value::Str(text.to_owned())
}

fn parse_int(text: &str) -> Option<i128> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let (radix, body) = if let Some(rest) = digits.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = digits.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = digits.strip_prefix("0b") {
        (2, rest)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(body, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn looks_like_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut chars = body.chars().peekable();
    let mut digits = 0;
    while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
        chars.next();
        digits += 1;
    }
    if chars.peek() == Some(&'.') {
        chars.next();
        while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
            chars.next();
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if matches!(chars.peek(), Some('e' | 'E')) {
        chars.next();
        if matches!(chars.peek(), Some('-' | '+')) {
            chars.next();
        }
        let mut exp = 0;
        while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
            chars.next();
            exp += 1;
        }
        if exp == 0 {
            return false;
        }
    }
    chars.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_follow_yaml_1_2() {
        assert_eq!(resolve_plain("yes"), Value::Str("yes".into()));
        assert_eq!(resolve_plain("true"), Value::Bool(true));
        assert_eq!(resolve_plain("0666"), Value::Int(0o666));
        assert_eq!(resolve_plain("0o17"), Value::Int(15));
        assert_eq!(resolve_plain("-12"), Value::Int(-12));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("1.2.3"), Value::Str("1.2.3".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("089"), Value::Float(89.0));
    }

    #[test]
    fn positions_are_one_based() {
        let loaded = load("a: 1\nb:\n  - x\n");
        let root = loaded.root.unwrap();
        let (key, value) = root.get("b").unwrap();
        assert_eq!(key.pos, Pos { line: 2, col: 1 });
        let Value::Seq(items) = &value.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn aliases_expand_with_a_budget() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let loaded = load(&doc);
        assert!(loaded.root.is_none());
        assert_eq!(loaded.diagnostics[0].code, Code::TooComplex);
    }

    #[test]
    fn empty_input_has_no_root() {
        assert!(load("").root.is_none());
        assert!(load("# only a comment\n").root.is_none());
    }
}
