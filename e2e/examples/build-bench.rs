//! Benchmark (not a test): `kiln build -f kernel+initrd` of a fixture spec
//! whose kernel image carries Debian's whole module tree, against baselines
//! measured in the same run on the same bytes: `gzip -1` and `gzip -6` of
//! the module tarball, and `zcat` of the kernel layer.
//!
//! ```text
//! cargo build --release -p kiln-backend --bin kiln
//! cargo run --release -p kiln-e2e --example build-bench -- [small|full]
//! ```
//!
//! Prints, for each run: wall time, peak RSS of the kiln process, the initrd
//! size, and ratios to the baselines. Three runs: a cold build (images in
//! the store, no cached initrd members), a rebuild after one service
//! changed (members cached), and a no-change rebuild. With
//! `KILN_BENCH_KEEP=1` the work directory (store, spec) is kept for
//! profiling.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kiln_e2e::fixtures::{self, FixtureOptions, Modules};
use kiln_e2e::registry::Registry;

fn main() -> anyhow::Result<()> {
    let full = !matches!(std::env::args().nth(1).as_deref(), Some("small"));
    let kiln = kiln_e2e::tools::kiln_bin()?;
    let work = tempfile::Builder::new()
        .prefix("kiln-build-bench-")
        .tempdir()?;
    eprintln!(
        "building fixtures ({} module tree)…",
        if full { "full" } else { "small" }
    );
    let mut opts = FixtureOptions::from_env(&work.path().join("fixtures"))?;
    if full {
        opts.modules = Modules::All;
    }
    let set = fixtures::build_all(&opts)?;
    let registry = Registry::start()?;
    for f in [&set.kernel, &set.init, &set.runc, &set.plain, &set.service] {
        registry.push(f)?;
    }
    let home = work.path().join("home");
    let spec = |service_env: &str| {
        format!(
            "kernel:\n  image: {}\n  cmdline: console=ttyS0\ninit:\n  - {}\n  - {}\nonboot:\n  - name: plain\n    image: {}\nservices:\n  - name: web\n    image: {}\n    env: [\"RUN={service_env}\"]\n",
            registry.reference(&set.kernel.name, "v1"),
            registry.reference(&set.init.name, "v1"),
            registry.reference(&set.runc.name, "v1"),
            registry.reference(&set.plain.name, "v1"),
            registry.reference(&set.service.name, "v1"),
        )
    };
    let dir = work.path().join("spec");
    std::fs::create_dir_all(&dir)?;

    // Pull once so every timed run reads images from the store only.
    std::fs::write(dir.join("bench.yml"), spec("0"))?;
    run_kiln(&kiln, &dir, &home, &["cache-warmup"])?;
    let _ = std::fs::remove_dir_all(home.join("initrd-members"));

    let cold = run_kiln(&kiln, &dir, &home, &[])?;
    std::fs::write(dir.join("bench.yml"), spec("1"))?;
    let changed = run_kiln(&kiln, &dir, &home, &[])?;
    let same = run_kiln(&kiln, &dir, &home, &[])?;

    let layer = set
        .kernel
        .layout
        .join("blobs/sha256")
        .join(kernel_layer_hex(&set.kernel.layout, set.kernel.digest())?);
    let modules_tar = work.path().join("kernel.tar");
    extract_kernel_tar(&layer, &modules_tar)?;
    let gzip1 = time_shell(&format!("gzip -1 -c {} > /dev/null", modules_tar.display()))?;
    let gzip6 = time_shell(&format!("gzip -6 -c {} > /dev/null", modules_tar.display()))?;
    let zcat = time_shell(&format!("zcat {} > /dev/null", layer.display()))?;
    let tar_size = std::fs::metadata(&modules_tar)?.len();

    println!(
        "module tarball: {:.1} MiB; baselines: gzip -1 {:.2} s, gzip -6 {:.2} s, zcat of the kernel layer {:.2} s",
        tar_size as f64 / (1 << 20) as f64,
        gzip1.as_secs_f64(),
        gzip6.as_secs_f64(),
        zcat.as_secs_f64()
    );
    for (label, r) in [
        ("cold build", &cold),
        ("rebuild, one service changed", &changed),
        ("rebuild, nothing changed", &same),
    ] {
        println!(
            "{label:<30} {:>6.2} s  peak RSS {:>6.1} MiB  initrd {:>6.1} MiB  = {:.2}x gzip -1, {:.2}x gzip -6, {:.2}x zcat",
            r.wall.as_secs_f64(),
            r.max_rss_kib as f64 / 1024.0,
            r.initrd_bytes as f64 / (1 << 20) as f64,
            r.wall.as_secs_f64() / gzip1.as_secs_f64(),
            r.wall.as_secs_f64() / gzip6.as_secs_f64(),
            r.wall.as_secs_f64() / zcat.as_secs_f64(),
        );
    }
    if std::env::var_os("KILN_BENCH_KEEP").is_some() {
        let kept = work.keep();
        eprintln!(
            "kept {} (KILN_HOME={}, spec in {})",
            kept.display(),
            kept.join("home").display(),
            kept.join("spec").display()
        );
    }
    Ok(())
}

struct Run {
    wall: Duration,
    max_rss_kib: u64,
    initrd_bytes: u64,
}

/// Runs `kiln build` (or, with `cache-warmup`, only pulls the images) and
/// measures its wall time and peak RSS. The RSS comes from GNU time, run
/// around kiln: `wait4` here would also count this process's pages, which
/// a forked child carries until it execs.
fn run_kiln(kiln: &Path, dir: &Path, home: &Path, mode: &[&str]) -> anyhow::Result<Run> {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "KILN-MAXRSS-KIB %M"])
        .arg(kiln)
        .current_dir(dir)
        .env("KILN_HOME", home)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if mode == ["cache-warmup"] {
        cmd.args(["build", "-f", "tar", "-o", "-", "bench.yml"]);
    } else {
        cmd.args(["build", "--offline", "-f", "kernel+initrd", "bench.yml"]);
    }
    let started = Instant::now();
    let out = cmd
        .output()
        .context("running kiln under /usr/bin/time (Debian package `time`)")?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("kiln build failed:\n{stderr}");
    }
    let max_rss_kib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("KILN-MAXRSS-KIB "))
        .and_then(|v| v.trim().parse().ok())
        .context("no RSS figure from /usr/bin/time")?;
    let initrd_bytes = std::fs::metadata(dir.join("bench-initrd.img"))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Run {
        wall,
        max_rss_kib,
        initrd_bytes,
    })
}

fn kernel_layer_hex(layout: &Path, manifest_digest: &str) -> anyhow::Result<String> {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(
        layout
            .join("blobs/sha256")
            .join(manifest_digest.trim_start_matches("sha256:")),
    )?)?;
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .context("kernel manifest has no layer")?;
    Ok(digest.trim_start_matches("sha256:").to_owned())
}

/// Copies `kernel.tar` out of the kernel image's (gzip) layer.
fn extract_kernel_tar(layer: &Path, out: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(layer)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "kernel.tar" {
            let mut f = std::fs::File::create(out)?;
            std::io::copy(&mut entry, &mut f)?;
            return Ok(());
        }
    }
    bail!("no kernel.tar in {}", layer.display())
}

fn time_shell(script: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new("sh").args(["-c", script]).status()?;
    if !status.success() {
        bail!("`{script}` failed");
    }
    Ok(started.elapsed())
}
