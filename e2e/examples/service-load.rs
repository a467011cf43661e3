//! Benchmark (not a test) of `kiln serve` on loopback:
//!
//! 1. `POST /api/v1/validate` throughput and p99 latency with wrk, against
//!    `GET /healthz` (no body, no auth, no work) measured the same way in the
//!    same run as the baseline.
//! 2. 20 fixture builds submitted at once against the real registry, each
//!    with its own `files` entry so none is shared; the wall time and the
//!    server's peak RSS, against one build alone on a fresh server.
//!
//! ```text
//! cargo build --release -p kiln-backend --bin kiln
//! cargo run --release -p kiln-e2e --example service-load [-- WORKERS]
//! ```
//!
//! Needs `wrk` (Debian package; `.ci/install-deps` installs it).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kiln_e2e::fixtures::{self, FixtureOptions, FixtureSet};
use kiln_e2e::registry::Registry;
use kiln_e2e::service::Service;
use serde_json::json;

const BUILDS: usize = 20;

struct Wrk {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn main() -> anyhow::Result<()> {
    let workers: usize = std::env::args()
        .nth(1)
        .map(|w| w.parse())
        .transpose()?
        .unwrap_or(4);
    let kiln = kiln_e2e::tools::kiln_bin()?;
    let work = tempfile::Builder::new()
        .prefix("kiln-service-load-")
        .tempdir()?;

    // 1. validate under wrk.
    let svc = Service::start(&kiln, &work.path().join("home-wrk"), &[], &[])?;
    let token = svc.admin_token()?;
    let spec =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.yml"))
            .context("examples/demo.yml")?;
    let body = json!({ "spec": spec }).to_string();
    let check = svc.call(
        "POST",
        "/api/v1/validate",
        &token,
        Some(&serde_json::from_str(&body)?),
    )?;
    if check.status != 200 {
        bail!("validate answered {check}");
    }
    let script = work.path().join("validate.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n",
            lua_string(&body)
        ),
    )?;
    let health = wrk(&format!("{}/healthz", svc.base), None)?;
    let validate = wrk(&format!("{}/api/v1/validate", svc.base), Some(&script))?;
    drop(svc);
    println!(
        "wrk, 2 threads, 32 connections, 10 s on loopback; spec examples/demo.yml ({} bytes)",
        spec.len()
    );
    for (name, w) in [
        ("GET /healthz (baseline)", &health),
        ("POST /api/v1/validate", &validate),
    ] {
        println!(
            "  {name:<26} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   non-2xx {}",
            w.requests_per_sec, w.p50_ms, w.p99_ms, w.non_2xx
        );
    }
    println!(
        "  validate / healthz: throughput {:.2}x, p99 {:.2}x",
        validate.requests_per_sec / health.requests_per_sec,
        validate.p99_ms / health.p99_ms
    );

    // 2. builds.
    eprintln!("building fixtures…");
    let opts = FixtureOptions::from_env(&work.path().join("fixtures"))?;
    let set = fixtures::build_all(&opts)?;
    let registry = Registry::start()?;
    for f in [&set.kernel, &set.init, &set.runc, &set.plain, &set.service] {
        registry.push(f)?;
    }
    let args = ["--workers".to_owned(), workers.to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let one = builds(
        &kiln,
        &work.path().join("home-one"),
        &args,
        &registry,
        &set,
        1,
    )?;
    let many = builds(
        &kiln,
        &work.path().join("home-many"),
        &args,
        &registry,
        &set,
        BUILDS,
    )?;
    println!(
        "fixture builds (kernel+initrd and tar; kernel, init, runc, onboot, service), server workers = {workers}"
    );
    println!(
        "  1 build alone:          {:>6.2} s wall, server peak RSS {:>6.1} MiB",
        one.0,
        one.1 as f64 / 1024.0
    );
    println!(
        "  {BUILDS} builds at once:      {:>6.2} s wall, server peak RSS {:>6.1} MiB",
        many.0,
        many.1 as f64 / 1024.0
    );
    println!(
        "  ratios ({BUILDS} / 1): wall {:.2}x for {BUILDS}x the builds, peak RSS {:.2}x",
        many.0 / one.0,
        many.1 as f64 / one.1 as f64
    );
    Ok(())
}

/// A Lua string literal.
fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn wrk(url: &str, script: Option<&Path>) -> anyhow::Result<Wrk> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", "-d10s", "--latency"]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(url)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(prefix.split_whitespace().count()))
    };
    let ms = |v: &str| -> anyhow::Result<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse()?;
        Ok(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            other => bail!("latency unit `{other}`"),
        })
    };
    Ok(Wrk {
        requests_per_sec: field("Requests/sec:").context("no Requests/sec")?.parse()?,
        p50_ms: ms(field("50%").context("no p50")?)?,
        p99_ms: ms(field("99%").context("no p99")?)?,
        non_2xx: field("Non-2xx or 3xx responses:")
            .map(|n| n.parse())
            .transpose()?
            .unwrap_or(0),
    })
}

/// Submits `n` distinct builds at once to a fresh server and waits for all;
/// returns the wall time and the server's peak RSS in KiB.
fn builds(
    kiln: &Path,
    home: &Path,
    args: &[&str],
    registry: &Registry,
    set: &FixtureSet,
    n: usize,
) -> anyhow::Result<(f64, u64)> {
    let svc = Service::start(kiln, home, args, &[])?;
    let token = svc.admin_token()?;
    let r = |f: &fixtures::Fixture| registry.reference(&f.name, &f.tag);
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let spec = format!(
            "kernel:\n  image: {}\n  cmdline: console=ttyS0\ninit:\n  - {}\n  - {}\nonboot:\n  - name: plain\n    image: {}\nservices:\n  - name: web\n    image: {}\nfiles:\n  - path: etc/build-number\n    contents: \"{i}\"\n",
            r(&set.kernel),
            r(&set.init),
            r(&set.runc),
            r(&set.plain),
            r(&set.service),
        );
        let a = svc.call(
            "POST",
            "/api/v1/builds",
            &token,
            Some(&json!({"spec": spec, "formats": ["kernel+initrd", "tar"], "name": format!("b{i}")})),
        )?;
        if a.status != 202 {
            bail!("submitting build {i}: {a}");
        }
        ids.push(a.json()["id"].as_str().context("no id")?.to_owned());
    }
    for id in &ids {
        let b = svc.wait_state(
            &token,
            id,
            &["succeeded", "failed", "cancelled"],
            Duration::from_secs(1800),
        )?;
        if b["state"] != "succeeded" {
            bail!("build {id}: {b}");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{}/status", svc.pid()))?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmHWM")?
        .parse()?;
    Ok((wall, peak))
}
