//! A hardened, streaming tar reader.
//!
//! Header fields (octal and base-256 numbers, the ustar prefix, device
//! numbers) are decoded by the `tar` crate's [`tar::Header`]; the framing
//! around them is done here because `tar::Archive` is not fit for hostile
//! input in three ways: it reads GNU long names and PAX headers of any size
//! into memory, its PAX parser splits records at every newline so binary
//! xattr values (a `security.capability` can contain 0x0a) fail to parse,
//! and it consumes data for directories, links and devices that declare a
//! size, where Go's reader (and so linuxkit) does not.
//!
//! Semantics follow Go's `archive/tar`: unsigned or signed header checksums;
//! a PAX `path`/`linkpath` overrides a GNU long name, which overrides the
//! header; PAX `size`, `uid`, `gid` and `mtime` override the header; the
//! archive ends at two zero blocks (or one followed by the end of the
//! stream); a zero block followed by anything else is an error.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::decompress::Guard;
use super::error::{FlattenErrorKind, Limit};

const BLOCK: usize = 512;

/// Per-entry limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TarLimits {
    pub max_path_len: usize,
    pub max_metadata: u64,
}

/// One archive member, extended headers applied.
#[derive(Debug)]
pub(crate) struct Member {
    pub typeflag: u8,
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// A framing error, with the member's path when it is known.
#[derive(Debug)]
pub(crate) struct TarError {
    pub path: Option<String>,
    pub kind: FlattenErrorKind,
}

impl From<FlattenErrorKind> for TarError {
    fn from(kind: FlattenErrorKind) -> Self {
        TarError { path: None, kind }
    }
}

/// Entry types that never carry data in Go's reader.
fn header_only(typeflag: u8) -> Option<&'static str> {
    Some(match typeflag {
        b'1' => "hard link",
        b'2' => "symlink",
        b'3' => "character device",
        b'4' => "block device",
        b'5' => "directory",
        b'6' => "fifo",
        _ => return None,
    })
}

fn corrupt(message: impl Into<String>) -> FlattenErrorKind {
    FlattenErrorKind::CorruptTar(message.into())
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The stream of members of one layer.
pub(crate) struct TarStream<'a> {
    inner: Guard<'a>,
    /// Data bytes of the current member not yet read.
    remaining: u64,
    /// Padding after the current member's data.
    padding: u64,
    /// Set when the data ended before its declared size.
    truncated: bool,
    /// The current member's path (lossy), for errors found while skipping.
    current: Option<String>,
    finished: bool,
}

impl<'a> TarStream<'a> {
    pub(crate) fn new(inner: Guard<'a>) -> Self {
        TarStream {
            inner,
            remaining: 0,
            padding: 0,
            truncated: false,
            current: None,
            finished: false,
        }
    }

    pub(crate) fn guard(&self) -> &Guard<'a> {
        &self.inner
    }

    /// Turns a read error into a typed error: the guard's reason if it has
    /// one, otherwise truncation or a plain read error.
    pub(crate) fn io_error(&mut self, e: io::Error, context: &str) -> FlattenErrorKind {
        if let Some(kind) = self.inner.take_failure() {
            return kind;
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FlattenErrorKind::Truncated(context.to_owned())
        } else {
            FlattenErrorKind::Read(e)
        }
    }

    /// After a sink error: the reason on the reading side, if any.
    pub(crate) fn reading_failure(&mut self) -> Option<FlattenErrorKind> {
        if let Some(kind) = self.inner.take_failure() {
            return Some(kind);
        }
        if self.truncated {
            self.truncated = false;
            return Some(FlattenErrorKind::Truncated(
                "the layer ends inside a file's data".to_owned(),
            ));
        }
        None
    }

    /// Reads as much of `buf` as the stream has; returns how much.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, FlattenErrorKind> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e, "reading a header")),
            }
        }
        Ok(filled)
    }

    /// Reads and discards `n` bytes.
    fn discard(&mut self, mut n: u64, context: &str) -> Result<(), FlattenErrorKind> {
        let mut scratch = [0u8; 8192];
        while n > 0 {
            let want = scratch.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            match self.inner.read(&mut scratch[..want]) {
                Ok(0) => return Err(FlattenErrorKind::Truncated(context.to_owned())),
                Ok(k) => n -= k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e, context)),
            }
        }
        Ok(())
    }

    /// Reads the data of an extended header (bounded by the caller).
    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, FlattenErrorKind> {
        let len = usize::try_from(size).map_err(|_| corrupt("extended header too large"))?;
        let mut data = vec![0u8; len];
        if self.fill(&mut data)? != len {
            return Err(FlattenErrorKind::Truncated(
                "the layer ends inside an extended header".to_owned(),
            ));
        }
        self.discard(padding(size), "the layer ends inside padding")?;
        Ok(data)
    }

    /// Skips what is left of the current member.
    pub(crate) fn skip_data(&mut self) -> Result<(), FlattenErrorKind> {
        let (remaining, pad) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        if remaining > 0 {
            self.discard(remaining, "the layer ends inside a file's data")?;
        }
        self.discard(pad, "the layer ends inside padding")
    }

    /// A reader over the current member's data that fails (instead of
    /// ending early) if the layer is shorter than declared.
    pub(crate) fn data(&mut self) -> Data<'_, 'a> {
        Data { stream: self }
    }

    /// The next member, or `None` at the end of the archive.
    pub(crate) fn next(&mut self, limits: &TarLimits) -> Result<Option<Member>, TarError> {
        if let Err(kind) = self.skip_data() {
            return Err(TarError {
                path: self.current.take(),
                kind,
            });
        }
        self.current = None;
        if self.finished {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<BTreeMap<String, Vec<u8>>> = None;
        let mut metadata: u64 = 0;
        loop {
            let mut block = [0u8; BLOCK];
            let n = self.fill(&mut block)?;
            let pending = long_name.is_some() || long_link.is_some() || pax.is_some();
            if n == 0 {
                if pending {
                    return Err(corrupt("the archive ends after an extended header").into());
                }
                self.finished = true;
                return Ok(None);
            }
            if n < BLOCK {
                return Err(FlattenErrorKind::Truncated(
                    "the layer ends inside a header".to_owned(),
                )
                .into());
            }
            if block.iter().all(|&b| b == 0) {
                if pending {
                    return Err(corrupt("the archive ends after an extended header").into());
                }
                let mut second = [0u8; BLOCK];
                let m = self.fill(&mut second)?;
                if second[..m].iter().any(|&b| b != 0) {
                    return Err(corrupt(
                        "a zero block is followed by more data (entries after the end-of-archive marker)",
                    )
                    .into());
                }
                self.finished = true;
                return Ok(None);
            }
            let mut header = tar::Header::new_old();
            header.as_mut_bytes().copy_from_slice(&block);
            verify_checksum(&header)?;
            let typeflag = block[156];
            let size = field(&block, 124..136, "size")?;
            let size = u64::try_from(size).map_err(|_| corrupt("negative size"))?;

            if matches!(typeflag, b'L' | b'K') && size > limits.max_path_len as u64 + 1 {
                return Err(FlattenErrorKind::LimitExceeded {
                    limit: Limit::PathLength,
                    value: size,
                    max: limits.max_path_len as u64,
                }
                .into());
            }
            match typeflag {
                b'L' | b'K' | b'x' | b'g' | b'V' => {
                    metadata = metadata.saturating_add(BLOCK as u64).saturating_add(size);
                    if metadata > limits.max_metadata {
                        return Err(FlattenErrorKind::LimitExceeded {
                            limit: Limit::MetadataBytes,
                            value: metadata,
                            max: limits.max_metadata,
                        }
                        .into());
                    }
                }
                _ => {}
            }
            match typeflag {
                b'L' | b'K' => {
                    let mut value = self.read_extension(size)?;
                    if let Some(nul) = value.iter().position(|&b| b == 0) {
                        value.truncate(nul);
                    }
                    let slot = if typeflag == b'L' {
                        &mut long_name
                    } else {
                        &mut long_link
                    };
                    if slot.replace(value).is_some() {
                        return Err(corrupt("two GNU long-name headers for one entry").into());
                    }
                }
                b'x' => {
                    let data = self.read_extension(size)?;
                    let records = parse_pax(&data)?;
                    if pax.replace(records).is_some() {
                        return Err(corrupt("two PAX headers for one entry").into());
                    }
                }
                b'g' | b'V' => {
                    // Global PAX headers and volume labels describe no file.
                    self.discard(size, "the layer ends inside an extended header")?;
                    self.discard(padding(size), "the layer ends inside padding")?;
                }
                _ => {
                    let member =
                        self.member(&header, typeflag, size, long_name, long_link, pax, limits)?;
                    self.remaining = member.size;
                    self.padding = padding(member.size);
                    self.truncated = false;
                    let shown = &member.path[..member.path.len().min(256)];
                    self.current = Some(String::from_utf8_lossy(shown).into_owned());
                    return Ok(Some(member));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        header: &tar::Header,
        typeflag: u8,
        size: u64,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Option<BTreeMap<String, Vec<u8>>>,
        limits: &TarLimits,
    ) -> Result<Member, TarError> {
        let pax = pax.unwrap_or_default();
        let path = match pax.get("path").filter(|v| !v.is_empty()) {
            Some(p) => p.clone(),
            None => long_name.unwrap_or_else(|| header.path_bytes().into_owned()),
        };
        let shown = String::from_utf8_lossy(&path[..path.len().min(256)]).into_owned();
        self.member_fields(header, typeflag, size, path, long_link, &pax, limits)
            .map_err(|kind| TarError {
                path: Some(shown),
                kind,
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn member_fields(
        &mut self,
        header: &tar::Header,
        typeflag: u8,
        size: u64,
        path: Vec<u8>,
        long_link: Option<Vec<u8>>,
        pax: &BTreeMap<String, Vec<u8>>,
        limits: &TarLimits,
    ) -> Result<Member, FlattenErrorKind> {
        let record = |key: &str| pax.get(key).filter(|v| !v.is_empty());
        let number = |key: &str| -> Result<Option<u64>, FlattenErrorKind> {
            record(key)
                .map(|v| {
                    std::str::from_utf8(v)
                        .ok()
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| corrupt(format!("bad PAX {key} record")))
                })
                .transpose()
        };
        if let Some(key) = pax.keys().find(|k| k.starts_with("GNU.sparse.")) {
            return Err(FlattenErrorKind::UnsupportedPax(key.clone()));
        }

        let link = match record("linkpath") {
            Some(l) => l.clone(),
            None => long_link.unwrap_or_else(|| {
                header
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default()
            }),
        };
        for (value, max) in [(&path, limits.max_path_len), (&link, limits.max_path_len)] {
            if value.len() > max {
                return Err(FlattenErrorKind::LimitExceeded {
                    limit: Limit::PathLength,
                    value: value.len() as u64,
                    max: max as u64,
                });
            }
        }

        let size = number("size")?.unwrap_or(size);
        if let Some(kind) = header_only(typeflag) {
            if size > 0 {
                return Err(FlattenErrorKind::DataOnNonFile { kind, size });
            }
        }
        let block = header.as_bytes();
        let id = |range, what: &'static str| -> Result<u64, FlattenErrorKind> {
            u64::try_from(field(block, range, what)?)
                .map_err(|_| corrupt(format!("negative {what}")))
        };
        let uid = match number("uid")? {
            Some(v) => v,
            None => id(108..116, "uid")?,
        };
        let gid = match number("gid")? {
            Some(v) => v,
            None => id(116..124, "gid")?,
        };
        let mtime = match record("mtime") {
            Some(v) => pax_time(v)?,
            // Times before the epoch become 0.
            None => u64::try_from(field(block, 136..148, "mtime")?).unwrap_or(0),
        };
        let mode = (field(block, 100..108, "mode")? & 0o7777) as u32;
        let (dev_major, dev_minor) = if matches!(typeflag, b'3' | b'4')
            && (header.as_ustar().is_some() || header.as_gnu().is_some())
        {
            let dev = |range, what| -> Result<u32, FlattenErrorKind> {
                u32::try_from(field(block, range, what)?)
                    .map_err(|_| corrupt(format!("{what} out of range")))
            };
            (
                dev(329..337, "device major")?,
                dev(337..345, "device minor")?,
            )
        } else {
            (0, 0)
        };
        let mut xattrs = BTreeMap::new();
        for (key, value) in pax {
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if name.is_empty() {
                    return Err(corrupt("empty xattr name"));
                }
                xattrs.insert(name.to_owned(), value.clone());
            }
        }
        Ok(Member {
            typeflag,
            path,
            link,
            size,
            mode,
            uid,
            gid,
            mtime,
            dev_major,
            dev_minor,
            xattrs,
        })
    }
}

/// Reads the current member's data.
pub(crate) struct Data<'s, 'a> {
    stream: &'s mut TarStream<'a>,
}

impl Read for Data<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let s = &mut *self.stream;
        if s.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(s.remaining).unwrap_or(usize::MAX));
        let n = s.inner.read(&mut buf[..want])?;
        if n == 0 {
            s.truncated = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the layer ends inside a file's data",
            ));
        }
        s.remaining -= n as u64;
        Ok(n)
    }
}

/// Go accepts the unsigned sum and the (historic) signed sum.
fn verify_checksum(header: &tar::Header) -> Result<(), FlattenErrorKind> {
    let bytes = header.as_bytes();
    let stored = field(bytes, 148..156, "checksum")?;
    let (mut unsigned, mut signed) = (0u32, 0i32);
    for (i, &b) in bytes.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    if stored != i64::from(unsigned) && stored != i64::from(signed) {
        return Err(corrupt("header checksum mismatch"));
    }
    Ok(())
}

/// A numeric header field, as Go reads it: base-256 (two's complement)
/// when the high bit of the first byte is set, otherwise octal with
/// surrounding spaces and NULs ignored (an empty field is 0).
fn field(block: &[u8], range: std::ops::Range<usize>, what: &str) -> Result<i64, FlattenErrorKind> {
    let bad = || corrupt(format!("bad {what} field"));
    let b = &block[range];
    if b[0] & 0x80 != 0 {
        let inv = if b[0] & 0x40 != 0 { 0xff } else { 0x00 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return Err(bad());
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 > 0 {
            return Err(bad());
        }
        let x = x as i64;
        return Ok(if inv == 0xff { !x } else { x });
    }
    let trimmed = {
        let start = b.iter().position(|&c| c != b' ' && c != 0);
        match start {
            None => return Ok(0),
            Some(s) => {
                let end = b.iter().rposition(|&c| c != b' ' && c != 0).unwrap_or(s);
                &b[s..=end]
            }
        }
    };
    let digits = match trimmed.iter().position(|&c| c == 0) {
        Some(nul) => &trimmed[..nul],
        None => trimmed,
    };
    if digits.is_empty() || !digits.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return Err(bad());
    }
    let s = std::str::from_utf8(digits).map_err(|_| bad())?;
    let v = u64::from_str_radix(s, 8).map_err(|_| bad())?;
    i64::try_from(v).map_err(|_| bad())
}

/// Parses PAX records (`<len> <key>=<value>\n`), binary-safe.
fn parse_pax(mut data: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, FlattenErrorKind> {
    let bad = || corrupt("malformed PAX record");
    let mut records = BTreeMap::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let digits = &data[..space];
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len < space + 3 || len > data.len() {
            return Err(bad());
        }
        let (record, rest) = data.split_at(len);
        data = rest;
        let body = record
            .strip_suffix(b"\n")
            .ok_or_else(bad)?
            .get(space + 1..)
            .ok_or_else(bad)?;
        let eq = body.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let key = std::str::from_utf8(&body[..eq]).map_err(|_| bad())?;
        if key.is_empty() || key.contains('\0') {
            return Err(bad());
        }
        records.insert(key.to_owned(), body[eq + 1..].to_vec());
    }
    Ok(records)
}

/// A PAX time (`secs[.frac]`, possibly negative), as whole seconds; times
/// before the epoch become 0.
fn pax_time(v: &[u8]) -> Result<u64, FlattenErrorKind> {
    let bad = || corrupt("bad PAX mtime record");
    let s = std::str::from_utf8(v).map_err(|_| bad())?;
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if negative {
        return Ok(0);
    }
    secs.parse::<u64>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_are_binary_safe() {
        let value = b"\x01\x00\x00\x02\x0a\x00\x00\x00";
        let mut rec = Vec::new();
        let body_len = " SCHILY.xattr.security.capability=".len() + value.len() + 1;
        let len = body_len + 2;
        rec.extend_from_slice(format!("{len} SCHILY.xattr.security.capability=").as_bytes());
        rec.extend_from_slice(value);
        rec.push(b'\n');
        assert_eq!(rec.len(), len);
        let parsed = parse_pax(&rec).unwrap();
        assert_eq!(parsed["SCHILY.xattr.security.capability"], value);
        assert!(parse_pax(b"5 a=b\n").is_err());
        assert!(parse_pax(b"6 a=b\nx").is_err());
        assert!(parse_pax(b"99999999999999999999 a=b\n").is_err());
        assert!(parse_pax(b"4 =\n").is_err());
    }

    #[test]
    fn numeric_fields_like_go() {
        let f = |b: &[u8]| field(b, 0..b.len(), "x");
        assert_eq!(f(b"0000644\0").unwrap(), 0o644);
        assert_eq!(f(b" 644 \0").unwrap(), 0o644);
        assert_eq!(f(b"\0\0\0\0").unwrap(), 0);
        assert_eq!(f(b"        ").unwrap(), 0);
        assert!(f(b"12a4\0").is_err());
        assert!(f(b"99\0").is_err());
        assert_eq!(f(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        assert_eq!(f(&[0xff; 8]).unwrap(), -1);
        assert!(f(&[0x80, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(b"1492533000.123").unwrap(), 1_492_533_000);
        assert_eq!(pax_time(b"-12.5").unwrap(), 0);
        assert!(pax_time(b"12a").is_err());
        assert!(pax_time(b"").is_err());
    }
}
