//! ISO 9660 images with El Torito boot records, written in one pass:
//! 8.3 upper-case names (level 1), every date [`LINUXKIT_EPOCH`], the
//! volume id given. A BIOS entry gets ISOLINUX's boot info table; an EFI
//! entry points at a FAT image. Both can be made hybrid: an MBR in the
//! system area so the same bytes boot from a disk.

use std::collections::BTreeMap;

use super::sparse::SparseDisk;
use crate::engine::fs::LINUXKIT_EPOCH;

pub const SECTOR: u64 = 2048;
const FIRST_FREE: u64 = 16;
/// 2017-04-18 16:30:00 UTC, [`LINUXKIT_EPOCH`].
const RECORD_DATE: [u8; 7] = [117, 4, 18, 16, 30, 0, 0];
const VOLUME_DATE: &[u8; 16] = b"2017041816300000";
const _: () = assert!(LINUXKIT_EPOCH == 1_492_533_000);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsoError {
    #[error("`{0}` is not an ISO 9660 level 1 (8.3) name")]
    Name(String),
    #[error("`{0}` is both a file and a directory")]
    Clash(String),
    #[error("no file `{0}` to boot from")]
    NoBootFile(String),
    #[error("the ISO would be over 4 GiB")]
    TooLarge,
}

/// One file, by `/`-separated path.
#[derive(Debug, Clone)]
pub struct IsoFile<'a> {
    pub path: &'a str,
    pub data: &'a [u8],
}

/// What the El Torito catalog boots.
#[derive(Debug, Clone, Default)]
pub struct Boot<'a> {
    /// A BIOS no-emulation loader (ISOLINUX's `isolinux.bin`), by path;
    /// its boot info table is filled in.
    pub bios: Option<&'a str>,
    /// A FAT image for UEFI, by path.
    pub efi: Option<&'a str>,
    /// A hybrid MBR for the BIOS loader (`isohdpfx.bin`, 432 bytes).
    pub isohybrid_mbr: Option<&'a [u8]>,
}

/// `name` as an ISO 9660 identifier: `NAME.EXT;1` for files, `NAME` for
/// directories.
fn identifier(name: &str, dir: bool) -> Result<Vec<u8>, IsoError> {
    let bad = || IsoError::Name(name.to_owned());
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !dir => (b, e),
        _ => (name, ""),
    };
    let ok = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || !ok(base) || !ok(ext) {
        return Err(bad());
    }
    let base = base.to_ascii_uppercase();
    Ok(if dir {
        base.into_bytes()
    } else {
        format!("{base}.{};1", ext.to_ascii_uppercase()).into_bytes()
    })
}

#[derive(Default)]
struct Dir<'a> {
    dirs: BTreeMap<Vec<u8>, Dir<'a>>,
    files: BTreeMap<Vec<u8>, (String, &'a [u8])>,
    /// Assigned while laying out.
    sector: u64,
    sectors: u64,
    number: u16,
    parent: u16,
}

fn record_len(id_len: usize) -> usize {
    let n = 33 + id_len;
    n + n % 2
}

impl<'a> Dir<'a> {
    fn add(&mut self, path: &'a str, data: &'a [u8]) -> Result<(), IsoError> {
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let file = parts.pop().ok_or_else(|| IsoError::Name(path.to_owned()))?;
        let mut dir = self;
        for p in parts {
            dir = dir.dirs.entry(identifier(p, true)?).or_default();
        }
        let id = identifier(file, false)?;
        if dir
            .dirs
            .contains_key(&identifier(file, true).unwrap_or_default())
        {
            return Err(IsoError::Clash(path.to_owned()));
        }
        dir.files.insert(id, (path.to_owned(), data));
        Ok(())
    }

    /// Record identifiers in order, with `.` and `..` first.
    fn ids(&self) -> Vec<Vec<u8>> {
        let mut ids: Vec<Vec<u8>> = self.dirs.keys().chain(self.files.keys()).cloned().collect();
        ids.sort();
        ids
    }

    fn size_in_sectors(&self) -> u64 {
        let mut sectors = 1;
        let mut used = 2 * record_len(1);
        for id in self.ids() {
            let n = record_len(id.len());
            if used + n > SECTOR as usize {
                sectors += 1;
                used = 0;
            }
            used += n;
        }
        sectors
    }
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

fn record(id: &[u8], sector: u64, len: u64, dir: bool) -> Vec<u8> {
    let mut r = vec![0u8; record_len(id.len())];
    r[0] = r.len() as u8;
    r[2..10].copy_from_slice(&both32(sector as u32));
    r[10..18].copy_from_slice(&both32(len as u32));
    r[18..25].copy_from_slice(&RECORD_DATE);
    r[25] = if dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = id.len() as u8;
    r[33..33 + id.len()].copy_from_slice(id);
    r
}

fn padded(text: &str, len: usize) -> Vec<u8> {
    let mut v = vec![b' '; len];
    v[..text.len().min(len)].copy_from_slice(&text.as_bytes()[..text.len().min(len)]);
    v
}

/// Where each file went: its first sector and length.
pub type Placed = BTreeMap<String, (u64, u64)>;

/// Writes the ISO; returns it and where every file is.
pub fn write(
    volume_id: &str,
    files: &[IsoFile<'_>],
    boot: &Boot<'_>,
    mbr_signature: u32,
) -> Result<(SparseDisk, Placed), IsoError> {
    let mut root = Dir::default();
    for f in files {
        root.add(f.path, f.data)?;
    }
    let booting = boot.bios.is_some() || boot.efi.is_some();
    let mut next = FIRST_FREE + 1;
    let boot_record = booting.then(|| {
        next += 1;
        next - 1
    });
    next += 1; // terminator
    let catalog = booting.then(|| {
        next += 1;
        next - 1
    });

    // Directories breadth first, numbered as the path table numbers them.
    let mut order: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut i = 0;
    while i < order.len() {
        let path = order[i].clone();
        let dir = walk(&root, &path);
        for name in dir.dirs.keys() {
            let mut p = path.clone();
            p.push(name.clone());
            order.push(p);
        }
        i += 1;
    }
    let mut table_len = 0usize;
    for path in &order {
        let id_len = path.last().map_or(1, |n| n.len());
        table_len += 8 + id_len + id_len % 2;
    }
    let table_sectors = (table_len as u64).div_ceil(SECTOR);
    let l_table = next;
    let m_table = next + table_sectors;
    next += 2 * table_sectors;
    for (n, path) in order.iter().enumerate() {
        let parent_number = if path.is_empty() {
            1
        } else {
            let parent = &path[..path.len() - 1];
            order.iter().position(|p| p == parent).unwrap_or(0) as u16 + 1
        };
        let dir = walk_mut(&mut root, path);
        dir.number = n as u16 + 1;
        dir.parent = parent_number;
        dir.sectors = dir.size_in_sectors();
        dir.sector = next;
        next += dir.sectors;
    }
    let mut placed = Placed::new();
    for path in &order {
        let dir = walk(&root, path);
        for (path, data) in dir.files.values() {
            placed.insert(path.clone(), (next, data.len() as u64));
            next += (data.len() as u64).div_ceil(SECTOR);
        }
    }
    // Round up to 1 MiB so the hybrid image is a whole number of MiB.
    let total = next.div_ceil(512) * 512;
    if total * SECTOR > u64::from(u32::MAX) {
        return Err(IsoError::TooLarge);
    }
    let mut iso = SparseDisk::new(total * SECTOR);
    let mut put = |sector: u64, offset: u64, bytes: &[u8]| {
        iso.write_at(sector * SECTOR + offset, bytes)
            .expect("ISO structures lie within the image");
    };

    // Directory records.
    for path in &order {
        let dir = walk(&root, path);
        let parent = if path.is_empty() {
            dir
        } else {
            walk(&root, &path[..path.len() - 1])
        };
        let mut bytes = Vec::new();
        bytes.extend(record(&[0], dir.sector, dir.sectors * SECTOR, true));
        bytes.extend(record(&[1], parent.sector, parent.sectors * SECTOR, true));
        for id in dir.ids() {
            let r = if let Some(sub) = dir.dirs.get(&id) {
                record(&id, sub.sector, sub.sectors * SECTOR, true)
            } else {
                let (path, _) = &dir.files[&id];
                let (sector, len) = placed[path];
                record(&id, sector, len, false)
            };
            let room = SECTOR as usize - bytes.len() % SECTOR as usize;
            if r.len() > room {
                bytes.extend(vec![0u8; room]);
            }
            bytes.extend(r);
        }
        put(dir.sector, 0, &bytes);
    }
    // Path tables.
    let mut l = Vec::new();
    let mut m = Vec::new();
    for path in &order {
        let dir = walk(&root, path);
        let id: Vec<u8> = path.last().cloned().unwrap_or_else(|| vec![0]);
        for (table, le) in [(&mut l, true), (&mut m, false)] {
            table.push(id.len() as u8);
            table.push(0);
            let sector = dir.sector as u32;
            table.extend(if le {
                sector.to_le_bytes()
            } else {
                sector.to_be_bytes()
            });
            table.extend(if le {
                dir.parent.to_le_bytes()
            } else {
                dir.parent.to_be_bytes()
            });
            table.extend(&id);
            if id.len() % 2 == 1 {
                table.push(0);
            }
        }
    }
    put(l_table, 0, &l);
    put(m_table, 0, &m);
    // File data, with ISOLINUX's boot info table filled in.
    for path in &order {
        let dir = walk(&root, path);
        for (path, data) in dir.files.values() {
            let (sector, _) = placed[path];
            if boot.bios == Some(path.as_str()) && data.len() >= 64 {
                let mut patched = data.to_vec();
                let sum = patched[64..]
                    .chunks(4)
                    .map(|c| {
                        let mut w = [0u8; 4];
                        w[..c.len()].copy_from_slice(c);
                        u32::from_le_bytes(w)
                    })
                    .fold(0u32, u32::wrapping_add);
                patched[8..12].copy_from_slice(&(FIRST_FREE as u32).to_le_bytes());
                patched[12..16].copy_from_slice(&(sector as u32).to_le_bytes());
                patched[16..20].copy_from_slice(&(data.len() as u32).to_le_bytes());
                patched[20..24].copy_from_slice(&sum.to_le_bytes());
                patched[24..64].fill(0);
                put(sector, 0, &patched);
            } else {
                put(sector, 0, data);
            }
        }
    }

    // Primary volume descriptor.
    let mut pvd = vec![0u8; SECTOR as usize];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[8..40].copy_from_slice(&padded("", 32));
    pvd[40..72].copy_from_slice(&padded(volume_id, 32));
    pvd[80..88].copy_from_slice(&both32(total as u32));
    pvd[120..124].copy_from_slice(&both16(1));
    pvd[124..128].copy_from_slice(&both16(1));
    pvd[128..132].copy_from_slice(&both16(SECTOR as u16));
    pvd[132..140].copy_from_slice(&both32(table_len as u32));
    pvd[140..144].copy_from_slice(&(l_table as u32).to_le_bytes());
    pvd[148..152].copy_from_slice(&(m_table as u32).to_be_bytes());
    pvd[156..190].copy_from_slice(&record(&[0], root.sector, root.sectors * SECTOR, true));
    pvd[190..318].copy_from_slice(&padded("", 128));
    pvd[318..446].copy_from_slice(&padded("", 128));
    pvd[446..574].copy_from_slice(&padded("", 128));
    pvd[574..702].copy_from_slice(&padded("KILN", 128));
    pvd[702..813].copy_from_slice(&padded("", 111));
    for at in [813, 830] {
        pvd[at..at + 16].copy_from_slice(VOLUME_DATE);
    }
    for at in [847, 864] {
        pvd[at..at + 16].copy_from_slice(b"0000000000000000");
    }
    pvd[881] = 1;
    put(FIRST_FREE, 0, &pvd);
    let terminator_at = boot_record.map_or(FIRST_FREE + 1, |b| b + 1);
    let mut term = vec![0u8; 7];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    put(terminator_at, 0, &term);

    if let (Some(record_at), Some(catalog_at)) = (boot_record, catalog) {
        let mut br = vec![0u8; 0x4b];
        br[1..6].copy_from_slice(b"CD001");
        br[6] = 1;
        br[7..30].copy_from_slice(b"EL TORITO SPECIFICATION");
        br[0x47..0x4b].copy_from_slice(&(catalog_at as u32).to_le_bytes());
        put(record_at, 0, &br);

        let mut entries: Vec<(u8, u64, u64)> = Vec::new();
        for (platform, path) in [(0u8, boot.bios), (0xef, boot.efi)] {
            if let Some(path) = path {
                let (sector, len) = *placed
                    .get(path)
                    .ok_or_else(|| IsoError::NoBootFile(path.to_owned()))?;
                entries.push((platform, sector, len));
            }
        }
        let mut cat = vec![0u8; SECTOR as usize];
        cat[0] = 1;
        cat[1] = entries[0].0;
        cat[4..8].copy_from_slice(b"KILN");
        cat[30] = 0x55;
        cat[31] = 0xaa;
        let sum = cat[..32]
            .chunks(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .fold(0u16, u16::wrapping_add);
        cat[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
        let entry = |platform: u8, sector: u64, len: u64| {
            let mut e = [0u8; 32];
            e[0] = 0x88;
            // ISOLINUX loads its first 2 KiB; an EFI image is counted in
            // 512-byte sectors, 0 (the rest of the volume) when too long.
            let count = if platform == 0 {
                4
            } else {
                u16::try_from(len.div_ceil(512)).unwrap_or(0)
            };
            e[6..8].copy_from_slice(&count.to_le_bytes());
            e[8..12].copy_from_slice(&(sector as u32).to_le_bytes());
            e
        };
        cat[32..64].copy_from_slice(&entry(entries[0].0, entries[0].1, entries[0].2));
        if let Some(&(platform, sector, len)) = entries.get(1) {
            let mut header = [0u8; 32];
            header[0] = 0x91;
            header[1] = platform;
            header[2..4].copy_from_slice(&1u16.to_le_bytes());
            cat[64..96].copy_from_slice(&header);
            cat[96..128].copy_from_slice(&entry(platform, sector, len));
        }
        put(catalog_at, 0, &cat);
    }

    // The hybrid MBR: ISOLINUX's, or one whose only partition is the EFI
    // image, so firmware finds the ESP on a disk too.
    let mut mbr = [0u8; 512];
    let mut hybrid = false;
    if let (Some(code), Some(bios)) = (boot.isohybrid_mbr, boot.bios) {
        let n = code.len().min(432);
        mbr[..n].copy_from_slice(&code[..n]);
        let (sector, _) = placed[bios];
        mbr[432..436].copy_from_slice(&((sector * 4) as u32).to_le_bytes());
        // Partition 1: the whole image, active, type 0x17 as isohybrid.
        mbr[446] = 0x80;
        mbr[450] = 0x17;
        mbr[458..462].copy_from_slice(&((total * 4) as u32).to_le_bytes());
        hybrid = true;
    } else if let Some(efi) = boot.efi {
        let (sector, len) = placed[efi];
        mbr[450] = 0xef;
        mbr[454..458].copy_from_slice(&((sector * 4) as u32).to_le_bytes());
        mbr[458..462].copy_from_slice(&(len.div_ceil(512) as u32).to_le_bytes());
        hybrid = true;
    }
    if hybrid {
        // CHS fields all 0xFE/0xFF: addressing is by LBA only.
        mbr[447..450].copy_from_slice(&[0xfe, 0xff, 0xff]);
        mbr[451..454].copy_from_slice(&[0xfe, 0xff, 0xff]);
        mbr[440..444].copy_from_slice(&mbr_signature.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        iso.write_at(0, &mbr)
            .expect("the MBR lies within the image");
    }
    Ok((iso, placed))
}

fn walk<'d, 'a>(root: &'d Dir<'a>, path: &[Vec<u8>]) -> &'d Dir<'a> {
    path.iter().fold(root, |d, n| &d.dirs[n])
}

fn walk_mut<'d, 'a>(root: &'d mut Dir<'a>, path: &[Vec<u8>]) -> &'d mut Dir<'a> {
    path.iter().fold(root, |d, n| {
        d.dirs.get_mut(n).expect("laid out from the tree")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_level_1() {
        assert_eq!(identifier("initrd.img", false).unwrap(), b"INITRD.IMG;1");
        assert_eq!(identifier("kernel", false).unwrap(), b"KERNEL.;1");
        assert_eq!(identifier("isolinux", true).unwrap(), b"ISOLINUX");
        assert!(identifier("linuxkit-efi.img", false).is_err());
    }

    #[test]
    fn lays_out_descriptors_catalog_and_boot_info_table() {
        let loader = vec![7u8; 4096];
        let files = [
            IsoFile {
                path: "isolinux/isolinux.bin",
                data: &loader,
            },
            IsoFile {
                path: "kernel",
                data: b"k",
            },
        ];
        let boot = Boot {
            bios: Some("isolinux/isolinux.bin"),
            ..Boot::default()
        };
        let (iso, placed) = write("KILN", &files, &boot, 1).unwrap();
        let mut pvd = [0u8; 8];
        iso.read_at(16 * SECTOR, &mut pvd);
        assert_eq!(&pvd[1..6], b"CD001");
        let mut br = [0u8; 30];
        iso.read_at(17 * SECTOR, &mut br);
        assert_eq!(&br[7..30], b"EL TORITO SPECIFICATION");
        let (sector, len) = placed["isolinux/isolinux.bin"];
        let mut info = [0u8; 24];
        iso.read_at(sector * SECTOR, &mut info);
        assert_eq!(
            u32::from_le_bytes(info[12..16].try_into().unwrap()),
            sector as u32
        );
        assert_eq!(
            u32::from_le_bytes(info[16..20].try_into().unwrap()),
            len as u32
        );
        assert_eq!(iso.len() % (1 << 20), 0);
        let again = write("KILN", &files, &boot, 1).unwrap().0;
        let (mut a, mut b) = (vec![0u8; iso.len() as usize], vec![0u8; iso.len() as usize]);
        iso.read_at(0, &mut a);
        again.read_at(0, &mut b);
        assert!(a == b);
    }
}
