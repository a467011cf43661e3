//! Simple-signing payloads, DSSE envelopes and sigstore bundles: signing,
//! verifying, tampering, and parsing arbitrary bytes without panics.

use kiln_signer::bundle::{Bundle, MEDIA_TYPE_V03};
use kiln_signer::dsse::{Envelope, Statement, Subject, INTOTO_PAYLOAD_TYPE};
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::{InProcessSigner, PrivateKey, Signer};
use proptest::prelude::*;

fn signer() -> InProcessSigner {
    InProcessSigner::new(PrivateKey::generate().unwrap())
}

#[test]
fn blob_bundle_signs_and_verifies() {
    let s = signer();
    let other = signer();
    let bundle = Bundle::sign_blob(&s, b"artifact bytes").unwrap();
    assert_eq!(bundle.media_type, MEDIA_TYPE_V03);
    assert_eq!(bundle.key_hint(), Some(s.public_key().fingerprint()));
    let json = bundle.to_json();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v["messageSignature"]["messageDigest"]["algorithm"],
        "SHA2_256"
    );
    assert_eq!(
        v["verificationMaterial"]["tlogEntries"],
        serde_json::json!([])
    );
    let back = Bundle::from_json(&json).unwrap();
    let keys = [other.public_key().clone(), s.public_key().clone()];
    assert_eq!(
        back.verify_blob(b"artifact bytes", &keys).unwrap(),
        s.public_key()
    );
    let err = back.verify_blob(b"other bytes", &keys).unwrap_err();
    assert!(err.to_string().contains("message digest"), "{err}");
    let err = back
        .verify_blob(b"artifact bytes", &[other.public_key().clone()])
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(back.verify_dsse(&keys).is_err());
}

#[test]
fn dsse_bundle_and_intoto_statement() {
    let s = signer();
    let statement = Statement::new(
        vec![Subject::sha256("kiln-image.iso", "sha256:00ff")],
        "https://kiln.dev/measurement/v1",
        serde_json::json!({"pcr11": "ab"}),
    );
    let envelope = statement.sign(&s).unwrap();
    assert_eq!(envelope.payload_type, INTOTO_PAYLOAD_TYPE);
    let parsed = Envelope::from_json(&envelope.to_json()).unwrap();
    let back = Statement::verify(&parsed, std::slice::from_ref(s.public_key())).unwrap();
    assert!(back.names_sha256("00ff"));

    // A changed payload type or payload breaks the signature (PAE).
    let mut changed = parsed.clone();
    changed.payload_type = "text/plain".into();
    assert!(changed
        .verify(std::slice::from_ref(s.public_key()))
        .is_err());
    let mut changed = parsed.clone();
    changed.payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"{}");
    assert!(changed
        .verify(std::slice::from_ref(s.public_key()))
        .is_err());

    let bundle = Bundle::sign_dsse(&s, INTOTO_PAYLOAD_TYPE, &statement.to_json()).unwrap();
    let bundle = Bundle::from_json(&bundle.to_json()).unwrap();
    let (key, payload_type, payload) = bundle
        .verify_dsse(std::slice::from_ref(s.public_key()))
        .unwrap();
    assert_eq!(key, s.public_key());
    assert_eq!(payload_type, INTOTO_PAYLOAD_TYPE);
    assert_eq!(Statement::parse(&payload).unwrap(), statement);
    assert!(bundle
        .verify_dsse(&[signer().public_key().clone()])
        .is_err());
}

#[test]
fn bundles_that_are_not_key_based_or_ill_formed_are_refused() {
    let s = signer();
    let mut v: serde_json::Value =
        serde_json::from_slice(&Bundle::sign_blob(&s, b"x").unwrap().to_json()).unwrap();
    v["verificationMaterial"]["certificate"] = serde_json::json!({"rawBytes": "AA=="});
    let b = Bundle::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
    let err = b
        .verify_blob(b"x", std::slice::from_ref(s.public_key()))
        .unwrap_err();
    assert!(err.to_string().contains("keyless"), "{err}");

    let mut v: serde_json::Value =
        serde_json::from_slice(&Bundle::sign_blob(&s, b"x").unwrap().to_json()).unwrap();
    v["mediaType"] = "application/json".into();
    assert!(Bundle::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
    v["mediaType"] = MEDIA_TYPE_V03.into();
    v["dsseEnvelope"] =
        serde_json::json!({"payload":"AA==","payloadType":"x","signatures":[{"sig":"AA=="}]});
    assert!(Bundle::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
}

#[test]
fn simple_signing_signed_by_kiln() {
    let s = signer();
    let payload = SimpleSigning::new("127.0.0.1:5000/kiln-test/x", "sha256:ab").to_bytes();
    let sig = s.sign(&payload).unwrap();
    s.public_key().verify(&payload, &sig).unwrap();
    SimpleSigning::parse(&payload)
        .unwrap()
        .check_digest("sha256:ab")
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SimpleSigning::parse(&bytes);
        let _ = Envelope::from_json(&bytes);
        let _ = Statement::parse(&bytes);
        let _ = Bundle::from_json(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_json_shapes(
        digest in "[a-z0-9:]{0,80}",
        kind in "[a-z ]{0,40}",
        payload in "[A-Za-z0-9+/=!]{0,64}",
        sig in "[A-Za-z0-9+/=?]{0,100}",
        media in prop_oneof![Just(MEDIA_TYPE_V03.to_owned()), "[a-z./+;=0-9]{0,60}"],
    ) {
        let ss = serde_json::json!({"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":digest},"type":kind},"optional":null});
        let _ = SimpleSigning::parse(&serde_json::to_vec(&ss).unwrap());
        let env = serde_json::json!({"payload":payload,"payloadType":kind,"signatures":[{"keyid":"","sig":sig}]});
        let env_bytes = serde_json::to_vec(&env).unwrap();
        if let Ok(e) = Envelope::from_json(&env_bytes) {
            let _ = e.verify(&[]);
        }
        let bundle = serde_json::json!({"mediaType":media,"verificationMaterial":{"publicKey":{"hint":digest}},
            "messageSignature":{"messageDigest":{"algorithm":kind,"digest":payload},"signature":sig}});
        if let Ok(b) = Bundle::from_json(&serde_json::to_vec(&bundle).unwrap()) {
            let _ = b.verify_blob(b"x", &[]);
        }
        let bundle = serde_json::json!({"mediaType":media,"verificationMaterial":{},"dsseEnvelope":env});
        if let Ok(b) = Bundle::from_json(&serde_json::to_vec(&bundle).unwrap()) {
            let _ = b.verify_dsse(&[]);
        }
    }
}

fn any_root() -> kiln_signer::TrustRoot {
    kiln_signer::TrustRoot {
        name: "org".into(),
        prefix: "docker.io/org".into(),
        keys: vec![PrivateKey::generate().unwrap().public_key().clone()],
        identities: Vec::new(),
        trusted_root: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn image_verification_never_panics(
        manifest in proptest::collection::vec(any::<u8>(), 0..256),
        media in prop_oneof![Just(kiln_signer::simple_signing::MEDIA_TYPE.to_owned()), "[a-z./+]{0,30}"],
        sig in "[A-Za-z0-9+/=]{0,100}",
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        digest in "[a-z0-9:]{0,72}",
    ) {
        let root = any_root();
        let raw = kiln_signer::SignatureManifest { origin: "tag t".into(), manifest, blobs: Default::default() };
        prop_assert!(kiln_signer::verify::verify_with_root("org/x:1", &digest, &[raw], &root).is_err());
        let layer = kiln_signer::verify::signature_manifest(&payload, sig.as_bytes()).0;
        let mut m: serde_json::Value = serde_json::from_slice(&layer).unwrap();
        m["layers"][0]["mediaType"] = media.into();
        m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"] = sig.into();
        let d = m["layers"][0]["digest"].as_str().unwrap().to_owned();
        let shaped = kiln_signer::SignatureManifest {
            origin: "tag t".into(),
            manifest: serde_json::to_vec(&m).unwrap(),
            blobs: [(d, payload)].into_iter().collect(),
        };
        prop_assert!(kiln_signer::verify::verify_with_root("org/x:1", &digest, &[shaped], &root).is_err());
    }

    #[test]
    fn daemon_answers_every_line_without_panicking(line in proptest::collection::vec(any::<u8>(), 0..300), op in "[a-z-]{0,20}") {
        let s = signer();
        let r = kiln_signer::daemon::answer(&s, &line);
        prop_assert!(r.signature.is_none() || r.ok);
        let r = kiln_signer::daemon::answer(&s, format!(r#"{{"op":"{op}"}}"#).as_bytes());
        prop_assert!(r.signature.is_none());
        prop_assert!(r.ok == (op == "ping" || op == "public-key"));
    }
}
