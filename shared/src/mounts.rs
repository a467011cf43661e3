//! The short mount forms (`binds`, `tmpfs`) and linuxkit's defaults for
//! `mounts` entries.

use std::fmt;

/// A parsed `src:dst[:opt,opt]` bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    /// `None` when the bind has no options part.
    pub options: Option<Vec<&'a str>>,
}

impl Bind<'_> {
    /// A source without a leading `/` names a volume.
    pub fn volume(&self) -> Option<&str> {
        (!self.source.starts_with('/')).then_some(self.source)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountError {
    BindShape,
    TmpfsShape,
    Empty(&'static str),
    MissingType(String),
    MissingDestination(String),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::BindShape => {
                f.write_str("a bind must be `source:destination` or `source:destination:options`")
            }
            MountError::TmpfsShape => {
                f.write_str("a tmpfs must be `destination` or `destination:options`")
            }
            MountError::Empty(part) => write!(f, "the {part} is empty"),
            MountError::MissingType(dst) => write!(
                f,
                "mount for destination `{dst}` is missing `type` and none can be inferred from its source"
            ),
            MountError::MissingDestination(kind) => write!(
                f,
                "mount of type `{kind}` is missing `destination` and none can be inferred"
            ),
        }
    }
}

impl std::error::Error for MountError {}

pub fn parse_bind(text: &str) -> Result<Bind<'_>, MountError> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [source, destination] | [source, destination, _] => {
            if source.is_empty() {
                return Err(MountError::Empty("source"));
            }
            if destination.is_empty() {
                return Err(MountError::Empty("destination"));
            }
            Ok(Bind {
                source,
                destination,
                options: parts.get(2).map(|o| o.split(',').collect()),
            })
        }
        _ => Err(MountError::BindShape),
    }
}

/// Parses `dst[:opt,opt]`, returning the destination and options.
pub fn parse_tmpfs(text: &str) -> Result<(&str, Option<Vec<&str>>), MountError> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [destination] | [destination, _] => {
            if destination.is_empty() {
                return Err(MountError::Empty("destination"));
            }
            Ok((destination, parts.get(1).map(|o| o.split(',').collect())))
        }
        _ => Err(MountError::TmpfsShape),
    }
}

/// The type linuxkit infers for a `mounts` entry with none.
pub fn infer_type(source: Option<&str>, destination: Option<&str>) -> Option<String> {
    match source {
        Some(s @ ("mqueue" | "devpts" | "proc" | "sysfs" | "cgroup")) => Some(s.to_owned()),
        _ if destination == Some("/dev") => Some("tmpfs".to_owned()),
        _ => None,
    }
}

/// The destination linuxkit infers for a `mounts` entry with none.
pub fn infer_destination(kind: &str) -> Option<&'static str> {
    match kind {
        "proc" => Some("/proc"),
        "devpts" => Some("/dev/pts"),
        "sysfs" => Some("/sys"),
        "cgroup" => Some("/sys/fs/cgroup"),
        "mqueue" => Some("/dev/mqueue"),
        _ => None,
    }
}

/// Does a mount's option list make it read-only? linuxkit takes the first of
/// `ro` and `rw`.
pub fn options_read_only<'a>(options: impl IntoIterator<Item = &'a str>) -> bool {
    options
        .into_iter()
        .find(|o| *o == "ro" || *o == "rw")
        .is_some_and(|o| o == "ro")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_have_two_or_three_parts() {
        let b = parse_bind("vol:/data:ro").unwrap();
        assert_eq!(b.volume(), Some("vol"));
        assert_eq!(b.options, Some(vec!["ro"]));
        assert_eq!(parse_bind("/a:/b").unwrap().volume(), None);
        assert_eq!(parse_bind("/a"), Err(MountError::BindShape));
        assert_eq!(parse_bind("/a:/b:ro:x"), Err(MountError::BindShape));
    }

    #[test]
    fn tmpfs_has_at_most_one_colon() {
        assert_eq!(parse_tmpfs("/tmp").unwrap(), ("/tmp", None));
        assert_eq!(parse_tmpfs("/a:b:c"), Err(MountError::TmpfsShape));
    }

    #[test]
    fn read_only_is_the_first_of_ro_and_rw() {
        assert!(options_read_only(["bind", "ro", "rw"]));
        assert!(!options_read_only(["rw", "ro"]));
        assert!(!options_read_only(["bind"]));
    }
}
