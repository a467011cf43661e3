//! Restart safety with the real `kiln serve` binary: SIGKILL it during a
//! build, start it again, and the build is retried (attempts left) or failed
//! with the reason (none left); nothing stays `running`. The same with one
//! of two `--role worker` processes killed while the API keeps serving.
//! With `KILN_TEST_DATABASE=postgres` the state is in a real PostgreSQL.

mod service_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kiln_backend::service::Role;
use serde_json::{json, Value};
use service_common::postgres::{self, Postgres, Workers};
use service_common::{hanging_registry, image_spec, parse_sse, start};

struct Proc {
    child: Child,
    base: String,
    password: Option<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(home: &Path, max_attempts: u32, pg: &Option<Postgres>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .env("KILN_HOME", home)
        .env("HOME", home)
        .env("KILN_MAX_ATTEMPTS", max_attempts.to_string())
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    if let Some(pg) = pg {
        cmd.env("KILN_DATABASE_URL", &pg.url);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut password = None;
    let base = loop {
        let line = lines.next().expect("kiln serve exited").unwrap();
        if let Some(p) = line.strip_prefix("kiln serve: admin password: ") {
            password = Some(p.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("kiln serve: listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Proc {
        child,
        base,
        password,
    }
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut rb = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if !token.is_empty() {
        rb = rb.bearer_auth(token);
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn admin_token(p: &Proc) -> String {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/auth/login", p.base))
        .header("content-type", "application/json")
        .body(json!({"username": "admin", "password": p.password.as_ref().unwrap()}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let me: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let r = client
        .post(format!("{}/api/v1/teams/default/tokens", p.base))
        .header("cookie", cookie)
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(json!({"name": "t"}).to_string())
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    v["secret"].as_str().unwrap().to_owned()
}

async fn wait_state(base: &str, token: &str, id: &str, states: &[&str]) -> Value {
    for _ in 0..300 {
        let (_, b) = call(base, "GET", &format!("/api/v1/builds/{id}"), token, None).await;
        if states.contains(&b["state"].as_str().unwrap_or("")) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("build {id} never reached {states:?}");
}

async fn running_count(base: &str, token: &str) -> usize {
    let (_, b) = call(base, "GET", "/api/v1/builds?state=running", token, None).await;
    b["builds"].as_array().unwrap().len()
}

fn sigkill(p: &mut Proc) {
    unsafe { libc::kill(p.child.id() as i32, libc::SIGKILL) };
    p.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_killed_without_attempts_left_fails_with_the_reason() {
    let home = tempfile::tempdir().unwrap();
    let pg = postgres::selected().then(Postgres::start);
    let registry = hanging_registry();
    let mut p = serve(home.path(), 1, &pg);
    let token = admin_token(&p).await;
    let (status, b) = call(
        &p.base,
        "POST",
        "/api/v1/builds",
        &token,
        Some(json!({"spec": image_spec(&registry)})),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    wait_state(&p.base, &token, &id, &["running"]).await;
    assert!(home.path().join("work").exists());
    sigkill(&mut p);

    let p = serve(home.path(), 1, &pg);
    assert!(
        p.password.is_none(),
        "the admin password is printed on the first start only"
    );
    let b = wait_state(&p.base, &token, &id, &["failed"]).await;
    assert_eq!(b["attempts"], 1);
    assert_eq!(
        b["error"],
        "the process running the build stopped (attempt 1 of 1)"
    );
    assert_eq!(running_count(&p.base, &token).await, 0);
    assert!(!home.path().join("work").join(&id).exists());
    let client = reqwest::Client::new();
    let text = client
        .get(format!("{}/api/v1/builds/{id}/events", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    let end = events.last().unwrap();
    assert_eq!(end.1, "end");
    assert_eq!(end.2["state"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_killed_with_attempts_left_is_retried() {
    let home = tempfile::tempdir().unwrap();
    let pg = postgres::selected().then(Postgres::start);
    let registry = hanging_registry();
    let mut p = serve(home.path(), 2, &pg);
    let token = admin_token(&p).await;
    let (_, b) = call(
        &p.base,
        "POST",
        "/api/v1/builds",
        &token,
        Some(json!({"spec": image_spec(&registry)})),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_owned();
    wait_state(&p.base, &token, &id, &["running"]).await;
    sigkill(&mut p);

    let mut p = serve(home.path(), 2, &pg);
    // Retried: running again, on its second attempt.
    for _ in 0..100 {
        let (_, b) = call(
            &p.base,
            "GET",
            &format!("/api/v1/builds/{id}"),
            &token,
            None,
        )
        .await;
        if b["attempts"] == 2 && b["state"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, b) = call(
        &p.base,
        "GET",
        &format!("/api/v1/builds/{id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(
        (b["state"].as_str(), b["attempts"].as_i64()),
        (Some("running"), Some(2)),
        "{b}"
    );
    sigkill(&mut p);

    // Out of attempts now.
    let p = serve(home.path(), 2, &pg);
    let b = wait_state(&p.base, &token, &id, &["failed"]).await;
    assert_eq!(
        b["error"],
        "the process running the build stopped (attempt 2 of 2)"
    );
    assert_eq!(running_count(&p.base, &token).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_leaves_its_build_to_another() {
    let mut s = start(|c| {
        c.role = Role::Api;
        c.max_attempts = 2;
    })
    .await;
    if s.workers.is_none() {
        // On SQLite: two workers on this host sharing the one file.
        s.workers = Some(Workers::start(&s.app.cfg, 2));
    }
    let registry = hanging_registry();
    let r = s
        .submit(&s.admin, json!({"spec": image_spec(&registry)}))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    s.wait_state(&s.admin, &id, &["running"]).await;
    let worker_of = |id: String| {
        let db = s.app.db.clone();
        async move {
            let w: Option<String> = sqlx::query_scalar("SELECT worker FROM builds WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
            let w = w.expect("a running build names its worker");
            w.split(':').nth(1).unwrap().parse::<u32>().unwrap()
        }
    };
    let first = worker_of(id.clone()).await;
    let workers = s.workers.as_mut().unwrap();
    let i = workers
        .pids()
        .iter()
        .position(|p| *p == first)
        .expect("the build runs on one of the two workers");
    workers.kill(i);

    // The other worker takes it over: running again, second attempt.
    let mut b = Value::Null;
    for _ in 0..300 {
        b = s.get(&format!("/api/v1/builds/{id}"), &s.admin).await.body;
        if b["state"] == "running" && b["attempts"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (&b["state"], &b["attempts"]),
        (&json!("running"), &json!(2)),
        "{b}"
    );
    let second = worker_of(id.clone()).await;
    assert_ne!(first, second);
    let r = s
        .post(&format!("/api/v1/builds/{id}/cancel"), &s.admin, json!({}))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    s.wait_state(&s.admin, &id, &["cancelled"]).await;
    let events = s.events(&s.admin, &id, None).await;
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| e.2["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        ["the process running the build stopped (attempt 1 of 2); retrying"],
        "{events:?}"
    );
    assert_eq!(
        s.get("/api/v1/builds?state=running", &s.admin).await.body["builds"],
        json!([])
    );
}
