//! linuxkit's per-entry filter (spec B.2 step 3) and the "touch" set.
//!
//! kiln deduplicates where linuxkit repeats itself: every touch entry is
//! written at most once, either in place of the image's own entry or
//! appended after the image. What is written is chosen so that extracting
//! kiln's stream gives the same tree as extracting linuxkit's, where the
//! appended duplicate wins:
//!
//! * `etc/hosts` and `etc/resolv.conf` found in the image are replaced by
//!   exactly the touch entry (root, 0644, constant mtime), at the image's
//!   position, and not appended again;
//! * `dev`, `etc`, `proc` and `sys` directories found in the image keep
//!   their place and xattrs but get the touch metadata (root, 0755,
//!   constant mtime), and are not appended again; as non-directories they
//!   do not count, so a directory is appended after them;
//! * `etc/mtab` found in the image gets the touch metadata (root, 0755,
//!   constant mtime) but keeps its kind, as in linuxkit;
//! * `dev/pts` and `dev/shm` are always dropped from the image and
//!   appended.

use super::Role;
use crate::engine::fs::{Entry, Kind, LINUXKIT_EPOCH};

/// linuxkit's replacement `/etc/hosts`.
pub const HOSTS: &str = "127.0.0.1       localhost\n\
::1     localhost ip6-localhost ip6-loopback\n\
fe00::0 ip6-localnet\n\
ff00::0 ip6-mcastprefix\n\
ff02::1 ip6-allnodes\n\
ff02::2 ip6-allrouters\n";

/// linuxkit's replacement `/etc/resolv.conf` for containers and the kernel.
pub const NO_RESOLV_CONF: &str = "\n# no resolv.conf configured\n";

/// Where `/etc/resolv.conf` points in init and volume images.
pub const RESOLV_CONF_LINK: &str = "/run/resolvconf/resolv.conf";

/// Names dropped from every image (exact match on the clean name).
pub const DROPPED: [&str; 6] = [
    ".dockerenv",
    "Dockerfile",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
];

/// The touch set, in the order linuxkit appends it.
pub const TOUCH: [&str; 9] = [
    "dev",
    "dev/pts",
    "dev/shm",
    "etc",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "proc",
    "sys",
];

/// What the filter does with an image entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Not written.
    Drop,
    /// Written as the touch entry instead (`etc/hosts`, `etc/resolv.conf`).
    Replace,
    /// Written with the touch entry's mode, owner and mtime.
    Normalize { mode: u32 },
    /// Written unchanged.
    Keep,
}

/// The filter's verdict for the clean name `path`.
pub(crate) fn action(path: &str, is_dir: bool) -> Action {
    match path {
        p if DROPPED.contains(&p) => Action::Drop,
        "etc/hosts" | "etc/resolv.conf" => Action::Replace,
        "dev" | "etc" | "proc" | "sys" if is_dir => Action::Normalize { mode: 0o755 },
        "etc/mtab" => Action::Normalize { mode: 0o755 },
        _ => Action::Keep,
    }
}

/// Whether the image's own entry at `key` makes the touch entry redundant:
/// directories must have been written as directories, the rest just
/// written.
pub(crate) fn satisfied(key: &str, written_dir: bool) -> bool {
    !touch_is_dir(key) || written_dir
}

fn touch_is_dir(key: &str) -> bool {
    matches!(key, "dev" | "dev/pts" | "dev/shm" | "etc" | "proc" | "sys")
}

/// The touch entry for `key` (unprefixed, without provenance) and its data.
pub(crate) fn touch_entry(key: &str, role: Role) -> (Entry, &'static [u8]) {
    let file = |content: &'static str| {
        let mut e = Entry::new(key, Kind::File, 0o644, LINUXKIT_EPOCH);
        e.size = content.len() as u64;
        (e, content.as_bytes())
    };
    match key {
        "etc/hosts" => file(HOSTS),
        "etc/resolv.conf" if role.resolv_conf_symlink() => (
            Entry::new(
                key,
                Kind::Symlink {
                    target: RESOLV_CONF_LINK.to_owned(),
                },
                0o644,
                LINUXKIT_EPOCH,
            ),
            b"",
        ),
        "etc/resolv.conf" => file(NO_RESOLV_CONF),
        "etc/mtab" => (
            Entry::new(
                key,
                Kind::Symlink {
                    target: "/proc/mounts".to_owned(),
                },
                0o755,
                LINUXKIT_EPOCH,
            ),
            b"",
        ),
        _ => (Entry::new(key, Kind::Dir, 0o755, LINUXKIT_EPOCH), b""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_is_six_lines() {
        let lines: Vec<&str> = HOSTS.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "127.0.0.1       localhost");
        assert_eq!(lines[1], "::1     localhost ip6-localhost ip6-loopback");
        assert!(HOSTS.ends_with("ff02::2 ip6-allrouters\n"));
    }

    #[test]
    fn touch_order_is_sorted_like_linuxkit() {
        let mut keys: Vec<String> = TOUCH
            .iter()
            .map(|k| {
                if touch_is_dir(k) {
                    format!("{k}/")
                } else {
                    k.to_string()
                }
            })
            .collect();
        let before = keys.clone();
        keys.sort();
        assert_eq!(keys, before);
    }

    #[test]
    fn actions() {
        assert_eq!(action("dev/console", false), Action::Drop);
        assert_eq!(action("etc/hosts", false), Action::Replace);
        assert_eq!(action("etc", true), Action::Normalize { mode: 0o755 });
        assert_eq!(action("etc", false), Action::Keep);
        assert_eq!(action("etc/passwd", false), Action::Keep);
        assert_eq!(action("lower/etc/hosts", false), Action::Keep);
    }
}
