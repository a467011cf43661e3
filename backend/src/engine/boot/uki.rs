//! Unified Kernel Images: a systemd EFI stub with the kernel, initrd,
//! command line and os-release appended as PE sections, as `ukify` lays
//! them out. The stub's headers are kept (its timestamp too, so the UKI is
//! a function of its parts); only the section count, the image size, the
//! initialised-data size and the checksum change.

use std::ops::Range;

/// `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`.
const DATA_READ: u32 = 0x4000_0040;
const SECTION_HEADER: usize = 40;
const PE32_PLUS: u16 = 0x20b;
/// The certificate table's data directory entry (a signature would be
/// invalidated by new sections).
const CERT_DIRECTORY: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UkiError {
    #[error("the EFI stub is not a PE image: {0}")]
    NotPe(&'static str),
    #[error("the EFI stub is signed; kiln needs an unsigned stub to add sections")]
    Signed,
    #[error("the EFI stub has no room for {0} more section headers before its first section")]
    NoRoom(usize),
    #[error("the EFI stub already has a `{0}` section")]
    Duplicate(String),
    #[error("section `{0}` does not fit a PE image (over 4 GiB)")]
    TooLarge(String),
}

/// The parts of a UKI, each section present when `Some`/non-empty.
#[derive(Debug, Default, Clone)]
pub struct Parts<'a> {
    pub osrel: &'a [u8],
    pub cmdline: &'a [u8],
    pub splash: Option<&'a [u8]>,
    pub dtb: Option<&'a [u8]>,
    pub initrd: &'a [u8],
    pub linux: &'a [u8],
}

impl<'a> Parts<'a> {
    /// In ukify's order: `.linux` last.
    fn sections(&self) -> Vec<(&'static str, &'a [u8])> {
        let mut out = vec![(".osrel", self.osrel), (".cmdline", self.cmdline)];
        if let Some(dtb) = self.dtb {
            out.push((".dtb", dtb));
        }
        if let Some(splash) = self.splash {
            out.push((".splash", splash));
        }
        if !self.initrd.is_empty() {
            out.push((".initrd", self.initrd));
        }
        out.push((".linux", self.linux));
        out
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, UkiError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(UkiError::NotPe("truncated headers"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, UkiError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(UkiError::NotPe("truncated headers"))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn align(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

/// Where things are in a PE32+ header.
struct Layout {
    coff: usize,
    optional: usize,
    sections: Range<usize>,
    count: usize,
    section_alignment: u64,
    file_alignment: u64,
}

fn layout(stub: &[u8]) -> Result<Layout, UkiError> {
    if stub.get(..2) != Some(b"MZ") {
        return Err(UkiError::NotPe("no MZ header"));
    }
    let pe = u32_at(stub, 0x3c)? as usize;
    if stub.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(UkiError::NotPe("no PE signature"));
    }
    let coff = pe + 4;
    let count = u16_at(stub, coff + 2)? as usize;
    let optional_size = u16_at(stub, coff + 16)? as usize;
    let optional = coff + 20;
    if u16_at(stub, optional)? != PE32_PLUS {
        return Err(UkiError::NotPe("not PE32+"));
    }
    let directories = u32_at(stub, optional + 108)? as usize;
    if directories > CERT_DIRECTORY && u32_at(stub, optional + 112 + 8 * CERT_DIRECTORY + 4)? != 0 {
        return Err(UkiError::Signed);
    }
    let start = optional + optional_size;
    let sections = start..start + count * SECTION_HEADER;
    if sections.end > stub.len() {
        return Err(UkiError::NotPe("truncated section table"));
    }
    let section_alignment = u64::from(u32_at(stub, optional + 32)?);
    let file_alignment = u64::from(u32_at(stub, optional + 36)?);
    if section_alignment == 0 || file_alignment == 0 {
        return Err(UkiError::NotPe("zero alignment"));
    }
    Ok(Layout {
        coff,
        optional,
        sections,
        count,
        section_alignment,
        file_alignment,
    })
}

/// Builds the UKI: `stub` with `parts` appended as new sections, each
/// placed after the stub's last section in memory (aligned to the
/// section alignment, and to at least a page) and after the end of the
/// file (aligned to the file alignment).
pub fn build(stub: &[u8], parts: &Parts<'_>) -> Result<Vec<u8>, UkiError> {
    let l = layout(stub)?;
    let new = parts.sections();
    let table_end = l.sections.end + new.len() * SECTION_HEADER;
    let mut first_raw = u64::MAX;
    let mut next_va = 0u64;
    for i in 0..l.count {
        let h = l.sections.start + i * SECTION_HEADER;
        let name = &stub[h..h + 8];
        if let Some((n, _)) = new.iter().find(|(n, _)| {
            name.starts_with(n.as_bytes()) && name[n.len()..].iter().all(|b| *b == 0)
        }) {
            return Err(UkiError::Duplicate((*n).to_owned()));
        }
        let virtual_size = u64::from(u32_at(stub, h + 8)?);
        let va = u64::from(u32_at(stub, h + 12)?);
        let raw_size = u64::from(u32_at(stub, h + 16)?);
        let raw = u64::from(u32_at(stub, h + 20)?);
        if raw_size > 0 {
            first_raw = first_raw.min(raw);
        }
        next_va = next_va.max(va + virtual_size.max(raw_size));
    }
    let size_of_headers = u64::from(u32_at(stub, l.optional + 60)?);
    if table_end as u64 > first_raw.min(size_of_headers) {
        return Err(UkiError::NoRoom(new.len()));
    }

    let va_align = l.section_alignment.max(4096);
    let mut out = stub.to_vec();
    let mut va = align(next_va, va_align);
    let mut initialised = u64::from(u32_at(stub, l.optional + 8)?);
    for (i, (name, data)) in new.iter().enumerate() {
        let raw = align(out.len() as u64, l.file_alignment);
        let raw_size = align(data.len() as u64, l.file_alignment);
        let too_large = || UkiError::TooLarge((*name).to_owned());
        let fits = |v: u64| u32::try_from(v).map_err(|_| too_large());
        let h = l.sections.end + i * SECTION_HEADER;
        out[h..h + SECTION_HEADER].fill(0);
        out[h..h + name.len()].copy_from_slice(name.as_bytes());
        put_u32(&mut out, h + 8, fits(data.len() as u64)?);
        put_u32(&mut out, h + 12, fits(va)?);
        put_u32(&mut out, h + 16, fits(raw_size)?);
        put_u32(&mut out, h + 20, fits(raw)?);
        put_u32(&mut out, h + 36, DATA_READ);
        out.resize(raw as usize, 0);
        out.extend_from_slice(data);
        out.resize((raw + raw_size) as usize, 0);
        initialised += raw_size;
        va = align(va + data.len() as u64, va_align);
        fits(va)?;
    }
    let count = u16::try_from(l.count + new.len()).map_err(|_| UkiError::NoRoom(new.len()))?;
    out[l.coff + 2..l.coff + 4].copy_from_slice(&count.to_le_bytes());
    put_u32(
        &mut out,
        l.optional + 8,
        u32::try_from(initialised).map_err(|_| UkiError::TooLarge("image".into()))?,
    );
    let size_of_image = align(va, l.section_alignment);
    put_u32(
        &mut out,
        l.optional + 56,
        u32::try_from(size_of_image).map_err(|_| UkiError::TooLarge("image".into()))?,
    );
    let sum = checksum(&out, l.optional + 64);
    put_u32(&mut out, l.optional + 64, sum);
    Ok(out)
}

/// The PE checksum: 16-bit one's-complement-style sum of the file with the
/// checksum field taken as zero, folded, plus the file length.
pub fn checksum(image: &[u8], field: usize) -> u32 {
    let word = |at: usize| -> u64 {
        u64::from(image[at]) | u64::from(*image.get(at + 1).unwrap_or(&0)) << 8
    };
    // Four 16-bit words per step, summed in 64 bits and folded at the end
    // (no carry is lost below 2^48 words); the checksum field's two words
    // are taken back out.
    let mut sum: u64 = 0;
    let mut words = image.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        sum += (v & 0xffff) + (v >> 16 & 0xffff) + (v >> 32 & 0xffff) + (v >> 48);
    }
    let tail = image.len() - words.remainder().len();
    for at in (tail..image.len()).step_by(2) {
        sum += word(at);
    }
    sum -= word(field) + word(field + 2);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    (sum as u32).wrapping_add(image.len() as u32)
}

/// A section of a PE image by name, for checks: its virtual address and
/// bytes.
pub fn section<'a>(image: &'a [u8], name: &str) -> Result<Option<(u32, &'a [u8])>, UkiError> {
    let l = layout(image)?;
    for i in 0..l.count {
        let h = l.sections.start + i * SECTION_HEADER;
        let n = &image[h..h + 8];
        if n.starts_with(name.as_bytes()) && n[name.len()..].iter().all(|b| *b == 0) {
            let size = u32_at(image, h + 8)? as usize;
            let va = u32_at(image, h + 12)?;
            let raw = u32_at(image, h + 20)? as usize;
            let data = image
                .get(raw..raw + size)
                .ok_or(UkiError::NotPe("section beyond the file"))?;
            return Ok(Some((va, data)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ with one `.text` section, headers padded to 0x400.
    fn stub() -> Vec<u8> {
        let mut b = vec![0u8; 0x600];
        b[..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x80);
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        put_u32(&mut b, coff + 4, 0x1234_5678);
        b[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&PE32_PLUS.to_le_bytes());
        put_u32(&mut b, opt + 32, 0x200);
        put_u32(&mut b, opt + 36, 0x200);
        put_u32(&mut b, opt + 56, 0x1200);
        put_u32(&mut b, opt + 60, 0x400);
        put_u32(&mut b, opt + 108, 16);
        let sec = opt + 240;
        b[sec..sec + 5].copy_from_slice(b".text");
        put_u32(&mut b, sec + 8, 0x100);
        put_u32(&mut b, sec + 12, 0x1000);
        put_u32(&mut b, sec + 16, 0x200);
        put_u32(&mut b, sec + 20, 0x400);
        b
    }

    #[test]
    fn appends_sections_after_the_stub() {
        let s = stub();
        let parts = Parts {
            osrel: b"ID=x\n",
            cmdline: b"console=ttyS0",
            initrd: &[7; 5000],
            linux: &[9; 3000],
            ..Parts::default()
        };
        let uki = build(&s, &parts).unwrap();
        let l = layout(&uki).unwrap();
        assert_eq!(l.count, 5);
        // The timestamp is the stub's.
        assert_eq!(u32_at(&uki, l.coff + 4).unwrap(), 0x1234_5678);
        let (va, data) = section(&uki, ".osrel").unwrap().unwrap();
        assert_eq!((va, data), (0x2000, &b"ID=x\n"[..]));
        let (va, data) = section(&uki, ".initrd").unwrap().unwrap();
        assert_eq!((va, data.len()), (0x4000, 5000));
        let (va, data) = section(&uki, ".linux").unwrap().unwrap();
        assert_eq!((va, data), (0x6000, &[9u8; 3000][..]));
        assert_eq!(u32_at(&uki, l.optional + 56).unwrap(), 0x7000);
        assert_eq!(uki.len() % 0x200, 0);
        assert_eq!(
            u32_at(&uki, l.optional + 64).unwrap(),
            checksum(&uki, l.optional + 64)
        );
        assert_eq!(build(&s, &parts).unwrap(), uki);
        assert_eq!(
            build(&uki, &parts),
            Err(UkiError::Duplicate(".osrel".into()))
        );
    }

    #[test]
    fn checksum_skips_its_own_field() {
        // Words 0x0102 and 0x0304 around a zeroed field at 4, odd tail 0x05.
        let image = [0x02, 0x01, 0x04, 0x03, 0xff, 0xff, 0xff, 0xff, 0x05];
        assert_eq!(checksum(&image, 4), 0x0102 + 0x0304 + 0x05 + 9);
    }

    #[test]
    fn refuses_what_is_not_a_stub() {
        assert_eq!(
            build(b"hello", &Parts::default()),
            Err(UkiError::NotPe("no MZ header"))
        );
        let mut s = stub();
        put_u32(&mut s, 0x84 + 20 + 112 + 8 * CERT_DIRECTORY + 4, 16);
        assert_eq!(build(&s, &Parts::default()), Err(UkiError::Signed));
    }
}
