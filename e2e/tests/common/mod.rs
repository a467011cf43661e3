//! Helpers shared by the e2e test binaries: building the fixtures into a
//! temporary directory and reading files back out of OCI layouts.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use kiln_e2e::fixtures::{self, FixtureOptions, FixtureSet};
use tempfile::TempDir;

/// Fixtures built into a fresh temporary directory (removed on drop).
pub struct Built {
    pub set: FixtureSet,
    pub dir: TempDir,
}

/// Builds every fixture with options from the environment.
pub fn build() -> Built {
    let dir = tempfile::Builder::new()
        .prefix("kiln-e2e-fixtures-")
        .tempdir()
        .expect("temp dir");
    let opts = FixtureOptions::from_env(dir.path()).expect("fixture options");
    let set = fixtures::build_all(&opts).unwrap_or_else(|e| panic!("building fixtures: {e:#}"));
    Built { set, dir }
}

/// One tar entry as read back.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: tar::EntryType,
    pub mode: u32,
    pub mtime: u64,
    pub uid: u64,
    pub gid: u64,
    pub uname: Vec<u8>,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Reads a JSON blob of a layout.
pub fn json_blob(layout: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&blob(layout, digest)).expect("JSON blob")
}

/// Reads a blob of a layout.
pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex)).expect("blob")
}

/// The entries of a tar stream, in order, by name as stored.
pub fn tar_entries(tar: &[u8]) -> Vec<(String, Entry)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("tar entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header().clone();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("tar data");
        out.push((
            name,
            Entry {
                kind: header.entry_type(),
                mode: header.mode().expect("mode"),
                mtime: header.mtime().expect("mtime"),
                uid: header.uid().expect("uid"),
                gid: header.gid().expect("gid"),
                uname: header.username_bytes().unwrap_or_default().to_vec(),
                link,
                data,
            },
        ));
    }
    out
}

/// The entries of each layer of an image manifest, bottom layer first.
pub fn layers(layout: &Path, manifest_digest: &str) -> Vec<Vec<(String, Entry)>> {
    let manifest = json_blob(layout, manifest_digest);
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| {
            let gz = blob(layout, layer["digest"].as_str().expect("digest"));
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_end(&mut tar)
                .expect("gunzip");
            tar_entries(&tar)
        })
        .collect()
}

/// Layer entries of an image as a map (later layers win; no whiteout logic).
pub fn files(layout: &Path, manifest_digest: &str) -> BTreeMap<String, Entry> {
    layers(layout, manifest_digest)
        .into_iter()
        .flatten()
        .collect()
}
