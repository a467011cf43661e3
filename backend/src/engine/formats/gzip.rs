//! Deterministic gzip: no file name, no timestamp, a fixed OS byte, so
//! the bytes depend only on the input and the level.

use std::io::Write;

use flate2::{Compression, GzBuilder};

/// The fixed gzip header: deflate, no flags, mtime 0, no extra flags, OS
/// 255 (unknown).
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Wraps `out` in a gzip encoder whose header carries nothing host-specific.
pub fn encoder<W: Write>(out: W, level: u32) -> flate2::write::GzEncoder<W> {
    GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, Compression::new(level))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    #[test]
    fn header_is_fixed_and_output_round_trips() {
        let mut enc = super::encoder(Vec::new(), 6);
        enc.write_all(b"kiln").unwrap();
        let bytes = enc.finish().unwrap();
        // magic, deflate, no flags, mtime 0, xfl, OS 255
        assert_eq!(&bytes[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
        assert_eq!(bytes[9], 255);
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "kiln");
    }
}
