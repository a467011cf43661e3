//! VMDK, monolithic sparse (hosted sparse extent with an embedded
//! descriptor), around a [`SparseDisk`]: 64 KiB grains, a grain table for
//! every grain directory entry, and only grains holding data stored.

use std::io::{self, Write};

use super::gpt::Guid;
use super::sparse::SparseDisk;

const SECTOR: u64 = 512;
const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
const GTES_PER_GT: u64 = 512;
const DESCRIPTOR_AT: u64 = 1;
const DESCRIPTOR_SECTORS: u64 = 20;

fn descriptor(capacity: u64, file_name: &str, seed: &[u8]) -> String {
    let cid = u32::from_le_bytes(Guid::derive(seed, "vmdk-cid").0[..4].try_into().unwrap());
    let cylinders = (capacity / (16 * 63)).min(16383);
    format!(
        "# Disk DescriptorFile\nversion=1\nCID={cid:08x}\nparentCID=ffffffff\n\
         createType=\"monolithicSparse\"\n\n# Extent description\n\
         RW {capacity} SPARSE \"{file_name}\"\n\n# The Disk Data Base\n#DDB\n\n\
         ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"ide\"\n"
    )
}

/// Writes `disk` as a monolithic sparse VMDK named `file_name` (the
/// descriptor's extent line names the file itself).
pub fn write<W: Write>(
    disk: &SparseDisk,
    file_name: &str,
    seed: &[u8],
    out: &mut W,
) -> io::Result<()> {
    let capacity = disk.len() / SECTOR;
    let grains = capacity.div_ceil(GRAIN_SECTORS);
    let tables = grains.div_ceil(GTES_PER_GT);
    let gd_at = DESCRIPTOR_AT + DESCRIPTOR_SECTORS;
    let gd_sectors = (tables * 4).div_ceil(SECTOR);
    let gt_at = gd_at + gd_sectors;
    let gt_sectors = GTES_PER_GT * 4 / SECTOR;
    let overhead = (gt_at + tables * gt_sectors).div_ceil(GRAIN_SECTORS) * GRAIN_SECTORS;

    let text = descriptor(capacity, file_name, seed);
    if text.len() as u64 > DESCRIPTOR_SECTORS * SECTOR {
        return Err(io::Error::other("VMDK descriptor too long"));
    }
    let mut header = [0u8; SECTOR as usize];
    header[..4].copy_from_slice(b"KDMV");
    header[4..8].copy_from_slice(&1u32.to_le_bytes());
    // Bit 0: the newline-detection characters below are valid.
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header[12..20].copy_from_slice(&capacity.to_le_bytes());
    header[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
    header[28..36].copy_from_slice(&DESCRIPTOR_AT.to_le_bytes());
    header[36..44].copy_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
    header[44..48].copy_from_slice(&(GTES_PER_GT as u32).to_le_bytes());
    header[48..56].copy_from_slice(&0u64.to_le_bytes());
    header[56..64].copy_from_slice(&gd_at.to_le_bytes());
    header[64..72].copy_from_slice(&overhead.to_le_bytes());
    header[73] = b'\n';
    header[74] = b' ';
    header[75] = b'\r';
    header[76] = b'\n';
    out.write_all(&header)?;
    let mut desc = vec![0u8; (DESCRIPTOR_SECTORS * SECTOR) as usize];
    desc[..text.len()].copy_from_slice(text.as_bytes());
    out.write_all(&desc)?;

    let mut gd = vec![0u8; (gd_sectors * SECTOR) as usize];
    for t in 0..tables {
        let at = (gt_at + t * gt_sectors) as u32;
        gd[t as usize * 4..t as usize * 4 + 4].copy_from_slice(&at.to_le_bytes());
    }
    out.write_all(&gd)?;
    let present: Vec<u64> = (0..grains)
        .filter(|g| disk.has_data(g * GRAIN, GRAIN))
        .collect();
    let mut gts = vec![0u8; (tables * gt_sectors * SECTOR) as usize];
    for (n, g) in present.iter().enumerate() {
        let at = (overhead + n as u64 * GRAIN_SECTORS) as u32;
        gts[*g as usize * 4..*g as usize * 4 + 4].copy_from_slice(&at.to_le_bytes());
    }
    out.write_all(&gts)?;
    let written = gt_at + tables * gt_sectors;
    out.write_all(&vec![0u8; ((overhead - written) * SECTOR) as usize])?;
    let mut grain = vec![0u8; GRAIN as usize];
    for g in &present {
        disk.read_at(g * GRAIN, &mut grain);
        out.write_all(&grain)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_grains_with_data_after_the_overhead() {
        let mut disk = SparseDisk::new(4 * GRAIN);
        disk.write_at(2 * GRAIN + 1, b"k").unwrap();
        let mut out = Vec::new();
        write(&disk, "x.vmdk", b"s", &mut out).unwrap();
        assert_eq!(out.len() as u64, GRAIN + GRAIN);
        assert_eq!(out[GRAIN as usize + 1], b'k');
        let text = String::from_utf8_lossy(&out[512..1024]);
        assert!(text.contains("RW 512 SPARSE \"x.vmdk\""), "{text}");
    }
}
