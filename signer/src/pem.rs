//! A small PEM reader and writer (RFC 7468), enough for keys: it finds every
//! block in a file, so `openssl ecparam -genkey` output (an `EC PARAMETERS`
//! block before the key) reads as well as a lone key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// One PEM block: its label and decoded bytes (zeroized on drop, as they
/// may be a private key).
pub(crate) struct Block {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
}

/// Every block in `text`, in order.
pub(crate) fn parse_all(text: &str) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            // RFC 1421 headers (Proc-Type, DEK-Info) mark legacy encryption.
            if line.contains(':') {
                return Err(Error::UnsupportedKey(format!(
                    "PEM block `{label}` has RFC 1421 headers (legacy encryption); convert it to PKCS#8"
                )));
            }
            body.push_str(line);
        }
        if !closed {
            return Err(Error::MalformedKey(format!(
                "PEM block `{label}` has no END line"
            )));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| Error::MalformedKey(format!("PEM block `{label}`: {e}")))?;
        blocks.push(Block {
            label: label.to_owned(),
            der: Zeroizing::new(der),
        });
    }
    Ok(blocks)
}

/// `bytes` as a PEM block with `label`, 64 columns, `\n` line ends.
pub(crate) fn encode(label: &str, bytes: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(bytes));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + 80));
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_multiple_blocks() {
        let a = encode("EC PARAMETERS", b"params");
        let b = encode("EC PRIVATE KEY", &[7u8; 100]);
        let text = format!("junk\n{}{}", a.as_str(), b.as_str());
        let blocks = parse_all(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "EC PARAMETERS");
        assert_eq!(blocks[1].der.as_slice(), &[7u8; 100]);
    }

    #[test]
    fn unterminated_and_bad_base64_are_errors() {
        assert!(parse_all("-----BEGIN X-----\nAAAA\n").is_err());
        assert!(parse_all("-----BEGIN X-----\n!!!\n-----END X-----\n").is_err());
        assert!(parse_all("-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n-----END X-----\n").is_err());
    }
}
