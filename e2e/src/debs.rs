//! Debian packages as fixture inputs. `apt-get download` puts the `.deb` in a
//! cache outside the repository, and `dpkg-deb -x` unpacks it once into a
//! per-package tree that later runs reuse. Nothing is installed on the host.
//!
//! Cache layout (`$KILN_E2E_CACHE`, default `/var/cache/kiln-e2e`):
//! `debs/<file>.deb`, `trees/<file>/` (the unpacked package) and `.lock`,
//! held while a package is downloaded or unpacked so that parallel tests
//! and test binaries share the work.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::tools;

/// Default cache directory when `KILN_E2E_CACHE` is unset.
pub const DEFAULT_CACHE: &str = "/var/cache/kiln-e2e";

/// The download-and-unpack cache.
#[derive(Debug, Clone)]
pub struct DebCache {
    dir: PathBuf,
}

/// One fetched package.
#[derive(Debug, Clone)]
pub struct Package {
    /// The name as requested, e.g. `busybox-static:arm64`.
    pub name: String,
    /// The `.deb` file name, which carries the exact version and architecture.
    pub file: String,
    /// The `.deb` file itself.
    pub deb: PathBuf,
    /// The unpacked package (`dpkg-deb -x`).
    pub tree: PathBuf,
}

/// What `apt-get download --print-uris` says about a package.
#[derive(Debug, Clone)]
struct Candidate {
    file: String,
    sha256: Option<String>,
}

impl DebCache {
    /// A cache rooted at `dir` (created on first use).
    pub fn new(dir: PathBuf) -> DebCache {
        DebCache { dir }
    }

    /// The cache named by `KILN_E2E_CACHE`, else [`DEFAULT_CACHE`].
    pub fn from_env() -> DebCache {
        let dir = std::env::var_os("KILN_E2E_CACHE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
        DebCache::new(dir)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Downloads (if needed) and unpacks (if needed) the apt candidate of `name`.
    pub fn fetch(&self, name: &str) -> anyhow::Result<Package> {
        let candidate = self.candidate(name)?;
        let stem = candidate.file.trim_end_matches(".deb").to_owned();
        let debs = self.dir.join("debs");
        let trees = self.dir.join("trees");
        let package = Package {
            name: name.to_owned(),
            deb: debs.join(&candidate.file),
            tree: trees.join(&stem),
            file: candidate.file.clone(),
        };
        if package.tree.is_dir() {
            return Ok(package);
        }
        fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
        fs::create_dir_all(&trees)?;
        let lock = File::create(self.dir.join(".lock"))?;
        lock.lock().context("cannot lock the deb cache")?;
        if package.tree.is_dir() {
            return Ok(package);
        }
        if !deb_is_valid(&package.deb, candidate.sha256.as_deref())? {
            self.apt(&["-oAPT::Sandbox::User=root", "download", name], &debs)?;
            if !deb_is_valid(&package.deb, candidate.sha256.as_deref())? {
                bail!(
                    "apt-get download {name} did not produce {} with the expected SHA-256",
                    package.deb.display()
                );
            }
        }
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&trees)?;
        tools::run(
            Command::new(tools::find("dpkg-deb", "dpkg")?)
                .arg("-x")
                .arg(&package.deb)
                .arg(tmp.path()),
        )?;
        fs::rename(tmp.keep(), &package.tree)
            .with_context(|| format!("cannot move the unpacked {name} into place"))?;
        Ok(package)
    }

    /// Runs `apt-get ARGS` in `cwd` with a package cache of our own: the
    /// host may disable apt's (Debian's container images do), which costs
    /// ~2 s per call. One apt-get at a time per process, so that two never
    /// race to write that cache.
    fn apt(&self, args: &[&str], cwd: &Path) -> anyhow::Result<String> {
        static APT: Mutex<()> = Mutex::new(());
        let _one_at_a_time = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = self.dir.join("apt");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cmd = Command::new(tools::find("apt-get", "apt")?);
        cmd.arg("-q")
            .arg(format!(
                "-oDir::Cache::pkgcache={}",
                dir.join("pkgcache.bin").display()
            ))
            .arg(format!(
                "-oDir::Cache::srcpkgcache={}",
                dir.join("srcpkgcache.bin").display()
            ))
            .args(args)
            .current_dir(cwd);
        tools::run_stdout(&mut cmd)
    }

    /// The apt candidate of `name`, asked once per process.
    fn candidate(&self, name: &str) -> anyhow::Result<Candidate> {
        static SEEN: OnceLock<Mutex<HashMap<String, Candidate>>> = OnceLock::new();
        let mut seen = SEEN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = seen.get(name) {
            return Ok(c.clone());
        }
        let c = self.ask_apt(name)?;
        seen.insert(name.to_owned(), c.clone());
        Ok(c)
    }

    fn ask_apt(&self, name: &str) -> anyhow::Result<Candidate> {
        let out = self
            .apt(&["download", "--print-uris", name], &self.dir)
            .with_context(|| {
                format!(
                    "apt knows no candidate for `{name}`; run `apt-get update` \
                     (and `.ci/install-deps` for the arm64 architecture)"
                )
            })?;
        // 'URL' FILE SIZE HASH
        let fields: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with('\''))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        let Some(file) = fields.get(1) else {
            bail!("apt-get download --print-uris {name} printed no URI: {out}");
        };
        let sha256 = fields
            .get(3)
            .and_then(|h| h.strip_prefix("SHA256:"))
            .map(str::to_owned);
        Ok(Candidate {
            file: (*file).to_owned(),
            sha256,
        })
    }
}

impl Package {
    /// A control field of the package (`dpkg-deb -f`), e.g. `Depends`.
    pub fn control_field(&self, field: &str) -> anyhow::Result<String> {
        let out = tools::run_stdout(
            Command::new(tools::find("dpkg-deb", "dpkg")?)
                .arg("-f")
                .arg(&self.deb)
                .arg(field),
        )?;
        Ok(out.trim().to_owned())
    }

    /// Package names from the `Depends` field (version constraints and
    /// alternatives beyond the first dropped).
    pub fn depends(&self) -> anyhow::Result<Vec<String>> {
        let field = self.control_field("Depends")?;
        Ok(parse_depends(&field))
    }
}

/// `"libc6 (>= 2.34), foo | bar"` → `["libc6", "foo"]`.
pub fn parse_depends(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|dep| {
            let first = dep.split('|').next()?.trim();
            let name = first.split([' ', '(']).next()?.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

fn deb_is_valid(path: &Path, sha256: Option<&str>) -> anyhow::Result<bool> {
    if !path.is_file() {
        return Ok(false);
    }
    let Some(expected) = sha256 else {
        return Ok(true);
    };
    let mut hasher = Sha256::new();
    std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()) == expected)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_drops_versions_and_alternatives() {
        assert_eq!(
            parse_depends("libc6 (>= 2.34), libseccomp2 (>= 2.5.0), a | b"),
            ["libc6", "libseccomp2", "a"]
        );
        assert_eq!(
            parse_depends("linux-image-6.1.0-56-amd64 (= 6.1.192-2)"),
            ["linux-image-6.1.0-56-amd64"]
        );
    }
}
