//! Benchmark (not a test): the web UI in headless Chromium against the
//! real `kiln serve` (built with the UI embedded):
//!
//! - validating the corpus' `linuxkit.yml` in the page, timed with
//!   `performance.now()` around the WASM call the editor makes, against the
//!   same validation run natively in this process (the baseline);
//! - the page's first load (fresh browser context: nothing cached, until
//!   the login form is on screen), against navigating to the API's OpenAPI
//!   document on the same server (the baseline).
//!
//! ```text
//! ./scripts/build-web
//! KILN_WEB_DIST=$PWD/frontend/dist cargo build --release --bin kiln
//! cargo run --release -p kiln-e2e --example web-bench -- [ROUNDS]
//! ```

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use kiln_e2e::service::Service;
use kiln_e2e::web::{node, require_ui};
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("ROUNDS must be a number")?,
        None => 5,
    };
    let spec_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/linuxkit/linuxkit.yml");
    let spec =
        std::fs::read_to_string(&spec_file).with_context(|| format!("{}", spec_file.display()))?;

    let native_runs = rounds * 20;
    let mut native = Vec::with_capacity(native_runs);
    for _ in 0..native_runs {
        let t = Instant::now();
        let v = kiln_shared::validate(std::hint::black_box(&spec));
        std::hint::black_box(v);
        native.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    native.sort_by(f64::total_cmp);
    let native_ms = native[native.len() / 2];

    let home = tempfile::tempdir()?;
    let server = Service::start(&kiln_e2e::tools::kiln_bin()?, home.path(), &[], &[])?;
    require_ui(&server)?;
    let out = node(
        "bench.mjs",
        &[
            ("KILN_URL", server.base.clone()),
            ("KILN_SPEC_FILE", spec_file.display().to_string()),
            ("KILN_ROUNDS", rounds.to_string()),
        ],
    )?;
    if !out.status.success() {
        bail!(
            "bench.mjs failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r: Value = serde_json::from_slice(&out.stdout).context("bench.mjs output")?;
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "validate {} ({} bytes), median of {}:",
        spec_file.display(),
        spec.len(),
        r["validate_runs"]
    );
    println!(
        "  in the browser (WASM): {:.3} ms (min {:.3}); native: {native_ms:.3} ms; ratio {:.2}x",
        f("validate_ms"),
        f("validate_min_ms"),
        f("validate_ms") / native_ms
    );
    println!("first load of the page, median of {rounds} (fresh context each):");
    println!(
        "  to the login form: {:.0} ms (min {:.0}); baseline (openapi.json navigation): {:.0} ms; ratio {:.2}x",
        f("first_load_ms"),
        f("first_load_min_ms"),
        f("baseline_navigation_ms"),
        f("first_load_ms") / f("baseline_navigation_ms")
    );
    Ok(())
}
