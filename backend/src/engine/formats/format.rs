//! Output format names, as `linuxkit build --format` spells them, and the
//! files each one writes.

use std::fmt;
use std::path::{Path, PathBuf};

/// A format kiln writes natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    KernelInitrd,
    KernelIso,
    KernelSquashfs,
    Tar,
    TarKernelInitrd,
    Docker,
    Oci,
    Uki,
    RawEfi,
    Qcow2Efi,
    Vhd,
    DynamicVhd,
    Vmdk,
    IsoEfi,
    IsoBios,
    RawBios,
}

/// linuxkit's format names that kiln does not write (yet), so the error can
/// say so rather than call the name unknown.
const LINUXKIT_ONLY: &[&str] = &[
    "aws",
    "gcp",
    "iso-efi-initrd",
    "kernel+erofs",
    "qcow2-bios",
    "rpi3",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown format `{0}`; kiln writes {known}", known = Format::names().join(", "))]
    Unknown(String),
    #[error("format `{0}` is a linuxkit format kiln cannot write yet; kiln writes {known}", known = Format::names().join(", "))]
    NotYet(String),
    #[error("`{0}` streams its output and must be the only format when `-o` is given")]
    NotAlone(Format),
    #[error("`{0}` and `{1}` both write <name>.iso; build them with different --name")]
    SameFile(Format, Format),
    #[error("`-o` only works with the streamable formats `tar` and `docker`, not `{0}`")]
    NotStreamable(Format),
}

impl Format {
    pub const ALL: [Format; 16] = [
        Format::Docker,
        Format::DynamicVhd,
        Format::IsoBios,
        Format::IsoEfi,
        Format::KernelInitrd,
        Format::KernelIso,
        Format::KernelSquashfs,
        Format::Oci,
        Format::Qcow2Efi,
        Format::RawBios,
        Format::RawEfi,
        Format::Tar,
        Format::TarKernelInitrd,
        Format::Uki,
        Format::Vhd,
        Format::Vmdk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::KernelInitrd => "kernel+initrd",
            Format::KernelIso => "kernel+iso",
            Format::KernelSquashfs => "kernel+squashfs",
            Format::Tar => "tar",
            Format::TarKernelInitrd => "tar-kernel-initrd",
            Format::Docker => "docker",
            Format::Oci => "oci",
            Format::Uki => "uki",
            Format::RawEfi => "raw-efi",
            Format::Qcow2Efi => "qcow2-efi",
            Format::Vhd => "vhd",
            Format::DynamicVhd => "dynamic-vhd",
            Format::Vmdk => "vmdk",
            Format::IsoEfi => "iso-efi",
            Format::IsoBios => "iso-bios",
            Format::RawBios => "raw-bios",
        }
    }

    /// What the format writes, for `kiln build --format help`.
    pub fn description(self) -> &'static str {
        match self {
            Format::KernelInitrd => "the kernel, a gzip'd cpio initrd of the root filesystem and the command line",
            Format::KernelIso => "the kernel, the command line and the root filesystem without boot/* as ISO 9660 with Rock Ridge and Joliet, label LinuxKit, no boot loader (<name>.iso)",
            Format::KernelSquashfs => "the kernel, the command line and the root filesystem without boot/* as a gzip squashfs (<name>-squashfs.img)",
            Format::Tar => "the root filesystem as one tar (streamable with -o)",
            Format::TarKernelInitrd => "a tar of the kernel, initrd and command line",
            Format::Docker => "the tar with a Dockerfile, for `docker import` (streamable with -o)",
            Format::Oci => "an OCI image layout tar of the root filesystem",
            Format::Uki => "a Unified Kernel Image: the EFI stub (--efi-stub) with kernel, initrd, command line and os-release as PE sections",
            Format::RawEfi => "a GPT disk whose FAT32 ESP holds the UKI as EFI/BOOT/BOOTX64.EFI (BOOTAA64.EFI on arm64); --size sets the disk size",
            Format::Qcow2Efi => "the raw-efi disk as qcow2 (only clusters with data stored)",
            Format::Vhd => "the raw-efi disk as a fixed VHD",
            Format::DynamicVhd => "the raw-efi disk as a dynamic VHD (<name>-dynamic.vhd, only blocks with data stored)",
            Format::Vmdk => "the raw-efi disk as a monolithic sparse VMDK",
            Format::IsoEfi => "ISO 9660 whose El Torito EFI image is a FAT32 volume holding the UKI; hybrid (an MBR partition of type 0xEF points at that image)",
            Format::IsoBios => "ISO 9660 with ISOLINUX (--bios-loader) booting the kernel and initrd; isohybrid",
            Format::RawBios => "a BIOS disk image: the isohybrid iso-bios image, booted through ISOLINUX's MBR (<name>-bios.img)",
        }
    }

    /// Whether the format boots through the UKI, so needs an EFI stub.
    pub fn needs_efi_stub(self) -> bool {
        matches!(
            self,
            Format::Uki
                | Format::RawEfi
                | Format::Qcow2Efi
                | Format::Vhd
                | Format::DynamicVhd
                | Format::Vmdk
                | Format::IsoEfi
        )
    }

    /// Whether the format boots through ISOLINUX, so needs the BIOS loader.
    pub fn needs_bios_loader(self) -> bool {
        matches!(self, Format::IsoBios | Format::RawBios)
    }

    /// Whether the format needs the kernel, initrd and command line.
    pub fn needs_boot_parts(self) -> bool {
        self.needs_efi_stub() || self.needs_bios_loader()
    }

    fn names() -> Vec<&'static str> {
        Format::ALL.iter().map(|f| f.name()).collect()
    }

    pub fn parse(name: &str) -> Result<Format, FormatError> {
        if let Some(f) = Format::ALL.into_iter().find(|f| f.name() == name) {
            return Ok(f);
        }
        if LINUXKIT_ONLY.contains(&name) {
            Err(FormatError::NotYet(name.to_owned()))
        } else {
            Err(FormatError::Unknown(name.to_owned()))
        }
    }

    /// Parses repeated and comma-separated `--format` values, dropping
    /// repeats. With none given the default is `kernel+initrd`, or `tar`
    /// when output goes to `-o`.
    pub fn parse_list(values: &[String], to_stream: bool) -> Result<Vec<Format>, FormatError> {
        let mut formats = Vec::new();
        for name in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            if name.is_empty() {
                continue;
            }
            let f = Format::parse(name)?;
            if !formats.contains(&f) {
                formats.push(f);
            }
        }
        if formats.contains(&Format::KernelIso) && formats.contains(&Format::IsoBios) {
            return Err(FormatError::SameFile(Format::IsoBios, Format::KernelIso));
        }
        if formats.is_empty() {
            formats.push(if to_stream {
                Format::Tar
            } else {
                Format::KernelInitrd
            });
        }
        if to_stream {
            if let Some(f) = formats.iter().find(|f| !f.streamable()) {
                return Err(FormatError::NotStreamable(*f));
            }
            if formats.len() > 1 {
                return Err(FormatError::NotAlone(formats[0]));
            }
        }
        Ok(formats)
    }

    /// `tar` and `docker` can be written to standard output.
    pub fn streamable(self) -> bool {
        matches!(self, Format::Tar | Format::Docker)
    }

    /// The files this format writes for `name` in `dir`, in linuxkit's naming.
    /// `kernel+initrd` writes each of its three files only when non-empty.
    pub fn outputs(self, dir: &Path, name: &str) -> Vec<PathBuf> {
        let file = |suffix: &str| dir.join(format!("{name}{suffix}"));
        match self {
            Format::KernelInitrd => vec![file("-kernel"), file("-initrd.img"), file("-cmdline")],
            Format::KernelSquashfs => {
                vec![file("-kernel"), file("-cmdline"), file("-squashfs.img")]
            }
            Format::KernelIso => vec![file("-kernel"), file("-cmdline"), file(".iso")],
            Format::Tar => vec![file(".tar")],
            Format::TarKernelInitrd => vec![file("-initrd.tar")],
            Format::Docker => vec![file(".docker")],
            Format::Oci => vec![file("-oci.tar")],
            Format::Uki => vec![file(".efi")],
            Format::RawEfi => vec![file("-efi.img")],
            Format::Qcow2Efi => vec![file("-efi.qcow2")],
            Format::Vhd => vec![file(".vhd")],
            Format::DynamicVhd => vec![file("-dynamic.vhd")],
            Format::Vmdk => vec![file(".vmdk")],
            Format::IsoEfi => vec![file("-efi.iso")],
            Format::IsoBios => vec![file(".iso")],
            Format::RawBios => vec![file("-bios.img")],
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(values: &[&str], stream: bool) -> Result<Vec<Format>, FormatError> {
        let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        Format::parse_list(&values, stream)
    }

    #[test]
    fn parses_like_linuxkit() {
        assert_eq!(list(&[], false), Ok(vec![Format::KernelInitrd]));
        assert_eq!(list(&[], true), Ok(vec![Format::Tar]));
        assert_eq!(
            list(&["tar,kernel+initrd", "tar"], false),
            Ok(vec![Format::Tar, Format::KernelInitrd])
        );
        assert_eq!(
            list(&["aws"], false),
            Err(FormatError::NotYet("aws".into()))
        );
        assert_eq!(
            list(&["raw"], false),
            Err(FormatError::Unknown("raw".into()))
        );
        assert_eq!(
            list(&["kernel+initrd"], true),
            Err(FormatError::NotStreamable(Format::KernelInitrd))
        );
        assert_eq!(
            list(&["kernel+iso,iso-bios"], false),
            Err(FormatError::SameFile(Format::IsoBios, Format::KernelIso))
        );
        assert_eq!(
            list(&["tar", "docker"], true),
            Err(FormatError::NotAlone(Format::Tar))
        );
    }

    #[test]
    fn names_outputs_as_linuxkit() {
        let out = Format::KernelInitrd.outputs(Path::new("/o"), "linuxkit");
        assert_eq!(
            out,
            [
                PathBuf::from("/o/linuxkit-kernel"),
                PathBuf::from("/o/linuxkit-initrd.img"),
                PathBuf::from("/o/linuxkit-cmdline")
            ]
        );
        assert_eq!(
            Format::TarKernelInitrd.outputs(Path::new("."), "x"),
            [PathBuf::from("./x-initrd.tar")]
        );
    }
}
