//! `kiln attest verify`: a measurement manifest against a booted machine's
//! TCG event log and PCR values.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use kiln_backend::engine::measure::attest::{self, Report};
use kiln_backend::engine::measure::bank::Bank;
use kiln_backend::engine::measure::eventlog::EventLog;
use kiln_backend::engine::measure::manifest::Manifest;
use kiln_backend::engine::measure::output::envelope_path;
use kiln_backend::engine::measure::signed;
use kiln_signer::dsse::Envelope;
use kiln_signer::PublicKey;

use super::exit::{self, usage, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check a measurement manifest against an event log and PCR values
    /// read from a booted machine. Says which PCRs match and, for each
    /// that does not, the first event that differs. Exit 0 when every
    /// predicted PCR matches, 1 when one does not.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The event log: `/sys/kernel/security/tpm0/binary_bios_measurements`,
    /// binary or base64.
    #[arg(long, value_name = "FILE")]
    log: PathBuf,
    /// The PCR values the TPM reports: lines `[BANK] INDEX HEX` (also
    /// `INDEX: HEX` or `INDEX=HEX`); the bank defaults to --bank.
    #[arg(long, value_name = "FILE")]
    pcrs: Option<PathBuf>,
    /// The bank to check.
    #[arg(long, default_value = "sha256", value_name = "BANK")]
    bank: Bank,
    /// Verify the manifest's signature with this public key first
    /// (the envelope is MANIFEST.dsse unless --signature says otherwise).
    #[arg(long, value_name = "PUBKEY")]
    key: Option<PathBuf>,
    /// The DSSE envelope of the manifest.
    #[arg(long, value_name = "FILE", requires = "key")]
    signature: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The manifest (`NAME-measurements.json`).
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,
}

pub fn run(args: Args) -> u8 {
    let Command::Verify(args) = args.command;
    exit::report(verify(&args))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    fs::read(path).map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn verify(args: &VerifyArgs) -> Result<u8, Failure> {
    let bytes = read(&args.manifest)?;
    let manifest = match &args.key {
        Some(key_path) => {
            let key = PublicKey::load(key_path).map_err(usage)?;
            let env_path = args
                .signature
                .clone()
                .unwrap_or_else(|| envelope_path(&args.manifest));
            let envelope = Envelope::from_json(&read(&env_path)?)
                .map_err(|e| (exit::INVALID, format!("{}: {e}", env_path.display())))?;
            let (manifest, key) =
                signed::verify(&envelope, Some(&bytes), std::slice::from_ref(&key)).map_err(
                    |e| {
                        (
                            exit::INVALID,
                            format!("{}: signature check failed: {e}", args.manifest.display()),
                        )
                    },
                )?;
            eprintln!(
                "kiln: manifest signature verified with {}",
                key.fingerprint()
            );
            manifest
        }
        None => Manifest::parse(&bytes)
            .map_err(|e| (exit::INVALID, format!("{}: {e}", args.manifest.display())))?,
    };
    let log_bytes = decode_log(read(&args.log)?);
    let log = EventLog::parse(&log_bytes)
        .map_err(|e| (exit::INVALID, format!("{}: {e}", args.log.display())))?;
    let reported = match &args.pcrs {
        Some(p) => parse_pcrs(&String::from_utf8_lossy(&read(p)?), args.bank)
            .map_err(|e| usage(format!("{}: {e}", p.display())))?,
        None => BTreeMap::new(),
    };
    let report = attest::verify(&manifest, &log, &reported, args.bank)
        .map_err(|e| (exit::INVALID, e.to_string()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_report(&report, &manifest);
    }
    Ok(if report.ok() { exit::OK } else { exit::INVALID })
}

/// A log given as base64 text (as printed on a serial console) is decoded.
fn decode_log(bytes: Vec<u8>) -> Vec<u8> {
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let looks_base64 = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    if looks_base64 && bytes.iter().all(|b| b.is_ascii()) {
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&text) {
            return decoded;
        }
    }
    bytes
}

/// Lines `[BANK] INDEX HEX`, with `:` or `=` also separating; a leading
/// `PCR` word and blank or `#` lines are ignored.
pub fn parse_pcrs(text: &str, bank: Bank) -> Result<BTreeMap<u32, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ':' || c == '=')
            .filter(|w| !w.is_empty())
            .filter(|w| !w.eq_ignore_ascii_case("pcr"))
            .collect();
        let bad = || format!("line {}: `{line}` is not `[BANK] INDEX HEX`", n + 1);
        let (line_bank, index, value) = match words.as_slice() {
            [index, value] => (bank, *index, *value),
            [b, index, value] => (
                b.parse::<Bank>()
                    .map_err(|e| format!("line {}: {e}", n + 1))?,
                *index,
                *value,
            ),
            _ => return Err(bad()),
        };
        if line_bank != bank {
            continue;
        }
        let index: u32 = index.parse().map_err(|_| bad())?;
        let value = value.strip_prefix("0x").unwrap_or(value);
        let bytes = hex::decode(value).map_err(|_| bad())?;
        if bytes.len() != bank.size() || index > 23 {
            return Err(bad());
        }
        out.insert(index, bytes);
    }
    Ok(out)
}

fn print_report(report: &Report, manifest: &Manifest) {
    println!(
        "{} ({}), bank {}, reference model {}",
        manifest.artifact.name, manifest.artifact.format, report.bank, report.model
    );
    for p in &report.pcrs {
        let state = if p.matches { "match" } else { "MISMATCH" };
        let basis = match p.basis {
            Some(b) => serde_json::to_value(b)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            None => "not predicted".to_owned(),
        };
        let value = p
            .reported
            .as_deref()
            .or(p.replayed.as_deref())
            .unwrap_or("-");
        println!("PCR {:>2}  {state:<8}  {basis:<18}  {value}", p.pcr);
        for problem in &p.problems {
            println!("        {problem}");
        }
    }
    let bad = report.pcrs.iter().filter(|p| !p.matches).count();
    if bad == 0 {
        println!("all predicted PCRs match");
    } else {
        println!("{bad} PCR(s) do not match");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_lines() {
        let h = "aa".repeat(32);
        let text = format!(
            "# x\nPCR sha256 4 {h}\n9: {h}\nsha1 4 {}\n11={h}\n",
            "bb".repeat(20)
        );
        let m = parse_pcrs(&text, Bank::Sha256).unwrap();
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [4, 9, 11]);
        assert!(parse_pcrs("4 abc", Bank::Sha256).is_err());
        assert!(parse_pcrs(&format!("99 {h}"), Bank::Sha256).is_err());
        assert!(parse_pcrs("x y z w", Bank::Sha256).is_err());
    }

    #[test]
    fn base64_logs_are_decoded() {
        assert_eq!(decode_log(b"AAEC\nAw==\n".to_vec()), vec![0, 1, 2, 3]);
        assert_eq!(decode_log(vec![0, 159, 3]), vec![0, 159, 3]);
    }
}
