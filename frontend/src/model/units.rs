//! Numbers as people read them.

/// `1536` → `1.5 KiB`; bytes below 1 KiB are shown exactly.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths in integers: float formatting would add kilobytes to the
    // WASM module for one decimal.
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while (bytes as u128) >= scale * 1024 && unit < UNITS.len() - 1 {
        scale *= 1024;
        unit += 1;
    }
    // At most 10 * u64::MAX / 1024: fits u64 again, whose formatting the
    // module has anyway (u128's is extra code).
    let tenths = ((bytes as u128 * 10 + scale / 2) / scale) as u64;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// Milliseconds as seconds with one decimal, as `1.2 s`.
pub fn seconds(ms: u64) -> String {
    let tenths = (ms + 50) / 100;
    format!("{}.{} s", tenths / 10, tenths % 10)
}

/// `sha256:0123456789ab…` → `0123456789ab`, for tables; the full value
/// stays available to copy.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(size(u64::MAX), "16777216.0 TiB");
        assert_eq!(size(1024 * 1024 - 1), "1024.0 KiB");
    }

    #[test]
    fn durations() {
        assert_eq!(seconds(1250), "1.3 s");
        assert_eq!(seconds(0), "0.0 s");
        assert_eq!(seconds(61_040), "61.0 s");
    }

    #[test]
    fn digests() {
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }
}
