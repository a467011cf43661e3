//! Authentication and authorisation over real HTTP: sessions with CSRF,
//! the login rate limit, token revocation, roles, the audit log, and the
//! isolation matrix (another team's resources answer 404 on every route).

mod service_common;

use reqwest::Method;
use serde_json::json;
use service_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_need_csrf_and_logins_are_rate_limited() {
    let s = start(|c| c.login_attempts_per_minute = 3).await;
    let r = s
        .post(
            "/api/v1/auth/login",
            "",
            json!({"username": "admin", "password": s.admin_password}),
        )
        .await;
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    let (cookie, csrf) = s.login("admin", &s.admin_password).await;
    let me = s
        .call_cookie(Method::GET, "/api/v1/auth/me", &cookie, None, None)
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"], "admin");
    assert_eq!(me.body["teams"][0]["role"], "admin");
    let body = json!({"spec": FILES_SPEC});
    let r = s
        .call_cookie(
            Method::POST,
            "/api/v1/validate",
            &cookie,
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["code"], "csrf");
    let r = s
        .call_cookie(
            Method::POST,
            "/api/v1/validate",
            &cookie,
            Some("wrong"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .call_cookie(
            Method::POST,
            "/api/v1/validate",
            &cookie,
            Some(&csrf),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = s
        .call_cookie(
            Method::POST,
            "/api/v1/auth/logout",
            &cookie,
            Some(&csrf),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s
        .call_cookie(Method::GET, "/api/v1/auth/me", &cookie, None, None)
        .await;
    assert_eq!(r.status, 401);

    for _ in 0..3 {
        let r = s
            .post(
                "/api/v1/auth/login",
                "",
                json!({"username": "admin", "password": "nope"}),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = s
        .post(
            "/api/v1/auth/login",
            "",
            json!({"username": "admin", "password": s.admin_password}),
        )
        .await;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.headers.contains_key("retry-after"));

    let audit = s.get("/api/v1/teams/default/audit", &s.admin).await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"bootstrap") && actions.contains(&"token.create"),
        "{actions:?}"
    );
    let db = &s.app.db;
    let failures: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'login.failure'")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(failures, 3);
    // Stored secrets are hashes, never the secret itself.
    let hashes: Vec<String> = sqlx::query_scalar("SELECT hash FROM tokens")
        .fetch_all(db)
        .await
        .unwrap();
    assert!(hashes
        .iter()
        .all(|h| h.len() == 64 && !h.starts_with("kiln_")));
    let pw: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = 'admin'")
        .fetch_one(db)
        .await
        .unwrap();
    assert!(pw.starts_with("$argon2id$"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_revocation() {
    let s = start(|_| {}).await;
    let viewer = s.user_token("vera", "default", "viewer").await;
    let builder = s.user_token("bill", "default", "builder").await;
    let r = s.submit(&viewer, json!({"spec": FILES_SPEC})).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = s.submit(&builder, json!({"spec": FILES_SPEC})).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    // The viewer sees the build but cannot cancel it.
    assert_eq!(
        s.get(&format!("/api/v1/builds/{id}"), &viewer).await.status,
        200
    );
    let r = s
        .post(&format!("/api/v1/builds/{id}/cancel"), &viewer, json!({}))
        .await;
    assert_eq!(r.status, 403);
    // A token cannot be given more than its creator's role.
    let r = s
        .post(
            "/api/v1/teams/default/tokens",
            &builder,
            json!({"name": "x", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .post(
            "/api/v1/teams/default/tokens",
            &builder,
            json!({"name": "ci", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let (ci, ci_id) = (
        r.body["secret"].as_str().unwrap().to_owned(),
        r.body["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(s.submit(&ci, json!({"spec": FILES_SPEC})).await.status, 403);
    assert_eq!(s.get("/api/v1/builds", &ci).await.status, 200);
    let r = s
        .call(
            Method::DELETE,
            &format!("/api/v1/teams/default/tokens/{ci_id}"),
            &builder,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s.get("/api/v1/builds", &ci).await;
    assert_eq!(r.status, 401, "a revoked token stops working at once");
    // Removing a member takes its tokens' access away.
    let r = s
        .call(
            Method::DELETE,
            "/api/v1/teams/default/members/bill",
            &s.admin,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        s.get(&format!("/api/v1/builds/{id}"), &builder)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_teams_resources_are_404_on_every_route() {
    let s = start(|_| {}).await;
    let a = s.user_token("alice", "team-a", "admin").await;
    let b = s.user_token("bob", "team-b", "admin").await;
    let r = s
        .submit(
            &b,
            json!({"spec": FILES_SPEC, "formats": ["tar"], "name": "b"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let build = r.body["id"].as_str().unwrap().to_owned();
    s.wait_state(&b, &build, &["succeeded"]).await;
    let tokens = s.get("/api/v1/teams/team-b/tokens", &b).await;
    let token = tokens.body["tokens"][0]["id"].as_str().unwrap().to_owned();

    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/api/v1/builds/{build}"), None),
        (
            Method::POST,
            format!("/api/v1/builds/{build}/cancel"),
            Some(json!({})),
        ),
        (Method::GET, format!("/api/v1/builds/{build}/events"), None),
        (
            Method::GET,
            format!("/api/v1/builds/{build}/artifacts"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/builds/{build}/artifacts/b.tar"),
            None,
        ),
        (Method::GET, "/api/v1/teams/team-b".into(), None),
        (Method::GET, "/api/v1/teams/team-b/members".into(), None),
        (
            Method::PUT,
            "/api/v1/teams/team-b/members/alice".into(),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::DELETE,
            "/api/v1/teams/team-b/members/bob".into(),
            None,
        ),
        (Method::GET, "/api/v1/teams/team-b/tokens".into(), None),
        (
            Method::POST,
            "/api/v1/teams/team-b/tokens".into(),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/teams/team-b/tokens/{token}"),
            None,
        ),
        (Method::GET, "/api/v1/teams/team-b/policy".into(), None),
        (
            Method::PUT,
            "/api/v1/teams/team-b/policy".into(),
            Some(json!({"policy": {}})),
        ),
        (Method::GET, "/api/v1/teams/team-b/audit".into(), None),
        (
            Method::POST,
            "/api/v1/builds".into(),
            Some(json!({"spec": FILES_SPEC, "team": "team-b"})),
        ),
    ];
    for (method, path, body) in &routes {
        let r = s.call(method.clone(), path, &a, body.clone()).await;
        assert_eq!(r.status, 404, "{method} {path} as team-a: {r:?}");
        assert_eq!(r.body["code"], "not-found");
        // The owner reaches the same route (nothing is 404 by accident).
        if method == Method::GET {
            let r = s.call(method.clone(), path, &b, None).await;
            assert_eq!(r.status, 200, "{method} {path} as team-b: {r:?}");
        }
    }
    // Lists never show the other team's builds, even when asked.
    let r = s.get("/api/v1/builds?team=team-b", &a).await;
    assert_eq!(r.body["builds"].as_array().unwrap().len(), 0);
    let r = s.get("/api/v1/builds", &a).await;
    assert_eq!(r.body["builds"].as_array().unwrap().len(), 0);
    // And team-b's build is untouched.
    let r = s.get(&format!("/api/v1/builds/{build}"), &b).await;
    assert_eq!(r.body["state"], "succeeded");
    let r = s.get("/api/v1/teams/team-b/members", &b).await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2, "{r:?}");
}
