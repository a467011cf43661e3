//! Proof by boot: `kiln build` predicts the PCRs of its `uki`, `raw-efi`,
//! `vmdk` and `iso-efi` (as a CD-ROM) outputs (the other disk containers
//! hold the same disk: their predictions must equal raw-efi's); each boots
//! under QEMU (TCG) + OVMF + a fresh sha256-only swtpm
//! (the reference model `qemu-q35-ovmf-nodefaults`), the fixture init
//! prints the PCRs and the event log, and they must equal the manifest.
//! Also: `kiln attest verify` on the real logs, the manifests' signatures
//! and JSON Schema, and reproducibility.

mod cache_common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cache_common::{fixtures, kiln_bin, kiln_in, reference, registry_with};
use kiln_backend::engine::measure::eventlog::EventLog;
use kiln_backend::engine::measure::manifest::Manifest;
use kiln_e2e::firmware::{self, Firmware, Media};
use kiln_e2e::fixtures::boot::{self as boot_fixtures, BootFixtures};
use kiln_e2e::fixtures::FixtureOptions;
use kiln_e2e::qemu::Vm;
use kiln_e2e::swtpm::{Swtpm, TpmDump};
use kiln_e2e::tools;

const NAME: &str = "tpm";
const CMDLINE: &str = "console=ttyS0 quiet kiln.tpm=sha256 kiln.autopoweroff=0";
const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/schemas/measurements.schema.json"
);

fn boot_fixtures() -> &'static BootFixtures {
    static SET: OnceLock<BootFixtures> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("measured_boot-boot-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = FixtureOptions::from_env(&dir).unwrap();
        boot_fixtures::build(&opts).unwrap_or_else(|e| panic!("boot fixtures: {e:#}"))
    })
}

/// Three builds: `a` and `again` of the same spec in two directories,
/// and `other` with one more word on the command line; all signed.
struct Built {
    a: PathBuf,
    again: PathBuf,
    other: PathBuf,
    public_key: PathBuf,
    _root: tempfile::TempDir,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let set = fixtures();
        let registry = registry_with(&[&set.kernel, &set.init, &boot_fixtures().efi_stub]);
        let root = tempfile::tempdir().unwrap();
        let key = root.path().join("signing.key");
        let public_key = root.path().join("signing.pub");
        let openssl = || Command::new(tools::find("openssl", "openssl").unwrap());
        tools::run(
            openssl()
                .args([
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                ])
                .arg(&key),
        )
        .unwrap();
        tools::run(
            openssl()
                .args(["pkey", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(&public_key),
        )
        .unwrap();
        let stub = reference(&registry, &boot_fixtures().efi_stub);
        let build = |dir: &Path, cmdline: &str| -> PathBuf {
            std::fs::create_dir_all(dir).unwrap();
            let spec = format!(
                "kernel:\n  image: {}\n  cmdline: \"{cmdline}\"\ninit:\n  - {}\n",
                reference(&registry, &set.kernel),
                reference(&registry, &set.init)
            );
            std::fs::write(dir.join(format!("{NAME}.yml")), spec).unwrap();
            let out = dir.join("out");
            let run = kiln_in(dir)
                .args([
                    "build",
                    "-f",
                    "uki,raw-efi,qcow2-efi,vhd,dynamic-vhd,vmdk,iso-efi",
                    "--efi-stub",
                    &stub,
                    "--sign-key",
                ])
                .arg(&key)
                .arg("--dir")
                .arg(&out)
                .arg(format!("{NAME}.yml"))
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "kiln build failed:\n{}",
                String::from_utf8_lossy(&run.stderr)
            );
            out
        };
        let a = build(&root.path().join("a"), CMDLINE);
        let again = build(&root.path().join("again"), CMDLINE);
        let other = build(
            &root.path().join("other"),
            &format!("{CMDLINE} kiln.other=1"),
        );
        Built {
            a,
            again,
            other,
            public_key,
            _root: root,
        }
    })
}

fn manifest(path: &Path) -> Manifest {
    Manifest::parse(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Boots with OVMF (fresh NVRAM) and a fresh sha256-only swtpm until the
/// init has printed its TPM dump.
fn boot(media_args: Vec<OsString>, scratch: &Path) -> TpmDump {
    let tpm = Swtpm::start(&["sha256"]).unwrap_or_else(|e| panic!("{e:#}"));
    let fw = Firmware::ovmf(scratch).unwrap();
    // firmware::args with a placeholder medium, replaced by ours.
    let mut args = firmware::args(&fw, &Media::Kernel(PathBuf::new()), 512);
    args.truncate(args.len() - 2);
    args.extend(media_args);
    args.extend(tpm.qemu_args());
    let mut vm = Vm::start(args, Duration::from_secs(600)).unwrap();
    if let Err(e) = vm.wait_for_text("KILN-MARKER eventlog end", Duration::from_secs(480)) {
        panic!("{e:#}\nswtpm log:\n{}", tpm.log());
    }
    let dump = TpmDump::parse(&vm.lines()).unwrap_or_else(|e| panic!("{e:#}"));
    vm.wait_poweroff(Duration::from_secs(120)).unwrap();
    dump
}

/// Asserts the guest's PCRs equal the manifest's, and returns the files
/// `kiln attest verify` reads.
fn check_pcrs(dump: &TpmDump, m: &Manifest, scratch: &Path) -> (PathBuf, PathBuf) {
    for pcr in [2, 3, 4, 5, 6, 7, 9, 11] {
        let predicted = m
            .pcr(pcr)
            .and_then(|p| {
                p.values
                    .get(kiln_backend::engine::measure::bank::Bank::Sha256)
            })
            .unwrap_or_else(|| panic!("PCR {pcr} not predicted"));
        let seen = dump
            .pcr("sha256", pcr)
            .unwrap_or_else(|| panic!("PCR {pcr} not printed"));
        assert_eq!(
            hex::encode(seen),
            hex::encode(predicted),
            "PCR {pcr} of {}",
            m.artifact.name
        );
    }
    // The log itself parses with kiln's reader and replays to every PCR 0–9 and 11.
    let log = EventLog::parse(&dump.event_log).unwrap();
    for pcr in (0..=9).chain([11]) {
        let replayed = log
            .replay(kiln_backend::engine::measure::bank::Bank::Sha256, pcr)
            .unwrap();
        assert_eq!(
            Some(replayed.as_slice()),
            dump.pcr("sha256", pcr),
            "log replay of PCR {pcr}"
        );
    }
    let log_file = scratch.join("binary_bios_measurements");
    let pcr_file = scratch.join("pcrs.txt");
    std::fs::write(&log_file, &dump.event_log).unwrap();
    std::fs::write(&pcr_file, dump.pcr_file("sha256")).unwrap();
    (log_file, pcr_file)
}

fn attest(manifest: &Path, log: &Path, pcrs: &Path, key: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new(kiln_bin());
    cmd.args(["attest", "verify", "--log"])
        .arg(log)
        .arg("--pcrs")
        .arg(pcrs);
    if let Some(key) = key {
        cmd.arg("--key").arg(key);
    }
    let out = cmd.arg(manifest).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn uki_pcrs_equal_the_manifest_and_attest_names_the_event_of_another_build() {
    let built = built();
    let uki = built.a.join(format!("{NAME}.efi"));
    let manifest_path = built.a.join(format!("{NAME}-measurements.json"));
    let m = manifest(&manifest_path);
    assert_eq!(m.artifact.format, "uki");

    // The UKI on a read-only vvfat drive, as removable media.
    let scratch = tempfile::tempdir().unwrap();
    let esp = scratch.path().join("esp");
    std::fs::create_dir_all(esp.join("EFI/BOOT")).unwrap();
    std::fs::copy(&uki, esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
    let media: Vec<OsString> = vec![
        "-drive".into(),
        format!(
            "file=fat:{},format=raw,if=virtio,readonly=on",
            esp.display()
        )
        .into(),
    ];
    let dump = boot(media, scratch.path());
    let (log, pcrs) = check_pcrs(&dump, &m, scratch.path());

    let (code, out) = attest(&manifest_path, &log, &pcrs, Some(&built.public_key));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("manifest signature verified"), "{out}");
    assert!(out.contains("all predicted PCRs match"), "{out}");

    // The same log against the manifest of a build whose command line
    // differs: rejected, naming the events.
    let other = built.other.join(format!("{NAME}-measurements.json"));
    let (code, out) = attest(&other, &log, &pcrs, None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PCR 9 event 1 differs") && out.contains("LOADED_IMAGE::LoadOptions"),
        "{out}"
    );
    assert!(
        out.contains("PCR 11 event 6 differs") && out.contains("`.cmdline` section"),
        "{out}"
    );
    assert!(out.contains("PCR 4 event 3 differs"), "{out}");
    for line in out.lines().filter(|l| l.starts_with("PCR ")) {
        let bad = line.contains("MISMATCH");
        let expect_bad = ["PCR  4", "PCR  9", "PCR 11"]
            .iter()
            .any(|p| line.starts_with(p));
        assert_eq!(bad, expect_bad, "{line}");
    }
}

#[test]
fn raw_efi_pcrs_equal_the_manifest() {
    let built = built();
    let disk = built.a.join(format!("{NAME}-efi.img"));
    let manifest_path = built.a.join(format!("{NAME}-efi-measurements.json"));
    let m = manifest(&manifest_path);
    assert_eq!(m.artifact.format, "raw-efi");
    assert_eq!(m.pcr(5).unwrap().events.len(), 4, "PCR 5 has the GPT event");
    // The disk's UKI is the uki output: PCRs 4, 9 and 11 agree.
    let uki = manifest(&built.a.join(format!("{NAME}-measurements.json")));
    for pcr in [4, 9, 11] {
        assert_eq!(
            m.pcr(pcr).unwrap().values,
            uki.pcr(pcr).unwrap().values,
            "PCR {pcr}"
        );
    }

    let scratch = tempfile::tempdir().unwrap();
    let media: Vec<OsString> = vec![
        "-drive".into(),
        format!("if=virtio,format=raw,snapshot=on,file={}", disk.display()).into(),
    ];
    let dump = boot(media, scratch.path());
    let (log, pcrs) = check_pcrs(&dump, &m, scratch.path());
    let (code, out) = attest(&manifest_path, &log, &pcrs, Some(&built.public_key));
    assert_eq!(code, 0, "{out}");
}

/// The containers' manifests: the artifact is the container file, the
/// disk component and every PCR are the raw-efi disk's. The VMDK boots
/// through QEMU's vmdk driver.
#[test]
fn disk_containers_predict_the_raw_disk_and_the_vmdk_boots_to_it() {
    use kiln_backend::engine::measure::bank::Bank;
    use sha2::Digest as _;
    let built = built();
    let raw = manifest(&built.a.join(format!("{NAME}-efi-measurements.json")));
    for (file, format) in [
        (format!("{NAME}-efi.qcow2"), "qcow2-efi"),
        (format!("{NAME}.vhd"), "vhd"),
        (format!("{NAME}-dynamic.vhd"), "dynamic-vhd"),
        (format!("{NAME}.vmdk"), "vmdk"),
    ] {
        let stem = file.replace('.', "-");
        let m = manifest(&built.a.join(format!("{stem}-measurements.json")));
        let bytes = std::fs::read(built.a.join(&file)).unwrap();
        assert_eq!(m.artifact.name, file);
        assert_eq!(m.artifact.format, format);
        assert_eq!(m.artifact.size, bytes.len() as u64, "{file}");
        assert_eq!(
            m.artifact.digests.get(Bank::Sha256),
            Some(sha2::Sha256::digest(&bytes).as_slice()),
            "{file}"
        );
        let disk = m.components.disk.as_ref().unwrap();
        assert_eq!(disk.size, raw.artifact.size, "{file}");
        assert_eq!(disk.digests, raw.artifact.digests, "{file}");
        assert_eq!(m.pcrs, raw.pcrs, "{file}");
        assert!(
            built
                .a
                .join(format!("{stem}-measurements.json.dsse"))
                .exists(),
            "{file}"
        );
    }

    let manifest_path = built.a.join(format!("{NAME}-vmdk-measurements.json"));
    let m = manifest(&manifest_path);
    let scratch = tempfile::tempdir().unwrap();
    let vmdk = built.a.join(format!("{NAME}.vmdk"));
    let media: Vec<OsString> = vec![
        "-drive".into(),
        format!("if=virtio,format=vmdk,snapshot=on,file={}", vmdk.display()).into(),
    ];
    let dump = boot(media, scratch.path());
    let (log, pcrs) = check_pcrs(&dump, &m, scratch.path());
    let (code, out) = attest(&manifest_path, &log, &pcrs, Some(&built.public_key));
    assert_eq!(code, 0, "{out}");
}

/// The `iso-efi` image booted as a CD-ROM (AHCI): firmware loads the UKI
/// from the El Torito EFI image and measures no GPT, so every PCR is the
/// `uki`'s; the artifact is the ISO.
#[test]
fn iso_efi_booted_as_a_cd_predicts_the_uki_pcrs() {
    use kiln_backend::engine::measure::bank::Bank;
    use sha2::Digest as _;
    let built = built();
    let file = format!("{NAME}-efi.iso");
    let manifest_path = built.a.join(format!("{NAME}-efi-iso-measurements.json"));
    let m = manifest(&manifest_path);
    let bytes = std::fs::read(built.a.join(&file)).unwrap();
    assert_eq!(m.artifact.name, file);
    assert_eq!(m.artifact.format, "iso-efi");
    assert_eq!(
        m.artifact.digests.get(Bank::Sha256),
        Some(sha2::Sha256::digest(&bytes).as_slice())
    );
    let uki = manifest(&built.a.join(format!("{NAME}-measurements.json")));
    assert_eq!(m.pcrs, uki.pcrs);
    assert_eq!(m.pcr(5).unwrap().events.len(), 3, "no GPT event");

    let scratch = tempfile::tempdir().unwrap();
    let iso = built.a.join(&file);
    let media: Vec<OsString> = vec![
        "-drive".into(),
        format!(
            "if=none,id=cd,media=cdrom,format=raw,readonly=on,file={}",
            iso.display()
        )
        .into(),
        "-device".into(),
        "ide-cd,drive=cd,bus=ide.0".into(),
    ];
    let dump = boot(media, scratch.path());
    let (log, pcrs) = check_pcrs(&dump, &m, scratch.path());
    let (code, out) = attest(&manifest_path, &log, &pcrs, Some(&built.public_key));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn same_spec_same_manifests_and_kiln_measure_agrees() {
    let built = built();
    for file in [
        format!("{NAME}-measurements.json"),
        format!("{NAME}-efi-measurements.json"),
    ] {
        let a = std::fs::read(built.a.join(&file)).unwrap();
        assert_eq!(a, std::fs::read(built.again.join(&file)).unwrap(), "{file}");
        assert_ne!(a, std::fs::read(built.other.join(&file)).unwrap(), "{file}");
    }
    for (artifact, file) in [
        (format!("{NAME}.efi"), format!("{NAME}-measurements.json")),
        (
            format!("{NAME}-efi.img"),
            format!("{NAME}-efi-measurements.json"),
        ),
        (
            format!("{NAME}.vmdk"),
            format!("{NAME}-vmdk-measurements.json"),
        ),
        (
            format!("{NAME}-efi.iso"),
            format!("{NAME}-efi-iso-measurements.json"),
        ),
    ] {
        let m = manifest(&built.a.join(&file));
        let out = Command::new(kiln_bin())
            .args([
                "measure",
                "--spec-digest",
                m.spec_digest.as_deref().unwrap(),
            ])
            .arg(built.a.join(&artifact))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout,
            std::fs::read(built.a.join(&file)).unwrap(),
            "{artifact}"
        );
    }
}

#[test]
fn manifests_validate_against_the_schema() {
    let built = built();
    let scratch = tempfile::tempdir().unwrap();
    // Also one with every bank.
    let all_banks = scratch.path().join("all-banks.json");
    let out = Command::new(kiln_bin())
        .args(["measure", "--bank", "sha1", "--bank", "sha384", "-o"])
        .arg(&all_banks)
        .arg(built.a.join(format!("{NAME}.efi")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let documents = [
        built.a.join(format!("{NAME}-measurements.json")),
        built.a.join(format!("{NAME}-efi-measurements.json")),
        built.a.join(format!("{NAME}-vmdk-measurements.json")),
        built.a.join(format!("{NAME}-efi-iso-measurements.json")),
        all_banks,
    ];
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        v = jsonschema.Draft202012Validator(schema)\n\
        for path in sys.argv[2:]:\n\
        \x20   errors = list(v.iter_errors(json.load(open(path))))\n\
        \x20   assert not errors, (path, [e.message for e in errors])\n\
        bad = json.load(open(sys.argv[2]))\n\
        bad['pcrs'][0]['values']['sha256'] = 'XYZ'\n\
        assert list(v.iter_errors(bad)), 'a broken manifest validated'\n\
        print('valid', len(sys.argv) - 2)\n";
    // Debian's python3 with python3-jsonschema (from .ci/install-deps).
    let out = tools::run_stdout(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(SCHEMA)
            .args(&documents),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(out.trim(), "valid 5");
    let m = manifest(&documents[4]);
    assert_eq!(m.banks.len(), 3);
}

#[test]
fn the_signature_verifies_and_a_one_byte_change_is_rejected() {
    let built = built();
    let manifest_path = built.a.join(format!("{NAME}-measurements.json"));
    let envelope_path = built.a.join(format!("{NAME}-measurements.json.dsse"));
    let bytes = std::fs::read(&manifest_path).unwrap();
    let envelope = std::fs::read(&envelope_path).unwrap();
    let key = kiln_signer::PublicKey::load(&built.public_key).unwrap();
    let parsed = kiln_signer::dsse::Envelope::from_json(&envelope).unwrap();
    let (m, _) = kiln_backend::engine::measure::signed::verify(
        &parsed,
        Some(&bytes),
        std::slice::from_ref(&key),
    )
    .unwrap();
    assert_eq!(m, manifest(&manifest_path));

    let scratch = tempfile::tempdir().unwrap();
    // A one-byte change in the manifest: a digit of PCR 11's value.
    let at = bytes.windows(6).position(|w| w == b"\"hash\"").unwrap() + 9;
    let mut changed = bytes.clone();
    changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
    let tampered = scratch.path().join("tampered-measurements.json");
    std::fs::write(&tampered, &changed).unwrap();
    // An empty log: the signature is checked before anything else.
    let log = scratch.path().join("log");
    std::fs::write(&log, b"").unwrap();
    let out = Command::new(kiln_bin())
        .args(["attest", "verify", "--log"])
        .arg(&log)
        .arg("--key")
        .arg(&built.public_key)
        .arg("--signature")
        .arg(&envelope_path)
        .arg(&tampered)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("signature check failed"), "{err}");
    assert!(kiln_backend::engine::measure::signed::verify(
        &parsed,
        Some(&changed),
        std::slice::from_ref(&key)
    )
    .is_err());

    // A one-byte change in the signed payload itself.
    let mut value: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = b64.decode(value["payload"].as_str().unwrap()).unwrap();
    payload[at] ^= 1;
    value["payload"] = b64.encode(&payload).into();
    let forged = kiln_signer::dsse::Envelope::from_json(value.to_string().as_bytes()).unwrap();
    assert!(kiln_backend::engine::measure::signed::verify(&forged, None, &[key]).is_err());
}
