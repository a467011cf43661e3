//! Re-hashing every blob to find corruption, and finding required blobs that
//! are missing.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;

use super::graph::Graph;
use super::{BlobRole, Digest, Hasher, Store, StoreError};

/// A blob whose content does not match its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptBlob {
    /// The blob's name.
    pub digest: Digest,
    /// What the content hashes to.
    pub actual: Digest,
    /// Images (names) that reach it; empty for unreachable blobs.
    pub used_by: Vec<String>,
    /// Whether it was deleted (verify with `remove_corrupt`).
    pub deleted: bool,
}

/// A blob an image needs that is absent (or a manifest that is unreadable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingBlob {
    /// The blob.
    pub digest: Digest,
    /// Its role.
    pub role: BlobRole,
    /// The image (name) that needs it.
    pub image: String,
    /// Set when the blob is present but could not be read or parsed.
    pub problem: Option<String>,
}

/// The result of [`Store::verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// Blobs whose content does not match their digest.
    pub corrupt: Vec<CorruptBlob>,
    /// Required blobs that are absent.
    pub missing: Vec<MissingBlob>,
}

impl VerifyReport {
    /// No corruption and nothing missing.
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

impl Store {
    /// Re-hashes every blob and checks that every image's required blobs are
    /// present. With `remove_corrupt`, corrupt blobs are deleted so that the
    /// next pull fetches them again.
    pub fn verify(&self, remove_corrupt: bool) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let blobs = self.blobs_dir();
        let mut corrupt = Vec::new();
        let mut names: Vec<String> = fs::read_dir(&blobs)
            .map_err(StoreError::io("listing", &blobs))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let Ok(digest) = Digest::from_hex(&name) else {
                continue;
            };
            let path = self.blob_path(&digest);
            let mut file = match fs::File::open(&path) {
                Ok(f) => f,
                // Deleted by a concurrent clean: nothing to verify.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("opening", &path)(e)),
            };
            let mut hasher = Hasher::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(StoreError::io("reading", &path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            report.blobs_checked += 1;
            report.bytes_checked += hasher.len();
            let actual = hasher.finish();
            if actual != digest {
                corrupt.push((digest, actual));
            }
        }

        let roots = self.index()?.manifests;
        let graph = Graph::walk(self, &roots);
        let corrupt_set: BTreeSet<&Digest> = corrupt.iter().map(|(d, _)| d).collect();
        for gap in &graph.gaps {
            // A corrupt manifest shows up as unreadable too; report it once.
            if gap.problem.is_some() && corrupt_set.contains(&gap.digest) {
                continue;
            }
            report.missing.push(MissingBlob {
                digest: gap.digest.clone(),
                role: gap.role,
                image: gap.root.clone(),
                problem: gap.problem.clone(),
            });
        }
        for (digest, actual) in corrupt {
            let used_by = graph
                .nodes
                .get(&digest)
                .map(|n| n.users.iter().cloned().collect())
                .unwrap_or_default();
            let mut deleted = false;
            if remove_corrupt {
                let path = self.blob_path(&digest);
                match fs::remove_file(&path) {
                    Ok(()) => deleted = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("deleting", &path)(e)),
                }
            }
            report.corrupt.push(CorruptBlob {
                digest,
                actual,
                used_by,
                deleted,
            });
        }
        Ok(report)
    }
}
