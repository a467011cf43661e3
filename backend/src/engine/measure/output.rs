//! Measuring build outputs: each bootable artifact gets
//! `STEM-measurements.json` (and, with a signer, `.dsse`) beside it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use kiln_signer::Signer;

use super::container::{Container, GuestDisk};
use super::manifest::Manifest;
use super::signed::{self, SignedError};
use super::{measure_disk, measure_iso, measure_uki, measure_wrapped_disk, MeasureError, Options};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: {error}", path.display())]
    Measure { path: PathBuf, error: MeasureError },
    #[error("{}: cannot read EFI/BOOT/BOOTX64.EFI from the EFI system partition or El Torito image: {message}", path.display())]
    NoBootLoader { path: PathBuf, message: String },
    #[error("{}: signing the manifest: {error}", path.display())]
    Sign { path: PathBuf, error: SignedError },
}

/// What a file is, for measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootable {
    /// A unified kernel image.
    Uki,
    /// A GPT disk with an EFI system partition, raw or in a container.
    EfiDisk(Container),
    /// An ISO 9660 image with an El Torito EFI boot image, booted as a
    /// CD-ROM.
    EfiIso,
}

/// Looks at a file's first bytes: a PE image with a `.linux` section is a
/// UKI, a disk (raw, or in a qcow2, VHD or VMDK container) with a GPT is
/// an EFI disk; anything else is not measured.
pub fn sniff(path: &Path) -> io::Result<Option<Bootable>> {
    let mut f = File::open(path)?;
    let mut head = vec![0u8; 4096];
    let n = read_up_to(&mut f, &mut head)?;
    head.truncate(n);
    if head.starts_with(b"MZ") {
        // Any PE image with a `.linux` section; kernels and stubs are not.
        let bytes = fs::read(path)?;
        let uki = super::pe::Pe::parse(&bytes)
            .map(|pe| pe.section(".linux").is_some())
            .unwrap_or(false);
        return Ok(uki.then_some(Bootable::Uki));
    }
    // A hybrid ISO may carry a GPT too, but it is measured as a CD-ROM:
    // through El Torito's EFI entry, or not at all (BIOS only).
    if super::eltorito::is_iso(&mut f)? {
        return Ok(super::eltorito::efi_image(&mut f)
            .is_ok()
            .then_some(Bootable::EfiIso));
    }
    let container = Container::sniff(&mut f)?;
    let mut disk = GuestDisk::open(f, container)?;
    if disk.len() < 520 {
        return Ok(None);
    }
    let mut gpt = [0u8; 8];
    disk.seek(SeekFrom::Start(512))?;
    disk.read_exact(&mut gpt)?;
    Ok((&gpt == b"EFI PART").then_some(Bootable::EfiDisk(container)))
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Measures a UKI, or an EFI disk through the UKI its ESP boots.
pub fn measure_file(path: &Path, kind: Bootable, opts: &Options) -> Result<Manifest, OutputError> {
    let io_err = |error| OutputError::Io {
        path: path.to_owned(),
        error,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let measured = match kind {
        Bootable::Uki => {
            let bytes = fs::read(path).map_err(io_err)?;
            measure_uki(&name, &bytes, opts)
        }
        Bootable::EfiDisk(container) => {
            let file = File::open(path).map_err(io_err)?;
            let mut disk = GuestDisk::open(file, container).map_err(io_err)?;
            let uki =
                super::esp::boot_loader(&mut disk).map_err(|e| OutputError::NoBootLoader {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            if container == Container::Raw {
                measure_disk(&name, &mut disk, &uki, opts)
            } else {
                let mut file = File::open(path).map_err(io_err)?;
                measure_wrapped_disk(&name, container.format(), &mut file, &mut disk, &uki, opts)
            }
        }
        Bootable::EfiIso => {
            let mut file = File::open(path).map_err(io_err)?;
            let uki = super::eltorito::efi_image(&mut file)
                .map_err(|e| e.to_string())
                .and_then(|(start, len)| {
                    super::esp::loader_in(&mut file, start, len).map_err(|e| e.to_string())
                })
                .map_err(|message| OutputError::NoBootLoader {
                    path: path.to_owned(),
                    message,
                })?;
            measure_iso(&name, &mut file, &uki, opts)
        }
    };
    measured.map_err(|error| OutputError::Measure {
        path: path.to_owned(),
        error,
    })
}

/// `boot.efi` → `boot-measurements.json`, `boot-efi.img` →
/// `boot-efi-measurements.json`; the containers keep their extension, so
/// that `boot.vmdk` and `boot-efi.qcow2` do not take the names of `boot.efi`
/// and `boot-efi.img`: `boot-vmdk-measurements.json`,
/// `boot-efi-qcow2-measurements.json`.
pub fn manifest_path(artifact: &Path) -> PathBuf {
    let stem = artifact
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = match artifact.extension().and_then(|e| e.to_str()) {
        None | Some("efi" | "img") => stem,
        Some(ext) => format!("{stem}-{ext}"),
    };
    artifact.with_file_name(format!("{stem}-measurements.json"))
}

/// The envelope beside a manifest: `X-measurements.json.dsse`.
pub fn envelope_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".dsse");
    PathBuf::from(name)
}

/// Writes the manifest (and its envelope, with a signer) beside `artifact`;
/// returns the files written.
pub fn write_beside(
    artifact: &Path,
    manifest: &Manifest,
    signer: Option<&dyn Signer>,
) -> Result<Vec<PathBuf>, OutputError> {
    let path = manifest_path(artifact);
    let bytes = manifest.to_bytes();
    let io_at = |p: &Path| {
        let p = p.to_owned();
        move |error| OutputError::Io { path: p, error }
    };
    fs::write(&path, &bytes).map_err(io_at(&path))?;
    let mut written = vec![path.clone()];
    if let Some(signer) = signer {
        let envelope = signed::sign(&bytes, signer).map_err(|error| OutputError::Sign {
            path: path.clone(),
            error,
        })?;
        let env_path = envelope_path(&path);
        fs::write(&env_path, envelope.to_json()).map_err(io_at(&env_path))?;
        written.push(env_path);
    }
    Ok(written)
}

/// Measures every bootable file among `outputs` (UKIs, EFI disks raw or
/// in a container, EFI ISOs; others are skipped) and writes each manifest beside
/// it. Returns the files written. Callers pass [`measured_outputs`].
pub fn measure_outputs(
    outputs: &[PathBuf],
    opts: &Options,
    signer: Option<&dyn Signer>,
) -> Result<Vec<PathBuf>, OutputError> {
    let mut written = Vec::new();
    for path in outputs {
        let kind = sniff(path).map_err(|error| OutputError::Io {
            path: path.clone(),
            error,
        })?;
        if let Some(kind) = kind {
            let manifest = measure_file(path, kind, opts)?;
            written.extend(write_beside(path, &manifest, signer)?);
        }
    }
    Ok(written)
}

/// The outputs of a build that get a manifest: those of `uki`, `raw-efi`,
/// the containers around the raw-efi disk (`qcow2-efi`, `vhd`,
/// `dynamic-vhd`, `vmdk`) and `iso-efi` (booted as a CD-ROM); not
/// `iso-bios`/`raw-bios`, which boot through BIOS.
pub fn measured_outputs(
    formats: &[crate::engine::formats::format::Format],
    dir: &Path,
    name: &str,
) -> Vec<PathBuf> {
    use crate::engine::formats::format::Format;
    formats
        .iter()
        .filter(|f| {
            matches!(
                f,
                Format::Uki
                    | Format::RawEfi
                    | Format::Qcow2Efi
                    | Format::Vhd
                    | Format::DynamicVhd
                    | Format::Vmdk
                    | Format::IsoEfi
            )
        })
        .flat_map(|f| f.outputs(dir, name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::formats::format::Format;

    #[test]
    fn every_efi_disk_output_gets_a_manifest_of_its_own_name() {
        let all = [
            Format::Uki,
            Format::RawEfi,
            Format::Qcow2Efi,
            Format::Vhd,
            Format::DynamicVhd,
            Format::Vmdk,
            Format::IsoEfi,
            Format::KernelInitrd,
        ];
        let outputs = measured_outputs(&all, Path::new("out"), "boot");
        let manifests: Vec<String> = outputs
            .iter()
            .map(|p| manifest_path(p).display().to_string())
            .collect();
        assert_eq!(
            manifests,
            [
                "out/boot-measurements.json",
                "out/boot-efi-measurements.json",
                "out/boot-efi-qcow2-measurements.json",
                "out/boot-vhd-measurements.json",
                "out/boot-dynamic-vhd-measurements.json",
                "out/boot-vmdk-measurements.json",
                "out/boot-efi-iso-measurements.json",
            ]
        );
    }
}
