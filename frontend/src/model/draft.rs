//! Keeping a draft spec in the URL fragment (`#draft=...`), so a reload or
//! a shared link restores it. The fragment never reaches the server.

use super::base64::{decode_url, encode_url};

const KEY: &str = "draft=";

/// The fragment (without `#`) that carries `text`.
pub fn encode(text: &str) -> String {
    format!("{KEY}{}", encode_url(text.as_bytes()))
}

/// The draft in a fragment (with or without the leading `#`), if it
/// carries a readable one.
pub fn decode(fragment: &str) -> Option<String> {
    let fragment = fragment.strip_prefix('#').unwrap_or(fragment);
    let data = fragment
        .split('&')
        .find_map(|part| part.strip_prefix(KEY))?;
    let bytes = decode_url(data)?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_round_trip_through_the_fragment() {
        let text = "kernel:\n  image: linuxkit/kernel:6.6\n# ü + / ? & #\n";
        let f = encode(text);
        assert!(
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "=-_".contains(c)),
            "{f}"
        );
        assert_eq!(decode(&f).as_deref(), Some(text));
        assert_eq!(decode(&format!("#{f}")).as_deref(), Some(text));
        assert_eq!(decode(&format!("x=1&{f}")).as_deref(), Some(text));
    }

    #[test]
    fn broken_fragments_are_no_draft() {
        assert_eq!(decode(""), None);
        assert_eq!(decode("#other=1"), None);
        assert_eq!(decode("#draft=!!!"), None);
        assert_eq!(
            decode(&format!("draft={}", encode_url(&[0xff, 0xfe]))),
            None
        );
    }
}
