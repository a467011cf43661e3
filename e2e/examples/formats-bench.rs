//! Benchmark (not a test): `kiln build -f raw-efi`, `-f iso-efi`,
//! `-f kernel+squashfs` and `-f kernel+iso` of a small fixture spec from a
//! warm store (images pulled, initrd members cached), against
//! `-f kernel+initrd` of the same spec measured in the same run (the EFI
//! formats start from it; the rootfs images are written from the same
//! entry stream instead of the initrd).
//!
//! ```text
//! cargo build [--release] -p kiln-backend --bin kiln
//! cargo run [--release] -p kiln-e2e --example formats-bench -- [RUNS]
//! ```
//!
//! Prints the median wall time of RUNS (default 5) builds of each format,
//! the output size and the ratio to the kernel+initrd baseline.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kiln_e2e::fixtures::{self, boot, FixtureOptions};
use kiln_e2e::registry::Registry;

fn main() -> anyhow::Result<()> {
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("RUNS must be a number")?,
        None => 5,
    };
    let kiln = kiln_e2e::tools::kiln_bin()?;
    let work = tempfile::Builder::new()
        .prefix("kiln-formats-bench-")
        .tempdir()?;
    eprintln!("building fixtures…");
    let opts = FixtureOptions::from_env(&work.path().join("fixtures"))?;
    let set = fixtures::build_all(&opts)?;
    let loaders = boot::build(&opts)?;
    let registry = Registry::start()?;
    for f in [
        &set.kernel,
        &set.init,
        &set.runc,
        &set.plain,
        &loaders.efi_stub,
    ] {
        registry.push(f)?;
    }
    let stub = registry.reference(&loaders.efi_stub.name, "v1");
    let dir = work.path().join("spec");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("bench.yml"),
        format!(
            "kernel:\n  image: {}\n  cmdline: console=ttyS0\ninit:\n  - {}\n  - {}\nonboot:\n  - name: plain\n    image: {}\n",
            registry.reference(&set.kernel.name, "v1"),
            registry.reference(&set.init.name, "v1"),
            registry.reference(&set.runc.name, "v1"),
            registry.reference(&set.plain.name, "v1"),
        ),
    )?;
    let home = work.path().join("home");
    // Warm up: pulls every image (the stub too) and caches initrd members.
    build(&kiln, &dir, &home, "uki", &stub, false)?;

    let mut rows = Vec::new();
    for (format, output) in [
        ("kernel+initrd", "bench-initrd.img"),
        ("raw-efi", "bench-efi.img"),
        ("iso-efi", "bench-efi.iso"),
        ("kernel+squashfs", "bench-squashfs.img"),
        ("kernel+iso", "bench.iso"),
    ] {
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(build(&kiln, &dir, &home, format, &stub, true)?);
        }
        times.sort();
        let size = std::fs::metadata(dir.join(output))?.len();
        rows.push((format, times[times.len() / 2], size));
    }
    let base = rows[0].1.as_secs_f64();
    println!("median of {runs} builds each, warm store and initrd member cache:");
    for (format, median, size) in &rows {
        println!(
            "{format:<16} {:>7.3} s  {:>7.1} MiB  = {:.2}x kernel+initrd",
            median.as_secs_f64(),
            *size as f64 / (1 << 20) as f64,
            median.as_secs_f64() / base
        );
    }
    Ok(())
}

/// One `kiln build`, offline when `offline`; returns its wall time.
fn build(
    kiln: &Path,
    dir: &Path,
    home: &Path,
    format: &str,
    stub: &str,
    offline: bool,
) -> anyhow::Result<Duration> {
    let mut cmd = Command::new(kiln);
    cmd.current_dir(dir)
        .env("KILN_HOME", home)
        .env("HOME", home)
        .args(["build", "-f", format, "--efi-stub", stub])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if offline {
        cmd.arg("--offline");
    }
    cmd.arg("bench.yml");
    let started = Instant::now();
    let out = cmd.output().context("running kiln")?;
    let wall = started.elapsed();
    if !out.status.success() {
        bail!(
            "kiln build -f {format} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(wall)
}
