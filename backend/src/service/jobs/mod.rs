//! Build jobs: the queue is the `builds` table. A bounded pool of workers
//! claims queued rows with one atomic `UPDATE … RETURNING`, runs the same
//! engine calls as `kiln build`, records progress as numbered events (what
//! the SSE stream replays), and stores artifacts content-addressed.
//!
//! Restart safety: on start, every build left `running` by a dead process is
//! queued again while it has attempts left, else failed with the reason.
//! Identical builds running at once (same spec, formats, name, platform and
//! image digests) share one execution, singleflight-style. Content trust is
//! checked per build, before the shared execution.

pub mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_shared::Spec;
use kiln_signer::policy::TrustPolicy;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::Row;
use tokio::sync::{watch, Notify, OnceCell};

use self::metrics::Metrics;
use super::{db, trust, AppState};
use crate::engine::build::cancel::Cancel;
use crate::engine::build::output::InitrdOptions;
use crate::engine::build::trust::BootLoader;
use crate::engine::build::{self, BuildRequest, ImageSource};
use crate::engine::flatten::FlattenOptions;
use crate::engine::formats::format::Format;
use crate::engine::reference::Reference;
use crate::engine::registry::RegistryConfig;
use crate::engine::store::Platform;

/// One artifact of a finished build.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub media_type: String,
}

/// One execution shared by identical builds.
#[derive(Default)]
struct FlightState {
    result: OnceCell<Result<Vec<Output>, String>>,
    /// Builds waiting for the result; changed under the `flights` lock.
    waiters: AtomicUsize,
    /// Set when the last waiter gives up: the engine's writers stop.
    cancel: Arc<AtomicBool>,
}

type Flight = Arc<FlightState>;

/// A build's place in a flight. Dropping it (the build ended, or was
/// cancelled or timed out, which drops its future) leaves the flight; the
/// last to leave cancels an unfinished write and forgets the flight.
struct Waiting {
    app: AppState,
    key: String,
    flight: Flight,
}

impl Waiting {
    fn join(app: &AppState, key: &str) -> Waiting {
        let mut flights = app.jobs.flights.lock().unwrap();
        let flight = flights.entry(key.to_owned()).or_default();
        if flight.cancel.load(Ordering::SeqCst) {
            *flight = Flight::default();
        }
        flight.waiters.fetch_add(1, Ordering::SeqCst);
        Waiting {
            app: app.clone(),
            key: key.to_owned(),
            flight: flight.clone(),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut flights = self.app.jobs.flights.lock().unwrap();
        if self.flight.waiters.fetch_sub(1, Ordering::SeqCst) == 1 {
            if !self.flight.result.initialized() {
                self.flight.cancel.store(true, Ordering::SeqCst);
            }
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(&self.key);
            }
        }
    }
}

/// The job machinery shared by the API and the workers.
pub struct Jobs {
    /// Woken when a build is queued.
    wake: Notify,
    /// Bumped after every event, for SSE streams to look again.
    events: watch::Sender<u64>,
    /// Cancel signals of the builds this process runs.
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Executions in progress, by their inputs' digest.
    flights: Mutex<HashMap<String, Flight>>,
    pub metrics: Metrics,
    /// This process's name in `builds.worker`.
    pub worker_id: String,
    stopping: AtomicBool,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            wake: Notify::new(),
            events: watch::channel(0).0,
            running: Mutex::default(),
            flights: Mutex::default(),
            metrics: Metrics::default(),
            worker_id: format!("{}-{}", std::process::id(), db::random_hex(4)),
            stopping: AtomicBool::new(false),
        }
    }
}

impl Jobs {
    /// A build was queued.
    pub fn queued(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// A receiver that changes whenever any build gets an event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    /// Signals a build running in this process to stop.
    pub fn signal_cancel(&self, id: &str) {
        if let Some(tx) = self.running.lock().unwrap().get(id) {
            let _ = tx.send(true);
        }
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }
}

/// Appends an event to a build's log.
pub async fn event(app: &AppState, build_id: &str, kind: &str, data: serde_json::Value) {
    let r = sqlx::query(
        "INSERT INTO build_events (build_id, seq, kind, data, at) \
         SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM build_events WHERE build_id = ?",
    )
    .bind(build_id)
    .bind(kind)
    .bind(data.to_string())
    .bind(db::now())
    .bind(build_id)
    .execute(&app.db)
    .await;
    if let Err(e) = r {
        eprintln!("kiln serve: build {build_id}: cannot record an event: {e}");
    }
    app.jobs.events.send_modify(|n| *n += 1);
}

async fn log(app: &AppState, build_id: &str, message: impl Into<String>) {
    event(app, build_id, "log", json!({ "message": message.into() })).await;
}

/// Builds a dead process left `running`: queued again while attempts
/// remain, failed with the reason otherwise. With `stale_after`, only those
/// whose heartbeat is older (other live workers keep theirs fresh).
pub async fn recover(app: &AppState, stale_after: Option<i64>) -> Result<usize, sqlx::Error> {
    let cutoff = stale_after.map_or(i64::MAX, |s| db::now() - s);
    let rows = sqlx::query(
        "SELECT id, attempts FROM builds WHERE state = 'running' AND COALESCE(heartbeat_at, 0) < ?",
    )
    .bind(cutoff)
    .fetch_all(&app.db)
    .await?;
    let max = app.cfg.max_attempts;
    for row in &rows {
        let id: String = row.get(0);
        let attempts: i64 = row.get(1);
        let reason =
            format!("the server stopped while the build was running (attempt {attempts} of {max})");
        if attempts < max {
            let done = sqlx::query(
                "UPDATE builds SET state = 'queued', worker = NULL, heartbeat_at = NULL \
                 WHERE id = ? AND state = 'running'",
            )
            .bind(&id)
            .execute(&app.db)
            .await?;
            if done.rows_affected() == 1 {
                event(
                    app,
                    &id,
                    "state",
                    json!({ "state": "queued", "reason": format!("{reason}; retrying") }),
                )
                .await;
            }
        } else {
            let done = sqlx::query(
                "UPDATE builds SET state = 'failed', error = ?, finished_at = ?, worker = NULL \
                 WHERE id = ? AND state = 'running'",
            )
            .bind(&reason)
            .bind(db::now())
            .bind(&id)
            .execute(&app.db)
            .await?;
            if done.rows_affected() == 1 {
                event(
                    app,
                    &id,
                    "end",
                    json!({ "state": "failed", "error": reason }),
                )
                .await;
            }
        }
        let _ = std::fs::remove_dir_all(work_dir(&app.cfg.home, &id));
    }
    if !rows.is_empty() {
        app.jobs.queued();
    }
    Ok(rows.len())
}

/// Starts `n` workers.
pub fn spawn_workers(app: &AppState, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { worker(app).await })
        })
        .collect()
}

struct Job {
    id: String,
    spec: String,
    spec_digest: String,
    formats: Vec<String>,
    name: String,
    arch: String,
    pull: bool,
    attempt: i64,
    team: String,
    disable_content_trust: bool,
}

async fn claim(app: &AppState) -> Result<Option<Job>, sqlx::Error> {
    let now = db::now();
    let row = sqlx::query(
        "UPDATE builds SET state = 'running', attempts = attempts + 1, started_at = ?, \
         heartbeat_at = ?, worker = ? \
         WHERE id = (SELECT id FROM builds WHERE state = 'queued' ORDER BY created_at, id LIMIT 1) \
           AND state = 'queued' \
         RETURNING id, spec, spec_digest, formats, name, arch, pull, attempts, team, \
           disable_content_trust",
    )
    .bind(now)
    .bind(now)
    .bind(&app.jobs.worker_id)
    .fetch_optional(&app.db)
    .await?;
    Ok(row.map(|r| Job {
        id: r.get(0),
        spec: r.get(1),
        spec_digest: r.get(2),
        formats: serde_json::from_str(r.get::<&str, _>(3)).unwrap_or_default(),
        name: r.get(4),
        arch: r.get(5),
        pull: r.get::<i64, _>(6) != 0,
        attempt: r.get(7),
        team: r.get(8),
        disable_content_trust: r.get::<i64, _>(9) != 0,
    }))
}

async fn worker(app: AppState) {
    loop {
        if app.jobs.stopping.load(Ordering::SeqCst) {
            return;
        }
        let notified = app.jobs.wake.notified();
        match claim(&app).await {
            Ok(Some(job)) => {
                app.jobs.metrics.running(1);
                execute(&app, job).await;
                app.jobs.metrics.running(-1);
                continue;
            }
            Ok(None) => {}
            Err(e) => eprintln!("kiln serve: claiming a build: {e}"),
        }
        // Other processes may queue builds too: look again every second.
        let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
    }
}

enum Outcome {
    Succeeded(Vec<Output>),
    Failed(String),
    Cancelled,
}

/// The work directory of a build.
pub fn work_dir(home: &Path, id: &str) -> PathBuf {
    home.join("work").join(id)
}

/// Where an artifact's bytes live.
pub fn artifact_path(home: &Path, sha256: &str) -> PathBuf {
    home.join("artifacts").join("sha256").join(sha256)
}

async fn execute(app: &AppState, job: Job) {
    let started = Instant::now();
    let (cancel_tx, mut cancel_rx) = watch::channel(false);
    app.jobs
        .running
        .lock()
        .unwrap()
        .insert(job.id.clone(), cancel_tx.clone());
    event(
        app,
        &job.id,
        "state",
        json!({ "state": "running", "attempt": job.attempt }),
    )
    .await;

    // Heartbeat, and cancel requests made through another process.
    let beat = {
        let app = app.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let r = sqlx::query(
                    "UPDATE builds SET heartbeat_at = ? WHERE id = ? RETURNING cancel_requested",
                )
                .bind(db::now())
                .bind(&id)
                .fetch_optional(&app.db)
                .await;
                if let Ok(Some(row)) = r {
                    if row.get::<i64, _>(0) != 0 {
                        let _ = cancel_tx.send(true);
                    }
                }
            }
        })
    };

    let timeout = Duration::from_secs(app.cfg.build_timeout_secs);
    let outcome = tokio::select! {
        r = run(app, &job) => match r {
            Ok(outputs) => Outcome::Succeeded(outputs),
            Err(e) => Outcome::Failed(e),
        },
        _ = cancel_rx.wait_for(|c| *c) => Outcome::Cancelled,
        _ = tokio::time::sleep(timeout) => Outcome::Failed(format!(
            "the build took longer than its timeout of {} s", timeout.as_secs()
        )),
    };
    // The writer (see `write`) removes its own work directory when it
    // stops; a cancelled one stops within one read.
    beat.abort();
    app.jobs.running.lock().unwrap().remove(&job.id);

    let (state, error) = match &outcome {
        Outcome::Succeeded(_) => ("succeeded", None),
        Outcome::Failed(e) => ("failed", Some(e.clone())),
        Outcome::Cancelled => ("cancelled", Some("cancelled by request".to_owned())),
    };
    let finish = async {
        let mut tx = app.db.begin().await?;
        if let Outcome::Succeeded(outputs) = &outcome {
            for o in outputs {
                sqlx::query(
                    "INSERT OR REPLACE INTO artifacts (build_id, name, size, sha256, media_type) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&job.id)
                .bind(&o.name)
                .bind(o.size as i64)
                .bind(&o.sha256)
                .bind(&o.media_type)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "UPDATE builds SET state = ?, error = ?, finished_at = ?, worker = NULL \
             WHERE id = ? AND state = 'running'",
        )
        .bind(state)
        .bind(&error)
        .bind(db::now())
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    };
    if let Err(e) = finish.await {
        eprintln!(
            "kiln serve: build {}: cannot record the result: {e}",
            job.id
        );
        return;
    }
    if let Outcome::Succeeded(outputs) = &outcome {
        for o in outputs {
            event(
                app,
                &job.id,
                "artifact",
                json!({ "name": o.name, "size": o.size, "sha256": o.sha256, "media_type": o.media_type }),
            )
            .await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    app.jobs.metrics.finished(state, secs);
    event(
        app,
        &job.id,
        "end",
        json!({ "state": state, "error": error, "seconds": secs }),
    )
    .await;
}

/// The trust policy `team`'s builds run under: the server's together with
/// the team's stored one.
pub async fn team_trust_policy(app: &AppState, team: &str) -> Result<TrustPolicy, String> {
    let stored: Option<String> = sqlx::query_scalar("SELECT policy FROM policies WHERE team = ?")
        .bind(team)
        .fetch_optional(&app.db)
        .await
        .map_err(|e| format!("reading the team's trust policy: {e}"))?;
    let doc: serde_json::Map<String, serde_json::Value> = match stored {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| format!("the team's stored trust policy: {e}"))?,
        None => Default::default(),
    };
    let team_policy = if doc.is_empty() {
        None
    } else {
        Some(trust::team_policy(&doc).map_err(|e| format!("the team's trust policy: {e}"))?)
    };
    trust::combine(app.trust_policy.as_ref(), team_policy.as_ref())
}

/// Verifies the images' signatures (or records that verification was
/// disabled) and stores what happened with the build.
async fn check_trust(
    app: &AppState,
    job: &Job,
    spec: &Spec,
    images: &crate::engine::build::plan::Images,
    loaders: &[BootLoader<'_>],
    registry: &RegistryConfig,
) -> Result<(), String> {
    let policy = team_trust_policy(app, &job.team).await?;
    let record = build::trust::enforce(
        spec,
        images,
        loaders,
        &policy,
        Some(registry),
        job.disable_content_trust,
    )
    .await
    .map_err(|e| e.to_string())?;
    if record.disabled {
        log(
            app,
            &job.id,
            "content trust DISABLED by the submitter (permitted by the trust policies): no signature was verified",
        )
        .await;
    }
    for v in &record.verified {
        log(
            app,
            &job.id,
            format!(
                "verified {} ({}) with key {} from trust root `{}`",
                v.image, v.digest, v.key_fingerprint, v.trust_root
            ),
        )
        .await;
    }
    let verified: Vec<serde_json::Value> = record
        .verified
        .iter()
        .map(|v| {
            json!({
                "image": v.image,
                "digest": v.digest,
                "key_fingerprint": v.key_fingerprint,
                "trust_root": v.trust_root,
                "docker_reference": v.docker_reference,
                "origin": v.origin,
            })
        })
        .collect();
    let stored = json!({
        "disabled": record.disabled,
        "verified": verified,
        "boot_loaders": record.boot_loaders,
    });
    sqlx::query("UPDATE builds SET content_trust = ? WHERE id = ?")
        .bind(stored.to_string())
        .bind(&job.id)
        .execute(&app.db)
        .await
        .map_err(|e| format!("recording content trust: {e}"))?;
    Ok(())
}

/// The registry settings of the service's pulls and publications.
pub fn registry_config(app: &AppState) -> RegistryConfig {
    RegistryConfig {
        insecure_registries: app.cfg.insecure_registries.clone(),
        ..RegistryConfig::default()
    }
}

/// Stores what the images resolved to (written name -> expanded reference
/// and root digest), which publishing needs for provenance and the SBOM.
async fn record_images(
    app: &AppState,
    id: &str,
    images: &crate::engine::build::plan::Images,
) -> Result<(), String> {
    let recorded: std::collections::BTreeMap<&String, serde_json::Value> = images
        .iter()
        .map(|(written, r)| {
            (
                written,
                json!({ "reference": r.reference.to_string(), "digest": r.root.digest.to_string() }),
            )
        })
        .collect();
    sqlx::query("UPDATE builds SET images = ? WHERE id = ?")
        .bind(serde_json::to_string(&recorded).unwrap_or_default())
        .bind(id)
        .execute(&app.db)
        .await
        .map_err(|e| format!("recording the images: {e}"))?;
    Ok(())
}

/// Parses and checks a spec the way the service accepts it: valid, and with
/// no `files[].source` (a build may not read the server's files).
pub fn service_spec(text: &str) -> Result<Spec, String> {
    let spec = kiln_shared::validate(text)
        .spec
        .ok_or_else(|| "the spec has errors".to_owned())?;
    if let Some(i) = spec.files.iter().position(|f| f.source.is_some()) {
        return Err(format!(
            "files[{i}].source: the service does not read files from its own disk; use `contents`"
        ));
    }
    Ok(spec)
}

async fn run(app: &AppState, job: &Job) -> Result<Vec<Output>, String> {
    let spec = service_spec(&job.spec)?;
    let formats = Format::parse_list(&job.formats, false).map_err(|e| e.to_string())?;
    let platform = Platform::linux(&job.arch);
    let strings = build::image_strings(&spec);
    // What the store already has: cache hits.
    let mut hits = Vec::new();
    for s in &strings {
        let hit = Reference::parse(s)
            .map(|r| {
                app.store
                    .resolve(&[r.with_default_tag()], &platform)
                    .is_ok()
            })
            .unwrap_or(false);
        hits.push(hit);
    }
    log(
        app,
        &job.id,
        format!(
            "resolving {} images for {} ({} in the store)",
            strings.len(),
            platform_name(&platform),
            hits.iter().filter(|h| **h).count()
        ),
    )
    .await;
    event(app, &job.id, "plan", json!({ "images": strings })).await;
    let registry = registry_config(app);
    let source = ImageSource::Registry {
        config: Box::new(registry.clone()),
        pull_all: job.pull,
    };
    let images = build::resolve_images(&spec, &platform, &app.store, &source)
        .await
        .map_err(|e| e.to_string())?;
    let boot = resolve_boot_loaders(app, job, &formats, &platform, &source).await?;
    let loaders: Vec<BootLoader<'_>> = [
        ("efi-stub", &boot.efi_stub),
        ("bios-loader", &boot.bios_loader),
    ]
    .into_iter()
    .filter_map(|(role, l)| l.as_ref().map(|image| BootLoader { role, image }))
    .collect();
    check_trust(app, job, &spec, &images, &loaders, &registry).await?;
    let mut pinned: Vec<(String, String)> = loaders
        .iter()
        .map(|l| (l.role.to_owned(), l.image.image.root.digest.to_string()))
        .collect();
    for (s, hit) in strings.iter().zip(&hits) {
        if let Some(img) = images.get(s) {
            pinned.push((s.clone(), img.manifest.digest.to_string()));
            if *hit && !job.pull {
                app.jobs.metrics.cache_hit();
            } else {
                let bytes: u64 = img.layers.iter().map(|l| l.size).sum::<u64>() + img.config.size;
                app.jobs.metrics.pulled(bytes);
            }
            event(
                app,
                &job.id,
                "image",
                json!({ "reference": s, "digest": img.manifest.digest.to_string(), "cached": *hit && !job.pull }),
            )
            .await;
        }
    }
    pinned.sort();
    record_images(app, &job.id, &images).await?;

    let signer = measurement_signer(app, job, &formats).await?;
    let key = {
        let mut h = Sha256::new();
        h.update(job.spec_digest.as_bytes());
        // Signed manifests differ per team key: no sharing across teams.
        if signer.is_some() {
            h.update(job.team.as_bytes());
        }
        h.update(serde_json::to_vec(&(&job.formats, &job.name, &job.arch, &pinned)).unwrap());
        hex::encode(h.finalize())
    };
    let waiting = Waiting::join(app, &key);
    let flight = waiting.flight.clone();
    if flight.result.initialized() || flight.waiters.load(Ordering::SeqCst) > 1 {
        log(
            app,
            &job.id,
            "an identical build is running; sharing its result",
        )
        .await;
    }
    log(
        app,
        &job.id,
        format!(
            "writing {}",
            formats
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .await;
    let cancel = flight.cancel.clone();
    let result = flight
        .result
        .get_or_init(|| {
            write(
                app,
                job,
                spec,
                formats,
                platform,
                Resolved {
                    images,
                    boot,
                    signer,
                },
                cancel,
            )
        })
        .await
        .clone();
    drop(waiting);
    let outputs = result?;
    let total: u64 = outputs.iter().map(|o| o.size).sum();
    if total > app.cfg.max_output_bytes {
        return Err(format!(
            "the artifacts total {total} bytes, over the limit of {} bytes",
            app.cfg.max_output_bytes
        ));
    }
    Ok(outputs)
}

/// The boot loader images the server's configuration names for the
/// formats that need them; an error names the setting that is missing.
pub fn boot_loader_names(
    cfg: &super::config::Config,
    formats: &[Format],
) -> Result<(Option<String>, Option<String>), String> {
    let mut names = (None, None);
    if let Some(f) = formats.iter().find(|f| f.needs_efi_stub()) {
        names.0 = Some(cfg.efi_stub.clone().ok_or_else(|| {
            format!(
                "format `{}` needs a systemd EFI stub image, and the server has none configured (`efi_stub` in serve.toml or KILN_EFI_STUB)",
                f.name()
            )
        })?);
    }
    if let Some(f) = formats.iter().find(|f| f.needs_bios_loader()) {
        names.1 = Some(cfg.bios_loader.clone().ok_or_else(|| {
            format!(
                "format `{}` needs an ISOLINUX image, and the server has none configured (`bios_loader` in serve.toml or KILN_BIOS_LOADER)",
                f.name()
            )
        })?);
    }
    Ok(names)
}

/// Resolves (pulling when needed) the boot loader images of the build's
/// formats, as the spec's images are.
async fn resolve_boot_loaders(
    app: &AppState,
    job: &Job,
    formats: &[Format],
    platform: &Platform,
    source: &ImageSource,
) -> Result<build::BootOptions, String> {
    let (efi, bios) = boot_loader_names(&app.cfg, formats)?;
    let mut boot = build::BootOptions::default();
    for (role, name, slot) in [
        ("EFI stub", efi, &mut boot.efi_stub),
        ("BIOS loader", bios, &mut boot.bios_loader),
    ] {
        let Some(name) = name else { continue };
        let loader = build::disk::resolve_loader(&name, platform, &app.store, source)
            .await
            .map_err(|e| format!("the {role} image: {e}"))?;
        log(
            app,
            &job.id,
            format!("{role} image {name} is {}", loader.image.root.digest),
        )
        .await;
        *slot = Some(loader);
    }
    Ok(boot)
}

fn platform_name(p: &Platform) -> String {
    format!("{}/{}", p.os, p.architecture)
}

/// The images a build's write uses.
struct Resolved {
    images: crate::engine::build::plan::Images,
    boot: build::BootOptions,
    /// Signs the measurement manifests.
    signer: Option<Arc<dyn kiln_signer::Signer>>,
}

/// The team's signer when the build writes measurement manifests (`uki`,
/// `raw-efi`): they are signed as `NAME-measurements.json.dsse` with the
/// key releases are signed with.
async fn measurement_signer(
    app: &AppState,
    job: &Job,
    formats: &[Format],
) -> Result<Option<Arc<dyn kiln_signer::Signer>>, String> {
    let measured = crate::engine::measure::output::measured_outputs(formats, Path::new(""), "");
    if measured.is_empty() {
        return Ok(None);
    }
    let cfg = app.cfg.clone();
    let team = job.team.clone();
    let signer = tokio::task::spawn_blocking(move || super::keys::team_signer(&cfg, &team))
        .await
        .map_err(|e| format!("the key task failed: {e}"))?
        .map_err(|e| format!("the team's signing key is not available: {e}"))?;
    if signer.created {
        db::audit(
            &app.db,
            None,
            Some(&job.team),
            "key.generate",
            Some(signer.signer.public_key().fingerprint()),
            json!({ "algorithm": "ecdsa-p256", "for": "measurement manifests" }),
        )
        .await;
    }
    log(
        app,
        &job.id,
        format!(
            "signing measurement manifests with the team's key {}",
            signer.signer.public_key().fingerprint()
        ),
    )
    .await;
    Ok(Some(signer.signer))
}

/// Writes the formats into the work directory (on a blocking thread), then
/// moves each file into the content-addressed artifact directory.
async fn write(
    app: &AppState,
    job: &Job,
    spec: Spec,
    formats: Vec<Format>,
    platform: Platform,
    resolved: Resolved,
    cancel: Arc<AtomicBool>,
) -> Result<Vec<Output>, String> {
    let Resolved {
        images,
        boot,
        signer,
    } = resolved;
    let home = app.cfg.home.clone();
    let dir = work_dir(&home, &job.id);
    let store = app.store.clone();
    let name = job.name.clone();
    let spec_digest = job.spec_digest.clone();
    let task = tokio::task::spawn_blocking(move || {
        let result = (|| {
            let req = BuildRequest {
                spec: &spec,
                formats: &formats,
                dir: &dir,
                name: &name,
                platform: &platform,
                cwd: &dir,
                home: None,
                initrd: InitrdOptions {
                    member_cache: Some(home.join("initrd-members")),
                    ..InitrdOptions::default()
                },
                flatten: FlattenOptions::default(),
                cancel: Cancel::from_flag(cancel),
                boot,
                sbom: true,
            };
            let mut artifacts =
                build::write_outputs(&req, &store, &images).map_err(|e| e.to_string())?;
            // Bootable outputs get their TPM measurement manifest.
            let paths = crate::engine::measure::output::measured_outputs(&formats, &dir, &name);
            let opts = crate::engine::measure::Options {
                banks: Vec::new(),
                spec_digest: Some(format!("sha256:{spec_digest}")),
            };
            for p in
                crate::engine::measure::output::measure_outputs(&paths, &opts, signer.as_deref())
                    .map_err(|e| e.to_string())?
            {
                artifacts.push(build::artifact_of(&p).map_err(|e| e.to_string())?);
            }
            let cas = home.join("artifacts").join("sha256");
            std::fs::create_dir_all(&cas).map_err(|e| format!("{}: {e}", cas.display()))?;
            let mut outputs = Vec::new();
            for a in artifacts {
                let file_name = a
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = artifact_path(&home, &a.sha256);
                if target.exists() {
                    let _ = std::fs::remove_file(&a.path);
                } else {
                    std::fs::rename(&a.path, &target)
                        .map_err(|e| format!("{}: {e}", target.display()))?;
                }
                outputs.push(Output {
                    media_type: media_type(&file_name).to_owned(),
                    name: file_name,
                    size: a.size,
                    sha256: a.sha256,
                });
            }
            Ok(outputs)
        })();
        // Its outputs were moved out (or it failed, or was cancelled):
        // leave nothing behind.
        let _ = std::fs::remove_dir_all(&dir);
        result
    });
    task.await
        .map_err(|e| format!("the build task failed: {e}"))?
}

/// The content type of an artifact, by its file name.
pub fn media_type(name: &str) -> &'static str {
    if name.ends_with("-measurements.json") {
        crate::engine::measure::manifest::PAYLOAD_TYPE
    } else if name.ends_with("-measurements.json.dsse") {
        "application/vnd.dsse.envelope.v1+json"
    } else if name.ends_with("-oci.tar") {
        "application/vnd.oci.image.layout.v1+tar"
    } else if name.ends_with(".tar") || name.ends_with(".docker") {
        "application/x-tar"
    } else if name.ends_with("-initrd.img") {
        "application/gzip"
    } else if name.ends_with("-cmdline") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}
