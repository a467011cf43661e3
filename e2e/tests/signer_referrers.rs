//! Signatures found through the OCI 1.1 referrers API. Debian's
//! docker-registry 2.8 has no referrers API, so a minimal registry served
//! from this test answers the few requests involved: no `.sig` tag, a
//! referrers index listing one cosign signature manifest, that manifest and
//! its payload blob.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::RegistryConfig;
use kiln_backend::engine::trust::{fetch_signatures_blocking, COSIGN_SIGNATURE_ARTIFACT_TYPE};
use kiln_signer::policy::TrustPolicy;
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::verify::signature_manifest;
use kiln_signer::{verify_image, PrivateKey};
use sha2::{Digest as _, Sha256};

const REPO: &str = "kiln-test/referred";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves `routes` (path → content type, body) on a loopback port; every
/// other path is a 404 with a distribution error body. Returns the host.
fn serve(routes: BTreeMap<String, (String, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/");
            // The query (the referrers' artifactType filter) is not needed.
            let path = target.split('?').next().unwrap_or("/").to_owned();
            let head = line.starts_with("HEAD ");
            let (status, ctype, body) = match routes.get(&path) {
                Some((t, b)) => ("200 OK", t.clone(), b.clone()),
                None => (
                    "404 Not Found",
                    "application/json".to_owned(),
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#.to_vec(),
                ),
            };
            let mut response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nDocker-Content-Digest: {}\r\nConnection: close\r\n\r\n",
                body.len(),
                sha256(&body)
            )
            .into_bytes();
            if !head {
                response.extend_from_slice(&body);
            }
            let _ = stream.write_all(&response);
        }
    });
    host
}

#[test]
fn signatures_are_found_through_the_referrers_api() {
    let image_digest = sha256(b"pretend image manifest");
    let key = PrivateKey::generate().unwrap();
    let payload = SimpleSigning::new(&format!("127.0.0.1/{REPO}"), &image_digest).to_bytes();
    let (manifest, _config) = signature_manifest(&payload, &key.sign(&payload));
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m["artifactType"] = COSIGN_SIGNATURE_ARTIFACT_TYPE.into();
    m["subject"] =
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": image_digest, "size": 22});
    let manifest = serde_json::to_vec(&m).unwrap();
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
             "artifactType": COSIGN_SIGNATURE_ARTIFACT_TYPE},
            {"mediaType": OCI_MANIFEST, "digest": sha256(b"sbom"), "size": 4,
             "artifactType": "application/spdx+json"},
        ],
    }))
    .unwrap();
    let mut routes = BTreeMap::new();
    routes.insert(
        "/v2/".to_owned(),
        ("application/json".to_owned(), b"{}".to_vec()),
    );
    routes.insert(
        format!("/v2/{REPO}/referrers/{image_digest}"),
        ("application/vnd.oci.image.index.v1+json".to_owned(), index),
    );
    routes.insert(
        format!("/v2/{REPO}/manifests/{manifest_digest}"),
        (OCI_MANIFEST.to_owned(), manifest),
    );
    routes.insert(
        format!("/v2/{REPO}/blobs/{}", sha256(&payload)),
        ("application/octet-stream".to_owned(), payload),
    );
    let host = serve(routes);

    let image = format!("{host}/{REPO}:v1");
    let reference = Reference::parse(&image).unwrap();
    let found = fetch_signatures_blocking(&reference, &image_digest, &RegistryConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.len(), 1, "only the cosign referrer is fetched");
    assert_eq!(found[0].origin, format!("referrer {manifest_digest}"));

    let dir = tempfile::tempdir().unwrap();
    let policy = TrustPolicy::from_toml(
        &format!(
            "[[org]]\nname = \"{host}/kiln-test\"\npublic_keys = [\"\"\"{}\"\"\"]\n",
            key.public_key().to_pem()
        ),
        dir.path(),
    )
    .unwrap();
    let v = verify_image(&image, &image_digest, &found, &policy).unwrap();
    assert_eq!(v.origin, format!("referrer {manifest_digest} layer 1"));
}
