//! Pulling a set of images into the store: connect once per repository,
//! plan every image, download the missing blobs of all of them together
//! with bounded concurrency, then record manifests and names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use super::plan::{plan, Plan};
use super::select::PlatformSelection;
use super::session::{self, Session};
use super::{PullError, RegistryConfig};
use crate::engine::reference::Reference;
use crate::engine::store::{Descriptor, Digest, Lease, Platform, ResolvedImage, Store, StoreError};

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
    let sessions = connect_all(&targets, config, &http).await;
    let (plans, mut errors) = plan_all(&targets, &sessions, platforms, config).await;
    let downloads = download_missing(&plans, store, &lease, config).await;

    let mut pulled = Vec::new();
    for (i, p) in plans.into_iter().enumerate() {
        let failures = downloads.failures_of(&p);
        if !failures.is_empty() {
            errors.extend(failures);
            continue;
        }
        match record(&lease, &p).await {
            Ok(()) => pulled.push(PulledImage {
                reference: p.reference,
                root: p.root,
                manifests: p.platform_manifests,
                blobs_downloaded: downloads.stats[i].0,
                bytes_downloaded: downloads.stats[i].1,
            }),
            Err(e) => errors.push(e),
        }
    }
    match PullError::combine(errors) {
        Some(e) => Err(e),
        None => Ok(pulled),
    }
}

type RepoKey = (String, String);

fn repo_key(r: &Reference) -> RepoKey {
    (r.registry().to_owned(), r.repository().to_owned())
}

/// One session per repository, connected concurrently.
async fn connect_all(
    targets: &[Reference],
    config: &RegistryConfig,
    http: &reqwest::Client,
) -> BTreeMap<RepoKey, Result<Arc<Session>, PullError>> {
    let mut repos: BTreeMap<RepoKey, &Reference> = BTreeMap::new();
    for r in targets {
        repos.entry(repo_key(r)).or_insert(r);
    }
    join_all(repos.into_iter().map(|(key, r)| {
        let http = http.clone();
        async move { (key, Session::connect(r, config, http).await) }
    }))
    .await
    .into_iter()
    .collect()
}

/// Plans every image concurrently; manifest fetches share the download limit.
async fn plan_all(
    targets: &[Reference],
    sessions: &BTreeMap<RepoKey, Result<Arc<Session>, PullError>>,
    platforms: &PlatformSelection,
    config: &RegistryConfig,
) -> (Vec<Plan>, Vec<PullError>) {
    let permits = Semaphore::new(config.max_concurrent_downloads.max(1));
    let planned = join_all(targets.iter().map(|r| {
        let session = sessions.get(&repo_key(r));
        let permits = &permits;
        async move {
            match session {
                Some(Ok(s)) => plan(r, s.clone(), platforms, permits).await,
                Some(Err(e)) => Err(e.retarget(&r.to_string())),
                None => Err(PullError::Internal {
                    reference: r.to_string(),
                    message: "no registry session".to_owned(),
                }),
            }
        }
    }))
    .await;
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for p in planned {
        match p {
            Ok(p) => plans.push(p),
            Err(e) => errors.push(e),
        }
    }
    (plans, errors)
}

/// Outcome of downloading the blobs of a set of plans.
struct Downloads {
    /// Per plan: blobs and bytes downloaded for it.
    stats: Vec<(usize, u64)>,
    /// Blobs that could not be downloaded.
    failed: BTreeMap<Digest, PullError>,
}

impl Downloads {
    /// The failures that stop `plan` from being recorded, naming its image.
    fn failures_of(&self, plan: &Plan) -> Vec<PullError> {
        let image = plan.reference.to_string();
        let broken: BTreeSet<&Digest> = plan
            .blobs
            .iter()
            .map(|b| &b.digest)
            .filter(|d| self.failed.contains_key(*d))
            .collect();
        broken
            .into_iter()
            .filter_map(|d| self.failed.get(d))
            .map(|e| e.retarget(&image))
            .collect()
    }
}

/// Downloads every blob some plan needs and the store lacks, once each
/// (attributed to the first plan needing it), `max_concurrent_downloads` at
/// a time.
async fn download_missing(
    plans: &[Plan],
    store: &Store,
    lease: &Lease,
    config: &RegistryConfig,
) -> Downloads {
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
            async move {
                let r = session.fetch_blob(&image, &desc, lease).await;
                (i, desc.digest, r)
            }
        })
        .buffer_unordered(config.max_concurrent_downloads.max(1))
        .collect()
        .await;
    let mut downloads = Downloads {
        stats: vec![(0, 0); plans.len()],
        failed: BTreeMap::new(),
    };
    for (i, digest, r) in results {
        match r {
            Ok(bytes) => {
                downloads.stats[i].0 += 1;
                downloads.stats[i].1 += bytes;
            }
            Err(e) => {
                downloads.failed.insert(digest, e);
            }
        }
    }
    downloads
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
