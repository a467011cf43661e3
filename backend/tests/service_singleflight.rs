//! Identical builds submitted together are written once: in one process
//! they share the write; with worker processes (`KILN_TEST_DATABASE=
//! postgres`) the second waits for the first through the `flights` table
//! and takes its artifacts.

mod service_common;
mod store_common;

use serde_json::{json, Value};
use service_common::{noise, start};
use store_common::TestImage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_builds_submitted_together_are_written_once() {
    // One build per worker process on PostgreSQL, so that the two land in
    // different processes; two builds at once in the single process else.
    let across = service_common::postgres::selected();
    let s = start(|c| c.workers = if across { 1 } else { 2 }).await;
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("data/blob{i}"), noise(4 << 20, i + 1)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let arch = kiln_backend::engine::store::Platform::host().architecture;
    TestImage::new(&arch, &[&refs]).store_into(&s.app.store, "docker.io/library/payload:1");
    let spec = "onboot:\n  - name: big\n    image: payload:1\n";
    let body = json!({"spec": spec, "formats": ["kernel+initrd"], "name": "same"});

    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = s.submit(&s.admin, body.clone()).await;
        assert_eq!(r.status, 202, "{r:?}");
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let mut artifacts = Vec::new();
    let mut followers = 0;
    for id in &ids {
        let b = s.wait_state(&s.admin, id, &["succeeded", "failed"]).await;
        assert_eq!(b["state"], "succeeded", "{b}");
        let files: Vec<Value> = b["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| json!([a["name"], a["size"], a["sha256"]]))
            .collect();
        artifacts.push(files);
        let events = s.events(&s.admin, id, None).await;
        let messages: Vec<&str> = events
            .iter()
            .filter_map(|e| e.2["message"].as_str())
            .collect();
        let wanted = if across {
            "runs in another process; waiting for its result"
        } else {
            "an identical build is running; sharing its result"
        };
        if messages.iter().any(|m| m.contains(wanted)) {
            followers += 1;
        }
    }
    assert_eq!(followers, 1, "exactly one of the two builds wrote");
    assert_eq!(artifacts[0], artifacts[1]);
    assert!(!artifacts[0].is_empty());
    let flights: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flights")
        .fetch_one(&s.app.db)
        .await
        .unwrap();
    assert_eq!(flights, 0, "no flight outlives its build");
}
