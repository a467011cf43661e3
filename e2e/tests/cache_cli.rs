//! Acceptance tests of `kiln cache` against a real registry (Debian's
//! docker-registry on loopback, fixtures pushed with skopeo), running the
//! `kiln` binary and checking the store with the library.

mod cache_common;

use std::net::TcpListener;
use std::process::Command;

use cache_common::{
    amd64, arm64, fixtures, manifest_for, pinned, reference, registry_with, run_of, Kiln,
};
use kiln_backend::engine::store::Digest;

/// Pull by tag, by digest, and from the multi-arch index with each
/// platform; `ls` (text and JSON) shows what arrived.
#[test]
fn pull_by_tag_by_digest_and_by_index_platform() {
    let set = fixtures();
    let registry = registry_with(&[&set.plain, &set.label, &set.multiarch]);
    let kiln = Kiln::new();

    // By tag.
    let plain = reference(&registry, &set.plain);
    let run = kiln.cache(&["pull", &plain]).expect(0);
    assert!(run.stdout.contains(set.plain.digest()), "{run}");
    assert_eq!(kiln.digest_of(&plain).as_deref(), Some(set.plain.digest()));
    let image = kiln.resolve(&plain, &amd64());
    assert_eq!(image.manifest.digest.to_string(), set.plain.digest());
    assert_eq!(image.layers.len(), 2);

    // By digest: stored under the pinned name.
    let label = pinned(&registry, &set.label);
    kiln.cache(&["pull", &label]).expect(0);
    assert_eq!(kiln.digest_of(&label).as_deref(), Some(set.label.digest()));
    kiln.resolve(&label, &amd64());

    // The index, both platforms, with linuxkit's per-arch names.
    let multi = reference(&registry, &set.multiarch);
    let run = kiln
        .cache(&[
            "pull",
            "--arch",
            "amd64",
            "--platform",
            "linux/arm64",
            &multi,
        ])
        .expect(0);
    assert!(
        run.stdout.contains(&format!("named {multi}-amd64")),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("named {multi}-arm64")),
        "{run}"
    );
    assert_eq!(
        kiln.digest_of(&multi).as_deref(),
        Some(set.multiarch.digest())
    );
    for (arch, platform) in [("amd64", amd64()), ("arm64", arm64())] {
        let want = manifest_for(&set.multiarch, arch);
        assert_eq!(
            kiln.digest_of(&format!("{multi}-{arch}")).as_deref(),
            Some(want.as_str())
        );
        let image = kiln.resolve(&multi, &platform);
        assert_eq!(image.manifest.digest.to_string(), want, "{arch}");
        assert_eq!(image.platform.as_ref().unwrap().architecture, arch);
        // The per-arch name resolves to the same single image.
        let by_arch = kiln.resolve(&format!("{multi}-{arch}"), &platform);
        assert_eq!(by_arch.manifest.digest.to_string(), want);
    }

    // `ls`: aligned text and JSON.
    let ls = kiln.cache(&["ls"]).expect(0);
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 5, "{ls}");
    let digest_col = lines[0].find("DIGEST").unwrap();
    for line in &lines[1..] {
        assert!(line[digest_col..].starts_with("sha256:"), "{ls}");
    }
    let multi_line = lines
        .iter()
        .find(|l| l.starts_with(&format!("{multi} ")))
        .unwrap();
    assert!(multi_line.contains("linux/amd64,linux/arm64/v8"), "{ls}");
    let json: serde_json::Value =
        serde_json::from_str(&kiln.cache(&["ls", "--format", "json"]).expect(0).stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let row = rows
        .iter()
        .find(|r| r["reference"] == plain.as_str())
        .unwrap();
    assert_eq!(row["digest"], set.plain.digest());
    assert_eq!(row["platforms"][0], "linux/amd64");
    assert_eq!(row["complete"], true);
    assert!(row["size"].as_u64().unwrap() > 1000);

    kiln.cache(&["verify"]).expect(0);
}

/// Only the requested platform of an index is stored; offline, the other
/// one is reported as missing.
#[test]
fn index_pull_stores_only_the_requested_platform() {
    let set = fixtures();
    let registry = registry_with(&[&set.multiarch]);
    let multi = reference(&registry, &set.multiarch);
    let arm = manifest_for(&set.multiarch, "arm64");
    let amd = manifest_for(&set.multiarch, "amd64");

    let kiln = Kiln::new();
    kiln.cache(&["pull", "--arch", "arm64", &multi]).expect(0);
    let blobs = kiln.blob_files();
    assert!(blobs.contains(&arm["sha256:".len()..].to_owned()));
    assert!(!blobs.contains(&amd["sha256:".len()..].to_owned()));
    assert!(kiln.digest_of(&format!("{multi}-amd64")).is_none());
    kiln.resolve(&multi, &arm64());
    let run = kiln
        .cache(&["--offline", "pull", "--arch", "amd64", &multi])
        .expect(1);
    assert!(run.stderr.contains(&multi), "{run}");
    assert!(run.stderr.contains(&amd), "{run}");

    // --all-platforms stores both.
    let all = Kiln::new();
    all.cache(&["pull", "--all-platforms", &multi]).expect(0);
    all.resolve(&multi, &amd64());
    all.resolve(&multi, &arm64());
    all.cache(&["verify"]).expect(0);
}

/// `--offline` resolves from the store alone (the registry is gone) and
/// names each image that is missing.
#[test]
fn offline_resolves_from_the_store_and_names_each_missing_image() {
    let set = fixtures();
    let registry = registry_with(&[&set.plain, &set.service]);
    let plain = reference(&registry, &set.plain);
    let service = reference(&registry, &set.service);
    let absent_a = format!("{}/kiln-test/not-pulled:v1", registry.host());
    let absent_b = "kiln-test/never:v2";
    let kiln = Kiln::new();
    kiln.cache(&["pull", &plain, &service]).expect(0);
    drop(registry);

    let run = kiln
        .cache(&["pull", "--offline", &plain, &service])
        .expect(0);
    assert!(run.stdout.contains(set.plain.digest()), "{run}");
    assert!(run.stdout.contains(set.service.digest()), "{run}");

    let run = kiln
        .cache(&["pull", "--offline", &plain, &absent_a, absent_b])
        .expect(1);
    assert!(
        run.stderr.contains("2 images are not available offline"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains(&format!("{absent_a} (not in the store)")),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("docker.io/kiln-test/never:v2 (not in the store)"),
        "{run}"
    );
    assert!(!run.stderr.contains(&plain), "{run}");

    // A layer missing from the store is named with its digest.
    let image = kiln.resolve(&plain, &amd64());
    let layer = &image.layers[1].digest;
    std::fs::remove_file(kiln.blob_path(layer)).unwrap();
    let run = kiln.cache(&["--offline", "pull", &plain]).expect(1);
    assert!(run.stderr.contains(&plain), "{run}");
    assert!(
        run.stderr.contains(&format!("layer {layer} missing")),
        "{run}"
    );
}

/// kiln export → kiln import into a fresh store gives the same digests and
/// the same archive bytes; skopeo's OCI archives import too.
#[test]
fn export_import_round_trips() {
    let set = fixtures();
    let registry = registry_with(&[&set.plain, &set.multiarch, &set.runc]);
    let plain = reference(&registry, &set.plain);
    let multi = reference(&registry, &set.multiarch);
    let runc = reference(&registry, &set.runc);
    let a = Kiln::new();
    a.cache(&["pull", &plain, &runc]).expect(0);
    a.cache(&["pull", "--all-platforms", &multi]).expect(0);
    let work = tempfile::tempdir().unwrap();

    let b = Kiln::new();
    for (name, root) in [
        (&plain, set.plain.digest()),
        (&multi, set.multiarch.digest()),
        (&runc, set.runc.digest()),
    ] {
        let tar = work.path().join("image.tar");
        let run = a
            .cache(&[
                "export".as_ref(),
                name.as_ref(),
                "-o".as_ref(),
                tar.as_os_str(),
            ])
            .expect(0);
        assert!(run.stderr.contains(root), "{run}");
        let run = b.cache(&["import".as_ref(), tar.as_os_str()]).expect(0);
        assert!(
            run.stdout.contains(&format!("imported {name} {root}")),
            "{run}"
        );
        assert_eq!(b.digest_of(name).as_deref(), Some(root));
        // Exporting again from the new store gives the same bytes.
        let again = work.path().join("again.tar");
        b.cache(&[
            "export".as_ref(),
            name.as_ref(),
            "-o".as_ref(),
            again.as_os_str(),
        ])
        .expect(0);
        assert_eq!(std::fs::read(&tar).unwrap(), std::fs::read(&again).unwrap());
        // No partial file left next to the output.
        let leftovers: Vec<_> = std::fs::read_dir(work.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty());
    }
    for platform in [amd64(), arm64()] {
        assert_eq!(
            b.resolve(&multi, &platform).manifest,
            a.resolve(&multi, &platform).manifest
        );
    }
    assert_eq!(
        b.resolve(&plain, &amd64()).layers,
        a.resolve(&plain, &amd64()).layers
    );
    b.cache(&["verify"]).expect(0);

    // Exporting to standard output gives the same archive.
    let out = a.command(&["export", &plain, "-o", "-"]).output().unwrap();
    let tar = work.path().join("stdout.tar");
    a.cache(&[
        "export".as_ref(),
        plain.as_ref(),
        "-o".as_ref(),
        tar.as_os_str(),
    ])
    .expect(0);
    assert_eq!(out.stdout, std::fs::read(&tar).unwrap());

    // Exporting an image that is not there fails and writes nothing.
    let missing = work.path().join("missing.tar");
    let run = a
        .cache(&[
            "export".as_ref(),
            "kiln-test/nothing:v1".as_ref(),
            "-o".as_ref(),
            missing.as_os_str(),
        ])
        .expect(1);
    assert!(
        run.stderr.contains("docker.io/kiln-test/nothing:v1"),
        "{run}"
    );
    assert!(!missing.exists());

    // skopeo-made OCI archives: one with a name, one without (named by --name).
    let skopeo = kiln_e2e::tools::find("skopeo", "skopeo").unwrap();
    let named = work.path().join("skopeo-named.tar");
    let unnamed = work.path().join("skopeo-unnamed.tar");
    let skopeo_name = "kiln.test/skopeo/busybox-service:v1";
    for (tar, dest_name) in [(&named, Some(skopeo_name)), (&unnamed, None)] {
        let dest = match dest_name {
            Some(n) => format!("oci-archive:{}:{n}", tar.display()),
            None => format!("oci-archive:{}", tar.display()),
        };
        kiln_e2e::tools::run(
            Command::new(&skopeo)
                .args(["--insecure-policy", "copy", "--quiet"])
                .arg(set.service.oci_ref())
                .arg(dest),
        )
        .unwrap();
    }
    let c = Kiln::new();
    let run = c.cache(&["import".as_ref(), named.as_os_str()]).expect(0);
    assert!(run.stdout.contains(skopeo_name), "{run}");
    assert_eq!(
        c.digest_of(skopeo_name).as_deref(),
        Some(set.service.digest())
    );
    let run = c
        .cache(&[
            "import".as_ref(),
            unnamed.as_os_str(),
            "--name".as_ref(),
            "kiln.test/by-flag:v2".as_ref(),
        ])
        .expect(0);
    assert!(run.stdout.contains("kiln.test/by-flag:v2"), "{run}");
    assert_eq!(
        c.digest_of("kiln.test/by-flag:v2").as_deref(),
        Some(set.service.digest())
    );
    c.resolve(skopeo_name, &amd64());
    c.cache(&["verify"]).expect(0);

    // Not an archive: exit 1 naming the file; unreadable: exit 2.
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    let run = c.cache(&["import".as_ref(), junk.as_os_str()]).expect(1);
    assert!(run.stderr.contains("junk.tar"), "{run}");
    c.cache(&["import", "/nonexistent/kiln.tar"]).expect(2);
}

/// Two processes pulling the same images into one store at once: both
/// succeed and `kiln cache verify` finds nothing wrong.
#[test]
fn concurrent_pulls_leave_a_consistent_store() {
    let set = fixtures();
    let all = set.all();
    let registry = registry_with(&all);
    let refs: Vec<String> = all.iter().map(|f| reference(&registry, f)).collect();
    for round in 0..2 {
        let kiln = Kiln::new();
        let mut args = vec!["pull".to_owned(), "--all-platforms".to_owned()];
        args.extend(refs.iter().cloned());
        let children: Vec<_> = (0..2)
            .map(|i| {
                let mut cmd = kiln.command(&args);
                // The second one asks for the blobs one at a time, so the
                // two interleave differently.
                if i == 1 {
                    cmd.args(["--jobs", "1"]);
                }
                cmd.spawn().expect("spawn kiln")
            })
            .collect();
        for child in children {
            let run = run_of(child.wait_with_output().unwrap());
            run.expect(0);
        }
        let verify = kiln.cache(&["verify"]).expect(0);
        assert!(
            verify.stdout.contains("no problems"),
            "round {round}: {verify}"
        );
        for (f, r) in all.iter().zip(&refs) {
            assert_eq!(kiln.digest_of(r).as_deref(), Some(f.digest()), "{r}");
        }
        let index = kiln.store().index().unwrap();
        let names: Vec<_> = index
            .manifests
            .iter()
            .filter_map(|d| d.ref_name())
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "duplicate names: {names:?}");
        assert!(kiln.blob_files().iter().all(|b| !b.starts_with('.')));
    }
}

/// A blob corrupted on disk is found, named with the images using it,
/// removed on request and fetched again by the next pull.
#[test]
fn verify_detects_a_blob_corrupted_on_disk() {
    let set = fixtures();
    let registry = registry_with(&[&set.plain, &set.label]);
    let plain = reference(&registry, &set.plain);
    let label = reference(&registry, &set.label);
    let kiln = Kiln::new();
    kiln.cache(&["pull", &plain, &label]).expect(0);
    kiln.cache(&["verify"]).expect(0);

    let layer = kiln.resolve(&plain, &amd64()).layers[1].clone();
    let path = kiln.blob_path(&layer.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let actual = Digest::of(&bytes);

    let run = kiln.cache(&["verify"]).expect(1);
    assert!(
        run.stdout.contains(&format!(
            "corrupt blob {} (content hashes to {actual}), used by {plain}",
            layer.digest
        )),
        "{run}"
    );
    assert!(run.stdout.contains("1 corrupt blob"), "{run}");
    assert!(!run.stdout.contains(&label), "{run}");

    let run = kiln.cache(&["verify", "--remove-corrupt"]).expect(1);
    assert!(run.stdout.contains("deleted"), "{run}");
    assert!(!path.exists());
    let run = kiln.cache(&["verify"]).expect(1);
    assert!(
        run.stdout
            .contains(&format!("missing layer blob {} of {plain}", layer.digest)),
        "{run}"
    );
    let run = kiln.cache(&["pull", &plain]).expect(0);
    assert!(run.stdout.contains("1 blob"), "{run}");
    kiln.cache(&["verify"]).expect(0);
}

/// Pulling is a no-op the second time; rm drops names and only their
/// blobs; clean deletes unreferenced blobs.
#[test]
fn warm_pull_rm_and_clean() {
    let set = fixtures();
    let registry = registry_with(&[&set.plain, &set.label, &set.multiarch]);
    let plain = reference(&registry, &set.plain);
    let label = reference(&registry, &set.label);
    let multi = reference(&registry, &set.multiarch);
    let kiln = Kiln::new();
    kiln.cache(&["pull", &plain, &label]).expect(0);
    kiln.cache(&["pull", "--all-platforms", &multi]).expect(0);
    let before = kiln.blob_files();
    let run = kiln.cache(&["pull", &plain, &label]).expect(0);
    assert!(run.stderr.contains("0 blobs (0 B) downloaded"), "{run}");
    assert_eq!(kiln.blob_files(), before);

    // rm of an index removes its per-arch names and its blobs, keeps the rest.
    let run = kiln.cache(&["rm", &multi]).expect(0);
    for arch in ["amd64", "arm64"] {
        assert!(
            run.stdout.contains(&format!("removed {multi}-{arch}")),
            "{run}"
        );
    }
    assert!(kiln.digest_of(&multi).is_none());
    let names = kiln.store().list().unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    kiln.cache(&["verify"]).expect(0);
    kiln.resolve(&label, &amd64());

    // rm of an unknown name: exit 1 naming it; the known one is removed.
    let run = kiln.cache(&["rm", &plain, "kiln-test/nope:v1"]).expect(1);
    assert!(
        run.stderr
            .contains("image docker.io/kiln-test/nope:v1 is not in the store"),
        "{run}"
    );
    assert!(kiln.digest_of(&plain).is_none());
    kiln.cache(&["verify"]).expect(0);

    // An unnamed import is garbage for clean.
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("plain.tar");
    let other = Kiln::new();
    other.cache(&["pull", &plain]).expect(0);
    other
        .cache(&[
            "export".as_ref(),
            plain.as_ref(),
            "-o".as_ref(),
            tar.as_os_str(),
        ])
        .expect(0);
    let fresh = Kiln::new();
    fresh.cache(&["import".as_ref(), tar.as_os_str()]).expect(0);
    let names: Vec<String> = fresh
        .store()
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|i| i.name)
        .collect();
    assert_eq!(names, std::slice::from_ref(&plain));
    fresh.cache(&["rm", &plain]).expect(0);
    assert!(fresh.blob_files().is_empty(), "{:?}", fresh.blob_files());
    std::fs::write(
        fresh.store_dir().join("blobs/sha256/.kiln-tmp-leftover"),
        b"x",
    )
    .unwrap();
    let run = fresh.cache(&["clean"]).expect(0);
    assert!(run.stdout.contains("1 temporary file"), "{run}");
    assert!(fresh.blob_files().is_empty());
}

/// Mirrors from `--mirror` and from `$KILN_HOME/config.toml` reach the
/// loopback registry for another registry's names.
#[test]
fn mirrors_from_flag_and_config() {
    let set = fixtures();
    let registry = registry_with(&[&set.plain]);
    let name = format!("mirrored.invalid/{}:{}", set.plain.name, set.plain.tag);
    let kiln = Kiln::new();
    let run = kiln
        .cache(&[
            "pull",
            "--mirror",
            &format!("mirrored.invalid=http://{}", registry.host()),
            &name,
        ])
        .expect(0);
    assert!(run.stdout.contains(set.plain.digest()), "{run}");
    assert_eq!(kiln.digest_of(&name).as_deref(), Some(set.plain.digest()));

    let other = Kiln::new();
    std::fs::write(
        other.home.path().join("config.toml"),
        format!(
            "[registries.\"mirrored.invalid\"]\nmirror = \"http://{}\"\n",
            registry.host()
        ),
    )
    .unwrap();
    other.cache(&["pull", &name]).expect(0);
    assert_eq!(other.digest_of(&name).as_deref(), Some(set.plain.digest()));

    // A malformed config is a usage error naming the file.
    std::fs::write(other.home.path().join("config.toml"), "[registries\n").unwrap();
    let run = other.cache(&["pull", &name]).expect(2);
    assert!(run.stderr.contains("config.toml"), "{run}");
}

/// An unknown tag and an unreachable registry: exit 1, the reference named,
/// no panic, and nothing left in the store.
#[test]
fn unknown_tag_and_unreachable_registry_against_the_real_registry() {
    let set = fixtures();
    let registry = registry_with(&[&set.plain]);
    let kiln = Kiln::new();

    let unknown = format!("{}/{}:no-such-tag", registry.host(), set.plain.name);
    let run = kiln.cache(&["pull", &unknown]).expect(1);
    assert!(run.stderr.contains(&unknown), "{run}");
    assert!(run.stderr.contains("no-such-tag not found"), "{run}");
    let unknown_repo = format!("{}/kiln-test/no-such-repo:v1", registry.host());
    let run = kiln.cache(&["pull", &unknown_repo]).expect(1);
    assert!(run.stderr.contains(&unknown_repo), "{run}");
    let unknown_digest = format!(
        "{}/{}@sha256:{}",
        registry.host(),
        set.plain.name,
        "0".repeat(64)
    );
    let run = kiln.cache(&["pull", &unknown_digest]).expect(1);
    assert!(run.stderr.contains(&unknown_digest), "{run}");

    // A port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable = format!("127.0.0.1:{port}/kiln-test/busybox-plain:v1");
    let run = kiln.cache(&["pull", &unreachable]).expect(1);
    assert!(run.stderr.contains(&unreachable), "{run}");
    assert!(
        run.stderr
            .contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{run}"
    );

    // One good and one bad: the good one is stored, the bad one reported.
    let plain = reference(&registry, &set.plain);
    let run = kiln.cache(&["pull", &plain, &unknown]).expect(1);
    assert!(run.stderr.contains(&unknown), "{run}");
    assert_eq!(kiln.digest_of(&plain).as_deref(), Some(set.plain.digest()));
    assert!(kiln.blob_files().iter().all(|b| !b.starts_with('.')));
    kiln.cache(&["verify"]).expect(0);

    // Bad usage is exit 2.
    kiln.cache(&["pull", "Not/Valid"]).expect(2);
    kiln.cache(&["pull", "--platform", "amd64", &plain])
        .expect(2);
}
