//! Helpers for the `kiln cache` acceptance tests: the `kiln` binary, the
//! fixtures (built once per test binary), registries holding some of them,
//! and a throwaway `KILN_HOME` per test.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::store::{Digest, Platform, ResolvedImage, Store};
use kiln_e2e::fixtures::{self, Fixture, FixtureOptions, FixtureSet};
use kiln_e2e::registry::Registry;
use tempfile::TempDir;

/// The `kiln` binary (see [`kiln_e2e::tools::kiln_bin`]).
pub fn kiln_bin() -> PathBuf {
    kiln_e2e::tools::kiln_bin().unwrap_or_else(|e| panic!("{e:#}"))
}

/// A `kiln` command run in `dir`, with `dir/home` as its `KILN_HOME` (and
/// `HOME`, so no real Docker or kiln config is read).
pub fn kiln_in(dir: &Path) -> Command {
    let mut cmd = Command::new(kiln_bin());
    cmd.current_dir(dir)
        .env("KILN_HOME", dir.join("home"))
        .env("HOME", dir.join("home"));
    cmd
}

/// Every fixture, built once per test binary into
/// `$CARGO_TARGET_TMPDIR/<test binary>-fixtures` (rebuilt each run).
pub fn fixtures() -> &'static FixtureSet {
    static SET: OnceLock<FixtureSet> = OnceLock::new();
    SET.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let stem = exe
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cache".to_owned());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{stem}-fixtures"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let opts = FixtureOptions::from_env(&dir).expect("fixture options");
        fixtures::build_all(&opts).unwrap_or_else(|e| panic!("building fixtures: {e:#}"))
    })
}

/// A fresh registry holding `fixtures` under their names and tags.
pub fn registry_with(fixtures: &[&Fixture]) -> Registry {
    let registry = Registry::start().unwrap_or_else(|e| panic!("{e:#}"));
    for f in fixtures {
        registry
            .push(f)
            .unwrap_or_else(|e| panic!("pushing {}: {e:#}", f.name));
    }
    registry
}

/// `127.0.0.1:<port>/<name>:<tag>` of a pushed fixture.
pub fn reference(registry: &Registry, fixture: &Fixture) -> String {
    registry.reference(&fixture.name, &fixture.tag)
}

/// `127.0.0.1:<port>/<name>@<digest>` of a pushed fixture.
pub fn pinned(registry: &Registry, fixture: &Fixture) -> String {
    format!("{}/{}@{}", registry.host(), fixture.name, fixture.digest())
}

/// A `KILN_HOME` of its own (also `HOME`, so no real Docker config is read).
pub struct Kiln {
    pub home: TempDir,
}

/// What one `kiln` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "exit code; output:\n{self}");
        assert!(!self.stderr.contains("panicked"), "{self}");
        // Never terminal control sequences when not on a terminal.
        assert!(
            !self.stderr.contains('\u{1b}') && !self.stderr.contains('\r'),
            "{self}"
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Kiln {
    pub fn new() -> Kiln {
        Kiln {
            home: tempfile::Builder::new()
                .prefix("kiln-cache-e2e-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// `$KILN_HOME/cache`.
    pub fn store_dir(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    /// The store, opened with the library.
    pub fn store(&self) -> Store {
        Store::open(self.store_dir()).expect("open store")
    }

    /// `kiln cache ARGS...`, configured for this home, waited for.
    pub fn cache<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let out = self.command(args).output().expect("run kiln");
        run_of(out)
    }

    /// The command for `kiln cache ARGS...`, not started.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(kiln_bin());
        cmd.arg("cache")
            .args(args)
            .env("KILN_HOME", self.home.path())
            .env("HOME", self.home.path())
            .env("DOCKER_CONFIG", self.home.path().join(".docker"))
            .env_remove("KILN_MIRROR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Resolves `reference` for `platform` from the store alone.
    pub fn resolve(&self, reference: &str, platform: &Platform) -> ResolvedImage {
        let r = Reference::parse(reference).expect("reference");
        self.store()
            .resolve(std::slice::from_ref(&r), platform)
            .unwrap_or_else(|e| panic!("{e}"))
            .pop()
            .expect("one image")
    }

    /// The digest stored under `name`, if any.
    pub fn digest_of(&self, name: &str) -> Option<String> {
        self.store()
            .index()
            .expect("index")
            .named(name)
            .next()
            .map(|d| d.digest.to_string())
    }

    /// Blob file names in the store (temporary files included).
    pub fn blob_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.store_dir().join("blobs/sha256"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Path of a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.store().blob_path(digest)
    }
}

pub fn run_of(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `linux/amd64`.
pub fn amd64() -> Platform {
    Platform::linux("amd64")
}

/// `linux/arm64`.
pub fn arm64() -> Platform {
    Platform::linux("arm64")
}

/// The fixture's platform manifest digest for `arch`.
pub fn manifest_for(fixture: &Fixture, arch: &str) -> String {
    fixture
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| p.architecture == arch))
        .unwrap_or_else(|| panic!("{} has no {arch} manifest", fixture.name))
        .digest
        .clone()
}
