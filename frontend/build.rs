//! Turns the spec's JSON Schema into a static table of mappings and their
//! keys (`$OUT_DIR/schema_table.rs`) for completion, so the WASM module
//! links neither the schema generator nor a JSON tree to walk.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

struct Prop {
    name: String,
    kind: String,
    info: String,
    child: Option<usize>,
    values: Vec<String>,
    boolean: bool,
}

struct Walker<'a> {
    root: &'a Value,
    nodes: Vec<Vec<Prop>>,
    seen: HashMap<String, usize>,
}

impl<'a> Walker<'a> {
    fn resolve(&self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                Some(t) => v = t,
                None => break,
            }
        }
        v
    }

    /// The node index of the mapping `schema` describes, if it is one.
    fn node(&mut self, schema: &'a Value) -> Option<usize> {
        let key = schema
            .get("$ref")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let schema = self.resolve(schema);
        let props = schema.get("properties")?.as_object()?;
        if let Some(k) = &key {
            if let Some(&i) = self.seen.get(k) {
                return Some(i);
            }
        }
        let index = self.nodes.len();
        self.nodes.push(Vec::new());
        if let Some(k) = key {
            self.seen.insert(k, index);
        }
        let mut list = Vec::new();
        for (name, p) in props {
            let p = self.resolve(p);
            let inner = p.get("items").map(|i| self.resolve(i)).unwrap_or(p);
            let child = match p.get("items") {
                Some(items) => self.node(items),
                None => self.node(p),
            };
            let kind = match p.get("type") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" | "),
                _ => String::new(),
            };
            list.push(Prop {
                name: name.clone(),
                kind,
                info: p
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                child,
                values: inner
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(|e| {
                        e.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                boolean: inner.get("type").and_then(Value::as_str) == Some("boolean"),
            });
        }
        self.nodes[index] = list;
        Some(index)
    }
}

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let schema = kiln_shared::json_schema();
    let mut walker = Walker {
        root: &schema,
        nodes: Vec::new(),
        seen: HashMap::new(),
    };
    walker.node(&schema).expect("the spec schema is a mapping");
    let mut code = String::from("static NODES: &[&[Prop]] = &[\n");
    for node in &walker.nodes {
        code.push_str("    &[\n");
        for p in node {
            writeln!(
                code,
                "        Prop {{ name: {:?}, kind: {:?}, info: {:?}, child: {:?}, values: &{:?}, boolean: {} }},",
                p.name, p.kind, p.info, p.child, p.values, p.boolean
            )
            .unwrap();
        }
        code.push_str("    ],\n");
    }
    code.push_str("];\n");
    std::fs::write(out.join("schema_table.rs"), code).expect("writing schema_table.rs");
}
