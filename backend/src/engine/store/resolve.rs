//! Resolving references from the store alone (offline builds): name →
//! root descriptor → platform manifest → config and layers, all present.

use serde::Deserialize;

use super::{
    BlobRole, Descriptor, ManifestDoc, ManifestKind, MissingImage, MissingReason, Platform,
    RootIndex, Store, StoreError,
};
use crate::engine::reference::Reference;

/// An image fully available in the store for one platform.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedImage {
    /// The reference as requested (expanded).
    pub reference: Reference,
    /// The `index.json` name it was found under (`None` when found by digest).
    pub name: Option<String>,
    /// The root descriptor (image manifest or index).
    pub root: Descriptor,
    /// The image manifest for the platform (the root itself for single images).
    pub manifest: Descriptor,
    /// The platform from the index entry or the config, when known.
    pub platform: Option<Platform>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ConfigPlatform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Store {
    /// Resolves every reference for `platform` without any network access.
    /// Fails with [`StoreError::Missing`] naming each image that is absent,
    /// lacks the platform, or has a blob missing.
    pub fn resolve(
        &self,
        references: &[Reference],
        platform: &Platform,
    ) -> Result<Vec<ResolvedImage>, StoreError> {
        let index = self.index()?;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for reference in references {
            match self.resolve_in(&index, reference, platform) {
                Ok(image) => found.push(image),
                Err(reason) => missing.push(MissingImage {
                    reference: reference.to_string(),
                    reason,
                }),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(StoreError::Missing { missing })
        }
    }

    /// Finds the root descriptor for `reference`: by name (trying `:latest`
    /// for untagged references), else by its pinned digest.
    pub fn find_root(
        &self,
        index: &RootIndex,
        reference: &Reference,
    ) -> Option<(Option<String>, Descriptor)> {
        let mut names = vec![reference.to_string()];
        if reference.tag().is_none() && reference.digest().is_none() {
            names.push(reference.with_default_tag().to_string());
        }
        for name in names {
            let found = index.named(&name).next().cloned();
            if let Some(d) = found {
                return Some((Some(name), d));
            }
        }
        let digest = reference.digest()?;
        if let Some(d) = index.manifests.iter().find(|d| &d.digest == digest) {
            return Some((d.ref_name().map(str::to_owned), d.clone()));
        }
        let bytes = self.read_json_blob(digest, BlobRole::Manifest).ok()?;
        let doc = ManifestDoc::parse(&bytes).ok()?;
        let media_type = match doc.kind("")? {
            ManifestKind::Index => doc
                .media_type
                .unwrap_or_else(|| super::OCI_INDEX.to_owned()),
            ManifestKind::Image => doc
                .media_type
                .unwrap_or_else(|| super::OCI_MANIFEST.to_owned()),
        };
        Some((
            None,
            Descriptor::new(media_type, digest.clone(), bytes.len() as u64),
        ))
    }

    fn resolve_in(
        &self,
        index: &RootIndex,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage, MissingReason> {
        let (name, root) = self
            .find_root(index, reference)
            .ok_or(MissingReason::NotInStore)?;
        let doc = self.read_doc(&root)?;
        let (manifest, doc, entry_platform) = match doc.kind(&root.media_type) {
            Some(ManifestKind::Index) => {
                let chosen = doc
                    .manifests
                    .iter()
                    .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
                    .cloned()
                    .ok_or_else(|| MissingReason::NoPlatform {
                        wanted: platform.to_string(),
                        available: doc
                            .manifests
                            .iter()
                            .filter(|m| !m.is_platformless())
                            .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
                            .collect(),
                    })?;
                let child = self.read_doc(&chosen)?;
                if child.kind(&chosen.media_type) != Some(ManifestKind::Image) {
                    return Err(MissingReason::Invalid(format!(
                        "{} for {platform} is not an image manifest",
                        chosen.digest
                    )));
                }
                let p = chosen.platform.clone();
                (chosen, child, p)
            }
            Some(ManifestKind::Image) => (root.clone(), doc, None),
            None => {
                return Err(MissingReason::Invalid(format!(
                    "{} is neither an image manifest nor an index (media type {:?})",
                    root.digest, root.media_type
                )))
            }
        };
        let config = doc.config.clone().ok_or_else(|| {
            MissingReason::Invalid(format!("manifest {} has no config", manifest.digest))
        })?;
        let config_platform = self.config_platform(&config)?;
        if entry_platform.is_none() {
            if let Some(cp) = &config_platform {
                if !platform.matches(cp) {
                    return Err(MissingReason::NoPlatform {
                        wanted: platform.to_string(),
                        available: vec![cp.to_string()],
                    });
                }
            }
        }
        for layer in &doc.layers {
            if !self.has_blob(&layer.digest, Some(layer.size)) {
                return Err(MissingReason::BlobMissing {
                    digest: layer.digest.clone(),
                    role: BlobRole::Layer,
                });
            }
        }
        Ok(ResolvedImage {
            reference: reference.clone(),
            name,
            root,
            platform: entry_platform.or(config_platform),
            manifest,
            config,
            layers: doc.layers,
        })
    }

    fn read_doc(&self, descriptor: &Descriptor) -> Result<ManifestDoc, MissingReason> {
        self.read_manifest(descriptor).map_err(|e| match e {
            StoreError::BlobMissing { digest, role } => MissingReason::BlobMissing { digest, role },
            other => MissingReason::Invalid(other.to_string()),
        })
    }

    /// The platform a config declares; `None` when it declares none.
    fn config_platform(&self, config: &Descriptor) -> Result<Option<Platform>, MissingReason> {
        let bytes = self
            .read_json_blob(&config.digest, BlobRole::Config)
            .map_err(|e| match e {
                StoreError::BlobMissing { digest, role } => {
                    MissingReason::BlobMissing { digest, role }
                }
                other => MissingReason::Invalid(other.to_string()),
            })?;
        let parsed: ConfigPlatform = serde_json::from_slice(&bytes).map_err(|e| {
            MissingReason::Invalid(format!("config {} is not valid JSON: {e}", config.digest))
        })?;
        if parsed.architecture.is_empty() || parsed.os.is_empty() {
            return Ok(None);
        }
        let mut p = Platform::linux(&parsed.architecture);
        p.os = parsed.os;
        p.variant = parsed.variant.filter(|v| !v.is_empty());
        Ok(Some(p))
    }
}
