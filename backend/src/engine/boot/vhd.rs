//! VHD, fixed and dynamic, around a [`SparseDisk`]. The footer's creator
//! is `kiln`, so QEMU takes the size from the footer rather than from the
//! CHS geometry; the timestamp is [`LINUXKIT_EPOCH`] and the unique id is
//! derived from the disk's seed.

use std::io::{self, Write};

use super::gpt::Guid;
use super::sparse::SparseDisk;
use crate::engine::fs::LINUXKIT_EPOCH;

/// Seconds between 1970-01-01 and VHD's epoch, 2000-01-01.
const VHD_EPOCH: u64 = 946_684_800;
const BLOCK: u64 = 2 << 20;
const SECTOR: u64 = 512;
const FIXED: u32 = 2;
const DYNAMIC: u32 = 3;

/// CHS geometry as the VHD specification computes it.
fn geometry(size: u64) -> (u16, u8, u8) {
    let total = (size / SECTOR).min(65535 * 16 * 255);
    let (mut spt, mut heads, mut cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        spt = 17;
        cth = total / spt;
        heads = cth.div_ceil(1024);
        if heads < 4 {
            heads = 4;
        }
        if cth >= heads * 1024 || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if cth >= heads * 1024 {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

fn checksum(bytes: &[u8]) -> u32 {
    !bytes.iter().map(|b| u32::from(*b)).sum::<u32>()
}

fn footer(size: u64, kind: u32, data_offset: u64, seed: &[u8]) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    f[24..28].copy_from_slice(&((LINUXKIT_EPOCH - VHD_EPOCH) as u32).to_be_bytes());
    f[28..32].copy_from_slice(b"kiln");
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = geometry(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&kind.to_be_bytes());
    f[68..84].copy_from_slice(&Guid::derive(seed, "vhd").0);
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// A fixed VHD: the raw disk, then the footer. `disk`'s length must be a
/// multiple of 512.
pub fn write_fixed<W: Write>(disk: &SparseDisk, seed: &[u8], out: &mut W) -> io::Result<()> {
    let mut buf = vec![0u8; BLOCK as usize];
    let mut at = 0;
    while at < disk.len() {
        let n = (disk.len() - at).min(BLOCK) as usize;
        disk.read_at(at, &mut buf[..n]);
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    out.write_all(&footer(disk.len(), FIXED, u64::MAX, seed))?;
    out.flush()
}

/// A dynamic VHD: footer copy, dynamic header, block allocation table,
/// then each 2 MiB block holding data behind its sector bitmap, then the
/// footer.
pub fn write_dynamic<W: Write>(disk: &SparseDisk, seed: &[u8], out: &mut W) -> io::Result<()> {
    let blocks = disk.len().div_ceil(BLOCK);
    let bat_at: u64 = 512 + 1024;
    let bat_len = (blocks * 4).div_ceil(SECTOR) * SECTOR;
    let foot = footer(disk.len(), DYNAMIC, 512, seed);
    out.write_all(&foot)?;

    let mut header = [0u8; 1024];
    header[..8].copy_from_slice(b"cxsparse");
    header[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    header[16..24].copy_from_slice(&bat_at.to_be_bytes());
    header[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    header[28..32].copy_from_slice(&(blocks as u32).to_be_bytes());
    header[32..36].copy_from_slice(&(BLOCK as u32).to_be_bytes());
    let sum = checksum(&header);
    header[36..40].copy_from_slice(&sum.to_be_bytes());
    out.write_all(&header)?;

    let present: Vec<u64> = (0..blocks)
        .filter(|b| disk.has_data(b * BLOCK, BLOCK))
        .collect();
    let mut bat = vec![0xffu8; bat_len as usize];
    let first = (bat_at + bat_len) / SECTOR;
    // Each stored block: a 512-byte bitmap, then the data.
    let stride = (SECTOR + BLOCK) / SECTOR;
    for (n, b) in present.iter().enumerate() {
        let sector = (first + n as u64 * stride) as u32;
        bat[*b as usize * 4..*b as usize * 4 + 4].copy_from_slice(&sector.to_be_bytes());
    }
    out.write_all(&bat)?;
    let bitmap = [0xffu8; SECTOR as usize];
    let mut buf = vec![0u8; BLOCK as usize];
    for b in &present {
        out.write_all(&bitmap)?;
        disk.read_at(b * BLOCK, &mut buf);
        out.write_all(&buf)?;
    }
    out.write_all(&foot)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_checksums_and_geometry() {
        let f = footer(64 << 20, FIXED, u64::MAX, b"s");
        let stored = u32::from_be_bytes(f[64..68].try_into().unwrap());
        let mut zeroed = f;
        zeroed[64..68].fill(0);
        assert_eq!(stored, checksum(&zeroed));
        assert_eq!(geometry(64 << 20), (963, 8, 17));
    }

    #[test]
    fn dynamic_stores_only_blocks_with_data() {
        let mut disk = SparseDisk::new(3 * BLOCK);
        disk.write_at(BLOCK + 5, b"x").unwrap();
        let mut out = Vec::new();
        write_dynamic(&disk, b"s", &mut out).unwrap();
        assert_eq!(out.len() as u64, 512 + 1024 + 512 + 512 + BLOCK + 512);
        assert_eq!(&out[..512], &out[out.len() - 512..]);
    }
}
