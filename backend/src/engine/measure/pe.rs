//! The parts of a PE/COFF image that measured boot reads: the header
//! fields Authenticode skips, and the section table.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeError {
    #[error("not a PE image: {0}")]
    NotPe(&'static str),
    #[error("truncated PE image: {what} needs bytes {start}..{end}, the file has {len}")]
    Truncated {
        what: &'static str,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("unsupported PE optional header magic {0:#x}")]
    Magic(u16),
    #[error("malformed PE image: {0}")]
    Malformed(String),
}

/// One entry of the section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The 8-byte name up to its first NUL.
    pub name: String,
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub raw_size: u32,
    pub raw_offset: u32,
}

/// A parsed PE header over the image bytes.
#[derive(Debug, Clone)]
pub struct Pe<'a> {
    pub bytes: &'a [u8],
    /// Offset of OptionalHeader.CheckSum.
    pub checksum_offset: usize,
    /// Offset of the Security (certificate table) data directory entry,
    /// if the image has one.
    pub security_dir_offset: Option<usize>,
    pub size_of_headers: usize,
    /// The certificate table (offset, size), when present.
    pub cert_table: Option<(u32, u32)>,
    pub sections: Vec<Section>,
}

/// The most sections kiln accepts; the PE limit is 96.
const MAX_SECTIONS: u16 = 96;

fn u16_at(b: &[u8], off: usize, what: &'static str) -> Result<u16, PeError> {
    Ok(u16::from_le_bytes(
        slice(b, off, 2, what)?.try_into().unwrap_or_default(),
    ))
}

fn u32_at(b: &[u8], off: usize, what: &'static str) -> Result<u32, PeError> {
    Ok(u32::from_le_bytes(
        slice(b, off, 4, what)?.try_into().unwrap_or_default(),
    ))
}

fn slice<'b>(b: &'b [u8], off: usize, len: usize, what: &'static str) -> Result<&'b [u8], PeError> {
    off.checked_add(len)
        .and_then(|end| b.get(off..end))
        .ok_or(PeError::Truncated {
            what,
            start: off as u64,
            end: off as u64 + len as u64,
            len: b.len() as u64,
        })
}

impl<'a> Pe<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Pe<'a>, PeError> {
        if bytes.get(..2) != Some(b"MZ") {
            return Err(PeError::NotPe("no MZ signature"));
        }
        let pe = u32_at(bytes, 0x3c, "e_lfanew")? as usize;
        if slice(bytes, pe, 4, "PE signature")? != b"PE\0\0" {
            return Err(PeError::NotPe("no PE signature at e_lfanew"));
        }
        let coff = pe + 4;
        let sections = u16_at(bytes, coff + 2, "COFF header")?;
        if sections > MAX_SECTIONS {
            return Err(PeError::Malformed(format!("{sections} sections")));
        }
        let opt_size = u16_at(bytes, coff + 16, "COFF header")? as usize;
        let opt = coff + 20;
        let magic = u16_at(bytes, opt, "optional header")?;
        let (rva_count_at, dirs_at) = match magic {
            0x10b => (opt + 92, opt + 96),
            0x20b => (opt + 108, opt + 112),
            other => return Err(PeError::Magic(other)),
        };
        let checksum_offset = opt + 64;
        let size_of_headers = u32_at(bytes, opt + 60, "optional header")? as usize;
        let rva_count = u32_at(bytes, rva_count_at, "optional header")? as usize;
        if dirs_at + rva_count.min(16) * 8 > opt + opt_size {
            return Err(PeError::Malformed(format!(
                "{rva_count} data directories do not fit the {opt_size}-byte optional header"
            )));
        }
        let (security_dir_offset, cert_table) = if rva_count > 4 {
            let at = dirs_at + 4 * 8;
            let offset = u32_at(bytes, at, "security directory")?;
            let size = u32_at(bytes, at + 4, "security directory")?;
            (Some(at), (size > 0).then_some((offset, size)))
        } else {
            (None, None)
        };
        if size_of_headers > bytes.len() || size_of_headers < checksum_offset + 4 {
            return Err(PeError::Malformed(format!(
                "SizeOfHeaders {size_of_headers} is outside the headers or the file"
            )));
        }
        let table = opt + opt_size;
        let mut list = Vec::with_capacity(sections as usize);
        for i in 0..sections as usize {
            let s = slice(bytes, table + i * 40, 40, "section table")?;
            let name_raw = &s[..8];
            let end = name_raw.iter().position(|b| *b == 0).unwrap_or(8);
            let field = |o: usize| u32::from_le_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]);
            list.push(Section {
                name: String::from_utf8_lossy(&name_raw[..end]).into_owned(),
                virtual_size: field(8),
                virtual_address: field(12),
                raw_size: field(16),
                raw_offset: field(20),
            });
        }
        if let Some((offset, size)) = cert_table {
            if offset as u64 + size as u64 > bytes.len() as u64 {
                return Err(PeError::Malformed(format!(
                    "the certificate table {offset}+{size} runs past the end of the file ({} bytes)",
                    bytes.len()
                )));
            }
        }
        Ok(Pe {
            bytes,
            checksum_offset,
            security_dir_offset,
            size_of_headers,
            cert_table,
            sections: list,
        })
    }

    /// The file bytes of a section's raw data.
    pub fn raw_range(&self, s: &Section) -> Result<Range<usize>, PeError> {
        let start = s.raw_offset as usize;
        let end = start + s.raw_size as usize;
        if end > self.bytes.len() {
            return Err(PeError::Truncated {
                what: "section data",
                start: start as u64,
                end: end as u64,
                len: self.bytes.len() as u64,
            });
        }
        Ok(start..end)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// A section as loaded into memory: VirtualSize bytes, the raw data
    /// zero-filled past SizeOfRawData (what systemd-stub hashes).
    pub fn loaded(&self, s: &Section) -> Result<Vec<u8>, PeError> {
        let raw = &self.bytes[self.raw_range(s)?];
        let size = s.virtual_size as usize;
        let mut out = raw[..raw.len().min(size)].to_vec();
        out.resize(size, 0);
        Ok(out)
    }
}
