//! `kiln build` against the real registry: the `kernel+initrd` output of a
//! fixture spec boots under QEMU and runs its containers with real runc
//! using kiln's `config.json`; and building twice gives identical bytes.

mod cache_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cache_common::{fixtures, kiln_in, reference, registry_with};
use kiln_e2e::qemu::{BootSpec, Vm};
use kiln_e2e::registry::Registry;

/// Two onboot containers (one plain, one driven by its image label), one
/// service, and one onshutdown container that reads a `files` entry through
/// a bind: what the boot test asserts.
fn spec(registry: &Registry) -> String {
    let set = fixtures();
    let r = |f| reference(registry, f);
    format!(
        "kernel:
  image: {kernel}
  cmdline: \"console=ttyS0 quiet kiln.autopoweroff=20\"
init:
  - {init}
  - {runc}
onboot:
  - name: plain
    image: {plain}
  - name: label
    image: {label}
services:
  - name: web
    image: {service}
onshutdown:
  - name: bye
    image: {plain}
    command: [\"/bin/sh\", \"-c\", \"echo KILN-PAYLOAD bye $(cat /etc/kiln-file)\"]
    binds:
      - /etc/kiln-file:/etc/kiln-file
files:
  - path: etc/kiln-file
    contents: files-entry-applied
    mode: \"0644\"
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

fn registry() -> Registry {
    let set = fixtures();
    registry_with(&[
        &set.kernel,
        &set.init,
        &set.runc,
        &set.plain,
        &set.label,
        &set.service,
    ])
}

/// Runs `kiln build` in `dir` with its own KILN_HOME; returns the output dir.
fn build(dir: &Path, spec: &str, formats: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("boot.yml"), spec).unwrap();
    let out = dir.join("out");
    let run = kiln_in(dir)
        .args(["build", "-f", formats, "--dir"])
        .arg(&out)
        .arg("boot.yml")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

#[test]
fn kernel_initrd_boots_and_runs_every_container() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let out = build(dir.path(), &spec(&registry), "kernel+initrd");
    let cmdline = std::fs::read_to_string(out.join("boot-cmdline")).unwrap();
    assert_eq!(cmdline, "console=ttyS0 quiet kiln.autopoweroff=20");

    let mut boot = BootSpec::new(out.join("boot-kernel"), out.join("boot-initrd.img"));
    boot.cmdline = cmdline;
    boot.memory_mib = 512;
    boot.timeout = Duration::from_secs(240);
    let mut vm = Vm::boot(boot).unwrap();
    let within = Duration::from_secs(150);
    for marker in [
        "KILN-PAYLOAD plain ok layer2=layer2 removed=yes",
        "KILN-MARKER onboot 000-plain exit=0",
        "KILN-PAYLOAD label ok env=yes mkdir=yes",
        "KILN-MARKER onboot 001-label exit=0",
        "KILN-MARKER service web started",
        "KILN-MARKER init ready",
        "KILN-MARKER shutdown start",
        // The files entry, seen through a bind from inside the container.
        "KILN-PAYLOAD bye files-entry-applied",
        "KILN-MARKER onshutdown 000-bye exit=0",
        "KILN-MARKER poweroff",
    ] {
        vm.wait_for_text(marker, within)
            .unwrap_or_else(|e| panic!("waiting for `{marker}`: {e:#}"));
    }
    vm.wait_poweroff(Duration::from_secs(60)).unwrap();
}

#[test]
fn builds_are_bit_identical_across_directories_and_times() {
    let registry = registry();
    let spec = spec(&registry);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let formats = "kernel+initrd,tar,docker,oci,tar-kernel-initrd";
    let out_a = build(a.path(), &spec, formats);
    std::thread::sleep(Duration::from_millis(1100));
    let out_b = build(b.path(), &spec, formats);
    let mut names: Vec<String> = std::fs::read_dir(&out_a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "boot-cmdline",
            "boot-initrd.img",
            "boot-initrd.tar",
            "boot-kernel",
            "boot-oci.tar",
            "boot.docker",
            "boot.tar"
        ]
    );
    for name in names {
        let x = std::fs::read(out_a.join(&name)).unwrap();
        let y = std::fs::read(out_b.join(&name)).unwrap();
        assert!(x == y, "{name} differs between two builds");
    }
}
