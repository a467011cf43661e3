//! `onboot`, `onshutdown` and `services` entries.

use std::collections::HashMap;

use super::Checker;
use crate::model::{IdMapping, ImageEntry, Mount, Resources};
use crate::{caps, mode, mounts, path, rlimit, Code, KeyPath};

const SECTIONS: [&str; 3] = ["onboot", "onshutdown", "services"];

pub(super) fn check(c: &mut Checker<'_>) {
    let mut services: HashMap<&str, ()> = HashMap::new();
    for (d, doc) in c.docs.iter().enumerate() {
        for section in SECTIONS {
            let entries = match section {
                "onboot" => &doc.spec.onboot,
                "onshutdown" => &doc.spec.onshutdown,
                _ => &doc.spec.services,
            };
            for (i, entry) in entries.iter().enumerate() {
                let at = path![section, i];
                if section == "services" && services.insert(&entry.name, ()).is_some() {
                    c.report(
                        d,
                        Code::DuplicateService,
                        at.key("name"),
                        format!("duplicate service name `{}`", entry.name),
                    );
                }
                check_entry(c, d, &at, entry);
            }
        }
    }
}

fn check_entry(c: &mut Checker<'_>, d: usize, at: &KeyPath, e: &ImageEntry) {
    for key in ["capabilities", "capabilities.add", "ambient"] {
        let list = match key {
            "capabilities" => &e.capabilities,
            "capabilities.add" => &e.capabilities_add,
            _ => &e.ambient,
        };
        if let Some(list) = list {
            check_caps(c, d, &at.key(key), list);
        }
    }
    for key in ["binds", "binds.add"] {
        let list = if key == "binds" {
            &e.binds
        } else {
            &e.binds_add
        };
        for (i, bind) in list.iter().flatten().enumerate() {
            check_bind(c, d, at.key(key).index(i), &e.name, bind);
        }
    }
    for (i, tmpfs) in e.tmpfs.iter().flatten().enumerate() {
        if let Err(err) = mounts::parse_tmpfs(tmpfs) {
            c.report(
                d,
                Code::BadTmpfs,
                at.key("tmpfs").index(i),
                format!("invalid tmpfs `{tmpfs}`: {err}"),
            );
        }
    }
    for (i, mount) in e.mounts.iter().flatten().enumerate() {
        check_mount(c, d, at.key("mounts").index(i), &e.name, mount);
    }
    for (i, device) in e.devices.iter().flatten().enumerate() {
        check_device(c, d, at.key("devices").index(i), device);
    }
    for (i, text) in e.rlimits.iter().flatten().enumerate() {
        if let Err(err) = rlimit::parse(text) {
            c.report(
                d,
                Code::BadRlimit,
                at.key("rlimits").index(i),
                format!("invalid rlimit `{text}`: {err}"),
            );
        }
    }
    let mut ids: Vec<(KeyPath, &crate::IdRef)> = Vec::new();
    ids.extend(e.uid.iter().map(|id| (at.key("uid"), id)));
    ids.extend(e.gid.iter().map(|id| (at.key("gid"), id)));
    for (i, id) in e.additional_gids.iter().flatten().enumerate() {
        ids.push((at.key("additionalGids").index(i), id));
    }
    for (p, id) in ids {
        check_id(c, d, p, id);
    }
    for (key, value) in [
        ("net", &e.net),
        ("pid", &e.pid),
        ("ipc", &e.ipc),
        ("uts", &e.uts),
        ("userns", &e.userns),
    ] {
        if let Some(value) = value {
            check_namespace(c, d, at.key(key), key, value);
        }
    }
    if let Some(resources) = &e.resources {
        check_resources(c, d, &at.key("resources"), resources);
    }
    for (key, list) in [
        ("uidMappings", &e.uid_mappings),
        ("gidMappings", &e.gid_mappings),
    ] {
        check_idmappings(c, d, &at.key(key), list.as_deref());
    }
    if let Some(runtime) = &e.runtime {
        for (i, mount) in runtime.mounts.iter().flatten().enumerate() {
            let p = at.key("runtime").key("mounts").index(i);
            check_idmappings(c, d, &p.key("uidmappings"), mount.uidmappings.as_deref());
            check_idmappings(c, d, &p.key("gidmappings"), mount.gidmappings.as_deref());
        }
    }
}

pub(super) fn check_id(c: &mut Checker<'_>, d: usize, p: KeyPath, id: &crate::IdRef) {
    if let Err(err) = c.ids.resolve(id) {
        let code = match err {
            crate::ids::IdError::UnknownName(_) => Code::UnknownId,
            crate::ids::IdError::OutOfRange(_) => Code::OutOfRange,
            crate::ids::IdError::WrongType(_) => Code::WrongType,
        };
        c.report(d, code, p, err.to_string());
    }
}

fn check_caps(c: &mut Checker<'_>, d: usize, p: &KeyPath, list: &[String]) {
    if caps::shorthand(list).is_some() {
        return;
    }
    for (i, name) in list.iter().enumerate() {
        if caps::is_known(name) {
            continue;
        }
        let message = if name.eq_ignore_ascii_case("all") || name.eq_ignore_ascii_case("none") {
            format!("`{name}` must be the only entry in its list")
        } else if let Some(hint) = caps::suggest(name) {
            format!("unknown capability `{name}`; did you mean `{hint}`?")
        } else {
            format!("unknown capability `{name}`; names are upper case with the `CAP_` prefix, such as `CAP_NET_ADMIN`, or a lone `all` or `none`")
        };
        c.report(d, Code::UnknownCapability, p.index(i), message);
    }
}

fn check_bind(c: &mut Checker<'_>, d: usize, p: KeyPath, container: &str, text: &str) {
    let bind = match mounts::parse_bind(text) {
        Ok(bind) => bind,
        Err(err) => {
            c.report(d, Code::BadBind, p, format!("invalid bind `{text}`: {err}"));
            return;
        }
    };
    let Some(volume) = bind.volume() else { return };
    match c.volumes.get(volume) {
        None => c.report(
            d,
            Code::UnknownVolume,
            p,
            format!("bind source `{volume}` in `{container}` is not an absolute path, so it must name a volume, and there is no volume `{volume}`"),
        ),
        Some(true) if bind.options.as_deref() != Some(&["ro"]) => c.report(
            d,
            Code::ReadonlyVolume,
            p,
            format!("volume `{volume}` is read-only, but `{container}` binds it read-write; end the bind with `:ro`"),
        ),
        Some(_) => {}
    }
}

fn check_mount(c: &mut Checker<'_>, d: usize, p: KeyPath, container: &str, m: &Mount) {
    let kind = m
        .kind
        .clone()
        .or_else(|| mounts::infer_type(m.source.as_deref(), m.destination.as_deref()));
    let Some(kind) = kind else {
        let dst = m.destination.as_deref().unwrap_or("");
        c.report(
            d,
            Code::BadMount,
            p.clone(),
            mounts::MountError::MissingType(dst.to_owned()).to_string(),
        );
        return;
    };
    if m.destination.is_none() && mounts::infer_destination(&kind).is_none() {
        c.report(
            d,
            Code::BadMount,
            p.clone(),
            mounts::MountError::MissingDestination(kind.clone()).to_string(),
        );
    }
    check_idmappings(c, d, &p.key("uidmappings"), m.uidmappings.as_deref());
    check_idmappings(c, d, &p.key("gidmappings"), m.gidmappings.as_deref());
    let Some(source) = m.source.as_deref() else {
        return;
    };
    if kind != "bind" || source.starts_with('/') {
        return;
    }
    let options = m.options.iter().flatten().map(String::as_str);
    match c.volumes.get(source) {
        None => c.report(
            d,
            Code::UnknownVolume,
            p.key("source"),
            format!("bind mount source `{source}` in `{container}` is not an absolute path, so it must name a volume, and there is no volume `{source}`"),
        ),
        Some(true) if !mounts::options_read_only(options) => c.report(
            d,
            Code::ReadonlyVolume,
            p.key("options"),
            format!("volume `{source}` is read-only, but `{container}` mounts it read-write; put `ro` in the options"),
        ),
        Some(_) => {}
    }
}

fn check_device(c: &mut Checker<'_>, d: usize, p: KeyPath, device: &crate::model::Device) {
    let kind = device.kind.as_deref().unwrap_or("");
    if device.path.as_deref() == Some("all") {
        if !matches!(kind, "a" | "b" | "c") {
            c.report(
                d,
                Code::BadDevice,
                p.key("type"),
                format!("a `path: all` device rule needs `type` a, b or c, not `{kind}`"),
            );
        }
        return;
    }
    match device.path.as_deref() {
        Some(path) if path.starts_with('/') => {}
        other => c.report(
            d,
            Code::BadDevice,
            p.key("path"),
            format!(
                "device path must be absolute or `all`, found `{}`",
                other.unwrap_or("")
            ),
        ),
    }
    if !matches!(kind, "b" | "c" | "u" | "p") {
        c.report(
            d,
            Code::BadDevice,
            p.key("type"),
            format!("device type must be b, c, u or p, found `{kind}`"),
        );
    }
    let text = device.mode.as_deref().unwrap_or("");
    if mode::parse_octal(text).is_none() {
        c.report(
            d,
            Code::BadDeviceMode,
            p.key("mode"),
            format!(
                "device mode `{text}` is not an octal number; quote it, as in `mode: \"0666\"`"
            ),
        );
    }
}

fn check_namespace(c: &mut Checker<'_>, d: usize, p: KeyPath, key: &str, value: &str) {
    let keywords = crate::namespace::keywords(key);
    if keywords.contains(&value) || value.starts_with('/') {
        return;
    }
    let message = if value == "none" {
        format!("`{key}: none` is not a keyword for {key}: linuxkit reads it as the path of a namespace file named `none`; use `new` for a new namespace")
    } else {
        format!("`{value}` is not one of {}, so it is used as the path of a namespace file; use an absolute path", keywords.join(", "))
    };
    c.report(d, Code::NamespacePath, p, message);
}

fn dropped(c: &mut Checker<'_>, d: usize, p: KeyPath, key: &str) {
    c.report(
        d,
        Code::DroppedByLinuxkit,
        p,
        format!("linuxkit accepts `{key}` and then silently drops it; kiln applies it to the container's config.json"),
    );
}

fn check_resources(c: &mut Checker<'_>, d: usize, p: &KeyPath, r: &Resources) {
    if let Some(memory) = &r.memory {
        let at = p.key("memory");
        if memory.kernel_tcp.is_some() {
            dropped(c, d, at.key("kernelTCP"), "kernelTCP");
        }
        if memory.disable_oom_killer.is_some() {
            dropped(c, d, at.key("disableOOMKiller"), "disableOOMKiller");
        }
    }
    if let Some(cpu) = &r.cpu {
        let at = p.key("cpu");
        if cpu.realtime_runtime.is_some() {
            dropped(c, d, at.key("realtimeRuntime"), "realtimeRuntime");
        }
        if cpu.realtime_period.is_some() {
            dropped(c, d, at.key("realtimePeriod"), "realtimePeriod");
        }
    }
    if let Some(blockio) = &r.blockio {
        let at = p.key("blockio");
        let present = [
            ("leafWeight", blockio.leaf_weight.is_some()),
            ("weightDevice", blockio.weight_device.is_some()),
            (
                "throttleReadBpsDevice",
                blockio.throttle_read_bps_device.is_some(),
            ),
            (
                "throttleWriteBpsDevice",
                blockio.throttle_write_bps_device.is_some(),
            ),
            (
                "throttleReadIOPSDevice",
                blockio.throttle_read_iops_device.is_some(),
            ),
            (
                "throttleWriteIOPSDevice",
                blockio.throttle_write_iops_device.is_some(),
            ),
        ];
        for (key, is_set) in present {
            if is_set {
                dropped(c, d, at.key(key), key);
            }
        }
    }
    if r.hugepage_limits.is_some() {
        dropped(c, d, p.key("hugepageLimits"), "hugepageLimits");
    }
    if r.network.as_ref().is_some_and(|n| n.class_id.is_some()) {
        dropped(c, d, p.key("network").key("classID"), "classID");
    }
}

fn check_idmappings(c: &mut Checker<'_>, d: usize, p: &KeyPath, list: Option<&[IdMapping]>) {
    for (i, mapping) in list.into_iter().flatten().enumerate() {
        if mapping.host_id.is_some() {
            dropped(c, d, p.index(i).key("hostID"), "hostID");
        }
        if mapping.container_id.is_some() {
            dropped(c, d, p.index(i).key("containerID"), "containerID");
        }
    }
}
