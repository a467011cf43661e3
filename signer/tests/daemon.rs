//! The signer daemon over a real Unix socket: signatures verify with the
//! daemon's public key, the key is never handed out, malformed requests get
//! errors and the daemon keeps serving.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use kiln_signer::daemon::{Daemon, SocketSigner, MAX_REQUEST_BYTES};
use kiln_signer::dsse::{Statement, Subject};
use kiln_signer::{InProcessSigner, PrivateKey, Signer};

fn start() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    kiln_signer::PublicKey,
) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("signer.sock");
    let key = PrivateKey::generate().unwrap();
    let public = key.public_key().clone();
    let daemon = Daemon::bind(&socket, Arc::new(InProcessSigner::new(key))).unwrap();
    std::thread::spawn(move || daemon.serve(|_| {}));
    (dir, socket, public)
}

#[test]
fn signs_over_the_socket_and_never_reveals_the_key() {
    let (_dir, socket, public) = start();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");

    let client = SocketSigner::connect(&socket).unwrap();
    assert_eq!(client.public_key(), &public);
    let sig = client.sign(b"payload over the socket").unwrap();
    public.verify(b"payload over the socket", &sig).unwrap();
    // Higher-level formats work through the daemon too.
    let envelope = Statement::new(vec![Subject::sha256("a", "ab")], "p", serde_json::json!({}))
        .sign(&client)
        .unwrap();
    Statement::verify(&envelope, std::slice::from_ref(&public)).unwrap();

    for op in ["private-key", "export", "key", "export-private-key"] {
        let r = client
            .raw(format!(r#"{{"op":"{op}"}}"#).as_bytes())
            .unwrap();
        assert!(!r.ok);
        assert!(r.error.unwrap().contains("never reveals"));
        assert!(r.public_key.is_none() && r.signature.is_none());
    }
}

#[test]
fn malformed_requests_get_errors_without_killing_the_daemon() {
    let (_dir, socket, public) = start();
    let stream = UnixStream::connect(&socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut ask = |line: &[u8]| -> serde_json::Value {
        writer.write_all(line).unwrap();
        writer.write_all(b"\n").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    for bad in [
        &b"not json"[..],
        b"{}",
        b"[1,2]",
        br#"{"op":42}"#,
        br#"{"op":"sign"}"#,
        br#"{"op":"sign","payload":"!!!"}"#,
        br#"{"op":"launch-missiles"}"#,
        b"\xff\xfe",
    ] {
        let r = ask(bad);
        assert_eq!(r["ok"], false, "{}", String::from_utf8_lossy(bad));
        assert!(r["error"].as_str().unwrap().len() > 5);
    }
    // Same connection still works.
    let r = ask(br#"{"op":"ping"}"#);
    assert_eq!(r["ok"], true);

    // An over-long line: an error, then the connection closes; the daemon
    // serves the next client.
    let mut long = UnixStream::connect(&socket).unwrap();
    let big = vec![b'a'; MAX_REQUEST_BYTES + 10];
    let _ = long.write_all(&big);
    let mut answer = String::new();
    BufReader::new(&long).read_line(&mut answer).unwrap();
    assert!(answer.contains("longer than"), "{answer}");

    let client = SocketSigner::connect(&socket).unwrap();
    let sig = client.sign(b"still alive").unwrap();
    public.verify(b"still alive", &sig).unwrap();
}

#[test]
fn a_second_daemon_cannot_take_over_a_live_socket() {
    let (_dir, socket, _) = start();
    let other = InProcessSigner::new(PrivateKey::generate().unwrap());
    assert!(Daemon::bind(&socket, Arc::new(other)).is_err());
}
