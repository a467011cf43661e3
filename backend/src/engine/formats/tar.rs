//! The `tar` output: a PAX tar of the entry stream, as linuxkit writes it.
//!
//! Every header is fixed by the entry alone (no host user names, the entry's
//! own mtime), so the same entries always give the same bytes.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

use crate::engine::fs::{Entry, Kind, Sink};

/// Longest name a ustar header holds without a PAX `path` record.
const USTAR_NAME: usize = 100;

pub struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarSink<W> {
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        TarSink { builder }
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let mut header = Header::new_ustar();
        let (kind, link) = match &entry.kind {
            Kind::File => (EntryType::Regular, None),
            Kind::Dir => (EntryType::Directory, None),
            Kind::Symlink { target } => (EntryType::Symlink, Some(target.as_str())),
            Kind::Hardlink { target } => (EntryType::Link, Some(target.as_str())),
            Kind::Char { .. } => (EntryType::Char, None),
            Kind::Block { .. } => (EntryType::Block, None),
            Kind::Fifo => (EntryType::Fifo, None),
        };
        header.set_entry_type(kind);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid.into());
        header.set_gid(entry.gid.into());
        header.set_mtime(entry.mtime);
        header.set_size(if kind == EntryType::Regular {
            entry.size
        } else {
            0
        });
        if let Kind::Char { major, minor } | Kind::Block { major, minor } = entry.kind {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }

        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        for (key, value) in &entry.provenance {
            pax.push((key.clone(), value.clone().into_bytes()));
        }
        for (name, value) in &entry.xattrs {
            pax.push((format!("SCHILY.xattr.{name}"), value.clone()));
        }
        let path = &entry.path;
        if path.len() > USTAR_NAME || header.set_path(path).is_err() {
            pax.push(("path".to_owned(), path.as_bytes().to_vec()));
            header.set_path(truncate(path, USTAR_NAME))?;
        }
        if let Some(link) = link {
            if link.len() > USTAR_NAME || header.set_link_name(link).is_err() {
                pax.push(("linkpath".to_owned(), link.as_bytes().to_vec()));
                header.set_link_name(truncate(link, USTAR_NAME))?;
            }
        }
        pax.sort();
        self.builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        header.set_cksum();
        if kind == EntryType::Regular {
            self.builder.append(&header, data.take(entry.size))
        } else {
            self.builder.append(&header, io::empty())
        }
    }
}

/// The longest prefix of `s` that fits `max` bytes on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fs::LINUXKIT_EPOCH;

    fn entries() -> Vec<(Entry, Vec<u8>)> {
        let mut file = Entry::new("etc/motd", Kind::File, 0o644, LINUXKIT_EPOCH);
        file.size = 3;
        file.provenance
            .insert("LINUXKIT.source".into(), "linuxkit.files".into());
        let long = format!("a/{}", "b".repeat(150));
        vec![
            (Entry::new("etc", Kind::Dir, 0o755, LINUXKIT_EPOCH), vec![]),
            (file, b"hi\n".to_vec()),
            (
                Entry::new(
                    "etc/mtab",
                    Kind::Symlink {
                        target: "/proc/mounts".into(),
                    },
                    0o755,
                    LINUXKIT_EPOCH,
                ),
                vec![],
            ),
            (Entry::new(long, Kind::Dir, 0o700, 0), vec![]),
        ]
    }

    fn write() -> Vec<u8> {
        let mut sink = TarSink::new(Vec::new());
        for (entry, data) in entries() {
            sink.add(&entry, &mut data.as_slice()).unwrap();
        }
        sink.finish().unwrap()
    }

    #[test]
    fn round_trips_through_a_tar_reader() {
        let bytes = write();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let source = e
                .pax_extensions()
                .unwrap()
                .and_then(|mut p| p.find(|x| x.as_ref().unwrap().key() == Ok("LINUXKIT.source")))
                .map(|x| x.unwrap().value().unwrap().to_owned());
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            seen.push((path, e.header().mtime().unwrap(), body, source));
        }
        assert_eq!(seen[1].0, "etc/motd");
        assert_eq!(seen[1].1, LINUXKIT_EPOCH);
        assert_eq!(seen[1].2, "hi\n");
        assert_eq!(seen[1].3.as_deref(), Some("linuxkit.files"));
        assert_eq!(seen[3].0.len(), 152, "long names survive through PAX");
    }

    #[test]
    fn same_entries_give_same_bytes() {
        assert_eq!(write(), write());
    }
}
