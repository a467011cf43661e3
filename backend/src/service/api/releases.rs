//! Signed releases: publishing a succeeded build to a registry with the
//! team's key, the team's release list, verifying a release from the
//! registry alone, and the team's public signing keys.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::error::{list_limit, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::engine::publish::{self, PublishError};
use crate::engine::reference::Reference;
use crate::service::auth::{Caller, Role};
use crate::service::db::{self, rfc3339, Row as DbRow};
use crate::service::keys::{self, TeamSigner};
use crate::service::release::{self, ReleaseError};
use crate::service::{jobs, AppState};

/// Where to publish a build.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PublishRequest {
    /// `REGISTRY/REPO:TAG`; the tag must not be in use by another release.
    #[schema(min_length = 1, max_length = 512)]
    pub to: String,
}

/// The last verification of a release.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verification {
    /// Every check passed.
    Verified,
    /// A check failed; see `checks`.
    Failed,
    /// Not checked yet.
    Unverified,
}

/// One thing `verify` checked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    /// `manifest`, `signature`, `SBOM`, `layer NAME`, ...
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// A build published as a signed release.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReleaseInfo {
    pub id: String,
    pub team: String,
    pub build_id: String,
    /// The build's output name.
    pub name: String,
    /// `REGISTRY/REPO:TAG`.
    pub reference: String,
    /// `REGISTRY/REPO`.
    pub repository: String,
    pub tag: String,
    /// The artifact manifest's digest.
    pub digest: String,
    /// Size of the artifact manifest.
    pub size: u64,
    /// `sha256:` fingerprint of the key that signed it.
    pub key_fingerprint: String,
    /// The attestations attached as referrers: kind and manifest digest.
    pub referrers: Vec<Referrer>,
    pub published_by: String,
    pub published_at: String,
    pub verification: Verification,
    pub verified_at: Option<String>,
    /// Commands that check the release without kiln's service.
    pub verify_commands: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Referrer {
    pub kind: String,
    pub digest: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseList {
    pub releases: Vec<ReleaseInfo>,
}

/// What verifying a release found.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReport {
    pub release: ReleaseInfo,
    pub ok: bool,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReleaseQuery {
    /// Only this team's releases.
    pub team: Option<String>,
    /// At most this many, newest first (1-200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// A public signing key of a team.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamKey {
    /// `sha256:` of the SubjectPublicKeyInfo DER, as cosign and openssl
    /// compute it.
    pub fingerprint: String,
    /// The public key, PEM (save it as `team.pub`).
    pub pem: String,
    pub algorithm: String,
    /// `team` (a key the service keeps for the team) or `signer-daemon`.
    pub source: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamKeyList {
    pub keys: Vec<TeamKey>,
}

const COLUMNS: &str = "id, team, build_id, name, reference, repository, tag, digest, size, \
                       key_fingerprint, referrers, published_by, published_at, verification, \
                       verified_at";

fn verification_of(s: &str) -> Verification {
    match s {
        "verified" => Verification::Verified,
        "failed" => Verification::Failed,
        _ => Verification::Unverified,
    }
}

/// The commands that check `reference` (pinned to `digest`) with the
/// team's public key saved as `team.pub`.
pub fn verify_commands(reference: &str, repository: &str, digest: &str) -> Vec<String> {
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    vec![
        format!("kiln verify-release --key team.pub {reference}"),
        format!("cosign verify --key team.pub --insecure-ignore-tlog=true {repository}@{digest}"),
        format!(
            "# without cosign: the signature is layer 0 of {repository}:{sig_tag}; \
             save the layer as payload.json and its dev.cosignproject.cosign/signature \
             annotation, base64-decoded, as payload.sig, then: \
             openssl dgst -sha256 -verify team.pub -signature payload.sig payload.json"
        ),
    ]
}

fn release_of(r: &DbRow) -> ReleaseInfo {
    let reference: String = r.get(4);
    let repository: String = r.get(5);
    let digest: String = r.get(7);
    ReleaseInfo {
        id: r.get(0),
        team: r.get(1),
        build_id: r.get(2),
        name: r.get(3),
        verify_commands: verify_commands(&reference, &repository, &digest),
        reference,
        repository,
        tag: r.get(6),
        digest,
        size: r.get::<i64, _>(8) as u64,
        key_fingerprint: r.get(9),
        referrers: serde_json::from_str(r.get::<&str, _>(10)).unwrap_or_default(),
        published_by: r.get(11),
        published_at: rfc3339(r.get(12)),
        verification: verification_of(r.get(13)),
        verified_at: r.get::<Option<i64>, _>(14).map(rfc3339),
    }
}

/// The release `id` if the caller sees its team; 404 otherwise.
async fn visible(app: &AppState, caller: &Caller, id: &str) -> Result<ReleaseInfo, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM releases WHERE id = $1"))
        .bind(id)
        .fetch_optional(&app.db)
        .await?
        .ok_or_else(|| ApiError::not_found("release"))?;
    let release = release_of(&row);
    if !caller.sees(&release.team) {
        return Err(ApiError::not_found("release"));
    }
    Ok(release)
}

async fn by_reference(app: &AppState, reference: &str) -> Result<Option<ReleaseInfo>, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM releases WHERE reference = $1"
    ))
    .bind(reference)
    .fetch_optional(&app.db)
    .await?;
    Ok(row.as_ref().map(release_of))
}

async fn signer_of(app: &AppState, team: &str, actor: &str) -> Result<TeamSigner, ApiError> {
    let cfg = app.cfg.clone();
    let t = team.to_owned();
    let signer = tokio::task::spawn_blocking(move || keys::team_signer(&cfg, &t))
        .await
        .map_err(|e| ApiError::internal(format!("the key task failed: {e}")))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "signer-unavailable",
                format!("the team's signing key is not available: {e}"),
            )
        })?;
    if signer.created {
        db::audit(
            &app.db,
            Some(actor),
            Some(team),
            "key.generate",
            Some(signer.signer.public_key().fingerprint()),
            serde_json::json!({ "algorithm": "ecdsa-p256" }),
        )
        .await;
    }
    Ok(signer)
}

fn release_error(e: ReleaseError) -> ApiError {
    match e {
        ReleaseError::Internal(m) => ApiError::internal(m),
        other => ApiError::conflict(other.to_string()).with_code("not-publishable"),
    }
}

fn taken(reference: &str, existing: &str) -> ApiError {
    ApiError::conflict(format!(
        "{reference} is already published as {existing}; kiln never moves a published tag, so publish this build under a new tag"
    ))
    .with_code("tag-taken")
    .with_details(serde_json::json!({ "reference": reference, "digest": existing }))
}

fn located(status: StatusCode, release: ReleaseInfo) -> Response {
    let location = format!("/api/v1/releases/{}", release.id);
    let mut r = (status, Json(release)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Publish a build as a signed release
///
/// Pushes the build's artifacts to `to` as one OCI artifact (a layer per
/// artifact), signs it with the team's key, and attaches its SBOM, SLSA
/// provenance and measurement manifests as signed referrers; the tag moves
/// only once all of that verifies. Publishing the same build to the same
/// tag again returns the existing release (200); a tag that already names
/// another release is refused (409).
#[utoipa::path(
    post, path = "/api/v1/builds/{id}/publish", tag = "releases",
    params(("id" = String, Path, description = "Build id")),
    request_body = PublishRequest,
    responses(
        (status = 200, description = "Already published there", body = ReleaseInfo),
        (status = 201, description = "Published", body = ReleaseInfo),
        (status = 400, description = "Bad target reference", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Needs the publisher role", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The build cannot be published, or the tag is taken", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 502, description = "The registry failed", body = ErrorBody),
        (status = 503, description = "The signer is unavailable", body = ErrorBody),
    )
)]
pub async fn publish_build(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> Result<Response, ApiError> {
    let team = sqlx::query_scalar::<_, String>("SELECT team FROM builds WHERE id = $1")
        .bind(&id)
        .fetch_optional(&app.db)
        .await?
        .filter(|t| caller.sees(t))
        .ok_or_else(|| ApiError::not_found("build"))?;
    caller.require(&team, Role::Publisher)?;
    let target = Reference::parse(req.to.trim())
        .map_err(|e| ApiError::bad_request(format!("`to` {}: {e}", req.to)))?;
    let Some(tag) = target.tag().map(str::to_owned) else {
        return Err(ApiError::bad_request("`to` needs a tag: REGISTRY/REPO:TAG"));
    };
    if target.digest().is_some() {
        return Err(ApiError::bad_request(
            "`to` names a tag to publish to, without a digest",
        ));
    }
    let repository = format!("{}/{}", target.registry(), target.repository());
    let reference = format!("{repository}:{tag}");

    let existing = by_reference(&app, &reference).await?;
    if let Some(r) = &existing {
        if r.build_id == id {
            return Ok(located(StatusCode::OK, own(&caller, r.clone())?));
        }
    }
    let rel = release::of_build(&app, &id).await.map_err(release_error)?;
    if let Some(r) = existing {
        let (manifest, _) = publish::artifact_manifest(&rel);
        if publish::sha256_digest(&manifest) == r.digest {
            return Ok(located(StatusCode::OK, own(&caller, r.clone())?));
        }
        return Err(taken(&reference, &r.digest));
    }

    let signer = signer_of(&app, &team, &caller.user_name).await?;
    let config = jobs::registry_config(&app);
    let log_prefix = format!("kiln serve: publishing build {id} to {reference}");
    let published = publish::publish(&rel, &target, &config, signer.signer.as_ref(), &|line| {
        eprintln!("{log_prefix}: {line}")
    })
    .await
    .map_err(|e| match e {
        PublishError::TagTaken { tag, existing } => taken(&tag, &existing),
        PublishError::NoTag(m) => ApiError::bad_request(m),
        PublishError::Sign(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "signer-unavailable",
            format!("signing failed: {m}"),
        ),
        other => ApiError::new(StatusCode::BAD_GATEWAY, "registry", other.to_string()),
    })?;

    let release_id = db::new_id();
    let now = db::now();
    let referrers: Vec<Referrer> = published
        .referrers
        .iter()
        .map(|(kind, digest)| Referrer {
            kind: kind.clone(),
            digest: digest.clone(),
        })
        .collect();
    let fingerprint = signer.signer.public_key().fingerprint().to_owned();
    let inserted = sqlx::query(
        "INSERT INTO releases (id, team, build_id, name, reference, repository, tag, digest, \
         size, key_fingerprint, referrers, published_by, published_at, verification, verified_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'verified', $14) \
         ON CONFLICT (reference) DO NOTHING",
    )
    .bind(&release_id)
    .bind(&team)
    .bind(&id)
    .bind(&rel.name)
    .bind(&reference)
    .bind(&repository)
    .bind(&tag)
    .bind(&published.digest)
    .bind(published.size as i64)
    .bind(&fingerprint)
    .bind(serde_json::to_string(&referrers).unwrap_or_default())
    .bind(&caller.user_name)
    .bind(now)
    .bind(now)
    .execute(&app.db)
    .await?;
    if inserted.rows_affected() == 0 {
        // Another request published to the same tag meanwhile.
        let r = by_reference(&app, &reference)
            .await?
            .ok_or_else(|| ApiError::internal("a release vanished"))?;
        if r.digest == published.digest {
            return Ok(located(StatusCode::OK, own(&caller, r.clone())?));
        }
        return Err(taken(&reference, &r.digest));
    }
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&team),
        "release.publish",
        Some(&release_id),
        serde_json::json!({
            "build": id,
            "reference": reference,
            "digest": published.digest,
            "key_fingerprint": fingerprint,
            "referrers": referrers.len(),
        }),
    )
    .await;
    let release = visible(&app, &caller, &release_id).await?;
    Ok(located(StatusCode::CREATED, release))
}

/// An existing release at the requested tag, as the caller may see it; one
/// of another team is only named as taken.
fn own(caller: &Caller, release: ReleaseInfo) -> Result<ReleaseInfo, ApiError> {
    if caller.sees(&release.team) {
        Ok(release)
    } else {
        Err(ApiError::conflict(format!(
            "{} is already published; kiln never moves a published tag, so publish under a new tag",
            release.reference
        ))
        .with_code("tag-taken"))
    }
}

/// List releases
///
/// The releases of the caller's teams, newest first, with each one's
/// last verification.
#[utoipa::path(
    get, path = "/api/v1/releases", tag = "releases", params(ReleaseQuery),
    responses(
        (status = 200, body = ReleaseList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReleaseQuery>,
) -> Result<Json<ReleaseList>, ApiError> {
    let limit = list_limit(q.limit, 50, 200)?;
    let teams = caller.listed_teams(q.team.as_deref());
    if teams.is_empty() {
        return Ok(Json(ReleaseList {
            releases: Vec::new(),
        }));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM releases WHERE team IN ({}) \
         ORDER BY published_at DESC, id LIMIT ${}",
        db::placeholders(1, teams.len()),
        teams.len() + 1
    );
    let mut query = sqlx::query(&sql);
    for t in &teams {
        query = query.bind(t);
    }
    let rows = query.bind(limit).fetch_all(&app.db).await?;
    Ok(Json(ReleaseList {
        releases: rows.iter().map(release_of).collect(),
    }))
}

/// Get a release
#[utoipa::path(
    get, path = "/api/v1/releases/{id}", tag = "releases",
    params(("id" = String, Path, description = "Release id")),
    responses(
        (status = 200, body = ReleaseInfo),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn get_release(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReleaseInfo>, ApiError> {
    Ok(Json(visible(&app, &caller, &id).await?))
}

/// Verify a release
///
/// Checks the release in the registry with the team's public key: the
/// manifest's signature, every attestation, every layer's digest, and that
/// the tag still names the published digest. Records the outcome.
#[utoipa::path(
    get, path = "/api/v1/releases/{id}/verify", tag = "releases",
    params(("id" = String, Path, description = "Release id")),
    responses(
        (status = 200, description = "What was checked; `ok` says whether all passed", body = VerifyReport),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, description = "The signer is unavailable", body = ErrorBody),
    )
)]
pub async fn verify(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<VerifyReport>, ApiError> {
    let release = visible(&app, &caller, &id).await?;
    let signer = signer_of(&app, &release.team, &caller.user_name).await?;
    let key = signer.signer.public_key().clone();
    let config = jobs::registry_config(&app);
    let report = publish::verify_release(&release.reference, &[key], &config, None).await;
    let mut checks: Vec<CheckResult> = report
        .checks
        .iter()
        .map(|c| CheckResult {
            what: c.what.clone(),
            ok: c.ok,
            detail: c.detail.clone(),
        })
        .collect();
    let moved = report.digest.as_deref() != Some(release.digest.as_str());
    checks.push(CheckResult {
        what: "tag".to_owned(),
        ok: !moved,
        detail: match &report.digest {
            Some(d) if !moved => format!("{} names {d}, as published", release.reference),
            Some(d) => format!(
                "{} names {d}, but {} was published",
                release.reference, release.digest
            ),
            None => format!("{} could not be resolved", release.reference),
        },
    });
    let ok = report.ok() && !moved;
    sqlx::query(
        "UPDATE releases SET verification = $1, verified_at = $2, checks = $3 WHERE id = $4",
    )
    .bind(if ok { "verified" } else { "failed" })
    .bind(db::now())
    .bind(serde_json::to_string(&checks).unwrap_or_default())
    .bind(&id)
    .execute(&app.db)
    .await?;
    Ok(Json(VerifyReport {
        release: visible(&app, &caller, &id).await?,
        ok,
        checks,
    }))
}

/// A team's public signing keys
///
/// The keys that sign the team's releases (made on first need); the
/// private half never leaves the server or the signer daemon.
#[utoipa::path(
    get, path = "/api/v1/teams/{team}/keys", tag = "releases",
    params(("team" = String, Path)),
    responses(
        (status = 200, body = TeamKeyList),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, description = "The signer is unavailable", body = ErrorBody),
    )
)]
pub async fn team_keys(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(team): ApiPath<String>,
) -> Result<Json<TeamKeyList>, ApiError> {
    caller.require(&team, Role::Viewer)?;
    let signer = signer_of(&app, &team, &caller.user_name).await?;
    let key = signer.signer.public_key();
    Ok(Json(TeamKeyList {
        keys: vec![TeamKey {
            fingerprint: key.fingerprint().to_owned(),
            pem: key.to_pem(),
            algorithm: "ecdsa-p256".to_owned(),
            source: signer.source.as_str().to_owned(),
        }],
    }))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/builds/{id}/publish", post(publish_build))
        .route("/releases", get(list))
        .route("/releases/{id}", get(get_release))
        .route("/releases/{id}/verify", get(verify))
        .route("/teams/{team}/keys", get(team_keys))
}
