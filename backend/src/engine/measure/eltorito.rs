//! Finding the EFI boot image of an ISO 9660 image through El Torito: the
//! boot record volume descriptor at sector 17 points at the boot catalog,
//! whose entries for platform 0xEF name the FAT image firmware boots from
//! a CD-ROM.

use std::io::{self, Read, Seek, SeekFrom};

const ISO_SECTOR: u64 = 2048;
const EFI_PLATFORM: u8 = 0xef;

#[derive(Debug, thiserror::Error)]
pub enum ElToritoError {
    #[error("reading the ISO image: {0}")]
    Io(#[from] io::Error),
    #[error("no El Torito boot record at sector 17")]
    NoBootRecord,
    #[error("the El Torito boot catalog: {0}")]
    Catalog(String),
    #[error("the El Torito catalog has no bootable EFI (platform 0xEF) entry")]
    NoEfiEntry,
    #[error("the El Torito EFI image at byte {0} is not a FAT volume")]
    NotFat(u64),
}

fn read_at<R: Read + Seek>(r: &mut R, at: u64, buf: &mut [u8]) -> io::Result<()> {
    r.seek(SeekFrom::Start(at))?;
    r.read_exact(buf)
}

/// Whether sector 16 starts an ISO 9660 volume descriptor.
pub fn is_iso<R: Read + Seek>(r: &mut R) -> io::Result<bool> {
    let len = r.seek(SeekFrom::End(0))?;
    if len < 16 * ISO_SECTOR + 6 {
        return Ok(false);
    }
    let mut id = [0u8; 5];
    read_at(r, 16 * ISO_SECTOR + 1, &mut id)?;
    Ok(&id == b"CD001")
}

/// The byte offset and length of the first bootable EFI image; its length
/// is the FAT volume's own (the catalog's sector count may be 0 or 1 for
/// "the rest of the medium").
pub fn efi_image<R: Read + Seek>(r: &mut R) -> Result<(u64, u64), ElToritoError> {
    let len = r.seek(SeekFrom::End(0))?;
    let mut record = [0u8; 0x4b];
    read_at(r, 17 * ISO_SECTOR, &mut record).map_err(|_| ElToritoError::NoBootRecord)?;
    if record[0] != 0 || &record[1..6] != b"CD001" || &record[7..30] != b"EL TORITO SPECIFICATION" {
        return Err(ElToritoError::NoBootRecord);
    }
    let catalog_at = u64::from(u32::from_le_bytes([
        record[0x47],
        record[0x48],
        record[0x49],
        record[0x4a],
    ])) * ISO_SECTOR;
    let mut cat = vec![0u8; ISO_SECTOR as usize];
    read_at(r, catalog_at, &mut cat)
        .map_err(|e| ElToritoError::Catalog(format!("at byte {catalog_at}: {e}")))?;
    if cat[0] != 1 || cat[30..32] != [0x55, 0xaa] {
        return Err(ElToritoError::Catalog("no validation entry".into()));
    }
    let sum = cat[..32]
        .chunks(2)
        .map(|w| u16::from_le_bytes([w[0], w[1]]))
        .fold(0u16, u16::wrapping_add);
    if sum != 0 {
        return Err(ElToritoError::Catalog(
            "the validation entry's checksum is wrong".into(),
        ));
    }
    // The default entry has the validation entry's platform; each section
    // header gives the platform of the entries after it.
    let mut platform = cat[1];
    let mut found = None;
    for e in cat.chunks(32).skip(1) {
        match e[0] {
            0x88 if platform == EFI_PLATFORM => {
                found = Some(u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]])));
                break;
            }
            0x90 | 0x91 => platform = e[1],
            _ => {}
        }
    }
    let start = found.ok_or(ElToritoError::NoEfiEntry)? * ISO_SECTOR;
    let mut boot = [0u8; 512];
    read_at(r, start, &mut boot).map_err(|_| ElToritoError::NotFat(start))?;
    let bytes_per_sector = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    let small = u64::from(u16::from_le_bytes([boot[19], boot[20]]));
    let large = u64::from(u32::from_le_bytes([boot[32], boot[33], boot[34], boot[35]]));
    let sectors = if small != 0 { small } else { large };
    let image = bytes_per_sector * sectors;
    if boot[510..512] != [0x55, 0xaa]
        || !bytes_per_sector.is_power_of_two()
        || !(512..=4096).contains(&bytes_per_sector)
        || image == 0
        || start + image > len
    {
        return Err(ElToritoError::NotFat(start));
    }
    Ok((start, image))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::engine::boot;

    fn iso(uki: &[u8]) -> Vec<u8> {
        let disk = boot::iso_efi(uki, "EFI/BOOT/BOOTX64.EFI").unwrap();
        let mut bytes = vec![0u8; disk.len() as usize];
        disk.read_at(0, &mut bytes);
        bytes
    }

    #[test]
    fn finds_the_efi_image_of_kilns_iso() {
        let uki = vec![0x4d; 300_000];
        let mut r = Cursor::new(iso(&uki));
        assert!(is_iso(&mut r).unwrap());
        let (start, len) = efi_image(&mut r).unwrap();
        let loader = super::super::esp::loader_in(&mut r, start, len).unwrap();
        assert!(loader == uki);
    }

    #[test]
    fn broken_catalogs_are_errors() {
        let good = iso(&[1; 1000]);
        let mut r = Cursor::new(good.clone());
        let (start, _) = efi_image(&mut r).unwrap();
        let mut no_record = good.clone();
        no_record[17 * 2048 + 7] = b'X';
        assert!(matches!(
            efi_image(&mut Cursor::new(no_record)),
            Err(ElToritoError::NoBootRecord)
        ));
        let mut not_fat = good.clone();
        not_fat[start as usize + 510] = 0;
        assert!(matches!(
            efi_image(&mut Cursor::new(not_fat)),
            Err(ElToritoError::NotFat(_))
        ));
        let catalog_at =
            u32::from_le_bytes(good[17 * 2048 + 0x47..17 * 2048 + 0x4b].try_into().unwrap())
                as usize
                * 2048;
        let mut bios_only = good.clone();
        bios_only[catalog_at + 1] = 0;
        bios_only[catalog_at + 29] = bios_only[catalog_at + 29].wrapping_add(0xef);
        assert!(matches!(
            efi_image(&mut Cursor::new(bios_only)),
            Err(ElToritoError::NoEfiEntry)
        ));
        assert!(!is_iso(&mut Cursor::new(vec![0u8; 4096])).unwrap());
        assert!(efi_image(&mut Cursor::new(good[..40_000].to_vec())).is_err());
    }
}
