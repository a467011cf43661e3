//! `kiln cache`: the local image store (an OCI image layout that linuxkit's
//! `~/.linuxkit/cache` tools read too).
//!
//! | subcommand | what it does |
//! |---|---|
//! | `ls` | every named image: reference, digest, platforms, size |
//! | `pull REF...` | fetches images (or, `--offline`, checks the store has them) |
//! | `import FILE` | reads an OCI-layout or `docker save` tar |
//! | `export REF -o FILE` | writes an OCI-layout tar |
//! | `rm REF...` | removes names and the blobs only they used |
//! | `clean` | deletes blobs no name reaches |
//! | `verify` | re-hashes every blob; exit 1 on corruption |
//!
//! Exit codes: 0 success, 1 the operation failed (registry error, image
//! missing, corruption), 2 usage errors, unreadable files or config.

mod archive;
pub(super) mod config;
mod ls;
mod maintain;
mod progress;
mod pull;

use std::fmt;
use std::path::PathBuf;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::store::{self, Store};

use super::exit;

/// Manage the local image store.
///
/// The store is an OCI image layout keyed by fully expanded references,
/// interchangeable with linuxkit's cache.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store directory [default: $KILN_HOME/cache; KILN_HOME defaults to
    /// ~/.kiln].
    #[arg(long, global = true, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Never contact a registry: `pull` only checks that the images are in
    /// the store, and names each one that is not.
    #[arg(long, global = true)]
    offline: bool,
    /// kiln's config file [default: $KILN_HOME/config.toml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Ls(ls::Args),
    Pull(pull::Args),
    Import(archive::ImportArgs),
    Export(archive::ExportArgs),
    Rm(maintain::RmArgs),
    Clean(maintain::CleanArgs),
    Verify(maintain::VerifyArgs),
}

/// What every subcommand gets: the global options, resolved.
struct Context {
    store_dir: PathBuf,
    offline: bool,
    config_file: Option<PathBuf>,
}

impl Context {
    /// Opens (creating if needed) the store.
    fn open_store(&self) -> Result<Store, Failure> {
        Store::open(&self.store_dir).map_err(|e| {
            Failure::usage(format!(
                "cannot open the store {}: {e}",
                self.store_dir.display()
            ))
        })
    }
}

pub fn run(args: Args) -> u8 {
    let home = store::kiln_home();
    let store_dir = match (&args.cache, &home) {
        (Some(dir), _) => dir.clone(),
        (None, Some(home)) => store::default_store_dir(home),
        (None, None) => {
            return Failure::usage("neither --cache, KILN_HOME nor HOME is set").report();
        }
    };
    let config_file = args
        .config
        .clone()
        .or_else(|| home.as_ref().map(|h| config::default_path(h)));
    let ctx = Context {
        store_dir,
        offline: args.offline,
        config_file,
    };
    let result = match args.command {
        Command::Ls(a) => ls::run(&ctx, a),
        Command::Pull(a) => pull::run(&ctx, a),
        Command::Import(a) => archive::import(&ctx, a),
        Command::Export(a) => archive::export(&ctx, a),
        Command::Rm(a) => maintain::rm(&ctx, a),
        Command::Clean(a) => maintain::clean(&ctx, a),
        Command::Verify(a) => maintain::verify(&ctx, a),
    };
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

/// A subcommand's failure: the message for stderr and the exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad usage, unreadable input or config (exit 2).
    fn usage(message: impl fmt::Display) -> Self {
        Self {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }

    /// The operation failed (exit 1).
    fn failed(message: impl fmt::Display) -> Self {
        Self {
            code: exit::INVALID,
            message: message.to_string(),
        }
    }

    fn report(self) -> u8 {
        eprintln!("kiln: {}", self.message);
        self.code
    }
}

/// Parses reference arguments; every bad one is reported (exit 2).
fn parse_references(inputs: &[String]) -> Result<Vec<Reference>, Failure> {
    let mut refs = Vec::new();
    let mut bad = Vec::new();
    for input in inputs {
        match Reference::parse(input) {
            Ok(r) => refs.push(r),
            Err(e) => bad.push(e.to_string()),
        }
    }
    if bad.is_empty() {
        Ok(refs)
    } else {
        Err(Failure::usage(bad.join("\nkiln: ")))
    }
}

/// `1.5 MiB`, `912 B`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_readable() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn bad_references_are_usage_errors_naming_each() {
        let err = parse_references(&["Alpine".into(), "ok".into(), "x:-y".into()]).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("Alpine"), "{}", err.message);
        assert!(err.message.contains("-y"), "{}", err.message);
    }
}
