//! The init image's runtime.json reader, run with the fixture's own busybox
//! awk on the host.

use std::process::Command;

use kiln_e2e::debs::DebCache;
use kiln_e2e::fixtures::{INIT_SCRIPT, RUNTIME_AWK};

fn busybox() -> std::path::PathBuf {
    let package = DebCache::from_env()
        .fetch("busybox-static")
        .unwrap_or_else(|e| panic!("{e:#}"));
    package.tree.join("bin/busybox")
}

/// Runs runtime.awk over `json`; returns (exit ok, stdout with \037 shown as `|`).
fn records(json: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("runtime.awk"), RUNTIME_AWK).unwrap();
    std::fs::write(dir.path().join("runtime.json"), json).unwrap();
    let out = Command::new(busybox())
        .arg("awk")
        .arg("-f")
        .arg(dir.path().join("runtime.awk"))
        .arg(dir.path().join("runtime.json"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout)
            .unwrap()
            .replace('\u{1f}', "|"),
    )
}

#[test]
fn linuxkit_runtime_json_becomes_records() {
    // The shape linuxkit writes for a read-write onboot container: 4-space
    // indentation, every key present, Go's \u0026-style escapes.
    let json = r#"{
    "cgroups": [
        "kiln/demo"
    ],
    "mounts": [
        {
            "destination": "/containers/onboot/000-demo/tmp",
            "type": "tmpfs",
            "source": "tmpfs"
        },
        {
            "destination": "/containers/onboot/000-demo/tmp",
            "options": [
                "remount",
                "private"
            ]
        },
        {
            "destination": "/containers/onboot/000-demo/rootfs",
            "type": "overlay",
            "source": "overlay",
            "options": [
                "lowerdir=/containers/onboot/000-demo/lower",
                "upperdir=/containers/onboot/000-demo/tmp/upper",
                "workdir=/containers/onboot/000-demo/tmp/work"
            ]
        }
    ],
    "mkdir": [
        "/run/a \u0026 b",
        "var/lib/demo"
    ],
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
    let (ok, out) = records(json);
    assert!(ok);
    assert_eq!(
        out,
        "cgroup|kiln/demo\n\
         mount|/containers/onboot/000-demo/tmp|tmpfs|tmpfs|\n\
         mount|/containers/onboot/000-demo/tmp|||remount,private\n\
         mount|/containers/onboot/000-demo/rootfs|overlay|overlay|\
         lowerdir=/containers/onboot/000-demo/lower,\
         upperdir=/containers/onboot/000-demo/tmp/upper,\
         workdir=/containers/onboot/000-demo/tmp/work\n\
         mkdir|/run/a & b\n\
         mkdir|var/lib/demo\n"
    );
}

#[test]
fn compact_json_and_unsupported_keys() {
    let json = r#"{"mounts":[{"destination":"/x","type":"bind","source":"/y","options":["rbind","ro"]}],"interfaces":[{"name":"eth1","peer":"v1"}],"bindNS":{"net":"/run/netns/a"},"other":[1,true,null,{"k":"v"}]}"#;
    let (ok, out) = records(json);
    assert!(ok);
    assert_eq!(
        out,
        "mount|/x|bind|/y|rbind,ro\nunsupported|interfaces\nunsupported|bindNS\n"
    );
}

#[test]
fn empty_and_malformed_input() {
    assert_eq!(records("{}"), (true, String::new()));
    assert!(!records(r#"{"mkdir": ["/a""#).0);
    assert!(!records(r#"{"mkdir" ["/a"]}"#).0);
}

#[test]
fn init_script_parses_with_busybox_sh() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("init"), INIT_SCRIPT).unwrap();
    let out = Command::new(busybox())
        .args(["sh", "-n"])
        .arg(dir.path().join("init"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
