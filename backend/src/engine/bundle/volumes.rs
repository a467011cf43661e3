//! Volume references in a YAML entry (reference A.8, B.6 step 2).
//!
//! A bind source that does not start with `/` names a volume and becomes
//! `/containers/volumes/<name>/merged`. Only the YAML entry's own `binds`,
//! `binds.add` and `mounts` are rewritten, as in linuxkit; binds that come
//! from an image label are used as they are.

use std::collections::HashMap;

use kiln_shared::mounts::{self, options_read_only};
use kiln_shared::ImageEntry;

use super::{BundleError, ErrorKind};

/// The directory a volume is mounted from inside the image.
pub(crate) fn merged_dir(name: &str) -> String {
    format!("/containers/volumes/{name}/merged")
}

pub(crate) fn rewrite(
    entry: &ImageEntry,
    volumes: &HashMap<String, bool>,
) -> Result<ImageEntry, BundleError> {
    let error = |field: String, kind: ErrorKind| BundleError {
        container: entry.name.clone(),
        field,
        from_label: false,
        kind,
    };
    let mut out = entry.clone();
    for (key, list) in [("binds", &mut out.binds), ("binds.add", &mut out.binds_add)] {
        for (i, bind) in list.iter_mut().flatten().enumerate() {
            let field = || format!("{key}[{i}]");
            let parsed = mounts::parse_bind(bind).map_err(|reason| {
                error(
                    field(),
                    ErrorKind::Bind {
                        text: bind.clone(),
                        reason,
                    },
                )
            })?;
            let Some(name) = parsed.volume() else {
                continue;
            };
            let readonly = *volumes
                .get(name)
                .ok_or_else(|| error(field(), ErrorKind::UnknownVolume(name.to_owned())))?;
            if readonly && parsed.options.as_deref() != Some(&["ro"]) {
                return Err(error(field(), ErrorKind::ReadonlyVolume(name.to_owned())));
            }
            // Only the source changes; the rest of the text is kept as is.
            let rest = &bind[name.len()..];
            *bind = format!("{}{rest}", merged_dir(name));
        }
    }
    // linuxkit checks these but loses the rewrite (reference F.3); kiln
    // applies it.
    for (i, mount) in out.mounts.iter_mut().flatten().enumerate() {
        if mount.kind.as_deref() != Some("bind") {
            continue;
        }
        let source = mount.source.as_deref().unwrap_or("");
        if source.starts_with('/') {
            continue;
        }
        let field = format!("mounts[{i}].source");
        let readonly = *volumes
            .get(source)
            .ok_or_else(|| error(field.clone(), ErrorKind::UnknownVolume(source.to_owned())))?;
        let options = mount.options.iter().flatten().map(String::as_str);
        if readonly && !options_read_only(options) {
            return Err(error(field, ErrorKind::ReadonlyVolume(source.to_owned())));
        }
        mount.source = Some(merged_dir(source));
    }
    Ok(out)
}
