//! File data is streamed: flattening a layer with a 1 GiB file (plain) and
//! a 96 MiB file (gzip, compressed on the fly) keeps the peak memory of
//! the process far below the file sizes. A test binary of its own, so no
//! other test shares the process's peak-memory counter.

use std::io::{self, Read};

use kiln_backend::engine::flatten::{flatten, FlattenOptions, LayerSource, Role};
use kiln_backend::engine::fs::{Entry, Sink};

/// A tar stream with one file of `size` zero bytes, generated as it is read.
struct Generated {
    head: Vec<u8>,
    pos: u64,
    size: u64,
    tail: u64,
}

impl Generated {
    fn new(size: u64) -> Generated {
        let mut h = tar::Header::new_ustar();
        h.set_path("big/zeros").unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        let pad = (512 - size % 512) % 512;
        Generated {
            head: h.as_bytes().to_vec(),
            pos: 0,
            size,
            tail: pad + 1024,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let head = self.head.len() as u64;
        let total = head + self.size + self.tail;
        if self.pos >= total || buf.is_empty() {
            return Ok(0);
        }
        let n = if self.pos < head {
            let start = self.pos as usize;
            let n = buf.len().min(self.head.len() - start);
            buf[..n].copy_from_slice(&self.head[start..start + n]);
            n
        } else {
            let n = buf.len().min((total - self.pos) as usize);
            buf[..n].fill(0);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Default)]
struct Counting {
    bytes: u64,
    entries: u64,
}

impl Sink for Counting {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0;
        loop {
            let k = data.read(&mut buf)?;
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        assert_eq!(n, entry.size);
        self.bytes += n;
        self.entries += 1;
        Ok(())
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn file_data_is_streamed_not_buffered() {
    const PLAIN: u64 = 1 << 30;
    const GZIP: u64 = 96 << 20;
    let before = peak_rss_kib();
    let layers = [
        LayerSource::new("sha256:plain", || {
            Ok(Box::new(Generated::new(PLAIN)) as Box<dyn Read>)
        }),
        LayerSource::new("sha256:gzip", || {
            let enc =
                flate2::read::GzEncoder::new(Generated::new(GZIP), flate2::Compression::fast());
            Ok(Box::new(enc) as Box<dyn Read>)
        }),
    ];
    let mut sink = Counting::default();
    let stats = flatten(
        &layers,
        &FlattenOptions::default(),
        Role::Container,
        "",
        ("example.org/big:1", "services[0]"),
        &mut sink,
    )
    .unwrap();
    // The upper (gzip) layer's big/zeros wins; the plain one is hidden but
    // still read through.
    assert_eq!(stats.layers[1].uncompressed_bytes, PLAIN + 512 + 1024);
    assert!(sink.bytes >= GZIP);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak RSS grew by {grown} KiB");
}
