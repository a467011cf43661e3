//! Base64 for drafts in the URL (URL-safe alphabet, no padding) and PEM
//! bodies (standard alphabet, padded). The `base64` crate's generic engine
//! took the WASM module 6 KB for these two uses.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` in the URL-safe alphabet without padding.
pub fn encode_url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(URL_SAFE[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes URL-safe base64 without padding.
pub fn decode_url(text: &str) -> Option<Vec<u8>> {
    decode(text.as_bytes(), URL_SAFE)
}

/// Decodes standard base64; padding is required where the length needs it.
pub fn decode_standard(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let body = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="))
        .unwrap_or(bytes);
    decode(body, STANDARD)
}

fn decode(text: &[u8], alphabet: &[u8; 64]) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = alphabet.iter().position(|a| a == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        let len = chunk.len() - 1;
        // Bits below the last whole byte must be zero (canonical input).
        if n & ((1 << (24 - 8 * len)) - 1) != 0 && len < 3 {
            return None;
        }
        for i in 0..len {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::base64::engine::general_purpose::{STANDARD as STD, URL_SAFE_NO_PAD};
    use ::base64::Engine as _;

    #[test]
    fn agrees_with_the_base64_crate() {
        let mut data: Vec<u8> = Vec::new();
        for n in 0..70u32 {
            let bytes = &data[..];
            let url = URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(encode_url(bytes), url);
            assert_eq!(decode_url(&url).as_deref(), Some(bytes));
            assert_eq!(decode_standard(&STD.encode(bytes)).as_deref(), Some(bytes));
            data.push((n * 37 + 11) as u8 ^ 0xa5);
        }
    }

    #[test]
    fn refuses_what_the_crate_refuses() {
        for bad in [
            "a", "ab=c", "a*bc", "abcde", "QQ=", "QR==", "QUI=x", "====", "Q===",
        ] {
            assert_eq!(
                decode_standard(bad).is_some(),
                STD.decode(bad).is_ok(),
                "{bad}"
            );
        }
        for bad in ["a", "a+bc", "QR", "QUJ", "abcde"] {
            assert_eq!(
                decode_url(bad).is_some(),
                URL_SAFE_NO_PAD.decode(bad).is_ok(),
                "{bad}"
            );
        }
    }
}
