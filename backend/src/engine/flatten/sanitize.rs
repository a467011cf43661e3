//! Names from untrusted layers, checked and cleaned before use.
//!
//! Paths are cleaned lexically, like Go's `path.Clean` relative to the image
//! root: a leading `/`, empty and `.` components are dropped and `..` removes
//! the previous component. A `..` that would climb above the root is an
//! escape and rejected; everything else is contained. Names must be UTF-8
//! (kiln rejects other names rather than change them, so what is written is
//! always what the layer said) and free of NUL bytes.

use super::error::FlattenErrorKind;

/// The bytes as a UTF-8 name without NUL bytes.
pub(crate) fn name<'b>(bytes: &'b [u8], what: &'static str) -> Result<&'b str, FlattenErrorKind> {
    let s = std::str::from_utf8(bytes).map_err(|_| FlattenErrorKind::NonUtf8(what))?;
    if s.contains('\0') {
        return Err(FlattenErrorKind::InvalidName {
            what,
            reason: "contains a NUL byte",
        });
    }
    Ok(s)
}

/// Cleans a path relative to the image root. `None` if it climbs above the
/// root; `Some("")` for the root itself.
pub(crate) fn clean(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Cleans the destination prefix. It must already be clean apart from
/// leading and trailing slashes: no `.` or `..` components, no `//`.
pub(crate) fn prefix(raw: &str) -> Result<String, FlattenErrorKind> {
    let trimmed = raw.trim_matches('/');
    let bad = trimmed.contains('\0')
        || (!trimmed.is_empty()
            && trimmed
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == ".."));
    if bad {
        return Err(FlattenErrorKind::InvalidPrefix(raw.to_owned()));
    }
    Ok(trimmed.to_owned())
}

/// `prefix/path`, or `path` when there is no prefix.
pub(crate) fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{path}"),
    }
}

/// Splits a clean path into its parent (`""` for top-level names) and its
/// last component.
pub(crate) fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The strict ancestors of a clean path, from the root down: `""`, `a`,
/// `a/b` for `a/b/c`.
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::once("").chain(
        path.match_indices('/')
            .map(move |(i, _)| &path[..i])
            .filter(|p| !p.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean("./etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(clean("/etc//passwd/").as_deref(), Some("etc/passwd"));
        assert_eq!(clean("a/../b").as_deref(), Some("b"));
        assert_eq!(clean("./").as_deref(), Some(""));
        assert_eq!(clean("..").as_deref(), None);
        assert_eq!(clean("a/../../b").as_deref(), None);
        assert_eq!(clean("/../etc").as_deref(), None);
        assert_eq!(clean("a/.../b").as_deref(), Some("a/.../b"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix("").unwrap(), "");
        assert_eq!(
            prefix("containers/services/foo/lower/").unwrap(),
            "containers/services/foo/lower"
        );
        assert!(prefix("a/../b").is_err());
        assert!(prefix("a//b").is_err());
        assert!(prefix("./a").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["", "a", "a/b"]);
        assert_eq!(ancestors("a").collect::<Vec<_>>(), [""]);
        assert_eq!(join("p", "a"), "p/a");
        assert_eq!(join("", "a"), "a");
        assert!(name(b"a\0b", "path").is_err());
        assert!(name(b"\xff", "path").is_err());
    }
}
