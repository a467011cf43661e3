//! TPM measurement prediction: from a built UKI or EFI disk, and without
//! running anything, the PCR values and events a TPM holds after it boots.
//!
//! PCRs 9 and 11 follow from the UKI alone (the Linux EFI stub and
//! systemd-stub measure them); PCR 4 is the UKI's and kernel's Authenticode
//! hashes between fixed firmware events; PCRs 2, 3, 5, 6 and 7 come from
//! the reference VM model [`model::NAME`]. `attest` checks a manifest
//! against a real machine's event log and PCRs.

pub mod attest;
pub mod authenticode;
pub mod bank;
pub mod container;
pub mod eltorito;
pub mod esp;
pub mod event;
pub mod eventlog;
pub mod gpt;
pub mod manifest;
pub mod model;
pub mod output;
pub mod pe;
pub mod signed;
pub mod stub;

use std::io::{Read, Seek, SeekFrom};

use self::bank::{Bank, Digests, MultiHasher};
use self::event::Event;
use self::manifest::{
    ArtifactId, Component, Components, Manifest, PcrPrediction, SystemdPcr, MANIFEST_VERSION,
};
use self::pe::{Pe, PeError};
use self::stub::UkiParts;

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("the UKI: {0}")]
    Pe(#[from] PeError),
    #[error("the UKI has no `.linux` section: not a unified kernel image")]
    NoKernel,
    #[error("the kernel in the UKI's .linux section: {0}")]
    Kernel(PeError),
    #[error("the disk's partition table: {0}")]
    Gpt(#[from] gpt::GptError),
    #[error("reading the disk: {0}")]
    Io(#[from] std::io::Error),
}

/// What to predict, besides the artifact.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Banks beyond sha256, which is always predicted.
    pub banks: Vec<Bank>,
    /// `sha256:<hex>` of the spec, recorded in the manifest.
    pub spec_digest: Option<String>,
}

impl Options {
    fn banks(&self) -> Vec<Bank> {
        let mut b = self.banks.clone();
        b.push(Bank::Sha256);
        b.sort();
        b.dedup();
        b
    }
}

fn component(banks: &[Bank], bytes: &[u8]) -> Component {
    Component {
        size: bytes.len() as u64,
        digests: Digests::of(banks, bytes),
        authenticode: None,
        text: None,
    }
}

/// The manifest of a `uki` output.
pub fn measure_uki(name: &str, uki: &[u8], opts: &Options) -> Result<Manifest, MeasureError> {
    let banks = opts.banks();
    let artifact = ArtifactId {
        name: name.to_owned(),
        format: "uki".into(),
        size: uki.len() as u64,
        digests: Digests::of(&banks, uki),
    };
    predict(artifact, uki, None, opts)
}

/// The manifest of a `raw-efi` disk whose ESP boots `uki`.
pub fn measure_disk<R: Read + Seek>(
    name: &str,
    disk: &mut R,
    uki: &[u8],
    opts: &Options,
) -> Result<Manifest, MeasureError> {
    disk_manifest(name, None, disk, uki, opts)
}

/// The manifest of a disk container (`format`: `qcow2-efi`, `vhd`, ...)
/// whose guest disk `disk` boots `uki`: the artifact is the container
/// `file`, the PCRs and the `disk` component are those of the disk inside.
pub fn measure_wrapped_disk<F: Read + Seek, R: Read + Seek>(
    name: &str,
    format: &str,
    file: &mut F,
    disk: &mut R,
    uki: &[u8],
    opts: &Options,
) -> Result<Manifest, MeasureError> {
    let (size, digests) = hash_all(&opts.banks(), file)?;
    let artifact = ArtifactId {
        name: name.to_owned(),
        format: format.to_owned(),
        size,
        digests,
    };
    disk_manifest(name, Some(artifact), disk, uki, opts)
}

/// The manifest of an `iso-efi` image booted as a CD-ROM, whose El Torito
/// EFI image boots `uki`: as the UKI's, with the ISO as the artifact (no
/// GPT is measured).
pub fn measure_iso<F: Read + Seek>(
    name: &str,
    file: &mut F,
    uki: &[u8],
    opts: &Options,
) -> Result<Manifest, MeasureError> {
    let (size, digests) = hash_all(&opts.banks(), file)?;
    let artifact = ArtifactId {
        name: name.to_owned(),
        format: "iso-efi".into(),
        size,
        digests,
    };
    predict(artifact, uki, None, opts)
}

fn hash_all<R: Read + Seek>(banks: &[Bank], r: &mut R) -> Result<(u64, Digests), std::io::Error> {
    r.seek(SeekFrom::Start(0))?;
    let mut h = MultiHasher::new(banks);
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finish()))
}

/// A disk's manifest; without `artifact` the disk is the artifact.
fn disk_manifest<R: Read + Seek>(
    name: &str,
    artifact: Option<ArtifactId>,
    disk: &mut R,
    uki: &[u8],
    opts: &Options,
) -> Result<Manifest, MeasureError> {
    let (size, digests) = hash_all(&opts.banks(), disk)?;
    let artifact = artifact.unwrap_or_else(|| ArtifactId {
        name: name.to_owned(),
        format: "raw-efi".into(),
        size,
        digests: digests.clone(),
    });
    let gpt = gpt::gpt_event_data(disk)?;
    let mut m = predict(artifact, uki, Some(&gpt), opts)?;
    m.components.disk = Some(Component {
        size,
        digests,
        authenticode: None,
        text: None,
    });
    Ok(m)
}

fn predict(
    artifact: ArtifactId,
    uki: &[u8],
    gpt: Option<&[u8]>,
    opts: &Options,
) -> Result<Manifest, MeasureError> {
    let banks = opts.banks();
    let pe = Pe::parse(uki)?;
    let parts = UkiParts::from_pe(&pe)?;
    let kernel = parts.get(".linux").ok_or(MeasureError::NoKernel)?;
    let uki_auth = authenticode::digests(uki, &banks)?;
    let kernel_auth = authenticode::digests(kernel, &banks).map_err(MeasureError::Kernel)?;

    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let components = Components {
        uki: Component {
            authenticode: Some(uki_auth.clone()),
            ..component(&banks, uki)
        },
        kernel: Some(Component {
            authenticode: Some(kernel_auth.clone()),
            ..component(&banks, kernel)
        }),
        initrd: parts.get(".initrd").map(|b| component(&banks, b)),
        cmdline: parts.get(".cmdline").map(|b| Component {
            text: Some(text(b)),
            ..component(&banks, b)
        }),
        osrel: parts.get(".osrel").map(|b| Component {
            text: Some(text(b)),
            ..component(&banks, b)
        }),
        disk: None,
    };

    let mut by_pcr: Vec<(u32, Vec<Event>)> = vec![
        (2, vec![model::separator(2, &banks)]),
        (3, vec![model::separator(3, &banks)]),
        (4, model::pcr4_events(&banks, &uki_auth, Some(&kernel_auth))),
        (5, model::pcr5_events(&banks, gpt)),
        (6, vec![model::separator(6, &banks)]),
        (7, model::pcr7_events(&banks)),
        (9, stub::pcr9_events(&parts, &banks)),
        (11, stub::pcr11_events(&parts, &banks)),
    ];
    by_pcr.sort_by_key(|(p, _)| *p);
    let pcrs: Vec<PcrPrediction> = by_pcr
        .into_iter()
        .map(|(pcr, events)| PcrPrediction::from_events(pcr, &banks, events, model::NAME))
        .collect();
    let systemd_measure = banks
        .iter()
        .map(|b| {
            let value = pcrs
                .iter()
                .find(|p| p.pcr == 11)
                .and_then(|p| p.values.get(*b))
                .map(hex::encode)
                .unwrap_or_default();
            (
                *b,
                vec![SystemdPcr {
                    pcr: 11,
                    hash: value,
                }],
            )
        })
        .collect();
    Ok(Manifest {
        manifest_version: MANIFEST_VERSION,
        artifact,
        spec_digest: opts.spec_digest.clone(),
        reference_model: model::info(),
        banks,
        components,
        pcrs,
        systemd_measure,
    })
}

/// PCR 11 for separate section files, as `systemd-measure calculate`
/// takes them: `(".linux", bytes)`, ...
pub fn pcr11_of_files(files: &[(&str, Vec<u8>)], bank: Bank) -> Vec<u8> {
    let parts = UkiParts::from_files(files);
    event::replay(bank, 11, &stub::pcr11_events(&parts, &[bank]))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::authenticode::tests::synthetic_pe;
    use super::eventlog::{encode, EventLog};
    use super::*;

    fn uki(initrd: &[u8]) -> Vec<u8> {
        let kernel = synthetic_pe(&[(".text", &[0x90; 64], 64)], &[], &[]);
        synthetic_pe(
            &[
                (".text", &[0xc3; 32], 32),
                (".osrel", b"ID=kiln\n", 8),
                (".cmdline", b"console=ttyS0", 13),
                (".linux", &kernel, kernel.len() as u32),
                (".initrd", initrd, initrd.len() as u32),
            ],
            &[],
            &[],
        )
    }

    /// The manifest's events as a log, PCR by PCR.
    fn log_of(m: &Manifest) -> Vec<u8> {
        let events: Vec<_> = m
            .pcrs
            .iter()
            .flat_map(|p| &p.events)
            .map(|e| (e.pcr, e.kind, e.digests.0.clone(), b"x".to_vec()))
            .collect();
        encode(&m.banks, &events)
    }

    fn values(m: &Manifest) -> BTreeMap<u32, Vec<u8>> {
        m.pcrs
            .iter()
            .map(|p| (p.pcr, p.values.get(Bank::Sha256).unwrap().to_vec()))
            .collect()
    }

    #[test]
    fn same_input_same_manifest_and_it_round_trips() {
        let opts = Options {
            banks: vec![Bank::Sha1, Bank::Sha384],
            spec_digest: Some(format!("sha256:{}", "ab".repeat(32))),
        };
        let a = measure_uki("boot.efi", &uki(b"initrd"), &opts).unwrap();
        let b = measure_uki("boot.efi", &uki(b"initrd"), &opts).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(a.banks, [Bank::Sha1, Bank::Sha256, Bank::Sha384]);
        let pcrs: Vec<u32> = a.pcrs.iter().map(|p| p.pcr).collect();
        assert_eq!(pcrs, [2, 3, 4, 5, 6, 7, 9, 11]);
        assert_eq!(Manifest::parse(&a.to_bytes()).unwrap(), a);
        assert_eq!(
            a.systemd_measure[&Bank::Sha256][0].hash,
            hex::encode(a.pcr(11).unwrap().values.get(Bank::Sha256).unwrap())
        );
        // A value that does not follow from the events is refused.
        let mut forged = a.clone();
        forged.pcrs[6].values.0.insert(Bank::Sha256, vec![0; 32]);
        assert!(Manifest::parse(&forged.to_bytes()).is_err());
    }

    #[test]
    fn attest_accepts_its_own_log_and_names_the_event_of_another_build() {
        let opts = Options::default();
        let m = measure_uki("boot.efi", &uki(b"initrd"), &opts).unwrap();
        let log = EventLog::parse(&log_of(&m)).unwrap();
        let report = attest::verify(&m, &log, &values(&m), Bank::Sha256).unwrap();
        assert!(report.ok(), "{report:#?}");

        let other = measure_uki("boot.efi", &uki(b"other initrd"), &opts).unwrap();
        let other_log = EventLog::parse(&log_of(&other)).unwrap();
        let report = attest::verify(&m, &other_log, &values(&other), Bank::Sha256).unwrap();
        assert!(!report.ok());
        let bad: Vec<u32> = report
            .pcrs
            .iter()
            .filter(|p| !p.matches)
            .map(|p| p.pcr)
            .collect();
        // The initrd is in PCR 9 and 11, and in the UKI's Authenticode hash.
        assert_eq!(bad, [4, 9, 11]);
        let nine = report.pcrs.iter().find(|p| p.pcr == 9).unwrap();
        let d = nine.difference.as_ref().unwrap();
        assert_eq!(d.position, 2);
        assert!(d.message.contains("Linux initrd"), "{}", d.message);

        // A log that does not replay to the reported PCRs is caught too.
        let mut lying = values(&m);
        lying.insert(0, vec![1; 32]);
        let report = attest::verify(&m, &log, &lying, Bank::Sha256).unwrap();
        assert!(!report.ok());
    }

    #[test]
    fn disks_measure_their_gpt() {
        let disk = super::gpt::tests::disk_with(&[[7; 16]]);
        let m = measure_disk(
            "d.img",
            &mut std::io::Cursor::new(&disk),
            &uki(b"i"),
            &Options::default(),
        )
        .unwrap();
        let five = m.pcr(5).unwrap();
        assert_eq!(five.events.len(), 4);
        assert_eq!(five.events[1].kind, event::EventType::EFI_GPT_EVENT);
        assert_eq!(m.components.disk.as_ref().unwrap().size, disk.len() as u64);
        let u = measure_uki("u.efi", &uki(b"i"), &Options::default()).unwrap();
        assert_eq!(u.pcr(5).unwrap().events.len(), 3);
        assert_eq!(u.pcr(11), m.pcr(11));
    }

    #[test]
    fn not_a_uki() {
        let plain = synthetic_pe(&[(".text", &[1; 16], 16)], &[], &[]);
        assert!(matches!(
            measure_uki("x", &plain, &Options::default()),
            Err(MeasureError::NoKernel)
        ));
        assert!(measure_uki("x", b"nope", &Options::default()).is_err());
    }
}
