//! Bootable disk and ISO formats, written in-process: UKIs, GPT disks with
//! a FAT32 ESP, and the qcow2/VHD/VMDK containers around them. Everything
//! is a function of the kernel, initrd, command line and boot loader
//! bytes: GUIDs and volume ids are derived from a digest of them and every
//! timestamp is fixed.

pub mod fat;
pub mod gpt;
pub mod iso;
pub mod isofs;
pub mod loader;
pub mod qcow2;
pub mod sparse;
pub mod uki;
pub mod vhd;
pub mod vmdk;

use sha2::{Digest as _, Sha256};

use self::fat::FatFile;
use self::gpt::{Guid, Partition, FIRST_PARTITION, SECTOR};
use self::sparse::SparseDisk;

const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("format `{format}` needs {what}; name an image holding it with {flag} or in $KILN_HOME/config.toml")]
    NoLoader {
        format: &'static str,
        what: &'static str,
        flag: &'static str,
    },
    #[error("boot loader image `{image}`: {message}")]
    Loader { image: String, message: String },
    #[error("boot loader image `{image}` has no file named `{file}`")]
    Missing { image: String, file: String },
    #[error("no EFI boot support for architecture `{0}`")]
    Arch(String),
    #[error("the build has no kernel (`kernel.image`), so there is nothing to boot")]
    NoKernel,
    #[error(transparent)]
    Uki(#[from] uki::UkiError),
    #[error(transparent)]
    Fat(#[from] fat::FatError),
    #[error(transparent)]
    Iso(#[from] iso::IsoError),
    #[error("--size {size}: the disk needs at least {needed} bytes")]
    TooSmall { size: u64, needed: u64 },
    #[error("writing the {what}: {error}")]
    Write {
        what: &'static str,
        error: std::io::Error,
    },
}

/// What to boot: the kernel, the initrd (microcode first, as written by
/// `kernel+initrd`) and the command line.
#[derive(Debug, Clone)]
pub struct BootParts {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
}

/// The `.osrel` of kiln's UKIs.
pub const OS_RELEASE: &str =
    "NAME=\"LinuxKit\"\nID=linuxkit\nPRETTY_NAME=\"LinuxKit (built by kiln)\"\n";

/// Parses linuxkit's `--size`: `NNNM`, `NNNG` or a bare number of GiB.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last()? {
        (i, 'M' | 'm') => (&t[..i], MIB),
        (i, 'G' | 'g') => (&t[..i], 1 << 30),
        _ => (t, 1 << 30),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// Builds the UKI of `parts` on `stub`.
pub fn build_uki(stub: &[u8], parts: &BootParts) -> Result<Vec<u8>, BootError> {
    Ok(uki::build(
        stub,
        &uki::Parts {
            osrel: OS_RELEASE.as_bytes(),
            cmdline: parts.cmdline.as_bytes(),
            initrd: &parts.initrd,
            linux: &parts.kernel,
            ..uki::Parts::default()
        },
    )?)
}

/// A digest of the files a disk is made of, the seed of its GUIDs.
pub fn seed(files: &[FatFile<'_>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update((f.path.len() as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update((f.data.len() as u64).to_le_bytes());
        h.update(f.data);
    }
    h.finalize().into()
}

fn volume_id(seed: &[u8]) -> u32 {
    let g = Guid::derive(seed, "fat-volume-id").0;
    u32::from_le_bytes([g[0], g[1], g[2], g[3]])
}

/// Bytes a FAT32 volume needs for `files`, in whole MiB.
fn fat_size(files: &[FatFile<'_>]) -> u64 {
    let data: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    (data + fat::overhead(files))
        .max(fat::MIN_FAT32)
        .div_ceil(MIB)
        * MIB
}

/// A FAT32 image holding `files` and nothing else (El Torito's EFI image).
pub fn fat_image(files: &[FatFile<'_>]) -> Result<Vec<u8>, BootError> {
    let len = fat_size(files);
    let mut disk = SparseDisk::new(len);
    fat::write(
        &mut disk,
        0,
        len,
        0,
        volume_id(&seed(files)),
        "EFIBOOT",
        files,
    )?;
    let mut bytes = vec![0u8; len as usize];
    disk.read_at(0, &mut bytes);
    Ok(bytes)
}

/// The `iso-efi` image: the UKI in a FAT image booted through El Torito,
/// with an MBR whose one partition (type 0xEF) is that image, so it boots
/// from a disk too.
pub fn iso_efi(uki: &[u8], removable: &str) -> Result<SparseDisk, BootError> {
    let files = [FatFile {
        path: removable,
        data: uki,
    }];
    let image = fat_image(&files)?;
    let seed = seed(&files);
    let (iso, _) = iso::write(
        "LINUXKIT",
        &[iso::IsoFile {
            path: "boot/efiboot.img",
            data: &image,
        }],
        &iso::Boot {
            efi: Some("boot/efiboot.img"),
            ..iso::Boot::default()
        },
        volume_id(&seed),
    )?;
    Ok(iso)
}

/// The `iso-bios` image: ISOLINUX booting the kernel and initrd, made
/// hybrid with ISOLINUX's MBR so the same bytes boot from a disk
/// (`raw-bios`).
pub fn iso_bios(parts: &BootParts, isolinux: &loader::Isolinux) -> Result<SparseDisk, BootError> {
    let config = format!(
        "DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  LINUX /kernel\n  INITRD /initrd.img\n  APPEND {}\n",
        parts.cmdline
    );
    let files = [
        iso::IsoFile {
            path: "isolinux/isolinux.bin",
            data: &isolinux.isolinux_bin,
        },
        iso::IsoFile {
            path: "isolinux/ldlinux.c32",
            data: &isolinux.ldlinux_c32,
        },
        iso::IsoFile {
            path: "isolinux/isolinux.cfg",
            data: config.as_bytes(),
        },
        iso::IsoFile {
            path: "kernel",
            data: &parts.kernel,
        },
        iso::IsoFile {
            path: "initrd.img",
            data: &parts.initrd,
        },
    ];
    let fat_view: Vec<FatFile<'_>> = files
        .iter()
        .map(|f| FatFile {
            path: f.path,
            data: f.data,
        })
        .collect();
    let (iso, _) = iso::write(
        "LINUXKIT",
        &files,
        &iso::Boot {
            bios: Some("isolinux/isolinux.bin"),
            isohybrid_mbr: Some(&isolinux.isohdpfx),
            ..iso::Boot::default()
        },
        volume_id(&seed(&fat_view)),
    )?;
    Ok(iso)
}

/// A GPT disk with one ESP (FAT32) holding `files`. With `size` the disk
/// has that size and the ESP fills it; without, the ESP is just big
/// enough (at least [`fat::MIN_FAT32`]) and the disk 2 MiB larger.
pub fn esp_disk(files: &[FatFile<'_>], size: Option<u64>) -> Result<SparseDisk, BootError> {
    let needed = fat_size(files) + 2 * MIB;
    let disk_len = match size {
        Some(s) if s.div_ceil(MIB) * MIB < needed => {
            return Err(BootError::TooSmall { size: s, needed })
        }
        Some(s) => s.div_ceil(MIB) * MIB,
        None => needed,
    };
    let seed = seed(files);
    let sectors = disk_len / SECTOR;
    let last = gpt::last_usable(sectors);
    let mut disk = SparseDisk::new(disk_len);
    let esp = Partition {
        kind: gpt::ESP,
        id: Guid::derive(&seed, "esp"),
        first: FIRST_PARTITION,
        last,
        attributes: 0,
        name: "EFI System".into(),
    };
    gpt::write(&mut disk, Guid::derive(&seed, "disk"), &[esp], None);
    let start = FIRST_PARTITION * SECTOR;
    let len = (last + 1 - FIRST_PARTITION) * SECTOR;
    fat::write(
        &mut disk,
        start,
        len,
        FIRST_PARTITION as u32,
        volume_id(&seed),
        "EFI",
        files,
    )?;
    Ok(disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_linuxkit() {
        assert_eq!(parse_size("512M"), Some(512 * MIB));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn esp_disk_is_sized_and_reproducible() {
        let files = [FatFile {
            path: "EFI/BOOT/BOOTX64.EFI",
            data: &[1u8; 100_000],
        }];
        let a = esp_disk(&files, None).unwrap();
        assert_eq!(a.len() % MIB, 0);
        let b = esp_disk(&files, Some(64 * MIB)).unwrap();
        assert_eq!(b.len(), 64 * MIB);
        assert!(matches!(
            esp_disk(&files, Some(MIB)),
            Err(BootError::TooSmall { .. })
        ));
        let again = esp_disk(&files, None).unwrap();
        let (mut x, mut y) = (vec![0u8; a.len() as usize], vec![0u8; a.len() as usize]);
        a.read_at(0, &mut x);
        again.read_at(0, &mut y);
        assert!(x == y);
    }
}
