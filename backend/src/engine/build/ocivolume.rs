//! `format: oci` volumes (reference B.5): the volume's `lower` directory
//! holds an OCI image layout of the image's index, limited to the volume's
//! `platforms` (every platform when none are listed): for each selected
//! image manifest its config, its layers (compressed, as stored) and the
//! manifest itself, then the original index blob (unfiltered, so it still
//! names the platforms left out), then `index.json` pointing at that index
//! under the full reference. A single-manifest image has no index to copy
//! and is refused, as linuxkit refuses it.

use std::io::{self, Read};

use kiln_shared::reference::expand;

use crate::engine::flatten::{LOCATION_RECORD, SOURCE_RECORD};
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};
use crate::engine::store::{
    Descriptor, ManifestKind, Platform, ResolvedImage, RootIndex, Store, StoreError,
    ANNOTATION_REF_NAME, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

#[derive(Debug, thiserror::Error)]
pub enum OciVolumeError {
    #[error("no image index found for {0}: a `format: oci` volume needs a multi-platform image")]
    NotAnIndex(String),
    #[error("`{0}` is not a platform (expected os/arch[/variant])")]
    BadPlatform(String),
    #[error("{image}: {error}")]
    Store { image: String, error: StoreError },
    #[error("{image}: writing its layout: {error}")]
    Write { image: String, error: io::Error },
    #[error("{image}: no manifest in the index matches the volume's platforms ({wanted})")]
    NoPlatform { image: String, wanted: String },
}

/// The blobs of the layout, in the order they are written, each once.
#[derive(Debug)]
pub struct Selection {
    pub index: Descriptor,
    pub blobs: Vec<Descriptor>,
}

/// The volume's platforms, parsed; empty means all.
pub fn platforms(wanted: &[String]) -> Result<Vec<Platform>, OciVolumeError> {
    wanted
        .iter()
        .map(|p| Platform::parse(p).ok_or_else(|| OciVolumeError::BadPlatform(p.clone())))
        .collect()
}

/// Works out the layout's blobs from the manifests in the store.
pub fn select(
    store: &Store,
    image: &str,
    resolved: &ResolvedImage,
    wanted: &[Platform],
) -> Result<Selection, OciVolumeError> {
    let store_err = |error| OciVolumeError::Store {
        image: expand(image),
        error,
    };
    let root = &resolved.root;
    let doc = store.read_manifest(root).map_err(store_err)?;
    if doc.kind(&root.media_type) != Some(ManifestKind::Index) {
        return Err(OciVolumeError::NotAnIndex(expand(image)));
    }
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut add = |d: &Descriptor| {
        if !blobs.iter().any(|b| b.digest == d.digest) {
            blobs.push(d.clone());
        }
    };
    let mut matched = false;
    for m in &doc.manifests {
        if m.media_type != OCI_MANIFEST && m.media_type != DOCKER_MANIFEST {
            continue;
        }
        let chosen = wanted.is_empty()
            || m.platform
                .as_ref()
                .is_some_and(|mp| wanted.iter().any(|w| w.matches(mp)));
        if !chosen {
            continue;
        }
        matched = true;
        let manifest = store.read_manifest(m).map_err(store_err)?;
        if let Some(config) = &manifest.config {
            add(config);
        }
        manifest.layers.iter().for_each(&mut add);
        add(m);
    }
    if !matched {
        let wanted: Vec<String> = wanted.iter().map(|p| p.to_string()).collect();
        return Err(OciVolumeError::NoPlatform {
            image: expand(image),
            wanted: wanted.join(", "),
        });
    }
    Ok(Selection {
        index: root.clone(),
        blobs,
    })
}

/// Whether every blob of the layout is in the store (else it is pulled).
pub fn complete(store: &Store, image: &str, resolved: &ResolvedImage, wanted: &[Platform]) -> bool {
    select(store, image, resolved, wanted).is_ok_and(|s| {
        s.blobs
            .iter()
            .all(|b| store.has_blob(&b.digest, Some(b.size)))
    })
}

/// Writes the layout under `lower`.
pub fn write(
    store: &Store,
    image: &str,
    selection: &Selection,
    lower: &str,
    location: &str,
    sink: &mut dyn Sink,
) -> Result<(), OciVolumeError> {
    let source = expand(image);
    let entry = |path: String, kind: Kind, mode: u32, size: u64| {
        let mut e = Entry::new(path, kind, mode, LINUXKIT_EPOCH);
        e.size = size;
        e.provenance.insert(SOURCE_RECORD.into(), source.clone());
        e.provenance.insert(LOCATION_RECORD.into(), location.into());
        e
    };
    let write_err = |error: io::Error| OciVolumeError::Write {
        image: source.clone(),
        error,
    };
    let layout = br#"{"imageLayoutVersion": "1.0.0"}"#;
    let e = entry(
        format!("{lower}/oci-layout"),
        Kind::File,
        0o644,
        layout.len() as u64,
    );
    sink.add(&e, &mut &layout[..]).map_err(write_err)?;
    for dir in ["blobs", "blobs/sha256"] {
        let e = entry(format!("{lower}/{dir}"), Kind::Dir, 0o755, 0);
        sink.add(&e, &mut io::empty()).map_err(write_err)?;
    }
    for blob in selection.blobs.iter().chain([&selection.index]) {
        let file = store
            .open_blob(&blob.digest)
            .map_err(|error| OciVolumeError::Store {
                image: source.clone(),
                error,
            })?;
        let e = entry(
            format!("{lower}/blobs/sha256/{}", blob.digest.hex()),
            Kind::File,
            0o644,
            blob.size,
        );
        sink.add(&e, &mut file.take(blob.size)).map_err(write_err)?;
    }
    let mut top = Descriptor::new(
        OCI_INDEX,
        selection.index.digest.clone(),
        selection.index.size,
    );
    top.annotations
        .insert(ANNOTATION_REF_NAME.into(), source.clone());
    let index = RootIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: vec![top],
        extra: Default::default(),
    };
    let json = serde_json::to_vec(&index).map_err(|e| write_err(io::Error::other(e)))?;
    let e = entry(
        format!("{lower}/index.json"),
        Kind::File,
        0o644,
        json.len() as u64,
    );
    sink.add(&e, &mut json.as_slice()).map_err(write_err)
}
