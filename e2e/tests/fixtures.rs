//! The fixture builder: reproducible digests and the expected content of
//! each image.

mod common;

use std::collections::BTreeMap;

use kiln_e2e::fixtures::{FixtureSet, MOBY_LABEL};

fn digests(set: &FixtureSet) -> BTreeMap<String, Vec<String>> {
    set.all()
        .iter()
        .map(|f| {
            let mut all = vec![f.digest().to_owned()];
            all.extend(f.manifests.iter().map(|m| m.digest.clone()));
            (f.name.clone(), all)
        })
        .collect()
}

#[test]
fn fixtures_build_reproducibly() {
    let first = common::build();
    let second = common::build();
    assert_ne!(first.dir.path(), second.dir.path());
    assert_eq!(digests(&first.set), digests(&second.set));
    // Byte-equal layouts, not just equal root digests.
    for (a, b) in first.set.all().iter().zip(second.set.all()) {
        let read = |f: &kiln_e2e::fixtures::Fixture| {
            std::fs::read_to_string(f.layout.join("index.json")).unwrap()
        };
        assert_eq!(read(a), read(b), "{}", a.name);
    }
}

#[test]
fn fixture_contents() {
    let built = common::build();
    layers_are_deterministic_tars(&built);
    kernel_has_linuxkit_layout(&built);
    init_has_busybox_and_the_init_script(&built);
    runc_has_its_libraries(&built);
    payload_configs(&built);
    multiarch_index_labels_each_platform(&built);
}

fn layers_are_deterministic_tars(built: &common::Built) {
    for fixture in built.set.all() {
        for manifest in &fixture.manifests {
            for layer in common::layers(&fixture.layout, &manifest.digest) {
                let names: Vec<&String> = layer.iter().map(|(n, _)| n).collect();
                let mut sorted = names.clone();
                sorted.sort();
                assert_eq!(names, sorted, "{} entries are not sorted", fixture.name);
                for (name, entry) in &layer {
                    assert_eq!((entry.uid, entry.gid, entry.mtime), (0, 0, 0), "{name}");
                    assert!(
                        entry.uname.iter().all(|b| *b == 0),
                        "{name} has a user name"
                    );
                }
            }
            let gz = common::blob(
                &fixture.layout,
                common::json_blob(&fixture.layout, &manifest.digest)["layers"][0]["digest"]
                    .as_str()
                    .unwrap(),
            );
            // gzip header: mtime 0, no FNAME flag, OS unknown
            assert_eq!(&gz[3..8], &[0, 0, 0, 0, 0], "{}", fixture.name);
            assert_eq!(gz[9], 255, "{}", fixture.name);
        }
    }
}

fn kernel_has_linuxkit_layout(built: &common::Built) {
    let kernel = &built.set.kernel;
    let files = common::files(&kernel.layout, kernel.digest());
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["kernel", "kernel.tar"]);
    let vmlinuz = &files["kernel"].data;
    assert_eq!(&vmlinuz[0x202..0x206], b"HdrS", "kernel is a bzImage");
    let modules = common::tar_entries(&files["kernel.tar"].data);
    assert_eq!(modules[0].0, "./");
    let release = &built.set.kernel_release;
    let base = format!("./lib/modules/{release}");
    let find = |suffix: &str| {
        modules
            .iter()
            .find(|(n, _)| n == &format!("{base}/{suffix}"))
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("{base}/{suffix} missing"))
    };
    find("kernel/fs/overlayfs/overlay.ko");
    find("modules.builtin");
    let dep = String::from_utf8(find("modules.dep").data).unwrap();
    assert!(dep.contains("kernel/fs/overlayfs/overlay.ko:\n"), "{dep}");
    // virtio_net needs net_failover, which needs failover: the one loaded
    // first is listed last
    let net = dep
        .lines()
        .find(|l| l.contains("/virtio_net.ko:"))
        .expect("virtio_net");
    let pos = |m: &str| {
        net.find(m)
            .unwrap_or_else(|| panic!("{m} missing in {net}"))
    };
    assert!(pos("/net_failover.ko") < pos("/core/failover.ko"), "{net}");
    for (name, _) in &modules {
        assert!(name.starts_with("./"), "{name}");
    }
}

fn init_has_busybox_and_the_init_script(built: &common::Built) {
    let init = &built.set.init;
    let files = common::files(&init.layout, init.digest());
    let script = &files["init"];
    assert_eq!(script.mode, 0o755);
    assert!(String::from_utf8_lossy(&script.data).contains("runc run --bundle"));
    assert_eq!(files["bin/busybox"].mode, 0o755);
    for applet in [
        "bin/sh",
        "bin/mount",
        "usr/bin/awk",
        "sbin/poweroff",
        "usr/sbin/chroot",
    ] {
        assert_eq!(
            files[applet].link.as_deref(),
            Some("/bin/busybox"),
            "{applet}"
        );
    }
    assert!(files.contains_key("usr/share/kiln-init/runtime.awk"));
    assert_eq!(files["newroot/"].kind, tar::EntryType::Directory);
}

fn runc_has_its_libraries(built: &common::Built) {
    let runc = &built.set.runc;
    let files = common::files(&runc.layout, runc.digest());
    let names: Vec<&str> = files
        .iter()
        .filter(|(_, e)| e.kind == tar::EntryType::Regular)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libseccomp.so.2",
            "lib64/ld-linux-x86-64.so.2",
            "usr/bin/runc",
        ]
    );
    assert_eq!(&files["usr/bin/runc"].data[..4], b"\x7fELF");
}

fn payload_configs(built: &common::Built) {
    let config = |f: &kiln_e2e::fixtures::Fixture| {
        let manifest = common::json_blob(&f.layout, f.digest());
        common::json_blob(&f.layout, manifest["config"]["digest"].as_str().unwrap())
    };
    let plain = config(&built.set.plain);
    assert_eq!(
        plain["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert!(plain["config"]["Cmd"][0]
        .as_str()
        .unwrap()
        .contains("KILN-PAYLOAD plain ok"));
    assert_eq!(plain["architecture"], "amd64");
    assert_eq!(plain["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    let layers = common::layers(&built.set.plain.layout, built.set.plain.digest());
    let top: Vec<&str> = layers[1].iter().map(|(n, _)| n.as_str()).collect();
    assert!(top.contains(&"etc/.wh.kiln-removed"));
    assert!(top.contains(&"opt/old/.wh..wh..opq"));

    let label = config(&built.set.label);
    let text = label["config"]["Labels"]["org.mobyproject.config"]
        .as_str()
        .unwrap();
    assert_eq!(text, MOBY_LABEL);
    let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(parsed["binds"][0], "/run:/run");

    let service = config(&built.set.service);
    assert_eq!(service["config"]["Cmd"], serde_json::json!(["8080"]));
    let files = common::files(&built.set.service.layout, built.set.service.digest());
    assert_eq!(files["www/index.html"].data, b"KILN-SERVICE ok\n");
}

fn multiarch_index_labels_each_platform(built: &common::Built) {
    let multi = &built.set.multiarch;
    assert!(multi.is_index());
    let index = common::json_blob(&multi.layout, multi.digest());
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!("{}/{}/{}", p["os"], p["architecture"], p["variant"])
        })
        .collect();
    assert_eq!(
        platforms,
        ["\"linux\"/\"amd64\"/null", "\"linux\"/\"arm64\"/\"v8\""]
    );
    for (manifest, arch, elf_machine) in [
        (&multi.manifests[0], "amd64", 0x3e_u8),
        (&multi.manifests[1], "arm64", 0xb7_u8),
    ] {
        let files = common::files(&multi.layout, &manifest.digest);
        assert_eq!(files["etc/kiln-arch"].data, format!("{arch}\n").as_bytes());
        // e_machine of the busybox ELF matches the platform
        assert_eq!(files["bin/busybox"].data[18], elf_machine, "{arch}");
        let m = common::json_blob(&multi.layout, &manifest.digest);
        let c = common::json_blob(&multi.layout, m["config"]["digest"].as_str().unwrap());
        assert_eq!(c["architecture"], arch);
    }
}
