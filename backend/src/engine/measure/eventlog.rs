//! The TCG2 crypto-agile event log (`binary_bios_measurements`): a
//! SHA1-format header event carrying the Spec ID Event03, then
//! TCG_PCR_EVENT2 records with one digest per active bank.

use std::collections::BTreeMap;

use super::bank::Bank;
use super::event::EventType;

/// Logs larger than this are refused.
pub const MAX_LOG_BYTES: usize = 16 << 20;
const MAX_EVENT_DATA: usize = 16 << 20;
const SPEC_ID: &[u8] = b"Spec ID Event03\0";
const STARTUP_LOCALITY: &[u8] = b"StartupLocality\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("event log truncated at byte {offset} (event {index}): {what}")]
    Truncated {
        offset: usize,
        index: usize,
        what: &'static str,
    },
    #[error("not a TCG2 crypto-agile event log: {0}")]
    NotAgile(String),
    #[error("event log event {index} at byte {offset}: {message}")]
    Malformed {
        offset: usize,
        index: usize,
        message: String,
    },
    #[error("the event log is {0} bytes; at most {MAX_LOG_BYTES} are read")]
    TooLarge(usize),
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Position in the log, 0 being the Spec ID header.
    pub index: usize,
    pub pcr: u32,
    pub kind: EventType,
    /// Digests of the banks kiln knows; others are skipped.
    pub digests: BTreeMap<Bank, Vec<u8>>,
    pub data: Vec<u8>,
}

impl LogEvent {
    /// A short rendering of the event data for messages: UTF-16 or ASCII
    /// text when it looks like text, else its length.
    pub fn describe_data(&self) -> String {
        let printable = |s: &str| !s.is_empty() && s.chars().all(|c| !c.is_control());
        if self.data.len() >= 2 && self.data.len().is_multiple_of(2) {
            let units: Vec<u16> = self
                .data
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            if let Ok(s) = String::from_utf16(&units) {
                let s = s.trim_end_matches('\0');
                if printable(s) {
                    return format!("\"{s}\"");
                }
            }
        }
        if let Ok(s) = std::str::from_utf8(&self.data) {
            let s = s.trim_end_matches('\0');
            if printable(s) {
                return format!("\"{s}\"");
            }
        }
        format!("{} bytes of event data", self.data.len())
    }
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// Banks the log declares, with digest sizes (including unknown ones
    /// by algorithm id).
    pub algorithms: Vec<(u16, u16)>,
    /// The locality PCR 0 starts from (StartupLocality event), if logged.
    pub startup_locality: Option<u8>,
    /// Every event after the header, EV_NO_ACTION ones included.
    pub events: Vec<LogEvent>,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    index: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LogError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let Some(end) = end else {
            return Err(LogError::Truncated {
                offset: self.at,
                index: self.index,
                what,
            });
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, LogError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, LogError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

impl EventLog {
    pub fn parse(bytes: &[u8]) -> Result<EventLog, LogError> {
        if bytes.len() > MAX_LOG_BYTES {
            return Err(LogError::TooLarge(bytes.len()));
        }
        let mut c = Cursor {
            b: bytes,
            at: 0,
            index: 0,
        };
        // TCG_PCR_EVENT: pcr, type, SHA1 digest, size, data.
        let _pcr = c.u32("header PCR index")?;
        let kind = c.u32("header event type")?;
        c.take(20, "header digest")?;
        let size = c.u32("header event size")? as usize;
        let spec = c.take(size, "Spec ID event")?;
        if kind != EventType::NO_ACTION.0 || !spec.starts_with(SPEC_ID) {
            return Err(LogError::NotAgile(
                "the first event is not EV_NO_ACTION \"Spec ID Event03\" (a SHA1-only TPM 1.2 log?)"
                    .into(),
            ));
        }
        let algorithms = spec_algorithms(spec)?;
        let mut events = Vec::new();
        let mut startup_locality = None;
        while c.at < bytes.len() {
            c.index += 1;
            let offset = c.at;
            let pcr = c.u32("PCR index")?;
            let kind = EventType(c.u32("event type")?);
            let count = c.u32("digest count")? as usize;
            if count > algorithms.len() {
                return Err(LogError::Malformed {
                    offset,
                    index: c.index,
                    message: format!(
                        "{count} digests, but the log declares {} banks",
                        algorithms.len()
                    ),
                });
            }
            let mut digests = BTreeMap::new();
            for _ in 0..count {
                let alg = c.u16("digest algorithm")?;
                let Some((_, len)) = algorithms.iter().find(|(a, _)| *a == alg) else {
                    return Err(LogError::Malformed {
                        offset,
                        index: c.index,
                        message: format!(
                            "digest algorithm {alg:#06x} is not declared in the header"
                        ),
                    });
                };
                let d = c.take(*len as usize, "digest")?;
                if let Some(bank) = Bank::from_alg_id(alg) {
                    digests.insert(bank, d.to_vec());
                }
            }
            let size = c.u32("event size")? as usize;
            if size > MAX_EVENT_DATA {
                return Err(LogError::Malformed {
                    offset,
                    index: c.index,
                    message: format!("{size} bytes of event data"),
                });
            }
            let data = c.take(size, "event data")?.to_vec();
            if kind == EventType::NO_ACTION && pcr == 0 && data.starts_with(STARTUP_LOCALITY) {
                startup_locality = data.get(STARTUP_LOCALITY.len()).copied();
            }
            events.push(LogEvent {
                index: c.index,
                pcr,
                kind,
                digests,
                data,
            });
        }
        Ok(EventLog {
            algorithms,
            startup_locality,
            events,
        })
    }

    /// The events that extend `pcr` (EV_NO_ACTION ones do not).
    pub fn extending(&self, pcr: u32) -> impl Iterator<Item = &LogEvent> {
        self.events
            .iter()
            .filter(move |e| e.pcr == pcr && e.kind != EventType::NO_ACTION)
    }

    /// The value `pcr` has in `bank` after replaying the log.
    pub fn replay(&self, bank: Bank, pcr: u32) -> Option<Vec<u8>> {
        let mut value = bank.zero();
        if pcr == 0 {
            if let Some(l) = self.startup_locality {
                *value.last_mut()? = l;
            }
        }
        for e in self.extending(pcr) {
            value = bank.extend(&value, e.digests.get(&bank)?);
        }
        Some(value)
    }

    pub fn has_bank(&self, bank: Bank) -> bool {
        self.algorithms.iter().any(|(a, _)| *a == bank.alg_id())
    }
}

/// The (algorithm id, digest size) list of a Spec ID Event03.
fn spec_algorithms(spec: &[u8]) -> Result<Vec<(u16, u16)>, LogError> {
    let bad = |m: &str| LogError::NotAgile(format!("Spec ID event: {m}"));
    // signature[16], platformClass u32, minor, major, errata, uintnSize u8.
    let mut at = 16 + 4 + 4;
    let n = spec
        .get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("truncated"))? as usize;
    at += 4;
    if n == 0 || n > 16 {
        return Err(bad(&format!("{n} algorithms")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = spec.get(at..at + 4).ok_or_else(|| bad("truncated"))?;
        let alg = u16::from_le_bytes([s[0], s[1]]);
        let size = u16::from_le_bytes([s[2], s[3]]);
        if size == 0 || size > 64 {
            return Err(bad(&format!(
                "algorithm {alg:#06x} with digest size {size}"
            )));
        }
        if let Some(b) = Bank::from_alg_id(alg) {
            if b.size() != size as usize {
                return Err(bad(&format!("{b} with digest size {size}")));
            }
        }
        out.push((alg, size));
        at += 4;
    }
    Ok(out)
}

/// One event to encode: PCR, type, digests, event data.
pub type RawEvent = (u32, EventType, BTreeMap<Bank, Vec<u8>>, Vec<u8>);

/// Writes a log (header plus `events`) in the crypto-agile format: for
/// tests and for turning predictions into a log-shaped file.
pub fn encode(banks: &[Bank], events: &[RawEvent]) -> Vec<u8> {
    let mut spec = SPEC_ID.to_vec();
    spec.extend_from_slice(&0u32.to_le_bytes());
    spec.extend_from_slice(&[0, 2, 0, 2]);
    spec.extend_from_slice(&(banks.len() as u32).to_le_bytes());
    for b in banks {
        spec.extend_from_slice(&b.alg_id().to_le_bytes());
        spec.extend_from_slice(&(b.size() as u16).to_le_bytes());
    }
    spec.push(0);
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&EventType::NO_ACTION.0.to_le_bytes());
    out.extend_from_slice(&[0; 20]);
    out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    out.extend_from_slice(&spec);
    for (pcr, kind, digests, data) in events {
        out.extend_from_slice(&pcr.to_le_bytes());
        out.extend_from_slice(&kind.0.to_le_bytes());
        out.extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (b, d) in digests {
            out.extend_from_slice(&b.alg_id().to_le_bytes());
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let b = Bank::Sha256;
        let d = |x: &[u8]| BTreeMap::from([(b, b.hash(x))]);
        encode(
            &[b],
            &[
                (
                    0,
                    EventType::NO_ACTION,
                    BTreeMap::from([(b, b.zero())]),
                    b"StartupLocality\0\x03".to_vec(),
                ),
                (4, EventType::EFI_ACTION, d(b"a"), b"a".to_vec()),
                (4, EventType::SEPARATOR, d(&[0; 4]), vec![0; 4]),
                (0, EventType::SEPARATOR, d(&[0; 4]), vec![0; 4]),
            ],
        )
    }

    #[test]
    fn parses_and_replays() {
        let log = EventLog::parse(&sample()).unwrap();
        let b = Bank::Sha256;
        assert_eq!(log.events.len(), 4);
        assert_eq!(log.startup_locality, Some(3));
        let want = b.extend(&b.extend(&b.zero(), &b.hash(b"a")), &b.hash(&[0; 4]));
        assert_eq!(log.replay(b, 4), Some(want));
        let mut p0 = b.zero();
        p0[31] = 3;
        assert_eq!(log.replay(b, 0), Some(b.extend(&p0, &b.hash(&[0; 4]))));
        assert_eq!(log.replay(Bank::Sha1, 4), None);
        assert_eq!(log.events[1].describe_data(), "\"a\"");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            // A cut exactly between events is a shorter valid log.
            if let Ok(log) = EventLog::parse(&bytes[..cut]) {
                assert!(log.events.len() < 4);
            }
        }
        assert!(matches!(
            EventLog::parse(&bytes[..10]),
            Err(LogError::Truncated { .. })
        ));
        let mut not_agile = bytes.clone();
        not_agile[32] = b'X';
        assert!(matches!(
            EventLog::parse(&not_agile),
            Err(LogError::NotAgile(_))
        ));
    }
}
