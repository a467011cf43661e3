//! FAT32 volumes for the ESP and El Torito's EFI image, written in one
//! pass: every directory and file gets a contiguous run of clusters, all
//! names are 8.3 short names (no long-name entries), every timestamp is
//! [`LINUXKIT_EPOCH`] and the volume id is given. Written by hand because
//! the `fatfs` crate (0.3) gives `.` and `..` long-name entries and a
//! wrong `..` cluster, which `fsck.vfat` rejects.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::sparse::SparseDisk;
use crate::engine::fs::LINUXKIT_EPOCH;

const SECTOR: u64 = 512;
const RESERVED: u64 = 32;
const FATS: u64 = 2;
const ENTRY: usize = 32;
/// Fewer clusters than this and the volume is FAT16 by definition.
const MIN_CLUSTERS: u64 = 65525;
const END_OF_CHAIN: u32 = 0x0fff_ffff;
const ATTR_DIR: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME: u8 = 0x08;

/// 2017-04-18 16:30:00, [`LINUXKIT_EPOCH`], as DOS date and time.
const DOS_DATE: u16 = ((2017 - 1980) << 9) | (4 << 5) | 18;
const DOS_TIME: u16 = (16 << 11) | (30 << 5);
const _: () = assert!(LINUXKIT_EPOCH == 1_492_533_000);

/// The smallest volume kiln makes: enough 512-byte clusters for FAT32.
pub const MIN_FAT32: u64 = 40 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatError {
    #[error("`{0}` is not an 8.3 FAT name")]
    Name(String),
    #[error("`{0}` is both a file and a directory")]
    Clash(String),
    #[error("the files need {needed} bytes but the FAT volume has {size}")]
    TooSmall { needed: u64, size: u64 },
}

/// One file to put on the volume, by `/`-separated path.
#[derive(Debug, Clone)]
pub struct FatFile<'a> {
    pub path: &'a str,
    pub data: &'a [u8],
}

/// Bytes a volume needs beyond its files' data: FATs, directories,
/// reserved sectors and rounding, at 512-byte clusters.
pub fn overhead(files: &[FatFile<'_>]) -> u64 {
    let data: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    data / 64 + (files.len() as u64 + 8) * 4096 + (2 << 20)
}

/// `name` as an 11-byte 8.3 directory name, upper-cased.
fn short_name(name: &str) -> Result<[u8; 11], FatError> {
    let bad = || FatError::Name(name.to_owned());
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) => (b, e),
        None => (name, ""),
    };
    let ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'()-@^_`{}~".contains(&b))
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || !ok(base) || !ok(ext) {
        return Err(bad());
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.to_ascii_uppercase().as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.to_ascii_uppercase().as_bytes());
    Ok(out)
}

fn entry(name: [u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..11].copy_from_slice(&name);
    e[11] = attr;
    e[14..16].copy_from_slice(&DOS_TIME.to_le_bytes());
    e[16..18].copy_from_slice(&DOS_DATE.to_le_bytes());
    e[18..20].copy_from_slice(&DOS_DATE.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&DOS_TIME.to_le_bytes());
    e[24..26].copy_from_slice(&DOS_DATE.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// A directory: sub-directories and files by short name, in name order.
#[derive(Default)]
struct Dir<'a> {
    dirs: BTreeMap<[u8; 11], Dir<'a>>,
    files: BTreeMap<[u8; 11], &'a [u8]>,
}

impl<'a> Dir<'a> {
    fn add(&mut self, path: &str, data: &'a [u8]) -> Result<(), FatError> {
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let file = parts.pop().ok_or_else(|| FatError::Name(path.to_owned()))?;
        let mut dir = self;
        for p in parts {
            let name = short_name(p)?;
            if dir.files.contains_key(&name) {
                return Err(FatError::Clash(path.to_owned()));
            }
            dir = dir.dirs.entry(name).or_default();
        }
        let name = short_name(file)?;
        if dir.dirs.contains_key(&name) {
            return Err(FatError::Clash(path.to_owned()));
        }
        dir.files.insert(name, data);
        Ok(())
    }

    /// Directory entries, counting `.`/`..` (or the root's volume label).
    fn entries(&self) -> u64 {
        (2 + self.dirs.len() + self.files.len()) as u64
    }
}

/// Where the clusters go.
struct Geometry {
    cluster: u64,
    fat_sectors: u64,
    clusters: u64,
}

impl Geometry {
    fn new(len: u64) -> Geometry {
        let sectors = len / SECTOR;
        let per_cluster: u64 = match len {
            l if l <= 260 << 20 => 1,
            l if l <= 8 << 30 => 8,
            l if l <= 16 << 30 => 16,
            l if l <= 32 << 30 => 32,
            _ => 64,
        };
        // Microsoft's FAT32 sizing formula.
        let fat_sectors = (sectors - RESERVED).div_ceil((256 * per_cluster + FATS) / 2);
        let clusters = (sectors - RESERVED - FATS * fat_sectors) / per_cluster;
        Geometry {
            cluster: per_cluster * SECTOR,
            fat_sectors,
            clusters,
        }
    }

    fn data_start(&self) -> u64 {
        (RESERVED + FATS * self.fat_sectors) * SECTOR
    }

    fn offset(&self, cluster: u32) -> u64 {
        self.data_start() + (u64::from(cluster) - 2) * self.cluster
    }
}

/// The clusters handed out so far and the bytes to write.
struct Layout<'g, 'a> {
    g: &'g Geometry,
    fat: Vec<u32>,
    writes: Vec<(u64, Cow<'a, [u8]>)>,
    label: [u8; 11],
}

impl<'a> Layout<'_, 'a> {
    /// A contiguous chain for `bytes`; cluster 0 for none.
    fn alloc(&mut self, bytes: u64) -> u32 {
        if bytes == 0 {
            return 0;
        }
        let first = self.fat.len() as u32;
        let n = bytes.div_ceil(self.g.cluster) as u32;
        for i in 0..n {
            self.fat.push(if i + 1 == n {
                END_OF_CHAIN
            } else {
                first + i + 1
            });
        }
        first
    }

    /// Allocates `dir`'s children, writes its table and recurses, depth
    /// first.
    fn place(&mut self, dir: &Dir<'a>, cluster: u32, parent: u32, is_root: bool) {
        let mut table = Vec::new();
        if is_root {
            table.extend(entry(self.label, ATTR_VOLUME, 0, 0));
        } else {
            table.extend(entry(*b".          ", ATTR_DIR, cluster, 0));
            table.extend(entry(*b"..         ", ATTR_DIR, parent, 0));
        }
        let mut children = Vec::new();
        for (name, sub) in &dir.dirs {
            let c = self.alloc(sub.entries() * ENTRY as u64);
            table.extend(entry(*name, ATTR_DIR, c, 0));
            children.push((sub, c));
        }
        for (name, data) in &dir.files {
            let c = self.alloc(data.len() as u64);
            table.extend(entry(*name, ATTR_ARCHIVE, c, data.len() as u32));
            if c != 0 {
                self.writes.push((self.g.offset(c), Cow::Borrowed(*data)));
            }
        }
        self.writes
            .push((self.g.offset(cluster), Cow::Owned(table)));
        for (sub, c) in children {
            // `..` of a first-level directory is 0, meaning the root.
            let up = if is_root { 0 } else { cluster };
            self.place(sub, c, up, false);
        }
    }
}

/// Writes a FAT32 volume of `len` bytes at `start` of `disk` holding
/// `files`. `hidden` is the volume's first sector on its disk.
pub fn write(
    disk: &mut SparseDisk,
    start: u64,
    len: u64,
    hidden: u32,
    volume_id: u32,
    label: &str,
    files: &[FatFile<'_>],
) -> Result<(), FatError> {
    let mut root = Dir::default();
    for f in files {
        root.add(f.path, f.data)?;
    }
    let g = Geometry::new(len);
    let too_small = |needed| FatError::TooSmall { needed, size: len };
    if g.clusters < MIN_CLUSTERS {
        return Err(too_small(MIN_FAT32));
    }

    let mut volume_label = [b' '; 11];
    for (slot, b) in volume_label.iter_mut().zip(label.bytes()) {
        *slot = b.to_ascii_uppercase();
    }
    let mut l = Layout {
        g: &g,
        fat: vec![0x0fff_fff8, END_OF_CHAIN],
        writes: Vec::new(),
        label: volume_label,
    };
    let root_cluster = l.alloc(root.entries() * ENTRY as u64);
    l.place(&root, root_cluster, 0, true);
    let Layout { fat, writes, .. } = l;
    let used = fat.len() as u64 - 2;
    if used > g.clusters {
        return Err(too_small(g.data_start() + used * g.cluster));
    }

    let mut boot = [0u8; 512];
    boot[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
    boot[3..11].copy_from_slice(b"MSWIN4.1");
    boot[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    boot[13] = (g.cluster / SECTOR) as u8;
    boot[14..16].copy_from_slice(&(RESERVED as u16).to_le_bytes());
    boot[16] = FATS as u8;
    boot[21] = 0xf8;
    boot[24..26].copy_from_slice(&32u16.to_le_bytes());
    boot[26..28].copy_from_slice(&64u16.to_le_bytes());
    boot[28..32].copy_from_slice(&hidden.to_le_bytes());
    boot[32..36].copy_from_slice(&((len / SECTOR) as u32).to_le_bytes());
    boot[36..40].copy_from_slice(&(g.fat_sectors as u32).to_le_bytes());
    boot[44..48].copy_from_slice(&root_cluster.to_le_bytes());
    boot[48..50].copy_from_slice(&1u16.to_le_bytes());
    boot[50..52].copy_from_slice(&6u16.to_le_bytes());
    boot[64] = 0x80;
    boot[66] = 0x29;
    boot[67..71].copy_from_slice(&volume_id.to_le_bytes());
    boot[71..82].copy_from_slice(&volume_label);
    boot[82..90].copy_from_slice(b"FAT32   ");
    boot[510] = 0x55;
    boot[511] = 0xaa;
    let mut info = [0u8; 512];
    info[..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    info[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    info[488..492].copy_from_slice(&((g.clusters - used) as u32).to_le_bytes());
    info[492..496].copy_from_slice(&(fat.len() as u32).to_le_bytes());
    info[508..512].copy_from_slice(&0xaa55_0000u32.to_le_bytes());
    let table: Vec<u8> = fat.iter().flat_map(|e| e.to_le_bytes()).collect();

    let mut put = |at: u64, bytes: &[u8]| {
        disk.write_at(start + at, bytes)
            .expect("FAT structures lie within the volume");
    };
    put(0, &boot);
    put(SECTOR, &info);
    put(6 * SECTOR, &boot);
    put(7 * SECTOR, &info);
    for i in 0..FATS {
        put((RESERVED + i * g.fat_sectors) * SECTOR, &table);
    }
    for (at, bytes) in &writes {
        put(*at, bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_8_3() {
        assert_eq!(&short_name("bootx64.efi").unwrap(), b"BOOTX64 EFI");
        assert_eq!(&short_name("EFI").unwrap(), b"EFI        ");
        assert!(short_name("linuxkit-uki.efi").is_err());
        assert!(short_name("a.tar.gz").is_err());
    }

    #[test]
    fn lays_out_directories_and_files_contiguously() {
        let data = vec![5u8; 10_000];
        let files = [
            FatFile {
                path: "EFI/BOOT/BOOTX64.EFI",
                data: &data,
            },
            FatFile {
                path: "loader/x.cfg",
                data: b"timeout 0\n",
            },
        ];
        let mut disk = SparseDisk::new(MIN_FAT32);
        write(&mut disk, 0, MIN_FAT32, 0, 0x1234_5678, "KILN", &files).unwrap();
        let g = Geometry::new(MIN_FAT32);
        let mut boot = [0u8; 512];
        disk.read_at(0, &mut boot);
        assert_eq!(&boot[82..90], b"FAT32   ");
        // Root (2), EFI (3), LOADER (4), BOOT (5), the file (6..), X.CFG.
        let mut first = [0u8; 4];
        disk.read_at(g.offset(6), &mut first);
        assert_eq!(first, [5; 4]);
        let mut efi = [0u8; 64];
        disk.read_at(g.offset(3), &mut efi);
        assert_eq!(&efi[..11], b".          ");
        assert_eq!(&efi[32..43], b"..         ");
        // `..` of a first-level directory points at cluster 0.
        assert_eq!(&efi[32 + 26..32 + 28], &[0, 0]);
        let mut again = SparseDisk::new(MIN_FAT32);
        write(&mut again, 0, MIN_FAT32, 0, 0x1234_5678, "KILN", &files).unwrap();
        let (mut a, mut b) = (vec![0; MIN_FAT32 as usize], vec![0; MIN_FAT32 as usize]);
        disk.read_at(0, &mut a);
        again.read_at(0, &mut b);
        assert!(a == b);
        assert!(matches!(
            write(&mut disk, 0, 1 << 20, 0, 0, "X", &files),
            Err(FatError::TooSmall { .. })
        ));
    }
}
