//! `runtime.json`: what linuxkit's init does around a container's start
//! (reference A.6.5, B.6, B.7.8).

use serde::Serialize;

use kiln_shared::model;

use super::config::Mount;

/// The resolved runtime object. Every key is always written; empty lists as
/// `[]` and unset strings as `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Runtime {
    pub cgroups: Vec<String>,
    pub mounts: Vec<Mount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<Interface>,
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNs,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Interface {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub add: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(rename = "createInRoot")]
    pub create_in_root: bool,
}

/// Paths to bind the new container's namespaces to; `""` for none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BindNs {
    pub cgroup: String,
    pub ipc: String,
    pub mnt: String,
    pub net: String,
    pub pid: String,
    pub user: String,
    pub uts: String,
}

/// The merged `runtime` entry (label under YAML) in output form. Its mounts
/// are passed through as written: no `config.json` defaulting applies.
pub(crate) fn build(runtime: Option<&model::Runtime>) -> Runtime {
    let Some(r) = runtime else {
        return Runtime::default();
    };
    let ns = r.bind_ns.clone().unwrap_or_default();
    Runtime {
        cgroups: r.cgroups.clone().unwrap_or_default(),
        mounts: r.mounts.iter().flatten().map(Mount::from_model).collect(),
        mkdir: r.mkdir.clone().unwrap_or_default(),
        interfaces: r
            .interfaces
            .iter()
            .flatten()
            .map(|i| Interface {
                name: i.name.clone().unwrap_or_default(),
                add: i.add.clone().unwrap_or_default(),
                peer: i.peer.clone().unwrap_or_default(),
                create_in_root: i.create_in_root.unwrap_or(false),
            })
            .collect(),
        bind_ns: BindNs {
            cgroup: ns.cgroup.unwrap_or_default(),
            ipc: ns.ipc.unwrap_or_default(),
            mnt: ns.mnt.unwrap_or_default(),
            net: ns.net.unwrap_or_default(),
            pid: ns.pid.unwrap_or_default(),
            user: ns.user.unwrap_or_default(),
            uts: ns.uts.unwrap_or_default(),
        },
        namespace: r.namespace.clone().unwrap_or_default(),
    }
}

/// The mounts B.6 puts in front of `runtime.mounts` for the bundle at `dir`
/// (such as `containers/services/getty`) whose image root is `root` (its own
/// `lower` or `rootfs` directory, or another bundle's when the image is
/// shared). Both are paths inside the image; a leading `/` is optional.
///
/// * Overlay layout (not read-only): a tmpfs on `/<dir>/tmp`, a private
///   remount of it, and an overlay on `/<dir>/rootfs` with `root` as its
///   lower layer and the upper and work directories on the tmpfs.
/// * Read-only: a bind of `/<root>` onto `/<dir>/rootfs`, which for an
///   unshared root makes the directory a mount point, as runc prefers.
pub fn layout_mounts(dir: &str, root: &str, readonly: bool) -> Vec<Mount> {
    let dir = dir.trim_matches('/');
    let root = root.trim_matches('/');
    let rootfs = format!("/{dir}/rootfs");
    if readonly {
        return vec![Mount::new(&rootfs, "", &format!("/{root}"), &["bind"])];
    }
    let tmp = format!("/{dir}/tmp");
    vec![
        Mount::new(&tmp, "tmpfs", "tmpfs", &[]),
        // Private, so that nothing else sees the temporary layers.
        Mount::new(&tmp, "", "", &["remount", "private"]),
        Mount::new(
            &rootfs,
            "overlay",
            "overlay",
            &[
                &format!("lowerdir=/{root}"),
                &format!("upperdir={tmp}/upper"),
                &format!("workdir={tmp}/work"),
            ],
        ),
    ]
}
