//! The measurement manifest: what a TPM will hold after an artifact boots,
//! as versioned JSON (`docs/schemas/measurements.schema.json`), signed as a
//! DSSE envelope whose payload is exactly the manifest's bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bank::{Bank, Digests};
use super::event::{Basis, Event};
use super::model::ModelInfo;

/// The `manifestVersion` this kiln writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// The DSSE payload type of a signed manifest.
pub const PAYLOAD_TYPE: &str = "application/vnd.kiln.measurements.v1+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub manifest_version: u32,
    pub artifact: ArtifactId,
    /// `sha256:<hex>` of the spec the artifact was built from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_digest: Option<String>,
    pub reference_model: ModelInfo,
    /// The banks predicted; always includes sha256.
    pub banks: Vec<Bank>,
    pub components: Components,
    /// Predicted PCRs in ascending order, each with its events.
    pub pcrs: Vec<PcrPrediction>,
    /// PCR 11 as `systemd-measure calculate --json=short --phase=` prints
    /// it: `{"sha256":[{"pcr":11,"hash":"..."}]}`.
    pub systemd_measure: BTreeMap<Bank, Vec<SystemdPcr>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactId {
    /// The file name.
    pub name: String,
    /// The kiln output format: `uki`, `raw-efi`, `qcow2-efi`, `vhd`,
    /// `dynamic-vhd`, `vmdk` or `iso-efi`.
    pub format: String,
    pub size: u64,
    pub digests: Digests,
}

/// A measured component: its size and plain digests, and for PE images
/// the Authenticode digests the firmware extends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    pub size: u64,
    pub digests: Digests,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticode: Option<Digests>,
    /// The text, for the command line and os-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Components {
    pub uki: Component,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Component>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<Component>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Component>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub osrel: Option<Component>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Component>,
}

/// Where a PCR's prediction comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PcrBasis {
    /// Every event follows from the artifact: firmware-independent.
    Artifact,
    /// Artifact events plus fixed events of the reference model.
    ArtifactAndModel,
    /// Only the reference model's events.
    Model,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PcrPrediction {
    pub pcr: u32,
    pub basis: PcrBasis,
    /// The value after the last event, per bank.
    pub values: Digests,
    /// In the order they are extended.
    pub events: Vec<Event>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdPcr {
    pub pcr: u32,
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a kiln measurement manifest: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("manifest version {0} is not supported; this kiln reads version {MANIFEST_VERSION}")]
    Version(u32),
    #[error("the manifest's PCR {pcr} {bank} value does not follow from its own events")]
    Inconsistent { pcr: u32, bank: Bank },
}

impl PcrPrediction {
    /// A prediction from its events, replayed in every bank.
    pub fn from_events(pcr: u32, banks: &[Bank], events: Vec<Event>, model: &str) -> PcrPrediction {
        let values = Digests(
            banks
                .iter()
                .map(|b| (*b, super::event::replay(*b, pcr, &events)))
                .collect(),
        );
        let artifact = events.iter().any(|e| e.basis == Basis::Artifact);
        let fixed = events.iter().any(|e| e.basis == Basis::Model);
        let (basis, note) = match (artifact, fixed) {
            (true, false) => (
                PcrBasis::Artifact,
                "from the artifact alone: holds on any UEFI firmware that boots this UKI".to_owned(),
            ),
            (true, true) => (
                PcrBasis::ArtifactAndModel,
                format!("the artifact's measurements between fixed events of the reference VM model {model}"),
            ),
            _ => (
                PcrBasis::Model,
                format!("depends only on the reference VM model {model}, not on the artifact"),
            ),
        };
        PcrPrediction {
            pcr,
            basis,
            values,
            events,
            note,
        }
    }
}

impl Manifest {
    /// The manifest as written to `NAME-measurements.json`: pretty JSON
    /// with a final newline. Field order is fixed by the types, so equal
    /// manifests give equal bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses a manifest and checks that every PCR value follows from its
    /// events.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.manifest_version != MANIFEST_VERSION {
            return Err(ManifestError::Version(m.manifest_version));
        }
        for p in &m.pcrs {
            for (bank, value) in &p.values.0 {
                if super::event::replay(*bank, p.pcr, &p.events) != *value {
                    return Err(ManifestError::Inconsistent {
                        pcr: p.pcr,
                        bank: *bank,
                    });
                }
            }
        }
        Ok(m)
    }

    pub fn pcr(&self, pcr: u32) -> Option<&PcrPrediction> {
        self.pcrs.iter().find(|p| p.pcr == pcr)
    }
}
