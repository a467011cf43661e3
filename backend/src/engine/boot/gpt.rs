//! GUID partition tables: protective MBR, primary and backup headers and
//! entry arrays, with GUIDs derived from a seed so equal inputs give equal
//! disks.

use sha2::{Digest as _, Sha256};

use super::sparse::SparseDisk;

pub const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors taken by one entry array.
const ARRAY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
/// First sector partitions may use after the primary table, with
/// partitions conventionally starting at 1 MiB.
pub const FIRST_PARTITION: u64 = 2048;

/// A GUID in its textual byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

/// The EFI System Partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
pub const ESP: Guid = Guid([
    0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, 0x11, 0xd2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
]);

impl Guid {
    /// A version-4-shaped GUID from SHA-256 of `seed` and `what`.
    pub fn derive(seed: &[u8], what: &str) -> Guid {
        let mut h = Sha256::new();
        h.update(b"kiln-guid\0");
        h.update(seed);
        h.update(what.as_bytes());
        let d = h.finalize();
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[..16]);
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        Guid(g)
    }

    /// The on-disk encoding: the first three fields little-endian.
    pub fn to_disk(self) -> [u8; 16] {
        let g = self.0;
        let mut d = g;
        d[..4].copy_from_slice(&[g[3], g[2], g[1], g[0]]);
        d[4..6].copy_from_slice(&[g[5], g[4]]);
        d[6..8].copy_from_slice(&[g[7], g[6]]);
        d
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.0;
        write!(
            f,
            "{}-{}-{}-{}-{}",
            hex::encode_upper(&g[..4]),
            hex::encode_upper(&g[4..6]),
            hex::encode_upper(&g[6..8]),
            hex::encode_upper(&g[8..10]),
            hex::encode_upper(&g[10..])
        )
    }
}

/// One partition, in sectors (`last` inclusive).
#[derive(Debug, Clone)]
pub struct Partition {
    pub kind: Guid,
    pub id: Guid,
    pub first: u64,
    pub last: u64,
    /// Bit 2: legacy BIOS bootable.
    pub attributes: u64,
    pub name: String,
}

/// The last sector a partition may use on a disk of `sectors` sectors.
pub fn last_usable(sectors: u64) -> u64 {
    sectors - 2 - ARRAY_SECTORS
}

/// Writes the protective MBR (with `boot_code`, up to 440 bytes, e.g.
/// syslinux's `gptmbr.bin`), both headers and both entry arrays.
pub fn write(disk: &mut SparseDisk, disk_id: Guid, parts: &[Partition], boot_code: Option<&[u8]>) {
    let sectors = disk.len() / SECTOR;
    let mut mbr = [0u8; 512];
    if let Some(code) = boot_code {
        let n = code.len().min(440);
        mbr[..n].copy_from_slice(&code[..n]);
    }
    let protective = [
        0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00,
    ];
    mbr[446..458].copy_from_slice(&protective);
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    mbr[458..462].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;

    let mut array = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        let e = &mut array[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[..16].copy_from_slice(&p.kind.to_disk());
        e[16..32].copy_from_slice(&p.id.to_disk());
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let array_crc = crc32fast::hash(&array);
    let header = |mine: u64, other: u64, entries: u64| {
        let mut h = [0u8; 512];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&mine.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ARRAY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&last_usable(sectors).to_le_bytes());
        h[56..72].copy_from_slice(&disk_id.to_disk());
        h[72..80].copy_from_slice(&entries.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let backup_array = sectors - 1 - ARRAY_SECTORS;
    // In bounds by construction: the disk is at least the table's size.
    let writes: [(u64, &[u8]); 5] = [
        (0, &mbr),
        (1, &header(1, sectors - 1, 2)),
        (2, &array),
        (backup_array, &array),
        (sectors - 1, &header(sectors - 1, 1, backup_array)),
    ];
    for (lba, bytes) in writes {
        disk.write_at(lba * SECTOR, bytes)
            .expect("GPT structures lie within the disk");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_derived_and_encoded_mixed_endian() {
        assert_eq!(ESP.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(&ESP.to_disk()[..4], &[0x28, 0x73, 0x2a, 0xc1]);
        let a = Guid::derive(b"x", "disk");
        assert_eq!(a, Guid::derive(b"x", "disk"));
        assert_ne!(a, Guid::derive(b"x", "esp"));
        assert_eq!(a.to_string().as_bytes()[14], b'4');
    }

    #[test]
    fn headers_carry_valid_crcs() {
        let mut d = SparseDisk::new(8 << 20);
        let p = Partition {
            kind: ESP,
            id: Guid::derive(b"s", "p"),
            first: FIRST_PARTITION,
            last: last_usable(16384),
            attributes: 0,
            name: "EFI System".into(),
        };
        write(&mut d, Guid::derive(b"s", "d"), &[p], None);
        let mut h = [0u8; 92];
        d.read_at(512, &mut h);
        let stored = u32::from_le_bytes(h[16..20].try_into().unwrap());
        h[16..20].fill(0);
        assert_eq!(stored, crc32fast::hash(&h));
        let mut backup = [0u8; 8];
        d.read_at((8 << 20) - 512, &mut backup);
        assert_eq!(&backup, b"EFI PART");
    }
}
