//! `config.json`: the OCI runtime spec of one container (reference B.7).
//!
//! The types below mirror runtime-spec v1.2.1's Go structs: same field
//! order, same `omitempty` behaviour, so that serialising them gives the
//! bytes `linuxkit build` writes. Only the fields linuxkit can set exist.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use kiln_shared::caps::{self, Shorthand, CAPABILITIES};
use kiln_shared::ids::IdTable;
use kiln_shared::model;
use kiln_shared::{mode, mounts, rlimit, IdRef, ImageEntry};

use super::{BundleError, ErrorKind, ImageConfig};

/// The runtime-spec version linuxkit vendors and writes as `ociVersion`.
pub const OCI_VERSION: &str = "1.2.1";

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spec {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub linux: Linux,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    pub user: User,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub cwd: String,
    /// Always written, as `{}` when every set is empty.
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    #[serde(rename = "noNewPrivileges", skip_serializing_if = "is_false")]
    pub no_new_privileges: bool,
    #[serde(rename = "oomScoreAdj", skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(rename = "additionalGids", skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounding: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effective: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permitted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Root {
    pub path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub readonly: bool,
}

/// An OCI mount, in `config.json` and in `runtime.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(rename = "uidMappings", skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(rename = "gidMappings", skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
}

impl Mount {
    /// A mount with no id mappings.
    pub fn new(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            destination: destination.to_owned(),
            kind: kind.to_owned(),
            source: source.to_owned(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            ..Mount::default()
        }
    }

    /// A spec mount as written, without linuxkit's `config.json` defaulting
    /// (used for `runtime.mounts`).
    pub(crate) fn from_model(m: &model::Mount) -> Mount {
        Mount {
            destination: m.destination.clone().unwrap_or_default(),
            kind: m.kind.clone().unwrap_or_default(),
            source: m.source.clone().unwrap_or_default(),
            options: m.options.clone().unwrap_or_default(),
            uid_mappings: id_mappings(m.uidmappings.as_deref()),
            gid_mappings: id_mappings(m.gidmappings.as_deref()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Linux {
    #[serde(rename = "uidMappings", skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(rename = "gidMappings", skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Always written, as `{}` when empty.
    pub resources: Resources,
    #[serde(rename = "cgroupsPath", skip_serializing_if = "String::is_empty")]
    pub cgroups_path: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<Namespace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<LinuxDevice>,
    #[serde(rename = "rootfsPropagation", skip_serializing_if = "String::is_empty")]
    pub rootfs_propagation: String,
    #[serde(rename = "maskedPaths", skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    #[serde(rename = "readonlyPaths", skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinuxDevice {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    #[serde(rename = "fileMode", skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceCgroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(rename = "blockIO", skip_serializing_if = "Option::is_none")]
    pub block_io: Option<BlockIo>,
    #[serde(rename = "hugepageLimits", skip_serializing_if = "Vec::is_empty")]
    pub hugepage_limits: Vec<HugepageLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceCgroup {
    pub allow: bool,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<i64>,
    #[serde(rename = "kernelTCP", skip_serializing_if = "Option::is_none")]
    pub kernel_tcp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller", skip_serializing_if = "Option::is_none")]
    pub disable_oom_killer: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    #[serde(rename = "realtimeRuntime", skip_serializing_if = "Option::is_none")]
    pub realtime_runtime: Option<i64>,
    #[serde(rename = "realtimePeriod", skip_serializing_if = "Option::is_none")]
    pub realtime_period: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cpus: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mems: String,
}

/// runtime-spec v1.2.1 has a plain `limit` (no `omitempty`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    pub limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlockIo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(rename = "leafWeight", skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
    #[serde(rename = "weightDevice", skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
    #[serde(
        rename = "throttleReadBpsDevice",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_read_bps_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleWriteBpsDevice",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_write_bps_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleReadIOPSDevice",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_read_iops_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleWriteIOPSDevice",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_write_iops_device: Vec<ThrottleDevice>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(rename = "leafWeight", skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HugepageLimit {
    /// `<size><unit>B`, such as `2MB`.
    #[serde(rename = "pageSize")]
    pub page_size: String,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Network {
    #[serde(rename = "classID", skip_serializing_if = "Option::is_none")]
    pub class_id: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<InterfacePriority>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfacePriority {
    pub name: String,
    pub priority: u32,
}

/// Builds the spec from a merged entry (label already under the YAML, no
/// `.add` fields left) and the image config.
pub(crate) fn build(
    e: &ImageEntry,
    image: &ImageConfig,
    ids: &IdTable,
) -> Result<Spec, BundleError> {
    let err = |field: String, kind: ErrorKind| BundleError {
        container: e.name.clone(),
        field,
        from_label: false,
        kind,
    };

    // Process: argv is replaced whole; Entrypoint and Cmd are not handled
    // separately.
    let args = e
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.iter().chain(&image.cmd).cloned().collect());
    let env = e.env.clone().unwrap_or_else(|| image.env.clone());
    let cwd = e
        .cwd
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|c| !c.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    let readonly = e.readonly.unwrap_or(false);

    let resolve = |field: String, id: Option<&IdRef>| match id {
        None => Ok(0),
        Some(id) => ids
            .resolve(id)
            .map_err(|reason| err(field, ErrorKind::Id(reason))),
    };
    let uid = resolve("uid".to_owned(), e.uid.as_ref())?;
    let gid = resolve("gid".to_owned(), e.gid.as_ref())?;
    let additional_gids = e
        .additional_gids
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, id)| resolve(format!("additionalGids[{i}]"), Some(id)))
        .collect::<Result<Vec<u32>, _>>()?;

    let effective = capability_list(e.capabilities.as_deref(), "capabilities", &err)?;
    let ambient = capability_list(e.ambient.as_deref(), "ambient", &err)?;
    let union: BTreeSet<&String> = effective.iter().chain(&ambient).collect();
    let bounding: Vec<String> = union.into_iter().cloned().collect();
    let capabilities = Capabilities {
        bounding: bounding.clone(),
        effective,
        inheritable: bounding.clone(),
        permitted: bounding,
        ambient,
    };

    let rlimits = e
        .rlimits
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, text)| {
            rlimit::parse(text)
                .map(|r| Rlimit {
                    kind: r.kind,
                    hard: r.hard,
                    soft: r.soft,
                })
                .map_err(|reason| {
                    err(
                        format!("rlimits[{i}]"),
                        ErrorKind::Rlimit {
                            text: text.clone(),
                            reason,
                        },
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mounts = build_mounts(e, readonly, &err)?;

    let mut resources = e.resources.as_ref().map(resources).unwrap_or_default();
    let mut devices = Vec::new();
    for (i, d) in e.devices.iter().flatten().enumerate() {
        let kind = d.kind.clone().unwrap_or_default();
        let path = d.path.clone().unwrap_or_default();
        if path == "all" {
            // A whole class of devices for the device cgroup; no node.
            resources.devices.push(DeviceCgroup {
                allow: true,
                kind,
                major: None,
                minor: None,
                access: "rwm".to_owned(),
            });
            continue;
        }
        let text = d.mode.as_deref().unwrap_or("");
        // Go's strconv.ParseInt(mode, 8, 32): octal digits, at most 2^31-1.
        let file_mode = mode::parse_octal(text)
            .filter(|m| i32::try_from(*m).is_ok())
            .ok_or_else(|| {
                err(
                    format!("devices[{i}].mode"),
                    ErrorKind::DeviceMode(text.to_owned()),
                )
            })?;
        let (major, minor) = (d.major.unwrap_or(0), d.minor.unwrap_or(0));
        resources.devices.push(DeviceCgroup {
            allow: true,
            kind: kind.clone(),
            major: Some(major),
            minor: Some(minor),
            access: "rwm".to_owned(),
        });
        devices.push(LinuxDevice {
            path,
            kind,
            major,
            minor,
            file_mode: Some(file_mode),
        });
    }

    Ok(Spec {
        oci_version: OCI_VERSION.to_owned(),
        process: Process {
            user: User {
                uid,
                gid,
                additional_gids,
            },
            args,
            env,
            cwd,
            capabilities,
            rlimits,
            no_new_privileges: e.no_new_privileges.unwrap_or(false),
            oom_score_adj: e.oom_score_adj,
        },
        root: Root {
            path: "rootfs".to_owned(),
            readonly,
        },
        hostname: e.hostname.clone().unwrap_or_default(),
        mounts,
        annotations: e.annotations.clone().unwrap_or_default(),
        linux: Linux {
            uid_mappings: id_mappings(e.uid_mappings.as_deref()),
            gid_mappings: id_mappings(e.gid_mappings.as_deref()),
            sysctl: e.sysctl.clone().unwrap_or_default(),
            resources,
            cgroups_path: e.cgroups_path.clone().unwrap_or_default(),
            namespaces: namespaces(e),
            devices,
            rootfs_propagation: e.rootfs_propagation.clone().unwrap_or_default(),
            masked_paths: e.masked_paths.clone().unwrap_or_default(),
            readonly_paths: e.readonly_paths.clone().unwrap_or_default(),
        },
    })
}

/// Expands a lone `all` (kernel order) or `none` (any case) and checks every
/// name against the known set.
fn capability_list(
    list: Option<&[String]>,
    key: &str,
    err: &impl Fn(String, ErrorKind) -> BundleError,
) -> Result<Vec<String>, BundleError> {
    let list = list.unwrap_or_default();
    match caps::shorthand(list) {
        Some(Shorthand::All) => Ok(CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
        Some(Shorthand::None) => Ok(Vec::new()),
        None => {
            for (i, name) in list.iter().enumerate() {
                if !caps::is_known(name) {
                    return Err(err(
                        format!("{key}[{i}]"),
                        ErrorKind::UnknownCapability(name.clone()),
                    ));
                }
            }
            Ok(list.to_vec())
        }
    }
}

/// B.7.4: defaults, then tmpfs, then binds, then mounts, each stage
/// replacing an earlier mount at the same destination; sorted by
/// destination.
fn build_mounts(
    e: &ImageEntry,
    readonly: bool,
    err: &impl Fn(String, ErrorKind) -> BundleError,
) -> Result<Vec<Mount>, BundleError> {
    let mut by_dest: BTreeMap<String, Mount> = BTreeMap::new();
    let mut add = |m: Mount| {
        by_dest.insert(m.destination.clone(), m);
    };
    let ro: &[&str] = if readonly { &["ro"] } else { &[] };
    fn with_ro<'a>(base: &[&'a str], ro: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(ro).copied().collect()
    }
    add(Mount::new(
        "/proc",
        "proc",
        "proc",
        &["nosuid", "nodev", "noexec", "relatime"],
    ));
    add(Mount::new(
        "/dev",
        "tmpfs",
        "tmpfs",
        &with_ro(&["nosuid", "strictatime", "mode=755", "size=65536k"], ro),
    ));
    add(Mount::new(
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ],
    ));
    add(Mount::new(
        "/sys",
        "sysfs",
        "sysfs",
        &with_ro(&["nosuid", "noexec", "nodev"], ro),
    ));
    add(Mount::new(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ));

    for (i, text) in e.tmpfs.iter().flatten().enumerate() {
        let (destination, options) = mounts::parse_tmpfs(text).map_err(|reason| {
            err(
                format!("tmpfs[{i}]"),
                ErrorKind::Tmpfs {
                    text: text.clone(),
                    reason,
                },
            )
        })?;
        add(Mount::new(
            destination,
            "tmpfs",
            "tmpfs",
            &options.unwrap_or_default(),
        ));
    }

    for (i, text) in e.binds.iter().flatten().enumerate() {
        let bind = mounts::parse_bind(text).map_err(|reason| {
            err(
                format!("binds[{i}]"),
                ErrorKind::Bind {
                    text: text.clone(),
                    reason,
                },
            )
        })?;
        let options = match bind.options {
            None => vec!["rw", "rbind", "rshared"],
            Some(mut options) => {
                options.push("rbind");
                options
            }
        };
        add(Mount::new(bind.destination, "bind", bind.source, &options));
    }

    for (i, m) in e.mounts.iter().flatten().enumerate() {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let (source, destination) = (non_empty(&m.source), non_empty(&m.destination));
        let kind = non_empty(&m.kind)
            .or_else(|| mounts::infer_type(source.as_deref(), destination.as_deref()))
            .ok_or_else(|| {
                err(
                    format!("mounts[{i}].type"),
                    ErrorKind::Mount(mounts::MountError::MissingType(
                        destination.clone().unwrap_or_default(),
                    )),
                )
            })?;
        let destination = destination
            .or_else(|| mounts::infer_destination(&kind).map(str::to_owned))
            .ok_or_else(|| {
                err(
                    format!("mounts[{i}].destination"),
                    ErrorKind::Mount(mounts::MountError::MissingDestination(kind.clone())),
                )
            })?;
        add(Mount {
            source: source.unwrap_or_else(|| kind.clone()),
            destination,
            kind,
            options: m.options.clone().unwrap_or_default(),
            // linuxkit drops these when it rebuilds the mount; kiln keeps
            // them (see the module docs).
            uid_mappings: id_mappings(m.uidmappings.as_deref()),
            gid_mappings: id_mappings(m.gidmappings.as_deref()),
        });
    }
    Ok(by_dest.into_values().collect())
}

/// B.7.3: only the namespaces that are created or joined, in linuxkit's
/// order. No cgroup namespace is ever created.
fn namespaces(e: &ImageEntry) -> Vec<Namespace> {
    fn ns(kind: &str, path: &str) -> Namespace {
        Namespace {
            kind: kind.to_owned(),
            path: path.to_owned(),
        }
    }
    let mut out = Vec::new();
    match e.net.as_deref().unwrap_or("root") {
        "host" | "root" => {}
        "new" | "none" => out.push(ns("network", "")),
        path => out.push(ns("network", path)),
    }
    // For these, only `new` means new: `none` is a path.
    for (kind, value) in [("ipc", &e.ipc), ("uts", &e.uts)] {
        match value.as_deref().unwrap_or("root") {
            "host" | "root" => {}
            "new" => out.push(ns(kind, "")),
            path => out.push(ns(kind, path)),
        }
    }
    // A new pid namespace unless told otherwise.
    match e.pid.as_deref().unwrap_or("") {
        "host" | "root" => {}
        "" | "new" => out.push(ns("pid", "")),
        path => out.push(ns("pid", path)),
    }
    match e.userns.as_deref().unwrap_or("root") {
        "host" | "root" => {}
        "new" => out.push(ns("user", "")),
        path => out.push(ns("user", path)),
    }
    out.push(ns("mount", ""));
    out
}

pub(crate) fn id_mappings(list: Option<&[model::IdMapping]>) -> Vec<IdMapping> {
    // linuxkit's typed decode drops `hostID` and `containerID` (they stay
    // 0); kiln applies them (docs/compat.md).
    list.unwrap_or_default()
        .iter()
        .map(|m| IdMapping {
            container_id: m.container_id.unwrap_or(0),
            host_id: m.host_id.unwrap_or(0),
            size: m.size.unwrap_or(0),
        })
        .collect()
}

/// The spec's `resources` in OCI form. linuxkit honours only the keys whose
/// lower-cased Go field name matches the schema spelling (A.6.3) and drops
/// `memory.kernelTCP`, `memory.disableOOMKiller`, `cpu.realtimeRuntime`,
/// `cpu.realtimePeriod`, `blockio.leafWeight`, `blockio.weightDevice`,
/// `blockio.throttle*`, `hugepageLimits` and `network.classID`. kiln applies
/// every key the schema accepts (docs/compat.md, warning
/// `dropped-by-linuxkit`).
fn resources(r: &model::Resources) -> Resources {
    let throttle = |list: &Option<Vec<model::ThrottleDevice>>| {
        list.iter()
            .flatten()
            .map(|t| ThrottleDevice {
                major: t.major.unwrap_or(0),
                minor: t.minor.unwrap_or(0),
                rate: t.rate.unwrap_or(0),
            })
            .collect()
    };
    Resources {
        devices: r
            .devices
            .iter()
            .flatten()
            .map(|d| DeviceCgroup {
                allow: d.allow.unwrap_or(false),
                kind: d.kind.clone().unwrap_or_default(),
                major: d.major,
                minor: d.minor,
                access: d.access.clone().unwrap_or_default(),
            })
            .collect(),
        memory: r.memory.as_ref().map(|m| Memory {
            limit: m.limit,
            reservation: m.reservation,
            swap: m.swap,
            kernel: m.kernel,
            kernel_tcp: m.kernel_tcp,
            swappiness: m.swappiness,
            disable_oom_killer: m.disable_oom_killer,
        }),
        cpu: r.cpu.as_ref().map(|c| Cpu {
            shares: c.shares,
            quota: c.quota,
            period: c.period,
            realtime_runtime: c.realtime_runtime,
            realtime_period: c.realtime_period,
            cpus: c.cpus.clone().unwrap_or_default(),
            mems: c.mems.clone().unwrap_or_default(),
        }),
        pids: r.pids.as_ref().map(|p| Pids {
            limit: p.limit.unwrap_or(0),
        }),
        block_io: r.blockio.as_ref().map(|b| BlockIo {
            weight: b.weight,
            leaf_weight: b.leaf_weight,
            weight_device: b
                .weight_device
                .iter()
                .flatten()
                .map(|w| WeightDevice {
                    major: w.major.unwrap_or(0),
                    minor: w.minor.unwrap_or(0),
                    weight: w.weight,
                    leaf_weight: w.leaf_weight,
                })
                .collect(),
            throttle_read_bps_device: throttle(&b.throttle_read_bps_device),
            throttle_write_bps_device: throttle(&b.throttle_write_bps_device),
            throttle_read_iops_device: throttle(&b.throttle_read_iops_device),
            throttle_write_iops_device: throttle(&b.throttle_write_iops_device),
        }),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .flatten()
            .map(|h| HugepageLimit {
                page_size: page_size(h.page_size.unwrap_or(0)),
                limit: h.limit.unwrap_or(0),
            })
            .collect(),
        network: r.network.as_ref().map(|n| Network {
            class_id: n.class_id,
            priorities: n
                .priorities
                .iter()
                .flatten()
                .map(|p| InterfacePriority {
                    name: p.name.clone().unwrap_or_default(),
                    priority: p.priority.unwrap_or(0),
                })
                .collect(),
        }),
    }
}

/// linuxkit's schema types `pageSize` as an integer, the runtime spec as a
/// string such as `2MB` (what runc puts in `hugetlb.<size>.limit_in_bytes`).
/// kiln reads the integer as bytes and writes the largest exact unit.
fn page_size(bytes: i64) -> String {
    const UNITS: [(i64, &str); 3] = [(1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    for (size, unit) in UNITS {
        if bytes > 0 && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::page_size;

    #[test]
    fn page_sizes_use_the_largest_exact_unit() {
        assert_eq!(page_size(2 << 20), "2MB");
        assert_eq!(page_size(1 << 30), "1GB");
        assert_eq!(page_size(64 << 10), "64KB");
        assert_eq!(page_size(1000), "1000B");
    }
}
