//! Boot loaders come from OCI images named on the command line or in
//! kiln's configuration, never from host files: the EFI stub a UKI is
//! built on, and the ISOLINUX/SYSLINUX files of the BIOS formats. Files
//! are found by name anywhere in the image (Debian puts them in
//! `usr/lib/systemd/boot/efi/`, `usr/lib/ISOLINUX/` and
//! `usr/lib/syslinux/`).

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::engine::flatten::{self, FlattenOptions, LayerSource, Role};
use crate::engine::fs::{Entry, Kind, Sink};
use crate::engine::store::{ResolvedImage, Store};

use super::BootError;

/// An image holding boot loader files, with the name it was given by.
#[derive(Debug, Clone)]
pub struct LoaderImage {
    pub name: String,
    pub image: ResolvedImage,
}

/// Keeps the regular files whose base name is in `wanted`; the first
/// (shortest) path wins when a name occurs twice.
struct Pick<'a> {
    wanted: &'a [&'a str],
    found: BTreeMap<String, (String, Vec<u8>)>,
}

impl Sink for Pick<'_> {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let base = entry.path.rsplit('/').next().unwrap_or_default();
        if !matches!(entry.kind, Kind::File) || !self.wanted.contains(&base) {
            return Ok(());
        }
        if let Some((path, _)) = self.found.get(base) {
            if path.len() <= entry.path.len() {
                return Ok(());
            }
        }
        let mut bytes = Vec::with_capacity(entry.size as usize);
        data.take(entry.size).read_to_end(&mut bytes)?;
        self.found
            .insert(base.to_owned(), (entry.path.clone(), bytes));
        Ok(())
    }
}

/// Reads the files named `wanted` (base names) out of `loader`.
pub fn pick(
    store: &Store,
    loader: &LoaderImage,
    wanted: &[&str],
    opts: &FlattenOptions,
) -> Result<BTreeMap<String, Vec<u8>>, BootError> {
    let mut sink = Pick {
        wanted,
        found: BTreeMap::new(),
    };
    let layers = LayerSource::for_image(store, &loader.image);
    flatten::flatten(
        &layers,
        opts,
        Role::Raw,
        "",
        (&loader.name, "boot loader"),
        &mut sink,
    )
    .map_err(|e| BootError::Loader {
        image: loader.name.clone(),
        message: e.to_string(),
    })?;
    Ok(sink
        .found
        .into_iter()
        .map(|(name, (_, bytes))| (name, bytes))
        .collect())
}

/// The EFI stub file name for an architecture (`amd64`, `arm64`).
pub fn stub_name(arch: &str) -> Option<&'static str> {
    match arch {
        "amd64" => Some("linuxx64.efi.stub"),
        "arm64" => Some("linuxaa64.efi.stub"),
        _ => None,
    }
}

/// The removable-media boot path for an architecture.
pub fn removable_path(arch: &str) -> Option<&'static str> {
    match arch {
        "amd64" => Some("EFI/BOOT/BOOTX64.EFI"),
        "arm64" => Some("EFI/BOOT/BOOTAA64.EFI"),
        _ => None,
    }
}

/// Reads the EFI stub for `arch` out of `loader`.
pub fn efi_stub(
    store: &Store,
    loader: &LoaderImage,
    arch: &str,
    opts: &FlattenOptions,
) -> Result<Vec<u8>, BootError> {
    let name = stub_name(arch).ok_or_else(|| BootError::Arch(arch.to_owned()))?;
    let mut found = pick(store, loader, &[name], opts)?;
    found.remove(name).ok_or_else(|| BootError::Missing {
        image: loader.name.clone(),
        file: name.to_owned(),
    })
}

/// The ISOLINUX files of the BIOS formats.
#[derive(Debug, Clone)]
pub struct Isolinux {
    pub isolinux_bin: Vec<u8>,
    pub ldlinux_c32: Vec<u8>,
    /// The hybrid MBR (`isohdpfx.bin`), 432 bytes.
    pub isohdpfx: Vec<u8>,
}

pub fn isolinux(
    store: &Store,
    loader: &LoaderImage,
    opts: &FlattenOptions,
) -> Result<Isolinux, BootError> {
    let names = ["isolinux.bin", "ldlinux.c32", "isohdpfx.bin"];
    let mut found = pick(store, loader, &names, opts)?;
    let mut take = |name: &str| {
        found.remove(name).ok_or_else(|| BootError::Missing {
            image: loader.name.clone(),
            file: name.to_owned(),
        })
    };
    Ok(Isolinux {
        isolinux_bin: take("isolinux.bin")?,
        ldlinux_c32: take("ldlinux.c32")?,
        isohdpfx: take("isohdpfx.bin")?,
    })
}
