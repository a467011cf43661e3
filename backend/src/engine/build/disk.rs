//! The bootable formats: the kernel, initrd and command line come from the
//! `kernel+initrd` writer (into a scratch directory), the boot loaders
//! from their images, and `engine::boot` assembles them.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::output::{self, InitrdOptions};
use super::plan::Section;
use super::rootfs::Inputs;
use super::BuildError;
use crate::engine::boot::fat::FatFile;
use crate::engine::boot::loader::{self, LoaderImage};
use crate::engine::boot::sparse::SparseDisk;
use crate::engine::boot::{self, BootError, BootParts};
use crate::engine::boot::{qcow2, vhd, vmdk};
use crate::engine::formats::format::Format;

/// Settings of the bootable formats.
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    /// `--size`, in bytes: the disk size of the disk formats.
    pub size: Option<u64>,
    /// The image holding the systemd EFI stub (`--efi-stub`).
    pub efi_stub: Option<LoaderImage>,
    /// The image holding ISOLINUX (`--bios-loader`).
    pub bios_loader: Option<LoaderImage>,
}

/// What the boot formats of one build share, made once on first use.
#[derive(Default)]
pub(super) struct Shared {
    parts: Option<BootParts>,
    uki: Option<Vec<u8>>,
    /// The raw-efi disk and the seed of its GUIDs.
    efi_disk: Option<(SparseDisk, [u8; 32])>,
    /// The isohybrid ISOLINUX image (iso-bios, raw-bios).
    bios_iso: Option<SparseDisk>,
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> BuildError + '_ {
    move |error| BuildError::Io {
        path: path.to_owned(),
        error,
    }
}

pub(super) struct Context<'a> {
    pub inputs: &'a Inputs<'a>,
    pub sections: &'a [Section],
    pub initrd: &'a InitrdOptions,
    pub boot: &'a BootOptions,
    pub arch: &'a str,
    pub dir: &'a Path,
    pub name: &'a str,
}

impl Context<'_> {
    fn parts<'s>(&self, shared: &'s mut Shared) -> Result<&'s BootParts, BuildError> {
        if shared.parts.is_none() {
            let scratch = self
                .dir
                .join(format!(".{}-boot-{}", self.name, std::process::id()));
            fs::create_dir_all(&scratch).map_err(io_at(&scratch))?;
            let result = (|| {
                let out = output::write_kernel_initrd(
                    self.inputs,
                    self.sections,
                    self.initrd,
                    &scratch,
                    "x",
                )?;
                let kernel = out.kernel.ok_or(BootError::NoKernel)?;
                let cmdline = match &out.cmdline {
                    Some(p) => fs::read_to_string(p).map_err(io_at(p))?,
                    None => String::new(),
                };
                Ok::<_, BuildError>(BootParts {
                    kernel: fs::read(&kernel).map_err(io_at(&kernel))?,
                    initrd: fs::read(&out.initrd).map_err(io_at(&out.initrd))?,
                    cmdline,
                })
            })();
            let _ = fs::remove_dir_all(&scratch);
            shared.parts = Some(result?);
        }
        Ok(shared.parts.as_ref().expect("set above"))
    }

    fn uki<'s>(&self, shared: &'s mut Shared, format: Format) -> Result<&'s [u8], BuildError> {
        if shared.uki.is_none() {
            let image = self.boot.efi_stub.as_ref().ok_or(BootError::NoLoader {
                format: format.name(),
                what: "a systemd EFI stub (linuxx64.efi.stub)",
                flag: "--efi-stub IMAGE",
            })?;
            let stub = loader::efi_stub(self.inputs.store, image, self.arch, &self.inputs.flatten)?;
            let parts = self.parts(shared)?;
            shared.uki = Some(boot::build_uki(&stub, parts)?);
        }
        Ok(shared.uki.as_deref().expect("set above"))
    }

    fn efi_disk<'s>(
        &self,
        shared: &'s mut Shared,
        format: Format,
    ) -> Result<&'s (SparseDisk, [u8; 32]), BuildError> {
        if shared.efi_disk.is_none() {
            let removable = loader::removable_path(self.arch)
                .ok_or_else(|| BootError::Arch(self.arch.to_owned()))?;
            let uki = self.uki(shared, format)?;
            let files = [FatFile {
                path: removable,
                data: uki,
            }];
            let disk = boot::esp_disk(&files, self.boot.size)?;
            let seed = boot::seed(&files);
            shared.efi_disk = Some((disk, seed));
        }
        Ok(shared.efi_disk.as_ref().expect("set above"))
    }

    /// Writes one boot format; returns the files written.
    pub fn write(&self, format: Format, shared: &mut Shared) -> Result<Vec<PathBuf>, BuildError> {
        let path = format.outputs(self.dir, self.name).remove(0);
        let tmp = path.with_extension("kiln-tmp");
        match format {
            Format::Uki => {
                let uki = self.uki(shared, format)?;
                fs::write(&tmp, uki).map_err(io_at(&tmp))?;
            }
            Format::RawEfi => {
                let (disk, _) = self.efi_disk(shared, format)?;
                disk.write_raw(&tmp).map_err(io_at(&tmp))?;
            }
            Format::Qcow2Efi | Format::Vhd | Format::DynamicVhd | Format::Vmdk => {
                let (disk, seed) = self.efi_disk(shared, format)?;
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut out = BufWriter::new(File::create(&tmp).map_err(io_at(&tmp))?);
                match format {
                    Format::Qcow2Efi => qcow2::write(disk, &mut out),
                    Format::Vhd => vhd::write_fixed(disk, seed, &mut out),
                    Format::DynamicVhd => vhd::write_dynamic(disk, seed, &mut out),
                    _ => vmdk::write(disk, &file_name, seed, &mut out),
                }
                .map_err(io_at(&tmp))?;
            }
            Format::IsoEfi => {
                let removable = loader::removable_path(self.arch)
                    .ok_or_else(|| BootError::Arch(self.arch.to_owned()))?;
                let uki = self.uki(shared, format)?;
                boot::iso_efi(uki, removable)?
                    .write_raw(&tmp)
                    .map_err(io_at(&tmp))?;
            }
            Format::IsoBios | Format::RawBios => {
                if shared.bios_iso.is_none() {
                    let image = self.boot.bios_loader.as_ref().ok_or(BootError::NoLoader {
                        format: format.name(),
                        what: "ISOLINUX (isolinux.bin, ldlinux.c32, isohdpfx.bin)",
                        flag: "--bios-loader IMAGE",
                    })?;
                    let isolinux =
                        loader::isolinux(self.inputs.store, image, &self.inputs.flatten)?;
                    let parts = self.parts(shared)?;
                    shared.bios_iso = Some(boot::iso_bios(parts, &isolinux)?);
                }
                let iso = shared.bios_iso.as_ref().expect("set above");
                iso.write_raw(&tmp).map_err(io_at(&tmp))?;
            }
            other => unreachable!("{other} is not a boot format"),
        }
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
        Ok(vec![path])
    }
}

/// Resolves a boot loader image by name, from the store or a registry, as
/// the spec's images are.
pub async fn resolve_loader(
    name: &str,
    platform: &crate::engine::store::Platform,
    store: &crate::engine::store::Store,
    source: &super::ImageSource,
) -> Result<LoaderImage, BuildError> {
    let reference = crate::engine::reference::Reference::parse(name)
        .map_err(|e| BuildError::BadImage {
            image: name.to_owned(),
            message: e.to_string(),
        })?
        .with_default_tag();
    let refs = [reference];
    let mut resolved = match source {
        super::ImageSource::Offline => store.resolve(&refs, platform)?,
        super::ImageSource::Registry { config, pull_all } => {
            if *pull_all {
                crate::engine::registry::pull(&refs, &platform.clone().into(), store, config)
                    .await?;
                store.resolve(&refs, platform)?
            } else {
                crate::engine::registry::pull_missing(&refs, platform, store, config).await?
            }
        }
    };
    Ok(LoaderImage {
        name: name.to_owned(),
        image: resolved.remove(0),
    })
}
