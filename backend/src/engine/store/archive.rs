//! Importing and exporting image archives: OCI-layout tars (`docker buildx
//! --output type=oci`, `skopeo copy oci-archive:`, Docker ≥ 25 `docker save`)
//! and legacy `docker save` tars (`manifest.json` + `<id>/layer.tar`).
//!
//! Imports are streamed: every blob goes straight from the tar entry into a
//! verified [`BlobWriter`](super::BlobWriter); only `index.json` and
//! `manifest.json` are held in memory, with a size limit.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::blob::Expected;
use super::graph::Graph;
use super::{
    Descriptor, Digest, Hasher, Lease, ManifestDoc, RootIndex, Store, StoreError,
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MAX_MANIFEST_BYTES, OCI_CONFIG, OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP, OCI_MANIFEST,
};
use crate::engine::reference::Reference;

/// Which kind of archive an image came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar.
    Oci,
    /// A pre-Docker-25 `docker save` tar.
    DockerLegacy,
}

/// One image recorded by [`Store::import`].
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedImage {
    /// The name it was recorded under; `None` if the archive gave none (the
    /// blobs are then stored but unnamed, so `clean` will remove them).
    pub name: Option<String>,
    /// Its root descriptor.
    pub descriptor: Descriptor,
    /// The archive's format.
    pub format: ArchiveFormat,
}

/// An entry of a legacy `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// A regular file of the archive that was stored as a blob.
#[derive(Clone)]
struct Staged {
    digest: Digest,
    size: u64,
    newly_written: bool,
}

impl Store {
    /// Imports an OCI-layout tar or a `docker save` tar. Images are named
    /// after their `io.containerd.image.name` annotation (OCI) or `RepoTags`
    /// (docker), expanded to full references; `name`, if given, is recorded
    /// too when the archive holds exactly one image.
    pub fn import(
        &self,
        reader: impl Read,
        name: Option<&Reference>,
    ) -> Result<Vec<ImportedImage>, StoreError> {
        let lease = self.lease()?;
        let mut archive = tar::Archive::new(reader);
        let mut index_json: Option<Vec<u8>> = None;
        let mut manifest_json: Option<Vec<u8>> = None;
        let mut staged: BTreeMap<PathBuf, Staged> = BTreeMap::new();
        let mut links: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        let entries = archive
            .entries()
            .map_err(|e| StoreError::Archive(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| StoreError::Archive(format!("reading tar entry: {e}")))?;
            let raw_path = entry
                .path()
                .map_err(|e| StoreError::Archive(format!("bad path in tar: {e}")))?
                .into_owned();
            let Some(path) = normalize(&raw_path) else {
                return Err(StoreError::Archive(format!(
                    "unsafe path {} in archive",
                    raw_path.display()
                )));
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                if let Ok(Some(target)) = entry.link_name() {
                    let base = if kind.is_symlink() {
                        path.parent().map(Path::to_path_buf).unwrap_or_default()
                    } else {
                        PathBuf::new()
                    };
                    if let Some(t) = normalize(&base.join(target)) {
                        links.insert(path, t);
                    }
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let path_str = path.to_string_lossy().into_owned();
            match path_str.as_str() {
                "index.json" => index_json = Some(read_small(&mut entry, &path)?),
                "manifest.json" => manifest_json = Some(read_small(&mut entry, &path)?),
                "oci-layout" | "repositories" => {}
                _ => {
                    let size = entry.size();
                    let expected = match path_str.strip_prefix("blobs/sha256/") {
                        Some(hex) => Some(Digest::from_hex(hex).map_err(|_| {
                            StoreError::Archive(format!(
                                "{path_str} is not named by a sha256 digest"
                            ))
                        })?),
                        None => None,
                    };
                    if let Some(digest) = &expected {
                        if self.has_blob(digest, Some(size)) {
                            staged.insert(
                                path,
                                Staged {
                                    digest: digest.clone(),
                                    size,
                                    newly_written: false,
                                },
                            );
                            continue;
                        }
                    }
                    let mut writer = lease.blob_writer(Expected {
                        digest: expected,
                        size: Some(size),
                    })?;
                    writer.copy_from(&mut entry, &path)?;
                    let (digest, size) = writer.commit()?;
                    staged.insert(
                        path,
                        Staged {
                            digest,
                            size,
                            newly_written: true,
                        },
                    );
                }
            }
        }

        let (imported, used) = if let Some(bytes) = index_json {
            (self.import_oci(&bytes, name)?, None)
        } else if let Some(bytes) = manifest_json {
            let (imported, used) = self.import_docker(&lease, &bytes, &staged, &links, name)?;
            (imported, Some(used))
        } else {
            return Err(StoreError::Archive(
                "neither index.json nor manifest.json found; not an image archive".to_owned(),
            ));
        };
        // Legacy archives carry per-layer `json`/`VERSION` files that were
        // stored on the way; drop the ones that are not part of any image.
        if let Some(used) = used {
            for s in staged.values() {
                if s.newly_written && !used.contains(&s.digest) {
                    let _ = std::fs::remove_file(self.blob_path(&s.digest));
                }
            }
        }
        Ok(imported)
    }

    fn import_oci(
        &self,
        bytes: &[u8],
        name: Option<&Reference>,
    ) -> Result<Vec<ImportedImage>, StoreError> {
        let index: RootIndex =
            serde_json::from_slice(bytes).map_err(|source| StoreError::Json {
                what: "index.json",
                location: "in archive".to_owned(),
                source,
            })?;
        let single = index.manifests.len() == 1;
        let mut out = Vec::new();
        for mut desc in index.manifests {
            if !self.has_blob(&desc.digest, Some(desc.size)) {
                return Err(StoreError::Archive(format!(
                    "index.json names {} ({} bytes) but the archive does not contain it",
                    desc.digest, desc.size
                )));
            }
            let from_annotation = desc
                .annotations
                .get(ANNOTATION_CONTAINERD_NAME)
                .or_else(|| {
                    desc.annotations
                        .get(ANNOTATION_REF_NAME)
                        .filter(|n| n.contains('/'))
                })
                .and_then(|n| Reference::parse(n).ok())
                .map(|r| r.to_string());
            desc.annotations.remove(ANNOTATION_CONTAINERD_NAME);
            desc.annotations.remove(ANNOTATION_REF_NAME);
            let mut names: Vec<String> = from_annotation.into_iter().collect();
            if let (Some(n), true) = (name, single) {
                names.push(n.to_string());
            }
            names.dedup();
            for n in &names {
                self.set_name(n, desc.clone())?;
            }
            push_imported(&mut out, names, desc, ArchiveFormat::Oci);
        }
        Ok(out)
    }

    fn import_docker(
        &self,
        lease: &Lease,
        bytes: &[u8],
        staged: &BTreeMap<PathBuf, Staged>,
        links: &BTreeMap<PathBuf, PathBuf>,
        name: Option<&Reference>,
    ) -> Result<(Vec<ImportedImage>, BTreeSet<Digest>), StoreError> {
        let entries: Vec<DockerSaveEntry> =
            serde_json::from_slice(bytes).map_err(|source| StoreError::Json {
                what: "manifest.json",
                location: "in archive".to_owned(),
                source,
            })?;
        let lookup = |p: &str| -> Result<Staged, StoreError> {
            let mut path = normalize(Path::new(p))
                .ok_or_else(|| StoreError::Archive(format!("unsafe path {p} in manifest.json")))?;
            for _ in 0..16 {
                match links.get(&path) {
                    Some(target) => path = target.clone(),
                    None => break,
                }
            }
            staged.get(&path).cloned().ok_or_else(|| {
                StoreError::Archive(format!(
                    "manifest.json names {p}, which is not in the archive"
                ))
            })
        };
        let single = entries.len() == 1;
        let mut used = BTreeSet::new();
        let mut out = Vec::new();
        for entry in entries {
            let config = lookup(&entry.config)?;
            used.insert(config.digest.clone());
            let mut layers = Vec::new();
            for l in &entry.layers {
                let s = lookup(l)?;
                used.insert(s.digest.clone());
                let media_type = if self.is_gzip(&s.digest)? {
                    OCI_LAYER_TAR_GZIP
                } else {
                    OCI_LAYER_TAR
                };
                layers.push(Descriptor::new(media_type, s.digest, s.size));
            }
            let manifest = ManifestDoc {
                schema_version: Some(2),
                media_type: Some(OCI_MANIFEST.to_owned()),
                config: Some(Descriptor::new(OCI_CONFIG, config.digest, config.size)),
                layers,
                ..ManifestDoc::default()
            };
            let manifest_bytes =
                serde_json::to_vec(&manifest).map_err(|source| StoreError::Json {
                    what: "manifest",
                    location: "generated".to_owned(),
                    source,
                })?;
            let digest = lease.put_bytes(&manifest_bytes)?;
            used.insert(digest.clone());
            let desc = Descriptor::new(OCI_MANIFEST, digest, manifest_bytes.len() as u64);
            let mut names: Vec<String> = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .map(|r| r.to_string())
                .collect();
            if let (Some(n), true) = (name, single) {
                names.push(n.to_string());
            }
            names.dedup();
            for n in &names {
                self.set_name(n, desc.clone())?;
            }
            push_imported(&mut out, names, desc, ArchiveFormat::DockerLegacy);
        }
        Ok((out, used))
    }

    fn is_gzip(&self, digest: &Digest) -> Result<bool, StoreError> {
        let mut magic = [0u8; 2];
        let mut f = self.open_blob(digest)?;
        let n = f
            .read(&mut magic)
            .map_err(StoreError::io("reading", self.blob_path(digest)))?;
        Ok(n == 2 && magic == [0x1f, 0x8b])
    }

    /// Writes the image `reference` as an OCI-layout tar: `oci-layout`,
    /// `index.json` (annotated with `io.containerd.image.name` and, for tagged
    /// references, `org.opencontainers.image.ref.name` = the tag, as BuildKit
    /// does) and every blob of it that is present. Entries are sorted and
    /// carry fixed metadata, so the same image exports to the same bytes.
    pub fn export(
        &self,
        reference: &Reference,
        writer: impl Write,
    ) -> Result<Descriptor, StoreError> {
        let _lease = self.lease()?;
        let index = self.index()?;
        let (_, root) = self
            .find_root(&index, reference)
            .ok_or_else(|| StoreError::NotFound {
                reference: reference.to_string(),
            })?;
        let graph = Graph::walk(self, std::slice::from_ref(&root));
        if let Some(gap) = graph.gaps.first() {
            return Err(StoreError::BlobMissing {
                digest: gap.digest.clone(),
                role: gap.role,
            });
        }
        let mut desc = root.clone();
        desc.annotations.clear();
        desc.annotations
            .insert(ANNOTATION_CONTAINERD_NAME.to_owned(), reference.to_string());
        if let Some(tag) = reference.tag() {
            desc.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        }
        let out_index = RootIndex {
            manifests: vec![desc],
            ..RootIndex::default()
        };
        let index_bytes = serde_json::to_vec(&out_index).map_err(|source| StoreError::Json {
            what: "index.json",
            location: "export".to_owned(),
            source,
        })?;

        let out_err = |e: std::io::Error| StoreError::io("writing archive", "<output>")(e);
        let mut tar = tar::Builder::new(writer);
        append_dir(&mut tar, "blobs/").map_err(out_err)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(out_err)?;
        for digest in graph.present() {
            let path = self.blob_path(&digest);
            let file = File::open(&path).map_err(StoreError::io("opening", &path))?;
            let size = file
                .metadata()
                .map_err(StoreError::io("reading metadata of", &path))?
                .len();
            let mut reader = HashingReader {
                inner: file,
                hasher: Hasher::new(),
            };
            let mut header = file_header(size);
            tar.append_data(
                &mut header,
                format!("blobs/sha256/{}", digest.hex()),
                &mut reader,
            )
            .map_err(out_err)?;
            let actual = reader.hasher.finish();
            if actual != digest {
                return Err(StoreError::DigestMismatch {
                    expected: digest,
                    actual,
                });
            }
        }
        let mut header = file_header(index_bytes.len() as u64);
        tar.append_data(&mut header, "index.json", index_bytes.as_slice())
            .map_err(out_err)?;
        let layout = super::OCI_LAYOUT_CONTENT;
        let mut header = file_header(layout.len() as u64);
        tar.append_data(&mut header, "oci-layout", layout)
            .map_err(out_err)?;
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(out_err)?;
        Ok(root)
    }
}

fn push_imported(
    out: &mut Vec<ImportedImage>,
    names: Vec<String>,
    descriptor: Descriptor,
    format: ArchiveFormat,
) {
    if names.is_empty() {
        out.push(ImportedImage {
            name: None,
            descriptor,
            format,
        });
        return;
    }
    for n in names {
        out.push(ImportedImage {
            name: Some(n),
            descriptor: descriptor.clone(),
            format,
        });
    }
}

/// Strips `./`, resolves `..` inside the archive, and rejects paths that
/// escape it or are absolute.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn read_small(entry: &mut impl Read, path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(StoreError::io("reading archive entry", path))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(StoreError::Archive(format!(
            "{} is over the {MAX_MANIFEST_BYTES}-byte limit",
            path.display()
        )));
    }
    Ok(bytes)
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, path, std::io::empty())
}

struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
