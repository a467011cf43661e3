//! Build jobs: the queue is the `builds` table. A bounded pool of workers
//! claims queued rows with one atomic `UPDATE … RETURNING` (on PostgreSQL
//! with `FOR UPDATE SKIP LOCKED`, so worker processes never wait on each
//! other), runs the same engine calls as `kiln build`, records progress as
//! numbered events (what the SSE stream replays, from any process), and
//! stores artifacts content-addressed.
//!
//! Restart safety: every process looks for builds whose worker is dead and
//! queues them again while they have attempts left, else fails them with
//! the reason. A worker is dead when it is on this host and its process is
//! gone (found at once after a restart), or when its heartbeat is older than
//! `heartbeat_timeout_secs` (any host). Identical builds running at once in
//! one process (same spec, formats, name, platform and image digests) share
//! one execution, singleflight-style. Content trust is checked per build,
//! before the shared execution.

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
            worker_id: format!(
                "{}:{}:{}",
                hostname(),
                std::process::id(),
                db::random_hex(4)
            ),
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

/// Appends an event to a build's log. Two processes may append to one
/// build at once (the API cancelling, a worker reporting): on PostgreSQL
/// both can pick the same `seq`, and the loser tries again.
pub async fn event(app: &AppState, build_id: &str, kind: &str, data: serde_json::Value) {
    let data = data.to_string();
    let mut tries = 0;
    let r = loop {
        let r = sqlx::query(
            "INSERT INTO build_events (build_id, seq, kind, data, at) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM build_events WHERE build_id = $1",
        )
        .bind(build_id)
        .bind(kind)
        .bind(&data)
        .bind(db::now())
        .execute(&app.db)
        .await;
        tries += 1;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && tries < 5 => continue,
            r => break r,
        }
    };
    if let Err(e) = r {
        eprintln!("kiln serve: build {build_id}: cannot record an event: {e}");
    }
    app.jobs.events.send_modify(|n| *n += 1);
}

async fn log(app: &AppState, build_id: &str, message: impl Into<String>) {
    event(app, build_id, "log", json!({ "message": message.into() })).await;
}

/// This machine's name, as worker ids carry it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether the worker that claimed a build is gone: a process of this host
/// that no longer exists, or any worker silent for longer than `timeout`.
/// `this_worker` is the caller's own id, whose host part names this host.
fn worker_is_dead(
    worker: Option<&str>,
    heartbeat_at: Option<i64>,
    now: i64,
    timeout: i64,
    this_worker: &str,
) -> bool {
    if heartbeat_at.is_none_or(|at| now - at > timeout) {
        return true;
    }
    let Some((host, rest)) = worker.and_then(|w| w.split_once(':')) else {
        return true;
    };
    let this_host = this_worker.split(':').next().unwrap_or_default();
    let pid = rest.split(':').next().unwrap_or("");
    host == this_host && pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
}

/// Builds whose worker died: queued again while attempts remain, failed
/// with the reason otherwise. Safe to run from every process at any time:
/// each change is conditional on the row still being `running`.
pub async fn recover(app: &AppState) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, attempts, worker, heartbeat_at FROM builds WHERE state = 'running'",
    )
    .fetch_all(&app.db)
    .await?;
    let now = db::now();
    let max = app.cfg.max_attempts;
    let mut recovered = 0;
    for row in &rows {
        let id: String = row.get(0);
        let attempts: i64 = row.get(1);
        let worker: Option<String> = row.get(2);
        let heartbeat_at: Option<i64> = row.get(3);
        if !worker_is_dead(
            worker.as_deref(),
            heartbeat_at,
            now,
            app.cfg.heartbeat_timeout_secs,
            &app.jobs.worker_id,
        ) {
            continue;
        }
        let reason = format!("the process running the build stopped (attempt {attempts} of {max})");
        let (done, kind, data) = if attempts < max {
            let done = sqlx::query(
                "UPDATE builds SET state = 'queued', worker = NULL, heartbeat_at = NULL \
                 WHERE id = $1 AND state = 'running' AND worker IS NOT DISTINCT FROM $2",
            )
            .bind(&id)
            .bind(&worker)
            .execute(&app.db)
            .await?;
            let data = json!({ "state": "queued", "reason": format!("{reason}; retrying") });
            (done, "state", data)
        } else {
            let done = sqlx::query(
                "UPDATE builds SET state = 'failed', error = $1, finished_at = $2, worker = NULL \
                 WHERE id = $3 AND state = 'running' AND worker IS NOT DISTINCT FROM $4",
            )
            .bind(&reason)
            .bind(now)
            .bind(&id)
            .bind(&worker)
            .execute(&app.db)
            .await?;
            (done, "end", json!({ "state": "failed", "error": reason }))
        };
        if done.rows_affected() == 1 {
            recovered += 1;
            sqlx::query("DELETE FROM flights WHERE build_id = $1")
                .bind(&id)
                .execute(&app.db)
                .await?;
            event(app, &id, kind, data).await;
            let _ = std::fs::remove_dir_all(work_dir(&app.cfg.home, &id));
        }
    }
    if recovered > 0 {
        app.jobs.queued();
    }
    Ok(recovered)
}

/// Looks for builds of dead workers every few seconds.
pub fn spawn_recovery(app: &AppState) -> tokio::task::JoinHandle<()> {
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if app.jobs.stopping.load(Ordering::SeqCst) {
                return;
            }
            match recover(&app).await {
                Ok(0) => {}
                Ok(n) => {
                    eprintln!("kiln serve: {n} build(s) of a stopped worker retried or failed")
                }
                Err(e) => eprintln!("kiln serve: looking for builds of stopped workers: {e}"),
            }
        }
    })
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
    // SQLite has one writer at a time, so the subquery cannot race; on
    // PostgreSQL, SKIP LOCKED lets concurrent claims pass each other.
    let lock = match app.backend {
        db::Backend::Sqlite => "",
        db::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "UPDATE builds SET state = 'running', attempts = attempts + 1, started_at = $1, \
         heartbeat_at = $2, worker = $3 \
         WHERE id = (SELECT id FROM builds WHERE state = 'queued' ORDER BY created_at, id \
                     LIMIT 1{lock}) \
           AND state = 'queued' \
         RETURNING id, spec, spec_digest, formats, name, arch, pull, attempts, team, \
           disable_content_trust"
    );
    let row = sqlx::query(&sql)
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

    // Heartbeat every 2 s, and cancel requests made through another process
    // (an API process or another server) looked up four times a second.
    let beat = {
        let app = app.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            for tick in 1u64.. {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let r = if tick % 8 == 0 {
                    sqlx::query(
                        "UPDATE builds SET heartbeat_at = $1 WHERE id = $2 \
                         RETURNING cancel_requested",
                    )
                    .bind(db::now())
                    .bind(&id)
                    .fetch_optional(&app.db)
                    .await
                } else {
                    sqlx::query("SELECT cancel_requested FROM builds WHERE id = $1")
                        .bind(&id)
                        .fetch_optional(&app.db)
                        .await
                };
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
                    "INSERT INTO artifacts (build_id, name, size, sha256, media_type) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (build_id, name) DO UPDATE \
                     SET size = excluded.size, sha256 = excluded.sha256, \
                         media_type = excluded.media_type",
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
            "UPDATE builds SET state = $1, error = $2, finished_at = $3, worker = NULL \
             WHERE id = $4 AND state = 'running'",
        )
        .bind(state)
        .bind(&error)
        .bind(db::now())
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
        // Followers in other processes now find the build ended.
        sqlx::query("DELETE FROM flights WHERE build_id = $1")
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
    let stored: Option<String> = sqlx::query_scalar("SELECT policy FROM policies WHERE team = $1")
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
    sqlx::query("UPDATE builds SET content_trust = $1 WHERE id = $2")
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
    sqlx::query("UPDATE builds SET images = $1 WHERE id = $2")
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
            across_processes(
                app,
                job,
                &key,
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
                ),
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

/// Singleflight between processes: the build that inserts the flight row
/// for `key` writes; a build finding another's row waits for that build to
/// end, and takes its artifacts when it succeeded (their bytes are already
/// in the shared artifact store). When the leader fails, is cancelled or
/// dies, a waiter leads instead.
async fn across_processes(
    app: &AppState,
    job: &Job,
    key: &str,
    write: impl std::future::Future<Output = Result<Vec<Output>, String>>,
) -> Result<Vec<Output>, String> {
    let db_error = |e: sqlx::Error| format!("the build queue's database: {e}");
    let mut announced = None;
    loop {
        let led = sqlx::query(
            "INSERT INTO flights (key, build_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(&job.id)
        .bind(db::now())
        .execute(&app.db)
        .await
        .map_err(db_error)?;
        if led.rows_affected() == 1 {
            return write.await;
        }
        let leader: Option<String> =
            sqlx::query_scalar("SELECT build_id FROM flights WHERE key = $1")
                .bind(key)
                .fetch_optional(&app.db)
                .await
                .map_err(db_error)?;
        let Some(leader) = leader else {
            continue;
        };
        if leader == job.id {
            // Left by this build's own earlier attempt.
            leave_flight(app, key, &leader).await.map_err(db_error)?;
            continue;
        }
        if announced.as_ref() != Some(&leader) {
            log(
                app,
                &job.id,
                format!(
                    "an identical build ({leader}) runs in another process; waiting for its result"
                ),
            )
            .await;
            announced = Some(leader.clone());
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM builds WHERE id = $1")
                    .bind(&leader)
                    .fetch_optional(&app.db)
                    .await
                    .map_err(db_error)?;
            match state.as_deref() {
                Some("succeeded") => return artifacts_of(app, &leader).await.map_err(db_error),
                Some("running") => continue,
                // Failed, cancelled, or queued again after its worker died:
                // its row (if any is left) no longer stands for a write.
                _ => {
                    leave_flight(app, key, &leader).await.map_err(db_error)?;
                    break;
                }
            }
        }
    }
}

/// Drops `build_id`'s claim on the flight `key`, if it still holds it.
async fn leave_flight(app: &AppState, key: &str, build_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM flights WHERE key = $1 AND build_id = $2")
        .bind(key)
        .bind(build_id)
        .execute(&app.db)
        .await
        .map(drop)
}

/// The artifacts a finished build recorded, by name.
pub async fn artifacts_of(app: &AppState, build_id: &str) -> Result<Vec<Output>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, size, sha256, media_type FROM artifacts WHERE build_id = $1 ORDER BY name",
    )
    .bind(build_id)
    .fetch_all(&app.db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Output {
            name: r.get(0),
            size: r.get::<i64, _>(1) as u64,
            sha256: r.get(2),
            media_type: r.get(3),
        })
        .collect())
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
/// an EFI disk): they are signed as `NAME-measurements.json.dsse` with the
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
