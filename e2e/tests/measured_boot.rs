//! Measured boot under QEMU (TCG) + OVMF + swtpm: what the guest reads from
//! its TPM against what kiln predicted without booting.

mod cache_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cache_common::{fixtures, kiln_in, reference, registry_with};
use kiln_backend::engine::measure::bank::Bank;
use kiln_backend::engine::measure::eventlog::EventLog;
use kiln_e2e::qemu::{BootSpec, Vm};
use kiln_e2e::registry::Registry;
use kiln_e2e::swtpm::{ovmf_args, Swtpm, TpmDump};

/// The kernel and init fixtures only: init dumps the TPM and powers off.
fn spec(registry: &Registry, cmdline: &str) -> String {
    let set = fixtures();
    format!(
        "kernel:\n  image: {kernel}\n  cmdline: \"{cmdline}\"\ninit:\n  - {init}\n",
        kernel = reference(registry, &set.kernel),
        init = reference(registry, &set.init),
    )
}

fn registry() -> Registry {
    let set = fixtures();
    registry_with(&[&set.kernel, &set.init])
}

fn build(dir: &Path, spec: &str, formats: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tpm.yml"), spec).unwrap();
    let out = dir.join("out");
    let run = kiln_in(dir)
        .args(["build", "-f", formats, "--dir"])
        .arg(&out)
        .arg("tpm.yml")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// Boots with OVMF and a fresh sha256-only swtpm until the init's TPM dump
/// is complete; returns it.
fn boot_and_dump(mut boot: BootSpec, scratch: &Path) -> TpmDump {
    let tpm = Swtpm::start(&["sha256"]).unwrap_or_else(|e| panic!("{e:#}"));
    boot.extra_args.extend(ovmf_args(scratch).unwrap());
    boot.extra_args.extend(tpm.qemu_args());
    boot.memory_mib = 512;
    boot.timeout = Duration::from_secs(300);
    let mut vm = Vm::boot(boot).unwrap();
    if let Err(e) = vm.wait_for_text("KILN-MARKER eventlog end", Duration::from_secs(240)) {
        panic!("{e:#}\nswtpm log:\n{}", tpm.log());
    }
    let dump = TpmDump::parse(&vm.lines()).unwrap_or_else(|e| panic!("{e:#}"));
    vm.wait_poweroff(Duration::from_secs(60)).unwrap();
    dump
}

/// OVMF's direct kernel boot with a TPM: the event log the guest reads
/// replays, through kiln's parser, to every PCR 0–9 the guest reads.
#[test]
fn the_guest_event_log_replays_to_its_pcrs() {
    let registry = registry();
    let dir = tempfile::tempdir().unwrap();
    let cmdline = "console=ttyS0 quiet kiln.tpm=sha256 kiln.autopoweroff=0";
    let out = build(dir.path(), &spec(&registry, cmdline), "kernel+initrd");
    let mut boot = BootSpec::new(out.join("tpm-kernel"), out.join("tpm-initrd.img"));
    boot.cmdline = "quiet kiln.tpm=sha256 kiln.autopoweroff=0".into();
    let dump = boot_and_dump(boot, dir.path());
    let log = EventLog::parse(&dump.event_log).unwrap();
    assert!(log.has_bank(Bank::Sha256));
    assert!(log.events.len() > 10, "{} events", log.events.len());
    for pcr in 0..=9 {
        let reported = dump.pcr("sha256", pcr).unwrap();
        let replayed = log.replay(Bank::Sha256, pcr).unwrap();
        assert_eq!(hex::encode(replayed), hex::encode(reported), "PCR {pcr}");
    }
    // Direct kernel boot measures the command line and initrd into PCR 9.
    assert_ne!(dump.pcr("sha256", 9).unwrap(), [0u8; 32]);
}
