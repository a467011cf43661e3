//! `rlimits` entries: `NAME,SOFT,HARD`.

use std::fmt;

/// The resources `setrlimit` knows, without the `RLIMIT_` prefix.
pub const RLIMIT_NAMES: [&str; 16] = [
    "CPU",
    "FSIZE",
    "DATA",
    "STACK",
    "CORE",
    "RSS",
    "NPROC",
    "NOFILE",
    "MEMLOCK",
    "AS",
    "LOCKS",
    "SIGPENDING",
    "MSGQUEUE",
    "NICE",
    "RTPRIO",
    "RTTIME",
];

/// A parsed rlimit, ready for OCI `process.rlimits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_` plus the upper-case name.
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RlimitError {
    Shape,
    UnknownName(String),
    BadValue(String),
    SoftAboveHard,
}

impl fmt::Display for RlimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RlimitError::Shape => {
                f.write_str("expected `NAME,SOFT,HARD`, such as `nofile,1024,4096`")
            }
            RlimitError::UnknownName(n) => write!(
                f,
                "unknown rlimit `{n}`; expected one of {}",
                RLIMIT_NAMES.join(", ").to_ascii_lowercase()
            ),
            RlimitError::BadValue(v) => write!(
                f,
                "rlimit value `{v}` is neither an unsigned 64-bit number nor `unlimited`"
            ),
            RlimitError::SoftAboveHard => f.write_str("the soft limit is above the hard limit"),
        }
    }
}

impl std::error::Error for RlimitError {}

/// Parses one entry as linuxkit does: at most three comma-separated parts,
/// trimmed; the name is case-insensitive with an optional `RLIMIT_` prefix;
/// `unlimited` is 2^64-1.
pub fn parse(text: &str) -> Result<Rlimit, RlimitError> {
    let parts: Vec<&str> = text.splitn(3, ',').map(str::trim).collect();
    let [name, soft, hard] = parts.as_slice() else {
        return Err(RlimitError::Shape);
    };
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("RLIMIT_").unwrap_or(&upper);
    if !RLIMIT_NAMES.contains(&bare) {
        return Err(RlimitError::UnknownName((*name).to_owned()));
    }
    let value = |v: &str| -> Result<u64, RlimitError> {
        if v.eq_ignore_ascii_case("unlimited") {
            Ok(u64::MAX)
        } else {
            v.parse::<u64>()
                .map_err(|_| RlimitError::BadValue(v.to_owned()))
        }
    };
    let soft = value(soft)?;
    let hard = value(hard)?;
    // setrlimit(2) refuses this with EINVAL when the container starts.
    if soft > hard {
        return Err(RlimitError::SoftAboveHard);
    }
    Ok(Rlimit {
        kind: format!("RLIMIT_{bare}"),
        soft,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_linuxkit_forms() {
        let r = parse(" nofile , 1024, unlimited").unwrap();
        assert_eq!(r.kind, "RLIMIT_NOFILE");
        assert_eq!((r.soft, r.hard), (1024, u64::MAX));
        assert_eq!(parse("RLIMIT_core,0,0").unwrap().kind, "RLIMIT_CORE");
        assert_eq!(parse("nofile,1"), Err(RlimitError::Shape));
        assert!(matches!(
            parse("bogus,1,1"),
            Err(RlimitError::UnknownName(_))
        ));
        assert!(matches!(parse("cpu,-1,1"), Err(RlimitError::BadValue(_))));
        assert_eq!(parse("cpu,2,1"), Err(RlimitError::SoftAboveHard));
    }
}
