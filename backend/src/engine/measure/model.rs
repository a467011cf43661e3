//! The reference VM model `qemu-q35-ovmf-nodefaults`: what its firmware
//! measures besides the artifact. Each assumption is listed in
//! [`ASSUMPTIONS`], and the manifest carries them.

use serde::{Deserialize, Serialize};

use super::bank::{Bank, Digests};
use super::event::{Basis, Event, EventType};

pub const NAME: &str = "qemu-q35-ovmf-nodefaults";

/// The model as documented in every manifest.
pub const ASSUMPTIONS: &[&str] = &[
    "QEMU q35 machine started with -nodefaults: no NIC option ROM, no empty CD-ROM, one boot disk",
    "firmware: Debian's OVMF (edk2 2022.11, OVMF_CODE_4M.fd) with a fresh copy of OVMF_VARS_4M.fd",
    "Secure Boot off: SecureBoot = 0, PK, KEK, db and dbx empty",
    "the artifact boots as the first boot option (EFI/BOOT/BOOTX64.EFI, removable-media path): no boot option failed before it, no firmware load options",
    "TPM 2.0 through tpm-tis (swtpm); PCR 0 (firmware) and PCR 1 (boot variables) are firmware and VM specific and not predicted",
    "an EFI disk's (raw-efi, or qcow2-efi, vhd, dynamic-vhd, vmdk around it) primary GPT is measured into PCR 5; a uki is started from media without a GPT (e.g. QEMU vvfat); an iso-efi boots as a CD-ROM through its El Torito EFI image, no GPT measured",
    "the UKI's systemd-stub loads the kernel from its .linux section with LoadImage, so the firmware measures both images into PCR 4",
];

/// The model, as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub name: String,
    pub secure_boot: bool,
    pub assumptions: Vec<String>,
}

pub fn info() -> ModelInfo {
    ModelInfo {
        name: NAME.to_owned(),
        secure_boot: false,
        assumptions: ASSUMPTIONS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

const CALLING: &[u8] = b"Calling EFI Application from Boot Option";
const EXIT_BS: &[u8] = b"Exit Boot Services Invocation";
const EXIT_BS_OK: &[u8] = b"Exit Boot Services Returned with Success";

/// EFI_GLOBAL_VARIABLE 8BE4DF61-93CA-11D2-AA0D-00E098032B8C, in its
/// in-memory (mixed-endian) layout.
const EFI_GLOBAL_VARIABLE: [u8; 16] = [
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
];
/// EFI_IMAGE_SECURITY_DATABASE_GUID D719B2CB-3D3A-4596-A3BC-DAD00E67656F.
const IMAGE_SECURITY_DATABASE: [u8; 16] = [
    0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f,
];

/// The separator every PCR 0–7 gets when the firmware hands over.
pub fn separator(pcr: u32, banks: &[Bank]) -> Event {
    Event::measuring(
        pcr,
        EventType::SEPARATOR,
        banks,
        &[0; 4],
        "separator (00000000)",
        Basis::Model,
    )
}

/// UEFI_VARIABLE_DATA: vendor GUID, name length in characters, data
/// length, the UTF-16 name without a NUL, the data.
pub fn variable_data(guid: &[u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut out = guid.to_vec();
    out.extend_from_slice(&(units.len() as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// PCR 7 with Secure Boot off: the SecureBoot variable (0), empty PK,
/// KEK, db and dbx, then the separator.
pub fn pcr7_events(banks: &[Bank]) -> Vec<Event> {
    let vars: [(&[u8; 16], &str, &[u8]); 5] = [
        (&EFI_GLOBAL_VARIABLE, "SecureBoot", &[0]),
        (&EFI_GLOBAL_VARIABLE, "PK", &[]),
        (&EFI_GLOBAL_VARIABLE, "KEK", &[]),
        (&IMAGE_SECURITY_DATABASE, "db", &[]),
        (&IMAGE_SECURITY_DATABASE, "dbx", &[]),
    ];
    let mut out: Vec<Event> = vars
        .iter()
        .map(|(guid, name, data)| {
            let what = if data.is_empty() {
                "empty".to_owned()
            } else {
                format!("= {}", hex::encode(data))
            };
            Event::measuring(
                7,
                EventType::EFI_VARIABLE_DRIVER_CONFIG,
                banks,
                &variable_data(guid, name, data),
                format!("Secure Boot variable {name} ({what})"),
                Basis::Model,
            )
        })
        .collect();
    out.push(separator(7, banks));
    out
}

/// PCR 4: the firmware's action and separator, then the UKI as the boot
/// application, then the kernel systemd-stub loads from `.linux`.
pub fn pcr4_events(banks: &[Bank], uki: &Digests, kernel: Option<&Digests>) -> Vec<Event> {
    let mut out = vec![
        Event::measuring(
            4,
            EventType::EFI_ACTION,
            banks,
            CALLING,
            "firmware: \"Calling EFI Application from Boot Option\"",
            Basis::Model,
        ),
        separator(4, banks),
        Event {
            pcr: 4,
            kind: EventType::EFI_BOOT_SERVICES_APPLICATION,
            digests: uki.clone(),
            description: "firmware: Authenticode hash of the UKI (EFI/BOOT/BOOTX64.EFI)".into(),
            basis: Basis::Artifact,
        },
    ];
    if let Some(kernel) = kernel {
        out.push(Event {
            pcr: 4,
            kind: EventType::EFI_BOOT_SERVICES_APPLICATION,
            digests: kernel.clone(),
            description:
                "firmware: Authenticode hash of the kernel (the UKI's .linux section, loaded by systemd-stub)"
                    .into(),
            basis: Basis::Artifact,
        });
    }
    out
}

/// PCR 5: the separator, the GPT when booting from a GPT disk, then the
/// two ExitBootServices actions.
pub fn pcr5_events(banks: &[Bank], gpt: Option<&[u8]>) -> Vec<Event> {
    let mut out = vec![separator(5, banks)];
    if let Some(gpt) = gpt {
        let entries = gpt
            .get(92..100)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        out.push(Event::measuring(
            5,
            EventType::EFI_GPT_EVENT,
            banks,
            gpt,
            format!("firmware: the disk's GPT header and its {entries} used partition entries"),
            Basis::Artifact,
        ));
    }
    for (text, what) in [
        (EXIT_BS, "Exit Boot Services Invocation"),
        (EXIT_BS_OK, "Exit Boot Services Returned with Success"),
    ] {
        out.push(Event::measuring(
            5,
            EventType::EFI_ACTION,
            banks,
            text,
            format!("firmware: \"{what}\""),
            Basis::Model,
        ));
    }
    out
}

/// PCRs 2, 3 and 6: only the separator (no option ROMs, no platform
/// configuration events, no wake events).
pub fn separator_only_events(banks: &[Bank]) -> Vec<Event> {
    [2, 3, 6].iter().map(|p| separator(*p, banks)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::measure::event::replay;

    #[test]
    fn variable_data_layout() {
        let v = variable_data(&EFI_GLOBAL_VARIABLE, "PK", &[]);
        assert_eq!(v.len(), 16 + 8 + 8 + 4);
        assert_eq!(&v[16..24], &2u64.to_le_bytes());
        assert_eq!(&v[32..], &[b'P', 0, b'K', 0]);
    }

    #[test]
    fn separators_extend_once() {
        let b = Bank::Sha256;
        let e = separator_only_events(&[b]);
        assert_eq!(replay(b, 3, &e), b.extend(&b.zero(), &b.hash(&[0; 4])));
    }
}

#[cfg(test)]
mod known_values {
    use super::*;
    use crate::engine::measure::event::replay;

    /// Values a real OVMF 2022.11 + swtpm boot produced
    /// (shared/reference/tpm-measured-boot.md, section 5).
    #[test]
    fn matches_values_seen_on_ovmf() {
        let b = Bank::Sha256;
        let sep = hex::encode(replay(b, 2, &separator_only_events(&[b])));
        assert_eq!(
            sep,
            "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969"
        );
        let seven = hex::encode(replay(b, 7, &pcr7_events(&[b])));
        assert!(
            seven.starts_with("65caf8dd") && seven.ends_with("3068"),
            "{seven}"
        );
    }
}
