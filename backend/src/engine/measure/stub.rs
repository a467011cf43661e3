//! What runs inside the UKI measures it: systemd-stub extends PCR 11 with
//! the UKI's sections, and the Linux EFI stub extends PCR 9 with its load
//! options and the initrd. Neither depends on the firmware.

use super::bank::Bank;
use super::event::{Basis, Event, EventType};
use super::pe::{Pe, PeError};

/// The sections systemd-stub measures, in the order it measures them
/// (its enum order, not the file's). `.pcrsig` is never measured. systemd
/// 254 added `.uname` and `.sbat` before `.pcrpkey`.
const MEASURED_252: &[&str] = &[
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
];
const MEASURED_254: &[&str] = &[
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".uname", ".sbat", ".pcrpkey",
];

/// The UKI's payload sections, as loaded (VirtualSize bytes each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UkiParts {
    /// `(name, bytes)` in systemd-stub's measuring order; absent and empty
    /// sections are left out, as the stub skips them.
    pub sections: Vec<(String, Vec<u8>)>,
    /// systemd-stub's version from `.sdmagic`, when readable.
    pub stub_version: Option<u32>,
}

impl UkiParts {
    /// Reads the sections of a UKI.
    pub fn from_pe(pe: &Pe<'_>) -> Result<UkiParts, PeError> {
        let stub_version = match pe.section(".sdmagic") {
            Some(s) => stub_version(&pe.loaded(s)?),
            None => None,
        };
        let order = if stub_version.is_some_and(|v| v >= 254) {
            MEASURED_254
        } else {
            MEASURED_252
        };
        let mut sections = Vec::new();
        for name in order {
            if let Some(s) = pe.section(name) {
                let bytes = pe.loaded(s)?;
                if !bytes.is_empty() {
                    sections.push(((*name).to_owned(), bytes));
                }
            }
        }
        Ok(UkiParts {
            sections,
            stub_version,
        })
    }

    /// Parts from separate files, as `systemd-measure calculate` takes them
    /// (systemd 252's order).
    pub fn from_files(files: &[(&str, Vec<u8>)]) -> UkiParts {
        let mut sections = Vec::new();
        for name in MEASURED_252 {
            if let Some((_, bytes)) = files.iter().find(|(n, _)| n == name) {
                if !bytes.is_empty() {
                    sections.push(((*name).to_owned(), bytes.clone()));
                }
            }
        }
        UkiParts {
            sections,
            stub_version: None,
        }
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// `#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####` → 252.
fn stub_version(magic: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(magic);
    let rest = text.split("systemd-stub ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// PCR 11: for each measured section, its name with a NUL, then its bytes.
pub fn pcr11_events(parts: &UkiParts, banks: &[Bank]) -> Vec<Event> {
    let mut out = Vec::new();
    for (name, bytes) in &parts.sections {
        let mut label = name.as_bytes().to_vec();
        label.push(0);
        out.push(Event::measuring(
            11,
            EventType::IPL,
            banks,
            &label,
            format!("systemd-stub: the section name `{name}`"),
            Basis::Artifact,
        ));
        out.push(Event::measuring(
            11,
            EventType::IPL,
            banks,
            bytes,
            format!("systemd-stub: the `{name}` section ({} bytes)", bytes.len()),
            Basis::Artifact,
        ));
    }
    out
}

/// The command line as the Linux EFI stub receives it from systemd-stub:
/// cut at the first NUL, each character up to U+001F made a space,
/// trailing spaces removed. Returns the string and its UCS-2 bytes with the
/// terminating NUL (what is measured).
pub fn load_options(cmdline: &[u8]) -> (String, Vec<u8>) {
    let cut = cmdline
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(cmdline.len());
    let text = String::from_utf8_lossy(&cmdline[..cut]);
    let mangled: String = text
        .chars()
        .map(|c| if (c as u32) <= 0x1f { ' ' } else { c })
        .collect();
    let trimmed = mangled.trim_end_matches(' ').to_owned();
    let mut bytes = Vec::with_capacity(trimmed.len() * 2 + 2);
    for c in trimmed.chars() {
        // UCS-2: characters outside the BMP become U+FFFD.
        let unit = u16::try_from(c as u32).unwrap_or(0xfffd);
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes.extend_from_slice(&[0, 0]);
    (trimmed, bytes)
}

/// PCR 9: the load options (when the UKI has a command line), then the
/// initrd (when it has one).
pub fn pcr9_events(parts: &UkiParts, banks: &[Bank]) -> Vec<Event> {
    let mut out = Vec::new();
    if let Some(cmdline) = parts.get(".cmdline") {
        let (text, measured) = load_options(cmdline);
        out.push(Event::measuring(
            9,
            EventType::EVENT_TAG,
            banks,
            &measured,
            format!("Linux EFI stub: LOADED_IMAGE::LoadOptions \"{text}\" (UCS-2)"),
            Basis::Artifact,
        ));
    }
    if let Some(initrd) = parts.get(".initrd") {
        out.push(Event::measuring(
            9,
            EventType::EVENT_TAG,
            banks,
            initrd,
            format!("Linux EFI stub: Linux initrd ({} bytes)", initrd.len()),
            Basis::Artifact,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::authenticode::tests::synthetic_pe;
    use super::super::event::replay;
    use super::*;

    #[test]
    fn load_options_mangling() {
        let (t, b) = load_options(b"console=ttyS0 quiet\n");
        assert_eq!(t, "console=ttyS0 quiet");
        assert_eq!(b.len(), t.len() * 2 + 2);
        assert_eq!(&b[..4], &[b'c', 0, b'o', 0]);
        assert_eq!(load_options(b"a\tb\0junk").0, "a b");
        assert_eq!(load_options(b"  ").0, "");
        assert_eq!(load_options("é".as_bytes()).1, vec![0xe9, 0, 0, 0]);
    }

    #[test]
    fn pcr11_uses_the_stub_order_and_virtual_sizes() {
        let pe = synthetic_pe(
            &[
                (".text", &[0x90; 32], 32),
                (".initrd", &[3; 16], 10),
                (".cmdline", b"console=ttyS0\0\0\0", 13),
                (".linux", &[1; 32], 32),
                (".osrel", b"ID=x\n\0\0\0", 5),
                (".dtb", &[0; 16], 0),
            ],
            &[],
            &[],
        );
        let parts = UkiParts::from_pe(&Pe::parse(&pe).unwrap()).unwrap();
        let names: Vec<&str> = parts.sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [".linux", ".osrel", ".cmdline", ".initrd"]);
        assert_eq!(parts.get(".cmdline"), Some(&b"console=ttyS0"[..]));
        assert_eq!(parts.get(".initrd").map(<[u8]>::len), Some(10));

        let bank = Bank::Sha256;
        let events = pcr11_events(&parts, &[bank]);
        let mut expect = bank.zero();
        for (name, bytes) in [
            (".linux", vec![1u8; 32]),
            (".osrel", b"ID=x\n".to_vec()),
            (".cmdline", b"console=ttyS0".to_vec()),
            (".initrd", vec![3u8; 10]),
        ] {
            expect = bank.extend(&expect, &bank.hash(format!("{name}\0").as_bytes()));
            expect = bank.extend(&expect, &bank.hash(&bytes));
        }
        assert_eq!(replay(bank, 11, &events), expect);

        let nine = pcr9_events(&parts, &[bank]);
        assert_eq!(nine.len(), 2);
        assert_eq!(nine[1].digests.get(bank).unwrap(), bank.hash(&[3; 10]));
    }

    #[test]
    fn stub_versions() {
        assert_eq!(
            stub_version(b"#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####"),
            Some(252)
        );
        assert_eq!(stub_version(b"garbage"), None);
    }
}
