//! Turns a [`Node`] tree into the typed model while collecting every
//! structural problem instead of stopping at the first.
//!
//! When a value has the wrong type the problem is recorded and the visitor
//! gets a neutral stand-in (`""`, `0`, an empty list), so the rest of the
//! document is still checked. Unknown keys are recorded and skipped before
//! serde sees them, using the field list serde passes to
//! `deserialize_struct`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::tree::{Node, Value};
use crate::{Code, Diagnostic, KeyPath, Pos};

/// Keys the schema requires, by serde struct name.
const REQUIRED: &[(&str, &[&str])] = &[("ImageEntry", &["name", "image"])];

/// Problems found while deserializing, with the paths they were found at.
#[derive(Default)]
pub(crate) struct Sink {
    pub found: RefCell<Vec<(KeyPath, Diagnostic)>>,
}

impl Sink {
    fn report(&self, code: Code, pos: Pos, path: &KeyPath, message: String) {
        self.found.borrow_mut().push((
            path.clone(),
            Diagnostic::new(code, pos, path.to_string(), message),
        ));
    }
}

/// An error that has already been recorded in the [`Sink`] (or a custom
/// error from a visitor, recorded where it surfaces).
#[derive(Debug)]
pub(crate) struct Error {
    message: String,
    reported: bool,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            reported: false,
        }
    }
}

/// Deserializes `T` from `node`, recording every problem in `sink`.
pub(crate) fn from_node<'de, T: de::Deserialize<'de>>(node: &Node, sink: &Sink) -> Option<T> {
    let de = NodeDe {
        node,
        path: KeyPath::root(),
        sink,
    };
    match T::deserialize(de) {
        Ok(value) => Some(value),
        Err(e) => {
            if !e.reported {
                sink.report(Code::WrongType, node.pos, &KeyPath::root(), e.message);
            }
            None
        }
    }
}

struct NodeDe<'a> {
    node: &'a Node,
    path: KeyPath,
    sink: &'a Sink,
}

impl NodeDe<'_> {
    fn wrong_type(&self, expected: &str) {
        self.sink.report(
            Code::WrongType,
            self.node.pos,
            &self.path,
            format!("expected {expected}, found {}", describe(&self.node.value)),
        );
    }

    fn int<T: TryFrom<i128> + Default>(&self, type_name: &str) -> T {
        match &self.node.value {
            Value::Int(i) => T::try_from(*i).unwrap_or_else(|_| {
                self.sink.report(
                    Code::OutOfRange,
                    self.node.pos,
                    &self.path,
                    format!("{i} does not fit in {type_name}"),
                );
                T::default()
            }),
            _ => {
                self.wrong_type("an integer");
                T::default()
            }
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Str(s) => format!("string \"{}\"", truncate(s)),
        Value::Int(i) => format!("integer {i}"),
        Value::Float(x) => format!("number {x}"),
        Value::Bool(b) => format!("boolean {b}"),
        other => other.kind().to_owned(),
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

macro_rules! int_methods {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                let value: $ty = self.int(stringify!($ty));
                visitor.$visit(value)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => match i64::try_from(*i) {
                Ok(i) => visitor.visit_i64(i),
                Err(_) => visitor.visit_i128(*i),
            },
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(_) => self.deserialize_seq(visitor),
            Value::Map(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Bool(b) => visitor.visit_bool(b),
            _ => {
                self.wrong_type("a boolean (true or false)");
                visitor.visit_bool(false)
            }
        }
    }

    int_methods! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_i128 => i128, visit_i128;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_u128 => u128, visit_u128;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Float(x) => visitor.visit_f64(x),
            Value::Int(i) => visitor.visit_f64(i as f64),
            _ => {
                self.wrong_type("a number");
                visitor.visit_f64(0.0)
            }
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Str(s) => visitor.visit_str(s),
            _ => {
                self.wrong_type("a string");
                visitor.visit_str("")
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    /// A present key is always `Some`: like linuxkit's schema, kiln treats
    /// an explicit `null` as a wrong type, not as "absent".
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.value != Value::Null {
            self.wrong_type("null");
        }
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items: &[Node] = match &self.node.value {
            Value::Seq(items) => items,
            _ => {
                self.wrong_type("a list");
                &[]
            }
        };
        visitor.visit_seq(SeqAccess {
            items: items.iter().enumerate(),
            path: &self.path,
            sink: self.sink,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut kept = Vec::new();
        match &self.node.value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    if key.as_str().is_some() {
                        kept.push((key, value));
                    } else {
                        self.sink.report(
                            Code::WrongType,
                            key.pos,
                            &self.path,
                            format!("keys must be strings, found {}", describe(&key.value)),
                        );
                    }
                }
            }
            _ => self.wrong_type("a mapping"),
        }
        visitor.visit_map(MapAccess {
            entries: kept.into_iter(),
            value: None,
            path: &self.path,
            sink: self.sink,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Value::Map(entries) = &self.node.value else {
            self.wrong_type("a mapping");
            return visitor.visit_map(MapAccess {
                entries: Vec::new().into_iter(),
                value: None,
                path: &self.path,
                sink: self.sink,
            });
        };
        let mut kept: Vec<(&Node, &Node)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let text = key.key_text();
            if !fields.contains(&text.as_str()) {
                self.sink.report(
                    Code::UnknownKey,
                    key.pos,
                    &self.path.key(&text),
                    unknown_key_message(&text, fields),
                );
            } else if !kept.iter().any(|(k, _)| k.as_str() == Some(&text)) {
                kept.push((key, value));
            }
        }
        if let Some((_, required)) = REQUIRED.iter().find(|(n, _)| *n == name) {
            for field in *required {
                if !kept.iter().any(|(k, _)| k.as_str() == Some(field)) {
                    self.sink.report(
                        Code::MissingKey,
                        self.node.pos,
                        &self.path.key(field),
                        format!("missing required key `{field}`"),
                    );
                }
            }
        }
        visitor.visit_map(MapAccess {
            entries: kept.into_iter(),
            value: None,
            path: &self.path,
            sink: self.sink,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Str(s) if variants.contains(&s.as_str()) => {
                visitor.visit_enum(s.as_str().into_deserializer())
            }
            _ => {
                let expected = variants
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                self.sink.report(
                    Code::BadEnum,
                    self.node.pos,
                    &self.path,
                    format!("expected {expected}, found {}", describe(&self.node.value)),
                );
                visitor.visit_enum(variants[0].into_deserializer())
            }
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

fn unknown_key_message(key: &str, fields: &[&str]) -> String {
    let hint = match key {
        "binaries" => Some("binary"),
        "rmlimits" | "ulimits" => Some("rlimits"),
        "workdir" => Some("cwd"),
        "entrypoint" => Some("command"),
        "user" => Some("uid"),
        _ => fields
            .iter()
            .copied()
            .filter(|f| edit_distance(key, f) <= 2.max(f.len() / 4))
            .min_by_key(|f| edit_distance(key, f)),
    };
    match hint {
        Some(hint) if fields.contains(&hint) => {
            format!("unknown key `{key}`; did you mean `{hint}`?")
        }
        _ => format!(
            "unknown key `{key}`; expected one of {}",
            fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(cb));
            let next = (row[j] + 1).min(row[j + 1] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

struct SeqAccess<'a, I> {
    items: I,
    path: &'a KeyPath,
    sink: &'a Sink,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> de::SeqAccess<'de> for SeqAccess<'a, I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.index(index);
        let de = NodeDe {
            node,
            path: path.clone(),
            sink: self.sink,
        };
        match seed.deserialize(de) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                if !e.reported {
                    self.sink
                        .report(Code::WrongType, node.pos, &path, e.message);
                }
                Err(Error {
                    message: String::new(),
                    reported: true,
                })
            }
        }
    }
}

struct MapAccess<'a, I> {
    entries: I,
    value: Option<(&'a Node, KeyPath)>,
    path: &'a KeyPath,
    sink: &'a Sink,
}

impl<'de, 'a, I: Iterator<Item = (&'a Node, &'a Node)>> de::MapAccess<'de> for MapAccess<'a, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let text = key.key_text();
        let path = self.path.key(&text);
        self.value = Some((value, path));
        seed.deserialize(text.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((node, path)) = self.value.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let de = NodeDe {
            node,
            path: path.clone(),
            sink: self.sink,
        };
        seed.deserialize(de).map_err(|e| {
            if !e.reported {
                self.sink
                    .report(Code::WrongType, node.pos, &path, e.message);
            }
            Error {
                message: String::new(),
                reported: true,
            }
        })
    }
}
