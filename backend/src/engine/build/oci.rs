//! The `oci` format: an OCI image layout, as a tar, holding the root
//! filesystem as one uncompressed layer.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::output;
use super::plan::Section;
use super::rootfs::Inputs;
use super::BuildError;
use crate::engine::formats::tar::TarSink;
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};
use crate::engine::store::Platform;

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Sha256,
    pub len: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn write(
    inputs: &Inputs<'_>,
    sections: &[Section],
    platform: &Platform,
    path: &Path,
) -> Result<(), BuildError> {
    let io_err = |error| BuildError::Io {
        path: path.to_owned(),
        error,
    };
    let layer_tmp = path.with_extension("layer-tmp");
    let file = File::create(&layer_tmp).map_err(io_err)?;
    let mut layer = output::write_tar(
        inputs,
        sections,
        false,
        HashingWriter::new(BufWriter::new(file)),
    )?;
    layer.flush().map_err(io_err)?;
    let layer_digest = format!("sha256:{}", hex::encode(layer.hasher.finalize_reset()));
    let layer_len = layer.len;
    drop(layer);

    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": platform.architecture,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap_or_default();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_len,
        }],
    }))
    .unwrap_or_default();
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": platform.architecture, "os": "linux"},
        }],
    }))
    .unwrap_or_default();

    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let result = (|| -> io::Result<()> {
        let mut sink = TarSink::new(BufWriter::new(File::create(path)?));
        let bytes = |sink: &mut TarSink<_>, name: &str, data: &[u8]| {
            let mut e = Entry::new(name, Kind::File, 0o644, LINUXKIT_EPOCH);
            e.size = data.len() as u64;
            sink.add(&e, &mut &data[..])
        };
        bytes(
            &mut sink,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        bytes(&mut sink, "index.json", &index)?;
        for dir in ["blobs", "blobs/sha256"] {
            let e = Entry::new(dir, Kind::Dir, 0o755, LINUXKIT_EPOCH);
            sink.add(&e, &mut io::empty())?;
        }
        bytes(&mut sink, &blob(&config_digest), &config)?;
        bytes(&mut sink, &blob(&manifest_digest), &manifest)?;
        let mut e = Entry::new(blob(&layer_digest), Kind::File, 0o644, LINUXKIT_EPOCH);
        e.size = layer_len;
        sink.add(&e, &mut File::open(&layer_tmp)?)?;
        sink.finish()?.flush()
    })();
    let _ = fs::remove_file(&layer_tmp);
    result.map_err(io_err)
}
