//! The bootable formats (`uki`, `raw-efi`, ...): each boots under QEMU
//! (TCG) through its firmware and runs the fixture init and an onboot
//! container; Debian's own readers accept every output; and two builds in
//! different directories give identical bytes.

mod cache_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cache_common::{fixtures, kiln_in, reference, registry_with};
use kiln_e2e::firmware::{self, Firmware, Media};
use kiln_e2e::fixtures::boot::{self as boot_fixtures, BootFixtures};
use kiln_e2e::fixtures::FixtureOptions;
use kiln_e2e::qemu::Vm;
use kiln_e2e::registry::Registry;
use kiln_e2e::tools;

/// Every format these tests check.
const FORMATS: &str = "uki,raw-efi,qcow2-efi,vhd,dynamic-vhd,vmdk,iso-efi,iso-bios,raw-bios";
const NAME: &str = "boot";

fn boot_fixtures() -> &'static BootFixtures {
    static SET: OnceLock<BootFixtures> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_formats-boot-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = FixtureOptions::from_env(&dir).unwrap();
        boot_fixtures::build(&opts).unwrap_or_else(|e| panic!("boot fixtures: {e:#}"))
    })
}

/// The kernel, the init and runc, and one onboot container; the init
/// powers off a second after it is ready.
fn spec(registry: &Registry) -> String {
    let set = fixtures();
    let r = |f| reference(registry, f);
    format!(
        "kernel:
  image: {kernel}
  cmdline: \"console=ttyS0 panic=-1 kiln.autopoweroff=1\"
init:
  - {init}
  - {runc}
onboot:
  - name: plain
    image: {plain}
",
        kernel = r(&set.kernel),
        init = r(&set.init),
        runc = r(&set.runc),
        plain = r(&set.plain),
    )
}

/// Runs `kiln build -f FORMATS` in `dir` with its own KILN_HOME.
fn build(dir: &Path, registry: &Registry) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{NAME}.yml")), spec(registry)).unwrap();
    let out = dir.join("out");
    let stub = reference(registry, &boot_fixtures().efi_stub);
    let bios = reference(registry, &boot_fixtures().syslinux);
    let run = kiln_in(dir)
        .args(["build", "-f", FORMATS, "--efi-stub", &stub])
        .args(["--bios-loader", &bios, "--dir"])
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
}

/// Two builds, in two directories, a second apart.
struct Built {
    a: PathBuf,
    b: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let set = fixtures();
        let boot = boot_fixtures();
        let registry = registry_with(&[
            &set.kernel,
            &set.init,
            &set.runc,
            &set.plain,
            &boot.efi_stub,
            &boot.syslinux,
        ]);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_formats-out");
        let _ = std::fs::remove_dir_all(&root);
        let a = build(&root.join("a"), &registry);
        std::thread::sleep(Duration::from_millis(1100));
        let b = build(&root.join("b"), &registry);
        Built { a, b }
    })
}

fn output(file: &str) -> PathBuf {
    built().a.join(file)
}

/// Boots `media` and waits for the init's markers and the onboot
/// container's output, then for the poweroff.
fn boots(firmware: Firmware, media: Media) {
    let args = firmware::args(&firmware, &media, 768);
    let mut vm = Vm::start(args, Duration::from_secs(900)).unwrap();
    let within = Duration::from_secs(600);
    for marker in [
        "KILN-MARKER init stage1",
        "KILN-PAYLOAD plain ok layer2=layer2 removed=yes",
        "KILN-MARKER onboot 000-plain exit=0",
        "KILN-MARKER init ready",
        "KILN-MARKER poweroff",
    ] {
        vm.wait_for_text(marker, within)
            .unwrap_or_else(|e| panic!("waiting for `{marker}`: {e:#}"));
    }
    vm.wait_poweroff(Duration::from_secs(120)).unwrap();
}

fn ovmf() -> (tempfile::TempDir, Firmware) {
    let dir = tempfile::tempdir().unwrap();
    let fw = Firmware::ovmf(dir.path()).unwrap();
    (dir, fw)
}

fn tool(name: &str, package: &str) -> Command {
    Command::new(tools::find(name, package).unwrap_or_else(|e| panic!("{e:#}")))
}

fn stdout_of(cmd: &mut Command) -> String {
    tools::run_stdout(cmd).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The ESP of a GPT disk made by kiln (one partition at 1 MiB) as its own
/// file, for `fsck.vfat`.
fn extract_esp(disk: &Path, dir: &Path) -> PathBuf {
    let out = stdout_of(tool("sgdisk", "gdisk").arg("-i").arg("1").arg(disk));
    let sector = |label: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in sgdisk -i: {out}"));
        line[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (first, last) = (sector("First sector:"), sector("Last sector:"));
    let bytes = std::fs::read(disk).unwrap();
    let esp = dir.join("esp.img");
    std::fs::write(
        &esp,
        &bytes[(first * 512) as usize..((last + 1) * 512) as usize],
    )
    .unwrap();
    esp
}

#[test]
fn every_format_is_bit_identical_across_directories_and_times() {
    let built = built();
    let mut names: Vec<String> = std::fs::read_dir(&built.a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = [
        "-bios.img",
        // Each UKI and EFI disk (raw or in a container) has its TPM
        // measurement manifest.
        "-dynamic-vhd-measurements.json",
        "-dynamic.vhd",
        "-efi-iso-measurements.json",
        "-efi-measurements.json",
        "-efi-qcow2-measurements.json",
        "-efi.img",
        "-efi.iso",
        "-efi.qcow2",
        "-measurements.json",
        "-vhd-measurements.json",
        "-vmdk-measurements.json",
        ".efi",
        ".iso",
        ".vhd",
        ".vmdk",
    ]
    .iter()
    .map(|s| format!("{NAME}{s}"))
    .collect();
    assert_eq!(names, expected);
    for name in names {
        let x = std::fs::read(built.a.join(&name)).unwrap();
        let y = std::fs::read(built.b.join(&name)).unwrap();
        assert!(x == y, "{name} differs between two builds");
    }
}

#[test]
fn uki_has_the_sections_of_its_parts() {
    use kiln_backend::engine::boot::uki::section;
    let uki = std::fs::read(output(&format!("{NAME}.efi"))).unwrap();
    let (_, cmdline) = section(&uki, ".cmdline").unwrap().unwrap();
    assert_eq!(cmdline, b"console=ttyS0 panic=-1 kiln.autopoweroff=1");
    let (_, osrel) = section(&uki, ".osrel").unwrap().unwrap();
    assert!(String::from_utf8_lossy(osrel).contains("NAME=\"LinuxKit\""));
    let (_, linux) = section(&uki, ".linux").unwrap().unwrap();
    // The bzImage's setup header magic.
    assert_eq!(&linux[0x202..0x206], b"HdrS");
    let (_, initrd) = section(&uki, ".initrd").unwrap().unwrap();
    assert_eq!(&initrd[..2], &[0x1f, 0x8b]);
}

#[test]
fn raw_efi_is_a_valid_gpt_disk_with_a_clean_esp() {
    let disk = output(&format!("{NAME}-efi.img"));
    let v = stdout_of(tool("sgdisk", "gdisk").arg("-v").arg(&disk));
    assert!(v.contains("No problems found"), "sgdisk -v: {v}");
    let dir = tempfile::tempdir().unwrap();
    let esp = extract_esp(&disk, dir.path());
    let fsck = stdout_of(tool("fsck.vfat", "dosfstools").arg("-n").arg(&esp));
    assert!(fsck.contains(" files, "), "fsck.vfat: {fsck}");
    let info = stdout_of(
        tool("qemu-img", "qemu-utils")
            .args(["info", "--output=json", "-f", "raw"])
            .arg(&disk),
    );
    assert!(info.contains("\"format\": \"raw\""), "{info}");
}

/// qemu-img's drivers read the same disk out of every container.
#[test]
fn containers_hold_the_raw_efi_disk() {
    let raw = output(&format!("{NAME}-efi.img"));
    for (file, format, checkable) in [
        ("-efi.qcow2", "qcow2", true),
        (".vmdk", "vmdk", true),
        (".vhd", "vpc", false),
        ("-dynamic.vhd", "vpc", false),
    ] {
        let path = output(&format!("{NAME}{file}"));
        if checkable {
            let check = stdout_of(
                tool("qemu-img", "qemu-utils")
                    .args(["check", "-f", format])
                    .arg(&path),
            );
            assert!(check.contains("No errors were found"), "{file}: {check}");
        }
        let info = stdout_of(
            tool("qemu-img", "qemu-utils")
                .args(["info", "--output=json", "-f", format])
                .arg(&path),
        );
        let size = std::fs::metadata(&raw).unwrap().len();
        assert!(
            info.contains(&format!("\"virtual-size\": {size},")),
            "{file}: {info}"
        );
        let compare = stdout_of(
            tool("qemu-img", "qemu-utils")
                .args(["compare", "-f", "raw", "-F", format])
                .arg(&raw)
                .arg(&path),
        );
        assert!(
            compare.contains("Images are identical"),
            "{file}: {compare}"
        );
    }
}

/// xorriso reads the El Torito catalog kiln wrote, and sfdisk the hybrid
/// MBR; the EFI image is a clean FAT volume.
#[test]
fn isos_have_the_boot_records_xorriso_expects() {
    let xorriso = |file: &str| {
        stdout_of(
            tool("xorriso", "xorriso")
                .arg("-indev")
                .arg(output(&format!("{NAME}{file}")))
                .args(["-report_el_torito", "plain", "-find", "/"]),
        )
    };
    let efi = xorriso("-efi.iso");
    assert!(
        efi.lines()
            .any(|l| l.starts_with("El Torito boot img :   1  UEFI  y   none")),
        "{efi}"
    );
    assert!(efi.contains("/BOOT/EFIBOOT.IMG"), "{efi}");
    let bios = xorriso(".iso");
    assert!(
        bios.lines().any(
            |l| l.starts_with("El Torito boot img :   1  BIOS  y   none") && l.contains(" 4 ")
        ),
        "{bios}"
    );
    assert!(
        bios.contains("boot-info-table isohybrid-suitable"),
        "{bios}"
    );
    for path in [
        "'/ISOLINUX/ISOLINUX.BIN'",
        "'/ISOLINUX/LDLINUX.C32'",
        "'/ISOLINUX/ISOLINUX.CFG'",
        "'/KERNEL'",
        "'/INITRD.IMG'",
    ] {
        assert!(bios.contains(path), "{path} missing: {bios}");
    }
    for file in ["-efi.iso", ".iso", "-bios.img"] {
        let path = output(&format!("{NAME}{file}"));
        let verify = stdout_of(tool("sfdisk", "fdisk").arg("--verify").arg(&path));
        assert!(verify.contains("No errors detected"), "{file}: {verify}");
    }
    // The MBR's one partition is the EFI image.
    let iso = output(&format!("{NAME}-efi.iso"));
    let dump = stdout_of(tool("sfdisk", "fdisk").arg("-d").arg(&iso));
    let line = dump
        .lines()
        .find(|l| l.contains("type=ef"))
        .unwrap_or_else(|| panic!("no EFI partition: {dump}"));
    let field = |name: &str| -> u64 {
        let at = line.find(name).unwrap() + name.len();
        line[at..]
            .trim_start()
            .split(',')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (start, size) = (field("start="), field("size="));
    let bytes = std::fs::read(&iso).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("efiboot.img");
    std::fs::write(
        &image,
        &bytes[(start * 512) as usize..((start + size) * 512) as usize],
    )
    .unwrap();
    stdout_of(tool("fsck.vfat", "dosfstools").arg("-n").arg(&image));
}

#[test]
fn iso_efi_boots_under_ovmf() {
    let (_dir, fw) = ovmf();
    boots(fw, Media::Cdrom(output(&format!("{NAME}-efi.iso"))));
}

/// The hybrid image as a virtio disk rather than a CD. OVMF may reach the
/// EFI image through El Torito or through the MBR's partition of type
/// 0xEF; both point at the same FAT image.
#[test]
fn iso_efi_boots_under_ovmf_as_a_disk() {
    disk_boots("-efi.iso", "raw");
}

#[test]
fn iso_bios_boots_under_seabios() {
    boots(
        Firmware::SeaBios,
        Media::Cdrom(output(&format!("{NAME}.iso"))),
    );
}

#[test]
fn raw_bios_boots_under_seabios() {
    boots(
        Firmware::SeaBios,
        Media::Disk {
            path: output(&format!("{NAME}-bios.img")),
            format: "raw".into(),
        },
    );
}

fn disk_boots(file: &str, format: &str) {
    let (_dir, fw) = ovmf();
    boots(
        fw,
        Media::Disk {
            path: output(&format!("{NAME}{file}")),
            format: format.into(),
        },
    );
}

#[test]
fn qcow2_efi_boots_under_ovmf() {
    disk_boots("-efi.qcow2", "qcow2");
}

#[test]
fn vhd_boots_under_ovmf() {
    disk_boots(".vhd", "vpc");
}

#[test]
fn dynamic_vhd_boots_under_ovmf() {
    disk_boots("-dynamic.vhd", "vpc");
}

#[test]
fn vmdk_boots_under_ovmf() {
    disk_boots(".vmdk", "vmdk");
}

#[test]
fn uki_boots_under_ovmf() {
    let uki = output(&format!("{NAME}.efi"));
    let (_dir, fw) = ovmf();
    boots(fw, Media::Kernel(uki));
}

#[test]
fn raw_efi_boots_under_ovmf() {
    disk_boots("-efi.img", "raw");
}
