//! The metadata file a `files` entry can ask for: the merged spec, written
//! back out as YAML (`metadata: yaml`) or JSON (`metadata: json`).
//!
//! The shape follows linuxkit's: sections in the order kernel, init, onboot,
//! onshutdown, services, files, volumes, each present (`[]` when empty),
//! image names in their expanded form, and no `trust`.

use kiln_shared::reference::expand;
use kiln_shared::Spec;
use serde_yaml::{Mapping, Value};

const SECTIONS: [&str; 7] = [
    "kernel",
    "init",
    "onboot",
    "onshutdown",
    "services",
    "files",
    "volumes",
];

/// The spec as the metadata file records it.
pub fn metadata_value(spec: &Spec) -> Value {
    let mut spec = spec.clone();
    if let Some(kernel) = &mut spec.kernel {
        kernel.image = kernel.image.as_deref().map(expand);
    }
    spec.init = spec.init.iter().map(|i| expand(i)).collect();
    for entry in spec
        .onboot
        .iter_mut()
        .chain(&mut spec.onshutdown)
        .chain(&mut spec.services)
    {
        entry.image = expand(&entry.image);
    }
    spec.trust = None;

    let value = serde_yaml::to_value(&spec).unwrap_or(Value::Null);
    let Value::Mapping(mut fields) = value else {
        return Value::Mapping(Mapping::new());
    };
    let mut out = Mapping::new();
    for section in SECTIONS {
        let key = Value::String(section.to_owned());
        let mut v = fields.remove(&key).unwrap_or_else(|| {
            if section == "kernel" {
                Value::Mapping(Mapping::new())
            } else {
                Value::Sequence(Vec::new())
            }
        });
        if section == "files" {
            complete_files(&mut v);
        }
        complete_mounts(&mut v);
        out.insert(key, v);
    }
    Value::Mapping(out)
}

pub fn to_yaml(spec: &Spec) -> Vec<u8> {
    serde_yaml::to_string(&metadata_value(spec))
        .unwrap_or_default()
        .into_bytes()
}

pub fn to_json(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    let _ = serde::Serialize::serialize(&metadata_value(spec), &mut ser);
    out
}

/// Files always say whether they are a directory and optional.
fn complete_files(files: &mut Value) {
    let Value::Sequence(files) = files else {
        return;
    };
    for file in files {
        if let Value::Mapping(m) = file {
            for key in ["directory", "optional"] {
                let key = Value::String(key.to_owned());
                if !m.contains_key(&key) {
                    m.insert(key, Value::Bool(false));
                }
            }
        }
    }
}

/// Mount objects always carry all six keys, wherever they appear.
fn complete_mounts(value: &mut Value) {
    match value {
        Value::Mapping(m) => {
            for (key, v) in m.iter_mut() {
                if key.as_str() == Some("mounts") {
                    if let Value::Sequence(mounts) = v {
                        mounts.iter_mut().for_each(complete_mount);
                    }
                }
                complete_mounts(v);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(complete_mounts),
        _ => {}
    }
}

fn complete_mount(mount: &mut Value) {
    let Value::Mapping(m) = mount else { return };
    let defaults = [
        ("destination", Value::String(String::new())),
        ("type", Value::String(String::new())),
        ("source", Value::String(String::new())),
        ("options", Value::Sequence(Vec::new())),
        ("uidmappings", Value::Sequence(Vec::new())),
        ("gidmappings", Value::Sequence(Vec::new())),
    ];
    let mut ordered = Mapping::new();
    for (key, default) in defaults {
        let key = Value::String(key.to_owned());
        let v = m.remove(&key).unwrap_or(default);
        ordered.insert(key, v);
    }
    *m = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_complete_and_images_expanded() {
        let v = kiln_shared::validate(
            "init: [linuxkit/init:v1]\nservices:\n  - name: a\n    image: nginx:1\n    mounts:\n      - type: proc\nfiles:\n  - path: etc/x\n    contents: y\ntrust:\n  org: [linuxkit]\n",
        );
        let spec = v.spec.unwrap();
        let yaml = String::from_utf8(to_yaml(&spec)).unwrap();
        let keys: Vec<&str> = yaml
            .lines()
            .filter(|l| !l.starts_with([' ', '-']))
            .collect();
        assert_eq!(
            keys,
            [
                "kernel: {}",
                "init:",
                "onboot: []",
                "onshutdown: []",
                "services:",
                "files:",
                "volumes: []"
            ]
        );
        assert!(yaml.contains("docker.io/linuxkit/init:v1"));
        assert!(yaml.contains("image: docker.io/library/nginx:1"));
        assert!(yaml.contains("directory: false"));
        assert!(yaml.contains("uidmappings: []"));
        assert!(!yaml.contains("trust"));
        let reparsed = kiln_shared::validate(&yaml);
        assert!(!reparsed.has_errors(), "{:?}", reparsed.diagnostics);
    }

    #[test]
    fn the_spec_digest_ignores_how_the_spec_is_written() {
        let digest = |texts: &[&str]| {
            let sources: Vec<kiln_shared::Source<'_>> = texts
                .iter()
                .map(|text| kiln_shared::Source {
                    name: "s.yml",
                    text,
                })
                .collect();
            crate::engine::build::spec_digest(&kiln_shared::validate_merged(&sources).spec.unwrap())
        };
        let one =
            digest(&["init:\n  - linuxkit/init:v1\nonboot:\n  - name: a\n    image: alpine:3\n"]);
        assert_eq!(one.len(), 64);
        assert!(one
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // Comments, key order, quoting, flow style and a split into files.
        assert_eq!(
            one,
            digest(&[
                "# base\ninit: [\"linuxkit/init:v1\"]\nonboot: [{image: 'alpine:3', name: a}]\n"
            ])
        );
        assert_eq!(
            one,
            digest(&[
                "init:\n  - linuxkit/init:v1\n",
                "onboot:\n  - name: a\n    image: alpine:3\n"
            ])
        );
        assert_ne!(
            one,
            digest(&["init:\n  - linuxkit/init:v1\nonboot:\n  - name: b\n    image: alpine:3\n"])
        );
    }
}
