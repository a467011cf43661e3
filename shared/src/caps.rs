//! Linux capability names, in kernel-number order.

/// Every capability linuxkit knows, `CAP_CHOWN` (0) to
/// `CAP_CHECKPOINT_RESTORE` (40). `all` expands to this list, in this order.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Is `list` the one-element shorthand `all` or `none` (any case)?
pub fn shorthand(list: &[String]) -> Option<Shorthand> {
    match list {
        [one] if one.eq_ignore_ascii_case("all") => Some(Shorthand::All),
        [one] if one.eq_ignore_ascii_case("none") => Some(Shorthand::None),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shorthand {
    All,
    None,
}

pub fn is_known(name: &str) -> bool {
    CAPABILITIES.contains(&name)
}

/// Suggests the spelling a user probably meant for an unknown name.
pub fn suggest(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let candidate = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    is_known(&candidate).then_some(candidate)
}
