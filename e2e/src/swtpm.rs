//! A software TPM (swtpm) for measured-boot tests (OVMF itself, with a
//! fresh NVRAM per boot, is [`crate::firmware`]).
//!
//! [`Swtpm::start`] provisions a fresh TPM 2.0 state with only the banks
//! asked for (`swtpm_setup --pcr-banks`; sha256 alone makes the firmware
//! hash everything once, not four times) and serves it on a Unix socket;
//! [`Swtpm::qemu_args`] attach it as a `tpm-tis` device. swtpm exits when
//! QEMU disconnects; dropping the [`Swtpm`] kills it if it has not.
//!
//! The host cannot read the PCRs while QEMU owns the TPM, so the guest
//! prints them: [`TpmDump::parse`] reads the fixture init's `kiln.tpm`
//! output (`KILN-MARKER pcr BANK I HEX` and the base64 event log).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;

use crate::qemu::{die_with_parent, ConsoleLine};
use crate::tools;

/// A running swtpm with its own state directory.
pub struct Swtpm {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Swtpm {
    /// A fresh TPM 2.0 with exactly `banks` (e.g. `["sha256"]`).
    pub fn start(banks: &[&str]) -> anyhow::Result<Swtpm> {
        let swtpm = tools::find("swtpm", "swtpm")?;
        let setup = tools::find("swtpm_setup", "swtpm-tools")?;
        let dir = tempfile::Builder::new().prefix("kiln-swtpm").tempdir()?;
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state)?;
        tools::run(
            Command::new(setup)
                .arg("--tpm2")
                .arg("--tpmstate")
                .arg(&state)
                .args(["--pcr-banks", &banks.join(",")])
                .env("XDG_CONFIG_HOME", dir.path()),
        )
        .context("provisioning the swtpm state")?;
        let socket = dir.path().join("swtpm-sock");
        let log = dir.path().join("swtpm.log");
        let mut cmd = Command::new(swtpm);
        cmd.args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--log")
            .arg(format!("file={},level=1", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let line = tools::describe(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{line}`"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!(
                    "`{line}` exited ({status}) before creating its socket: {}",
                    err.trim()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`{line}` did not create {} within 20 s", socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Swtpm {
            child,
            socket,
            log,
            _dir: dir,
        })
    }

    /// The QEMU arguments that attach this TPM as `tpm-tis`.
    pub fn qemu_args(&self) -> Vec<OsString> {
        vec![
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", self.socket.display()).into(),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-tis,tpmdev=tpm0".into(),
        ]
    }

    /// swtpm's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What the fixture init printed with `kiln.tpm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmDump {
    /// `(bank, index)` → value.
    pub pcrs: BTreeMap<(String, u32), Vec<u8>>,
    /// `binary_bios_measurements`.
    pub event_log: Vec<u8>,
}

impl TpmDump {
    /// Reads the PCR markers and the event log from console lines.
    pub fn parse(lines: &[ConsoleLine]) -> anyhow::Result<TpmDump> {
        let mut pcrs = BTreeMap::new();
        let mut b64 = String::new();
        let mut in_log = false;
        let mut ended = false;
        for l in lines {
            let text = l.text.trim();
            if let Some(rest) = marker(text, "pcr ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let [bank, index, value] = words.as_slice() else {
                    bail!("malformed PCR line `{text}`");
                };
                let value = hex::decode(value.to_ascii_lowercase())
                    .with_context(|| format!("PCR line `{text}`"))?;
                pcrs.insert(((*bank).to_owned(), index.parse()?), value);
            } else if marker(text, "eventlog begin").is_some() {
                in_log = true;
            } else if marker(text, "eventlog end").is_some() {
                in_log = false;
                ended = true;
            } else if in_log {
                if !text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
                {
                    bail!("a console line inside the base64 event log is not base64: `{text}`");
                }
                b64.push_str(text);
            }
        }
        if !ended {
            bail!("the console has no complete `KILN-MARKER eventlog begin` … `end` block");
        }
        let event_log = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("decoding the event log")?;
        Ok(TpmDump { pcrs, event_log })
    }

    pub fn pcr(&self, bank: &str, index: u32) -> Option<&[u8]> {
        self.pcrs.get(&(bank.to_owned(), index)).map(Vec::as_slice)
    }

    /// The PCRs of `bank` as `kiln attest verify --pcrs` reads them.
    pub fn pcr_file(&self, bank: &str) -> String {
        self.pcrs
            .iter()
            .filter(|((b, _), _)| b == bank)
            .map(|((b, i), v)| format!("{b} {i} {}\n", hex::encode(v)))
            .collect()
    }
}

fn marker<'a>(line: &'a str, what: &str) -> Option<&'a str> {
    let at = line.find("KILN-MARKER ")?;
    line[at + "KILN-MARKER ".len()..].strip_prefix(what)
}
