//! Volume names.

use std::collections::{HashMap, HashSet};

use super::{Checker, Doc};
use crate::{path, Code};

pub(super) fn table(docs: &[Doc<'_>]) -> HashMap<String, bool> {
    let mut table = HashMap::new();
    for doc in docs {
        for volume in &doc.spec.volumes {
            if let Some(name) = &volume.name {
                table.insert(name.clone(), volume.readonly.unwrap_or(false));
            }
        }
    }
    table
}

pub(super) fn check(c: &mut Checker<'_>) {
    for (d, doc) in c.docs.iter().enumerate() {
        // Uniqueness is per file: linuxkit does not re-check after merging.
        let mut seen = HashSet::new();
        for (i, volume) in doc.spec.volumes.iter().enumerate() {
            let name = volume.name.as_deref().unwrap_or("");
            let valid = name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if !valid {
                c.report(
                    d,
                    Code::BadVolumeName,
                    path!["volumes", i, "name"],
                    format!("invalid volume name `{name}`: use only a-z, 0-9, `_` and `-`"),
                );
            } else if !seen.insert(name) {
                c.report(
                    d,
                    Code::DuplicateVolume,
                    path!["volumes", i, "name"],
                    format!("duplicate volume name `{name}`"),
                );
            }
            if volume.platforms.is_some() && volume.format != Some(crate::model::VolumeFormat::Oci)
            {
                c.report(
                    d,
                    Code::VolumeOptionIgnored,
                    path!["volumes", i, "platforms"],
                    "`platforms` only applies to `format: oci`; it is ignored here",
                );
            }
        }
    }
}
