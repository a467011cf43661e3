//! A real OCI registry for tests: Debian's `docker-registry` serving a
//! temporary directory on a free loopback port, with deletes enabled and no
//! auth. Layouts are pushed with skopeo; reads use plain HTTP. The process
//! is killed and reaped when the [`Registry`] is dropped.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::fixtures::Fixture;
use crate::oci;
use crate::tools;

/// Binary used unless `KILN_E2E_REGISTRY_BIN` names another.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Every manifest media type a read accepts.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
    http: ureq::Agent,
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The `Docker-Content-Digest` header.
    pub digest: String,
    /// The `Content-Type` header.
    pub media_type: String,
    /// The manifest bytes.
    pub body: Vec<u8>,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/`
    /// answers. Fails (never skips) when the binary is missing.
    pub fn start() -> anyhow::Result<Registry> {
        let bin = std::env::var_os("KILN_E2E_REGISTRY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(REGISTRY_BIN));
        Registry::start_with(&bin)
    }

    /// Like [`Registry::start`] with an explicit registry binary.
    pub fn start_with(bin: &Path) -> anyhow::Result<Registry> {
        if !bin.is_file() {
            bail!(
                "the registry binary {} is missing (Debian package `docker-registry`): {}",
                bin.display(),
                tools::INSTALL_HINT
            );
        }
        let mut last_error = None;
        // The port is free when probed but could be taken before the
        // registry binds it; a few attempts cover that race.
        for _ in 0..3 {
            match Registry::start_once(bin) {
                Ok(registry) => return Ok(registry),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn start_once(bin: &Path) -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-e2e-registry-")
            .tempdir()?;
        let addr = free_port()?;
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )?;
        let log = fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut registry = Registry {
            child,
            addr,
            dir,
            http,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = format!("http://{}/v2/", self.addr);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}) before answering: {}",
                    self.log()
                );
            }
            if let Ok(resp) = self.http.get(&url).call() {
                if resp.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not answer {url} within 15 s: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:<port>/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }

    /// The registry's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes a fixture to `<fixture.name>:<fixture.tag>`.
    pub fn push(&self, fixture: &Fixture) -> anyhow::Result<()> {
        self.push_layout(&fixture.layout, &fixture.tag, &fixture.name, &fixture.tag)
    }

    /// Pushes the image or index tagged `layout_tag` in an OCI layout to
    /// `<repo>:<tag>` with `skopeo copy --all`, keeping the manifest bytes.
    pub fn push_layout(
        &self,
        layout: &Path,
        layout_tag: &str,
        repo: &str,
        tag: &str,
    ) -> anyhow::Result<()> {
        let skopeo = tools::find("skopeo", "skopeo")?;
        tools::run(
            Command::new(skopeo)
                .args(["--insecure-policy", "copy", "--all", "--quiet"])
                .arg("--dest-tls-verify=false")
                .arg(format!("oci:{}:{layout_tag}", layout.display()))
                .arg(format!("docker://{}", self.reference(repo, tag))),
        )
        .with_context(|| format!("cannot push {repo}:{tag}"))?;
        Ok(())
    }

    /// `GET /v2/<repo>/manifests/<reference>`; `None` on 404.
    pub fn manifest(&self, repo: &str, reference: &str) -> anyhow::Result<Option<Fetched>> {
        let url = format!("http://{}/v2/{repo}/manifests/{reference}", self.addr);
        let mut resp = self.http.get(&url).header("Accept", ACCEPT).call()?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => bail!("GET {url}: HTTP {s}"),
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let digest = header("docker-content-digest");
        let media_type = header("content-type");
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()?;
        if digest != oci::sha256_digest(&body) {
            bail!("GET {url}: Docker-Content-Digest {digest} does not match the body");
        }
        Ok(Some(Fetched {
            digest,
            media_type,
            body,
        }))
    }

    /// `GET /v2/<repo>/blobs/<digest>`, checked against the digest.
    pub fn blob(&self, repo: &str, digest: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("http://{}/v2/{repo}/blobs/{digest}", self.addr);
        let mut resp = self.http.get(&url).call()?;
        if resp.status() != 200 {
            bail!("GET {url}: HTTP {}", resp.status());
        }
        let body = resp.body_mut().with_config().limit(1 << 30).read_to_vec()?;
        if oci::sha256_digest(&body) != digest {
            bail!("GET {url}: content does not match its digest");
        }
        Ok(body)
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> anyhow::Result<()> {
        let url = format!("http://{}/v2/{repo}/manifests/{digest}", self.addr);
        let resp = self.http.delete(&url).call()?;
        if resp.status() != 202 {
            bail!("DELETE {url}: HTTP {}", resp.status());
        }
        Ok(())
    }

    /// `PUT /v2/<repo>/manifests/<reference>`, as someone with push rights
    /// could, behind kiln's back.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        media_type: &str,
    ) -> anyhow::Result<()> {
        let url = format!("http://{}/v2/{repo}/manifests/{reference}", self.addr);
        let resp = self
            .http
            .put(&url)
            .header("Content-Type", media_type)
            .send(body)?;
        if resp.status() != 201 {
            bail!("PUT {url}: HTTP {}", resp.status());
        }
        Ok(())
    }

    /// Where the registry keeps a blob's bytes on disk, for tests that
    /// tamper with the storage behind the registry's back.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// `GET /v2/<repo>/tags/list`.
    pub fn tags(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        let url = format!("http://{}/v2/{repo}/tags/list", self.addr);
        let mut resp = self.http.get(&url).call()?;
        if resp.status() == 404 {
            return Ok(Vec::new());
        }
        let list: serde_json::Value = serde_json::from_slice(&resp.body_mut().read_to_vec()?)?;
        Ok(list["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?)
}
