//! engine::sbom against a real store: images with dpkg and apk databases,
//! an index carrying a BuildKit SPDX attestation, whiteouts, bad input.

use std::collections::HashMap;

use kiln_backend::engine::build::plan::Images;
use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::sbom::{self, SbomError, SbomOptions};
use kiln_backend::engine::store::{
    Descriptor, Digest, Expected, Platform, Store, ANNOTATION_REFERENCE_DIGEST, OCI_CONFIG,
    OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST,
};
use serde_json::{json, Value};

const STATUS: &str = "Package: busybox-static\nStatus: install ok installed\nArchitecture: amd64\nSource: busybox\nVersion: 1:1.35.0-4+b3\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
const APK: &str = "P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\n";

struct Blobs(Vec<(Descriptor, Vec<u8>)>);

impl Blobs {
    fn add(&mut self, media_type: &str, bytes: Vec<u8>) -> Descriptor {
        let d = Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64);
        self.0.push((d.clone(), bytes));
        d
    }

    fn write(&self, store: &Store) {
        let lease = store.lease().unwrap();
        for (d, bytes) in &self.0 {
            if store.has_blob(&d.digest, Some(d.size)) {
                continue;
            }
            let mut w = lease
                .blob_writer(Expected::exactly(d.digest.clone(), d.size))
                .unwrap();
            w.write_chunk(bytes).unwrap();
            w.commit().unwrap();
        }
    }
}

fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, path, *content).unwrap();
    }
    b.into_inner().unwrap()
}

fn image(blobs: &mut Blobs, arch: &str, layers: &[Vec<u8>]) -> Descriptor {
    let layers: Vec<Descriptor> = layers
        .iter()
        .map(|l| blobs.add(OCI_LAYER_TAR, l.clone()))
        .collect();
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    });
    let config = blobs.add(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
    let manifest =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
    blobs.add(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap())
}

fn spdx_statement(about: &Descriptor) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": sbom::SPDX_PREDICATE,
        "subject": [{"name": "getty", "digest": {"sha256": about.digest.hex()}}],
        "predicate": {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": "getty",
            "documentNamespace": "https://example.com/getty",
            "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: syft"]},
            "packages": [{"SPDXID": "SPDXRef-Package-agetty", "name": "agetty", "versionInfo": "2.38",
                          "downloadLocation": "NOASSERTION",
                          "packageVerificationCode": {"packageVerificationCodeValue": "d6a770ba38583ed4bb4525bd96e50461655d2758"}}],
            "files": [{"SPDXID": "SPDXRef-File-agetty", "fileName": "/sbin/agetty",
                       "checksums": [{"algorithm": "SHA1", "checksumValue": "da39a3ee5e6b4b0d3255bfef95601890afd80709"}]}],
            "relationships": [
                {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Package-agetty"},
                {"spdxElementId": "SPDXRef-Package-agetty", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-File-agetty"}
            ]
        }
    })
}

/// An index with a linux/amd64 image and its BuildKit attestation manifest.
fn attested_index(blobs: &mut Blobs, statement: impl Fn(&Descriptor) -> Vec<u8>) -> Descriptor {
    let mut amd64 = image(blobs, "amd64", &[tar(&[("sbin/agetty", b"x")])]);
    amd64.platform = Platform::parse("linux/amd64");
    let mut layer = blobs.add(sbom::INTOTO_MEDIA_TYPE, statement(&amd64));
    layer.annotations.insert(
        sbom::ANNOTATION_PREDICATE_TYPE.into(),
        sbom::SPDX_PREDICATE.into(),
    );
    let att_config = blobs.add(OCI_CONFIG, b"{}".to_vec());
    let att = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": att_config, "layers": [layer]});
    let mut att = blobs.add(OCI_MANIFEST, serde_json::to_vec(&att).unwrap());
    att.platform = Platform::parse("unknown/unknown");
    att.annotations
        .insert(ANNOTATION_REFERENCE_DIGEST.into(), amd64.digest.to_string());
    att.annotations.insert(
        sbom::ANNOTATION_REFERENCE_TYPE.into(),
        sbom::ATTESTATION_MANIFEST.into(),
    );
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, att]});
    blobs.add(OCI_INDEX, serde_json::to_vec(&index).unwrap())
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    spec: kiln_shared::Spec,
    images: Images,
}

fn world(init_layers: &[Vec<u8>], statement: impl Fn(&Descriptor) -> Vec<u8>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut blobs = Blobs(Vec::new());
    let init = image(&mut blobs, "amd64", init_layers);
    let getty = attested_index(&mut blobs, statement);
    blobs.write(&store);
    store.set_name("example.com/os/init:v1", init).unwrap();
    store
        .set_name("docker.io/linuxkit/getty:v2", getty)
        .unwrap();
    let text = "init:\n  - example.com/os/init:v1\nservices:\n  - name: getty\n    image: linuxkit/getty:v2\n";
    let spec = kiln_shared::validate(text).spec.expect("valid spec");
    let strings = ["example.com/os/init:v1", "linuxkit/getty:v2"];
    let refs: Vec<Reference> = strings
        .iter()
        .map(|s| Reference::parse(s).unwrap())
        .collect();
    let resolved = store.resolve(&refs, &Platform::linux("amd64")).unwrap();
    let images: Images = strings
        .iter()
        .map(|s| s.to_string())
        .zip(resolved)
        .collect::<HashMap<_, _>>();
    World {
        _dir: dir,
        store,
        spec,
        images,
    }
}

fn default_world() -> World {
    world(
        &[tar(&[
            ("var/lib/dpkg/status", STATUS.as_bytes()),
            ("lib/apk/db/installed", APK.as_bytes()),
            ("etc/os-release", b"ID=debian\n"),
        ])],
        |d| serde_json::to_vec(&spdx_statement(d)).unwrap(),
    )
}

fn options(scan: bool) -> SbomOptions {
    SbomOptions {
        name: "os".into(),
        scan_packages: scan,
        created: kiln_backend::engine::fs::LINUXKIT_EPOCH,
    }
}

fn doc(w: &World, scan: bool) -> Value {
    let bytes = sbom::document(&w.spec, &w.images, &w.store, &options(scan)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn package<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in {doc:#}"))
}

#[test]
fn lists_every_image_with_digests_org_and_purl() {
    let w = default_world();
    let d = doc(&w, false);
    assert_eq!(d["spdxVersion"], "SPDX-2.3");
    assert_eq!(d["creationInfo"]["created"], "2017-04-18T16:30:00Z");
    assert!(d["documentNamespace"]
        .as_str()
        .unwrap()
        .starts_with("https://kiln.dev/spdx/os-"));
    for (written, org) in [
        ("example.com/os/init:v1", "example.com/os"),
        ("linuxkit/getty:v2", "linuxkit"),
    ] {
        let r = &w.images[written];
        let p = package(&d, written);
        assert_eq!(p["versionInfo"], r.root.digest.to_string());
        assert_eq!(p["checksums"][0]["checksumValue"], r.manifest.digest.hex());
        assert_eq!(p["supplier"], format!("Organization: {org}"));
        let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        assert!(
            purl.starts_with("pkg:oci/")
                && purl.contains(&format!("@sha256%3A{}", r.root.digest.hex())),
            "{purl}"
        );
    }
    assert_eq!(d["relationships"][0]["relationshipType"], "DESCRIBES");
}

#[test]
fn attestations_are_merged_with_placement_prefix_and_unique_ids() {
    let w = default_world();
    let d = doc(&w, false);
    let getty = package(&d, "linuxkit/getty:v2")["SPDXID"]
        .as_str()
        .unwrap()
        .to_owned();
    let agetty = package(&d, "agetty");
    let agetty_id = agetty["SPDXID"].as_str().unwrap();
    assert!(
        agetty_id.starts_with(&format!("{getty}-sbom-")),
        "{agetty_id}"
    );
    assert_eq!(
        d["files"][0]["fileName"],
        "./containers/services/getty/lower/sbin/agetty"
    );
    let rels = d["relationships"].as_array().unwrap();
    assert!(rels.contains(&json!({"spdxElementId": getty, "relationshipType": "CONTAINS", "relatedSpdxElement": agetty_id})));
    let ids: Vec<&str> = d["packages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(d["files"].as_array().unwrap())
        .map(|p| p["SPDXID"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
    // The init image is not an index: nothing attached, no files from it.
    assert!(d["files"].as_array().unwrap().len() == 1);
}

#[test]
fn scanning_finds_dpkg_and_apk_packages() {
    let w = default_world();
    assert!(package(&doc(&w, false), "example.com/os/init:v1").is_object());
    let no_scan = doc(&w, false);
    assert!(!no_scan["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "busybox-static"));
    let d = doc(&w, true);
    let bb = package(&d, "busybox-static");
    assert_eq!(bb["versionInfo"], "1:1.35.0-4+b3");
    assert_eq!(
        bb["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/busybox-static@1%3A1.35.0-4%2Bb3?arch=amd64&upstream=busybox"
    );
    let musl = package(&d, "musl");
    assert_eq!(
        musl["externalRefs"][0]["referenceLocator"],
        "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64"
    );
    assert!(!d["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "gone"));
    let init = package(&d, "example.com/os/init:v1")["SPDXID"].clone();
    let rels = d["relationships"].as_array().unwrap();
    assert!(rels.contains(&json!({"spdxElementId": init, "relationshipType": "CONTAINS", "relatedSpdxElement": bb["SPDXID"]})));
}

#[test]
fn a_whited_out_database_lists_nothing() {
    let w = world(
        &[
            tar(&[("var/lib/dpkg/status", STATUS.as_bytes())]),
            tar(&[("var/lib/dpkg/.wh.status", b"")]),
        ],
        |d| serde_json::to_vec(&spdx_statement(d)).unwrap(),
    );
    let d = doc(&w, true);
    assert!(!d["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "busybox-static"));
}

#[test]
fn same_inputs_same_bytes_and_the_namespace_follows_the_inputs() {
    let w = default_world();
    let a = sbom::document(&w.spec, &w.images, &w.store, &options(true)).unwrap();
    let b = sbom::document(&w.spec, &w.images, &w.store, &options(true)).unwrap();
    assert_eq!(a, b);
    let ns = |o: &SbomOptions| sbom::namespace(&w.spec, &w.images, o);
    assert_ne!(ns(&options(true)), ns(&options(false)));
    let mut other = w.images.clone();
    let init = other.get_mut("example.com/os/init:v1").unwrap();
    init.root.digest = Digest::of(b"another");
    assert_ne!(
        sbom::namespace(&w.spec, &other, &options(true)),
        ns(&options(true))
    );
    let later = SbomOptions {
        created: 1_700_000_000,
        ..options(true)
    };
    let d: Value =
        serde_json::from_slice(&sbom::document(&w.spec, &w.images, &w.store, &later).unwrap())
            .unwrap();
    assert_eq!(d["creationInfo"]["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn a_broken_attestation_is_an_error_naming_image_and_digest() {
    let w = world(&[tar(&[("etc/x", b"")])], |_| b"not json".to_vec());
    let e = sbom::document(&w.spec, &w.images, &w.store, &options(false)).unwrap_err();
    assert!(matches!(e, SbomError::Attestation { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("linuxkit/getty:v2") && m.contains("sha256:"),
        "{m}"
    );
}

#[test]
fn a_corrupt_layer_is_a_scan_error_naming_the_image() {
    let w = world(&[b"this is not a tar archive at all".repeat(20)], |d| {
        serde_json::to_vec(&spdx_statement(d)).unwrap()
    });
    let e = sbom::document(&w.spec, &w.images, &w.store, &options(true)).unwrap_err();
    assert!(matches!(e, SbomError::Scan { .. }), "{e:?}");
    assert!(e.to_string().contains("example.com/os/init:v1"), "{e}");
}
