//! Finding the packages installed in an image: its layers are flattened
//! (whiteouts applied, streaming) into a sink that keeps only the package
//! databases and `os-release`, then the databases are parsed.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::engine::flatten::{self, FlattenOptions, LayerSource, Role};
use crate::engine::fs::{Entry, Kind, Sink};
use crate::engine::store::{ResolvedImage, Store};

use super::purl::Purl;
use super::SbomError;

pub const DPKG_STATUS: &str = "var/lib/dpkg/status";
/// Distroless images keep one status file per package here.
pub const DPKG_STATUS_DIR: &str = "var/lib/dpkg/status.d/";
pub const APK_INSTALLED: &str = "lib/apk/db/installed";
const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// Most bytes kept from one image's databases together.
const MAX_CAPTURE: u64 = 256 << 20;

/// Which database a package was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Db {
    Dpkg,
    Apk,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Installed {
    pub db: Db,
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package (dpkg `Source`, apk origin) when it differs.
    pub upstream: Option<String>,
    /// The database file it was listed in, relative to the image root.
    pub path: String,
}

impl Installed {
    /// The package URL; `distro` is the os-release `ID`, if any.
    pub fn purl(&self, distro: Option<&str>) -> String {
        let (kind, default_ns) = match self.db {
            Db::Dpkg => ("deb", "debian"),
            Db::Apk => ("apk", "alpine"),
        };
        Purl::new(kind, &self.name)
            .namespace(distro.unwrap_or(default_ns))
            .version(&self.version)
            .qualifier("arch", &self.arch)
            .qualifier("upstream", self.upstream.as_deref().unwrap_or(""))
            .to_string()
    }
}

/// What an image holds: its packages (sorted) and its distribution id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    pub packages: Vec<Installed>,
    pub distro: Option<String>,
}

/// Keeps the files [`wanted`] names, up to [`MAX_CAPTURE`] bytes.
#[derive(Default)]
struct Capture {
    files: BTreeMap<String, Vec<u8>>,
    bytes: u64,
    too_large: Option<String>,
}

fn wanted(path: &str) -> bool {
    path == DPKG_STATUS
        || path == APK_INSTALLED
        || OS_RELEASE.contains(&path)
        || path
            .strip_prefix(DPKG_STATUS_DIR)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

impl Sink for Capture {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        if entry.kind != Kind::File || !wanted(&entry.path) {
            return Ok(());
        }
        self.bytes += entry.size;
        if self.bytes > MAX_CAPTURE {
            self.too_large = Some(entry.path.clone());
            return Err(io::Error::other("package database too large"));
        }
        let mut buf = Vec::with_capacity(entry.size as usize);
        data.take(entry.size).read_to_end(&mut buf)?;
        self.files.insert(entry.path.clone(), buf);
        Ok(())
    }
}

/// Scans `image`'s layers for installed packages.
pub fn scan(store: &Store, written: &str, image: &ResolvedImage) -> Result<Found, SbomError> {
    let layers = LayerSource::for_image(store, image);
    let mut capture = Capture::default();
    let result = flatten::flatten(
        &layers,
        &FlattenOptions::default(),
        Role::Raw,
        "",
        (written, "sbom"),
        &mut capture,
    );
    if let Some(path) = capture.too_large {
        return Err(SbomError::DatabaseTooLarge {
            image: written.to_owned(),
            path,
            max: MAX_CAPTURE,
        });
    }
    result.map_err(|error| SbomError::Scan {
        image: written.to_owned(),
        error: Box::new(error),
    })?;
    parse_found(written, &capture.files)
}

fn parse_found(written: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<Found, SbomError> {
    let text = |path: &str, bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| SbomError::Database {
            image: written.to_owned(),
            path: path.to_owned(),
            message: "not UTF-8".into(),
        })
    };
    let mut packages = Vec::new();
    for (path, bytes) in files {
        let body = text(path, bytes)?;
        if path == DPKG_STATUS || path.starts_with(DPKG_STATUS_DIR) {
            // status.d files carry no Status field: they list installed
            // packages only.
            let require_status = path == DPKG_STATUS;
            packages.extend(parse_dpkg(&body, path, require_status));
        } else if path == APK_INSTALLED {
            packages.extend(parse_apk(&body, path));
        }
    }
    packages.sort();
    packages.dedup();
    let distro = OS_RELEASE
        .iter()
        .find_map(|p| files.get(*p))
        .and_then(|b| os_release_id(&String::from_utf8_lossy(b)));
    Ok(Found { packages, distro })
}

/// Paragraphs of an RFC 822-style control file, continuation lines folded.
fn paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(v) = last.as_ref().and_then(|k| current.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            let key = k.trim().to_ascii_lowercase();
            current.insert(key.clone(), v.trim().to_owned());
            last = Some(key);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

pub fn parse_dpkg(text: &str, path: &str, require_status: bool) -> Vec<Installed> {
    paragraphs(text)
        .into_iter()
        .filter(|p| {
            !require_status
                || p.get("status")
                    .is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"))
        })
        .filter_map(|p| {
            let name = p.get("package")?.clone();
            let version = p.get("version").cloned().unwrap_or_default();
            // `Source: glibc (2.36-9)`: the name before any version.
            let upstream = p
                .get("source")
                .and_then(|s| s.split_whitespace().next())
                .filter(|s| *s != name)
                .map(str::to_owned);
            Some(Installed {
                db: Db::Dpkg,
                arch: p.get("architecture").cloned().unwrap_or_default(),
                name,
                version,
                upstream,
                path: path.to_owned(),
            })
        })
        .collect()
}

/// apk's `installed`: one `X:value` per line, a blank line between
/// packages; `P` name, `V` version, `A` architecture, `o` origin.
pub fn parse_apk(text: &str, path: &str) -> Vec<Installed> {
    let mut out = Vec::new();
    let mut fields: BTreeMap<char, String> = BTreeMap::new();
    let mut flush = |fields: &mut BTreeMap<char, String>| {
        if let Some(name) = fields.get(&'P').cloned() {
            out.push(Installed {
                db: Db::Apk,
                version: fields.get(&'V').cloned().unwrap_or_default(),
                arch: fields.get(&'A').cloned().unwrap_or_default(),
                upstream: fields.get(&'o').filter(|o| **o != name).cloned(),
                name,
                path: path.to_owned(),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.is_empty() {
            flush(&mut fields);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(key), Some(':')) = (chars.next(), chars.next()) {
            fields
                .entry(key)
                .or_insert_with(|| chars.as_str().to_owned());
        }
    }
    flush(&mut fields);
    out
}

/// The `ID` of an os-release file, if it is a plain lower-case token.
fn os_release_id(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("ID=")?.trim().trim_matches(['"', '\'']);
        let ok = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        ok.then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nMulti-Arch: same\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n shared libraries\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: busybox-static\nStatus: install ok installed\nArchitecture: amd64\nSource: busybox (1:1.35.0-4)\nVersion: 1:1.35.0-4+b3\n";

    #[test]
    fn dpkg_status_keeps_installed_packages() {
        let got = parse_dpkg(STATUS, DPKG_STATUS, true);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "libc6");
        assert_eq!(got[0].upstream.as_deref(), Some("glibc"));
        assert_eq!(got[1].version, "1:1.35.0-4+b3");
        assert_eq!(got[1].upstream.as_deref(), Some("busybox"));
        assert_eq!(
            got[1].purl(None),
            "pkg:deb/debian/busybox-static@1%3A1.35.0-4%2Bb3?arch=amd64&upstream=busybox"
        );
    }

    #[test]
    fn status_d_needs_no_status_field() {
        let got = parse_dpkg(
            "Package: tzdata\nVersion: 2024a\nArchitecture: all\n",
            "x",
            false,
        );
        assert_eq!(got.len(), 1);
        assert!(parse_dpkg("Package: tzdata\nVersion: 2024a\n", "x", true).is_empty());
    }

    #[test]
    fn apk_installed() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nL:MIT\n\nP:busybox-binsh\nV:1.36.1-r5\nA:x86_64\no:busybox\n\n";
        let got = parse_apk(text, APK_INSTALLED);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].upstream, None);
        assert_eq!(
            got[1].purl(Some("alpine")),
            "pkg:apk/alpine/busybox-binsh@1.36.1-r5?arch=x86_64&upstream=busybox"
        );
    }

    #[test]
    fn capture_keeps_only_databases() {
        for (path, keep) in [
            (DPKG_STATUS, true),
            ("var/lib/dpkg/status.d/tzdata", true),
            ("var/lib/dpkg/status.d/x/y", false),
            ("var/lib/dpkg/status.d/", false),
            ("var/lib/dpkg/status-old", false),
            (APK_INSTALLED, true),
            ("etc/os-release", true),
        ] {
            assert_eq!(wanted(path), keep, "{path}");
        }
    }

    #[test]
    fn os_release_id_is_read() {
        assert_eq!(
            os_release_id("NAME=\"Debian\"\nID=debian\n").as_deref(),
            Some("debian")
        );
        assert_eq!(os_release_id("ID=\"wolfi\"").as_deref(), Some("wolfi"));
        assert_eq!(os_release_id("ID=Bad Value"), None);
    }

    #[test]
    fn non_utf8_database_is_an_error_naming_it() {
        let files = BTreeMap::from([(DPKG_STATUS.to_owned(), vec![0xff, 0xfe])]);
        let e = parse_found("img:1", &files).unwrap_err().to_string();
        assert!(e.contains("img:1") && e.contains(DPKG_STATUS), "{e}");
    }
}
