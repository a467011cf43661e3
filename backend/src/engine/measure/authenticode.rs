//! The Authenticode digest of a PE image, as EDK2's `Tcg2MeasurePeImage`
//! computes it for EV_EFI_BOOT_SERVICES_APPLICATION events (and signers
//! sign it): the whole file except the checksum, the certificate table
//! directory entry and the certificate table itself, with the section data
//! taken in file order.

use super::bank::{Bank, Digests, MultiHasher};
use super::pe::{Pe, PeError};

/// The Authenticode digest of `bytes` in each of `banks`.
pub fn digests(bytes: &[u8], banks: &[Bank]) -> Result<Digests, PeError> {
    let pe = Pe::parse(bytes)?;
    let mut h = MultiHasher::new(banks);
    for range in ranges(&pe)? {
        h.update(&bytes[range]);
    }
    Ok(h.finish())
}

/// The file ranges hashed, in order.
pub fn ranges(pe: &Pe<'_>) -> Result<Vec<std::ops::Range<usize>>, PeError> {
    let len = pe.bytes.len();
    let mut out = Vec::new();
    out.push(0..pe.checksum_offset);
    match pe.security_dir_offset {
        Some(dir) => {
            out.push(pe.checksum_offset + 4..dir);
            out.push(dir + 8..pe.size_of_headers);
        }
        None => out.push(pe.checksum_offset + 4..pe.size_of_headers),
    }
    if out.iter().any(|r| r.start > r.end) {
        return Err(PeError::Malformed(
            "the header fields Authenticode skips lie past SizeOfHeaders".into(),
        ));
    }
    let mut sections: Vec<_> = pe.sections.iter().filter(|s| s.raw_size > 0).collect();
    sections.sort_by_key(|s| s.raw_offset);
    let mut hashed = pe.size_of_headers;
    for s in sections {
        let r = pe.raw_range(s)?;
        hashed += r.len();
        out.push(r);
    }
    let cert = pe.cert_table.map_or(0, |(_, size)| size as usize);
    if len > hashed + cert {
        out.push(hashed..len - cert);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const HDR: usize = 0x400;

    /// A minimal PE32+ image: headers of [`HDR`] bytes, the given sections'
    /// raw data in order, then `trailer` bytes and an optional certificate
    /// table.
    pub(crate) fn synthetic_pe(
        sections: &[(&str, &[u8], u32)],
        trailer: &[u8],
        cert: &[u8],
    ) -> Vec<u8> {
        let mut b = vec![0u8; HDR];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&(HDR as u32).to_le_bytes());
        b[opt + 64..opt + 68].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let table = opt + 240;
        let mut offset = HDR as u32;
        let mut data = Vec::new();
        for (i, (name, bytes, vsize)) in sections.iter().enumerate() {
            let e = table + i * 40;
            b[e..e + name.len()].copy_from_slice(name.as_bytes());
            b[e + 8..e + 12].copy_from_slice(&vsize.to_le_bytes());
            b[e + 12..e + 16].copy_from_slice(&(0x1000 * (i as u32 + 1)).to_le_bytes());
            b[e + 16..e + 20].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            b[e + 20..e + 24].copy_from_slice(&offset.to_le_bytes());
            offset += bytes.len() as u32;
            data.extend_from_slice(bytes);
        }
        b.extend_from_slice(&data);
        b.extend_from_slice(trailer);
        if !cert.is_empty() {
            let at = b.len() as u32;
            let dir = opt + 112 + 32;
            b[dir..dir + 4].copy_from_slice(&at.to_le_bytes());
            b[dir + 4..dir + 8].copy_from_slice(&(cert.len() as u32).to_le_bytes());
            b.extend_from_slice(cert);
        }
        b
    }

    #[test]
    fn skips_checksum_security_entry_and_certificates() {
        let plain = synthetic_pe(
            &[(".text", &[1; 64], 64), (".data", &[2; 32], 40)],
            &[7; 8],
            &[],
        );
        let signed = synthetic_pe(
            &[(".text", &[1; 64], 64), (".data", &[2; 32], 40)],
            &[7; 8],
            &[9; 24],
        );
        // The checksum, the security entry and the table change nothing.
        let d = digests(&plain, &[Bank::Sha256]).unwrap();
        assert_eq!(d, digests(&signed, &[Bank::Sha256]).unwrap());
        let mut other_sum = plain.clone();
        other_sum[0x44 + 20 + 64] ^= 0xff;
        assert_eq!(d, digests(&other_sum, &[Bank::Sha256]).unwrap());
        // The digest is of exactly the bytes outside those three.
        let opt = 0x44 + 20;
        let dir = opt + 112 + 32;
        let mut expect = Vec::new();
        expect.extend_from_slice(&plain[..opt + 64]);
        expect.extend_from_slice(&plain[opt + 68..dir]);
        expect.extend_from_slice(&plain[dir + 8..]);
        assert_eq!(d.get(Bank::Sha256).unwrap(), Bank::Sha256.hash(&expect));
        // Any other byte does change it.
        let mut flipped = plain.clone();
        flipped[HDR + 70] ^= 1;
        assert_ne!(d, digests(&flipped, &[Bank::Sha256]).unwrap());
    }

    #[test]
    fn sections_are_hashed_in_file_order() {
        let pe = synthetic_pe(&[(".a", &[1; 16], 16), (".b", &[2; 16], 16)], &[], &[]);
        let mut swapped = pe.clone();
        // Swap the two table entries; the file order stays the same.
        let table = 0x44 + 20 + 240;
        let (a, b) = (
            swapped[table..table + 40].to_vec(),
            swapped[table + 40..table + 80].to_vec(),
        );
        swapped[table..table + 40].copy_from_slice(&b);
        swapped[table + 40..table + 80].copy_from_slice(&a);
        let r1 = ranges(&Pe::parse(&pe).unwrap()).unwrap();
        let r2 = ranges(&Pe::parse(&swapped).unwrap()).unwrap();
        assert_eq!(r1[3..], r2[3..]);
    }

    #[test]
    fn broken_images_are_errors() {
        let pe = synthetic_pe(&[(".text", &[1; 64], 64)], &[], &[]);
        assert!(matches!(
            digests(b"MZ", &[Bank::Sha256]),
            Err(PeError::Truncated { .. })
        ));
        assert!(matches!(
            digests(b"ELF....", &[Bank::Sha256]),
            Err(PeError::NotPe(_))
        ));
        assert!(digests(&pe[..HDR + 0x20], &[Bank::Sha256]).is_err());
        let mut bad_magic = pe.clone();
        bad_magic[0x44 + 20] = 0;
        assert!(matches!(
            digests(&bad_magic, &[Bank::Sha256]),
            Err(PeError::Magic(_))
        ));
    }
}
