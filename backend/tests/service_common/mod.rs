//! Helpers for the service tests: a `kiln serve` started in process on
//! 127.0.0.1:0 with its own state directory, a JSON client over real HTTP,
//! SSE reading, and a "registry" that accepts connections and never answers
//! (builds against it stay running until cancelled or timed out).

#![allow(dead_code)]

pub mod postgres;

use std::net::TcpListener;
use std::time::Duration;

use kiln_backend::service::{self, AppState, Config};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

pub struct Srv {
    pub base: String,
    pub app: AppState,
    pub admin_password: String,
    /// A bearer token of `admin` in team `default` (role admin).
    pub admin: String,
    pub client: reqwest::Client,
    /// With `KILN_TEST_DATABASE=postgres`: the worker processes, then the
    /// database (dropped in this order).
    pub workers: Option<postgres::Workers>,
    pub postgres: Option<postgres::Postgres>,
    pub home: TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.status,
            String::from_utf8_lossy(&self.bytes)
        )
    }
}

/// A files-only spec: builds with no image at all.
pub const FILES_SPEC: &str =
    "files:\n  - path: etc/hello\n    contents: hello from kiln\n    mode: \"0644\"\n";

pub async fn start(configure: impl FnOnce(&mut Config)) -> Srv {
    let home = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        home: home.path().to_owned(),
        ..Config::default()
    };
    configure(&mut cfg);
    // On PostgreSQL, this process serves the API and two worker processes
    // run the builds; the suite is otherwise the same.
    let pg = postgres::selected().then(postgres::Postgres::start);
    if let Some(pg) = &pg {
        cfg.database_url = Some(pg.url.clone());
        cfg.role = service::Role::Api;
    }
    let server = service::start(cfg.clone()).await.expect("start");
    let workers = pg.as_ref().map(|_| postgres::Workers::start(&cfg, 2));
    let admin_password = server.admin_password.clone().expect("first start");
    let (addr, app, _task) = server.spawn();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut srv = Srv {
        base: format!("http://{addr}"),
        app,
        admin_password,
        admin: String::new(),
        client,
        workers,
        postgres: pg,
        home,
    };
    let (cookie, csrf) = srv.login("admin", &srv.admin_password.clone()).await;
    let r = srv
        .call_cookie(
            Method::POST,
            "/api/v1/teams/default/tokens",
            &cookie,
            Some(&csrf),
            Some(json!({"name": "tests"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    srv.admin = r.body["secret"].as_str().unwrap().to_owned();
    srv
}

impl Srv {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap().to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            bytes,
        }
    }

    /// A request with a bearer token (or none when `token` is empty).
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut rb = self.client.request(method, self.url(path));
        if !token.is_empty() {
            rb = rb.bearer_auth(token);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.send(rb).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A request with a session cookie and, optionally, the CSRF header.
    pub async fn call_cookie(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        csrf: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method, self.url(path))
            .header("cookie", format!("kiln_session={cookie}"));
        if let Some(c) = csrf {
            rb = rb.header("x-csrf-token", c);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.send(rb).await
    }

    /// Logs in; returns the session cookie value and the CSRF token.
    pub async fn login(&self, user: &str, password: &str) -> (String, String) {
        let r = self
            .post(
                "/api/v1/auth/login",
                "",
                json!({"username": user, "password": password}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.headers["set-cookie"].to_str().unwrap().to_owned();
        let cookie = set
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("kiln_session=")
            .unwrap()
            .to_owned();
        (cookie, r.body["csrf_token"].as_str().unwrap().to_owned())
    }

    /// Creates a user, adds it to `team` with `role`, and returns a token of
    /// it in that team.
    pub async fn user_token(&self, user: &str, team: &str, role: &str) -> String {
        let password = format!("{user}-password-123");
        let r = self
            .post(
                "/api/v1/users",
                &self.admin,
                json!({"name": user, "password": password}),
            )
            .await;
        assert!(r.status == 201 || r.status == 409, "{r:?}");
        let r = self
            .call(
                Method::PUT,
                &format!("/api/v1/teams/{team}/members/{user}"),
                &self.admin_of(team).await,
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let (cookie, csrf) = self.login(user, &password).await;
        let r = self
            .call_cookie(
                Method::POST,
                &format!("/api/v1/teams/{team}/tokens"),
                &cookie,
                Some(&csrf),
                Some(json!({"name": "t"})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body["secret"].as_str().unwrap().to_owned()
    }

    /// A token of `admin` in `team`, creating the team if needed.
    pub async fn admin_of(&self, team: &str) -> String {
        if team == "default" {
            return self.admin.clone();
        }
        let r = self
            .post("/api/v1/teams", &self.admin, json!({"name": team}))
            .await;
        assert!(r.status == 201 || r.status == 409, "{r:?}");
        let (cookie, csrf) = self.login("admin", &self.admin_password).await;
        let r = self
            .call_cookie(
                Method::POST,
                &format!("/api/v1/teams/{team}/tokens"),
                &cookie,
                Some(&csrf),
                Some(json!({"name": "admin"})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body["secret"].as_str().unwrap().to_owned()
    }

    /// The Prometheus text of every process that runs builds: this one, or
    /// the worker processes on PostgreSQL.
    pub async fn build_metrics(&self) -> Vec<String> {
        let bases = match &self.workers {
            Some(w) => w.bases.clone(),
            None => vec![self.base.clone()],
        };
        let mut out = Vec::new();
        for base in bases {
            let r = self
                .client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            out.push(r.text().await.unwrap());
        }
        out
    }

    pub async fn submit(&self, token: &str, body: Value) -> Resp {
        self.post("/api/v1/builds", token, body).await
    }

    /// Polls until the build is in one of `states`.
    pub async fn wait_state(&self, token: &str, id: &str, states: &[&str]) -> Value {
        for _ in 0..600 {
            let r = self.get(&format!("/api/v1/builds/{id}"), token).await;
            if states.contains(&r.body["state"].as_str().unwrap_or("")) {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("build {id} never reached {states:?}");
    }

    /// Reads the SSE stream to its end: `(id, event, data)` triples.
    pub async fn events(
        &self,
        token: &str,
        id: &str,
        last: Option<u64>,
    ) -> Vec<(u64, String, Value)> {
        let mut rb = self
            .client
            .get(self.url(&format!("/api/v1/builds/{id}/events")))
            .bearer_auth(token);
        if let Some(l) = last {
            rb = rb.header("last-event-id", l.to_string());
        }
        let mut r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let mut text = String::new();
        while let Some(chunk) = r.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        parse_sse(&text)
    }
}

pub fn parse_sse(text: &str) -> Vec<(u64, String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if let Some(id) = id {
            out.push((
                id,
                event,
                serde_json::from_str(&data).unwrap_or(Value::Null),
            ));
        }
    }
    out
}

/// A TCP server that accepts connections and never answers: a registry
/// that hangs. Returns its `host:port`.
pub fn hanging_registry() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

/// A spec whose one image lives on `registry`.
pub fn image_spec(registry: &str) -> String {
    format!("onboot:\n  - name: x\n    image: {registry}/kiln/never:1\n")
}

/// Incompressible bytes, so gzip has real work to do.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
