//! A container's OCI bundle files: `config.json` and `runtime.json`.
//!
//! This is linuxkit's `ConfigToOCI` (reference B.6-B.7): three layers feed
//! the result, from lowest to highest priority — the image config
//! (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `Labels`), the image's
//! `org.mobyproject.config` label, and the spec's YAML entry. The output is
//! byte-compatible with `linuxkit build`: runtime-spec v1.2.1 key order, Go
//! `omitempty` rules, 4-space indentation, HTML-safe escapes, no trailing
//! newline.
//!
//! Everything here is a pure function of its inputs: no I/O, no network.
//!
//! Where kiln deliberately differs from linuxkit (see `docs/compat.md`):
//!
//! * Keys linuxkit's schema accepts but its typed decode silently drops
//!   (`memory.kernelTCP`, `memory.disableOOMKiller`, `cpu.realtimeRuntime`,
//!   `cpu.realtimePeriod`, `blockio.leafWeight`, `blockio.weightDevice`,
//!   `blockio.throttle*`, `hugepageLimits`, `network.classID`, and
//!   `hostID`/`containerID` in id mappings) are **applied**.
//! * A `mounts` entry of type `bind` whose source names a volume is rewritten
//!   to the volume's `merged` directory, as `binds` are; linuxkit loses that
//!   rewrite (reference F.3) and leaves a bare volume name that runc cannot
//!   mount.
//! * `uidmappings`/`gidmappings` of `mounts` entries reach `config.json`
//!   (linuxkit rebuilds each mount from destination, type, source and
//!   options only).
//! * An rlimit whose soft limit is above its hard limit is an error
//!   (`kiln_shared::rlimit`).

mod config;
mod json;
mod label;
mod runtime;
mod volumes;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer};

use kiln_shared::ids::{IdError, IdTable};
use kiln_shared::mounts::MountError;
use kiln_shared::rlimit::RlimitError;
use kiln_shared::ImageEntry;

pub use config::{
    BlockIo, Capabilities, Cpu, DeviceCgroup, HugepageLimit, IdMapping, InterfacePriority, Linux,
    LinuxDevice, Memory, Mount, Namespace, Network, Pids, Process, Resources, Rlimit, Root, Spec,
    ThrottleDevice, User, WeightDevice, OCI_VERSION,
};
pub use label::{merge, parse_label, LABEL};
pub use runtime::{layout_mounts, BindNs, Interface, Runtime};

/// The part of an OCI image config that shapes a container: linuxkit reads
/// these five fields and nothing else (the image's `User`, ports, volumes and
/// stop signal are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    #[serde(rename = "Entrypoint", default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    #[serde(rename = "Env", default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(rename = "WorkingDir", default, deserialize_with = "null_default")]
    pub working_dir: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

impl ImageConfig {
    /// Reads the `config` object of an OCI (or Docker v2) image config blob:
    /// `{"architecture": ..., "config": {"Entrypoint": ..., ...}, ...}`.
    /// Docker writes `null` for unset fields; those read as empty.
    pub fn from_blob(blob: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        #[derive(Deserialize)]
        struct Blob {
            #[serde(default, deserialize_with = "null_default")]
            config: ImageConfig,
        }
        Ok(serde_json::from_slice::<Blob>(blob)?.config)
    }

    /// The `org.mobyproject.config` label, if the image has a non-empty one.
    pub fn label(&self) -> Option<&str> {
        self.labels
            .get(LABEL)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// What the whole build knows that one container's config depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Symbolic uid/gid numbers (container names, from 100).
    pub ids: &'a IdTable,
    /// Volume name to its `readonly` flag.
    pub volumes: &'a HashMap<String, bool>,
}

/// A container's generated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The OCI runtime spec, written as `config.json`.
    pub spec: Spec,
    /// linuxkit's runtime object, *without* the layout mounts that
    /// [`Bundle::runtime_json`] prepends.
    pub runtime: Runtime,
}

impl Bundle {
    /// The final `root.readonly`; it picks the bundle layout (B.6).
    pub fn readonly(&self) -> bool {
        self.spec.root.readonly
    }

    /// The bytes of `config.json`.
    pub fn config_json(&self) -> Vec<u8> {
        json::to_go_json(&self.spec)
    }

    /// Where this container's image root goes if it is extracted here:
    /// `<dir>/lower` for the overlay layout, `<dir>/rootfs` when read-only.
    pub fn root_dir(&self, dir: &str) -> String {
        let dir = dir.trim_matches('/');
        if self.readonly() {
            format!("{dir}/rootfs")
        } else {
            format!("{dir}/lower")
        }
    }

    /// The bytes of `runtime.json` for the bundle at `dir`
    /// (`containers/onboot/000-name`), whose image root is `root` (this
    /// bundle's [`Bundle::root_dir`], or the first bundle's when an image is
    /// shared), with the layout mounts of B.6 prepended.
    pub fn runtime_json(&self, dir: &str, root: &str) -> Vec<u8> {
        let mut runtime = self.runtime.clone();
        let mut mounts = layout_mounts(dir, root, self.readonly());
        mounts.append(&mut runtime.mounts);
        runtime.mounts = mounts;
        json::to_go_json(&runtime)
    }
}

/// Generates a container's configuration from its YAML entry and its image
/// config: volume names in the entry's `binds`, `binds.add` and `mounts` are
/// rewritten, the image label is parsed and merged under the entry, and the
/// result is turned into an OCI spec and a runtime object.
pub fn generate(
    entry: &ImageEntry,
    image: &ImageConfig,
    ctx: &Context<'_>,
) -> Result<Bundle, BundleError> {
    let yaml = volumes::rewrite(entry, ctx.volumes)?;
    let label = match image.label() {
        Some(text) => parse_label(text).map_err(|reason| BundleError {
            container: entry.name.clone(),
            field: LABEL.to_owned(),
            from_label: true,
            kind: ErrorKind::InvalidLabel {
                image: entry.image.clone(),
                reason,
            },
        })?,
        None => ImageEntry::default(),
    };
    let merged = merge(&label, &yaml);
    let spec = config::build(&merged, image, ctx.ids).map_err(|mut e| {
        e.from_label = from_label(&e.field, &yaml, &label);
        e
    })?;
    let runtime = runtime::build(merged.runtime.as_ref());
    Ok(Bundle { spec, runtime })
}

/// Did the value at `field` (such as `capabilities[2]` or
/// `devices[0].mode`) of the merged entry come from the image label?
fn from_label(field: &str, yaml: &ImageEntry, label: &ImageEntry) -> bool {
    let end = field.find(['[', '.']).unwrap_or(field.len());
    let key = &field[..end];
    let index: Option<usize> = field[end..]
        .strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse().ok());
    let (Ok(yaml), Ok(label)) = (serde_json::to_value(yaml), serde_json::to_value(label)) else {
        return false;
    };
    if yaml.get(key).is_some() {
        return false;
    }
    match (label.get(key), index) {
        (None, _) => false,
        // `capabilities` and `binds` may be the label's list followed by
        // the YAML's `.add` list.
        (Some(serde_json::Value::Array(list)), Some(i)) => i < list.len(),
        (Some(_), _) => true,
    }
}

/// Why a container's configuration could not be generated: the container,
/// the field (after merging with the image label), whether the offending
/// value came from the image's `org.mobyproject.config` label, and the
/// problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "container `{container}`: `{field}`{}: {kind}",
    if *.from_label && .field != LABEL { " (from the image's org.mobyproject.config label)" } else { "" }
)]
pub struct BundleError {
    pub container: String,
    pub field: String,
    pub from_label: bool,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("the org.mobyproject.config label of image `{image}` is invalid: {reason}")]
    InvalidLabel { image: String, reason: String },
    #[error("unknown capability `{0}`; `all` and `none` work only as the whole list")]
    UnknownCapability(String),
    #[error("invalid rlimit `{text}`: {reason}")]
    Rlimit { text: String, reason: RlimitError },
    #[error("invalid bind `{text}`: {reason}")]
    Bind { text: String, reason: MountError },
    #[error("invalid tmpfs `{text}`: {reason}")]
    Tmpfs { text: String, reason: MountError },
    #[error("{0}")]
    Mount(MountError),
    #[error("cannot parse device mode `{0}` as an octal value")]
    DeviceMode(String),
    #[error("{0}")]
    Id(IdError),
    #[error("volume `{0}` not found")]
    UnknownVolume(String),
    #[error("volume `{0}` is read-only, but attempting to write into container read-write")]
    ReadonlyVolume(String),
}
