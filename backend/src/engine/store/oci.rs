//! The OCI data model the store reads and writes: descriptors, platforms,
//! manifests and indexes, plus the media types involved.
//!
//! Only the fields the store acts on are typed; everything else is kept in
//! `extra` so that rewriting `index.json` never drops what another tool wrote.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Digest;

/// `application/vnd.oci.image.index.v1+json`
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.manifest.v1+json`
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.config.v1+json`
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar`
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// `application/vnd.oci.image.layer.v1.tar+gzip`
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.docker.distribution.manifest.list.v2+json`
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.docker.distribution.manifest.v2+json`
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Annotation holding the full reference in linuxkit's cache `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd/BuildKit/Docker put on `index.json` entries of OCI
/// archives; linuxkit's `cache import` names images after it.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// BuildKit attestation manifests point at the image they describe with this.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// Media types the registry client asks for and the store parses.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// Whether `media_type` names an index (OCI index or Docker manifest list).
pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` names a single-image manifest.
pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor. Field order follows go-containerregistry's so that
/// `index.json` looks the same whichever tool wrote it last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    #[serde(default)]
    pub media_type: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Blob digest.
    pub digest: Digest,
    /// Alternative download locations (never followed by kiln).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform of a manifest inside an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Fields kiln does not interpret (`artifactType`, `data`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Descriptor {
    /// A plain descriptor with no annotations or platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            size,
            digest,
            urls: None,
            annotations: BTreeMap::new(),
            platform: None,
            extra: Map::new(),
        }
    }

    /// The `org.opencontainers.image.ref.name` annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }

    /// Whether this entry is an attestation or other platform-less metadata
    /// manifest (no platform, or `unknown/unknown`).
    pub fn is_platformless(&self) -> bool {
        self.platform
            .as_ref()
            .is_none_or(|p| p.os == "unknown" && p.architecture == "unknown")
    }
}

/// An OCI platform (`linux/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, Go naming (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// OS version, mostly for Windows.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v8`, `v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<architecture>`.
    pub fn linux(architecture: &str) -> Self {
        Self {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            os_version: None,
            os_features: None,
            variant: None,
        }
    }

    /// `linux/<architecture of this binary>`, Go names, like linuxkit's default `--arch`.
    pub fn host() -> Self {
        Self::linux(go_arch(std::env::consts::ARCH))
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let arch = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            architecture: arch.to_owned(),
            os: os.to_owned(),
            os_version: None,
            os_features: None,
            variant,
        })
    }

    /// Whether an index entry for `candidate` satisfies this requested
    /// platform: OS and architecture must be equal, the variant only if this
    /// one names a variant (so `linux/arm64` matches `linux/arm64/v8`).
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || self.variant == candidate.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Rust's `std::env::consts::ARCH` in Go's spelling.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A manifest or index document, parsed just enough to walk its references.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDoc {
    /// Always 2 for the formats kiln reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Media type, if the document states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// An image manifest's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    /// An image manifest's layers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Descriptor>,
    /// An index's manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Descriptor>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What kind of document a manifest blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI index or Docker manifest list.
    Index,
    /// OCI or Docker v2 image manifest.
    Image,
}

impl ManifestDoc {
    /// Parses a manifest blob.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Classifies the document, by its own media type, else by the media type
    /// of the descriptor that pointed at it, else by its shape.
    pub fn kind(&self, descriptor_media_type: &str) -> Option<ManifestKind> {
        let stated = self
            .media_type
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(descriptor_media_type);
        if is_index_type(stated) {
            Some(ManifestKind::Index)
        } else if is_manifest_type(stated) || self.config.is_some() {
            Some(ManifestKind::Image)
        } else if !self.manifests.is_empty() {
            Some(ManifestKind::Index)
        } else {
            None
        }
    }
}

/// The `index.json` at the root of an OCI layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootIndex {
    /// Always 2.
    pub schema_version: u32,
    /// `application/vnd.oci.image.index.v1+json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// One descriptor per stored root (named or not).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub manifests: Vec<Descriptor>,
    /// Everything else (annotations, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for RootIndex {
    fn default() -> Self {
        Self {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            extra: Map::new(),
        }
    }
}

impl RootIndex {
    /// Entries whose `ref.name` annotation equals `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Descriptor> + 'a {
        self.manifests
            .iter()
            .filter(move |d| d.ref_name() == Some(name))
    }

    /// Replaces every entry named `name` by `descriptor` (annotated with the
    /// name), like linuxkit's `DescriptorWrite`.
    pub fn set_name(&mut self, name: &str, mut descriptor: Descriptor) {
        descriptor
            .annotations
            .insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        self.manifests.retain(|d| d.ref_name() != Some(name));
        self.manifests.push(descriptor);
    }

    /// Removes every entry named `name`; returns what was removed.
    pub fn remove_name(&mut self, name: &str) -> Vec<Descriptor> {
        let (removed, kept) = std::mem::take(&mut self.manifests)
            .into_iter()
            .partition(|d| d.ref_name() == Some(name));
        self.manifests = kept;
        removed
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Descriptor>, D::Error> {
    Ok(Option::<Vec<Descriptor>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn root_index_keeps_unknown_fields_and_go_field_order() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","size":7,"digest":"sha256:{HEX}","annotations":{{"org.opencontainers.image.ref.name":"docker.io/library/alpine:3.20"}},"artifactType":"x"}}],"annotations":{{"k":"v"}}}}"#
        );
        let index: RootIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(index.named("docker.io/library/alpine:3.20").count(), 1);
        assert_eq!(serde_json::to_string(&index).unwrap(), json);
    }

    #[test]
    fn null_manifests_is_empty() {
        let index: RootIndex =
            serde_json::from_str(r#"{"schemaVersion":2,"manifests":null}"#).unwrap();
        assert!(index.manifests.is_empty());
    }

    #[test]
    fn set_name_replaces() {
        let mut index = RootIndex::default();
        let d = Descriptor::new(OCI_MANIFEST, Digest::of(b"a"), 1);
        index.set_name("x", d.clone());
        index.set_name("x", Descriptor::new(OCI_MANIFEST, Digest::of(b"b"), 1));
        index.set_name("y", d);
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(index.named("x").next().unwrap().digest, Digest::of(b"b"));
        assert_eq!(index.remove_name("x").len(), 1);
        assert_eq!(index.manifests.len(), 1);
    }

    #[test]
    fn platform_matching_ignores_unrequested_variant() {
        let want = Platform::linux("arm64");
        let have = Platform::parse("linux/arm64/v8").unwrap();
        assert!(want.matches(&have));
        assert!(!have.matches(&Platform::linux("arm64")));
        assert!(!want.matches(&Platform::linux("amd64")));
        assert_eq!(have.to_string(), "linux/arm64/v8");
    }
}
