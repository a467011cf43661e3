//! The content-addressed image store: an OCI image layout on disk that is
//! interchangeable with linuxkit's `~/.linuxkit/cache`.
//!
//! Layout: `oci-layout`, `index.json` (one descriptor per named image, the
//! name in `org.opencontainers.image.ref.name` as a fully expanded reference)
//! and `blobs/sha256/<hex>`. `index.json` is read under a shared and rewritten
//! under an exclusive lock on `.lock` (the file linuxkit locks), and replaced
//! by atomic rename. Blobs appear only once verified (see [`BlobWriter`]).

mod archive;
mod blob;
mod digest;
mod error;
mod gc;
mod graph;
mod lease;
mod list;
mod lock;
mod oci;
mod resolve;
mod verify;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use archive::{ArchiveFormat, ImportedImage};
pub use blob::{BlobWriter, Expected};
pub use digest::{Digest, DigestError, Hasher};
pub use error::{BlobRole, MissingImage, MissingReason, StoreError};
pub use gc::{CleanReport, RemoveReport};
pub use lease::Lease;
pub use list::ImageSummary;
pub use oci::{
    go_arch, is_index_type, is_manifest_type, Descriptor, ManifestDoc, ManifestKind, Platform,
    RootIndex, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REFERENCE_DIGEST, ANNOTATION_REF_NAME,
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_MEDIA_TYPES, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_MANIFEST,
};
pub use resolve::ResolvedImage;
pub use verify::{CorruptBlob, MissingBlob, VerifyReport};

use lock::{FileLock, LockMode};

/// Largest manifest, index or config the store will parse (4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
/// linuxkit's lock file (cache/const.go).
const INDEX_LOCK: &str = ".lock";

/// kiln's home directory: `$KILN_HOME`, else `$HOME/.kiln`.
pub fn kiln_home() -> Option<PathBuf> {
    kiln_home_from(std::env::var_os("KILN_HOME"), std::env::var_os("HOME"))
}

/// [`kiln_home`] with the environment passed in.
pub fn kiln_home_from(kiln_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    match kiln_home.filter(|h| !h.is_empty()) {
        Some(h) => Some(PathBuf::from(h)),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".kiln")),
    }
}

/// The default store location under a kiln home: `<home>/cache`.
pub fn default_store_dir(kiln_home: &Path) -> PathBuf {
    kiln_home.join("cache")
}

/// A handle on a store directory. Cheap to clone; holds no open files or
/// locks, so any number of handles (in any number of processes) may coexist.
#[derive(Clone, Debug)]
pub struct Store {
    root: Arc<PathBuf>,
}

impl Store {
    /// Opens the store at `root`, creating the directory, `oci-layout`,
    /// `blobs/sha256/` and an empty `index.json` as needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Self {
            root: Arc::new(root.into()),
        };
        let blobs = store.blobs_dir();
        fs::create_dir_all(&blobs).map_err(StoreError::io("creating", &blobs))?;
        let layout = store.root().join(OCI_LAYOUT_FILE);
        let index = store.index_path();
        if !layout.exists() || !index.exists() {
            let _lock = store.lock_index(LockMode::Exclusive)?;
            if !layout.exists() {
                blob::write_file_atomic(&layout, OCI_LAYOUT_CONTENT)?;
            }
            if !index.exists() {
                store.write_index_unlocked(&RootIndex::default())?;
            }
        }
        Ok(store)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether the blob is present (and, if `size` is given, has that size).
    pub fn has_blob(&self, digest: &Digest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs::File, StoreError> {
        let path = self.blob_path(digest);
        fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::BlobMissing {
                    digest: digest.clone(),
                    role: BlobRole::Blob,
                }
            } else {
                StoreError::io("opening", path)(e)
            }
        })
    }

    /// Reads a small JSON blob (manifest, index, config), refusing ones over
    /// [`MAX_MANIFEST_BYTES`] and re-checking the digest.
    pub fn read_json_blob(&self, digest: &Digest, role: BlobRole) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        if !path.exists() {
            return Err(StoreError::BlobMissing {
                digest: digest.clone(),
                role,
            });
        }
        let what = match role {
            BlobRole::Config => "config",
            BlobRole::Index => "index",
            _ => "manifest",
        };
        let bytes = blob::read_limited(&path, digest, what, MAX_MANIFEST_BYTES)?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Reads and parses a manifest or index blob.
    pub fn read_manifest(&self, descriptor: &Descriptor) -> Result<ManifestDoc, StoreError> {
        let role = if is_index_type(&descriptor.media_type) {
            BlobRole::Index
        } else {
            BlobRole::Manifest
        };
        let bytes = self.read_json_blob(&descriptor.digest, role)?;
        ManifestDoc::parse(&bytes).map_err(|source| StoreError::Json {
            what: "manifest",
            location: descriptor.digest.to_string(),
            source,
        })
    }

    /// Holds off garbage collection while blobs are added; see [`Lease`].
    /// Blocks while a `clean` or `remove` runs.
    pub fn lease(&self) -> Result<Lease, StoreError> {
        Lease::acquire(self)
    }

    /// A snapshot of `index.json`.
    pub fn index(&self) -> Result<RootIndex, StoreError> {
        let _lock = self.lock_index(LockMode::Shared)?;
        self.read_index_unlocked()
    }

    /// Read-modify-write of `index.json` under the exclusive lock. The file is
    /// only rewritten if `f` succeeds.
    pub fn update_index<T>(
        &self,
        f: impl FnOnce(&mut RootIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock_index(LockMode::Exclusive)?;
        let mut index = self.read_index_unlocked()?;
        let before = index.clone();
        let out = f(&mut index)?;
        if index != before {
            self.write_index_unlocked(&index)?;
        }
        Ok(out)
    }

    /// Records `descriptor` under `name` (a canonical reference string),
    /// replacing any entry with that name. The blob must already be present.
    pub fn set_name(&self, name: &str, descriptor: Descriptor) -> Result<(), StoreError> {
        if !self.has_blob(&descriptor.digest, Some(descriptor.size)) {
            return Err(StoreError::BlobMissing {
                digest: descriptor.digest,
                role: if is_index_type(&descriptor.media_type) {
                    BlobRole::Index
                } else {
                    BlobRole::Manifest
                },
            });
        }
        self.update_index(|index| {
            index.set_name(name, descriptor);
            Ok(())
        })
    }

    /// Adds linuxkit's `<name>-<arch>` entries (what `linuxkit cache pull`
    /// writes) for each platform manifest of the index named `name` that is
    /// present in the store. Returns the names written.
    pub fn add_arch_names(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let root =
            self.index()?
                .named(name)
                .next()
                .cloned()
                .ok_or_else(|| StoreError::NotFound {
                    reference: name.to_owned(),
                })?;
        let doc = self.read_manifest(&root)?;
        if doc.kind(&root.media_type) != Some(ManifestKind::Index) {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Descriptor)> = doc
            .manifests
            .into_iter()
            .filter(|m| !m.is_platformless() && self.has_blob(&m.digest, Some(m.size)))
            .filter_map(|m| {
                let arch = m.platform.as_ref()?.architecture.clone();
                Some((format!("{name}-{arch}"), m))
            })
            .collect();
        self.update_index(|index| {
            for (n, d) in &entries {
                index.set_name(n, d.clone());
            }
            Ok(())
        })?;
        Ok(entries.into_iter().map(|(n, _)| n).collect())
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    fn lock_index(&self, mode: LockMode) -> Result<FileLock, StoreError> {
        FileLock::acquire(&self.root.join(INDEX_LOCK), mode)
    }

    fn lock_gc(&self) -> Result<FileLock, StoreError> {
        FileLock::acquire(&self.root.join(lease::GC_LOCK), LockMode::Exclusive)
    }

    fn read_index_unlocked(&self) -> Result<RootIndex, StoreError> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RootIndex::default()),
            Err(e) => return Err(StoreError::io("reading", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: "index.json",
            location: path.display().to_string(),
            source,
        })
    }

    fn write_index_unlocked(&self, index: &RootIndex) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(index).map_err(|source| StoreError::Json {
            what: "index.json",
            location: self.index_path().display().to_string(),
            source,
        })?;
        blob::write_file_atomic(&self.index_path(), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kiln_home_precedence() {
        assert_eq!(
            kiln_home_from(Some("/k".into()), Some("/h".into())),
            Some(PathBuf::from("/k"))
        );
        assert_eq!(
            kiln_home_from(Some("".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.kiln"))
        );
        assert_eq!(kiln_home_from(None, None), None);
        assert_eq!(
            default_store_dir(Path::new("/h/.kiln")),
            PathBuf::from("/h/.kiln/cache")
        );
    }
}
