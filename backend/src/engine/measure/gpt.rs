//! The UEFI_GPT_DATA structure firmware measures into PCR 5 as
//! EV_EFI_GPT_EVENT: the GPT header, the number of used partition entries,
//! then those entries in table order.

use std::io::{Read, Seek, SeekFrom};

/// kiln's disks use 512-byte sectors.
pub const SECTOR: u64 = 512;
/// `sizeof(EFI_PARTITION_TABLE_HEADER)`, what EDK2 copies into the event.
const HEADER_BYTES: usize = 92;
/// The largest partition table read.
const MAX_TABLE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("reading the disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("no GPT: LBA 1 does not start with `EFI PART`")]
    Missing,
    #[error("malformed GPT: {0}")]
    Malformed(String),
}

/// Builds UEFI_GPT_DATA from the primary GPT of `disk`.
pub fn gpt_event_data<R: Read + Seek>(disk: &mut R) -> Result<Vec<u8>, GptError> {
    let mut header = [0u8; SECTOR as usize];
    disk.seek(SeekFrom::Start(SECTOR))?;
    disk.read_exact(&mut header)?;
    if &header[..8] != b"EFI PART" {
        return Err(GptError::Missing);
    }
    let u32_at = |o: usize| u32::from_le_bytes(header[o..o + 4].try_into().unwrap_or_default());
    let u64_at = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().unwrap_or_default());
    let header_size = u32_at(12) as usize;
    if !(HEADER_BYTES..=SECTOR as usize).contains(&header_size) {
        return Err(GptError::Malformed(format!("header size {header_size}")));
    }
    let mut check = header[..header_size].to_vec();
    check[16..20].fill(0);
    if crc32fast::hash(&check) != u32_at(16) {
        return Err(GptError::Malformed("header CRC32 mismatch".into()));
    }
    let entries_lba = u64_at(72);
    let count = u32_at(80) as u64;
    let entry_size = u32_at(84) as u64;
    if entry_size < 128 || !entry_size.is_multiple_of(8) || count * entry_size > MAX_TABLE_BYTES {
        return Err(GptError::Malformed(format!(
            "{count} entries of {entry_size} bytes"
        )));
    }
    let mut table = vec![0u8; (count * entry_size) as usize];
    disk.seek(SeekFrom::Start(entries_lba.saturating_mul(SECTOR)))?;
    disk.read_exact(&mut table)?;
    if crc32fast::hash(&table) != u32_at(88) {
        return Err(GptError::Malformed(
            "partition entry array CRC32 mismatch".into(),
        ));
    }
    let used: Vec<&[u8]> = table
        .chunks(entry_size as usize)
        .filter(|e| e[..16].iter().any(|b| *b != 0))
        .collect();
    let mut out = header[..HEADER_BYTES].to_vec();
    out.extend_from_slice(&(used.len() as u64).to_le_bytes());
    for e in used {
        out.extend_from_slice(e);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A disk with a primary GPT holding the given partition type GUIDs
    /// (an all-zero GUID is an unused entry).
    pub(crate) fn disk_with(types: &[[u8; 16]]) -> Vec<u8> {
        let mut disk = vec![0u8; 64 * 512];
        let mut table = vec![0u8; 128 * 128];
        for (i, t) in types.iter().enumerate() {
            let e = &mut table[i * 128..(i + 1) * 128];
            e[..16].copy_from_slice(t);
            e[16] = i as u8 + 1;
            e[32..40].copy_from_slice(&(34u64 + i as u64).to_le_bytes());
        }
        let mut h = vec![0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&table).to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        disk[512..604].copy_from_slice(&h);
        disk[1024..1024 + table.len()].copy_from_slice(&table);
        disk
    }

    #[test]
    fn only_used_entries_in_table_order() {
        let esp = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0, 0xa0, 0xc9, 0x3e, 0xc9,
            0x3b,
        ];
        let disk = disk_with(&[esp, [0; 16], esp]);
        let data = gpt_event_data(&mut std::io::Cursor::new(&disk)).unwrap();
        assert_eq!(&data[..8], b"EFI PART");
        assert_eq!(u64::from_le_bytes(data[92..100].try_into().unwrap()), 2);
        assert_eq!(data.len(), 92 + 8 + 2 * 128);
        assert_eq!(data[100 + 16], 1);
        assert_eq!(data[100 + 128 + 16], 3);
    }

    #[test]
    fn damaged_tables_are_errors() {
        let disk = disk_with(&[[1; 16]]);
        let mut bad = disk.clone();
        bad[1024 + 20] ^= 1;
        assert!(matches!(
            gpt_event_data(&mut std::io::Cursor::new(&bad)),
            Err(GptError::Malformed(_))
        ));
        let mut bad = disk.clone();
        bad[512] = b'X';
        assert!(matches!(
            gpt_event_data(&mut std::io::Cursor::new(&bad)),
            Err(GptError::Missing)
        ));
        assert!(matches!(
            gpt_event_data(&mut std::io::Cursor::new(&disk[..700])),
            Err(GptError::Io(_))
        ));
    }
}
