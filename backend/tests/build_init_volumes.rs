//! Built from a real store: the apk database merge of several init images
//! (reference B.4), where the tar and the initrd both end the init images
//! with one `lib/apk/db/installed` holding every image's database in
//! order, also when a rebuild reuses cached init members; and `format: oci`
//! volumes (B.5), an OCI layout of the image's index for the listed
//! platforms.

mod store_common;

use std::io::Read;
use std::path::Path;

use kiln_backend::engine::build::output::InitrdOptions;
use kiln_backend::engine::build::{self, BootOptions, BuildRequest, ImageSource};
use kiln_backend::engine::flatten::FlattenOptions;
use kiln_backend::engine::formats::format::Format;
use kiln_backend::engine::store::{Platform, Store, OCI_INDEX};
use store_common::TestImage;

const DB_A: &[u8] = b"C:Q1aaa=\nP:alpine-baselayout\nV:3.4.3-r1\n";
const DB_B: &[u8] = b"C:Q1bbb=\nP:runc\nV:1.1.12-r0\n";
const DB_B2: &[u8] = b"C:Q1ccc=\nP:runc\nV:1.1.13-r0\n";

fn init_image(db: Option<&[u8]>, marker: &str) -> TestImage {
    let mut files: Vec<(&str, &[u8])> = vec![("etc/marker", marker.as_bytes())];
    if let Some(db) = db {
        files.push(("lib/apk/db/installed", db));
    }
    TestImage::new("amd64", &[&files])
}

fn spec(last: &str) -> kiln_shared::Spec {
    let text = format!(
        "init:\n  - example.com/init-a:v1\n  - example.com/plain:v1\n  - example.com/{last}:v1\n"
    );
    kiln_shared::validate(&text).spec.expect("valid spec")
}

fn build(store: &Store, spec: &kiln_shared::Spec, format: Format, dir: &Path, cache: &Path) {
    try_build(store, spec, format, dir, cache).unwrap();
}

fn try_build(
    store: &Store,
    spec: &kiln_shared::Spec,
    format: Format,
    dir: &Path,
    cache: &Path,
) -> Result<(), String> {
    let platform = Platform::linux("amd64");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let images = runtime
        .block_on(build::resolve_images(
            spec,
            &platform,
            store,
            &ImageSource::Offline,
        ))
        .unwrap();
    let formats = [format];
    let req = BuildRequest {
        spec,
        formats: &formats,
        dir,
        name: "apk",
        platform: &platform,
        cwd: dir,
        home: None,
        initrd: InitrdOptions {
            member_cache: Some(cache.to_owned()),
            ..InitrdOptions::default()
        },
        flatten: FlattenOptions::default(),
        cancel: Default::default(),
        boot: BootOptions::default(),
        sbom: false,
    };
    build::write_outputs(&req, store, &images)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Every `lib/apk/db/installed` of the tar, with its provenance source.
fn tar_dbs(path: &Path) -> Vec<(Vec<u8>, Option<String>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() != Some("lib/apk/db/installed") {
            continue;
        }
        let mut source = None;
        if let Some(pax) = entry.pax_extensions().unwrap() {
            for record in pax {
                let record = record.unwrap();
                if record.key().unwrap() == "LINUXKIT.source" {
                    source = Some(record.value().unwrap().to_owned());
                }
            }
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        found.push((data, source));
    }
    found
}

/// Every `lib/apk/db/installed` of the initrd's concatenated cpio archives.
fn initrd_dbs(path: &Path) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let mut found = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        if rest.iter().take(512).all(|b| *b == 0) {
            rest = &rest[rest.len().min(512)..];
            continue;
        }
        let mut reader = cpio::newc::Reader::new(rest).unwrap();
        let (name, trailer) = (
            reader.entry().name().to_owned(),
            reader.entry().is_trailer(),
        );
        let mut data = Vec::new();
        reader.read_to_end(&mut data).unwrap();
        rest = reader.finish().unwrap();
        if name == "lib/apk/db/installed" {
            found.push(data);
        }
        if trailer {
            // Archives are padded to 512 bytes; skip to the next one.
            let consumed = bytes.len() - rest.len();
            let pad = (512 - consumed % 512) % 512;
            rest = &rest[pad.min(rest.len())..];
        }
    }
    found
}

fn merged(dbs: &[&[u8]]) -> Vec<u8> {
    dbs.iter().flat_map(|d| [*d, b"\n\n"].concat()).collect()
}

#[test]
fn init_databases_are_merged_after_the_last_init_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    init_image(Some(DB_A), "a").store_into(&store, "example.com/init-a:v1");
    init_image(None, "plain").store_into(&store, "example.com/plain:v1");
    init_image(Some(DB_B), "b").store_into(&store, "example.com/init-b:v1");
    init_image(Some(DB_B2), "b2").store_into(&store, "example.com/init-b2:v1");
    let cache = dir.path().join("members");
    let out = dir.path().join("out");

    build(&store, &spec("init-b"), Format::Tar, &out, &cache);
    let dbs = tar_dbs(&out.join("apk.tar"));
    assert_eq!(dbs.len(), 3, "each image's database, then the merged one");
    assert_eq!(dbs[0].0, DB_A);
    assert_eq!(dbs[1].0, DB_B);
    assert_eq!(dbs[2].0, merged(&[DB_A, DB_B]));
    assert_eq!(dbs[2].1.as_deref(), Some("LINUXKIT.apkinit"));

    build(&store, &spec("init-b"), Format::KernelInitrd, &out, &cache);
    let dbs = initrd_dbs(&out.join("apk-initrd.img"));
    assert_eq!(dbs.last().unwrap(), &merged(&[DB_A, DB_B]));

    // Only the last init image changes: the first two members come from
    // the cache, and their databases are still merged.
    build(&store, &spec("init-b2"), Format::KernelInitrd, &out, &cache);
    let dbs = initrd_dbs(&out.join("apk-initrd.img"));
    assert_eq!(
        dbs,
        vec![DB_A.to_vec(), DB_B2.to_vec(), merged(&[DB_A, DB_B2])]
    );
}

#[test]
fn a_single_database_is_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    init_image(Some(DB_A), "a").store_into(&store, "example.com/init-a:v1");
    init_image(None, "plain").store_into(&store, "example.com/plain:v1");
    init_image(None, "c").store_into(&store, "example.com/init-c:v1");
    let out = dir.path().join("out");
    build(
        &store,
        &spec("init-c"),
        Format::Tar,
        &out,
        &dir.path().join("m"),
    );
    let dbs = tar_dbs(&out.join("apk.tar"));
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0].0, DB_A);
}

/// Path and data of every entry under `prefix` in the tar.
fn tar_entries(path: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(prefix) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            found.push((rest.to_owned(), data));
        }
    }
    found
}

fn oci_volume_spec(platforms: &str) -> kiln_shared::Spec {
    let text = format!(
        "volumes:\n  - name: images\n    image: example.com/multi:v1\n    format: oci\n{platforms}"
    );
    kiln_shared::validate(&text).spec.expect("valid spec")
}

fn blob_name(d: &kiln_backend::engine::store::Descriptor) -> String {
    format!("blobs/sha256/{}", d.digest.hex())
}

#[test]
fn oci_volumes_hold_a_layout_of_the_selected_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let index = store_common::TestIndex::new(&["linux/amd64", "linux/arm64"], false);
    store_common::put_blobs(&store, &index.all_blobs());
    store
        .set_name("example.com/multi:v1", index.index.desc.clone())
        .unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("m");
    let prefix = "containers/volumes/images/lower/";

    build(
        &store,
        &oci_volume_spec("    platforms: [linux/arm64]\n"),
        Format::Tar,
        &out,
        &cache,
    );
    let entries = tar_entries(&out.join("apk.tar"), prefix);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let arm = index.image("arm64");
    let mut expected = vec![
        "oci-layout".to_owned(),
        "blobs".to_owned(),
        "blobs/sha256".to_owned(),
        blob_name(&arm.config.desc),
    ];
    expected.extend(arm.layers.iter().map(|l| blob_name(&l.desc)));
    expected.push(blob_name(&arm.manifest.desc));
    expected.push(blob_name(&index.index.desc));
    expected.push("index.json".to_owned());
    assert_eq!(names, expected);
    for (name, data) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(
                kiln_backend::engine::store::Digest::of(data).hex(),
                hex,
                "{name} holds its blob"
            );
        }
    }
    let layout: serde_json::Value = serde_json::from_slice(&entries[0].1).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let top: serde_json::Value = serde_json::from_slice(&entries.last().unwrap().1).unwrap();
    let manifests = top["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["mediaType"], OCI_INDEX);
    assert_eq!(manifests[0]["digest"], index.index.desc.digest.to_string());
    assert_eq!(manifests[0]["size"], index.index.desc.size);
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "example.com/multi:v1"
    );

    // No platforms listed: every image of the index.
    build(&store, &oci_volume_spec(""), Format::Tar, &out, &cache);
    let entries = tar_entries(&out.join("apk.tar"), prefix);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for (image, _) in &index.images {
        assert!(names.contains(&blob_name(&image.manifest.desc).as_str()));
        assert!(names.contains(&blob_name(&image.config.desc).as_str()));
    }
}

#[test]
fn an_oci_volume_of_a_single_manifest_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    TestImage::simple("amd64", "one").store_into(&store, "example.com/multi:v1");
    let out = dir.path().join("out");
    let err = try_build(
        &store,
        &oci_volume_spec(""),
        Format::Tar,
        &out,
        &dir.path().join("m"),
    )
    .unwrap_err();
    assert!(
        err.contains("no image index found for example.com/multi:v1"),
        "{err}"
    );
}
