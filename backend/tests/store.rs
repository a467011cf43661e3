//! Image store: layout compatibility with linuxkit's cache, atomic verified
//! blob writes, crash leftovers, verify/clean/remove, import/export, offline
//! resolution, and concurrent writers (threads and processes).

mod store_common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::store::{
    ArchiveFormat, BlobRole, Digest, Expected, MissingReason, Platform, RootIndex, Store,
    StoreError, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME,
};
use store_common::{files_containing, layer_tar, put_blobs, Blob, TestImage, TestIndex};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn layout_matches_linuxkit_cache() {
    let dir = tmp();
    let store = Store::open(dir.path().join("cache")).unwrap();
    let root = store.root();
    assert_eq!(
        fs::read_to_string(root.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert!(root.join("blobs/sha256").is_dir());
    let img = TestImage::simple("amd64", "alpine");
    let name = r("alpine:3.20").to_string();
    assert_eq!(name, "docker.io/library/alpine:3.20");
    img.store_into(&store, &name);

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], img.manifest.desc.digest.to_string());
    assert_eq!(entry["size"], img.manifest.desc.size);
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "docker.io/library/alpine:3.20"
    );
    for b in img.blobs() {
        let path = root.join("blobs/sha256").join(b.desc.digest.hex());
        assert_eq!(fs::read(path).unwrap(), b.bytes);
    }

    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].name.as_deref(),
        Some("docker.io/library/alpine:3.20")
    );
    assert_eq!(list[0].platforms, vec![Platform::linux("amd64")]);
    assert!(list[0].complete);
    let total: u64 = img.blobs().iter().map(|b| b.desc.size).sum();
    assert_eq!(list[0].size, total);

    // Writing a name again replaces the entry rather than adding one.
    let other = TestImage::simple("amd64", "alpine-2");
    other.store_into(&store, &name);
    let index = store.index().unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(index.manifests[0].digest, other.manifest.desc.digest);
}

#[test]
fn keeps_what_other_tools_wrote_in_index_json() {
    let dir = tmp();
    let digest = Digest::of(b"x");
    // As go-containerregistry writes it, plus fields kiln does not know.
    let foreign = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","size":1,"digest":"{digest}","annotations":{{"custom":"kept","org.opencontainers.image.ref.name":"docker.io/linuxkit/init:v1"}},"artifactType":"a/b"}}],"annotations":{{"top":"kept"}}}}"#
    );
    fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
    fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(dir.path().join("index.json"), &foreign).unwrap();
    let store = Store::open(dir.path()).unwrap();
    TestImage::simple("arm64", "x").store_into(&store, "docker.io/library/x:1");
    let text = fs::read_to_string(dir.path().join("index.json")).unwrap();
    let first_entry_end = foreign.find("}],").unwrap() + 1;
    assert!(text.starts_with(&foreign[..first_entry_end]), "{text}");
    assert!(text.contains(r#""artifactType":"a/b""#));
    assert!(text.contains(r#""custom":"kept""#));
    assert!(text.contains(r#""annotations":{"top":"kept"}"#));
    assert_eq!(store.index().unwrap().manifests.len(), 2);
}

#[test]
fn blob_writes_are_verified_and_atomic() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let lease = store.lease().unwrap();
    let blobs = store.blobs_dir();
    let data = b"some layer bytes".to_vec();
    let digest = Digest::of(&data);

    // Wrong content: refused at commit, nothing visible, temp gone.
    let mut w = lease
        .blob_writer(Expected::exactly(digest.clone(), data.len() as u64))
        .unwrap();
    w.write_chunk(b"SOME LAYER BYTES").unwrap();
    assert!(!files_containing(&blobs, ".kiln-tmp-").is_empty());
    match w.commit() {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, digest);
            assert_eq!(actual, Digest::of(b"SOME LAYER BYTES"));
        }
        other => panic!("expected digest mismatch, got {other:?}"),
    }
    assert!(!store.has_blob(&digest, None));
    assert!(files_containing(&blobs, ".kiln-tmp-").is_empty());

    // Too long: refused as soon as the extra byte arrives.
    let mut w = lease
        .blob_writer(Expected::exactly(digest.clone(), data.len() as u64))
        .unwrap();
    w.write_chunk(&data).unwrap();
    let err = w.write_chunk(b"!").unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
    drop(w);

    // Too short.
    let mut w = lease
        .blob_writer(Expected::exactly(digest.clone(), data.len() as u64))
        .unwrap();
    w.write_chunk(&data[..4]).unwrap();
    let err = w.commit().unwrap_err();
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(
        err.to_string().contains("expected 16 bytes, got 4"),
        "{err}"
    );

    // Abandoned (a crash in-process): no blob, temp removed.
    let mut w = lease.blob_writer(Expected::default()).unwrap();
    w.write_chunk(&data).unwrap();
    drop(w);
    assert!(!store.has_blob(&digest, None));
    assert!(files_containing(&blobs, ".kiln-tmp-").is_empty());

    // Right content.
    let mut w = lease
        .blob_writer(Expected::exactly(digest.clone(), data.len() as u64))
        .unwrap();
    w.write_chunk(&data[..5]).unwrap();
    w.write_chunk(&data[5..]).unwrap();
    assert_eq!(w.commit().unwrap(), (digest.clone(), data.len() as u64));
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), data);
    assert!(files_containing(&blobs, ".kiln-tmp-").is_empty());
}

#[test]
fn crash_leftovers_are_ignored_and_cleaned() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = TestImage::simple("amd64", "crash");
    img.store_into(&store, "docker.io/library/crash:1");
    // What a process killed mid-write leaves behind.
    fs::write(store.blobs_dir().join(".kiln-tmp-4242-abc-0"), b"partial").unwrap();
    fs::write(
        dir.path().join("index.json.kiln-tmp-4242-abc-1"),
        b"{\"schem",
    )
    .unwrap();
    // A stray non-digest file that is not ours is left alone.
    fs::write(store.blobs_dir().join("README"), b"not a blob").unwrap();

    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].complete);
    let verify = store.verify(false).unwrap();
    assert!(verify.is_ok(), "{verify:?}");
    assert_eq!(verify.blobs_checked, 3);

    let report = store.clean().unwrap();
    assert_eq!(report.temp_files_deleted, 2);
    assert!(report.blobs_deleted.is_empty());
    assert!(files_containing(&store.blobs_dir(), ".kiln-tmp-").is_empty());
    assert!(files_containing(dir.path(), ".kiln-tmp-").is_empty());
    assert!(store.blobs_dir().join("README").exists());
    assert_eq!(
        store
            .resolve(&[r("crash:1")], &Platform::linux("amd64"))
            .unwrap()[0]
            .manifest
            .digest,
        img.manifest.desc.digest
    );
}

#[test]
fn verify_finds_corruption_and_missing_blobs() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = TestImage::simple("amd64", "victim");
    img.store_into(&store, "docker.io/library/victim:1");
    let layer = &img.layers[0].desc.digest;
    let path = store.blob_path(layer);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let report = store.verify(false).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.corrupt.len(), 1);
    let bad = &report.corrupt[0];
    assert_eq!(&bad.digest, layer);
    assert_eq!(bad.actual, Digest::of(&bytes));
    assert_eq!(bad.used_by, vec!["docker.io/library/victim:1".to_owned()]);
    assert!(!bad.deleted);
    assert!(report.missing.is_empty());

    let report = store.verify(true).unwrap();
    assert!(report.corrupt[0].deleted);
    assert!(!store.has_blob(layer, None));
    let report = store.verify(false).unwrap();
    assert!(report.corrupt.is_empty());
    assert_eq!(report.missing.len(), 1);
    assert_eq!(&report.missing[0].digest, layer);
    assert_eq!(report.missing[0].role, BlobRole::Layer);
    assert_eq!(report.missing[0].image, "docker.io/library/victim:1");

    // Offline resolution names the image and the missing layer.
    let err = store
        .resolve(&[r("victim:1")], &Platform::linux("amd64"))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("docker.io/library/victim:1"), "{text}");
    assert!(text.contains(&layer.to_string()), "{text}");
}

#[test]
fn corrupt_manifest_is_reported_once() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = TestImage::simple("amd64", "m");
    img.store_into(&store, "docker.io/library/m:1");
    fs::write(store.blob_path(&img.manifest.desc.digest), b"{}").unwrap();
    let report = store.verify(false).unwrap();
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].digest, img.manifest.desc.digest);
    assert!(report.missing.is_empty(), "{:?}", report.missing);
}

#[test]
fn clean_keeps_everything_reachable_and_nothing_else() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let index = TestIndex::new(&["linux/amd64", "linux/arm64"], true);
    // A partial index: only arm64 and the attestations' manifests+configs.
    let arm = index.image("arm64");
    let mut keep = vec![&index.index];
    keep.extend(arm.blobs());
    for a in &index.attestations {
        keep.push(&a.manifest);
        keep.push(&a.config);
    }
    put_blobs(&store, &keep);
    store
        .set_name("docker.io/library/multi:1", index.index.desc.clone())
        .unwrap();
    // Garbage: an unnamed image and a stray blob.
    let orphan = TestImage::simple("amd64", "orphan");
    put_blobs(&store, &orphan.blobs());
    let stray = Blob::new("application/octet-stream", b"stray".to_vec());
    put_blobs(&store, &[&stray]);

    let report = store.clean().unwrap();
    let mut deleted = report.blobs_deleted.clone();
    deleted.sort();
    let mut expected: Vec<Digest> = orphan
        .blobs()
        .iter()
        .map(|b| b.desc.digest.clone())
        .chain([stray.desc.digest.clone()])
        .collect();
    expected.sort();
    assert_eq!(deleted, expected);
    let freed: u64 = orphan.blobs().iter().map(|b| b.desc.size).sum::<u64>() + stray.desc.size;
    assert_eq!(report.bytes_freed, freed);
    for b in &keep {
        assert!(store.has_blob(&b.desc.digest, Some(b.desc.size)));
    }
    // A partial index is complete for what it holds.
    let verify = store.verify(false).unwrap();
    assert!(verify.is_ok(), "{verify:?}");
    let list = store.list().unwrap();
    assert_eq!(
        list[0].platforms,
        vec![Platform::parse("linux/arm64").unwrap()]
    );
    assert!(list[0].complete);
    let resolved = store
        .resolve(&[r("multi:1")], &Platform::linux("arm64"))
        .unwrap();
    assert_eq!(resolved[0].manifest.digest, arm.manifest.desc.digest);
    assert_eq!(resolved[0].root.digest, index.index.desc.digest);
    assert_eq!(resolved[0].layers.len(), 1);
    let err = store
        .resolve(&[r("multi:1")], &Platform::linux("amd64"))
        .unwrap_err();
    let amd_manifest = index.image("amd64").manifest.desc.digest.to_string();
    assert!(err.to_string().contains(&amd_manifest), "{err}");

    // The other platform, once present, is reachable through the index.
    let amd = index.image("amd64");
    put_blobs(&store, &amd.blobs());
    assert!(store.clean().unwrap().blobs_deleted.is_empty());
    assert_eq!(store.list().unwrap()[0].platforms.len(), 2);

    // arch names as `linuxkit cache pull` writes them.
    let names = store.add_arch_names("docker.io/library/multi:1").unwrap();
    assert_eq!(
        names,
        vec![
            "docker.io/library/multi:1-amd64",
            "docker.io/library/multi:1-arm64"
        ]
    );
    assert_eq!(store.index().unwrap().manifests.len(), 3);
}

#[test]
fn remove_deletes_only_unshared_blobs() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let shared = Blob::new(
        "application/vnd.oci.image.layer.v1.tar",
        layer_tar(&[("base", b"shared base layer")]),
    );
    let own = Blob::new(
        "application/vnd.oci.image.layer.v1.tar",
        layer_tar(&[("app", b"only in a")]),
    );
    let a = TestImage::from_layers("amd64", vec![shared.clone(), own.clone()]);
    let b = TestImage::from_layers("arm64", vec![shared.clone()]);
    a.store_into(&store, "docker.io/library/a:1");
    b.store_into(&store, "docker.io/library/b:1");

    let err = store
        .remove(&["docker.io/library/a:1", "docker.io/library/nope:1"])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { ref reference } if reference == "docker.io/library/nope:1")
    );
    assert_eq!(
        store.index().unwrap().manifests.len(),
        2,
        "nothing removed on error"
    );

    let report = store.remove(&["docker.io/library/a:1"]).unwrap();
    assert_eq!(report.names_removed, vec!["docker.io/library/a:1"]);
    let mut deleted = report.blobs_deleted.clone();
    deleted.sort();
    let mut expected = vec![
        a.manifest.desc.digest.clone(),
        a.config.desc.digest.clone(),
        own.desc.digest.clone(),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
    assert!(store.has_blob(&shared.desc.digest, None));
    assert!(store.verify(false).unwrap().is_ok());
}

#[test]
fn offline_resolution_names_each_missing_image() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = TestImage::simple("amd64", "present");
    img.store_into(&store, "docker.io/library/present:latest");
    let refs = [
        r("present"), // found through the implied :latest
        r("absent:1"),
        r("ghcr.io/org/also-absent:2"),
    ];
    let err = store.resolve(&refs, &Platform::linux("amd64")).unwrap_err();
    let StoreError::Missing { missing } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(missing.len(), 2);
    assert_eq!(missing[0].reference, "docker.io/library/absent:1");
    assert_eq!(missing[0].reason, MissingReason::NotInStore);
    assert_eq!(missing[1].reference, "ghcr.io/org/also-absent:2");
    let text = err.to_string();
    assert!(
        text.starts_with("2 images are not available offline"),
        "{text}"
    );
    assert!(
        text.contains("docker.io/library/absent:1 (not in the store)"),
        "{text}"
    );

    // Wrong architecture for a single-platform image.
    let err = store
        .resolve(&[r("present")], &Platform::linux("arm64"))
        .unwrap_err();
    assert!(err.to_string().contains("no linux/arm64 manifest"), "{err}");

    // By digest, even without a name.
    let by_digest = r(&format!("unnamed@{}", img.manifest.desc.digest));
    let got = store
        .resolve(&[by_digest], &Platform::linux("amd64"))
        .unwrap();
    assert_eq!(got[0].config.digest, img.config.desc.digest);
}

#[test]
fn export_import_round_trip() {
    let src_dir = tmp();
    let src = Store::open(src_dir.path()).unwrap();
    let index = TestIndex::new(&["linux/amd64", "linux/arm64"], true);
    put_blobs(&src, &index.all_blobs());
    src.set_name("docker.io/linuxkit/init:v1", index.index.desc.clone())
        .unwrap();

    let mut first = Vec::new();
    src.export(&r("linuxkit/init:v1"), &mut first).unwrap();
    let mut second = Vec::new();
    src.export(&r("linuxkit/init:v1"), &mut second).unwrap();
    assert_eq!(first, second, "export is deterministic");

    // The archive is an OCI layout with the names docker/linuxkit read.
    let mut archive = tar::Archive::new(first.as_slice());
    let mut paths = Vec::new();
    let mut archive_index = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "index.json" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            archive_index = Some(s);
        }
        paths.push(p);
    }
    assert!(paths.contains(&"oci-layout".to_owned()));
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.starts_with("blobs/sha256/") && p.len() > 20)
            .count(),
        index.all_blobs().len()
    );
    let archive_index: RootIndex = serde_json::from_str(&archive_index.unwrap()).unwrap();
    let ann = &archive_index.manifests[0].annotations;
    assert_eq!(
        ann[ANNOTATION_CONTAINERD_NAME],
        "docker.io/linuxkit/init:v1"
    );
    assert_eq!(ann[ANNOTATION_REF_NAME], "v1");

    let dst_dir = tmp();
    let dst = Store::open(dst_dir.path()).unwrap();
    let imported = dst.import(first.as_slice(), None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(
        imported[0].name.as_deref(),
        Some("docker.io/linuxkit/init:v1")
    );
    assert_eq!(imported[0].format, ArchiveFormat::Oci);
    assert_eq!(imported[0].descriptor.digest, index.index.desc.digest);
    assert!(dst.verify(false).unwrap().is_ok());
    for arch in ["amd64", "arm64"] {
        let got = dst
            .resolve(&[r("linuxkit/init:v1")], &Platform::linux(arch))
            .unwrap();
        assert_eq!(
            got[0].manifest.digest,
            index.image(arch).manifest.desc.digest
        );
    }
    // Re-export from the copy gives identical bytes.
    let mut third = Vec::new();
    dst.export(&r("linuxkit/init:v1"), &mut third).unwrap();
    assert_eq!(first, third);

    // An extra name can be given on import.
    let again = dst
        .import(first.as_slice(), Some(&r("local/init:dev")))
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(dst
        .index()
        .unwrap()
        .named("docker.io/local/init:dev")
        .next()
        .is_some());
}

#[test]
fn import_rejects_bad_archives_without_leaving_blobs() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let good = b"layer".to_vec();
    let wrong_name = Digest::of(b"something else");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(good.len() as u64);
    h.set_mode(0o644);
    b.append_data(
        &mut h,
        format!("blobs/sha256/{}", wrong_name.hex()),
        good.as_slice(),
    )
    .unwrap();
    let tarball = b.into_inner().unwrap();
    let err = store.import(tarball.as_slice(), None).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&wrong_name, None));
    assert!(files_containing(&store.blobs_dir(), ".kiln-tmp-").is_empty());

    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", b"abc".as_slice())
        .unwrap();
    let err = store
        .import(b.into_inner().unwrap().as_slice(), None)
        .unwrap_err();
    assert!(err.to_string().contains("not an image archive"), "{err}");
}

#[test]
fn imports_legacy_docker_save() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let layer = layer_tar(&[("etc/motd", b"legacy\n")]);
    let config = br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers"}}"#.to_vec();
    let config_hex = Digest::of(&config).hex().to_owned();
    let manifest = format!(
        r#"[{{"Config":"{config_hex}.json","RepoTags":["myapp:1.0","registry.local:5000/team/myapp:1.0"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("aaa/VERSION", b"1.0");
    add("aaa/json", b"{}");
    add("aaa/layer.tar", &layer);
    add(&format!("{config_hex}.json"), &config);
    add("repositories", b"{}");
    add("manifest.json", manifest.as_bytes());
    // docker save links duplicate layers.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
        .unwrap();
    let tarball = b.into_inner().unwrap();

    let imported = store.import(tarball.as_slice(), None).unwrap();
    let names: Vec<_> = imported.iter().filter_map(|i| i.name.clone()).collect();
    assert_eq!(
        names,
        vec![
            "docker.io/library/myapp:1.0",
            "registry.local:5000/team/myapp:1.0"
        ]
    );
    assert_eq!(imported[0].format, ArchiveFormat::DockerLegacy);
    let got = store
        .resolve(&[r("myapp:1.0")], &Platform::linux("arm64"))
        .unwrap();
    assert_eq!(got[0].layers.len(), 2);
    assert_eq!(got[0].layers[0].digest, Digest::of(&layer));
    assert_eq!(
        got[0].layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(got[0].config.digest.hex(), config_hex);
    // Only manifest, config and layer remain: the json/VERSION files are gone.
    assert_eq!(store.verify(false).unwrap().blobs_checked, 3);
    assert!(store.clean().unwrap().blobs_deleted.is_empty());
}

#[test]
fn concurrent_threads_never_lose_index_entries() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = TestImage::simple("amd64", "shared");
    put_blobs(&store, &img.blobs());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let root = dir.path().to_owned();
            let desc = img.manifest.desc.clone();
            std::thread::spawn(move || {
                let store = Store::open(root).unwrap();
                for i in 0..25 {
                    store
                        .set_name(&format!("docker.io/library/t{t}:{i}"), desc.clone())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let index = store.index().unwrap();
    assert_eq!(index.manifests.len(), 200);
}

const CHILD_DIR: &str = "KILN_STORE_TEST_CHILD_DIR";
const CHILD_ID: &str = "KILN_STORE_TEST_CHILD_ID";
const PER_WRITER: usize = 40;

/// The body of the child processes of the test below; a no-op otherwise.
#[test]
fn child_process_writer() {
    let (Ok(dir), Ok(id)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ID)) else {
        return;
    };
    write_entries(Path::new(&dir), &id);
}

fn write_entries(dir: &Path, id: &str) {
    let store = Store::open(dir).unwrap();
    for i in 0..PER_WRITER {
        let img = TestImage::simple("amd64", &format!("{id}-{i}"));
        let lease = store.lease().unwrap();
        put_blobs(&store, &img.blobs());
        store
            .set_name(
                &format!("docker.io/proc{id}/img:{i}"),
                img.manifest.desc.clone(),
            )
            .unwrap();
        drop(lease);
        if i % 10 == 0 {
            // Collection runs interleaved with the writers.
            store.clean().unwrap();
        }
    }
}

#[test]
fn concurrent_processes_never_lose_index_entries() {
    let dir = tmp();
    Store::open(dir.path()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_writer",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_ID, id)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    write_entries(dir.path(), "parent");
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let store = Store::open(dir.path()).unwrap();
    let index = store.index().unwrap();
    assert_eq!(index.manifests.len(), 3 * PER_WRITER);
    let report = store.verify(false).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.blobs_checked, 3 * PER_WRITER * 3);
    assert!(files_containing(dir.path(), ".kiln-tmp-").is_empty());
}

/// linuxkit takes a classic `fcntl` write lock on `<cache>/.lock`; kiln must
/// wait for it. Python's `fcntl.lockf` takes exactly that kind of lock.
#[test]
fn waits_for_a_linuxkit_style_fcntl_lock() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not available; skipping");
        return;
    }
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = TestImage::simple("amd64", "locked");
    put_blobs(&store, &img.blobs());
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys,time\n\
             f=open(sys.argv[1],'a')\n\
             fcntl.lockf(f, fcntl.LOCK_EX)\n\
             print('locked', flush=True)\n\
             time.sleep(0.6)\n",
        ])
        .arg(dir.path().join(".lock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let start = Instant::now();
    store
        .set_name("docker.io/library/locked:1", img.manifest.desc.clone())
        .unwrap();
    let waited = start.elapsed();
    assert!(holder.wait().unwrap().success());
    assert!(
        waited >= Duration::from_millis(300),
        "did not wait: {waited:?}"
    );
}

#[test]
fn clean_waits_for_writers_holding_a_lease() {
    use std::sync::mpsc;
    use std::time::Duration;
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = TestImage::simple("amd64", "leased");
    let (written, blobs_are_in) = mpsc::channel();
    let writer = {
        let store = store.clone();
        let img = img.clone();
        std::thread::spawn(move || {
            let lease = store.lease().unwrap();
            put_blobs(&store, &img.blobs());
            written.send(()).unwrap();
            // Unnamed blobs, mid-operation: a clean now must not touch them.
            std::thread::sleep(Duration::from_millis(300));
            store
                .set_name("docker.io/library/leased:1", img.manifest.desc.clone())
                .unwrap();
            drop(lease);
        })
    };
    blobs_are_in.recv().unwrap();
    let report = store.clean().unwrap();
    writer.join().unwrap();
    assert!(report.blobs_deleted.is_empty(), "{report:?}");
    assert!(store.verify(false).unwrap().is_ok());
    assert_eq!(store.list().unwrap().len(), 1);
}
