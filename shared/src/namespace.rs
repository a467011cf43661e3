//! The keywords a container's `net`, `pid`, `ipc`, `uts` and `userns`
//! take; any other value is the path of a namespace file.

/// The namespace keys of an image entry.
pub const KEYS: [&str; 5] = ["net", "pid", "ipc", "uts", "userns"];

/// The keywords `key` accepts besides an absolute path.
pub fn keywords(key: &str) -> &'static [&'static str] {
    match key {
        "net" => &["host", "root", "new", "none"],
        _ => &["host", "root", "new"],
    }
}
