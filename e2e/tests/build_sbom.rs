//! The SBOM: `kiln build` appends `sbom.spdx.json` as the last entry of the
//! root filesystem (tar and initrd alike) unless `--no-sbom`; the document
//! passes the standard SPDX validator (`pyspdxtools` from PyPI, installed
//! by .ci/install-deps), lists every image with its digests, is the same
//! bytes when built again, and with package scanning lists the dpkg
//! packages of the service fixture.

mod cache_common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use cache_common::{fixtures, kiln_in, reference, registry_with};
use kiln_backend::engine::build::plan::Images;
use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::sbom::{self, SbomOptions};
use kiln_backend::engine::store::{Platform, Store};
use kiln_e2e::fixtures::Fixture;
use kiln_e2e::registry::Registry;
use serde_json::Value;

const PYSPDXTOOLS: &str = "/opt/kiln-py/bin/pyspdxtools";
const LINUXKIT_EPOCH: u64 = 1_492_533_000;

fn spec(registry: &Registry) -> String {
    let set = fixtures();
    let r = |f: &Fixture| reference(registry, f);
    format!(
        "kernel:
  image: {kernel}
  cmdline: console=ttyS0
init:
  - {init}
  - {runc}
onboot:
  - name: plain
    image: {plain}
services:
  - name: web
    image: {service}
",
        kernel = r(&set.kernel),
        init = r(&set.init),
        runc = r(&set.runc),
        plain = r(&set.plain),
        service = r(&set.service),
    )
}

fn registry() -> Registry {
    let set = fixtures();
    registry_with(&[&set.kernel, &set.init, &set.runc, &set.plain, &set.service])
}

/// Runs `kiln build ARGS sbom.yml` in `dir`.
fn build(dir: &Path, spec: &str, args: &[&str]) {
    std::fs::write(dir.join("sbom.yml"), spec).unwrap();
    let out = kiln_in(dir)
        .arg("build")
        .args(args)
        .arg("sbom.yml")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct TarEntry {
    path: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    pax_keys: Vec<String>,
    data: Vec<u8>,
}

fn tar_entries(path: &Path) -> Vec<TarEntry> {
    let bytes = std::fs::read(path).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let pax_keys = entry
            .pax_extensions()
            .unwrap()
            .into_iter()
            .flatten()
            .map(|x| x.unwrap().key().unwrap().to_owned())
            .collect();
        let h = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push(TarEntry {
            path: entry.path().unwrap().to_string_lossy().into_owned(),
            mode: h.mode().unwrap() & 0o7777,
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            pax_keys,
            data,
        });
    }
    out
}

/// The regular files of a gzip'd initrd (concatenated newc archives), in
/// order.
fn initrd_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    let mut rest: &[u8] = &raw;
    let mut out = Vec::new();
    while !rest.is_empty() && rest.iter().any(|b| *b != 0) {
        // Archives are padded to 512 bytes by some writers; skip zeros.
        let skip = rest.iter().take_while(|b| **b == 0).count();
        rest = &rest[skip..];
        let mut reader = cpio::newc::Reader::new(rest).unwrap();
        let entry = reader.entry();
        let name = entry.name().to_owned();
        let is_file = entry.mode() & 0o170000 == 0o100000;
        let mut data = Vec::new();
        reader.read_to_end(&mut data).unwrap();
        if is_file && name != "TRAILER!!!" {
            out.push((name, data));
        }
        rest = reader.finish().unwrap();
    }
    out
}

fn validate(path: &Path) {
    assert!(
        Path::new(PYSPDXTOOLS).exists(),
        "{PYSPDXTOOLS} is missing: run .ci/install-deps"
    );
    let out = Command::new(PYSPDXTOOLS)
        .arg("-i")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyspdxtools rejects {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn package<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name}"))
}

fn write_json(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn build_appends_a_valid_reproducible_sbom_last() {
    let registry = registry();
    let spec = spec(&registry);
    let a = tempfile::tempdir().unwrap();
    build(a.path(), &spec, &["-o", "out.tar"]);
    let entries = tar_entries(&a.path().join("out.tar"));
    let last = entries.last().unwrap();
    assert_eq!(last.path, "sbom.spdx.json");
    assert_eq!((last.mode, last.uid, last.gid), (0o644, 0, 0));
    assert_eq!(last.mtime, LINUXKIT_EPOCH);
    assert!(
        !last.pax_keys.iter().any(|k| k.starts_with("LINUXKIT.")),
        "{:?}",
        last.pax_keys
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.path == "sbom.spdx.json")
            .count(),
        1
    );
    validate(&write_json(a.path(), "from-tar.spdx.json", &last.data));

    let doc: Value = serde_json::from_slice(&last.data).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], "2017-04-18T16:30:00Z");
    let set = fixtures();
    for f in [&set.kernel, &set.init, &set.runc, &set.plain, &set.service] {
        let p = package(&doc, &reference(&registry, f));
        assert_eq!(p["versionInfo"], f.digest(), "{}", f.name);
        assert_eq!(
            p["checksums"][0]["checksumValue"],
            f.manifests[0].digest.trim_start_matches("sha256:"),
            "{}",
            f.name
        );
        let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        assert!(
            purl.contains(&f.digest().replace(':', "%3A")),
            "{purl} lacks {}",
            f.digest()
        );
    }

    // Another directory, another time, kernel+initrd: the same document,
    // again the initrd's last file.
    let b = tempfile::tempdir().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build(b.path(), &spec, &["--format", "kernel+initrd"]);
    let files = initrd_files(&b.path().join("sbom-initrd.img"));
    let (name, data) = files.last().unwrap();
    assert_eq!(name, "sbom.spdx.json");
    assert!(
        *data == last.data,
        "the initrd's SBOM differs from the tar's"
    );
}

#[test]
fn no_sbom_leaves_it_out_and_nothing_else() {
    let registry = registry();
    let spec = spec(&registry);
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &spec, &["--no-sbom", "-o", "without.tar"]);
    build(dir.path(), &spec, &["-o", "with.tar"]);
    let without = tar_entries(&dir.path().join("without.tar"));
    let with = tar_entries(&dir.path().join("with.tar"));
    assert!(!without.iter().any(|e| e.path == "sbom.spdx.json"));
    let names =
        |entries: &[TarEntry]| -> Vec<String> { entries.iter().map(|e| e.path.clone()).collect() };
    let mut expected = names(&without);
    expected.push("sbom.spdx.json".into());
    assert_eq!(names(&with), expected);
}

/// What publishing uses: the same document with the packages found in
/// the images' dpkg databases.
#[test]
fn package_scan_lists_the_dpkg_packages_of_the_service_fixture() {
    let registry = registry();
    let spec_text = spec(&registry);
    let dir = tempfile::tempdir().unwrap();
    // The build pulls the images into the store the scan reads.
    build(dir.path(), &spec_text, &["--no-sbom", "-o", "out.tar"]);
    let store = Store::open(dir.path().join("home/cache")).unwrap();
    let spec = kiln_shared::validate(&spec_text).spec.unwrap();
    let strings = kiln_backend::engine::build::image_strings(&spec);
    let refs: Vec<Reference> = strings
        .iter()
        .map(|s| Reference::parse(s).unwrap().with_default_tag())
        .collect();
    let resolved = store.resolve(&refs, &Platform::linux("amd64")).unwrap();
    let images: Images = strings.into_iter().zip(resolved).collect::<HashMap<_, _>>();
    let options = SbomOptions {
        name: "sbom".into(),
        scan_packages: true,
        created: LINUXKIT_EPOCH,
    };
    let bytes = sbom::document(&spec, &images, &store, &options).unwrap();
    assert_eq!(
        bytes,
        sbom::document(&spec, &images, &store, &options).unwrap(),
        "two scans differ"
    );
    validate(&write_json(dir.path(), "scanned.spdx.json", &bytes));
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let busybox = package(&doc, "busybox-static");
    let purl = busybox["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/busybox-static@") && purl.contains("arch=amd64"),
        "{purl}"
    );
    let service = package(&doc, &reference(&registry, &fixtures().service));
    let rels = doc["relationships"].as_array().unwrap();
    assert!(rels.iter().any(|r| r["spdxElementId"] == service["SPDXID"]
        && r["relationshipType"] == "CONTAINS"
        && r["relatedSpdxElement"] == busybox["SPDXID"]));
    // Only the service fixture carries a dpkg database.
    let debs = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:deb/"))
        })
        .count();
    assert_eq!(debs, 1);
}
