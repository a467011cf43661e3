//! Verifying a published release, independently of how it was published:
//! the artifact manifest's cosign signature, every attestation referring
//! to it (signature, subject, content), and every layer's digest, streamed
//! (and saved only once it matched, when asked to download).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use kiln_signer::dsse::{Envelope, Statement, INTOTO_PAYLOAD_TYPE};
use kiln_signer::policy::TrustRoot;
use kiln_signer::verify::verify_with_root;
use kiln_signer::PublicKey;
use serde_json::Value;

use super::media::{self, Attestation};
use super::repository::{sha256_digest, Repository};
use super::{MEASUREMENTS_PAYLOAD_TYPE, SPDX_PREDICATE};
use crate::engine::provenance::SLSA_PROVENANCE_V1;
use crate::engine::reference::Reference;
use crate::engine::registry::{Access, RegistryConfig};
use crate::engine::trust::fetch_signatures;

/// Largest attestation envelope read.
const MAX_ENVELOPE: i64 = 64 << 20;

/// One thing checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Everything checked about a release.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub reference: String,
    /// The artifact manifest's digest, once resolved.
    pub digest: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// `what: detail` of each failed check.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect()
    }

    fn pass(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok: true,
            detail: detail.into(),
        });
    }

    fn fail(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok: false,
            detail: detail.into(),
        });
    }
}

/// Verifies the release at `reference` (`REGISTRY/REPO:TAG` or `@DIGEST`)
/// with `keys`. With `download`, each layer is saved there under its title
/// once its digest matched.
pub async fn verify_release(
    reference: &str,
    keys: &[PublicKey],
    config: &RegistryConfig,
    download: Option<&Path>,
) -> Report {
    let mut report = Report {
        reference: reference.to_owned(),
        ..Report::default()
    };
    let parsed = match Reference::parse(reference) {
        Ok(r) => r,
        Err(e) => {
            report.fail("reference", e.to_string());
            return report;
        }
    };
    let repo = match Repository::connect(&parsed, config, Access::Pull).await {
        Ok(r) => r,
        Err(e) => {
            report.fail("registry", e);
            return report;
        }
    };
    let target = parsed
        .digest()
        .map(|d| d.to_string())
        .or_else(|| parsed.tag().map(str::to_owned))
        .unwrap_or_else(|| "latest".to_owned());
    let fetched = match repo.manifest(&target).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            report.fail(
                "manifest",
                format!("{} has no manifest {target}", repo.name()),
            );
            return report;
        }
        Err(e) => {
            report.fail("manifest", e);
            return report;
        }
    };
    let digest = sha256_digest(&fetched.bytes);
    report.digest = Some(digest.clone());
    if parsed.digest().is_some_and(|d| d.to_string() != digest) {
        report.fail(
            "manifest",
            format!("the registry returned {digest}, not {target}"),
        );
        return report;
    }
    let manifest: Value = match serde_json::from_slice(&fetched.bytes) {
        Ok(m) => m,
        Err(e) => {
            report.fail("manifest", format!("not JSON: {e}"));
            return report;
        }
    };
    if manifest["artifactType"] == media::ARTIFACT_TYPE {
        report.pass("manifest", format!("{digest}, a kiln OS image"));
    } else {
        report.fail(
            "manifest",
            format!(
                "artifactType {} is not {}",
                manifest["artifactType"],
                media::ARTIFACT_TYPE
            ),
        );
        return report;
    }

    check_signature(&mut report, &parsed, &digest, keys, config).await;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let layer_digests: BTreeSet<String> = layers
        .iter()
        .filter_map(|l| l["digest"].as_str().map(str::to_owned))
        .collect();
    let measurements = manifest["annotations"]["dev.kiln.measurements"]
        .as_str()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    check_attestations(
        &mut report,
        &repo,
        &digest,
        keys,
        &layer_digests,
        measurements,
    )
    .await;
    check_blob(&mut report, &repo, "config", &manifest["config"], None).await;
    for layer in &layers {
        let title = layer["annotations"][media::TITLE]
            .as_str()
            .unwrap_or("(untitled)")
            .to_owned();
        check_blob(
            &mut report,
            &repo,
            &format!("layer {title}"),
            layer,
            download,
        )
        .await;
    }
    report
}

async fn check_signature(
    report: &mut Report,
    reference: &Reference,
    digest: &str,
    keys: &[PublicKey],
    config: &RegistryConfig,
) {
    let signatures = match fetch_signatures(reference, digest, config).await {
        Ok(s) => s,
        Err(e) => return report.fail("signature", e.to_string()),
    };
    let root = TrustRoot {
        name: "--key".to_owned(),
        prefix: reference.name(),
        keys: keys.to_vec(),
        identities: Vec::new(),
        trusted_root: None,
    };
    match verify_with_root(&reference.name(), digest, &signatures, &root) {
        Ok(v) => report.pass(
            "signature",
            format!("cosign signature of {digest} by key {}", v.key_fingerprint),
        ),
        Err(rejection) => report.fail("signature", rejection.reason.to_string()),
    }
}

async fn check_attestations(
    report: &mut Report,
    repo: &Repository,
    digest: &str,
    keys: &[PublicKey],
    layers: &BTreeSet<String>,
    measurements: usize,
) {
    let referrers = match repo.referrers(digest).await {
        Ok(r) => r,
        Err(e) => return report.fail("attestations", e),
    };
    for kind in Attestation::ALL {
        let found: Vec<&Value> = referrers
            .iter()
            .filter(|d| d["artifactType"] == kind.artifact_type())
            .collect();
        let wanted = match kind {
            Attestation::Measurements => measurements,
            _ => 1,
        };
        if found.len() < wanted {
            report.fail(
                kind.name(),
                format!("missing: {} attached, {wanted} expected", found.len()),
            );
        }
        for descriptor in found {
            let referrer = descriptor["digest"].as_str().unwrap_or_default();
            match check_attestation(repo, kind, referrer, digest, keys, layers).await {
                Ok(detail) => report.pass(kind.name(), format!("{detail} (referrer {referrer})")),
                Err(e) => report.fail(kind.name(), format!("referrer {referrer}: {e}")),
            }
        }
    }
}

async fn check_attestation(
    repo: &Repository,
    kind: Attestation,
    referrer: &str,
    subject: &str,
    keys: &[PublicKey],
    layers: &BTreeSet<String>,
) -> Result<String, String> {
    let fetched = repo
        .manifest(referrer)
        .await?
        .ok_or("the referrer manifest is gone")?;
    if sha256_digest(&fetched.bytes) != referrer {
        return Err("the manifest does not match its digest".to_owned());
    }
    let manifest: Value =
        serde_json::from_slice(&fetched.bytes).map_err(|e| format!("not JSON: {e}"))?;
    if manifest["subject"]["digest"] != subject {
        return Err(format!("its subject is {}", manifest["subject"]["digest"]));
    }
    let layer = &manifest["layers"][0];
    let envelope_digest = layer["digest"].as_str().ok_or("no envelope layer")?;
    let size = layer["size"].as_i64().unwrap_or(-1);
    if !(0..=MAX_ENVELOPE).contains(&size) {
        return Err(format!("envelope of {size} bytes"));
    }
    let mut bytes = Vec::new();
    let (actual, _) = repo
        .pull_blob_to(envelope_digest, size, media::DSSE_ENVELOPE, &mut bytes)
        .await?;
    if actual != envelope_digest {
        return Err(format!("the envelope is {actual}, not {envelope_digest}"));
    }
    let envelope = Envelope::from_json(&bytes).map_err(|e| e.to_string())?;
    let (key, payload) = envelope.verify(keys).map_err(|e| e.to_string())?;
    let signed_by = format!("signed by {}", key.fingerprint());
    match kind {
        Attestation::Sbom => {
            let statement = in_toto(&envelope, &payload)?;
            if statement.predicate_type != SPDX_PREDICATE {
                return Err(format!("predicate type {}", statement.predicate_type));
            }
            if !statement.names_sha256(subject) {
                return Err("the statement does not name the release".to_owned());
            }
            let version = statement.predicate["spdxVersion"]
                .as_str()
                .unwrap_or_default();
            if version != "SPDX-2.3" {
                return Err(format!("spdxVersion `{version}` is not SPDX-2.3"));
            }
            let packages = statement.predicate["packages"]
                .as_array()
                .map_or(0, Vec::len);
            Ok(format!("SPDX 2.3, {packages} packages, {signed_by}"))
        }
        Attestation::Provenance => {
            let statement = in_toto(&envelope, &payload)?;
            if statement.predicate_type != SLSA_PROVENANCE_V1 {
                return Err(format!("predicate type {}", statement.predicate_type));
            }
            let missing: Vec<&String> = layers
                .iter()
                .filter(|d| !statement.names_sha256(d))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "it does not cover the layers {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Ok(format!(
                "SLSA v1 covering all {} layers, {signed_by}",
                layers.len()
            ))
        }
        Attestation::Measurements => {
            if envelope.payload_type != MEASUREMENTS_PAYLOAD_TYPE {
                return Err(format!("payload type {}", envelope.payload_type));
            }
            serde_json::from_slice::<Value>(&payload)
                .map_err(|e| format!("the manifest is not JSON: {e}"))?;
            Ok(signed_by)
        }
    }
}

fn in_toto(envelope: &Envelope, payload: &[u8]) -> Result<Statement, String> {
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(format!("payload type {}", envelope.payload_type));
    }
    Statement::parse(payload).map_err(|e| e.to_string())
}

/// Streams one blob, checking digest and size; saves it under its title in
/// `download` only when both match.
async fn check_blob(
    report: &mut Report,
    repo: &Repository,
    what: &str,
    descriptor: &Value,
    download: Option<&Path>,
) {
    let Some(digest) = descriptor["digest"].as_str() else {
        return report.fail(what, "no digest");
    };
    let size = descriptor["size"].as_i64().unwrap_or(-1);
    let media_type = descriptor["mediaType"].as_str().unwrap_or_default();
    let title = descriptor["annotations"][media::TITLE]
        .as_str()
        .filter(|t| !t.is_empty() && !t.contains('/') && !t.starts_with('.'));
    let save = download.zip(title);
    let result = match save {
        Some((dir, title)) => {
            let tmp = dir.join(format!(".{title}.kiln-tmp"));
            let outcome = match fs::File::create(&tmp) {
                Ok(mut file) => repo.pull_blob_to(digest, size, media_type, &mut file).await,
                Err(e) => Err(format!("{}: {e}", tmp.display())),
            };
            match outcome {
                Ok((actual, n)) if actual == digest && n as i64 == size => {
                    fs::rename(&tmp, dir.join(title))
                        .map(|()| (actual, n))
                        .map_err(|e| format!("{}: {e}", dir.join(title).display()))
                }
                other => {
                    let _ = fs::remove_file(&tmp);
                    other
                }
            }
        }
        None => {
            repo.pull_blob_to(digest, size, media_type, &mut std::io::sink())
                .await
        }
    };
    match result {
        Ok((actual, n)) if actual == digest && n as i64 == size => {
            report.pass(what, format!("{digest}, {n} bytes"))
        }
        Ok((actual, n)) => report.fail(
            what,
            format!("the registry served {actual} ({n} bytes), the manifest says {digest} ({size} bytes)"),
        ),
        Err(e) => report.fail(what, e),
    }
}
