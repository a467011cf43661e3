//! The `org.mobyproject.config` image label and its precedence under the
//! YAML entry (reference B.7.1).

use kiln_shared::model::{Namespaces, Runtime};
use kiln_shared::tree::{self, Node, Value};
use kiln_shared::{Code, ImageEntry};

/// The image label that carries a default image entry.
pub const LABEL: &str = "org.mobyproject.config";

/// Problems linuxkit's schema pass would report. Other checks (symbolic
/// ids, volume names, capability spellings...) belong to the build, which
/// makes them itself once the label is merged.
const SCHEMA_CODES: [Code; 9] = [
    Code::YamlSyntax,
    Code::EmptyDocument,
    Code::DuplicateKey,
    Code::TooComplex,
    Code::UnknownKey,
    Code::WrongType,
    Code::MissingKey,
    Code::OutOfRange,
    Code::BadEnum,
];

/// Parses a label's value (YAML or JSON) into an image entry, as linuxkit's
/// `NewImage` does: it must be a mapping, must not set `name` or `image`,
/// and must pass the schema of an image entry. `capabilities.add` and
/// `binds.add` are accepted here and ignored by [`merge`].
///
/// The error is the list of problems, one per line.
pub fn parse_label(text: &str) -> Result<ImageEntry, String> {
    let loaded = tree::load(text);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let Some(Node {
        value: Value::Map(entries),
        ..
    }) = loaded.root
    else {
        return Err("the label must be a mapping (a JSON object)".to_owned());
    };
    for key in ["name", "image"] {
        if entries.iter().any(|(k, _)| k.key_text() == key) {
            return Err(format!("`{key}` cannot be set in the label"));
        }
    }
    let mut fields: Vec<String> = Vec::with_capacity(entries.len());
    for (key, value) in &entries {
        let mut field = json_string(&key.key_text());
        field.push(':');
        to_json(value, &mut field);
        fields.push(field);
    }
    let fields = fields.join(",");

    // Validate the label as linuxkit does: as a service with a dummy name
    // and image. The text is JSON, which the YAML loader reads unchanged.
    let wrapped = format!(
        r#"{{"services":[{{"name":"dummyname","image":"dummyimage"{}{fields}}}]}}"#,
        if fields.is_empty() { "" } else { "," }
    );
    let problems: Vec<String> = kiln_shared::validate(&wrapped)
        .diagnostics
        .into_iter()
        .filter(|d| d.is_error() && SCHEMA_CODES.contains(&d.code))
        .map(|d| {
            let path = d.path.strip_prefix("services[0]").unwrap_or(&d.path);
            let path = path.strip_prefix('.').unwrap_or(path);
            if path.is_empty() {
                d.message
            } else {
                format!("{path}: {}", d.message)
            }
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    serde_json::from_str::<ImageEntry>(&format!("{{{fields}}}")).map_err(|e| e.to_string())
}

/// Writes a YAML node as JSON text. Integers keep every digit and keys are
/// written as their text, so nothing is lost on the way to the validator.
fn to_json(node: &Node, out: &mut String) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(x) if x.is_finite() => out.push_str(&format!("{x:?}")),
        // Not JSON, but YAML's spelling, so the validator still sees a
        // float where it expects something else.
        Value::Float(x) if x.is_nan() => out.push_str(".nan"),
        Value::Float(x) if *x > 0.0 => out.push_str(".inf"),
        Value::Float(_) => out.push_str("-.inf"),
        Value::Str(s) => out.push_str(&json_string(s)),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_json(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(&key.key_text()));
                out.push(':');
                to_json(value, out);
            }
            out.push('}');
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Merges the label (`L`) under the YAML entry (`Y`) by linuxkit's rules:
///
/// * a field set in the YAML replaces the label's, even when it is an empty
///   list or map;
/// * `capabilities` is `Y.capabilities`, else the label's list followed by
///   `Y.capabilities.add`; `binds` likewise with `binds.add`. This is a
///   plain concatenation, as in linuxkit (whose de-duplication never runs),
///   so a label's lone `all` followed by additions is an unknown capability
///   `all`. `.add` keys inside the label are ignored;
/// * the string fields linuxkit holds as plain strings (`cwd`, `net`, `pid`,
///   `ipc`, `uts`, `userns`, `hostname`) take the first *non-empty* value;
/// * each `runtime` field, and each `runtime.bindNS` key, is merged on its
///   own.
///
/// `command`, `env` and `cwd` fall back to the image config later. The
/// result has no `.add` fields left.
pub fn merge(label: &ImageEntry, yaml: &ImageEntry) -> ImageEntry {
    fn pick<T: Clone>(y: &Option<T>, l: &Option<T>) -> Option<T> {
        y.as_ref().or(l.as_ref()).cloned()
    }
    fn non_empty(y: &Option<String>, l: &Option<String>) -> Option<String> {
        [y, l]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
    }
    fn append(l: &Option<Vec<String>>, add: &Option<Vec<String>>) -> Option<Vec<String>> {
        match (l, add) {
            (None, None) => None,
            (l, add) => Some(l.iter().chain(add.iter()).flatten().cloned().collect()),
        }
    }
    // No `..` here: a field added to the model must be given a rule.
    ImageEntry {
        name: yaml.name.clone(),
        image: yaml.image.clone(),
        capabilities: yaml
            .capabilities
            .clone()
            .or_else(|| append(&label.capabilities, &yaml.capabilities_add)),
        capabilities_add: None,
        ambient: pick(&yaml.ambient, &label.ambient),
        mounts: pick(&yaml.mounts, &label.mounts),
        binds: yaml
            .binds
            .clone()
            .or_else(|| append(&label.binds, &yaml.binds_add)),
        binds_add: None,
        devices: pick(&yaml.devices, &label.devices),
        tmpfs: pick(&yaml.tmpfs, &label.tmpfs),
        command: pick(&yaml.command, &label.command),
        env: pick(&yaml.env, &label.env),
        cwd: non_empty(&yaml.cwd, &label.cwd),
        net: non_empty(&yaml.net, &label.net),
        pid: non_empty(&yaml.pid, &label.pid),
        ipc: non_empty(&yaml.ipc, &label.ipc),
        uts: non_empty(&yaml.uts, &label.uts),
        userns: non_empty(&yaml.userns, &label.userns),
        hostname: non_empty(&yaml.hostname, &label.hostname),
        readonly: pick(&yaml.readonly, &label.readonly),
        masked_paths: pick(&yaml.masked_paths, &label.masked_paths),
        readonly_paths: pick(&yaml.readonly_paths, &label.readonly_paths),
        uid: pick(&yaml.uid, &label.uid),
        gid: pick(&yaml.gid, &label.gid),
        additional_gids: pick(&yaml.additional_gids, &label.additional_gids),
        no_new_privileges: pick(&yaml.no_new_privileges, &label.no_new_privileges),
        oom_score_adj: pick(&yaml.oom_score_adj, &label.oom_score_adj),
        rootfs_propagation: pick(&yaml.rootfs_propagation, &label.rootfs_propagation),
        cgroups_path: pick(&yaml.cgroups_path, &label.cgroups_path),
        resources: pick(&yaml.resources, &label.resources),
        sysctl: pick(&yaml.sysctl, &label.sysctl),
        rlimits: pick(&yaml.rlimits, &label.rlimits),
        uid_mappings: pick(&yaml.uid_mappings, &label.uid_mappings),
        gid_mappings: pick(&yaml.gid_mappings, &label.gid_mappings),
        annotations: pick(&yaml.annotations, &label.annotations),
        runtime: merge_runtime(label.runtime.as_ref(), yaml.runtime.as_ref()),
    }
}

fn merge_runtime(label: Option<&Runtime>, yaml: Option<&Runtime>) -> Option<Runtime> {
    if label.is_none() && yaml.is_none() {
        return None;
    }
    let empty = Runtime::default();
    let (l, y) = (label.unwrap_or(&empty), yaml.unwrap_or(&empty));
    fn pick<T: Clone>(y: &Option<T>, l: &Option<T>) -> Option<T> {
        y.as_ref().or(l.as_ref()).cloned()
    }
    let no_ns = Namespaces::default();
    let (lb, yb) = (
        l.bind_ns.as_ref().unwrap_or(&no_ns),
        y.bind_ns.as_ref().unwrap_or(&no_ns),
    );
    Some(Runtime {
        cgroups: pick(&y.cgroups, &l.cgroups),
        mounts: pick(&y.mounts, &l.mounts),
        mkdir: pick(&y.mkdir, &l.mkdir),
        interfaces: pick(&y.interfaces, &l.interfaces),
        bind_ns: Some(Namespaces {
            cgroup: pick(&yb.cgroup, &lb.cgroup),
            ipc: pick(&yb.ipc, &lb.ipc),
            mnt: pick(&yb.mnt, &lb.mnt),
            net: pick(&yb.net, &lb.net),
            pid: pick(&yb.pid, &lb.pid),
            user: pick(&yb.user, &lb.user),
            uts: pick(&yb.uts, &lb.uts),
        }),
        namespace: pick(&y.namespace, &l.namespace),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_must_be_a_valid_mapping() {
        assert!(parse_label("[1]").unwrap_err().contains("mapping"));
        assert!(parse_label("{\"name\": \"x\"}")
            .unwrap_err()
            .contains("name"));
        let err = parse_label("{\"bogus\": 1}").unwrap_err();
        assert!(err.starts_with("bogus:"), "{err}");
        let err = parse_label("{\"capabilities\": \"CAP_X\"}").unwrap_err();
        assert!(err.starts_with("capabilities:"), "{err}");
        assert!(parse_label("{").is_err());
    }

    #[test]
    fn label_accepts_yaml_json_and_add_keys() {
        let e = parse_label("{}").unwrap();
        assert_eq!(e, ImageEntry::default());
        let e =
            parse_label("capabilities: [CAP_SYS_ADMIN]\nuid: other\nbinds.add: [/a:/b]").unwrap();
        assert_eq!(e.capabilities, Some(vec!["CAP_SYS_ADMIN".to_owned()]));
        assert_eq!(e.uid, Some(kiln_shared::IdRef::Name("other".to_owned())));
        assert_eq!(e.binds_add, Some(vec!["/a:/b".to_owned()]));
        let e = parse_label(r#"{"devices":[{"path":"/dev/x","mode":"0660","major":1}]}"#).unwrap();
        assert_eq!(e.devices.unwrap()[0].major, Some(1));
    }
}
