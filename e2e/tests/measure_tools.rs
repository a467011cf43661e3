//! kiln's measurement arithmetic against independent tools: Authenticode
//! digests against osslsigncode, PCR 11 against systemd-measure.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_backend::engine::measure::authenticode;
use kiln_backend::engine::measure::bank::Bank;
use kiln_backend::engine::measure::pcr11_of_files;
use kiln_e2e::debs::DebCache;
use kiln_e2e::tools;

const SYSTEMD_MEASURE: &str = "/usr/lib/systemd/systemd-measure";

/// Debian's signed kernel (the fixture's vmlinuz).
fn vmlinuz() -> PathBuf {
    let cache = DebCache::from_env();
    let meta = cache.fetch("linux-image-amd64").unwrap();
    let image = meta
        .depends()
        .unwrap()
        .into_iter()
        .find(|d| d.starts_with("linux-image-"))
        .unwrap();
    let pkg = cache.fetch(&image).unwrap();
    let boot = pkg.tree.join("boot");
    std::fs::read_dir(&boot)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .unwrap()
}

/// Debian's systemd EFI stub (unsigned).
fn stub() -> PathBuf {
    let pkg = DebCache::from_env().fetch("systemd-boot-efi").unwrap();
    pkg.tree.join("usr/lib/systemd/boot/efi/linuxx64.efi.stub")
}

/// The "Calculated message digest" osslsigncode prints for a signed image.
fn osslsigncode_digest(signed: &Path) -> String {
    let bin = tools::find("osslsigncode", "osslsigncode").unwrap();
    // Verification fails (self-signed), but the digest is printed first.
    let out = Command::new(bin)
        .arg("verify")
        .arg("-in")
        .arg(signed)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Calculated message digest :"))
        .unwrap_or_else(|| panic!("no digest in osslsigncode output:\n{text}"))
        .trim()
        .to_ascii_lowercase()
}

#[test]
fn authenticode_of_a_signed_kernel_matches_osslsigncode() {
    let kernel = vmlinuz();
    let bytes = std::fs::read(&kernel).unwrap();
    let ours = authenticode::digests(&bytes, &[Bank::Sha256]).unwrap();
    assert_eq!(
        hex::encode(ours.get(Bank::Sha256).unwrap()),
        osslsigncode_digest(&kernel),
        "{}",
        kernel.display()
    );
}

#[test]
fn authenticode_of_an_unsigned_stub_matches_osslsigncode_in_every_bank() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tools::run(
        Command::new(tools::find("openssl", "openssl").unwrap())
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=kiln-test",
            ])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem")),
    )
    .unwrap();
    // osslsigncode pads an image to 8 bytes before appending the
    // certificates, and that padding is hashed (as trailing data): sign a
    // copy padded already. The stub's size is odd, so kiln's digest covers
    // trailing data past the last section too.
    let mut bytes = std::fs::read(stub()).unwrap();
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    let stub = d.join("stub.efi");
    std::fs::write(&stub, &bytes).unwrap();
    let ours = authenticode::digests(&bytes, &[Bank::Sha1, Bank::Sha256, Bank::Sha384]).unwrap();
    for (bank, alg) in [
        (Bank::Sha1, "sha1"),
        (Bank::Sha256, "sha256"),
        (Bank::Sha384, "sha384"),
    ] {
        let signed = d.join(format!("stub-{alg}.efi"));
        tools::run(
            Command::new(tools::find("osslsigncode", "osslsigncode").unwrap())
                .args(["sign", "-h", alg, "-certs"])
                .arg(d.join("cert.pem"))
                .arg("-key")
                .arg(d.join("key.pem"))
                .arg("-in")
                .arg(&stub)
                .arg("-out")
                .arg(&signed),
        )
        .unwrap();
        assert_eq!(
            hex::encode(ours.get(bank).unwrap()),
            osslsigncode_digest(&signed),
            "{bank}"
        );
        // And kiln's digest of the signed copy ignores the signature.
        let signed_bytes = std::fs::read(&signed).unwrap();
        assert_ne!(signed_bytes, bytes);
        assert_eq!(
            authenticode::digests(&signed_bytes, &[bank])
                .unwrap()
                .get(bank),
            ours.get(bank)
        );
    }
}

#[test]
fn pcr11_matches_systemd_measure() {
    assert!(
        Path::new(SYSTEMD_MEASURE).is_file(),
        "{SYSTEMD_MEASURE} is missing (Debian package `systemd`)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let linux = std::fs::read(vmlinuz()).unwrap();
    // A command line with a trailing newline: PCR 11 hashes the raw bytes.
    let files: Vec<(&str, Vec<u8>)> = vec![
        (".linux", linux),
        (".osrel", b"ID=kiln\nNAME=\"kiln test\"\n".to_vec()),
        (
            ".cmdline",
            b"console=ttyS0 quiet kiln.tpm=sha256\n".to_vec(),
        ),
        (
            ".initrd",
            (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect(),
        ),
    ];
    let mut cmd = Command::new(SYSTEMD_MEASURE);
    cmd.arg("calculate");
    for (name, bytes) in &files {
        let path = d.join(&name[1..]);
        std::fs::write(&path, bytes).unwrap();
        cmd.arg(format!("--{}={}", &name[1..], path.display()));
    }
    for bank in ["sha1", "sha256", "sha384"] {
        cmd.arg(format!("--bank={bank}"));
    }
    let out = tools::run_stdout(cmd.args(["--phase=", "--json=short"])).unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    for bank in [Bank::Sha1, Bank::Sha256, Bank::Sha384] {
        let theirs = json[bank.name()][0]["hash"].as_str().unwrap();
        assert_eq!(json[bank.name()][0]["pcr"], 11);
        assert_eq!(hex::encode(pcr11_of_files(&files, bank)), theirs, "{bank}");
    }
}
