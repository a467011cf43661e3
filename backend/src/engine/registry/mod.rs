//! Pulling images from OCI registries into the [store](crate::engine::store).
//!
//! [`pull`] resolves each reference (tag → digest, index → platform
//! manifests), then downloads the missing blobs of all images together with
//! bounded concurrency, streaming each into a verified temp file, and finally
//! records the manifests and names. Registries are reached with oci-client
//! (authentication, blob streams) and reqwest (size-limited manifest reads);
//! plain HTTP is used only for loopback hosts, configured insecure
//! registries and `http://` mirrors.

mod auth;
mod config;
mod credentials;
mod error;
mod mirror;
mod select;
mod session;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;

pub use config::{is_loopback, RegistryConfig};
pub use credentials::{docker_config_path, Credential, Credentials, CredentialsError};
pub use error::PullError;
pub use mirror::{Mirror, MirrorError, Mirrors};
pub use select::PlatformSelection;

use crate::engine::reference::Reference;
use crate::engine::store::{
    Descriptor, Digest, Lease, ManifestDoc, ManifestKind, Platform, ResolvedImage, Store,
    StoreError,
};
use select::{select, Child};
use session::{Fetched, Session};

/// An image now in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct PulledImage {
    /// The name it is stored under (`:latest` added if it had no tag or digest).
    pub reference: Reference,
    /// Its root descriptor (index or image manifest) as recorded in `index.json`.
    pub root: Descriptor,
    /// For an index: the platform manifests stored.
    pub manifests: Vec<Descriptor>,
    /// Blobs downloaded for this image (blobs shared with another image in
    /// the same call count once, for the first).
    pub blobs_downloaded: usize,
    /// Bytes downloaded for those blobs.
    pub bytes_downloaded: u64,
}

/// What one image needs, worked out from its manifests.
struct Plan {
    reference: Reference,
    session: Arc<Session>,
    root: Descriptor,
    root_bytes: Bytes,
    children: Vec<(Descriptor, Bytes)>,
    platform_manifests: Vec<Descriptor>,
    blobs: Vec<Descriptor>,
}

/// Pulls `references` for `platforms` into `store`. Always asks the
/// registry for the manifests; blobs already in the store are not
/// downloaded again. Every image that can be pulled is stored even if others
/// fail; the error then lists each failure.
pub async fn pull(
    references: &[Reference],
    platforms: &PlatformSelection,
    store: &Store,
    config: &RegistryConfig,
) -> Result<Vec<PulledImage>, PullError> {
    let lease = blocking(store.root().display().to_string(), {
        let store = store.clone();
        move || store.lease()
    })
    .await?;
    let http =
        session::http_client(config).map_err(|message| PullError::InvalidConfig { message })?;
    let mut targets: Vec<Reference> = Vec::new();
    for r in references {
        let r = r.with_default_tag();
        if !targets.contains(&r) {
            targets.push(r);
        }
    }

    let mut repos: BTreeMap<(String, String), &Reference> = BTreeMap::new();
    for r in &targets {
        repos
            .entry((r.registry().to_owned(), r.repository().to_owned()))
            .or_insert(r);
    }
    let sessions: BTreeMap<(String, String), Result<Arc<Session>, PullError>> =
        join_all(repos.into_iter().map(|(key, r)| {
            let http = http.clone();
            async move { (key, Session::connect(r, config, http).await) }
        }))
        .await
        .into_iter()
        .collect();

    let permits = Arc::new(Semaphore::new(config.max_concurrent_downloads.max(1)));
    let planned = join_all(targets.iter().map(|r| {
        let key = (r.registry().to_owned(), r.repository().to_owned());
        let session = sessions.get(&key);
        let permits = permits.clone();
        async move {
            match session {
                Some(Ok(s)) => plan(r, s.clone(), platforms, &permits).await,
                Some(Err(e)) => Err(e.retarget(&r.to_string())),
                None => Err(PullError::Internal {
                    reference: r.to_string(),
                    message: "no registry session".to_owned(),
                }),
            }
        }
    }))
    .await;

    let mut errors = Vec::new();
    let mut plans = Vec::new();
    for p in planned {
        match p {
            Ok(p) => plans.push(p),
            Err(e) => errors.push(e),
        }
    }

    // One download per missing blob, attributed to the first image needing it.
    let mut jobs: BTreeMap<Digest, (Descriptor, usize)> = BTreeMap::new();
    for (i, p) in plans.iter().enumerate() {
        for b in &p.blobs {
            if !jobs.contains_key(&b.digest) && !store.has_blob(&b.digest, Some(b.size)) {
                jobs.insert(b.digest.clone(), (b.clone(), i));
            }
        }
    }
    let results: Vec<(usize, Digest, Result<u64, PullError>)> = stream::iter(jobs.into_values())
        .map(|(desc, i)| {
            let session = plans[i].session.clone();
            let image = plans[i].reference.to_string();
            let lease = lease.clone();
            async move {
                let r = session.fetch_blob(&image, &desc, &lease).await;
                (i, desc.digest, r)
            }
        })
        .buffer_unordered(config.max_concurrent_downloads.max(1))
        .collect()
        .await;

    let mut stats = vec![(0usize, 0u64); plans.len()];
    let mut failed: BTreeMap<Digest, PullError> = BTreeMap::new();
    for (i, digest, r) in results {
        match r {
            Ok(bytes) => {
                stats[i].0 += 1;
                stats[i].1 += bytes;
            }
            Err(e) => {
                failed.insert(digest, e);
            }
        }
    }
    let mut pulled = Vec::new();
    for (i, p) in plans.into_iter().enumerate() {
        let image = p.reference.to_string();
        let mut broken: Vec<&Digest> = p
            .blobs
            .iter()
            .map(|b| &b.digest)
            .filter(|d| failed.contains_key(*d))
            .collect();
        broken.dedup();
        if !broken.is_empty() {
            errors.extend(
                broken
                    .iter()
                    .filter_map(|d| failed.get(*d))
                    .map(|e| e.retarget(&image)),
            );
            continue;
        }
        match record(&lease, &p).await {
            Ok(()) => pulled.push(PulledImage {
                reference: p.reference,
                root: p.root,
                manifests: p.platform_manifests,
                blobs_downloaded: stats[i].0,
                bytes_downloaded: stats[i].1,
            }),
            Err(e) => errors.push(e),
        }
    }
    match PullError::combine(errors) {
        Some(e) => Err(e),
        None => Ok(pulled),
    }
}

/// What a reference points at in a registry, for one platform.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteImage {
    /// The reference asked about (`:latest` added if it had no tag or digest).
    pub reference: Reference,
    /// What the tag points at (index or image manifest).
    pub root: Descriptor,
    /// The image manifest for the platform (equal to `root` for a single
    /// image; its platform is not checked, as linuxkit does not).
    pub manifest: Descriptor,
}

/// Asks the registry what `reference` points at — tag → digest, and for an
/// index the first manifest matching `platform` — without storing anything.
pub async fn resolve_remote(
    reference: &Reference,
    platform: &Platform,
    config: &RegistryConfig,
) -> Result<RemoteImage, PullError> {
    let http =
        session::http_client(config).map_err(|message| PullError::InvalidConfig { message })?;
    let reference = reference.with_default_tag();
    let image = reference.to_string();
    let session = Session::connect(&reference, config, http).await?;
    let target = reference.manifest_selector();
    let top = session.fetch_manifest(&image, &target, None).await?;
    let doc = parse(&image, &target, &top)?;
    let root = Descriptor::new(
        top.media_type.clone(),
        top.digest.clone(),
        top.bytes.len() as u64,
    );
    let manifest = match doc.kind(&top.media_type) {
        Some(ManifestKind::Image) => root.clone(),
        Some(ManifestKind::Index) => select(&doc, &platform.clone().into())
            .map_err(|(missing, available)| PullError::PlatformNotFound {
                reference: image.clone(),
                digest: top.digest.clone(),
                wanted: missing.join(", "),
                available,
            })?
            .into_iter()
            .map(|c| c.descriptor)
            .find(|d| !d.is_platformless())
            .ok_or_else(|| PullError::Internal {
                reference: image.clone(),
                message: "platform selection returned no manifest".to_owned(),
            })?,
        None => {
            return Err(PullError::UnsupportedManifest {
                reference: image,
                target,
                media_type: top.media_type,
            })
        }
    };
    Ok(RemoteImage {
        reference,
        root,
        manifest,
    })
}

/// For builds: resolves `references` from the store, pulls only those not
/// fully present for `platform`, and resolves again.
pub async fn pull_missing(
    references: &[Reference],
    platform: &Platform,
    store: &Store,
    config: &RegistryConfig,
) -> Result<Vec<ResolvedImage>, PullError> {
    let missing: Vec<Reference> = {
        let store = store.clone();
        let refs = references.to_vec();
        let platform = platform.clone();
        blocking(store.root().display().to_string(), move || {
            Ok(refs
                .iter()
                .filter(|r| store.resolve(std::slice::from_ref(r), &platform).is_err())
                .cloned()
                .collect::<Vec<_>>())
        })
        .await?
    };
    if !missing.is_empty() {
        pull(&missing, &platform.clone().into(), store, config).await?;
    }
    let store = store.clone();
    let refs = references.to_vec();
    let platform = platform.clone();
    blocking(store.root().display().to_string(), move || {
        store.resolve(&refs, &platform)
    })
    .await
}

/// Fetches the manifests of one image and lists the blobs it needs.
async fn plan(
    reference: &Reference,
    session: Arc<Session>,
    platforms: &PlatformSelection,
    permits: &Semaphore,
) -> Result<Plan, PullError> {
    let image = reference.to_string();
    let target = reference.manifest_selector();
    let top = fetch(&session, permits, &image, &target, None).await?;
    let doc = parse(&image, &target, &top)?;
    let root = Descriptor::new(
        top.media_type.clone(),
        top.digest.clone(),
        top.bytes.len() as u64,
    );
    let mut plan = Plan {
        reference: reference.clone(),
        session: session.clone(),
        root,
        root_bytes: top.bytes.clone(),
        children: Vec::new(),
        platform_manifests: Vec::new(),
        blobs: Vec::new(),
    };
    match doc.kind(&top.media_type) {
        Some(ManifestKind::Image) => add_image_blobs(&mut plan.blobs, &image, &target, &doc, true)?,
        Some(ManifestKind::Index) => {
            let children = select(&doc, platforms).map_err(|(missing, available)| {
                PullError::PlatformNotFound {
                    reference: image.clone(),
                    digest: top.digest.clone(),
                    wanted: missing.join(", "),
                    available,
                }
            })?;
            let fetched = join_all(children.iter().map(|c: &Child| {
                let target = c.descriptor.digest.to_string();
                let session = &session;
                let image = &image;
                async move {
                    fetch(session, permits, image, &target, Some(&c.descriptor))
                        .await
                        .map(|f| (c, f))
                }
            }))
            .await;
            for f in fetched {
                let (child, manifest) = f?;
                let child_target = child.descriptor.digest.to_string();
                let child_doc = parse(&image, &child_target, &manifest)?;
                match child_doc.kind(&child.descriptor.media_type) {
                    Some(ManifestKind::Image) => add_image_blobs(
                        &mut plan.blobs,
                        &image,
                        &child_target,
                        &child_doc,
                        child.with_layers,
                    )?,
                    Some(ManifestKind::Index) => {}
                    None => {
                        return Err(PullError::UnsupportedManifest {
                            reference: image,
                            target: child_target,
                            media_type: manifest.media_type,
                        })
                    }
                }
                if !child.descriptor.is_platformless() {
                    plan.platform_manifests.push(child.descriptor.clone());
                }
                plan.children
                    .push((child.descriptor.clone(), manifest.bytes));
            }
        }
        None => {
            return Err(PullError::UnsupportedManifest {
                reference: image,
                target,
                media_type: top.media_type,
            })
        }
    }
    Ok(plan)
}

async fn fetch(
    session: &Session,
    permits: &Semaphore,
    image: &str,
    target: &str,
    expected: Option<&Descriptor>,
) -> Result<Fetched, PullError> {
    let _permit = permits.acquire().await.map_err(|e| PullError::Internal {
        reference: image.to_owned(),
        message: e.to_string(),
    })?;
    session.fetch_manifest(image, target, expected).await
}

fn parse(image: &str, target: &str, fetched: &Fetched) -> Result<ManifestDoc, PullError> {
    ManifestDoc::parse(&fetched.bytes).map_err(|e| PullError::InvalidManifest {
        reference: image.to_owned(),
        target: format!("{target} ({})", fetched.digest),
        message: e.to_string(),
    })
}

fn add_image_blobs(
    blobs: &mut Vec<Descriptor>,
    image: &str,
    target: &str,
    doc: &ManifestDoc,
    with_layers: bool,
) -> Result<(), PullError> {
    let config = doc
        .config
        .clone()
        .ok_or_else(|| PullError::InvalidManifest {
            reference: image.to_owned(),
            target: target.to_owned(),
            message: "image manifest without config".to_owned(),
        })?;
    blobs.push(config);
    if with_layers {
        blobs.extend(doc.layers.iter().cloned());
    }
    Ok(())
}

/// Writes the manifests (children first) and then the name.
async fn record(lease: &Lease, plan: &Plan) -> Result<(), PullError> {
    let lease = lease.clone();
    let children = plan.children.clone();
    let root = plan.root.clone();
    let root_bytes = plan.root_bytes.clone();
    let name = plan.reference.to_string();
    blocking(name.clone(), move || {
        for (desc, bytes) in &children {
            lease.put_descriptor_bytes(desc, bytes)?;
        }
        lease.put_descriptor_bytes(&root, &root_bytes)?;
        lease.store().set_name(&name, root)
    })
    .await
}

/// Runs blocking store work off the async threads, naming `what` in errors.
async fn blocking<T: Send + 'static>(
    what: String,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, PullError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(PullError::Store {
            reference: what,
            source: Arc::new(source),
        }),
        Err(e) => Err(PullError::Internal {
            reference: what,
            message: e.to_string(),
        }),
    }
}
