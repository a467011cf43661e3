//! Choosing what to fetch from a multi-platform index: the manifest(s) for
//! the requested platform(s), or all of them.
//!
//! Attestation manifests (platform `unknown/unknown` or none) are always
//! kept with their config, because linuxkit validates an index by reading
//! them; their layers (the SBOMs) are fetched only for selected platforms.

use std::collections::BTreeSet;

use crate::engine::store::{
    Descriptor, Digest, ManifestDoc, Platform, ANNOTATION_REFERENCE_DIGEST,
};

/// Which platforms of an index to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformSelection {
    /// These platforms (the first matching manifest of each); pulling fails
    /// if the index lacks one. The variant is compared only when given.
    Only(Vec<Platform>),
    /// Every manifest in the index.
    All,
}

impl From<Platform> for PlatformSelection {
    fn from(p: Platform) -> Self {
        PlatformSelection::Only(vec![p])
    }
}

/// A child manifest to fetch, and whether its layers are wanted too.
#[derive(Clone, Debug)]
pub(crate) struct Child {
    pub descriptor: Descriptor,
    pub with_layers: bool,
}

/// Picks the children of `index`; on failure returns the requested
/// platforms that are missing and the ones the index has.
pub(crate) fn select(
    index: &ManifestDoc,
    selection: &PlatformSelection,
) -> Result<Vec<Child>, (Vec<String>, Vec<String>)> {
    let wanted: Vec<&Descriptor> = match selection {
        PlatformSelection::All => index.manifests.iter().collect(),
        PlatformSelection::Only(platforms) => {
            let mut chosen = Vec::new();
            let mut missing = Vec::new();
            for p in platforms {
                match index.manifests.iter().find(|m| {
                    !m.is_platformless() && m.platform.as_ref().is_some_and(|mp| p.matches(mp))
                }) {
                    Some(m) => chosen.push(m),
                    None => missing.push(p.to_string()),
                }
            }
            if !missing.is_empty() {
                let available = index
                    .manifests
                    .iter()
                    .filter(|m| !m.is_platformless())
                    .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
                    .collect();
                return Err((missing, available));
            }
            chosen
        }
    };
    let selected: BTreeSet<&Digest> = wanted.iter().map(|d| &d.digest).collect();
    let mut children: Vec<Child> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &index.manifests {
        if !seen.insert(&m.digest) {
            continue;
        }
        let child = if selected.contains(&m.digest) {
            Child {
                descriptor: m.clone(),
                with_layers: true,
            }
        } else if m.is_platformless() {
            let describes_selected = m
                .annotations
                .get(ANNOTATION_REFERENCE_DIGEST)
                .and_then(|d| Digest::parse(d).ok())
                .is_some_and(|d| selected.contains(&d));
            Child {
                descriptor: m.clone(),
                with_layers: describes_selected,
            }
        } else {
            continue;
        };
        children.push(child);
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::store::{Descriptor, OCI_INDEX, OCI_MANIFEST};

    fn entry(tag: &str, platform: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(OCI_MANIFEST, Digest::of(tag.as_bytes()), 10);
        d.platform = platform.and_then(Platform::parse);
        d
    }

    fn attestation(tag: &str, of: &Descriptor) -> Descriptor {
        let mut d = entry(tag, Some("unknown/unknown"));
        d.annotations.insert(
            ANNOTATION_REFERENCE_DIGEST.to_owned(),
            of.digest.to_string(),
        );
        d
    }

    #[test]
    fn selects_platform_and_its_attestation_layers() {
        let amd = entry("amd", Some("linux/amd64"));
        let arm = entry("arm", Some("linux/arm64/v8"));
        let index = ManifestDoc {
            media_type: Some(OCI_INDEX.to_owned()),
            manifests: vec![
                amd.clone(),
                arm.clone(),
                attestation("att-amd", &amd),
                attestation("att-arm", &arm),
            ],
            ..ManifestDoc::default()
        };
        let got = select(&index, &Platform::linux("arm64").into()).unwrap();
        let summary: Vec<(Digest, bool)> = got
            .iter()
            .map(|c| (c.descriptor.digest.clone(), c.with_layers))
            .collect();
        assert_eq!(
            summary,
            vec![
                (arm.digest.clone(), true),
                (Digest::of(b"att-amd"), false),
                (Digest::of(b"att-arm"), true),
            ]
        );
        assert_eq!(select(&index, &PlatformSelection::All).unwrap().len(), 4);
        let (missing, available) = select(
            &index,
            &PlatformSelection::Only(vec![Platform::linux("riscv64"), Platform::linux("amd64")]),
        )
        .unwrap_err();
        assert_eq!(missing, vec!["linux/riscv64"]);
        assert_eq!(available, vec!["linux/amd64", "linux/arm64/v8"]);
    }
}
