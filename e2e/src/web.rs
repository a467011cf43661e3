//! Harness for the browser tests: the real `kiln serve` binary on a free
//! loopback port, a small JSON client for setting up accounts and teams,
//! and the Node driver scripts (playwright-core over Debian's Chromium)
//! under `e2e/browser/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// Where Debian's chromium package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A running `kiln serve`; killed on drop.
pub struct KilnServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The first start's `admin` password.
    pub admin_password: String,
    pub home: tempfile::TempDir,
}

impl Drop for KilnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl KilnServer {
    /// Starts `kiln serve` on 127.0.0.1:0 with a fresh state directory and
    /// waits until it listens.
    pub fn start(kiln: &Path) -> anyhow::Result<KilnServer> {
        let home = tempfile::Builder::new().prefix("kiln-web-").tempdir()?;
        let mut child = Command::new(kiln)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("KILN_HOME", home.path())
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", kiln.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut password = None;
        let mut seen = String::new();
        let base = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("kiln serve exited before listening:\n{seen}");
            };
            let line = line?;
            seen.push_str(&line);
            seen.push('\n');
            if let Some(p) = line.strip_prefix("kiln serve: admin password: ") {
                password = Some(p.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("kiln serve: listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let admin_password = password.context("kiln serve printed no admin password")?;
        Ok(KilnServer {
            child,
            base,
            admin_password,
            home,
        })
    }

    /// Fails unless this binary carries the web UI (see scripts/build-web).
    pub fn require_ui(&self, http: &Http) -> anyhow::Result<()> {
        let (status, body) = http.raw("GET", &format!("{}/", self.base), None, None)?;
        if status != 200 || !body.contains("/assets/app.js") {
            bail!(
                "{} does not serve the web UI (status {status}); build it with ./scripts/build-web and \
                 build kiln with KILN_WEB_DIST=$PWD/frontend/dist (scripts/test does both)",
                self.base
            );
        }
        Ok(())
    }
}

/// A JSON client for setting things up through the API.
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Http {
            agent,
            base: base.to_owned(),
        }
    }

    fn raw(
        &self,
        method: &str,
        url: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, String)> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut response = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()?
            }
            (_, body) => {
                let mut r = match method {
                    "PUT" => self.agent.put(url),
                    "DELETE" => {
                        let mut r = self.agent.delete(url);
                        if let Some(a) = &auth {
                            r = r.header("authorization", a);
                        }
                        let mut resp = r.call()?;
                        let status = resp.status().as_u16();
                        return Ok((status, resp.body_mut().read_to_string()?));
                    }
                    _ => self.agent.post(url),
                };
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.header("content-type", "application/json")
                    .send(body.map(Value::to_string).unwrap_or_default())?
            }
        };
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    }

    /// Calls `path` under the base URL; the body is parsed as JSON when it
    /// is JSON.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, text) = self.raw(
            method,
            &format!("{}{path}", self.base),
            bearer,
            body.as_ref(),
        )?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Like [`Http::call`], failing unless the status is `expect`.
    pub fn expect(
        &self,
        expect: u16,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, bearer, body)?;
        if status != expect {
            bail!("{method} {path}: expected {expect}, got {status}: {value}");
        }
        Ok(value)
    }

    /// An API token of `user` in `team`, made through a real login (cookie
    /// and CSRF token).
    pub fn token(&self, user: &str, password: &str, team: &str) -> anyhow::Result<String> {
        let mut r = self
            .agent
            .post(&format!("{}/api/v1/auth/login", self.base))
            .header("content-type", "application/json")
            .send(serde_json::json!({"username": user, "password": password}).to_string())?;
        if r.status() != 200 {
            bail!("login as {user}: {}", r.status());
        }
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("no session cookie")?
            .to_owned();
        let me: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        let csrf = me["csrf_token"]
            .as_str()
            .context("no csrf token")?
            .to_owned();
        let mut r = self
            .agent
            .post(&format!("{}/api/v1/teams/{team}/tokens", self.base))
            .header("content-type", "application/json")
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .send(serde_json::json!({"name": "e2e setup"}).to_string())?;
        if r.status() != 201 {
            bail!("token for {user}: {}", r.status());
        }
        let created: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        Ok(created["secret"].as_str().context("no secret")?.to_owned())
    }
}

/// `frontend/web`, where `npm ci` put playwright-core.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend/web")
}

/// Runs `e2e/browser/<script>` with Node, `env` added, after checking that
/// Chromium and the npm packages are installed (failing, not skipping,
/// when they are not).
pub fn node(script: &str, env: &[(&str, String)]) -> anyhow::Result<Output> {
    if !Path::new(CHROMIUM).is_file() {
        bail!("{CHROMIUM} is missing: .ci/install-deps installs Debian's chromium");
    }
    let playwright = web_dir().join("node_modules/playwright-core");
    if !playwright.is_dir() {
        bail!(
            "{} is missing: scripts/web-tools runs npm ci there",
            playwright.display()
        );
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("browser")
        .join(script);
    let mut cmd = Command::new("node");
    cmd.arg(&path)
        .env("KILN_WEB_DIR", web_dir())
        .env("KILN_CHROMIUM", CHROMIUM)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .with_context(|| format!("cannot run node {}", path.display()))
}
