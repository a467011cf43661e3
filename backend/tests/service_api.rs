//! The service over real HTTP (in process, on 127.0.0.1:0): health, metrics,
//! OpenAPI, validate, the build lifecycle with SSE and artifact downloads,
//! cancel, timeouts, quotas, and error shapes.

mod service_common;

use reqwest::Method;
use serde_json::{json, Value};
use service_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi() {
    let s = start(|_| {}).await;
    let r = s.get("/healthz", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    let r = s.get("/readyz", "").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = s.get("/metrics", "").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.bytes).unwrap();
    for needle in [
        "kiln_builds{state=\"queued\"} 0",
        "kiln_queue_depth 0",
        "# TYPE kiln_build_duration_seconds histogram",
        "kiln_pull_bytes_total 0",
        "kiln_cache_hits_total 0",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let r = s.get("/api/v1/openapi.json", "").await;
    assert_eq!(r.status, 200);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/validate",
        "/api/v1/builds",
        "/api/v1/builds/{id}",
        "/api/v1/builds/{id}/cancel",
        "/api/v1/builds/{id}/events",
        "/api/v1/builds/{id}/artifacts",
        "/api/v1/builds/{id}/artifacts/{name}",
        "/api/v1/teams/{team}/tokens",
        "/api/v1/teams/{team}/policy",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    // Unknown routes and methods answer in the error shape.
    let r = s.get("/api/v1/nope", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], "not-found");
    let r = s.call(Method::DELETE, "/healthz", "", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["code"], "method-not-allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_returns_shared_diagnostics() {
    let s = start(|c| c.max_body_bytes = 64 * 1024).await;
    let r = s
        .post("/api/v1/validate", &s.admin, json!({"spec": FILES_SPEC}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["valid"], true);

    let bad = "kernel:\n  image: linuxkit/kernel:6.6\n  cmdline: 3\nonboot:\n  - name: x\n    image: \"Bad Ref\"\n    capabilities: [CAP_NOPE]\nbogus: 1\n";
    let r = s
        .post("/api/v1/validate", &s.admin, json!({"spec": bad}))
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["code"], "invalid-spec");
    let expected = serde_json::to_value(kiln_shared::validate(bad).diagnostics).unwrap();
    assert_eq!(r.body["details"]["diagnostics"], expected);
    assert!(expected.as_array().unwrap().len() >= 2);
    assert!(
        r.body["details"]["diagnostics"][0]["line"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Errors are JSON with the right status.
    let r = s.post("/api/v1/validate", "", json!({"spec": "x"})).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["code"], "unauthorized");
    let r = s
        .post("/api/v1/validate", "kiln_nope", json!({"spec": "x"}))
        .await;
    assert_eq!(r.status, 401);
    let r = s
        .post("/api/v1/validate", &s.admin, json!({"nospec": 1}))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["code"], "bad-request");
    let r = s
        .client
        .post(s.url("/api/v1/validate"))
        .bearer_auth(&s.admin)
        .body("{\"spec\": \"a\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let big = "#".repeat(100 * 1024);
    let r = s
        .post("/api/v1/validate", &s.admin, json!({"spec": big}))
        .await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.body["code"], "too-large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_streams_events_and_serves_artifacts() {
    let s = start(|_| {}).await;
    let r = s
        .submit(
            &s.admin,
            json!({"spec": FILES_SPEC, "formats": ["tar", "kernel+initrd"], "name": "hello"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/api/v1/builds/{id}"));
    assert_eq!(r.body["team"], "default");

    let events = s.events(&s.admin, &id, None).await;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "{events:?}"
    );
    let (_, kind, data) = events.last().unwrap();
    assert_eq!(kind, "end");
    assert_eq!(data["state"], "succeeded", "{events:?}");
    assert!(events.iter().any(|e| e.1 == "log"));
    let streamed: Vec<&Value> = events
        .iter()
        .filter(|e| e.1 == "artifact")
        .map(|e| &e.2)
        .collect();

    // Resuming after event 2 gives the rest, unchanged.
    let rest = s.events(&s.admin, &id, Some(2)).await;
    assert_eq!(rest, events[2..].to_vec());

    let build = s.get(&format!("/api/v1/builds/{id}"), &s.admin).await.body;
    assert_eq!(build["state"], "succeeded");
    assert_eq!(build["attempts"], 1);
    let artifacts = build["artifacts"].as_array().unwrap();
    let names: Vec<&str> = artifacts
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello-initrd.img", "hello.tar"]);
    assert_eq!(streamed.len(), 2);
    let list = s
        .get(&format!("/api/v1/builds/{id}/artifacts"), &s.admin)
        .await;
    assert_eq!(list.body["artifacts"].as_array().unwrap(), artifacts);

    for a in artifacts {
        let url = a["url"].as_str().unwrap();
        let r = s.get(url, &s.admin).await;
        assert_eq!(r.status, 200);
        assert_eq!(sha256_hex(&r.bytes), a["sha256"].as_str().unwrap());
        assert_eq!(r.bytes.len() as u64, a["size"].as_u64().unwrap());
        assert_eq!(r.headers["content-type"], a["media_type"].as_str().unwrap());
        assert_eq!(r.headers["accept-ranges"], "bytes");
        assert_eq!(
            r.headers["etag"].to_str().unwrap(),
            format!("\"sha256:{}\"", a["sha256"].as_str().unwrap())
        );
        assert!(r.headers["repr-digest"]
            .to_str()
            .unwrap()
            .starts_with("sha-256=:"));
        let full = r.bytes;

        let r = s
            .client
            .get(s.url(url))
            .bearer_auth(&s.admin)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes 10-19/{}", full.len())
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), &full[10..20]);
        let r = s
            .client
            .get(s.url(url))
            .bearer_auth(&s.admin)
            .header("range", format!("bytes={}-", full.len()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
    }
    assert_eq!(
        s.get(&format!("/api/v1/builds/{id}/artifacts/nope"), &s.admin)
            .await
            .status,
        404
    );

    let tar = artifacts.iter().find(|a| a["name"] == "hello.tar").unwrap();
    assert_eq!(tar["media_type"], "application/x-tar");
    // The bytes are stored content-addressed.
    assert!(s
        .home
        .path()
        .join("artifacts/sha256")
        .join(tar["sha256"].as_str().unwrap())
        .is_file());

    let r = s.get("/api/v1/builds?state=succeeded", &s.admin).await;
    assert_eq!(r.body["builds"][0]["id"], id.as_str());
    let metrics = String::from_utf8(s.get("/metrics", "").await.bytes).unwrap();
    assert!(
        metrics.contains("kiln_builds{state=\"succeeded\"} 1"),
        "{metrics}"
    );
    // Durations are counted where builds run: summed over those processes.
    let per_process = s.build_metrics().await;
    let finished: u64 = per_process
        .iter()
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("kiln_build_duration_seconds_count "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum();
    assert_eq!(finished, 1, "{per_process:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_builds_agree() {
    let s = start(|c| c.workers = 3).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = s
            .submit(&s.admin, json!({"spec": FILES_SPEC, "formats": ["tar"]}))
            .await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let mut digests = Vec::new();
    for id in &ids {
        let b = s.wait_state(&s.admin, id, &["succeeded", "failed"]).await;
        assert_eq!(b["state"], "succeeded", "{b}");
        let b = s.get(&format!("/api/v1/builds/{id}"), &s.admin).await.body;
        digests.push(b["artifacts"][0]["sha256"].clone());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_unsupported_builds_are_refused() {
    let s = start(|_| {}).await;
    let bad = "onboot:\n  - name: x\n    image: linuxkit/x:1\n    binds: [\"nocolon\"]\n";
    let r = s.submit(&s.admin, json!({"spec": bad})).await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["code"], "invalid-spec");
    assert_eq!(
        r.body["details"]["diagnostics"],
        serde_json::to_value(kiln_shared::validate(bad).diagnostics).unwrap()
    );
    let r = s
        .submit(&s.admin, json!({"spec": FILES_SPEC, "formats": ["floppy"]}))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = s
        .submit(&s.admin, json!({"spec": FILES_SPEC, "name": "../x"}))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = s
        .submit(&s.admin, json!({"spec": FILES_SPEC, "arch": "mips"}))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let src = "files:\n  - path: etc/shadow\n    source: /etc/shadow\n";
    let r = s.submit(&s.admin, json!({"spec": src})).await;
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.body["code"], "unsupported-spec");
    let r = s.get("/api/v1/builds", &s.admin).await;
    assert_eq!(r.body["builds"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_running_and_queued_builds() {
    let s = start(|c| c.workers = 1).await;
    let reg = hanging_registry();
    let spec = image_spec(&reg);
    let running = s.submit(&s.admin, json!({"spec": spec})).await;
    assert_eq!(running.status, 202, "{running:?}");
    let running = running.body["id"].as_str().unwrap().to_owned();
    s.wait_state(&s.admin, &running, &["running"]).await;
    // On PostgreSQL a second worker process has a free slot: fill it too.
    if s.workers.is_some() {
        let busy = s
            .submit(&s.admin, json!({"spec": spec, "name": "busy"}))
            .await;
        let busy = busy.body["id"].as_str().unwrap().to_owned();
        s.wait_state(&s.admin, &busy, &["running"]).await;
    }
    // Every worker is busy: this one waits in the queue.
    let queued = s.submit(&s.admin, json!({"spec": spec, "name": "q"})).await;
    let queued = queued.body["id"].as_str().unwrap().to_owned();
    let metrics = String::from_utf8(s.get("/metrics", "").await.bytes).unwrap();
    assert!(metrics.contains("kiln_queue_depth 1"), "{metrics}");

    let r = s
        .post(
            &format!("/api/v1/builds/{queued}/cancel"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["state"], "cancelled");

    let r = s
        .post(
            &format!("/api/v1/builds/{running}/cancel"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let b = s
        .wait_state(&s.admin, &running, &["cancelled", "failed", "succeeded"])
        .await;
    assert_eq!(b["state"], "cancelled", "{b}");
    assert_eq!(b["error"], "cancelled by request");
    let events = s.events(&s.admin, &running, None).await;
    let end = events.last().unwrap();
    assert_eq!(
        (end.1.as_str(), &end.2["state"]),
        ("end", &json!("cancelled"))
    );
    assert!(!s.home.path().join("work").join(&running).exists());

    let r = s
        .post(
            &format!("/api/v1/builds/{running}/cancel"),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.body["code"], "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_time_out_and_quotas_apply() {
    let s = start(|c| {
        c.build_timeout_secs = 1;
        c.max_active_builds_per_team = 1;
        c.max_spec_bytes = 200;
    })
    .await;
    let reg = hanging_registry();
    let r = s.submit(&s.admin, json!({"spec": image_spec(&reg)})).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = s.submit(&s.admin, json!({"spec": FILES_SPEC})).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    let b = s.wait_state(&s.admin, &id, &["failed", "succeeded"]).await;
    assert_eq!(b["state"], "failed");
    assert!(b["error"].as_str().unwrap().contains("timeout"), "{b}");
    let big = format!("{FILES_SPEC}{}", "# padding\n".repeat(30));
    let r = s.submit(&s.admin, json!({"spec": big})).await;
    assert_eq!(r.status, 413, "{r:?}");
}
