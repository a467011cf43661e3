//! Layer decoding: the compression is detected from the first bytes (not
//! trusted from the media type), the stream is decompressed on the fly, and
//! a guard enforces the size and ratio limits while bytes flow.
//!
//! gzip uses flate2 (zlib-rs backend) and accepts multi-member streams like
//! Go's reader; zstd uses the pure-Rust `ruzstd` decoder, with multi-frame
//! and skippable-frame support, frame checksums verified and windows capped
//! at 100 MiB (libzstd's default cap is 128 MiB).

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use super::error::{FlattenErrorKind, Limit};

/// A layer's compression, as detected from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// `tar`, `gzip` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes needed to tell a tar header apart (its `ustar` magic is at 257).
const SNIFF: usize = 262;

/// Detects the compression from the first bytes of a blob.
pub fn detect(head: &[u8]) -> Result<Compression, &'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(&[0x1f, 0x8b]) {
        return Ok(Compression::Gzip);
    }
    if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Compression::Zstd);
    }
    // A zstd skippable frame (0x184D2A5?, little-endian) in front.
    if head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18] {
        return Ok(Compression::Zstd);
    }
    if head.len() >= SNIFF && &head[257..262] == b"ustar" {
        return Ok(Compression::None);
    }
    if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Err("xz");
    }
    if head.len() >= 10 && starts(b"BZh") && head[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59] {
        return Err("bzip2");
    }
    if starts(&[0x04, 0x22, 0x4d, 0x18]) {
        return Err("lz4");
    }
    // Old (v7) tars have no magic, and an empty blob is an empty layer.
    Ok(Compression::None)
}

/// Shared between the raw counter (below the decoder) and the guard.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    compressed: Cell<u64>,
    raw_failed: Cell<bool>,
}

/// Counts the bytes read from the blob itself.
pub(crate) struct RawCounter<'a> {
    inner: Box<dyn Read + 'a>,
    meter: Rc<Meter>,
}

impl<'a> RawCounter<'a> {
    pub(crate) fn new(inner: Box<dyn Read + 'a>, meter: Rc<Meter>) -> Self {
        RawCounter { inner, meter }
    }
}

impl Read for RawCounter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.meter
                    .compressed
                    .set(self.meter.compressed.get() + n as u64);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.meter.raw_failed.set(true);
                }
                Err(e)
            }
        }
    }
}

/// Opens the decoder for a blob. Errors are read errors or an unsupported
/// compression.
pub(crate) fn open<'a>(
    mut raw: RawCounter<'a>,
) -> Result<(Compression, Box<dyn Read + 'a>), FlattenErrorKind> {
    let mut head = vec![0u8; SNIFF];
    let mut filled = 0;
    while filled < SNIFF {
        match raw.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FlattenErrorKind::Read(e)),
        }
    }
    head.truncate(filled);
    let compression = detect(&head).map_err(FlattenErrorKind::UnsupportedCompression)?;
    let stream = BufReader::with_capacity(64 * 1024, io::Cursor::new(head).chain(raw));
    let decoded: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(ZstdReader::new(stream)),
    };
    Ok((compression, decoded))
}

/// A multi-frame zstd decoder over `ruzstd`.
pub(crate) struct ZstdReader<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
    done: bool,
}

/// A valid frame header with a 1 KiB window. `FrameDecoder` only enforces
/// its window cap when re-initialised, so it is initialised with this first.
const PRIMER: [u8; 6] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00];

fn zstd_error(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl<R: BufRead> ZstdReader<R> {
    pub(crate) fn new(source: R) -> Self {
        let mut decoder = FrameDecoder::new();
        let primed = decoder.init(&PRIMER[..]).is_ok();
        ZstdReader {
            source,
            decoder,
            in_frame: false,
            // Without the primer the window cap would not hold: refuse.
            done: !primed,
        }
    }

    /// Starts the next frame; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd stream ends inside a skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(zstd_error(e)),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            if !self.in_frame {
                if !self.next_frame()? {
                    self.done = true;
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let wanted = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(zstd_error)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if !self.decoder.is_finished() {
                return Err(zstd_error("zstd decoder made no progress"));
            }
            if let Some(expected) = self.decoder.get_checksum_from_data() {
                if self.decoder.get_calculated_checksum() != Some(expected) {
                    return Err(zstd_error("zstd frame checksum mismatch"));
                }
            }
            self.in_frame = false;
        }
    }
}

/// Limits the guard enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardLimits {
    pub max_total: u64,
    pub max_ratio: u64,
    pub ratio_grace: u64,
}

/// Sits on the decompressed stream: counts bytes, enforces the total and
/// ratio limits, and remembers why reading failed so the error can be typed.
pub(crate) struct Guard<'a> {
    inner: Box<dyn Read + 'a>,
    meter: Rc<Meter>,
    compression: Compression,
    limits: GuardLimits,
    total_before: u64,
    decompressed: u64,
    failure: Option<FlattenErrorKind>,
    failed: bool,
}

impl<'a> Guard<'a> {
    pub(crate) fn new(
        inner: Box<dyn Read + 'a>,
        meter: Rc<Meter>,
        compression: Compression,
        limits: GuardLimits,
        total_before: u64,
    ) -> Self {
        Guard {
            inner,
            meter,
            compression,
            limits,
            total_before,
            decompressed: 0,
            failure: None,
            failed: false,
        }
    }

    /// Uncompressed bytes read from this layer.
    pub(crate) fn decompressed(&self) -> u64 {
        self.decompressed
    }

    /// Compressed bytes read from this layer's blob.
    pub(crate) fn compressed(&self) -> u64 {
        self.meter.compressed.get()
    }

    /// Why reading failed, once.
    pub(crate) fn take_failure(&mut self) -> Option<FlattenErrorKind> {
        self.failure.take()
    }

    fn fail(&mut self, kind: FlattenErrorKind) -> io::Error {
        let e = io::Error::other(kind.to_string());
        self.failure = Some(kind);
        self.failed = true;
        e
    }
}

impl Read for Guard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the layer already failed"));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let kind = e.kind();
                let message = e.to_string();
                let typed = if self.meter.raw_failed.get() || self.compression == Compression::None
                {
                    FlattenErrorKind::Read(e)
                } else {
                    FlattenErrorKind::Decompress {
                        compression: self.compression.name(),
                        source: e,
                    }
                };
                self.failure = Some(typed);
                self.failed = true;
                return Err(io::Error::new(kind, message));
            }
        };
        self.decompressed += n as u64;
        let total = self.total_before + self.decompressed;
        if total > self.limits.max_total {
            return Err(self.fail(FlattenErrorKind::LimitExceeded {
                limit: Limit::TotalBytes,
                value: total,
                max: self.limits.max_total,
            }));
        }
        if self.compression != Compression::None && self.decompressed > self.limits.ratio_grace {
            let compressed = self.meter.compressed.get().max(1);
            let ratio = self.decompressed / compressed;
            if ratio > self.limits.max_ratio {
                return Err(self.fail(FlattenErrorKind::LimitExceeded {
                    limit: Limit::Ratio,
                    value: ratio,
                    max: self.limits.max_ratio,
                }));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Ok(Compression::Gzip));
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Ok(Compression::Zstd));
        assert_eq!(detect(&[0x5e, 0x2a, 0x4d, 0x18]), Ok(Compression::Zstd));
        assert_eq!(detect(b""), Ok(Compression::None));
        assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Err("xz"));
        let mut tar = vec![0u8; 512];
        tar[..3].copy_from_slice(b"BZh");
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar), Ok(Compression::None));
    }

    #[test]
    fn primer_is_accepted() {
        let mut d = FrameDecoder::new();
        assert!(d.init(&PRIMER[..]).is_ok());
    }
}
