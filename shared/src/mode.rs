//! Octal permission strings such as `"0644"`.

/// Parses an octal mode as Go's `strconv.ParseUint(s, 8, 32)` does: digits
/// 0-7 only, no `0o` prefix, no sign, at most 32 bits.
pub fn parse_octal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_octal;

    #[test]
    fn accepts_go_octal_only() {
        assert_eq!(parse_octal("0644"), Some(0o644));
        assert_eq!(parse_octal("644"), Some(0o644));
        assert_eq!(parse_octal("0o644"), None);
        assert_eq!(parse_octal("0648"), None);
        assert_eq!(parse_octal(""), None);
        assert_eq!(parse_octal("-1"), None);
    }
}
