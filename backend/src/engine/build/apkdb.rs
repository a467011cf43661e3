//! The apk database merge of several init images (reference B.4): each
//! init image's `lib/apk/db/installed` is captured as it streams past, and
//! after the last init image, if more than one of them had a database, one
//! more `lib/apk/db/installed` holds all of them in order, each followed by
//! two newlines, so `apk` sees every package of the assembled system.

use std::io::{self, Read};

use crate::engine::flatten::{LOCATION_RECORD, SOURCE_RECORD};
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};

/// Where an init image keeps its apk database.
pub const APK_DB: &str = "lib/apk/db/installed";

/// Passes entries through to `inner` (or drops them, with none) and keeps
/// the data of the last `lib/apk/db/installed` file.
pub struct Capture<'a> {
    inner: Option<&'a mut dyn Sink>,
    pub db: Option<Vec<u8>>,
}

impl<'a> Capture<'a> {
    pub fn new(inner: &'a mut dyn Sink) -> Self {
        Capture {
            inner: Some(inner),
            db: None,
        }
    }

    /// Captures without writing anything.
    pub fn only() -> Self {
        Capture {
            inner: None,
            db: None,
        }
    }
}

impl Sink for Capture<'_> {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        if entry.path == APK_DB && entry.kind == Kind::File {
            let mut bytes = Vec::new();
            data.take(entry.size).read_to_end(&mut bytes)?;
            let result = match self.inner.as_mut() {
                Some(inner) => inner.add(entry, &mut bytes.as_slice()),
                None => Ok(()),
            };
            self.db = Some(bytes);
            return result;
        }
        match self.inner.as_mut() {
            Some(inner) => inner.add(entry, data),
            None => Ok(()),
        }
    }
}

/// The merged database entry and its data, or `None` unless more than one
/// database was captured.
pub fn merged(dbs: &[Vec<u8>]) -> Option<(Entry, Vec<u8>)> {
    if dbs.len() < 2 {
        return None;
    }
    let mut data = Vec::with_capacity(dbs.iter().map(|d| d.len() + 2).sum());
    for db in dbs {
        data.extend_from_slice(db);
        data.extend_from_slice(b"\n\n");
    }
    // linuxkit leaves the mtime at Go's zero time; kiln uses the constant
    // of every other entry the builder creates (docs/compat.md).
    let mut e = Entry::new(APK_DB, Kind::File, 0o644, LINUXKIT_EPOCH);
    e.size = data.len() as u64;
    e.provenance
        .insert(SOURCE_RECORD.into(), "LINUXKIT.apkinit".into());
    e.provenance.insert(LOCATION_RECORD.into(), "init".into());
    Some((e, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_database_is_not_merged() {
        assert!(merged(&[b"P:a\n".to_vec()]).is_none());
    }

    #[test]
    fn databases_are_joined_in_order_with_two_newlines_each() {
        let (e, data) = merged(&[b"P:a\n".to_vec(), b"P:b\n".to_vec()]).unwrap();
        assert_eq!(data, b"P:a\n\n\nP:b\n\n\n");
        assert_eq!(e.size, data.len() as u64);
        assert_eq!(e.mode, 0o644);
        assert_eq!(e.provenance[SOURCE_RECORD], "LINUXKIT.apkinit");
        assert_eq!(e.provenance[LOCATION_RECORD], "init");
    }
}
