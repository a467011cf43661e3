//! Reachability: which blobs each `index.json` entry reaches, transitively
//! through index → manifest → config and layers.
//!
//! Children of an index are optional (the store may hold only some
//! platforms). A platform manifest that is present must be complete; an
//! attestation manifest that is present needs its config (linuxkit reads it
//! when validating an index) but not its layers.

use std::collections::{BTreeMap, BTreeSet};

use super::{is_index_type, is_manifest_type, BlobRole, Descriptor, Digest, ManifestKind, Store};

/// One reachable blob.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub size: u64,
    pub present: bool,
    /// Names of the `index.json` entries that reach it (unnamed entries as
    /// their digest).
    pub users: BTreeSet<String>,
}

/// A required blob that is absent, or a manifest that could not be read.
#[derive(Clone, Debug)]
pub(crate) struct Gap {
    pub digest: Digest,
    pub role: BlobRole,
    pub root: String,
    pub problem: Option<String>,
}

/// The result of walking a set of roots.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub nodes: BTreeMap<Digest, Node>,
    pub gaps: Vec<Gap>,
}

impl Graph {
    /// Walks from every descriptor in `roots`.
    pub fn walk(store: &Store, roots: &[Descriptor]) -> Self {
        let mut graph = Graph::default();
        for root in roots {
            let name = root
                .ref_name()
                .map_or_else(|| root.digest.to_string(), str::to_owned);
            let role = role_of(&root.media_type, BlobRole::Manifest);
            graph.visit(store, root, role, Need::Required, &name);
        }
        graph
    }

    /// Digests of present blobs reached.
    pub fn present(&self) -> BTreeSet<Digest> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.present)
            .map(|(d, _)| d.clone())
            .collect()
    }

    fn visit(&mut self, store: &Store, desc: &Descriptor, role: BlobRole, need: Need, root: &str) {
        let present = store.has_blob(&desc.digest, None);
        let first_visit = !self.nodes.contains_key(&desc.digest);
        let node = self.nodes.entry(desc.digest.clone()).or_insert(Node {
            size: desc.size,
            present,
            users: BTreeSet::new(),
        });
        let new_user = node.users.insert(root.to_owned());
        if !present {
            if need == Need::Required {
                self.gaps.push(Gap {
                    digest: desc.digest.clone(),
                    role,
                    root: root.to_owned(),
                    problem: None,
                });
            }
            return;
        }
        if !first_visit && !new_user {
            return;
        }
        if !matches!(role, BlobRole::Index | BlobRole::Manifest) {
            return;
        }
        let doc = match store.read_manifest(desc) {
            Ok(doc) => doc,
            Err(e) => {
                self.gaps.push(Gap {
                    digest: desc.digest.clone(),
                    role,
                    root: root.to_owned(),
                    problem: Some(e.to_string()),
                });
                return;
            }
        };
        match doc.kind(&desc.media_type) {
            Some(ManifestKind::Index) => {
                for child in &doc.manifests {
                    let child_role = role_of(&child.media_type, BlobRole::Manifest);
                    let child_need = if child.is_platformless() {
                        Need::AttestationOptional
                    } else {
                        Need::Optional
                    };
                    self.visit(store, child, child_role, child_need, root);
                }
            }
            Some(ManifestKind::Image) => {
                let layer_need = if need == Need::AttestationOptional {
                    Need::Optional
                } else {
                    Need::Required
                };
                if let Some(config) = &doc.config {
                    self.visit(store, config, BlobRole::Config, Need::Required, root);
                }
                for layer in &doc.layers {
                    self.visit(store, layer, BlobRole::Layer, layer_need, root);
                }
            }
            None => {}
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    /// An absent attestation is fine; a present one needs only its config.
    AttestationOptional,
}

fn role_of(media_type: &str, default: BlobRole) -> BlobRole {
    if is_index_type(media_type) {
        BlobRole::Index
    } else if is_manifest_type(media_type) {
        BlobRole::Manifest
    } else {
        default
    }
}
