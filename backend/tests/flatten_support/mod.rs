//! Shared helpers for the flatten tests: a raw tar writer that produces
//! whatever bytes a test asks for (including what the `tar` crate refuses
//! to write), compression helpers, and a recording sink.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};

use kiln_backend::engine::flatten::{
    flatten, FlattenError, FlattenOptions, FlattenStats, LayerSource, Role,
};
use kiln_backend::engine::fs::{Entry, Kind, Sink};

/// One raw tar header's fields.
#[derive(Clone, Debug)]
pub struct H {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub major: u32,
    pub minor: u32,
}

impl H {
    pub fn new(name: impl AsRef<[u8]>, typeflag: u8) -> H {
        H {
            name: name.as_ref().to_vec(),
            typeflag,
            size: 0,
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: Vec::new(),
            major: 0,
            minor: 0,
        }
    }
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    assert!(s.len() <= width, "value {value} does not fit");
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}

/// A 512-byte ustar header with a correct checksum.
pub fn header(h: &H) -> [u8; 512] {
    let mut b = [0u8; 512];
    let name = &h.name[..h.name.len().min(100)];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime);
    b[156] = h.typeflag;
    let link = &h.link[..h.link.len().min(100)];
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[265..269].copy_from_slice(b"root");
    b[297..301].copy_from_slice(b"root");
    octal(&mut b[329..337], u64::from(h.major));
    octal(&mut b[337..345], u64::from(h.minor));
    fix_checksum(&mut b);
    b
}

/// Recomputes the checksum after a test edited header bytes.
pub fn fix_checksum(b: &mut [u8; 512]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

/// One PAX record, length-prefixed.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

/// Builds a tar stream block by block.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(512) {
            self.bytes.push(0);
        }
    }

    /// A header followed by `data` (padded). `h.size` is used as given.
    pub fn raw(&mut self, h: &H, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(&header(h));
        self.bytes.extend_from_slice(data);
        self.pad();
        self
    }

    /// A header whose size is the data length.
    pub fn entry(&mut self, mut h: H, data: &[u8]) -> &mut Self {
        h.size = data.len() as u64;
        self.raw(&h, data)
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(H::new(name, b'0'), data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(H::new(name, b'5'), b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = H::new(name, b'2');
        h.link = target.as_bytes().to_vec();
        h.mode = 0o777;
        self.entry(h, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = H::new(name, b'1');
        h.link = target.as_bytes().to_vec();
        self.entry(h, b"")
    }

    /// A PAX extended header with these records.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            data.extend_from_slice(&pax_record(k, v));
        }
        self.entry(H::new("PaxHeaders/x", b'x'), &data)
    }

    /// A GNU long-name (`L`) or long-link (`K`) header.
    pub fn gnu_long(&mut self, typeflag: u8, value: &[u8]) -> &mut Self {
        let mut data = value.to_vec();
        data.push(0);
        self.entry(H::new("././@LongLink", typeflag), &data)
    }

    /// The end-of-archive marker.
    pub fn finish(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        std::mem::take(&mut self.bytes)
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// What the sink saw for one entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub entry: Entry,
    pub data: Vec<u8>,
}

/// Records everything, checking the Sink contract (exact data length) and
/// the stream's safety invariants as entries arrive: names are clean and
/// relative, nothing is written below a path last written as a
/// non-directory (no write-through), hard links point at earlier
/// non-directories.
#[derive(Debug, Default)]
pub struct Recorder {
    pub seen: Vec<Seen>,
    kinds: HashMap<String, bool>,
}

impl Sink for Recorder {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)?;
        assert_eq!(
            buf.len() as u64,
            entry.size,
            "data length of {}",
            entry.path
        );
        if entry.kind != Kind::File {
            assert_eq!(entry.size, 0);
        }
        let p = &entry.path;
        assert!(
            !p.is_empty() && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
            "unclean path {p:?}"
        );
        for (i, _) in p.match_indices('/') {
            assert_ne!(
                self.kinds.get(&p[..i]),
                Some(&false),
                "{p:?} is written below the non-directory {:?}",
                &p[..i]
            );
        }
        if let Kind::Hardlink { target } = &entry.kind {
            assert_eq!(
                self.kinds.get(target),
                Some(&false),
                "hard link {p:?} -> {target:?}"
            );
        }
        self.kinds.insert(p.clone(), entry.kind == Kind::Dir);
        self.seen.push(Seen {
            entry: entry.clone(),
            data: buf,
        });
        Ok(())
    }
}

impl Recorder {
    pub fn paths(&self) -> Vec<&str> {
        self.seen.iter().map(|s| s.entry.path.as_str()).collect()
    }

    /// The last entry written for `path`.
    pub fn get(&self, path: &str) -> Option<&Seen> {
        self.seen.iter().rev().find(|s| s.entry.path == path)
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen.iter().filter(|s| s.entry.path == path).count()
    }
}

/// The image paths written, without the touch set appended at the end.
pub fn image_paths(r: &Recorder, stats: &FlattenStats) -> Vec<String> {
    let n = r.seen.len() - stats.touched as usize;
    r.seen[..n].iter().map(|s| s.entry.path.clone()).collect()
}

pub const IMAGE: &str = "docker.io/library/test:1";

/// Flattens in-memory layers (bottom first).
pub fn run_with(
    layers: &[Vec<u8>],
    opts: &FlattenOptions,
    role: Role,
    prefix: &str,
) -> Result<(Recorder, FlattenStats), FlattenError> {
    let sources: Vec<LayerSource<'_>> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerSource::from_bytes(format!("sha256:layer{i}"), l))
        .collect();
    let mut rec = Recorder::default();
    let stats = flatten(
        &sources,
        opts,
        role,
        prefix,
        (IMAGE, "services[0]"),
        &mut rec,
    )?;
    Ok((rec, stats))
}

/// Flattens as a container with default options and no prefix.
pub fn run(layers: &[Vec<u8>]) -> Result<(Recorder, FlattenStats), FlattenError> {
    run_with(layers, &FlattenOptions::default(), Role::Container, "")
}

/// Expects a rejection and returns it, checking the context it names.
pub fn reject(layers: &[Vec<u8>]) -> FlattenError {
    reject_with(layers, &FlattenOptions::default(), Role::Container)
}

pub fn reject_with(layers: &[Vec<u8>], opts: &FlattenOptions, role: Role) -> FlattenError {
    let err = match run_with(layers, opts, role, "containers/services/x/lower") {
        Ok((rec, _)) => panic!("accepted, wrote {:?}", rec.paths()),
        Err(e) => e,
    };
    assert_eq!(err.image, IMAGE);
    assert!(err
        .layer
        .as_deref()
        .unwrap_or("")
        .starts_with("sha256:layer"));
    let text = err.to_string();
    assert!(
        text.contains(IMAGE) && text.contains("sha256:layer"),
        "{text}"
    );
    err
}
