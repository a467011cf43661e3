//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/`) written
//! from in-memory layers. All JSON comes from structs with a fixed field
//! order, so the bytes, and so the digests, depend only on the inputs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::debs::hex;
use crate::tarball;

/// OCI image manifest media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Gzip-compressed OCI layer media type.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The `index.json` annotation naming a tag in a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A platform as written in index descriptors and image configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`.
    pub fn amd64() -> Platform {
        Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        }
    }

    /// `linux/arm64/v8`.
    pub fn arm64() -> Platform {
        Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        }
    }
}

/// The `config` object of an image config: what kiln reads from an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One image to write: its platform, run config and layer trees (bottom first).
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub platform: Platform,
    pub config: RunConfig,
    pub layers: Vec<tarball::Tree>,
    /// Shown in the config's history.
    pub description: String,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: String,
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    config: &'a RunConfig,
    rootfs: RootFs,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// An image index, as stored in `index.json` and as an index blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// An OCI image layout directory being written.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    mtime: u64,
}

impl Layout {
    /// Creates the layout skeleton in `dir`. `mtime` is the fixed time of
    /// every tar entry and of the configs' `created` fields.
    pub fn create(dir: &Path, mtime: u64) -> anyhow::Result<Layout> {
        fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(Layout {
            dir: dir.to_owned(),
            mtime,
        })
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `data` as a blob and describes it.
    pub fn put_blob(&self, media_type: &str, data: &[u8]) -> anyhow::Result<Descriptor> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest);
        if !path.exists() {
            fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size: data.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        })
    }

    /// The path of a blob in this layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Writes the layers, config and manifest of `image`; returns the
    /// manifest descriptor (with the platform filled in).
    pub fn write_image(&self, image: &ImageSpec) -> anyhow::Result<Descriptor> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for tree in &image.layers {
            let tar = tree.to_tar(tarball::Names::Plain, self.mtime)?;
            diff_ids.push(sha256_digest(&tar));
            layers.push(self.put_blob(LAYER_GZIP, &tarball::gzip(&tar)?)?);
        }
        let created = rfc3339(self.mtime);
        let config = ImageConfig {
            created: created.clone(),
            architecture: &image.platform.architecture,
            os: &image.platform.os,
            variant: image.platform.variant.as_deref(),
            config: &image.config,
            rootfs: RootFs {
                kind: "layers",
                diff_ids,
            },
            history: image
                .layers
                .iter()
                .map(|_| History {
                    created: &created,
                    created_by: &image.description,
                })
                .collect(),
        };
        let config = self.put_blob(CONFIG, &serde_json::to_vec(&config)?)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST,
            config,
            layers,
        };
        let mut desc = self.put_blob(MANIFEST, &serde_json::to_vec(&manifest)?)?;
        desc.platform = Some(image.platform.clone());
        Ok(desc)
    }

    /// Writes an arbitrary manifest JSON (e.g. a signature manifest).
    pub fn write_manifest(
        &self,
        config: Descriptor,
        layers: Vec<Descriptor>,
    ) -> anyhow::Result<Descriptor> {
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST,
            config,
            layers,
        };
        self.put_blob(MANIFEST, &serde_json::to_vec(&manifest)?)
    }

    /// Writes an image index blob listing `manifests`.
    pub fn write_index(&self, manifests: Vec<Descriptor>) -> anyhow::Result<Descriptor> {
        let index = Index {
            schema_version: 2,
            media_type: INDEX.to_owned(),
            manifests,
        };
        self.put_blob(INDEX, &serde_json::to_vec(&index)?)
    }

    /// Writes `index.json` naming each descriptor by its tag.
    pub fn set_tags(&self, tags: &[(&str, &Descriptor)]) -> anyhow::Result<()> {
        let manifests = tags
            .iter()
            .map(|(tag, desc)| {
                let mut desc = (*desc).clone();
                desc.platform = None;
                desc.annotations = BTreeMap::from([(REF_NAME.to_owned(), (*tag).to_owned())]);
                desc
            })
            .collect();
        let index = Index {
            schema_version: 2,
            media_type: INDEX.to_owned(),
            manifests,
        };
        fs::write(self.dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}

/// `1970-01-01T00:00:00Z` for `secs` since the epoch.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_492_533_000), "2017-04-18T16:30:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
