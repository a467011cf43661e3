//! Benchmark (not a test): pulling the fixture set into an empty store from
//! a loopback docker-registry, and a warm `kiln cache pull` that downloads
//! nothing, against two baselines measured in the same run on the same
//! registry: `skopeo copy --all` of each image into an OCI directory, and a
//! raw sequential GET of every manifest and blob (digest-checked, one
//! connection, no store).
//!
//! ```text
//! cargo build --release -p kiln-backend --bin kiln
//! cargo run --release -p kiln-e2e --example cache-bench -- [ROUNDS]
//! ```
//!
//! The kiln binary is `$KILN_BIN`, else `kiln` next to this example's
//! profile directory (`target/release/kiln`). Every figure is the median
//! (and minimum) over ROUNDS rounds (default 5); the store and output
//! directories are fresh for every cold run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::{self, PlatformSelection, RegistryConfig};
use kiln_backend::engine::store::Store;
use kiln_e2e::fixtures::{self, FixtureOptions, FixtureSet};
use kiln_e2e::registry::Registry;
use kiln_e2e::tools;

fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("ROUNDS must be a number")?,
        None => 5,
    };
    let kiln = kiln_e2e::tools::kiln_bin()?;
    let skopeo = tools::find("skopeo", "skopeo")?;
    let work = tempfile::Builder::new()
        .prefix("kiln-cache-bench-")
        .tempdir()?;
    eprintln!("building fixtures…");
    let set = fixtures::build_all(&FixtureOptions::from_env(&work.path().join("fixtures"))?)?;
    let registry = Registry::start()?;
    for f in set.all() {
        registry.push(f)?;
    }
    let refs: Vec<String> = set
        .all()
        .iter()
        .map(|f| registry.reference(&f.name, &f.tag))
        .collect();
    let (blob_count, total_bytes) = raw_get_all(&registry, &set)?;
    println!(
        "fixture set: {} images, {blob_count} manifests and blobs, {:.1} MiB; {rounds} rounds; kiln {}",
        refs.len(),
        total_bytes as f64 / (1 << 20) as f64,
        kiln.display()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let parsed: Vec<Reference> = refs
        .iter()
        .map(|r| Reference::parse(r))
        .collect::<Result<_, _>>()?;
    let config = RegistryConfig::default();

    let mut t = Timings::default();
    for round in 0..rounds {
        let dir = work.path().join(format!("round-{round}"));

        // kiln CLI: cold into an empty store, then warm (no blob to fetch).
        let store = dir.join("cli-store");
        t.cli_cold.push(time(|| cli_pull(&kiln, &store, &refs))?);
        t.cli_warm.push(time(|| cli_pull(&kiln, &store, &refs))?);
        let downloaded = blob_files(&store)?;
        if downloaded == 0 {
            bail!("the cold pull stored nothing");
        }

        // The same through the library, in process.
        let lib_store = Store::open(dir.join("lib-store"))?;
        let pull = || -> anyhow::Result<()> {
            let pulled = runtime.block_on(registry::pull(
                &parsed,
                &PlatformSelection::All,
                &lib_store,
                &config,
            ))?;
            if pulled.len() != parsed.len() {
                bail!("pulled {} of {} images", pulled.len(), parsed.len());
            }
            Ok(())
        };
        t.lib_cold.push(time(pull)?);
        t.lib_warm.push(time(pull)?);

        // Baselines.
        let oci = dir.join("skopeo");
        t.skopeo.push(time(|| skopeo_copy(&skopeo, &oci, &refs))?);
        t.raw_get
            .push(time(|| raw_get_all(&registry, &set).map(|_| ()))?);
    }

    println!();
    println!("{:<44} {:>10} {:>10}", "", "median", "min");
    let row = |name: &str, v: &[Duration]| {
        println!("{name:<44} {:>8.1}ms {:>8.1}ms", ms(median(v)), ms(min(v)))
    };
    row("kiln cache pull, cold (empty store)", &t.cli_cold);
    row("kiln cache pull, warm (no-op)", &t.cli_warm);
    row("registry::pull in process, cold", &t.lib_cold);
    row("registry::pull in process, warm", &t.lib_warm);
    row("baseline: skopeo copy --all to oci: (x7)", &t.skopeo);
    row("baseline: sequential raw GET of every blob", &t.raw_get);
    println!();
    println!(
        "warm/cold ratio: CLI {:.3}, in process {:.3}",
        ms(median(&t.cli_warm)) / ms(median(&t.cli_cold)),
        ms(median(&t.lib_warm)) / ms(median(&t.lib_cold))
    );
    println!(
        "cold CLI vs baselines: {:.2}x skopeo, {:.2}x raw GET; cold throughput {:.1} MiB/s",
        ms(median(&t.cli_cold)) / ms(median(&t.skopeo)),
        ms(median(&t.cli_cold)) / ms(median(&t.raw_get)),
        total_bytes as f64 / (1 << 20) as f64 / median(&t.cli_cold).as_secs_f64()
    );
    Ok(())
}

#[derive(Default)]
struct Timings {
    cli_cold: Vec<Duration>,
    cli_warm: Vec<Duration>,
    lib_cold: Vec<Duration>,
    lib_warm: Vec<Duration>,
    skopeo: Vec<Duration>,
    raw_get: Vec<Duration>,
}

fn time(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

fn cli_pull(kiln: &Path, store: &Path, refs: &[String]) -> anyhow::Result<()> {
    let out = Command::new(kiln)
        .arg("cache")
        .arg("--cache")
        .arg(store)
        .args(["pull", "--all-platforms"])
        .args(refs)
        .env_remove("KILN_MIRROR")
        .env("DOCKER_CONFIG", store.with_extension("docker"))
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "kiln cache pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn skopeo_copy(skopeo: &Path, dir: &Path, refs: &[String]) -> anyhow::Result<()> {
    for (i, r) in refs.iter().enumerate() {
        tools::run(
            Command::new(skopeo)
                .args(["--insecure-policy", "copy", "--all", "--quiet"])
                .arg("--src-tls-verify=false")
                .arg(format!("docker://{r}"))
                .arg(format!("oci:{}:img{i}", dir.display())),
        )?;
    }
    Ok(())
}

/// GETs every manifest and blob of the set one after the other, checking
/// digests; returns how many and their total size.
fn raw_get_all(registry: &Registry, set: &FixtureSet) -> anyhow::Result<(usize, u64)> {
    let mut count = 0;
    let mut bytes = 0u64;
    for f in set.all() {
        let root = registry
            .manifest(&f.name, &f.tag)?
            .context("fixture missing from the registry")?;
        count += 1;
        bytes += root.body.len() as u64;
        let doc: serde_json::Value = serde_json::from_slice(&root.body)?;
        let mut manifests = Vec::new();
        match doc["manifests"].as_array() {
            Some(children) => {
                for c in children {
                    let digest = c["digest"].as_str().context("child digest")?;
                    let m = registry
                        .manifest(&f.name, digest)?
                        .context("child manifest missing")?;
                    count += 1;
                    bytes += m.body.len() as u64;
                    manifests.push(serde_json::from_slice::<serde_json::Value>(&m.body)?);
                }
            }
            None => manifests.push(doc),
        }
        for m in manifests {
            let blobs =
                std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten());
            for b in blobs {
                let digest = b["digest"].as_str().context("blob digest")?;
                bytes += registry.blob(&f.name, digest)?.len() as u64;
                count += 1;
            }
        }
    }
    Ok((count, bytes))
}

fn blob_files(store: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(store.join("blobs/sha256"))?.count())
}
