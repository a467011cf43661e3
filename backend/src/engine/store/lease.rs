//! Leases: the right to add blobs to a store.
//!
//! Blobs are written before the `index.json` entry that makes them
//! reachable, so a concurrent `clean` could delete them in between. Every
//! writer holds a shared lock on `.kiln-gc.lock` for the whole operation
//! (a [`Lease`]); `clean` and `remove` take it exclusively.

use std::sync::Arc;

use super::blob::{BlobWriter, Expected};
use super::lock::{FileLock, LockMode};
use super::{Descriptor, Digest, Store, StoreError};

/// Name of the lock file guarding garbage collection.
pub(crate) const GC_LOCK: &str = ".kiln-gc.lock";

/// Proof that garbage collection is held off. Cheap to clone; the lock is
/// released when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Lease {
    store: Store,
    _lock: Arc<FileLock>,
}

impl Lease {
    pub(crate) fn acquire(store: &Store) -> Result<Self, StoreError> {
        let lock = FileLock::acquire(&store.root().join(GC_LOCK), LockMode::Shared)?;
        Ok(Self {
            store: store.clone(),
            _lock: Arc::new(lock),
        })
    }

    /// The store this lease is for.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Starts writing a blob; see [`BlobWriter`].
    pub fn blob_writer(&self, expected: Expected) -> Result<BlobWriter, StoreError> {
        BlobWriter::create(self, expected)
    }

    /// Writes a whole in-memory blob (manifests, configs), skipping the write
    /// when an identical-size blob is already present.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        if self.store.has_blob(&digest, Some(bytes.len() as u64)) {
            return Ok(digest);
        }
        let mut w = self.blob_writer(Expected::exactly(digest, bytes.len() as u64))?;
        w.write_chunk(bytes)?;
        Ok(w.commit()?.0)
    }

    /// Writes an in-memory blob that must match `descriptor`.
    pub fn put_descriptor_bytes(
        &self,
        descriptor: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if self
            .store
            .has_blob(&descriptor.digest, Some(descriptor.size))
        {
            return Ok(());
        }
        let mut w = self.blob_writer(Expected::exactly(
            descriptor.digest.clone(),
            descriptor.size,
        ))?;
        w.write_chunk(bytes)?;
        w.commit().map(|_| ())
    }
}
