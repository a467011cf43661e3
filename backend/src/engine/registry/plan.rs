//! Working out what one image needs: its manifests (fetched, verified,
//! held in memory until the blobs are in) and the blobs they name.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::Semaphore;

use super::select::{select, Child, PlatformSelection};
use super::session::{Fetched, Session};
use super::PullError;
use crate::engine::reference::Reference;
use crate::engine::store::{Descriptor, ManifestDoc, ManifestKind};

/// What one image needs, worked out from its manifests.
pub(crate) struct Plan {
    pub reference: Reference,
    pub session: Arc<Session>,
    pub root: Descriptor,
    pub root_bytes: Bytes,
    pub children: Vec<(Descriptor, Bytes)>,
    pub platform_manifests: Vec<Descriptor>,
    pub blobs: Vec<Descriptor>,
}

/// Fetches the manifests of one image and lists the blobs it needs.
pub(crate) async fn plan(
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

pub(crate) async fn fetch(
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

pub(crate) fn parse(
    image: &str,
    target: &str,
    fetched: &Fetched,
) -> Result<ManifestDoc, PullError> {
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
