//! Builds: submit, list, get, cancel, the event stream (SSE, resumable with
//! `Last-Event-ID`) and the artifacts (Range, digest headers, types).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::{IntoParams, ToSchema};

use super::error::{list_limit, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::validate::{check_spec_size, invalid_spec};
use crate::engine::formats::format::Format;
use crate::engine::measure::bank::Bank;
use crate::engine::measure::manifest::Manifest;
use crate::service::auth::{Caller, Role};
use crate::service::db::{self, rfc3339, Row as DbRow};
use crate::service::jobs;
use crate::service::AppState;

/// What to build.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubmitBuild {
    /// The YAML text of the spec.
    pub spec: String,
    /// Output formats [default: `kernel+initrd`].
    #[serde(default)]
    pub formats: Vec<String>,
    /// Base name of the outputs [default: `kiln`].
    #[schema(
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
        min_length = 1,
        max_length = 64
    )]
    pub name: Option<String>,
    /// `amd64` or `arm64` [default: the server's].
    #[schema(pattern = "^(amd64|arm64)$")]
    pub arch: Option<String>,
    /// The team that owns the build [default: the caller's only team].
    pub team: Option<String>,
    /// Pull every image even when the store has it.
    #[serde(default)]
    pub pull: bool,
    /// Skip signature verification; allowed only when the server's and the
    /// team's trust policies both set `allow_disable_content_trust`. The
    /// build records that it was used.
    #[serde(default)]
    pub disable_content_trust: bool,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// One artifact of a build.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactInfo {
    pub name: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    pub media_type: String,
    /// Where to download it.
    pub url: String,
}

/// A signature that verified during a build.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifiedImage {
    /// The image as the spec names it.
    pub image: String,
    /// The manifest (or index) digest the signature covers.
    pub digest: String,
    /// `sha256:` fingerprint of the public key that verified it.
    pub key_fingerprint: String,
    /// The trust policy entry the key came from.
    pub trust_root: String,
}

/// A boot loader image a build used (the server's `efi_stub` or
/// `bios_loader`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BootLoaderImage {
    /// `efi-stub` or `bios-loader`.
    #[schema(pattern = "^(efi-stub|bios-loader)$")]
    pub role: String,
    /// The image as the server's configuration names it.
    pub image: String,
    /// The manifest (or index) digest it resolved to.
    pub digest: String,
    /// Its signature had to verify under the trust policies, and did (it
    /// is also in `verified`).
    pub verified: bool,
}

/// What content trust did for a build, once its images were checked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContentTrust {
    /// Verification was switched off with `disable_content_trust`.
    pub disabled: bool,
    /// Every image that had to verify, with the signature that did: the
    /// spec's, then the boot loader images.
    pub verified: Vec<VerifiedImage>,
    /// The boot loader images of bootable formats.
    #[serde(default)]
    pub boot_loaders: Vec<BootLoaderImage>,
}

/// The TPM measurement manifest of one bootable artifact (`uki`,
/// `raw-efi`), signed by the team's key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Measurements {
    /// The bootable artifact the manifest predicts PCRs for.
    pub artifact: String,
    /// The manifest artifact (`STEM-measurements.json`).
    pub manifest: String,
    pub manifest_url: String,
    /// Its DSSE envelope (`STEM-measurements.json.dsse`), signed with the
    /// key of `GET /api/v1/teams/{team}/keys`.
    pub envelope: Option<String>,
    pub envelope_url: Option<String>,
    /// The reference VM model PCRs 2–7 are predicted under.
    pub reference_model: String,
    /// The predicted PCR 11 (sha256 bank), lower-case hex: what
    /// `systemd-measure calculate` gives for the UKI.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub pcr11_sha256: Option<String>,
    /// The manifest itself (`docs/schemas/measurements.schema.json`): the
    /// predicted PCRs per bank with their events.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

/// A build and, once it succeeded, its artifacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Build {
    pub id: String,
    pub team: String,
    pub state: BuildState,
    pub name: String,
    pub formats: Vec<String>,
    pub arch: String,
    /// The user who submitted it.
    pub created_by: String,
    /// The spec digest, hex: SHA-256 of the validated spec as the metadata
    /// file writes it in YAML, as `kiln build` computes it (see
    /// docs/measurements.md).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub spec_digest: String,
    pub attempts: i64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Asked to skip signature verification.
    pub disable_content_trust: bool,
    /// Present once the images' signatures were checked (or skipped).
    pub content_trust: Option<ContentTrust>,
    pub artifacts: Vec<ArtifactInfo>,
    /// The measurement manifests of the bootable artifacts (only in `GET
    /// /api/v1/builds/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Vec<Measurements>>,
}

/// One server-sent event of a build's stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildEvent {
    /// Its number in the build's log; send it back as `Last-Event-ID`.
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    /// `state`, `log`, `plan`, `image`, `artifact` or (last) `end`.
    #[schema(pattern = "^(state|log|plan|image|artifact|end)$")]
    pub event: String,
    /// A JSON object: `state` (and `attempt` or `reason`), `message`, the
    /// plan's `images` (references, in spec order), a resolved image's
    /// `reference`, `digest` and `cached`, the artifact's `name`, `size`,
    /// `sha256` and `media_type`, or the end's `state`, `error` and
    /// `seconds`.
    pub data: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BuildList {
    pub builds: Vec<Build>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactList {
    pub artifacts: Vec<ArtifactInfo>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this team's builds.
    pub team: Option<String>,
    /// Only builds in this state.
    #[param(pattern = "^(queued|running|succeeded|failed|cancelled)$")]
    pub state: Option<String>,
    /// At most this many, newest first (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// Start after this event number (as `Last-Event-ID`).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

const COLUMNS: &str = "id, team, state, name, formats, arch, created_by, spec_digest, attempts, \
                       error, created_at, started_at, finished_at, disable_content_trust, \
                       content_trust";

fn state_of(s: &str) -> BuildState {
    match s {
        "queued" => BuildState::Queued,
        "running" => BuildState::Running,
        "succeeded" => BuildState::Succeeded,
        "failed" => BuildState::Failed,
        _ => BuildState::Cancelled,
    }
}

fn build_of(r: &DbRow) -> Build {
    Build {
        id: r.get(0),
        team: r.get(1),
        state: state_of(r.get(2)),
        name: r.get(3),
        formats: serde_json::from_str(r.get::<&str, _>(4)).unwrap_or_default(),
        arch: r.get(5),
        created_by: r.get(6),
        spec_digest: r.get(7),
        attempts: r.get(8),
        error: r.get(9),
        created_at: rfc3339(r.get(10)),
        started_at: r.get::<Option<i64>, _>(11).map(rfc3339),
        finished_at: r.get::<Option<i64>, _>(12).map(rfc3339),
        disable_content_trust: r.get::<i64, _>(13) != 0,
        content_trust: r
            .get::<Option<&str>, _>(14)
            .and_then(|t| serde_json::from_str(t).ok()),
        artifacts: Vec::new(),
        measurements: None,
    }
}

/// The build `id` if the caller sees its team; 404 otherwise.
async fn visible(app: &AppState, caller: &Caller, id: &str) -> Result<Build, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM builds WHERE id = $1"))
        .bind(id)
        .fetch_optional(&app.db)
        .await?
        .ok_or_else(|| ApiError::not_found("build"))?;
    let build = build_of(&row);
    if !caller.sees(&build.team) {
        return Err(ApiError::not_found("build"));
    }
    Ok(build)
}

async fn artifact_rows(app: &AppState, id: &str) -> Result<Vec<ArtifactInfo>, ApiError> {
    Ok(jobs::artifacts_of(app, id)
        .await?
        .into_iter()
        .map(|o| ArtifactInfo {
            url: format!("/api/v1/builds/{id}/artifacts/{}", o.name),
            name: o.name,
            size: o.size,
            sha256: o.sha256,
            media_type: o.media_type,
        })
        .collect())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// Submit a build
///
/// The spec is validated first (422 with the diagnostics when it has
/// errors); the build is then queued and runs on the server's worker pool.
#[utoipa::path(
    post, path = "/api/v1/builds", tag = "builds",
    request_body = SubmitBuild,
    responses(
        (status = 202, description = "Queued", body = Build),
        (status = 400, description = "Bad formats, name, arch or team, or a bootable format the server has no boot loader image for", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "The role cannot build", body = ErrorBody),
        (status = 404, description = "No such team", body = ErrorBody),
        (status = 413, description = "Spec too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The spec has errors", body = ErrorBody),
        (status = 429, description = "The team has too many active builds", body = ErrorBody),
    )
)]
pub async fn submit(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SubmitBuild>,
) -> Result<Response, ApiError> {
    let team = match &req.team {
        Some(t) => t.clone(),
        None => match caller.teams.as_slice() {
            [(t, _)] => t.clone(),
            [] => return Err(ApiError::forbidden("you belong to no team")),
            _ => {
                return Err(ApiError::bad_request(
                    "you belong to several teams; say which with `team`",
                ))
            }
        },
    };
    caller.require(&team, Role::Builder)?;
    check_spec_size(&app, &req.spec)?;
    let v = kiln_shared::validate(&req.spec);
    if v.spec.is_none() {
        return Err(invalid_spec(&v.diagnostics));
    }
    let spec = jobs::service_spec(&req.spec)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported-spec", e))?;
    let parsed = Format::parse_list(&req.formats, false)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    jobs::boot_loader_names(&app.cfg, &parsed).map_err(ApiError::bad_request)?;
    let formats: Vec<String> = parsed.iter().map(|f| f.name().to_owned()).collect();
    let name = req.name.clone().unwrap_or_else(|| "kiln".to_owned());
    if !valid_name(&name) {
        return Err(ApiError::bad_request(
            "`name` must be 1-64 letters, digits, `-`, `_` or `.`, not starting with `.`",
        ));
    }
    let arch = match req.arch.as_deref() {
        None => crate::engine::store::Platform::host().architecture,
        Some(a @ ("amd64" | "arm64")) => a.to_owned(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported arch `{other}`; use amd64 or arm64"
            )))
        }
    };
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM builds WHERE team = $1 AND state IN ('queued', 'running')",
    )
    .bind(&team)
    .fetch_one(&app.db)
    .await?;
    if active >= app.cfg.max_active_builds_per_team {
        return Err(ApiError::too_many(
            format!(
                "team `{team}` has {active} builds queued or running; the limit is {}",
                app.cfg.max_active_builds_per_team
            ),
            10,
        ));
    }
    if req.disable_content_trust {
        let policy = jobs::team_trust_policy(&app, &team)
            .await
            .map_err(ApiError::bad_request)?;
        if !policy.allow_disable_content_trust {
            return Err(ApiError::bad_request(
                "disable_content_trust is not permitted: the server's and the team's trust policies must both set `allow_disable_content_trust = true`",
            ));
        }
    }
    let id = db::new_id();
    let digest = crate::engine::build::spec_digest(&spec);
    sqlx::query(
        "INSERT INTO builds (id, team, created_by, state, spec, spec_digest, formats, name, arch, \
         pull, disable_content_trust, created_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&id)
    .bind(&team)
    .bind(&caller.user_name)
    .bind(&req.spec)
    .bind(&digest)
    .bind(serde_json::to_string(&formats).unwrap())
    .bind(&name)
    .bind(&arch)
    .bind(req.pull as i64)
    .bind(req.disable_content_trust as i64)
    .bind(db::now())
    .execute(&app.db)
    .await?;
    jobs::event(&app, &id, "state", serde_json::json!({ "state": "queued" })).await;
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&team),
        "build.submit",
        Some(&id),
        serde_json::json!({
            "formats": formats,
            "spec_digest": digest,
            "disable_content_trust": req.disable_content_trust,
        }),
    )
    .await;
    app.jobs.queued();
    let build = visible(&app, &caller, &id).await?;
    let mut r = (StatusCode::ACCEPTED, Json(build)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/builds/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// List builds
///
/// The builds of the caller's teams, newest first.
#[utoipa::path(
    get, path = "/api/v1/builds", tag = "builds", params(ListQuery),
    responses(
        (status = 200, body = BuildList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<BuildList>, ApiError> {
    let limit = list_limit(q.limit, 50, 200)?;
    if let Some(s) = &q.state {
        if !["queued", "running", "succeeded", "failed", "cancelled"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!("no build state `{s}`")));
        }
    }
    let teams = caller.listed_teams(q.team.as_deref());
    if teams.is_empty() {
        return Ok(Json(BuildList { builds: Vec::new() }));
    }
    let mut sql = format!(
        "SELECT {COLUMNS} FROM builds WHERE team IN ({})",
        db::placeholders(1, teams.len())
    );
    let mut next = teams.len() + 1;
    if q.state.is_some() {
        sql.push_str(&format!(" AND state = ${next}"));
        next += 1;
    }
    sql.push_str(&format!(" ORDER BY created_at DESC, id LIMIT ${next}"));
    let mut query = sqlx::query(&sql);
    for t in &teams {
        query = query.bind(t);
    }
    if let Some(s) = &q.state {
        query = query.bind(s);
    }
    let rows = query.bind(limit).fetch_all(&app.db).await?;
    Ok(Json(BuildList {
        builds: rows.iter().map(build_of).collect(),
    }))
}

/// Get a build
#[utoipa::path(
    get, path = "/api/v1/builds/{id}", tag = "builds",
    params(("id" = String, Path, description = "Build id")),
    responses(
        (status = 200, body = Build),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn get_build(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Build>, ApiError> {
    let mut build = visible(&app, &caller, &id).await?;
    build.artifacts = artifact_rows(&app, &id).await?;
    build.measurements = Some(measurements(&app, &build.artifacts).await?);
    Ok(Json(build))
}

/// The manifests among `artifacts`, read from the artifact store.
async fn measurements(
    app: &AppState,
    artifacts: &[ArtifactInfo],
) -> Result<Vec<Measurements>, ApiError> {
    let mut out = Vec::new();
    for a in artifacts {
        if !a.name.ends_with("-measurements.json") {
            continue;
        }
        let path = jobs::artifact_path(&app.cfg.home, &a.sha256);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| ApiError::internal(format!("{}: {e}", a.name)))?;
        let manifest =
            Manifest::parse(&bytes).map_err(|e| ApiError::internal(format!("{}: {e}", a.name)))?;
        let document = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("{}: {e}", a.name)))?;
        let envelope = artifacts
            .iter()
            .find(|e| e.name == format!("{}.dsse", a.name));
        out.push(Measurements {
            artifact: manifest.artifact.name.clone(),
            manifest: a.name.clone(),
            manifest_url: a.url.clone(),
            envelope: envelope.map(|e| e.name.clone()),
            envelope_url: envelope.map(|e| e.url.clone()),
            reference_model: manifest.reference_model.name.clone(),
            pcr11_sha256: manifest
                .pcr(11)
                .and_then(|p| p.values.get(Bank::Sha256))
                .map(hex::encode),
            document,
        });
    }
    Ok(out)
}

/// Cancel a build
///
/// A queued build is cancelled at once; a running one is stopped and its
/// work directory removed.
#[utoipa::path(
    post, path = "/api/v1/builds/{id}/cancel", tag = "builds",
    params(("id" = String, Path, description = "Build id")),
    responses(
        (status = 202, description = "Cancelled or being cancelled", body = Build),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The role cannot cancel", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The build already ended", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Build>), ApiError> {
    let build = visible(&app, &caller, &id).await?;
    caller.require(&build.team, Role::Builder)?;
    let queued = sqlx::query(
        "UPDATE builds SET state = 'cancelled', error = 'cancelled by request', finished_at = $1 \
         WHERE id = $2 AND state = 'queued'",
    )
    .bind(db::now())
    .bind(&id)
    .execute(&app.db)
    .await?;
    if queued.rows_affected() == 1 {
        jobs::event(
            &app,
            &id,
            "end",
            serde_json::json!({ "state": "cancelled", "error": "cancelled by request" }),
        )
        .await;
    } else {
        let running = sqlx::query(
            "UPDATE builds SET cancel_requested = 1 WHERE id = $1 AND state = 'running'",
        )
        .bind(&id)
        .execute(&app.db)
        .await?;
        if running.rows_affected() == 0 {
            return Err(ApiError::conflict("the build has already ended"));
        }
        app.jobs.signal_cancel(&id);
    }
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&build.team),
        "build.cancel",
        Some(&id),
        serde_json::json!({}),
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(visible(&app, &caller, &id).await?),
    ))
}

struct Stream {
    app: AppState,
    id: String,
    last: i64,
    buf: VecDeque<(i64, String, String)>,
    rx: tokio::sync::watch::Receiver<u64>,
    done: bool,
    idle_terminal: u32,
}

async fn next_event(mut st: Stream) -> Option<(Result<Event, Infallible>, Stream)> {
    loop {
        if let Some((seq, kind, data)) = st.buf.pop_front() {
            st.last = seq;
            if kind == "end" {
                st.done = true;
            }
            let ev = Event::default().id(seq.to_string()).event(kind).data(data);
            return Some((Ok(ev), st));
        }
        if st.done {
            return None;
        }
        st.rx.mark_unchanged();
        let rows = sqlx::query(
            "SELECT seq, kind, data FROM build_events WHERE build_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT 256",
        )
        .bind(&st.id)
        .bind(st.last)
        .fetch_all(&st.app.db)
        .await
        .ok()?;
        if !rows.is_empty() {
            st.buf
                .extend(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))));
            continue;
        }
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM builds WHERE id = $1")
            .bind(&st.id)
            .fetch_optional(&st.app.db)
            .await
            .ok()?;
        match state.as_deref() {
            None => return None,
            Some("queued" | "running") => st.idle_terminal = 0,
            Some(_) => {
                // Ended, but its `end` event is not there: give the writer
                // a moment, then stop rather than hang.
                st.idle_terminal += 1;
                if st.idle_terminal > 5 {
                    return None;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), st.rx.changed()).await;
    }
}

/// Follow a build
///
/// Server-Sent Events: `state`, `log`, `plan` (the images to resolve),
/// `image` (one resolved: reference, digest, cached), `artifact` and a final
/// `end` event, each with a numbered `id`. A client that reconnects with `Last-Event-ID`
/// (or `?after=`) gets the events after that number. Each `data` is JSON.
#[utoipa::path(
    get, path = "/api/v1/builds/{id}/events", tag = "builds",
    params(("id" = String, Path, description = "Build id"), EventsQuery,
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses(
        (status = 200, description = "An event stream; each event as described", content_type = "text/event-stream", body = BuildEvent),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn events(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    visible(&app, &caller, &id).await?;
    if q.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request(
            "`after` is an event number, 0 or more",
        ));
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after)
        .unwrap_or(0)
        .max(0);
    let st = Stream {
        rx: app.jobs.subscribe(),
        app,
        id,
        last,
        buf: VecDeque::new(),
        done: false,
        idle_terminal: 0,
    };
    let stream = futures_util::stream::unfold(st, next_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// List a build's artifacts
#[utoipa::path(
    get, path = "/api/v1/builds/{id}/artifacts", tag = "builds",
    params(("id" = String, Path, description = "Build id")),
    responses(
        (status = 200, body = ArtifactList),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn artifacts(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ArtifactList>, ApiError> {
    visible(&app, &caller, &id).await?;
    Ok(Json(ArtifactList {
        artifacts: artifact_rows(&app, &id).await?,
    }))
}

/// Parses a single `bytes=` range against `len`: `Ok(None)` for no (or an
/// unsupported multi-) range, `Err` when unsatisfiable.
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

/// Download an artifact
///
/// Supports a single `Range`. `Repr-Digest` (RFC 9530) and `ETag` carry the
/// SHA-256 of the whole artifact.
#[utoipa::path(
    get, path = "/api/v1/builds/{id}/artifacts/{name}", tag = "builds",
    params(("id" = String, Path, description = "Build id"),
           ("name" = String, Path, description = "Artifact name"),
           ("Range" = Option<String>, Header, description = "`bytes=START-END`")),
    responses(
        (status = 200, description = "The artifact", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "Part of it", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 416, description = "Range not satisfiable", body = ErrorBody),
    )
)]
pub async fn download(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath((id, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    visible(&app, &caller, &id).await?;
    let row = sqlx::query(
        "SELECT size, sha256, media_type FROM artifacts WHERE build_id = $1 AND name = $2",
    )
    .bind(&id)
    .bind(&name)
    .fetch_optional(&app.db)
    .await?
    .ok_or_else(|| ApiError::not_found("artifact"))?;
    let (len, sha, media): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    let len = len as u64;
    let path = jobs::artifact_path(&app.cfg.home, &sha);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(v) => match parse_range(v, len) {
            Ok(r) => r,
            Err(()) => {
                let mut e = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range-not-satisfiable",
                    format!("the artifact has {len} bytes"),
                )
                .into_response();
                e.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}")).unwrap(),
                );
                return Ok(e);
            }
        },
    };
    let (start, count, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, len, StatusCode::OK),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    }
    let body = futures_util::stream::unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(64 * 1024) as usize];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (file, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    let digest =
        base64::engine::general_purpose::STANDARD.encode(hex::decode(&sha).unwrap_or_default());
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let mut set = |k: header::HeaderName, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(header::CONTENT_TYPE, media);
    set(header::CONTENT_LENGTH, count.to_string());
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::ETAG, format!("\"sha256:{sha}\""));
    set(
        header::HeaderName::from_static("repr-digest"),
        format!("sha-256=:{digest}:"),
    );
    set(
        header::HeaderName::from_static("x-kiln-sha256"),
        sha.clone(),
    );
    set(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{name}\""),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    Ok(r)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/builds", post(submit).get(list))
        .route("/builds/{id}", get(get_build))
        .route("/builds/{id}/cancel", post(cancel))
        .route("/builds/{id}/events", get(events))
        .route("/builds/{id}/artifacts", get(artifacts))
        .route("/builds/{id}/artifacts/{name}", get(download))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-1", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }
}
