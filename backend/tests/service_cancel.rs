//! Cancelling a service build while the engine writes: the writer stops
//! within one read (the engine's cancel hook) and removes its work
//! directory, long before the write would have ended; the baseline is the
//! same build run to its end in the same test.

mod service_common;
mod store_common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use service_common::{noise, start};
use store_common::TestImage;

fn has_data(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_during_the_write_stops_the_engine_promptly() {
    let s = start(|c| c.workers = 1).await;
    let files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| (format!("data/blob{i}"), noise(4 << 20, i + 1)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let arch = kiln_backend::engine::store::Platform::host().architecture;
    TestImage::new(&arch, &[&refs]).store_into(&s.app.store, "docker.io/library/bigpayload:1");
    drop(files);
    let spec = "onboot:\n  - name: big\n    image: bigpayload:1\n";
    let body = |name: &str| json!({"spec": spec, "formats": ["kernel+initrd"], "name": name});

    // Baseline: the same write run to its end.
    let started = Instant::now();
    let r = s.submit(&s.admin, body("full")).await;
    assert_eq!(r.status, 202, "{r:?}");
    let full = r.body["id"].as_str().unwrap().to_owned();
    let b = s
        .wait_state(&s.admin, &full, &["succeeded", "failed"])
        .await;
    assert_eq!(b["state"], "succeeded", "{b}");
    let full_secs = started.elapsed().as_secs_f64();
    // No cached initrd members: the next build compresses everything again.
    std::fs::remove_dir_all(s.home.path().join("initrd-members")).unwrap();

    let r = s.submit(&s.admin, body("cancelled")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let work = s.home.path().join("work").join(&id);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_data(&work) {
        assert!(Instant::now() < deadline, "the write never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled_at = Instant::now();
    let r = s
        .post(&format!("/api/v1/builds/{id}/cancel"), &s.admin, json!({}))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let b = s
        .wait_state(&s.admin, &id, &["cancelled", "failed", "succeeded"])
        .await;
    assert_eq!(b["state"], "cancelled", "{b}");
    let ended_secs = cancelled_at.elapsed().as_secs_f64();
    while work.exists() {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs_f64(full_secs),
            "the writer kept going after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop_secs = cancelled_at.elapsed().as_secs_f64();
    eprintln!(
        "full build {full_secs:.2} s; cancelled state after {ended_secs:.3} s, writer gone after {stop_secs:.3} s"
    );
    assert!(
        stop_secs < full_secs / 4.0,
        "stopped {stop_secs:.3} s after the cancel; the whole build takes {full_secs:.2} s"
    );
    let b = s.get(&format!("/api/v1/builds/{id}"), &s.admin).await;
    assert_eq!(b.body["artifacts"], json!([]));
    // The worker is free again: a queued build runs.
    let r = s
        .submit(
            &s.admin,
            json!({"spec": service_common::FILES_SPEC, "formats": ["tar"]}),
        )
        .await;
    let next = r.body["id"].as_str().unwrap().to_owned();
    let b = s
        .wait_state(&s.admin, &next, &["succeeded", "failed"])
        .await;
    assert_eq!(b["state"], "succeeded", "{b}");
}
