//! The JSON Schema of a spec, generated from the typed model so the two
//! cannot drift apart.

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::Spec;

/// A draft-07 JSON Schema for [`Spec`]. Unknown keys are rejected at every
/// level, as in linuxkit's own schema.
pub fn json_schema() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<Spec>().to_value();
    forbid_null(&mut schema);
    schema
}

/// `Option` fields mean "may be absent", not "may be null": like linuxkit,
/// kiln rejects an explicit null. schemars allows null for them, so strip it.
fn forbid_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".to_owned(), only);
                }
            }
            if let Some(Value::Array(options)) = map.get_mut("anyOf") {
                options.retain(|o| o.get("type").is_none_or(|t| t != "null"));
                if options.len() == 1 {
                    let only = options.remove(0);
                    map.remove("anyOf");
                    if let Value::Object(inner) = only {
                        map.extend(inner);
                    }
                }
            }
            map.values_mut().for_each(forbid_null);
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_null),
        _ => {}
    }
}
