//! In-process counters for `/metrics` (the per-state build counts and the
//! queue depth come from the database when scraped).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of the build duration histogram, in seconds.
pub const BUCKETS: &[f64] = &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

#[derive(Default)]
pub struct Metrics {
    /// Finished builds per bucket (non-cumulative), plus `+Inf` last.
    buckets: [AtomicU64; 10],
    /// Sum of durations in milliseconds.
    sum_ms: AtomicU64,
    count: AtomicU64,
    pull_bytes: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    running_here: AtomicI64,
}

impl Metrics {
    pub fn finished(&self, _state: &str, secs: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ms
            .fetch_add((secs * 1000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pulled(&self, bytes: u64) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        self.pull_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn running(&self, delta: i64) {
        self.running_here.fetch_add(delta, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with `states` (state → count) and
    /// `queue_depth` read from the database.
    pub fn render(&self, states: &[(String, i64)], queue_depth: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP kiln_builds Builds by state.");
        let _ = writeln!(out, "# TYPE kiln_builds gauge");
        for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
            let n = states
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "kiln_builds{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP kiln_queue_depth Builds waiting for a worker.");
        let _ = writeln!(out, "# TYPE kiln_queue_depth gauge");
        let _ = writeln!(out, "kiln_queue_depth {queue_depth}");
        let _ = writeln!(
            out,
            "# HELP kiln_builds_running_here Builds this process is running."
        );
        let _ = writeln!(out, "# TYPE kiln_builds_running_here gauge");
        let _ = writeln!(
            out,
            "kiln_builds_running_here {}",
            self.running_here.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP kiln_build_duration_seconds Time from claim to end of finished builds."
        );
        let _ = writeln!(out, "# TYPE kiln_build_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "kiln_build_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "kiln_build_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "kiln_build_duration_seconds_sum {}",
            self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "kiln_build_duration_seconds_count {}",
            self.count.load(Ordering::Relaxed)
        );
        for (name, help, v) in [
            (
                "kiln_pull_bytes_total",
                "Bytes of image blobs fetched from registries.",
                &self.pull_bytes,
            ),
            (
                "kiln_cache_hits_total",
                "Images a build found in the store.",
                &self.cache_hits,
            ),
            (
                "kiln_cache_misses_total",
                "Images a build had to pull.",
                &self.cache_misses,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}
