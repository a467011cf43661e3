//! Asking a registry what a reference points at, without storing anything.

use super::plan::parse;
use super::select::select;
use super::session::{self, Session};
use super::{PullError, RegistryConfig};
use crate::engine::reference::Reference;
use crate::engine::store::{Descriptor, ManifestKind, Platform};

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
