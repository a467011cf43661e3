//! Removing images and collecting garbage.
//!
//! Both run with the garbage-collection lock held exclusively (so no
//! [`Lease`](super::Lease) holder is mid-write) and `index.json` locked, so the
//! set of roots cannot change while blobs are deleted.

use std::collections::BTreeSet;
use std::fs;

use super::blob::TMP_PREFIX;
use super::graph::Graph;
use super::lock::LockMode;
use super::{Digest, Store, StoreError};

/// What [`Store::clean`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Unreachable blobs deleted.
    pub blobs_deleted: Vec<Digest>,
    /// Their total size.
    pub bytes_freed: u64,
    /// Leftover temporary files deleted (from interrupted writes).
    pub temp_files_deleted: usize,
}

/// What [`Store::remove`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoveReport {
    /// Names removed from `index.json`.
    pub names_removed: Vec<String>,
    /// Blobs only those names reached, now deleted.
    pub blobs_deleted: Vec<Digest>,
    /// Their total size.
    pub bytes_freed: u64,
}

impl Store {
    /// Deletes every blob that no `index.json` entry reaches, and leftover
    /// temporary files. Waits until no [`Lease`](super::Lease) is held (by
    /// any process, this one included: calling it while holding a lease
    /// deadlocks).
    pub fn clean(&self) -> Result<CleanReport, StoreError> {
        let _gc = self.lock_gc()?;
        let _index = self.lock_index(LockMode::Exclusive)?;
        let roots = self.read_index_unlocked()?.manifests;
        let keep = Graph::walk(self, &roots).present();
        let mut report = CleanReport::default();
        let blobs = self.blobs_dir();
        for entry in fs::read_dir(&blobs).map_err(StoreError::io("listing", &blobs))? {
            let entry = entry.map_err(StoreError::io("listing", &blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                remove(&entry.path())?;
                report.temp_files_deleted += 1;
                continue;
            }
            let Ok(digest) = Digest::from_hex(&name) else {
                continue;
            };
            if keep.contains(&digest) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            remove(&entry.path())?;
            report.bytes_freed += size;
            report.blobs_deleted.push(digest);
        }
        let root = self.root();
        for entry in fs::read_dir(root).map_err(StoreError::io("listing", root))? {
            let entry = entry.map_err(StoreError::io("listing", root))?;
            if entry.file_name().to_string_lossy().contains(TMP_PREFIX) {
                remove(&entry.path())?;
                report.temp_files_deleted += 1;
            }
        }
        Ok(report)
    }

    /// Removes the named images (canonical reference strings) from
    /// `index.json`, then deletes the blobs that only they reached. Fails
    /// without changing anything if a name is not in the store. Waits for
    /// leases like [`Store::clean`].
    pub fn remove(&self, names: &[&str]) -> Result<RemoveReport, StoreError> {
        let _gc = self.lock_gc()?;
        let _index = self.lock_index(LockMode::Exclusive)?;
        let mut index = self.read_index_unlocked()?;
        for name in names {
            if index.named(name).next().is_none() {
                return Err(StoreError::NotFound {
                    reference: (*name).to_owned(),
                });
            }
        }
        let mut removed = Vec::new();
        for name in names {
            removed.extend(index.remove_name(name));
        }
        let gone = Graph::walk(self, &removed).present();
        let kept = Graph::walk(self, &index.manifests).present();
        self.write_index_unlocked(&index)?;
        let mut report = RemoveReport {
            names_removed: names.iter().map(|n| (*n).to_owned()).collect(),
            ..RemoveReport::default()
        };
        let doomed: BTreeSet<&Digest> = gone.difference(&kept).collect();
        for digest in doomed {
            let path = self.blob_path(digest);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            remove(&path)?;
            report.bytes_freed += size;
            report.blobs_deleted.push(digest.clone());
        }
        Ok(report)
    }
}

fn remove(path: &std::path::Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("deleting", path)(e)),
    }
}
