//! The real `kiln serve` binary on a free loopback port, with a small HTTP
//! client for its API: JSON calls with a bearer token, the SSE event stream
//! read to its `end` event, and artifact downloads.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// A running `kiln serve`; killed on drop.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The first start's admin password, if this start printed one.
    pub admin_password: Option<String>,
    log: Arc<Mutex<String>>,
    http: ureq::Agent,
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// An HTTP answer: status, headers of interest, body bytes.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

impl Service {
    /// Starts `kiln serve --listen 127.0.0.1:0 ARGS` with `home` as its
    /// `KILN_HOME` (and `HOME`) plus `env`, and waits until it listens.
    pub fn start(
        kiln: &Path,
        home: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Service> {
        let mut cmd = Command::new(kiln);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("KILN_HOME", home)
            .env("HOME", home)
            .env_remove("KILN_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", kiln.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(Option<String>, String)>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut password = None;
                let mut sent = false;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    if let Some(p) = line.strip_prefix("kiln serve: admin password: ") {
                        password = Some(p.trim().to_owned());
                    }
                    if !sent {
                        if let Some(rest) = line.strip_prefix("kiln serve: listening on ") {
                            let base = rest.split_whitespace().next().unwrap_or("").to_owned();
                            let _ = tx.send((password.clone(), base));
                            sent = true;
                        }
                    }
                }
            });
        }
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((admin_password, base)) => Ok(Service {
                child,
                base,
                admin_password,
                log,
                http,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "kiln serve did not start listening:\n{}",
                    log.lock().unwrap()
                )
            }
        }
    }

    /// What the server printed on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A request; `token` empty for none.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if !token.is_empty() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let response = match body {
            Some(b) => {
                let req = req
                    .header("content-type", "application/json")
                    .body(b.to_string())?;
                self.http.run(req)
            }
            None => self.http.run(req.body(())?),
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .with_config()
            .limit(8 << 30)
            .read_to_vec()
            .with_context(|| format!("reading {url}"))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Logs in as `user` and creates a bearer token of it in `team`.
    pub fn token(&self, user: &str, password: &str, team: &str) -> anyhow::Result<String> {
        let login = self.call(
            "POST",
            "/api/v1/auth/login",
            "",
            Some(&json!({"username": user, "password": password})),
        )?;
        if login.status != 200 {
            bail!("login as {user}: {login}");
        }
        let cookie = login
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .context("no session cookie")?
            .to_owned();
        let csrf = login.json()["csrf_token"]
            .as_str()
            .context("no csrf_token")?
            .to_owned();
        let url = format!("{}/api/v1/teams/{team}/tokens", self.base);
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .header("content-type", "application/json")
            .body(json!({"name": "e2e"}).to_string())?;
        let mut r = self.http.run(req)?;
        let status = r.status().as_u16();
        let body: Value = serde_json::from_slice(&r.body_mut().read_to_vec()?)?;
        if status != 201 {
            bail!("creating a token: {status} {body}");
        }
        Ok(body["secret"].as_str().context("no secret")?.to_owned())
    }

    /// A bearer token of the first start's `admin` in team `default`.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let password = self
            .admin_password
            .clone()
            .context("this start printed no admin password")?;
        self.token("admin", &password, "default")
    }

    /// Reads a build's event stream until its `end` event.
    pub fn events(&self, token: &str, id: &str) -> anyhow::Result<Vec<SseEvent>> {
        let url = format!("{}/api/v1/builds/{id}/events", self.base);
        let req = ureq::http::Request::builder()
            .method("GET")
            .uri(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "text/event-stream")
            .body(())?;
        let response = self.http.run(req)?;
        if response.status() != 200 {
            bail!("GET {url}: {}", response.status());
        }
        let reader = BufReader::new(response.into_body().into_reader());
        parse_sse(reader)
    }

    /// Polls a build until it is in one of `states`.
    pub fn wait_state(
        &self,
        token: &str,
        id: &str,
        states: &[&str],
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let b = self.call("GET", &format!("/api/v1/builds/{id}"), token, None)?;
            let v = b.json();
            if states.contains(&v["state"].as_str().unwrap_or("")) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("build {id} is not {states:?} after {limit:?}: {v}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        Ok(self.child.wait()?)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses an SSE stream until an `end` event or the end of input.
pub fn parse_sse(reader: impl BufRead) -> anyhow::Result<Vec<SseEvent>> {
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
    for line in reader.lines() {
        let line = line?;
        if line.is_empty() {
            if !data.is_empty() || !event.is_empty() {
                let e = SseEvent {
                    id: std::mem::take(&mut id),
                    event: std::mem::take(&mut event),
                    data: serde_json::from_str(&data).unwrap_or(Value::String(data.clone())),
                };
                data.clear();
                let end = e.event == "end";
                out.push(e);
                if end {
                    break;
                }
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    Ok(out)
}

/// Lower-case hex of bytes.
pub fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
