//! Listing the images in a store, for `kiln cache ls`.

use super::graph::Graph;
use super::{Descriptor, Digest, ManifestKind, Platform, Store, StoreError};

/// One `index.json` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSummary {
    /// The `ref.name` annotation (a full reference), if the entry has one.
    pub name: Option<String>,
    /// Root digest.
    pub digest: Digest,
    /// Root media type.
    pub media_type: String,
    /// Platforms present in the store (index entries whose manifest is
    /// present; for a single image, the platform its config declares).
    pub platforms: Vec<Platform>,
    /// Total size of the blobs present that this entry reaches.
    pub size: u64,
    /// Whether every required blob is present.
    pub complete: bool,
}

impl Store {
    /// Lists every entry of `index.json`, in file order.
    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let index = self.index()?;
        let mut out = Vec::with_capacity(index.manifests.len());
        for root in &index.manifests {
            let graph = Graph::walk(self, std::slice::from_ref(root));
            let size = graph
                .nodes
                .values()
                .filter(|n| n.present)
                .map(|n| n.size)
                .sum();
            out.push(ImageSummary {
                name: root.ref_name().map(str::to_owned),
                digest: root.digest.clone(),
                media_type: root.media_type.clone(),
                platforms: self.platforms_of(root),
                size,
                complete: graph.gaps.is_empty(),
            });
        }
        Ok(out)
    }

    fn platforms_of(&self, root: &Descriptor) -> Vec<Platform> {
        if let Some(p) = &root.platform {
            return vec![p.clone()];
        }
        let Ok(doc) = self.read_manifest(root) else {
            return Vec::new();
        };
        match doc.kind(&root.media_type) {
            Some(ManifestKind::Index) => doc
                .manifests
                .iter()
                .filter(|m| !m.is_platformless() && self.has_blob(&m.digest, Some(m.size)))
                .filter_map(|m| m.platform.clone())
                .collect(),
            Some(ManifestKind::Image) => doc
                .config
                .and_then(|c| self.read_json_blob(&c.digest, super::BlobRole::Config).ok())
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    let arch = v.get("architecture")?.as_str()?;
                    let os = v.get("os")?.as_str()?;
                    let mut p = Platform::linux(arch);
                    p.os = os.to_owned();
                    p.variant = v.get("variant").and_then(|x| x.as_str()).map(str::to_owned);
                    Some(vec![p])
                })
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }
}
