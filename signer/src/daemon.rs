//! The signer daemon: holds a key and signs on request over a Unix socket,
//! never revealing the key.
//!
//! Protocol: one JSON object per line each way.
//!
//! | request | response |
//! |---|---|
//! | `{"op":"sign","payload":"<base64>"}` | `{"ok":true,"signature":"<base64 DER>"}` |
//! | `{"op":"public-key"}` | `{"ok":true,"public_key":"<PEM>","fingerprint":"sha256:…"}` |
//! | `{"op":"ping"}` | `{"ok":true}` |
//! | anything else | `{"ok":false,"error":"…"}` |
//!
//! A malformed request gets an error response and the connection stays
//! open; a line longer than [`MAX_REQUEST_BYTES`] gets an error and the
//! connection is closed. The socket is created with mode 0600, so only the
//! daemon's user (and root) can connect; loosen it with `chmod`/`chgrp` to
//! give a group access.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::signer::Signer;

/// Longest request line accepted (a base64 payload of about 12 MiB).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// How long a connection may stay idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A response line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::default()
        }
    }
}

/// Answers one request line. Never panics, whatever the input.
pub fn answer(signer: &dyn Signer, line: &[u8]) -> Response {
    let request: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Response::error(format!("malformed request: {e}")),
    };
    let Some(op) = request.get("op").and_then(|o| o.as_str()) else {
        return Response::error("malformed request: no string field `op`");
    };
    match op {
        "ping" => Response {
            ok: true,
            ..Response::default()
        },
        "public-key" => Response {
            ok: true,
            public_key: Some(signer.public_key().to_pem()),
            fingerprint: Some(signer.public_key().fingerprint().to_owned()),
            ..Response::default()
        },
        "sign" => {
            let Some(payload) = request.get("payload").and_then(|p| p.as_str()) else {
                return Response::error("malformed request: `sign` needs a string field `payload`");
            };
            let payload = match STANDARD.decode(payload) {
                Ok(p) => p,
                Err(e) => return Response::error(format!("malformed request: payload: {e}")),
            };
            match signer.sign(&payload) {
                Ok(sig) => Response {
                    ok: true,
                    signature: Some(STANDARD.encode(sig)),
                    ..Response::default()
                },
                Err(e) => Response::error(e.to_string()),
            }
        }
        other if other.contains("private") || other.contains("export") || other == "key" => {
            Response::error(format!(
                "refused `{other}`: the signer daemon never reveals its private key"
            ))
        }
        other => Response::error(format!(
            "unknown op `{other}`; the daemon answers `sign`, `public-key` and `ping`"
        )),
    }
}

/// A bound daemon socket.
pub struct Daemon {
    listener: UnixListener,
    path: PathBuf,
    signer: Arc<dyn Signer>,
}

impl Daemon {
    /// Binds `path` (mode 0600), replacing a stale socket file nobody
    /// listens on; refuses when another daemon answers there or the path is
    /// not a socket.
    pub fn bind(path: &Path, signer: Arc<dyn Signer>) -> Result<Self> {
        if let Ok(meta) = fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not a socket",
                    ),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another signer daemon is listening here",
                    ),
                ));
            }
            fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        }
        // SAFETY: umask only changes this process's file creation mask; it
        // makes the socket 0600 from the moment it exists.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        unsafe { libc::umask(old) };
        let listener = bound.map_err(|e| Error::io(path, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(path, e))?;
        Ok(Daemon {
            listener,
            path: path.to_owned(),
            signer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections forever, one thread each. `log` receives one
    /// line per signature (the payload's digest, never key material).
    pub fn serve(self, log: impl Fn(&str) + Send + Sync + 'static) -> Result<()> {
        let log = Arc::new(log);
        for conn in self.listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    log(&format!("accept failed: {e}"));
                    continue;
                }
            };
            let signer = Arc::clone(&self.signer);
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                if let Err(e) = handle(stream, signer.as_ref(), &*log) {
                    log(&format!("connection ended: {e}"));
                }
            });
        }
        Ok(())
    }
}

fn handle(stream: UnixStream, signer: &dyn Signer, log: &dyn Fn(&str)) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_REQUEST_BYTES {
            let r = Response::error(format!(
                "request longer than {MAX_REQUEST_BYTES} bytes; closing the connection"
            ));
            write_line(&mut writer, &r)?;
            return Ok(());
        }
        let response = answer(signer, &line);
        if response.signature.is_some() {
            let payload_digest = serde_json::from_slice::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["payload"].as_str().and_then(|p| STANDARD.decode(p).ok()))
                .map(|p| hex::encode(Sha256::digest(p)))
                .unwrap_or_default();
            log(&format!(
                "signed payload sha256:{payload_digest} with {}",
                signer.public_key().fingerprint()
            ));
        }
        write_line(&mut writer, &response)?;
    }
}

fn write_line(w: &mut impl Write, r: &Response) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(r).unwrap_or_default();
    bytes.push(b'\n');
    w.write_all(&bytes)?;
    w.flush()
}

/// A [`Signer`] that asks a daemon over its socket.
pub struct SocketSigner {
    conn: Mutex<(BufReader<UnixStream>, UnixStream)>,
    public: PublicKey,
    path: PathBuf,
}

impl std::fmt::Debug for SocketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketSigner({}, {})", self.path.display(), self.public)
    }
}

impl SocketSigner {
    /// Connects and asks for the public key.
    pub fn connect(path: &Path) -> Result<Self> {
        let stream = UnixStream::connect(path).map_err(|e| Error::io(path, e))?;
        let writer = stream.try_clone().map_err(|e| Error::io(path, e))?;
        let mut conn = (BufReader::new(stream), writer);
        let r = request(&mut conn, &serde_json::json!({"op": "public-key"}))?;
        let pem = r
            .public_key
            .ok_or_else(|| Error::Daemon("no public key in the answer".to_owned()))?;
        let public = PublicKey::from_pem(&pem)?;
        Ok(SocketSigner {
            conn: Mutex::new(conn),
            public,
            path: path.to_owned(),
        })
    }

    /// Sends one raw request line (for tests and diagnostics).
    pub fn raw(&self, request_line: &[u8]) -> Result<Response> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::Daemon("lock poisoned".into()))?;
        send(&mut conn, request_line)
    }
}

fn request(
    conn: &mut (BufReader<UnixStream>, UnixStream),
    body: &serde_json::Value,
) -> Result<Response> {
    let r = send(conn, &serde_json::to_vec(body).unwrap_or_default())?;
    if r.ok {
        Ok(r)
    } else {
        Err(Error::Daemon(r.error.unwrap_or_default()))
    }
}

fn send(conn: &mut (BufReader<UnixStream>, UnixStream), line: &[u8]) -> Result<Response> {
    let io = |e: std::io::Error| Error::Daemon(e.to_string());
    let mut bytes = line.to_vec();
    if bytes.last() != Some(&b'\n') {
        bytes.push(b'\n');
    }
    conn.1.write_all(&bytes).map_err(io)?;
    conn.1.flush().map_err(io)?;
    let mut answer = Vec::new();
    let n = (&mut conn.0)
        .take(MAX_REQUEST_BYTES as u64)
        .read_until(b'\n', &mut answer)
        .map_err(io)?;
    if n == 0 {
        return Err(Error::Daemon("the daemon closed the connection".to_owned()));
    }
    serde_json::from_slice(&answer).map_err(|e| Error::Daemon(format!("malformed answer: {e}")))
}

impl Signer for SocketSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::Daemon("lock poisoned".into()))?;
        let r = request(
            &mut conn,
            &serde_json::json!({"op": "sign", "payload": STANDARD.encode(payload)}),
        )?;
        let sig = r
            .signature
            .ok_or_else(|| Error::Daemon("no signature in the answer".to_owned()))
            .and_then(|s| STANDARD.decode(s).map_err(|e| Error::Daemon(e.to_string())))?;
        // A daemon holding another key than it announced is caught here.
        self.public.verify(payload, &sig)?;
        Ok(sig)
    }
}
