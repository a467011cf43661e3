//! Layout conformance: what `kiln build` writes around the image contents
//! (boot files, container bundles, volumes, files) is listed entry by entry
//! and compared with `expected/layout.txt`, which follows reference Part B;
//! and each container's `config.json`/`runtime.json` is checked field by
//! field. Set `UPDATE_EXPECT=1` to rewrite the listing after a deliberate
//! change, then review the diff against the reference.

mod cache_common;

use std::io::Read;
use std::path::Path;

use cache_common::{fixtures, kiln_in, reference, registry_with};
use serde_json::{json, Value};

fn spec(r: &dyn Fn(&kiln_e2e::fixtures::Fixture) -> String) -> String {
    let set = fixtures();
    format!(
        "kernel:
  image: {kernel}
  cmdline: console=ttyS0
init:
  - {init}
  - {runc}
volumes:
  - name: data
  - name: conf
    readonly: true
onboot:
  - name: plain
    image: {plain}
    capabilities: [all]
    net: new
    pid: host
    tmpfs: [\"/scratch:size=1m\"]
    rlimits: [\"nofile,1024,2048\"]
    uid: web
    gid: web
  - name: label
    image: {label}
    capabilities.add: [CAP_SYS_ADMIN]
services:
  - name: web
    image: {service}
    capabilities: [none]
    binds: [\"data:/data\", \"conf:/etc/conf:ro\"]
    devices:
      - path: /dev/null
        type: c
        major: 1
        minor: 3
        mode: \"0666\"
  - name: again
    image: {plain}
    readonly: true
files:
  - path: etc/kiln/motd
    contents: hello
    mode: \"0644\"
    uid: web
  - path: etc/linuxkit.yml
    metadata: yaml
",
        kernel = r(&set.kernel),
        init = r(&set.init),
        runc = r(&set.runc),
        plain = r(&set.plain),
        label = r(&set.label),
        service = r(&set.service),
    )
}

struct Listed {
    path: String,
    line: String,
    data: Vec<u8>,
}

/// Every entry of the tar that kiln itself lays out: everything except
/// the contents of images (their files under a container's root, the init
/// images' files and the kernel's modules).
fn skeleton(tar_bytes: &[u8]) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let location = entry
            .pax_extensions()
            .unwrap()
            .into_iter()
            .flatten()
            .flatten()
            .find(|x| x.key() == Ok("LINUXKIT.location"))
            .map(|x| x.value().unwrap().to_owned())
            .unwrap_or_default();
        let image_content = location.starts_with("init")
            || (location == "kernel" && !path.starts_with("boot"))
            || (["lower/", "rootfs/"].iter().any(|d| {
                path.split_once(d)
                    .is_some_and(|(head, _)| head.starts_with("containers/"))
            }));
        if image_content {
            continue;
        }
        let h = entry.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => "dir",
            tar::EntryType::Regular => "file",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            other => panic!("unexpected {other:?} at {path}"),
        };
        let link = h
            .link_name()
            .unwrap()
            .map(|l| format!(" -> {}", l.display()))
            .unwrap_or_default();
        // Image-made files (the kernel) vary with Debian's package; sizes are
        // listed for what kiln writes.
        // The SBOM names the registry's port and kiln's version.
        let size = if path == "boot/kernel" || path == "sbom.spdx.json" {
            "-".to_owned()
        } else {
            h.size().unwrap().to_string()
        };
        let line = format!(
            "{kind} {path} {:04o} {}:{} {size} [{location}]{link}",
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
        );
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push(Listed { path, line, data });
    }
    out
}

fn build_tar() -> Vec<u8> {
    let set = fixtures();
    let registry = registry_with(&[
        &set.kernel,
        &set.init,
        &set.runc,
        &set.plain,
        &set.label,
        &set.service,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let text = spec(&|f| reference(&registry, f));
    std::fs::write(dir.path().join("layout.yml"), &text).unwrap();
    let out = kiln_in(dir.path())
        .args(["build", "-o", "layout.tar", "layout.yml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.path().join("layout.tar")).unwrap()
}

#[test]
fn layout_matches_the_reference_listing() {
    let tar_bytes = build_tar();
    // Stream order matters (kernel, init, volumes, onboot, onshutdown,
    // services, files), so the listing keeps tar order.
    let lines: Vec<String> = skeleton(&tar_bytes).into_iter().map(|l| l.line).collect();
    let got = lines.join("\n") + "\n";
    let got = regex_port(&got);
    let expected_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected/layout.txt");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(expected_path.parent().unwrap()).unwrap();
        std::fs::write(&expected_path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if got != expected {
        let diff: Vec<String> = got
            .lines()
            .zip(expected.lines().chain(std::iter::repeat("<missing>")))
            .filter(|(g, e)| g != e)
            .take(10)
            .map(|(g, e)| format!("  got:      {g}\n  expected: {e}"))
            .collect();
        panic!(
            "layout differs from {} ({} vs {} lines):\n{}",
            expected_path.display(),
            got.lines().count(),
            expected.lines().count(),
            diff.join("\n")
        );
    }
}

/// Replaces `127.0.0.1:<port>` with `REGISTRY`.
fn regex_port(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i]);
        out.push_str("REGISTRY");
        let after = &rest[i + "127.0.0.1:".len()..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn config(listing: &[Listed], dir: &str, file: &str) -> Value {
    let path = format!("{dir}/{file}");
    let item = listing
        .iter()
        .find(|l| l.path == path)
        .unwrap_or_else(|| panic!("no {path}"));
    serde_json::from_slice(&item.data).unwrap()
}

fn destinations(config: &Value) -> Vec<(String, Value)> {
    config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["destination"].as_str().unwrap().to_owned(), m.clone()))
        .collect()
}

#[test]
fn container_configs_follow_config_to_oci() {
    let listing = skeleton(&build_tar());
    let caps = |c: &Value, set: &str| c["process"]["capabilities"][set].clone();

    // onboot[0]: plain image, no label: args are Entrypoint + Cmd; `all`
    // capabilities; net new, pid host; tmpfs; rlimits; symbolic uid/gid
    // (onboot plain=100, label=101, services web=102, again=103).
    let plain = config(&listing, "containers/onboot/000-plain", "config.json");
    assert_eq!(plain["process"]["args"][0], "/bin/sh");
    assert_eq!(plain["process"]["user"], json!({"uid": 102, "gid": 102}));
    assert_eq!(caps(&plain, "effective").as_array().unwrap().len(), 41);
    assert_eq!(caps(&plain, "bounding"), caps(&plain, "permitted"));
    assert_eq!(
        plain["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}])
    );
    let ns: Vec<&str> = plain["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"network") && ns.contains(&"mount") && !ns.contains(&"pid"));
    let mounts = destinations(&plain);
    let scratch = &mounts.iter().find(|(d, _)| d == "/scratch").unwrap().1;
    assert_eq!(
        scratch,
        &json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
    );
    let sorted: Vec<&String> = mounts.iter().map(|(d, _)| d).collect();
    let mut resorted = sorted.clone();
    resorted.sort();
    assert_eq!(sorted, resorted, "mounts are sorted by destination");
    assert_eq!(plain["root"]["path"], "rootfs");
    assert!(plain["root"].get("readonly").is_none());

    // onboot[1]: the label supplies command, capabilities, binds and
    // readonly; `capabilities.add` appends to the label's list.
    let label = config(&listing, "containers/onboot/001-label", "config.json");
    assert_eq!(label["root"]["readonly"], true);
    assert!(caps(&label, "effective")
        .as_array()
        .unwrap()
        .contains(&json!("CAP_SYS_ADMIN")));
    let run_bind = destinations(&label)
        .into_iter()
        .find(|(d, _)| d == "/run")
        .unwrap()
        .1;
    assert_eq!(run_bind["type"], "bind");
    let runtime = config(&listing, "containers/onboot/001-label", "runtime.json");
    assert_eq!(runtime["mkdir"], json!(["/run/kiln-label"]));
    // Read-only layout: the root is bound onto itself.
    assert_eq!(runtime["mounts"][0]["options"], json!(["bind"]));

    // services[0]: `none` capabilities; binds of a read-write and a
    // read-only volume rewritten to the volume's merged dir; a device.
    let web = config(&listing, "containers/services/web", "config.json");
    assert_eq!(web["process"]["capabilities"], json!({}));
    let mounts = destinations(&web);
    let data = &mounts.iter().find(|(d, _)| d == "/data").unwrap().1;
    assert_eq!(data["source"], "/containers/volumes/data/merged");
    assert_eq!(data["options"], json!(["rw", "rbind", "rshared"]));
    let conf = &mounts.iter().find(|(d, _)| d == "/etc/conf").unwrap().1;
    assert_eq!(conf["source"], "/containers/volumes/conf/merged");
    assert_eq!(conf["options"], json!(["ro", "rbind"]));
    assert_eq!(
        web["linux"]["devices"],
        json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438}])
    );
    let overlay = config(&listing, "containers/services/web", "runtime.json");
    assert_eq!(overlay["mounts"][0]["type"], "tmpfs");
    assert_eq!(overlay["mounts"][2]["type"], "overlay");

    // services[1]: same image as onboot[0], so it is not extracted again;
    // its runtime.json points at the first copy.
    let again = config(&listing, "containers/services/again", "runtime.json");
    assert_eq!(
        again["mounts"][0]["source"],
        "/containers/onboot/000-plain/lower"
    );
    assert!(!listing
        .iter()
        .any(|l| l.path.starts_with("containers/services/again/rootfs/")));
}
