//! Content trust at build time: every image that must be signed (its org is
//! in the spec's `trust.org`, it is in `trust.image`, or the policy requires
//! it) is checked against the policy's keys before anything is assembled.
//! Every failure is reported, not just the first.

use kiln_shared::Spec;
use kiln_signer::policy::TrustPolicy;
use kiln_signer::verify::{verify_image, VerifiedSignature};
use serde::{Deserialize, Serialize};

use super::plan::Images;
use super::{image_strings, BuildError};
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
    /// One entry per image that had to verify, in the spec's order.
    pub verified: Vec<VerifiedSignature>,
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

/// Verifies what the spec and policy demand unless `disable` asks to skip
/// it, which only a policy with `allow_disable_content_trust` permits.
pub async fn enforce(
    spec: &Spec,
    images: &Images,
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
        });
    }
    Ok(TrustRecord {
        disabled: false,
        verified: verify(spec, images, policy, config).await?,
    })
}

/// Verifies the signatures the spec and policy demand. `config` is `None`
/// in offline builds, where signatures cannot be fetched.
pub async fn verify(
    spec: &Spec,
    images: &Images,
    policy: &TrustPolicy,
    config: Option<&RegistryConfig>,
) -> Result<Vec<VerifiedSignature>, BuildError> {
    let strings = image_strings(spec);
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
        let Some(resolved) = images.get(&req.image) else {
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
