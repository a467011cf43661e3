//! `config.json` and `runtime.json` generation (engine::bundle), checked
//! field by field against the reference (linuxkit-spec.md A.5-A.6, B.6-B.7).
//! Every generated `config.json` is also read back with the runtime-spec
//! types of the `oci-spec` crate.

use std::collections::HashMap;

use kiln_backend::engine::bundle::{
    self, generate, layout_mounts, Bundle, BundleError, Context, ErrorKind, ImageConfig,
};
use kiln_shared::ids::{IdError, IdTable};
use kiln_shared::{IdRef, ImageEntry, Spec};
use serde_json::{json, Value};

const LABEL: &str = "org.mobyproject.config";

fn spec_of(yaml: &str) -> Spec {
    let v = kiln_shared::validate(yaml);
    assert!(!v.has_errors(), "{:#?}", v.diagnostics);
    v.spec.unwrap()
}

fn image(config: Value) -> ImageConfig {
    let blob = json!({"architecture": "amd64", "os": "linux", "config": config});
    ImageConfig::from_blob(blob.to_string().as_bytes()).unwrap()
}

fn volumes_of(spec: &Spec) -> HashMap<String, bool> {
    spec.volumes
        .iter()
        .map(|v| (v.name.clone().unwrap(), v.readonly.unwrap_or(false)))
        .collect()
}

fn find<'a>(spec: &'a Spec, name: &str) -> &'a ImageEntry {
    spec.onboot
        .iter()
        .chain(&spec.onshutdown)
        .chain(&spec.services)
        .find(|e| e.name == name)
        .unwrap()
}

/// Generates the bundle of container `name` of a spec.
fn try_gen(yaml: &str, name: &str, image_config: Value) -> Result<Bundle, BundleError> {
    let spec = spec_of(yaml);
    let ids = IdTable::for_specs([&spec]);
    let volumes = volumes_of(&spec);
    let ctx = Context {
        ids: &ids,
        volumes: &volumes,
    };
    generate(find(&spec, name), &image(image_config), &ctx)
}

struct Built {
    bundle: Bundle,
    config_text: String,
    config: Value,
    runtime_text: String,
    runtime: Value,
}

/// Generates, writes both files for `containers/services/<name>` with the
/// bundle's own root, and checks `config.json` against the runtime-spec types.
fn gen(yaml: &str, name: &str, image_config: Value) -> Built {
    let bundle = try_gen(yaml, name, image_config).unwrap();
    let dir = format!("containers/services/{name}");
    let root = bundle.root_dir(&dir);
    let config_text = String::from_utf8(bundle.config_json()).unwrap();
    let runtime_text = String::from_utf8(bundle.runtime_json(&dir, &root)).unwrap();
    let parsed: Result<oci_spec::runtime::Spec, _> = serde_json::from_str(&config_text);
    assert!(parsed.is_ok(), "{parsed:?}\n{config_text}");
    Built {
        config: serde_json::from_str(&config_text).unwrap(),
        runtime: serde_json::from_str(&runtime_text).unwrap(),
        bundle,
        config_text,
        runtime_text,
    }
}

fn service(body: &str) -> String {
    format!("services:\n  - name: svc\n    image: alpine:3.20\n{body}")
}

fn busybox() -> Value {
    json!({
        "Entrypoint": ["/bin/sh"],
        "Cmd": ["-c", "sleep 1"],
        "Env": ["PATH=/usr/bin:/bin"],
        "WorkingDir": "",
        "User": "nobody",
        "Labels": null
    })
}

fn with_label(label: Value) -> Value {
    let mut config = busybox();
    config["Labels"] = json!({ LABEL: label.to_string() });
    config
}

/// The five default mounts of B.7.4 (not read-only), sorted by destination.
fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "nodev", "noexec", "relatime"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]
}

fn mount_at<'a>(config: &'a Value, destination: &str) -> &'a Value {
    config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == destination)
        .unwrap_or_else(|| panic!("no mount at {destination}"))
}

fn strings(v: &[&str]) -> Value {
    json!(v)
}

/// Asserts that the `needles` appear in `text` in this order.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut at = 0;
    for needle in needles {
        let found = text[at..]
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing after byte {at} in\n{text}"));
        at += found + needle.len();
    }
}

// ---------------------------------------------------------------------------
// Skeleton and serialisation (B.7.7, B.7.8)

#[test]
fn skeleton_without_label_is_byte_exact() {
    let b = gen(&service(""), "svc", busybox());
    // B.7.7: 4-space indent, runtime-spec key order, omitempty, no trailing
    // newline; `capabilities` {} and `resources` {}; pid and mount
    // namespaces only; the image's User is ignored.
    let expected = r#"{
    "ociVersion": "1.2.1",
    "process": {
        "user": {
            "uid": 0,
            "gid": 0
        },
        "args": [
            "/bin/sh",
            "-c",
            "sleep 1"
        ],
        "env": [
            "PATH=/usr/bin:/bin"
        ],
        "cwd": "/",
        "capabilities": {}
    },
    "root": {
        "path": "rootfs"
    },
    "mounts": [
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": [
                "nosuid",
                "strictatime",
                "mode=755",
                "size=65536k"
            ]
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ]
        },
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": [
                "nosuid",
                "nodev",
                "noexec",
                "relatime"
            ]
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": [
                "nosuid",
                "noexec",
                "nodev"
            ]
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                "ro"
            ]
        }
    ],
    "linux": {
        "resources": {},
        "namespaces": [
            {
                "type": "pid"
            },
            {
                "type": "mount"
            }
        ]
    }
}"#;
    assert_eq!(b.config_text, expected);
    assert!(!b.bundle.readonly());
}

#[test]
fn runtime_json_of_overlay_layout_is_byte_exact() {
    let b = gen(&service(""), "svc", busybox());
    // B.6: tmpfs on tmp, private remount, overlay on rootfs; B.7.8: every
    // key present, lists as [], bindNS with all seven keys.
    let expected = r#"{
    "cgroups": [],
    "mounts": [
        {
            "destination": "/containers/services/svc/tmp",
            "type": "tmpfs",
            "source": "tmpfs"
        },
        {
            "destination": "/containers/services/svc/tmp",
            "options": [
                "remount",
                "private"
            ]
        },
        {
            "destination": "/containers/services/svc/rootfs",
            "type": "overlay",
            "source": "overlay",
            "options": [
                "lowerdir=/containers/services/svc/lower",
                "upperdir=/containers/services/svc/tmp/upper",
                "workdir=/containers/services/svc/tmp/work"
            ]
        }
    ],
    "mkdir": [],
    "interfaces": [],
    "bindNS": {
        "cgroup": "",
        "ipc": "",
        "mnt": "",
        "net": "",
        "pid": "",
        "user": "",
        "uts": ""
    },
    "namespace": ""
}"#;
    assert_eq!(b.runtime_text, expected);
}

#[test]
fn strings_are_escaped_like_go() {
    let b = gen(
        &service("    annotations:\n      note: \"a<b>&c\"\n"),
        "svc",
        busybox(),
    );
    assert!(
        b.config_text.contains(r#""note": "a\u003cb\u003e\u0026c""#),
        "{}",
        b.config_text
    );
    assert_eq!(b.config["annotations"], json!({"note": "a<b>&c"}));
}

#[test]
fn every_linux_and_process_field_in_runtime_spec_order() {
    let yaml = service(
        r#"    uid: 1
    gid: 2
    additionalGids: [3]
    capabilities: [CAP_CHOWN]
    ambient: [CAP_CHOWN]
    rlimits: ["nofile,1,2"]
    noNewPrivileges: true
    oomScoreAdj: 0
    hostname: box
    annotations: {b: "2", a: "1"}
    readonly: true
    uidMappings: [{containerID: 0, hostID: 1000, size: 1}]
    gidMappings: [{containerID: 0, hostID: 2000, size: 1}]
    sysctl: {net.ipv4.ip_forward: "1", kernel.x: "2"}
    resources: {pids: {limit: 10}}
    cgroupsPath: /kiln/svc
    devices: [{path: /dev/null, type: c, major: 1, minor: 3, mode: "0666"}]
    rootfsPropagation: shared
    maskedPaths: [/proc/kcore]
    readonlyPaths: [/proc/sys]
"#,
    );
    let b = gen(&yaml, "svc", busybox());
    let c = &b.config;
    assert_in_order(
        &b.config_text,
        &[
            "\"ociVersion\"",
            "\"process\"",
            "\"user\"",
            "\"uid\"",
            "\"gid\"",
            "\"additionalGids\"",
            "\"args\"",
            "\"env\"",
            "\"cwd\"",
            "\"capabilities\"",
            "\"bounding\"",
            "\"effective\"",
            "\"inheritable\"",
            "\"permitted\"",
            "\"ambient\"",
            "\"rlimits\"",
            "\"type\"",
            "\"hard\"",
            "\"soft\"",
            "\"noNewPrivileges\"",
            "\"oomScoreAdj\"",
            "\"root\"",
            "\"hostname\"",
            "\"mounts\"",
            "\"annotations\"",
            "\"a\"",
            "\"b\"",
            "\"linux\"",
            "\"uidMappings\"",
            "\"gidMappings\"",
            "\"sysctl\"",
            "\"kernel.x\"",
            "\"net.ipv4.ip_forward\"",
            "\"resources\"",
            "\"devices\"",
            "\"allow\"",
            "\"type\"",
            "\"major\"",
            "\"minor\"",
            "\"access\"",
            "\"pids\"",
            "\"cgroupsPath\"",
            "\"namespaces\"",
            "\"devices\"",
            "\"path\"",
            "\"type\"",
            "\"major\"",
            "\"minor\"",
            "\"fileMode\"",
            "\"rootfsPropagation\"",
            "\"maskedPaths\"",
            "\"readonlyPaths\"",
        ],
    );
    assert_eq!(c["process"]["noNewPrivileges"], json!(true));
    // oomScoreAdj is a pointer in Go: 0 is written when set.
    assert_eq!(c["process"]["oomScoreAdj"], json!(0));
    assert_eq!(c["hostname"], json!("box"));
    assert_eq!(c["root"], json!({"path": "rootfs", "readonly": true}));
    assert_eq!(c["linux"]["cgroupsPath"], json!("/kiln/svc"));
    assert_eq!(c["linux"]["rootfsPropagation"], json!("shared"));
    assert_eq!(c["linux"]["maskedPaths"], json!(["/proc/kcore"]));
    assert_eq!(c["linux"]["readonlyPaths"], json!(["/proc/sys"]));
    assert_eq!(
        c["linux"]["sysctl"],
        json!({"net.ipv4.ip_forward": "1", "kernel.x": "2"})
    );
    // hostID/containerID are dropped by linuxkit's decode; kiln applies
    // them. Key order is containerID, hostID, size.
    assert_eq!(
        c["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": 1000, "size": 1}])
    );
    assert_in_order(
        &b.config_text,
        &["\"containerID\"", "\"hostID\"", "\"size\""],
    );
    assert_eq!(c["linux"]["resources"]["pids"], json!({"limit": 10}));
}

// ---------------------------------------------------------------------------
// Label and precedence (B.7.1)

#[test]
fn label_supplies_defaults_and_yaml_adds_to_its_lists() {
    let label = json!({
        "capabilities": ["CAP_SYS_ADMIN"],
        "binds": ["/var/log:/var/log"],
        "command": ["/usr/bin/daemon", "--foreground"],
        "env": ["FROM=label"],
        "cwd": "/srv",
        "net": "new",
        "hostname": "labelled",
        "sysctl": {"vm.swappiness": "10"},
        "runtime": {"mkdir": ["/var/lib/x"], "bindNS": {"net": "/run/netns/x"}},
        // Accepted in a label, and ignored.
        "capabilities.add": ["CAP_KILL"],
        "binds.add": ["/ignored:/ignored"]
    });
    let yaml = service(
        r#"    capabilities.add: [CAP_NET_ADMIN]
    binds.add: ["/etc/x:/etc/x:ro"]
    env: ["FROM=yaml"]
    runtime:
      bindNS: {pid: /run/pidns/x}
"#,
    );
    let b = gen(&yaml, "svc", with_label(label));
    let p = &b.config["process"];
    assert_eq!(p["args"], strings(&["/usr/bin/daemon", "--foreground"]));
    assert_eq!(p["env"], strings(&["FROM=yaml"]));
    assert_eq!(p["cwd"], json!("/srv"));
    // L.capabilities followed by Y.capabilities.add, in that order; the
    // other sets are the sorted union.
    assert_eq!(
        p["capabilities"],
        json!({
            "bounding": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
            "effective": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"],
            "inheritable": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
            "permitted": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
        })
    );
    assert_eq!(
        mount_at(&b.config, "/var/log"),
        &json!({"destination": "/var/log", "type": "bind", "source": "/var/log",
                "options": ["rw", "rbind", "rshared"]})
    );
    assert_eq!(
        mount_at(&b.config, "/etc/x"),
        &json!({"destination": "/etc/x", "type": "bind", "source": "/etc/x",
                "options": ["ro", "rbind"]})
    );
    assert!(!b.config_text.contains("/ignored"));
    assert!(!b.config_text.contains("CAP_KILL"));
    assert_eq!(b.config["hostname"], json!("labelled"));
    assert_eq!(b.config["linux"]["sysctl"], json!({"vm.swappiness": "10"}));
    assert_eq!(
        b.config["linux"]["namespaces"],
        json!([{"type": "network"}, {"type": "pid"}, {"type": "mount"}])
    );
    // Each runtime field, and each bindNS key, is merged on its own.
    assert_eq!(b.runtime["mkdir"], json!(["/var/lib/x"]));
    assert_eq!(b.runtime["bindNS"]["net"], json!("/run/netns/x"));
    assert_eq!(b.runtime["bindNS"]["pid"], json!("/run/pidns/x"));
    assert_eq!(b.runtime["bindNS"]["ipc"], json!(""));
}

#[test]
fn yaml_fields_replace_label_fields_even_when_empty() {
    let label = json!({
        "capabilities": ["CAP_SYS_ADMIN"],
        "binds": ["/var/log:/var/log"],
        "sysctl": {"vm.swappiness": "10"},
        "net": "new",
        "hostname": "labelled",
        "readonly": true
    });
    let yaml = service(
        r#"    capabilities: [CAP_CHOWN]
    capabilities.add: [CAP_NET_ADMIN]
    binds: []
    binds.add: ["/a:/a"]
    sysctl: {}
    net: host
    hostname: ""
    readonly: false
"#,
    );
    let b = gen(&yaml, "svc", with_label(label));
    // `capabilities` set in the YAML: `.add` is ignored.
    assert_eq!(
        b.config["process"]["capabilities"]["effective"],
        strings(&["CAP_CHOWN"])
    );
    // `binds: []` wipes the label's binds, and `binds.add` is ignored.
    let destinations: Vec<&Value> = b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["destination"])
        .collect();
    assert_eq!(
        destinations,
        ["/dev", "/dev/pts", "/proc", "/sys", "/sys/fs/cgroup"]
    );
    assert!(b.config["linux"].get("sysctl").is_none());
    assert_eq!(
        b.config["linux"]["namespaces"],
        json!([{"type": "pid"}, {"type": "mount"}])
    );
    // An empty YAML string does not replace the label's (Go plain string).
    assert_eq!(b.config["hostname"], json!("labelled"));
    assert!(!b.bundle.readonly());
}

#[test]
fn label_capabilities_add_without_label_list() {
    let b = gen(
        &service("    capabilities.add: [CAP_NET_RAW]\n"),
        "svc",
        busybox(),
    );
    assert_eq!(
        b.config["process"]["capabilities"]["effective"],
        strings(&["CAP_NET_RAW"])
    );
}

#[test]
fn label_capabilities_and_add_are_concatenated_without_dedup() {
    let b = gen(
        &service("    capabilities.add: [CAP_SYS_ADMIN]\n"),
        "svc",
        with_label(json!({"capabilities": ["CAP_SYS_ADMIN"]})),
    );
    let caps = &b.config["process"]["capabilities"];
    assert_eq!(
        caps["effective"],
        strings(&["CAP_SYS_ADMIN", "CAP_SYS_ADMIN"])
    );
    assert_eq!(caps["bounding"], strings(&["CAP_SYS_ADMIN"]));
}

#[test]
fn label_in_yaml_form_is_accepted() {
    let mut config = busybox();
    config["Labels"] = json!({LABEL: "net: new\ncapabilities:\n  - CAP_NET_ADMIN\n"});
    let b = gen(&service(""), "svc", config);
    assert_eq!(
        b.config["process"]["capabilities"]["effective"],
        strings(&["CAP_NET_ADMIN"])
    );
    assert_eq!(
        b.config["linux"]["namespaces"][0],
        json!({"type": "network"})
    );
}

#[test]
fn invalid_labels_are_errors_naming_the_image() {
    for label in [
        r#"{"bogus": true}"#,
        r#"{"name": "x"}"#,
        r#"{"image": "x"}"#,
        r#"["CAP_SYS_ADMIN"]"#,
        r#"{"capabilities": "CAP_SYS_ADMIN"}"#,
        r#"{"devices": [{"path": "/dev/x", "mode": 666}]}"#,
        r#"{"cgroupns": "new"}"#,
        "{not json",
    ] {
        let mut config = busybox();
        config["Labels"] = json!({ LABEL: label });
        let err = try_gen(&service(""), "svc", config).unwrap_err();
        assert_eq!(err.container, "svc");
        assert_eq!(err.field, LABEL);
        match &err.kind {
            ErrorKind::InvalidLabel { image, .. } => assert_eq!(image, "alpine:3.20"),
            other => panic!("{label}: {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("alpine:3.20") && text.contains(LABEL),
            "{text}"
        );
    }
}

#[test]
fn empty_label_is_no_label() {
    let mut config = busybox();
    config["Labels"] = json!({ LABEL: "", "other": "x" });
    let b = gen(&service(""), "svc", config);
    assert_eq!(
        b.config["process"]["args"],
        strings(&["/bin/sh", "-c", "sleep 1"])
    );
}

#[test]
fn label_errors_at_build_time_name_the_field() {
    // Not a schema error, so the label parses; the build rejects it.
    let err = try_gen(
        &service(""),
        "svc",
        with_label(json!({"capabilities": ["CAP_FLY"]})),
    )
    .unwrap_err();
    assert_eq!(err.field, "capabilities[0]");
    assert!(err.from_label);
    assert_eq!(err.kind, ErrorKind::UnknownCapability("CAP_FLY".into()));
    assert_eq!(
        err.to_string(),
        "container `svc`: `capabilities[0]` (from the image's org.mobyproject.config label): \
         unknown capability `CAP_FLY`; `all` and `none` work only as the whole list"
    );
    // A lone `all` in the label followed by `.add` is no longer a lone
    // `all` (linuxkit fails the same way).
    let err = try_gen(
        &service("    capabilities.add: [CAP_CHOWN]\n"),
        "svc",
        with_label(json!({"capabilities": ["all"]})),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownCapability("all".into()));
    assert!(err.from_label);
    // The same list, with the bad name in the YAML's `.add` part. (The
    // validator rejects such YAML; the entry is built by hand.)
    let err = gen_labelled(
        &entry(|e| e.capabilities_add = Some(vec!["CAP_FLY".into()])),
        json!({"capabilities": ["CAP_CHOWN"]}),
    )
    .unwrap_err();
    assert_eq!(err.field, "capabilities[1]");
    assert!(!err.from_label);
    // A YAML value is never blamed on the label, and vice versa.
    let err = gen_labelled(
        &entry(|e| e.rlimits = Some(vec!["nofile,9,1".into()])),
        json!({"rlimits": ["nofile,1,2"]}),
    )
    .unwrap_err();
    assert_eq!(err.field, "rlimits[0]");
    assert!(!err.from_label);
    let err = try_gen(
        &service(""),
        "svc",
        with_label(json!({"devices": [{"path": "/dev/x", "type": "c"}]})),
    )
    .unwrap_err();
    assert_eq!(err.field, "devices[0].mode");
    assert!(err.from_label);
}

// ---------------------------------------------------------------------------
// args, env, cwd (B.7.1)

#[test]
fn command_env_and_cwd_precedence() {
    let mut img = busybox();
    img["WorkingDir"] = json!("/image");
    // Image only: Entrypoint ++ Cmd, image Env, WorkingDir.
    let b = gen(&service(""), "svc", img.clone());
    assert_eq!(
        b.config["process"]["args"],
        strings(&["/bin/sh", "-c", "sleep 1"])
    );
    assert_eq!(b.config["process"]["env"], strings(&["PATH=/usr/bin:/bin"]));
    assert_eq!(b.config["process"]["cwd"], json!("/image"));

    // Label over image.
    img["Labels"] =
        json!({LABEL: json!({"command": ["/label"], "env": ["L=1"], "cwd": "/label"}).to_string()});
    let b = gen(&service(""), "svc", img.clone());
    assert_eq!(b.config["process"]["args"], strings(&["/label"]));
    assert_eq!(b.config["process"]["env"], strings(&["L=1"]));
    assert_eq!(b.config["process"]["cwd"], json!("/label"));

    // YAML over label.
    let yaml = service("    command: [/yaml, x]\n    env: [Y=1]\n    cwd: /yaml\n");
    let b = gen(&yaml, "svc", img.clone());
    assert_eq!(b.config["process"]["args"], strings(&["/yaml", "x"]));
    assert_eq!(b.config["process"]["env"], strings(&["Y=1"]));
    assert_eq!(b.config["process"]["cwd"], json!("/yaml"));

    // An empty YAML env replaces (and so drops) the rest: env is omitted.
    // An empty cwd falls through to the next layer.
    let b = gen(&service("    env: []\n    cwd: \"\"\n"), "svc", img);
    assert!(b.config["process"].get("env").is_none());
    assert_eq!(b.config["process"]["cwd"], json!("/label"));
}

#[test]
fn entrypoint_and_cmd_are_concatenated_and_may_be_absent() {
    let b = gen(
        &service(""),
        "svc",
        json!({"Entrypoint": null, "Cmd": ["/bin/true"], "Env": null}),
    );
    assert_eq!(b.config["process"]["args"], strings(&["/bin/true"]));
    assert!(b.config["process"].get("env").is_none());
    let b = gen(&service(""), "svc", json!({}));
    assert!(b.config["process"].get("args").is_none());
    assert_eq!(b.config["process"]["cwd"], json!("/"));
}

#[test]
fn image_config_blob_reads_nulls_and_ignores_other_fields() {
    let c = ImageConfig::from_blob(
        br#"{"architecture":"arm64","config":{"Entrypoint":null,"Cmd":["x"],"Labels":null,"ExposedPorts":{"80/tcp":{}},"User":"1"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .unwrap();
    assert_eq!(c.cmd, vec!["x".to_owned()]);
    assert!(c.entrypoint.is_empty() && c.labels.is_empty() && c.label().is_none());
    assert_eq!(
        ImageConfig::from_blob(b"{}").unwrap(),
        ImageConfig::default()
    );
    assert!(ImageConfig::from_blob(b"[").is_err());
}

// ---------------------------------------------------------------------------
// Read-only root (A.5 readonly, B.6, B.7.4)

#[test]
fn readonly_root_adds_ro_and_binds_the_rootfs() {
    let b = gen(&service("    readonly: true\n"), "svc", busybox());
    assert_eq!(
        b.config["root"],
        json!({"path": "rootfs", "readonly": true})
    );
    assert_eq!(
        mount_at(&b.config, "/dev")["options"],
        strings(&["nosuid", "strictatime", "mode=755", "size=65536k", "ro"])
    );
    assert_eq!(
        mount_at(&b.config, "/sys")["options"],
        strings(&["nosuid", "noexec", "nodev", "ro"])
    );
    // Unchanged defaults.
    assert_eq!(mount_at(&b.config, "/proc"), &default_mounts()[2]);
    assert_eq!(mount_at(&b.config, "/sys/fs/cgroup"), &default_mounts()[4]);
    assert!(b.bundle.readonly());
    assert_eq!(
        b.bundle.root_dir("containers/services/svc"),
        "containers/services/svc/rootfs"
    );
    assert_eq!(
        b.runtime["mounts"],
        json!([{"destination": "/containers/services/svc/rootfs",
                "source": "/containers/services/svc/rootfs", "options": ["bind"]}])
    );
}

#[test]
fn readonly_from_label_picks_the_layout() {
    let b = gen(&service(""), "svc", with_label(json!({"readonly": true})));
    assert!(b.bundle.readonly());
    assert_eq!(b.runtime["mounts"][0]["options"], strings(&["bind"]));
}

#[test]
fn layout_mounts_point_at_a_shared_root() {
    // B.6 de-duplication: a later container with the same image uses the
    // first container's root.
    let first = "containers/onboot/000-a/lower";
    let overlay = layout_mounts("containers/onboot/001-b", first, false);
    assert_eq!(overlay.len(), 3);
    assert_eq!(
        overlay[2].options,
        vec![
            "lowerdir=/containers/onboot/000-a/lower".to_owned(),
            "upperdir=/containers/onboot/001-b/tmp/upper".to_owned(),
            "workdir=/containers/onboot/001-b/tmp/work".to_owned(),
        ]
    );
    assert_eq!(overlay[2].destination, "/containers/onboot/001-b/rootfs");
    let bind = layout_mounts(
        "/containers/onboot/001-b/",
        "/containers/onboot/000-a/rootfs",
        true,
    );
    assert_eq!(bind.len(), 1);
    assert_eq!(bind[0].source, "/containers/onboot/000-a/rootfs");
    assert_eq!(bind[0].destination, "/containers/onboot/001-b/rootfs");
    assert_eq!(bind[0].kind, "");
    assert_eq!(bind[0].options, vec!["bind".to_owned()]);
}

// ---------------------------------------------------------------------------
// binds, volumes, tmpfs, mounts (A.6.1, A.8, B.7.4)

const VOLUMES: &str = "volumes:\n  - name: vola\n  - name: volro\n    readonly: true\n";

#[test]
fn binds_to_volumes_are_rewritten_rw_and_ro() {
    let yaml = format!(
        "{}{VOLUMES}",
        service(
            r#"    binds:
      - vola:/data
      - volro:/config:ro
      - /host:/host
    binds.add:
      - vola:/extra:rw,noexec
"#
        )
    );
    let b = gen(&yaml, "svc", busybox());
    assert_eq!(
        mount_at(&b.config, "/data"),
        &json!({"destination": "/data", "type": "bind",
                "source": "/containers/volumes/vola/merged",
                "options": ["rw", "rbind", "rshared"]})
    );
    assert_eq!(
        mount_at(&b.config, "/config"),
        &json!({"destination": "/config", "type": "bind",
                "source": "/containers/volumes/volro/merged",
                "options": ["ro", "rbind"]})
    );
    assert_eq!(
        mount_at(&b.config, "/host"),
        &json!({"destination": "/host", "type": "bind", "source": "/host",
                "options": ["rw", "rbind", "rshared"]})
    );
    // binds.add is ignored because binds is set.
    assert!(!b.config_text.contains("/extra"));

    // binds.add alone, appended to the label's binds, is rewritten too.
    let yaml = format!(
        "{}{VOLUMES}",
        service("    binds.add: [\"vola:/extra:rw,noexec\"]\n")
    );
    let b = gen(&yaml, "svc", with_label(json!({"binds": ["/l:/l"]})));
    assert_eq!(
        mount_at(&b.config, "/extra"),
        &json!({"destination": "/extra", "type": "bind",
                "source": "/containers/volumes/vola/merged",
                "options": ["rw", "noexec", "rbind"]})
    );
    assert_eq!(mount_at(&b.config, "/l")["source"], json!("/l"));
}

#[test]
fn mounts_of_type_bind_to_volumes_are_rewritten() {
    // linuxkit loses this rewrite (reference F.3); kiln applies it.
    let yaml = format!(
        "{}{VOLUMES}",
        service("    mounts:\n      - {type: bind, source: volro, destination: /v, options: [rbind, ro]}\n")
    );
    let b = gen(&yaml, "svc", busybox());
    assert_eq!(
        mount_at(&b.config, "/v"),
        &json!({"destination": "/v", "type": "bind",
                "source": "/containers/volumes/volro/merged", "options": ["rbind", "ro"]})
    );
}

fn entry(f: impl FnOnce(&mut ImageEntry)) -> ImageEntry {
    let mut e = ImageEntry {
        name: "svc".into(),
        image: "alpine:3.20".into(),
        ..ImageEntry::default()
    };
    f(&mut e);
    e
}

fn gen_entry(e: &ImageEntry, volumes: &[(&str, bool)]) -> Result<Bundle, BundleError> {
    let ids = IdTable::default();
    let volumes: HashMap<String, bool> =
        volumes.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect();
    generate(
        e,
        &image(busybox()),
        &Context {
            ids: &ids,
            volumes: &volumes,
        },
    )
}

fn gen_labelled(e: &ImageEntry, label: Value) -> Result<Bundle, BundleError> {
    let ids = IdTable::default();
    let volumes = HashMap::new();
    let ctx = Context {
        ids: &ids,
        volumes: &volumes,
    };
    generate(e, &image(with_label(label)), &ctx)
}

#[test]
fn volume_errors_name_the_container_and_bind() {
    let vols = [("vola", false), ("volro", true)];
    let err = gen_entry(
        &entry(|e| e.binds = Some(vec!["/a:/a".into(), "nope:/x".into()])),
        &vols,
    )
    .unwrap_err();
    assert_eq!(err.container, "svc");
    assert_eq!(err.field, "binds[1]");
    assert_eq!(err.kind, ErrorKind::UnknownVolume("nope".into()));

    for bind in ["volro:/x", "volro:/x:rw", "volro:/x:ro,noexec"] {
        let err = gen_entry(&entry(|e| e.binds_add = Some(vec![bind.into()])), &vols).unwrap_err();
        assert_eq!(err.field, "binds.add[0]");
        assert_eq!(err.kind, ErrorKind::ReadonlyVolume("volro".into()));
        assert!(err.to_string().contains("read-only"), "{err}");
    }

    let mount = kiln_shared::model::Mount {
        kind: Some("bind".into()),
        source: Some("volro".into()),
        destination: Some("/x".into()),
        options: Some(vec!["rw".into(), "ro".into()]),
        ..Default::default()
    };
    let err = gen_entry(&entry(|e| e.mounts = Some(vec![mount])), &vols).unwrap_err();
    assert_eq!(err.field, "mounts[0].source");
    assert_eq!(err.kind, ErrorKind::ReadonlyVolume("volro".into()));
}

#[test]
fn tmpfs_entries_with_and_without_options() {
    let b = gen(
        &service("    tmpfs: [\"/run:rw,size=1m\", /tmp, \"/dev:size=1k\"]\n"),
        "svc",
        busybox(),
    );
    assert_eq!(
        mount_at(&b.config, "/run"),
        &json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                "options": ["rw", "size=1m"]})
    );
    // No options part: the options are omitted.
    assert_eq!(
        mount_at(&b.config, "/tmp"),
        &json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    );
    // A tmpfs replaces the default at the same destination.
    assert_eq!(
        mount_at(&b.config, "/dev"),
        &json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["size=1k"]})
    );
    let err = gen_entry(&entry(|e| e.tmpfs = Some(vec!["/a:b:c".into()])), &[]).unwrap_err();
    assert_eq!(err.field, "tmpfs[0]");
    assert!(matches!(err.kind, ErrorKind::Tmpfs { .. }));
}

#[test]
fn mounts_are_sorted_by_destination_and_later_stages_win() {
    let yaml = service(
        r#"    tmpfs: [/z, /dev/shm]
    binds: ["/src:/z", "/a:/a", "/log:/var/log:ro"]
    mounts:
      - {source: mqueue}
      - {type: proc}
      - {destination: /dev}
      - {type: cgroup, options: [rw]}
      - {type: bind, source: /b, destination: /dev/pts, options: [rbind]}
      - {type: tmpfs, destination: /var/log}
"#,
    );
    let b = gen(&yaml, "svc", busybox());
    let destinations: Vec<&str> = b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    // Byte order: `/dev` before `/dev/pts`, `/sys` before `/sys/fs/cgroup`.
    assert_eq!(
        destinations,
        [
            "/a",
            "/dev",
            "/dev/mqueue",
            "/dev/pts",
            "/dev/shm",
            "/proc",
            "/sys",
            "/sys/fs/cgroup",
            "/var/log",
            "/z"
        ]
    );
    // binds beat tmpfs; mounts beat binds and defaults.
    assert_eq!(
        mount_at(&b.config, "/z"),
        &json!({"destination": "/z", "type": "bind", "source": "/src",
                "options": ["rw", "rbind", "rshared"]})
    );
    assert_eq!(
        mount_at(&b.config, "/var/log"),
        &json!({"destination": "/var/log", "type": "tmpfs", "source": "tmpfs"})
    );
    // Type from a known source, destination from the type, source from the
    // type; options pass through unchanged.
    assert_eq!(
        mount_at(&b.config, "/dev/mqueue"),
        &json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"})
    );
    assert_eq!(
        mount_at(&b.config, "/proc"),
        &json!({"destination": "/proc", "type": "proc", "source": "proc"})
    );
    assert_eq!(
        mount_at(&b.config, "/dev"),
        &json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs"})
    );
    assert_eq!(
        mount_at(&b.config, "/sys/fs/cgroup"),
        &json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["rw"]})
    );
    assert_eq!(
        mount_at(&b.config, "/dev/pts"),
        &json!({"destination": "/dev/pts", "type": "bind", "source": "/b",
                "options": ["rbind"]})
    );
}

#[test]
fn id_mappings_of_mounts_are_kept() {
    // linuxkit rebuilds config.json mounts from destination, type, source
    // and options, and its decode drops hostID/containerID; kiln keeps the
    // whole mapping, in config.json and runtime.json alike.
    let yaml = service(
        r#"    mounts:
      - type: bind
        source: /data
        destination: /data
        options: [rbind]
        uidmappings: [{containerID: 0, hostID: 1000, size: 10}]
    runtime:
      mounts:
        - type: bind
          source: /x
          destination: /y
          gidmappings: [{containerID: 1, hostID: 2, size: 3}]
"#,
    );
    let b = gen(&yaml, "svc", busybox());
    assert_eq!(
        mount_at(&b.config, "/data"),
        &json!({"destination": "/data", "type": "bind", "source": "/data", "options": ["rbind"],
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}]})
    );
    assert_eq!(
        b.runtime["mounts"][3],
        json!({"destination": "/y", "type": "bind", "source": "/x",
               "gidMappings": [{"containerID": 1, "hostID": 2, "size": 3}]})
    );
}

#[test]
fn mount_defaulting_errors() {
    let m = |kind: Option<&str>, dst: Option<&str>| kiln_shared::model::Mount {
        kind: kind.map(Into::into),
        destination: dst.map(Into::into),
        ..Default::default()
    };
    let err = gen_entry(&entry(|e| e.mounts = Some(vec![m(None, Some("/x"))])), &[]).unwrap_err();
    assert_eq!(err.field, "mounts[0].type");
    assert_eq!(
        err.kind,
        ErrorKind::Mount(kiln_shared::mounts::MountError::MissingType("/x".into()))
    );
    let err = gen_entry(
        &entry(|e| e.mounts = Some(vec![m(Some("tmpfs"), None)])),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.field, "mounts[0].destination");
    assert_eq!(
        err.kind,
        ErrorKind::Mount(kiln_shared::mounts::MountError::MissingDestination(
            "tmpfs".into()
        ))
    );
    let err = gen_entry(&entry(|e| e.binds = Some(vec!["/only".into()])), &[]).unwrap_err();
    assert_eq!(err.field, "binds[0]");
    assert!(matches!(err.kind, ErrorKind::Bind { .. }));
}

// ---------------------------------------------------------------------------
// devices and resources (A.6.2, A.6.3, B.7.6)

#[test]
fn devices_make_nodes_and_cgroup_rules_after_resource_rules() {
    let yaml = service(
        r#"    resources:
      devices: [{allow: false, access: rwm}]
      memory: {limit: 1048576}
    devices:
      - {path: all, type: b}
      - {path: /dev/fuse, type: c, major: 10, minor: 229, mode: "0666"}
      - {path: /dev/null, type: c, major: 1, minor: 3, mode: "0600"}
"#,
    );
    let b = gen(&yaml, "svc", busybox());
    assert_eq!(
        b.config["linux"]["resources"],
        json!({
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "b", "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
            ],
            "memory": {"limit": 1048576}
        })
    );
    // fileMode is the decimal value of the octal mode; `path: all` makes
    // no node.
    assert_eq!(
        b.config["linux"]["devices"],
        json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438},
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 384}
        ])
    );
}

#[test]
fn device_mode_must_be_octal() {
    for mode in [None, Some(""), Some("0668"), Some("rw")] {
        let device = kiln_shared::model::Device {
            path: Some("/dev/x".into()),
            kind: Some("c".into()),
            major: Some(1),
            minor: Some(1),
            mode: mode.map(Into::into),
        };
        let err = gen_entry(&entry(|e| e.devices = Some(vec![device])), &[]).unwrap_err();
        assert_eq!(err.field, "devices[0].mode");
        assert_eq!(err.kind, ErrorKind::DeviceMode(mode.unwrap_or("").into()));
    }
}

#[test]
fn resource_keys_linuxkit_drops_are_applied() {
    let yaml = service(
        r#"    resources:
      memory: {limit: 100, reservation: 50, swap: 200, kernel: 10, kernelTCP: 5, swappiness: 60, disableOOMKiller: true}
      cpu: {shares: 512, quota: 1000, period: 2000, realtimeRuntime: 10, realtimePeriod: 20, cpus: "0-1", mems: "0"}
      pids: {}
      blockio:
        weight: 100
        leafWeight: 50
        weightDevice: [{major: 8, minor: 0, weight: 10}]
        throttleReadBpsDevice: [{major: 8, minor: 0, rate: 1000}]
        throttleWriteIOPSDevice: [{major: 8, minor: 16, rate: 10}]
      hugepageLimits: [{pageSize: 2097152, limit: 4194304}]
      network: {classID: 7, priorities: [{name: eth0, priority: 3}]}
"#,
    );
    let b = gen(&yaml, "svc", busybox());
    assert_eq!(
        b.config["linux"]["resources"],
        json!({
            "memory": {"limit": 100, "reservation": 50, "swap": 200, "kernel": 10,
                       "kernelTCP": 5, "swappiness": 60, "disableOOMKiller": true},
            "cpu": {"shares": 512, "quota": 1000, "period": 2000, "realtimeRuntime": 10,
                    "realtimePeriod": 20, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 0},
            "blockIO": {
                "weight": 100, "leafWeight": 50,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 10}]
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 3}]}
        })
    );
    assert_in_order(
        &b.config_text,
        &[
            "\"memory\"",
            "\"cpu\"",
            "\"pids\"",
            "\"blockIO\"",
            "\"hugepageLimits\"",
            "\"network\"",
        ],
    );
}

// ---------------------------------------------------------------------------
// rlimits (A.6.4)

#[test]
fn rlimits_in_input_order_with_unlimited() {
    let b = gen(
        &service(
            "    rlimits: [\"nofile,1024,unlimited\", \" RLIMIT_core , 0, 0\", \"Nproc,10,20\"]\n",
        ),
        "svc",
        busybox(),
    );
    assert_eq!(
        b.config["process"]["rlimits"],
        json!([
            {"type": "RLIMIT_NOFILE", "hard": 18446744073709551615u64, "soft": 1024},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            {"type": "RLIMIT_NPROC", "hard": 20, "soft": 10}
        ])
    );
    assert!(b.config_text.contains("\"hard\": 18446744073709551615,"));
    for bad in ["nofile,1", "bogus,1,1", "nofile,x,1"] {
        let err = gen_entry(&entry(|e| e.rlimits = Some(vec![bad.into()])), &[]).unwrap_err();
        assert_eq!(err.field, "rlimits[0]");
        assert!(matches!(err.kind, ErrorKind::Rlimit { .. }), "{bad}");
    }
}

// ---------------------------------------------------------------------------
// capabilities (B.7.2)

#[test]
fn capabilities_all_expand_in_kernel_order() {
    let b = gen(&service("    capabilities: [ALL]\n"), "svc", busybox());
    let caps = &b.config["process"]["capabilities"];
    let all: Vec<&str> = kiln_shared::caps::CAPABILITIES.to_vec();
    assert_eq!(all.len(), 41);
    assert_eq!(caps["effective"], strings(&all));
    assert_eq!(caps["effective"][0], json!("CAP_CHOWN"));
    assert_eq!(caps["effective"][40], json!("CAP_CHECKPOINT_RESTORE"));
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(caps["bounding"], strings(&sorted));
    assert_eq!(caps["inheritable"], strings(&sorted));
    assert_eq!(caps["permitted"], strings(&sorted));
    assert!(caps.get("ambient").is_none());
}

#[test]
fn capabilities_none_is_an_empty_object() {
    let b = gen(
        &service("    capabilities: [none]\n"),
        "svc",
        with_label(json!({"capabilities": ["CAP_SYS_ADMIN"]})),
    );
    assert_eq!(b.config["process"]["capabilities"], json!({}));
    assert!(b.config_text.contains("\"capabilities\": {}"));
}

#[test]
fn ambient_joins_the_bounding_set_and_effective_keeps_order() {
    let b = gen(
        &service("    capabilities: [CAP_SYS_ADMIN, CAP_CHOWN, CAP_SYS_ADMIN]\n    ambient: [CAP_NET_BIND_SERVICE]\n"),
        "svc",
        busybox(),
    );
    assert_eq!(
        b.config["process"]["capabilities"],
        json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
            "effective": ["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_SYS_ADMIN"],
            "inheritable": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
            "ambient": ["CAP_NET_BIND_SERVICE"]
        })
    );
    let b = gen(&service("    ambient: [all]\n"), "svc", busybox());
    assert_eq!(
        b.config["process"]["capabilities"]["ambient"]
            .as_array()
            .unwrap()
            .len(),
        41
    );
    assert!(b.config["process"]["capabilities"]
        .get("effective")
        .is_none());
}

#[test]
fn unknown_capabilities_are_errors() {
    let err = gen_entry(
        &entry(|e| e.ambient = Some(vec!["CAP_CHOWN".into(), "cap_kill".into()])),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.field, "ambient[1]");
    assert_eq!(err.kind, ErrorKind::UnknownCapability("cap_kill".into()));
    let err = gen_entry(
        &entry(|e| e.capabilities = Some(vec!["all".into(), "CAP_CHOWN".into()])),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.field, "capabilities[0]");
}

// ---------------------------------------------------------------------------
// namespaces (B.7.3)

fn namespaces(body: &str) -> Value {
    gen(&service(body), "svc", busybox()).config["linux"]["namespaces"].clone()
}

#[test]
fn namespace_defaults_and_keywords() {
    assert_eq!(namespaces(""), json!([{"type": "pid"}, {"type": "mount"}]));
    assert_eq!(
        namespaces("    net: new\n"),
        json!([{"type": "network"}, {"type": "pid"}, {"type": "mount"}])
    );
    assert_eq!(
        namespaces("    net: none\n"),
        json!([{"type": "network"}, {"type": "pid"}, {"type": "mount"}])
    );
    assert_eq!(namespaces("    pid: host\n"), json!([{"type": "mount"}]));
    assert_eq!(
        namespaces("    pid: root\n    net: host\n"),
        json!([{"type": "mount"}])
    );
    // For ipc and uts `none` is a path.
    assert_eq!(
        namespaces("    ipc: none\n    uts: new\n    pid: new\n"),
        json!([{"type": "ipc", "path": "none"}, {"type": "uts"}, {"type": "pid"}, {"type": "mount"}])
    );
}

#[test]
fn namespaces_in_linuxkit_order_with_paths() {
    assert_eq!(
        namespaces(
            "    userns: new\n    pid: /proc/1/ns/pid\n    uts: /run/ns/uts\n    ipc: new\n    net: /run/netns/x\n"
        ),
        json!([
            {"type": "network", "path": "/run/netns/x"},
            {"type": "ipc"},
            {"type": "uts", "path": "/run/ns/uts"},
            {"type": "pid", "path": "/proc/1/ns/pid"},
            {"type": "user"},
            {"type": "mount"}
        ])
    );
}

// ---------------------------------------------------------------------------
// uid / gid (A.5.1)

#[test]
fn symbolic_uid_and_gid_use_container_numbers() {
    let yaml = r#"onboot:
  - name: first
    image: alpine:3.20
  - name: second
    image: alpine:3.20
onshutdown:
  - name: down
    image: alpine:3.20
services:
  - name: svc
    image: alpine:3.20
    uid: second
    gid: down
    additionalGids: [first, 7, root, svc]
"#;
    let b = gen(yaml, "svc", busybox());
    assert_eq!(
        b.config["process"]["user"],
        json!({"uid": 101, "gid": 102, "additionalGids": [100, 7, 0, 103]})
    );
    // From the label, too.
    let b = gen(yaml, "first", with_label(json!({"uid": "svc", "gid": 5})));
    assert_eq!(b.config["process"]["user"], json!({"uid": 103, "gid": 5}));
}

#[test]
fn unknown_symbolic_ids_are_errors() {
    let err = gen_entry(&entry(|e| e.gid = Some(IdRef::Name("ghost".into()))), &[]).unwrap_err();
    assert_eq!(err.field, "gid");
    assert_eq!(
        err.kind,
        ErrorKind::Id(IdError::UnknownName("ghost".into()))
    );
    let err = gen_entry(
        &entry(|e| e.additional_gids = Some(vec![IdRef::Num(1), IdRef::Num(-1)])),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.field, "additionalGids[1]");
    assert!(err
        .to_string()
        .starts_with("container `svc`: `additionalGids[1]`: "));
}

// ---------------------------------------------------------------------------
// runtime.json (A.6.5, B.7.8)

#[test]
fn runtime_object_follows_the_layout_mounts() {
    let yaml = service(
        r#"    runtime:
      cgroups: [systemreserved]
      mounts:
        - {type: bind, source: /var/lib, destination: rootfs/var/lib, options: [rbind]}
        - {destination: /mnt}
      mkdir: [/var/lib/docker]
      interfaces:
        - {name: eth1, add: veth, peer: veth1}
        - {name: wg0, add: wireguard, createInRoot: true}
      bindNS: {net: /run/netns/svc}
      namespace: services.kiln
"#,
    );
    let b = gen(&yaml, "svc", busybox());
    let r = &b.runtime;
    assert_eq!(r["cgroups"], json!(["systemreserved"]));
    let mounts = r["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 5);
    assert_eq!(mounts[0]["type"], json!("tmpfs"));
    assert_eq!(mounts[2]["type"], json!("overlay"));
    // Passed through as written: no config.json defaulting.
    assert_eq!(
        mounts[3],
        json!({"destination": "rootfs/var/lib", "type": "bind", "source": "/var/lib",
               "options": ["rbind"]})
    );
    assert_eq!(mounts[4], json!({"destination": "/mnt"}));
    assert_eq!(r["mkdir"], json!(["/var/lib/docker"]));
    assert_eq!(
        r["interfaces"],
        json!([
            {"name": "eth1", "add": "veth", "peer": "veth1", "createInRoot": false},
            {"name": "wg0", "add": "wireguard", "createInRoot": true}
        ])
    );
    assert_eq!(
        r["bindNS"],
        json!({"cgroup": "", "ipc": "", "mnt": "", "net": "/run/netns/svc",
               "pid": "", "user": "", "uts": ""})
    );
    assert_eq!(r["namespace"], json!("services.kiln"));
    assert_in_order(
        &b.runtime_text,
        &[
            "\"cgroups\"",
            "\"mounts\"",
            "\"mkdir\"",
            "\"interfaces\"",
            "\"bindNS\"",
            "\"namespace\"",
        ],
    );
    assert_in_order(
        &b.runtime_text,
        &["\"name\"", "\"add\"", "\"peer\"", "\"createInRoot\""],
    );
    // runtime settings never reach config.json.
    assert!(!b.config_text.contains("systemreserved"));
}

// ---------------------------------------------------------------------------
// Robustness

#[test]
fn hostile_labels_never_panic() {
    let deep = "[".repeat(200) + &"]".repeat(200);
    let labels = [
        String::new(),
        " ".into(),
        "null".into(),
        "42".into(),
        "{\"uid\": 99999999999999999999999}".into(),
        "{\"oomScoreAdj\": 1.5}".into(),
        "{\"capabilities\": [.nan]}".into(),
        format!("{{\"command\": {deep}}}"),
        "a: &x [*x]".into(),
        "{\"sysctl\": {\"a\": null}}".into(),
        "{\"runtime\": {\"bindNS\": {\"net\": 1}}}".into(),
        "{1: 2}".into(),
        "---\n{}\n---\n[".into(),
        "\u{0}".into(),
    ];
    for label in labels {
        let mut config = busybox();
        config["Labels"] = json!({ LABEL: label });
        let _ = try_gen(&service(""), "svc", config);
    }
    // The public pieces on their own.
    assert!(bundle::parse_label("{\"readonly\": \"yes\"}").is_err());
    let merged = bundle::merge(&ImageEntry::default(), &ImageEntry::default());
    assert_eq!(merged.runtime, None);
}
