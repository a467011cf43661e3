//! Registry client against a fake registry on 127.0.0.1: platform selection,
//! shared and already-present blobs, bounded concurrency, auth, mirrors, and
//! every failure mode (wrong digest, truncation, 500, unknown tag, oversized
//! manifest, unreachable registry) with no partial blob left behind.

mod store_common;

use std::time::Duration;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::{
    pull, pull_missing, resolve_remote, Credential, Mirrors, PlatformSelection, PullError,
    RegistryConfig,
};
use kiln_backend::engine::store::{Digest, Platform, Store};
use store_common::{
    files_containing, layer_tar, AuthMode, Blob, FakeRegistry, Route, TestImage, TestIndex,
};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn amd64() -> PlatformSelection {
    Platform::linux("amd64").into()
}

struct Fixture {
    registry: FakeRegistry,
    store: Store,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        registry: FakeRegistry::start(),
        store: Store::open(dir.path().join("cache")).unwrap(),
        _dir: dir,
    }
}

impl Fixture {
    fn reference(&self, repo_tag: &str) -> Reference {
        r(&format!("{}/{repo_tag}", self.registry.host()))
    }

    fn assert_no_partial_blobs(&self) {
        assert!(files_containing(&self.store.blobs_dir(), ".kiln-tmp-").is_empty());
    }
}

async fn pull_one(f: &Fixture, reference: &Reference) -> Result<(), PullError> {
    pull(
        std::slice::from_ref(reference),
        &amd64(),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn pulls_a_single_image() {
    let f = fixture();
    let img = TestImage::simple("amd64", "single");
    f.registry.put_image("test/single", "1.0", &img);
    let reference = f.reference("test/single:1.0");
    let pulled = pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].reference, reference);
    assert_eq!(pulled[0].root.digest, img.manifest.desc.digest);
    assert_eq!(pulled[0].blobs_downloaded, 2);
    assert_eq!(
        pulled[0].bytes_downloaded,
        img.config.desc.size + img.layers[0].desc.size
    );
    let resolved = f
        .store
        .resolve(std::slice::from_ref(&reference), &Platform::linux("amd64"))
        .unwrap();
    assert_eq!(resolved[0].config.digest, img.config.desc.digest);
    assert_eq!(
        f.store.index().unwrap().manifests[0].ref_name(),
        Some(reference.to_string().as_str())
    );
    assert!(f.store.verify(false).unwrap().is_ok());

    // Pulling again asks for the manifest but downloads nothing.
    let pulled = pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(pulled[0].blobs_downloaded, 0);
    assert_eq!(f.registry.blob_requests(&img.layers[0].desc.digest), 1);

    // pull_missing resolves from the store without touching the network.
    let before = f.registry.requests().len();
    let got = pull_missing(
        std::slice::from_ref(&reference),
        &Platform::linux("amd64"),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(got[0].manifest.digest, img.manifest.desc.digest);
    assert_eq!(f.registry.requests().len(), before);
}

#[tokio::test]
async fn adds_latest_only_when_untagged_and_pulls_by_digest() {
    let f = fixture();
    let img = TestImage::simple("amd64", "latest");
    f.registry.put_image("test/untagged", "latest", &img);
    let pulled = pull(
        &[f.reference("test/untagged")],
        &amd64(),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        pulled[0].reference.to_string(),
        format!("{}/test/untagged:latest", f.registry.host())
    );

    let pinned = f.reference(&format!("test/untagged@{}", img.manifest.desc.digest));
    let pulled = pull(
        std::slice::from_ref(&pinned),
        &amd64(),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(pulled[0].reference, pinned);
    assert!(f
        .registry
        .requests()
        .iter()
        .any(|req| req.contains(&format!("/manifests/{}", img.manifest.desc.digest))));
}

#[tokio::test]
async fn stores_only_the_requested_platform() {
    let f = fixture();
    let index = TestIndex::new(&["linux/amd64", "linux/arm64/v8"], true);
    f.registry.put_index("test/multi", "2", &index);
    let reference = f.reference("test/multi:2");
    let pulled = pull(
        std::slice::from_ref(&reference),
        &Platform::linux("arm64").into(),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    let arm = index.image("arm64");
    let amd = index.image("amd64");
    assert_eq!(pulled[0].root.digest, index.index.desc.digest);
    assert_eq!(pulled[0].manifests.len(), 1);
    assert_eq!(pulled[0].manifests[0].digest, arm.manifest.desc.digest);
    for b in arm.blobs() {
        assert!(f.store.has_blob(&b.desc.digest, Some(b.desc.size)));
    }
    for b in amd.blobs() {
        assert!(!f.store.has_blob(&b.desc.digest, None), "amd64 blob stored");
        assert_eq!(f.registry.blob_requests(&b.desc.digest), 0);
    }
    // Attestations: manifest and config always (linuxkit reads them), the
    // SBOM layer only for the selected platform.
    let (att_amd, att_arm) = (&index.attestations[0], &index.attestations[1]);
    for a in [att_amd, att_arm] {
        assert!(f.store.has_blob(&a.manifest.desc.digest, None));
        assert!(f.store.has_blob(&a.config.desc.digest, None));
    }
    assert!(f.store.has_blob(&att_arm.layers[0].desc.digest, None));
    assert!(!f.store.has_blob(&att_amd.layers[0].desc.digest, None));
    assert!(f.store.verify(false).unwrap().is_ok());
    let listed = f.store.list().unwrap();
    assert_eq!(
        listed[0].platforms,
        vec![Platform::parse("linux/arm64/v8").unwrap()]
    );
    let resolved = f
        .store
        .resolve(std::slice::from_ref(&reference), &Platform::linux("arm64"))
        .unwrap();
    assert_eq!(resolved[0].manifest.digest, arm.manifest.desc.digest);

    // Asking for all platforms fills in the rest.
    pull(
        std::slice::from_ref(&reference),
        &PlatformSelection::All,
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap();
    for b in index.all_blobs() {
        assert!(f.store.has_blob(&b.desc.digest, Some(b.desc.size)));
    }
}

#[tokio::test]
async fn missing_platform_is_named() {
    let f = fixture();
    let index = TestIndex::new(&["linux/amd64"], false);
    f.registry.put_index("test/amd-only", "1", &index);
    let err = pull(
        &[f.reference("test/amd-only:1")],
        &Platform::linux("riscv64").into(),
        &f.store,
        &RegistryConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PullError::PlatformNotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("test/amd-only:1"), "{text}");
    assert!(
        text.contains(&index.index.desc.digest.to_string()),
        "{text}"
    );
    assert!(text.contains("linux/riscv64"), "{text}");
    assert!(text.contains("it has linux/amd64"), "{text}");
    assert!(f.store.index().unwrap().manifests.is_empty());
}

#[tokio::test]
async fn wrong_digest_blob_is_rejected_and_never_visible() {
    let f = fixture();
    let img = TestImage::simple("amd64", "tampered");
    f.registry.put_image("test/tampered", "1", &img);
    let layer = &img.layers[0];
    let mut evil = layer.bytes.clone();
    evil[10] ^= 1;
    f.registry.route(
        &format!("/v2/test/tampered/blobs/{}", layer.desc.digest),
        Route::ok("application/octet-stream", evil.clone()),
    );
    let reference = f.reference("test/tampered:1");
    let err = pull_one(&f, &reference).await.unwrap_err();
    match &err {
        PullError::DigestMismatch {
            reference: name,
            what,
            expected,
            actual,
        } => {
            assert_eq!(name, &reference.to_string());
            assert_eq!(*what, "blob");
            assert_eq!(expected, &layer.desc.digest);
            assert_eq!(actual, &Digest::of(&evil));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(!f.store.has_blob(&layer.desc.digest, None));
    assert!(!f.store.has_blob(&Digest::of(&evil), None));
    assert!(f.store.index().unwrap().manifests.is_empty());
    f.assert_no_partial_blobs();
}

#[tokio::test]
async fn truncated_blob_is_rejected() {
    let f = fixture();
    let img = TestImage::new("amd64", &[&[("big", &vec![7u8; 200_000][..])]]);
    f.registry.put_image("test/short", "1", &img);
    let layer = &img.layers[0];
    let mut route = Route::ok("application/octet-stream", layer.bytes.clone());
    route.truncate_to = Some(50_000);
    f.registry.route(
        &format!("/v2/test/short/blobs/{}", layer.desc.digest),
        route,
    );
    let err = pull_one(&f, &f.reference("test/short:1"))
        .await
        .unwrap_err();
    match &err {
        PullError::Truncated {
            digest,
            received,
            expected,
            ..
        } => {
            assert_eq!(digest, &layer.desc.digest);
            assert!(*received < *expected, "{err}");
            assert_eq!(*expected, layer.desc.size);
        }
        other => panic!("expected Truncated, got {other}"),
    }
    assert!(err.to_string().contains("test/short:1"), "{err}");
    assert!(!f.store.has_blob(&layer.desc.digest, None));
    f.assert_no_partial_blobs();
}

#[tokio::test]
async fn overlong_blob_is_rejected() {
    let f = fixture();
    let img = TestImage::simple("amd64", "long");
    f.registry.put_image("test/long", "1", &img);
    let layer = &img.layers[0];
    let mut longer = layer.bytes.clone();
    longer.extend_from_slice(b"trailing garbage");
    let path = format!("/v2/test/long/blobs/{}", layer.desc.digest);
    f.registry
        .route(&path, Route::ok("application/octet-stream", longer.clone()));
    let err = pull_one(&f, &f.reference("test/long:1")).await.unwrap_err();
    assert!(
        matches!(err, PullError::TooLong { announced: Some(n), .. } if n == longer.len() as u64),
        "{err}"
    );
    // Without Content-Length the excess is caught while streaming.
    let mut route = Route::ok("application/octet-stream", longer);
    route.no_length = true;
    f.registry.route(&path, route);
    let err = pull_one(&f, &f.reference("test/long:1")).await.unwrap_err();
    assert!(
        matches!(err, PullError::TooLong { announced: None, ref digest, .. } if digest == &layer.desc.digest),
        "{err}"
    );
    assert!(!f.store.has_blob(&layer.desc.digest, None));
    f.assert_no_partial_blobs();
}

#[tokio::test]
async fn server_errors_name_image_and_digest() {
    let f = fixture();
    let img = TestImage::simple("amd64", "flaky");
    f.registry.put_image("test/flaky", "1", &img);
    let layer = &img.layers[0].desc.digest;
    f.registry.route(
        &format!("/v2/test/flaky/blobs/{layer}"),
        Route::status(500, "storage backend on fire"),
    );
    let err = pull_one(&f, &f.reference("test/flaky:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PullError::Http {
                status: 500,
                what: "blob",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("test/flaky:1"), "{text}");
    assert!(text.contains(&layer.to_string()), "{text}");
    assert!(text.contains("500"), "{text}");

    f.registry
        .route("/v2/test/flaky/manifests/2", Route::status(500, "nope"));
    let err = pull_one(&f, &f.reference("test/flaky:2"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::Http { status: 500, what: "manifest", ref target, .. } if target == "2"),
        "{err}"
    );

    // A blob the registry does not have.
    f.registry.route(
        &format!("/v2/test/flaky/blobs/{layer}"),
        Route::status(
            404,
            r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
        ),
    );
    let err = pull_one(&f, &f.reference("test/flaky:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::BlobNotFound { ref digest, .. } if digest == layer),
        "{err}"
    );
    f.assert_no_partial_blobs();
}

#[tokio::test]
async fn unknown_tag_is_named() {
    let f = fixture();
    let reference = f.reference("test/ghost:9.9");
    let err = pull_one(&f, &reference).await.unwrap_err();
    assert!(matches!(err, PullError::ManifestNotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&reference.to_string()), "{text}");
    assert!(text.contains("manifest 9.9 not found"), "{text}");
}

#[tokio::test]
async fn oversized_manifests_are_refused() {
    let f = fixture();
    let huge = vec![b' '; 5 * 1024 * 1024];
    f.registry.route(
        "/v2/test/huge/manifests/1",
        Route::ok("application/vnd.oci.image.manifest.v1+json", huge.clone()),
    );
    let err = pull_one(&f, &f.reference("test/huge:1")).await.unwrap_err();
    assert!(
        matches!(err, PullError::ManifestTooLarge { size: Some(s), limit, .. } if s == huge.len() as u64 && limit == 4 * 1024 * 1024),
        "{err}"
    );
    assert!(err.to_string().contains("test/huge:1"), "{err}");
    let mut chunked = Route::ok("application/vnd.oci.image.manifest.v1+json", huge);
    chunked.no_length = true;
    f.registry.route("/v2/test/huge/manifests/2", chunked);
    let err = pull_one(&f, &f.reference("test/huge:2")).await.unwrap_err();
    assert!(
        matches!(err, PullError::ManifestTooLarge { size: None, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn manifest_not_matching_its_digest_is_refused() {
    let f = fixture();
    let img = TestImage::simple("amd64", "liar");
    f.registry.put_image("test/liar", "1", &img);
    let mut route = Route::ok(&img.manifest.desc.media_type, img.manifest.bytes.clone());
    let claimed = Digest::of(b"another manifest");
    route
        .headers
        .push(("Docker-Content-Digest".into(), claimed.to_string()));
    f.registry.route("/v2/test/liar/manifests/1", route);
    let err = pull_one(&f, &f.reference("test/liar:1")).await.unwrap_err();
    assert!(
        matches!(err, PullError::DigestMismatch { what: "manifest", ref expected, ref actual, .. }
            if expected == &claimed && actual == &img.manifest.desc.digest),
        "{err}"
    );
    // Pinned to a digest the content does not have.
    let wrong = f.reference(&format!("test/liar@{claimed}"));
    f.registry.route(
        &format!("/v2/test/liar/manifests/{claimed}"),
        Route::ok(&img.manifest.desc.media_type, img.manifest.bytes.clone()),
    );
    let err = pull_one(&f, &wrong).await.unwrap_err();
    assert!(
        matches!(
            err,
            PullError::DigestMismatch {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );
    assert!(f.store.index().unwrap().manifests.is_empty());
}

#[tokio::test]
async fn unreachable_registry_is_named() {
    let f = fixture();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let reference = r(&format!("127.0.0.1:{port}/test/nowhere:1"));
    let err = pull_one(&f, &reference).await.unwrap_err();
    match &err {
        PullError::Unreachable {
            reference: name,
            registry,
            ..
        } => {
            assert_eq!(name, &reference.to_string());
            assert_eq!(registry, &format!("127.0.0.1:{port}"));
        }
        other => panic!("expected Unreachable, got {other}"),
    }
}

#[tokio::test]
async fn failures_are_reported_per_image_and_good_images_still_stored() {
    let f = fixture();
    let good = TestImage::simple("amd64", "good");
    let bad = TestImage::simple("amd64", "bad");
    f.registry.put_image("test/good", "1", &good);
    f.registry.put_image("test/bad", "1", &bad);
    f.registry.route(
        &format!("/v2/test/bad/blobs/{}", bad.layers[0].desc.digest),
        Route::status(500, ""),
    );
    let refs = [
        f.reference("test/good:1"),
        f.reference("test/bad:1"),
        f.reference("test/missing:1"),
    ];
    let err = pull(&refs, &amd64(), &f.store, &RegistryConfig::default())
        .await
        .unwrap_err();
    let errors = err.errors();
    assert_eq!(errors.len(), 2, "{err}");
    let named: Vec<&str> = errors.iter().filter_map(|e| e.reference()).collect();
    assert!(named.contains(&refs[1].to_string().as_str()));
    assert!(named.contains(&refs[2].to_string().as_str()));
    assert!(
        err.to_string().starts_with("2 images failed to pull"),
        "{err}"
    );
    let names: Vec<String> = f
        .store
        .index()
        .unwrap()
        .manifests
        .iter()
        .filter_map(|d| d.ref_name().map(str::to_owned))
        .collect();
    assert_eq!(names, vec![refs[0].to_string()]);
}

#[tokio::test]
async fn downloads_in_parallel_within_the_limit_and_shares_blobs() {
    let f = fixture();
    let shared = Blob::new(
        "application/vnd.oci.image.layer.v1.tar",
        layer_tar(&[("base", b"shared base")]),
    );
    let mut refs = Vec::new();
    for i in 0..5 {
        let own = Blob::new(
            "application/vnd.oci.image.layer.v1.tar",
            layer_tar(&[("app", format!("app {i}").as_bytes())]),
        );
        let img = TestImage::from_layers("amd64", vec![shared.clone(), own]);
        f.registry.put_image(&format!("test/app{i}"), "1", &img);
        refs.push(f.reference(&format!("test/app{i}:1")));
    }
    f.registry.delay_blobs(Duration::from_millis(60));
    let config = RegistryConfig {
        max_concurrent_downloads: 3,
        ..RegistryConfig::default()
    };
    let pulled = pull(&refs, &amd64(), &f.store, &config).await.unwrap();
    assert_eq!(pulled.len(), 5);
    assert_eq!(f.registry.blob_requests(&shared.desc.digest), 1);
    let total: usize = pulled.iter().map(|p| p.blobs_downloaded).sum();
    assert_eq!(total, 5 * 2 + 1);
    let max = f.registry.max_concurrent_blobs();
    assert!(max <= 3, "{max} concurrent blob downloads");
    assert!(max >= 2, "downloads were not parallel ({max})");
    assert!(f.store.verify(false).unwrap().is_ok());
}

#[tokio::test]
async fn basic_auth() {
    let f = fixture();
    let img = TestImage::simple("amd64", "private");
    f.registry.put_image("test/private", "1", &img);
    f.registry
        .set_auth(AuthMode::Basic("alice".into(), "s3cret".into()));
    let reference = f.reference("test/private:1");
    let err = pull_one(&f, &reference).await.unwrap_err();
    assert!(matches!(err, PullError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("test/private:1"), "{err}");

    let mut config = RegistryConfig::default();
    config.credentials.insert(
        &f.registry.host(),
        Credential::Basic {
            username: "alice".into(),
            password: "wrong".into(),
        },
    );
    let err = pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f.store,
        &config,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PullError::Auth { .. }), "{err}");

    config.credentials.insert(
        &f.registry.host(),
        Credential::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        },
    );
    pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f.store,
        &config,
    )
    .await
    .unwrap();
    assert!(f.store.verify(false).unwrap().is_ok());
}

#[tokio::test]
async fn bearer_token_auth_anonymous_basic_and_identity_token() {
    let f = fixture();
    let img = TestImage::simple("amd64", "bearer");
    f.registry.put_image("test/bearer", "1", &img);
    let reference = f.reference("test/bearer:1");

    // Anonymous token (as Docker Hub hands out for public images).
    f.registry.set_auth(AuthMode::Bearer {
        token: "anon-token".into(),
        basic: None,
        refresh: None,
    });
    pull_one(&f, &reference).await.unwrap();

    // Token only for the right user.
    let f = fixture();
    f.registry.put_image("test/bearer", "1", &img);
    let reference = f.reference("test/bearer:1");
    f.registry.set_auth(AuthMode::Bearer {
        token: "user-token".into(),
        basic: Some(("bob".into(), "pw".into())),
        refresh: Some("refresh-123".into()),
    });
    let err = pull_one(&f, &reference).await.unwrap_err();
    assert!(matches!(err, PullError::Auth { .. }), "{err}");
    let mut config = RegistryConfig::default();
    config.credentials.insert(
        &format!("http://{}", f.registry.host()),
        Credential::Basic {
            username: "bob".into(),
            password: "pw".into(),
        },
    );
    pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f.store,
        &config,
    )
    .await
    .unwrap();

    // identitytoken: exchanged by POST for an access token.
    let f2 = fixture();
    f2.registry.put_image("test/bearer", "1", &img);
    f2.registry.set_auth(AuthMode::Bearer {
        token: "user-token".into(),
        basic: None,
        refresh: Some("refresh-123".into()),
    });
    let reference = f2.reference("test/bearer:1");
    let mut config = RegistryConfig::default();
    config.credentials.insert(
        &f2.registry.host(),
        Credential::IdentityToken("refresh-123".into()),
    );
    pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f2.store,
        &config,
    )
    .await
    .unwrap();
    assert!(f2
        .registry
        .requests()
        .iter()
        .any(|req| req.starts_with("POST /token")));
    config.credentials.insert(
        &f2.registry.host(),
        Credential::IdentityToken("stale".into()),
    );
    let err = pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f2.store,
        &config,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PullError::Auth { .. }), "{err}");
}

#[tokio::test]
async fn credentials_from_docker_config_json() {
    let f = fixture();
    let img = TestImage::simple("amd64", "dockercfg");
    f.registry.put_image("test/cfg", "1", &img);
    f.registry
        .set_auth(AuthMode::Basic("carol".into(), "pw".into()));
    let json = format!(
        r#"{{"auths":{{"{}":{{"auth":"Y2Fyb2w6cHc="}}}}}}"#,
        f.registry.host()
    );
    let config = RegistryConfig {
        credentials: kiln_backend::engine::registry::Credentials::from_docker_config(
            json.as_bytes(),
        )
        .unwrap(),
        ..RegistryConfig::default()
    };
    pull(&[f.reference("test/cfg:1")], &amd64(), &f.store, &config)
        .await
        .unwrap();
}

#[tokio::test]
async fn mirrors_rewrite_registry_and_repository() {
    let f = fixture();
    let img = TestImage::simple("amd64", "mirrored");
    f.registry
        .put_image("hub-cache/library/alpine", "3.20", &img);
    let config = RegistryConfig {
        mirrors: Mirrors::parse(&[format!("docker.io=http://{}/hub-cache", f.registry.host())])
            .unwrap(),
        ..RegistryConfig::default()
    };
    let pulled = pull(&[r("alpine:3.20")], &amd64(), &f.store, &config)
        .await
        .unwrap();
    assert_eq!(
        pulled[0].reference.to_string(),
        "docker.io/library/alpine:3.20"
    );
    assert!(f
        .registry
        .requests()
        .iter()
        .any(|req| req == "GET /v2/hub-cache/library/alpine/manifests/3.20"));
    let resolved = f
        .store
        .resolve(&[r("alpine:3.20")], &Platform::linux("amd64"))
        .unwrap();
    assert_eq!(resolved[0].root.digest, img.manifest.desc.digest);
}

#[test]
fn pull_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let config = RegistryConfig::default();
    let refs = [r("alpine")];
    let selection = amd64();
    let fut = pull(&refs, &selection, &store, &config);
    assert_send(&fut);
}

/// This machine's non-loopback IPv4 address, if it has one (no packet is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn plain_http_only_when_loopback_or_configured() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address; skipping");
        return;
    };
    let f = fixture();
    let registry = FakeRegistry::start_on("0.0.0.0:0");
    let host = format!("{ip}:{}", registry.addr.port());
    let img = TestImage::simple("amd64", "lan");
    registry.put_image("test/lan", "1", &img);
    let reference = r(&format!("{host}/test/lan:1"));
    // Not loopback, not configured: HTTPS is attempted and fails against a
    // plain-HTTP server; nothing is sent in the clear.
    let err = pull_one(&f, &reference).await.unwrap_err();
    assert!(
        matches!(
            err,
            PullError::Unreachable { .. } | PullError::Transport { .. }
        ),
        "{err}"
    );
    assert!(registry.requests().is_empty(), "{:?}", registry.requests());
    let config = RegistryConfig {
        insecure_registries: vec![host.clone()],
        ..RegistryConfig::default()
    };
    pull(
        std::slice::from_ref(&reference),
        &amd64(),
        &f.store,
        &config,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn credential_helper_programs() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let img = TestImage::simple("amd64", "helper");
    f.registry.put_image("test/helper", "1", &img);
    f.registry
        .set_auth(AuthMode::Basic("dave".into(), "from-helper".into()));
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("docker-credential-fake");
    let seen = dir.path().join("asked-for");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat > '{}'\necho '{{\"ServerURL\":\"x\",\"Username\":\"dave\",\"Secret\":\"from-helper\"}}'\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = RegistryConfig::default();
    config
        .credentials
        .insert(&f.registry.host(), Credential::Helper { program: helper });
    pull(&[f.reference("test/helper:1")], &amd64(), &f.store, &config)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), f.registry.host());

    config.credentials.insert(
        &f.registry.host(),
        Credential::Helper {
            program: dir.path().join("docker-credential-missing"),
        },
    );
    let err = pull(&[f.reference("test/helper:1")], &amd64(), &f.store, &config)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("docker-credential-missing"),
        "{err}"
    );
}

#[tokio::test]
async fn resolves_tags_and_platforms_without_storing() {
    let f = fixture();
    let index = TestIndex::new(&["linux/amd64", "linux/arm64/v8"], true);
    f.registry.put_index("test/remote", "v1", &index);
    let reference = f.reference("test/remote:v1");
    for arch in ["amd64", "arm64"] {
        let remote = resolve_remote(
            &reference,
            &Platform::linux(arch),
            &RegistryConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(remote.root.digest, index.index.desc.digest);
        assert_eq!(
            remote.manifest.digest,
            index.image(arch).manifest.desc.digest
        );
        assert_eq!(
            remote
                .manifest
                .platform
                .as_ref()
                .map(|p| p.architecture.as_str()),
            Some(arch)
        );
    }
    let err = resolve_remote(
        &reference,
        &Platform::linux("s390x"),
        &RegistryConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PullError::PlatformNotFound { .. }), "{err}");
    assert!(f.store.index().unwrap().manifests.is_empty());
    assert!(f
        .registry
        .requests()
        .iter()
        .all(|req| !req.contains("/blobs/")));
}
