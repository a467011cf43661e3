//! Content trust at build time: every image that must be signed (its org is
//! in the spec's `trust.org`, it is in `trust.image`, or the policy requires
//! it) is checked against the policy's keys before anything is assembled.
//! Every failure is reported, not just the first. Boot loader images (the
//! EFI stub, ISOLINUX) go through the same plan: one from a trusted org
//! must carry a valid signature like any image the spec names.

use kiln_shared::Spec;
use kiln_signer::policy::TrustPolicy;
use kiln_signer::verify::{verify_image, VerifiedSignature};
use serde::{Deserialize, Serialize};

use super::plan::Images;
use super::{image_strings, BuildError};
use crate::engine::boot::loader::LoaderImage;
use crate::engine::reference::Reference;
use crate::engine::registry::RegistryConfig;
use crate::engine::trust::fetch_signatures;

/// What content trust did for one build, kept with its result for
/// provenance: the signatures that verified, or that verification was
/// switched off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// `--disable-content-trust` was used (and the policy permitted it).
    pub disabled: bool,
    /// One entry per image that had to verify, in the spec's order, then
    /// the boot loader images.
    pub verified: Vec<VerifiedSignature>,
    /// The boot loader images the build used, whether or not they had to
    /// verify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_loaders: Vec<LoaderRecord>,
}

/// A boot loader image a build used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderRecord {
    /// `efi-stub` or `bios-loader`.
    pub role: String,
    /// The image as configured.
    pub image: String,
    /// The manifest (or index) digest it resolved to.
    pub digest: String,
    /// Its signature had to verify (and did: it is in `verified`).
    pub verified: bool,
}

/// A boot loader image and its role (`efi-stub`, `bios-loader`).
#[derive(Debug, Clone, Copy)]
pub struct BootLoader<'a> {
    pub role: &'static str,
    pub image: &'a LoaderImage,
}

impl TrustRecord {
    /// One line for a build summary.
    pub fn summary(&self) -> String {
        if self.disabled {
            return "content trust DISABLED (--disable-content-trust): no signature was verified"
                .to_owned();
        }
        if self.verified.is_empty() {
            return "content trust: no image had to be signed".to_owned();
        }
        let items: Vec<String> = self
            .verified
            .iter()
            .map(|v| format!("{}@{} (key {})", v.image, v.digest, v.key_fingerprint))
            .collect();
        format!("content trust: verified {}", items.join(", "))
    }
}

/// Verifies what the spec and policy demand of the spec's images and the
/// boot `loaders` unless `disable` asks to skip it, which only a policy
/// with `allow_disable_content_trust` permits.
pub async fn enforce(
    spec: &Spec,
    images: &Images,
    loaders: &[BootLoader<'_>],
    policy: &TrustPolicy,
    config: Option<&RegistryConfig>,
    disable: bool,
) -> Result<TrustRecord, BuildError> {
    if disable {
        if !policy.allow_disable_content_trust {
            return Err(BuildError::DisableNotPermitted);
        }
        return Ok(TrustRecord {
            disabled: true,
            verified: Vec::new(),
            boot_loaders: loader_records(loaders, &[]),
        });
    }
    let verified = verify(spec, images, loaders, policy, config).await?;
    Ok(TrustRecord {
        disabled: false,
        boot_loaders: loader_records(loaders, &verified),
        verified,
    })
}

fn loader_records(loaders: &[BootLoader<'_>], verified: &[VerifiedSignature]) -> Vec<LoaderRecord> {
    loaders
        .iter()
        .map(|l| LoaderRecord {
            role: l.role.to_owned(),
            image: l.image.name.clone(),
            digest: l.image.image.root.digest.to_string(),
            verified: verified.iter().any(|v| v.image == l.image.name),
        })
        .collect()
}

/// Verifies the signatures the spec and policy demand. `config` is `None`
/// in offline builds, where signatures cannot be fetched.
pub async fn verify(
    spec: &Spec,
    images: &Images,
    loaders: &[BootLoader<'_>],
    policy: &TrustPolicy,
    config: Option<&RegistryConfig>,
) -> Result<Vec<VerifiedSignature>, BuildError> {
    let mut strings = image_strings(spec);
    for l in loaders {
        if !strings.contains(&l.image.name) {
            strings.push(l.image.name.clone());
        }
    }
    let requirements = policy
        .plan(spec.trust.as_ref(), &strings)
        .map_err(|errors| BuildError::Untrusted(errors.iter().map(|e| e.to_string()).collect()))?;
    if requirements.is_empty() {
        return Ok(Vec::new());
    }
    let Some(config) = config else {
        return Err(BuildError::Untrusted(
            requirements
                .iter()
                .map(|r| format!("{}: signatures cannot be checked offline", r.image))
                .collect(),
        ));
    };
    let mut verified = Vec::new();
    let mut failures = Vec::new();
    for req in &requirements {
        let resolved = images.get(&req.image).or_else(|| {
            loaders
                .iter()
                .find(|l| l.image.name == req.image)
                .map(|l| &l.image.image)
        });
        let Some(resolved) = resolved else {
            failures.push(format!("{}: not resolved", req.image));
            continue;
        };
        // Signatures name what the tag points at: the index of a multi-arch
        // image, as cosign signs it.
        let digest = resolved.root.digest.to_string();
        let reference = match Reference::parse(&req.image) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e}", req.image));
                continue;
            }
        };
        match fetch_signatures(&reference, &digest, config).await {
            Err(e) => failures.push(e.to_string()),
            Ok(signatures) => match verify_image(&req.image, &digest, &signatures, policy) {
                Ok(v) => verified.push(v),
                Err(rejection) => failures.push(rejection.to_string()),
            },
        }
    }
    if failures.is_empty() {
        Ok(verified)
    } else {
        Err(BuildError::Untrusted(failures))
    }
}
