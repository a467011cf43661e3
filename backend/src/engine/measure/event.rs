//! Measurement events as a TCG event log records them: the PCR, the event
//! type, the digest per bank and what was measured.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::bank::{Bank, Digests};

/// A TCG event type (TCG PC Client Platform Firmware Profile, 10.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType(pub u32);

const NAMES: &[(u32, &str)] = &[
    (0x0000_0000, "EV_PREBOOT_CERT"),
    (0x0000_0001, "EV_POST_CODE"),
    (0x0000_0002, "EV_UNUSED"),
    (0x0000_0003, "EV_NO_ACTION"),
    (0x0000_0004, "EV_SEPARATOR"),
    (0x0000_0005, "EV_ACTION"),
    (0x0000_0006, "EV_EVENT_TAG"),
    (0x0000_0007, "EV_S_CRTM_CONTENTS"),
    (0x0000_0008, "EV_S_CRTM_VERSION"),
    (0x0000_0009, "EV_CPU_MICROCODE"),
    (0x0000_000A, "EV_PLATFORM_CONFIG_FLAGS"),
    (0x0000_000B, "EV_TABLE_OF_DEVICES"),
    (0x0000_000C, "EV_COMPACT_HASH"),
    (0x0000_000D, "EV_IPL"),
    (0x0000_000E, "EV_IPL_PARTITION_DATA"),
    (0x0000_000F, "EV_NONHOST_CODE"),
    (0x0000_0010, "EV_NONHOST_CONFIG"),
    (0x0000_0011, "EV_NONHOST_INFO"),
    (0x0000_0012, "EV_OMIT_BOOT_DEVICE_EVENTS"),
    (0x8000_0001, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
    (0x8000_0002, "EV_EFI_VARIABLE_BOOT"),
    (0x8000_0003, "EV_EFI_BOOT_SERVICES_APPLICATION"),
    (0x8000_0004, "EV_EFI_BOOT_SERVICES_DRIVER"),
    (0x8000_0005, "EV_EFI_RUNTIME_SERVICES_DRIVER"),
    (0x8000_0006, "EV_EFI_GPT_EVENT"),
    (0x8000_0007, "EV_EFI_ACTION"),
    (0x8000_0008, "EV_EFI_PLATFORM_FIRMWARE_BLOB"),
    (0x8000_0009, "EV_EFI_HANDOFF_TABLES"),
    (0x8000_000A, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"),
    (0x8000_000B, "EV_EFI_HANDOFF_TABLES2"),
    (0x8000_000C, "EV_EFI_VARIABLE_BOOT2"),
    (0x8000_0010, "EV_EFI_HCRTM_EVENT"),
    (0x8000_00E0, "EV_EFI_VARIABLE_AUTHORITY"),
    (0x8000_00E1, "EV_EFI_SPDM_FIRMWARE_BLOB"),
    (0x8000_00E2, "EV_EFI_SPDM_FIRMWARE_CONFIG"),
];

impl EventType {
    pub const NO_ACTION: EventType = EventType(0x3);
    pub const SEPARATOR: EventType = EventType(0x4);
    pub const EVENT_TAG: EventType = EventType(0x6);
    pub const IPL: EventType = EventType(0xD);
    pub const EFI_VARIABLE_DRIVER_CONFIG: EventType = EventType(0x8000_0001);
    pub const EFI_BOOT_SERVICES_APPLICATION: EventType = EventType(0x8000_0003);
    pub const EFI_GPT_EVENT: EventType = EventType(0x8000_0006);
    pub const EFI_ACTION: EventType = EventType(0x8000_0007);

    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(c, _)| *c == self.0).map(|(_, n)| *n)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{:#010x}", self.0),
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if let Some((code, _)) = NAMES.iter().find(|(_, n)| *n == text) {
            return Ok(EventType(*code));
        }
        text.strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .map(EventType)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event type `{text}`")))
    }
}

/// One predicted measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub pcr: u32,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// H(measured bytes) per bank.
    pub digests: Digests,
    /// What was measured, in words.
    pub description: String,
    /// Whether the event follows from the artifact alone or from the
    /// reference VM model.
    pub basis: Basis,
}

/// Where a prediction comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Computed from the artifact's bytes; holds on any UEFI firmware.
    Artifact,
    /// A fixed behaviour of the reference VM model's firmware.
    Model,
}

impl Event {
    /// An event whose digest is H(`measured`) in each bank.
    pub fn measuring(
        pcr: u32,
        kind: EventType,
        banks: &[Bank],
        measured: &[u8],
        description: impl Into<String>,
        basis: Basis,
    ) -> Event {
        Event {
            pcr,
            kind,
            digests: Digests::of(banks, measured),
            description: description.into(),
            basis,
        }
    }
}

/// Replays `events` of `pcr` in `bank` from the reset value.
pub fn replay<'e>(bank: Bank, pcr: u32, events: impl IntoIterator<Item = &'e Event>) -> Vec<u8> {
    events
        .into_iter()
        .filter(|e| e.pcr == pcr)
        .filter_map(|e| e.digests.get(bank))
        .fold(bank.zero(), |p, d| bank.extend(&p, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_serialise_by_name() {
        let j = serde_json::to_string(&EventType::EFI_ACTION).unwrap();
        assert_eq!(j, "\"EV_EFI_ACTION\"");
        assert_eq!(
            serde_json::from_str::<EventType>(&j).unwrap(),
            EventType::EFI_ACTION
        );
        let odd = EventType(0x1234);
        let j = serde_json::to_string(&odd).unwrap();
        assert_eq!(j, "\"0x00001234\"");
        assert_eq!(serde_json::from_str::<EventType>(&j).unwrap(), odd);
        assert!(serde_json::from_str::<EventType>("\"EV_BOGUS\"").is_err());
    }
}
