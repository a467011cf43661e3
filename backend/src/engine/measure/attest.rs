//! Checking a manifest against a booted machine: its event log
//! (`binary_bios_measurements`) and the PCR values it reports. Each
//! predicted PCR matches when the log's events for it are the predicted
//! events, digest for digest, and the log replays to the reported value.

use std::collections::BTreeMap;

use serde::Serialize;

use super::bank::Bank;
use super::event::{Event, EventType};
use super::eventlog::{EventLog, LogEvent};
use super::manifest::{Manifest, PcrBasis};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error("the manifest predicts no {0} values (it has {1})")]
    BankNotPredicted(Bank, String),
    #[error("the event log has no {0} digests (it declares algorithm ids {1})")]
    BankNotLogged(Bank, String),
}

/// The first event where the log and the prediction part ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// 1-based position among this PCR's events.
    pub position: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Event>,
    /// The log event: its index in the log, type, digest, data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logged: Option<LoggedEvent>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedEvent {
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub digest: String,
    pub data: String,
}

impl LoggedEvent {
    fn of(e: &LogEvent, bank: Bank) -> LoggedEvent {
        LoggedEvent {
            index: e.index,
            kind: e.kind,
            digest: e.digests.get(&bank).map(hex::encode).unwrap_or_default(),
            data: e.describe_data(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PcrCheck {
    pub pcr: u32,
    /// `None` for PCRs the manifest does not predict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis: Option<PcrBasis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<String>,
    pub matches: bool,
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub bank: Bank,
    pub model: String,
    pub pcrs: Vec<PcrCheck>,
}

impl Report {
    /// Every predicted PCR matched, and the log agrees with every reported
    /// PCR it covers.
    pub fn ok(&self) -> bool {
        self.pcrs.iter().all(|p| p.matches)
    }
}

/// PCRs whose every extension is in the firmware's log (0–7) besides the
/// predicted ones; PCR 10 (IMA) and userspace PCRs are not.
fn logged_by_firmware(pcr: u32) -> bool {
    pcr <= 7
}

pub fn verify(
    manifest: &Manifest,
    log: &EventLog,
    reported: &BTreeMap<u32, Vec<u8>>,
    bank: Bank,
) -> Result<Report, AttestError> {
    if !manifest.banks.contains(&bank) {
        let have: Vec<&str> = manifest.banks.iter().map(|b| b.name()).collect();
        return Err(AttestError::BankNotPredicted(bank, have.join(", ")));
    }
    if !log.has_bank(bank) {
        let ids: Vec<String> = log
            .algorithms
            .iter()
            .map(|(a, _)| format!("{a:#06x}"))
            .collect();
        return Err(AttestError::BankNotLogged(bank, ids.join(", ")));
    }
    let mut pcrs = Vec::new();
    for p in &manifest.pcrs {
        let logged: Vec<&LogEvent> = log.extending(p.pcr).collect();
        let mut problems = Vec::new();
        let difference = first_difference(p.pcr, &p.events, &logged, bank);
        if let Some(d) = &difference {
            problems.push(d.message.clone());
        }
        let predicted = p.values.get(bank).map(hex::encode);
        let replayed = log.replay(bank, p.pcr).map(hex::encode);
        let reported_hex = reported.get(&p.pcr).map(hex::encode);
        if let (Some(r), Some(l)) = (&reported_hex, &replayed) {
            if r != l {
                problems.push(format!(
                    "PCR {}: the event log replays to {l}, but the TPM reports {r}: the log does not account for the PCR",
                    p.pcr
                ));
            }
        }
        if let (Some(r), Some(pv)) = (&reported_hex, &predicted) {
            if r != pv && difference.is_none() {
                problems.push(format!(
                    "PCR {}: the TPM reports {r}, the manifest predicts {pv}",
                    p.pcr
                ));
            }
        }
        pcrs.push(PcrCheck {
            pcr: p.pcr,
            basis: Some(p.basis),
            predicted,
            reported: reported_hex,
            replayed,
            matches: problems.is_empty(),
            problems,
            difference,
        });
    }
    for (pcr, value) in reported {
        if manifest.pcr(*pcr).is_some() || !logged_by_firmware(*pcr) {
            continue;
        }
        let replayed = log.replay(bank, *pcr).map(hex::encode);
        let reported_hex = hex::encode(value);
        let mut problems = Vec::new();
        if replayed.as_deref() != Some(reported_hex.as_str()) {
            problems.push(format!(
                "PCR {pcr} (not predicted): the event log replays to {}, but the TPM reports {reported_hex}",
                replayed.as_deref().unwrap_or("nothing")
            ));
        }
        pcrs.push(PcrCheck {
            pcr: *pcr,
            basis: None,
            predicted: None,
            reported: Some(reported_hex),
            replayed,
            matches: problems.is_empty(),
            problems,
            difference: None,
        });
    }
    pcrs.sort_by_key(|p| p.pcr);
    Ok(Report {
        bank,
        model: manifest.reference_model.name.clone(),
        pcrs,
    })
}

fn first_difference(
    pcr: u32,
    predicted: &[Event],
    logged: &[&LogEvent],
    bank: Bank,
) -> Option<Difference> {
    let n = predicted.len().max(logged.len());
    for i in 0..n {
        let p = predicted.get(i);
        let l = logged.get(i);
        let same = match (p, l) {
            (Some(p), Some(l)) => {
                p.digests.get(bank).is_some()
                    && p.digests.get(bank) == l.digests.get(&bank).map(Vec::as_slice)
            }
            _ => false,
        };
        if same {
            continue;
        }
        let position = i + 1;
        let message = match (p, l) {
            (Some(p), Some(l)) => format!(
                "PCR {pcr} event {position} differs: the manifest predicts {} \"{}\" ({bank} {}), the log has {} {} ({bank} {}, log event {})",
                p.kind,
                p.description,
                p.digests.get(bank).map(hex::encode).unwrap_or_default(),
                l.kind,
                l.describe_data(),
                l.digests.get(&bank).map(hex::encode).unwrap_or_else(|| "missing".into()),
                l.index
            ),
            (Some(p), None) => format!(
                "PCR {pcr} event {position} is missing from the log: the manifest predicts {} \"{}\"",
                p.kind, p.description
            ),
            (None, Some(l)) => format!(
                "PCR {pcr} event {position} is not predicted: the log has {} {} (log event {})",
                l.kind,
                l.describe_data(),
                l.index
            ),
            (None, None) => continue,
        };
        return Some(Difference {
            position,
            predicted: p.cloned(),
            logged: l.map(|l| LoggedEvent::of(l, bank)),
            message,
        });
    }
    None
}
