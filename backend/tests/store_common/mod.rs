//! Test helpers for the store and registry tests: tiny OCI images built in
//! memory, and a fake registry on 127.0.0.1 that can misbehave on purpose.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use kiln_backend::engine::store::{
    Descriptor, Digest, Expected, Platform, Store, ANNOTATION_REFERENCE_DIGEST, OCI_CONFIG,
    OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST,
};

/// A blob and its descriptor.
#[derive(Clone, Debug)]
pub struct Blob {
    pub desc: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            desc: Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64),
            bytes,
        }
    }
}

/// A single-platform image: manifest, config, layers.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

/// A tar with the given regular files.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, path, *content).unwrap();
    }
    b.into_inner().unwrap()
}

impl TestImage {
    /// An image for `linux/<arch>` with one layer per entry of `layers`.
    pub fn new(arch: &str, layers: &[&[(&str, &[u8])]]) -> Self {
        let layers: Vec<Blob> = layers
            .iter()
            .map(|files| Blob::new(OCI_LAYER_TAR, layer_tar(files)))
            .collect();
        Self::from_layers(arch, layers)
    }

    pub fn from_layers(arch: &str, layers: Vec<Blob>) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(|l| l.desc.digest.to_string()).collect();
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.desc,
            "layers": layers.iter().map(|l| &l.desc).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap());
        Self {
            manifest,
            config,
            layers,
        }
    }

    /// A one-file image whose content makes it unique.
    pub fn simple(arch: &str, tag: &str) -> Self {
        Self::new(
            arch,
            &[&[("hello.txt", format!("hello from {tag} {arch}\n").as_bytes())]],
        )
    }

    pub fn blobs(&self) -> Vec<&Blob> {
        let mut all = vec![&self.manifest, &self.config];
        all.extend(self.layers.iter());
        all
    }

    /// Writes the blobs into `store` and names the manifest.
    pub fn store_into(&self, store: &Store, name: &str) {
        put_blobs(store, &self.blobs());
        store.set_name(name, self.manifest.desc.clone()).unwrap();
    }
}

/// A multi-platform index with optional attestation manifests.
#[derive(Clone, Debug)]
pub struct TestIndex {
    pub index: Blob,
    pub images: Vec<(TestImage, Platform)>,
    pub attestations: Vec<TestImage>,
}

impl TestIndex {
    pub fn new(platforms: &[&str], with_attestations: bool) -> Self {
        let mut images = Vec::new();
        let mut attestations = Vec::new();
        let mut entries = Vec::new();
        for p in platforms {
            let platform = Platform::parse(p).unwrap();
            let img = TestImage::simple(&platform.architecture, p);
            let mut d = img.manifest.desc.clone();
            d.platform = Some(platform.clone());
            entries.push(d);
            images.push((img, platform));
        }
        if with_attestations {
            for (img, _) in &images {
                let sbom = Blob::new(
                    "application/vnd.in-toto+json",
                    format!("{{\"sbom\":\"{}\"}}", img.manifest.desc.digest).into_bytes(),
                );
                let att = TestImage::from_layers("unknown", vec![sbom]);
                let mut d = att.manifest.desc.clone();
                d.platform = Platform::parse("unknown/unknown");
                d.annotations.insert(
                    ANNOTATION_REFERENCE_DIGEST.to_owned(),
                    img.manifest.desc.digest.to_string(),
                );
                d.annotations.insert(
                    "vnd.docker.reference.type".to_owned(),
                    "attestation-manifest".to_owned(),
                );
                entries.push(d);
                attestations.push(att);
            }
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        Self {
            index: Blob::new(OCI_INDEX, serde_json::to_vec(&index).unwrap()),
            images,
            attestations,
        }
    }

    pub fn image(&self, arch: &str) -> &TestImage {
        &self
            .images
            .iter()
            .find(|(_, p)| p.architecture == arch)
            .unwrap()
            .0
    }

    pub fn all_blobs(&self) -> Vec<&Blob> {
        let mut all = vec![&self.index];
        for (img, _) in &self.images {
            all.extend(img.blobs());
        }
        for a in &self.attestations {
            all.extend(a.blobs());
        }
        all
    }
}

pub fn put_blobs(store: &Store, blobs: &[&Blob]) {
    let lease = store.lease().unwrap();
    for b in blobs {
        let mut w = lease
            .blob_writer(Expected::exactly(b.desc.digest.clone(), b.desc.size))
            .unwrap();
        w.write_chunk(&b.bytes).unwrap();
        w.commit().unwrap();
    }
}

/// Files in `dir` (non-recursive) whose name contains `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(needle))
        .collect()
}

// ---------------------------------------------------------------- registry

/// How the fake registry answers one path.
#[derive(Clone, Debug)]
pub struct Route {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Announce the full length but send only this many bytes, then close.
    pub truncate_to: Option<usize>,
    /// Send without Content-Length (close-delimited).
    pub no_length: bool,
}

impl Route {
    pub fn ok(content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            truncate_to: None,
            no_length: false,
        }
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            truncate_to: None,
            no_length: false,
        }
    }
}

/// What the registry demands.
#[derive(Clone, Debug, Default)]
pub enum AuthMode {
    #[default]
    None,
    /// `Basic` challenge; this user:password.
    Basic(String, String),
    /// `Bearer` challenge with the realm on this server. The token endpoint
    /// gives `token` for GET with these Basic credentials (or anonymous if
    /// `None`) and for POST with `refresh` as refresh token.
    Bearer {
        token: String,
        basic: Option<(String, String)>,
        refresh: Option<String>,
    },
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    auth: AuthMode,
    requests: Vec<String>,
    delay_blobs: Option<Duration>,
}

/// A small HTTP/1.1 registry on 127.0.0.1:0, one thread per connection,
/// `Connection: close` on every response.
pub struct FakeRegistry {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    active_blobs: Arc<AtomicUsize>,
    max_active_blobs: Arc<AtomicUsize>,
}

impl FakeRegistry {
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0")
    }

    /// Listens on `bind` (for example `0.0.0.0:0`).
    pub fn start_on(bind: &str) -> Self {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        {
            let state = state.clone();
            let stop = stop.clone();
            let active = active.clone();
            let max_active = max_active.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    let active = active.clone();
                    let max_active = max_active.clone();
                    thread::spawn(move || {
                        let _ = serve(conn, addr, &state, &active, &max_active);
                    });
                }
            });
        }
        Self {
            addr,
            state,
            stop,
            active_blobs: active,
            max_active_blobs: max_active,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn set_auth(&self, auth: AuthMode) {
        self.state.lock().unwrap().auth = auth;
    }

    pub fn delay_blobs(&self, d: Duration) {
        self.state.lock().unwrap().delay_blobs = Some(d);
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), route);
    }

    pub fn put_blob(&self, repo: &str, blob: &Blob) {
        self.route(
            &format!("/v2/{repo}/blobs/{}", blob.desc.digest),
            Route::ok("application/octet-stream", blob.bytes.clone()),
        );
    }

    /// Serves a manifest by digest and, if given, by tag.
    pub fn put_manifest(&self, repo: &str, tag: Option<&str>, blob: &Blob) {
        let mut route = Route::ok(&blob.desc.media_type, blob.bytes.clone());
        route
            .headers
            .push(("Docker-Content-Digest".into(), blob.desc.digest.to_string()));
        self.route(
            &format!("/v2/{repo}/manifests/{}", blob.desc.digest),
            route.clone(),
        );
        if let Some(tag) = tag {
            self.route(&format!("/v2/{repo}/manifests/{tag}"), route);
        }
    }

    pub fn put_image(&self, repo: &str, tag: &str, image: &TestImage) {
        self.put_manifest(repo, Some(tag), &image.manifest);
        self.put_blob(repo, &image.config);
        for l in &image.layers {
            self.put_blob(repo, l);
        }
    }

    pub fn put_index(&self, repo: &str, tag: &str, index: &TestIndex) {
        self.put_manifest(repo, Some(tag), &index.index);
        for (img, _) in &index.images {
            self.put_manifest(repo, None, &img.manifest);
            self.put_blob(repo, &img.config);
            for l in &img.layers {
                self.put_blob(repo, l);
            }
        }
        for a in &index.attestations {
            self.put_manifest(repo, None, &a.manifest);
            self.put_blob(repo, &a.config);
            for l in &a.layers {
                self.put_blob(repo, l);
            }
        }
    }

    /// Request lines seen so far (`GET /v2/...`).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn blob_requests(&self, digest: &Digest) -> usize {
        let needle = format!("/blobs/{digest}");
        self.requests()
            .iter()
            .filter(|r| r.contains(&needle))
            .count()
    }

    pub fn max_concurrent_blobs(&self) -> usize {
        self.max_active_blobs.load(Ordering::SeqCst)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut conn: TcpStream,
    addr: SocketAddr,
    state: &Mutex<State>,
    active: &AtomicUsize,
    max_active: &AtomicUsize,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if let Some(len) = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (route, auth, delay) = {
        let mut s = state.lock().unwrap();
        s.requests.push(format!("{method} {target}"));
        (s.routes.get(path).cloned(), s.auth.clone(), s.delay_blobs)
    };
    let authorization = headers.get("authorization").cloned().unwrap_or_default();

    if path == "/token" {
        return answer_token(&mut conn, &method, query, &authorization, &body, &auth);
    }
    if let Some(challenge) = check_auth(&auth, &authorization, addr) {
        let mut r = Route::status(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        r.headers.push(("WWW-Authenticate".into(), challenge));
        return respond(&mut conn, &method, &r);
    }
    if path == "/v2/" || path == "/v2" {
        return respond(
            &mut conn,
            &method,
            &Route::ok("application/json", b"{}".to_vec()),
        );
    }
    let route = route.unwrap_or_else(|| {
        if path.contains("/manifests/") {
            Route::status(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
        } else {
            Route::status(
                404,
                r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            )
        }
    });
    let is_blob = path.contains("/blobs/");
    if is_blob {
        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
        max_active.fetch_max(now, Ordering::SeqCst);
        if let Some(d) = delay {
            thread::sleep(d);
        }
    }
    let r = respond(&mut conn, &method, &route);
    if is_blob {
        active.fetch_sub(1, Ordering::SeqCst);
    }
    r
}

fn check_auth(auth: &AuthMode, authorization: &str, addr: SocketAddr) -> Option<String> {
    use base64::Engine as _;
    match auth {
        AuthMode::None => None,
        AuthMode::Basic(u, p) => {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            );
            (authorization != want).then(|| "Basic realm=\"fake\"".to_owned())
        }
        AuthMode::Bearer { token, .. } => (authorization != format!("Bearer {token}"))
            .then(|| format!("Bearer realm=\"http://{addr}/token\",service=\"fake-registry\"")),
    }
}

fn answer_token(
    conn: &mut TcpStream,
    method: &str,
    query: &str,
    authorization: &str,
    body: &[u8],
    auth: &AuthMode,
) -> std::io::Result<()> {
    use base64::Engine as _;
    let AuthMode::Bearer {
        token,
        basic,
        refresh,
    } = auth
    else {
        return respond(conn, method, &Route::status(404, "{}"));
    };
    let granted = if method == "POST" {
        let form = String::from_utf8_lossy(body);
        refresh.as_ref().is_some_and(|r| {
            form.contains("grant_type=refresh_token")
                && form.contains(&format!("refresh_token={r}"))
                && form.contains("scope=repository")
        })
    } else {
        query.contains("scope=repository")
            && match basic {
                None => true,
                Some((u, p)) => {
                    authorization
                        == format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                        )
                }
            }
    };
    if granted {
        let key = if method == "POST" {
            "access_token"
        } else {
            "token"
        };
        respond(
            conn,
            method,
            &Route::ok(
                "application/json",
                format!("{{\"{key}\":\"{token}\"}}").into_bytes(),
            ),
        )
    } else {
        respond(
            conn,
            method,
            &Route::status(401, r#"{"details":"bad credentials"}"#),
        )
    }
}

fn respond(conn: &mut TcpStream, method: &str, route: &Route) -> std::io::Result<()> {
    let reason = match route.status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nConnection: close\r\n",
        route.status
    );
    for (k, v) in &route.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !route.no_length {
        head.push_str(&format!("Content-Length: {}\r\n", route.body.len()));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let end = route
            .truncate_to
            .unwrap_or(route.body.len())
            .min(route.body.len());
        for chunk in route.body[..end].chunks(16 * 1024) {
            if conn.write_all(chunk).is_err() {
                break;
            }
        }
    }
    conn.flush()?;
    let _ = conn.shutdown(std::net::Shutdown::Both);
    Ok(())
}
