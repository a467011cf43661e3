//! Writing blobs atomically and reading them back with limits.
//!
//! A blob is streamed into a temporary file in `blobs/sha256/`, hashed and
//! counted on the way, and only renamed to its digest after the digest and
//! size match, the data is fsynced, and then the directory is fsynced. A crash
//! at any point leaves at most a `.kiln-tmp-*` file, which readers ignore and
//! `clean` deletes.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Digest, Hasher, Lease, StoreError};

/// Prefix of temporary files; never a valid digest, so never mistaken for a blob.
pub(crate) const TMP_PREFIX: &str = ".kiln-tmp-";

const COPY_BUF: usize = 64 * 1024;

/// What a blob being written must turn out to be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Required digest; `None` names the blob after whatever it hashes to.
    pub digest: Option<Digest>,
    /// Required size; writing more is refused as soon as it happens.
    pub size: Option<u64>,
}

impl Expected {
    /// Both digest and size known (the normal case, from a descriptor).
    pub fn exactly(digest: Digest, size: u64) -> Self {
        Self {
            digest: Some(digest),
            size: Some(size),
        }
    }
}

/// A blob being written. Nothing is visible until [`BlobWriter::commit`];
/// dropping it without committing deletes the temporary file.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    dir: PathBuf,
    expected: Expected,
    hasher: Hasher,
    _lease: Lease,
}

impl BlobWriter {
    pub(crate) fn create(lease: &Lease, expected: Expected) -> Result<Self, StoreError> {
        let dir = lease.store().blobs_dir();
        let (file, tmp) = create_temp(&dir, TMP_PREFIX)?;
        Ok(Self {
            file: Some(file),
            tmp,
            dir,
            expected,
            hasher: Hasher::new(),
            _lease: lease.clone(),
        })
    }

    /// Appends `chunk`, refusing to go past the expected size.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let written = self.hasher.len() + chunk.len() as u64;
        if let (Some(size), Some(digest)) = (self.expected.size, &self.expected.digest) {
            if written > size {
                return Err(StoreError::SizeMismatch {
                    digest: digest.clone(),
                    expected: size,
                    actual: written,
                });
            }
        }
        let file = self.file.as_mut().ok_or_else(|| StoreError::Io {
            action: "writing",
            path: self.tmp.clone(),
            source: ErrorKind::BrokenPipe.into(),
        })?;
        file.write_all(chunk)
            .map_err(StoreError::io("writing", &self.tmp))?;
        self.hasher.update(chunk);
        Ok(())
    }

    /// Copies all of `reader` in; `source` names it in read errors.
    pub fn copy_from(&mut self, mut reader: impl Read, source: &Path) -> Result<u64, StoreError> {
        let mut buf = vec![0u8; COPY_BUF];
        let mut total = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("reading", source)(e)),
            };
            self.write_chunk(&buf[..n])?;
            total += n as u64;
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// The digest of what has been written so far (for diagnosing a failed
    /// transfer without committing).
    pub fn digest_so_far(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Verifies digest and size, makes the data durable and publishes the
    /// blob under its digest. Returns the digest and size.
    pub fn commit(mut self) -> Result<(Digest, u64), StoreError> {
        let size = self.hasher.len();
        let actual = std::mem::take(&mut self.hasher).finish();
        if let Some(expected) = self.expected.size {
            if expected != size {
                return Err(StoreError::SizeMismatch {
                    digest: self
                        .expected
                        .digest
                        .clone()
                        .unwrap_or_else(|| actual.clone()),
                    expected,
                    actual: size,
                });
            }
        }
        if let Some(expected) = &self.expected.digest {
            if *expected != actual {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(StoreError::io("syncing", &self.tmp))?;
        }
        let target = self.dir.join(actual.hex());
        fs::rename(&self.tmp, &target).map_err(StoreError::io("renaming", &target))?;
        // From here the temp path no longer exists; Drop must not touch it.
        self.tmp = PathBuf::new();
        sync_dir(&self.dir)?;
        Ok((actual, size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Creates a uniquely named, exclusively created temp file in `dir`.
pub(crate) fn create_temp(dir: &Path, prefix: &str) -> Result<(File, PathBuf), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{prefix}{}-{nanos:x}-{n}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StoreError::io("creating", &path)(e)),
        }
    }
}

/// Writes `bytes` to `target` by temp file + fsync + rename + directory fsync.
pub(crate) fn write_file_atomic(target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut file, tmp) = create_temp(dir, &format!("{name}{TMP_PREFIX}"))?;
    let result = (|| {
        file.write_all(bytes)
            .map_err(StoreError::io("writing", &tmp))?;
        file.sync_all().map_err(StoreError::io("syncing", &tmp))?;
        drop(file);
        fs::rename(&tmp, target).map_err(StoreError::io("renaming", target))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("syncing directory", dir))
}

/// Reads a whole file, refusing files over `limit` bytes before reading them.
pub(crate) fn read_limited(
    path: &Path,
    digest: &Digest,
    what: &'static str,
    limit: u64,
) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(StoreError::io("opening", path))?;
    let size = file
        .metadata()
        .map_err(StoreError::io("reading metadata of", path))?
        .len();
    if size > limit {
        return Err(StoreError::TooLarge {
            what,
            digest: digest.clone(),
            size,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(StoreError::io("reading", path))?;
    Ok(bytes)
}
