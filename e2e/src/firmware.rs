//! QEMU command lines for booting disk images, ISOs and UKIs through
//! firmware (OVMF or SeaBIOS) rather than `-kernel`/`-initrd`, for
//! [`crate::qemu::Vm::start`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// OVMF's code and variable store, as Debian's `ovmf` installs them.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Which firmware starts the machine.
#[derive(Debug, Clone)]
pub enum Firmware {
    /// UEFI; `vars` is a private copy of the variable store, made by
    /// [`Firmware::ovmf`].
    Ovmf { vars: PathBuf },
    /// QEMU's default BIOS.
    SeaBios,
}

impl Firmware {
    /// OVMF with a fresh variable store in `dir`.
    pub fn ovmf(dir: &Path) -> anyhow::Result<Firmware> {
        for file in [OVMF_CODE, OVMF_VARS] {
            if !Path::new(file).is_file() {
                bail!("{file} is missing: run `.ci/install-deps` (it installs ovmf)");
            }
        }
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars)
            .with_context(|| format!("cannot copy {OVMF_VARS} to {}", vars.display()))?;
        Ok(Firmware::Ovmf { vars })
    }
}

/// What is booted.
#[derive(Debug, Clone)]
pub enum Media {
    /// An EFI executable handed to the firmware by QEMU's `-kernel`.
    Kernel(PathBuf),
    /// A virtio disk in QEMU's `format` (`raw`, `qcow2`, `vpc`, `vmdk`),
    /// opened with `snapshot=on` so the file is never written.
    Disk { path: PathBuf, format: String },
    /// A CD-ROM on the q35 AHCI controller.
    Cdrom(PathBuf),
}

/// The arguments for a q35/TCG machine with `-nodefaults`, the serial
/// console on stdout, `-no-reboot`, `memory_mib` of RAM, `firmware` and
/// `media`.
pub fn args(firmware: &Firmware, media: &Media, memory_mib: u32) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-smp",
        "1",
        "-m",
        &memory_mib.to_string(),
        "-nographic",
        "-nodefaults",
        "-serial",
        "stdio",
        "-no-reboot",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let mut push = |a: &str, b: String| {
        args.push(a.into());
        args.push(b.into());
    };
    if let Firmware::Ovmf { vars } = firmware {
        push(
            "-drive",
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        );
        push(
            "-drive",
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        );
    }
    match media {
        Media::Kernel(path) => push("-kernel", path.display().to_string()),
        Media::Disk { path, format } => push(
            "-drive",
            format!(
                "if=virtio,format={format},snapshot=on,file={}",
                path.display()
            ),
        ),
        Media::Cdrom(path) => {
            push(
                "-drive",
                format!(
                    "if=none,id=cd,media=cdrom,format=raw,readonly=on,file={}",
                    path.display()
                ),
            );
            push("-device", "ide-cd,drive=cd,bus=ide.0".into());
        }
    }
    args
}
