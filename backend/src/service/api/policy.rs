//! Each team's trust policy: which orgs and images must carry valid
//! signatures, and the keys that verify them. Checked when stored (it must
//! parse and must not overlap the server's policy), audited, and enforced
//! on the team's builds together with the server's policy.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::service::auth::{Caller, Role};
use crate::service::db::{self, rfc3339};
use crate::service::{trust, AppState};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    /// The policy document: a JSON object with the trust policy's keys
    /// (`require`, `allow_disable_content_trust`, and `org` entries with a
    /// `name` and inline PEM `public_keys`).
    #[schema(value_type = Object)]
    pub policy: serde_json::Map<String, serde_json::Value>,
    /// When it last changed (absent while never set).
    #[serde(default, skip_deserializing)]
    pub updated_at: Option<String>,
}

/// Get a team's trust policy
#[utoipa::path(
    get, path = "/api/v1/teams/{team}/policy", tag = "teams",
    params(("team" = String, Path)),
    responses((status = 200, body = Policy), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn get_policy(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(team): ApiPath<String>,
) -> Result<Json<Policy>, ApiError> {
    caller.require(&team, Role::Viewer)?;
    let row = sqlx::query("SELECT policy, updated_at FROM policies WHERE team = $1")
        .bind(&team)
        .fetch_optional(&app.db)
        .await?;
    Ok(Json(match row {
        Some(r) => Policy {
            policy: serde_json::from_str(r.get::<&str, _>(0)).unwrap_or_default(),
            updated_at: Some(rfc3339(r.get(1))),
        },
        None => Policy {
            policy: Default::default(),
            updated_at: None,
        },
    }))
}

/// Replace a team's trust policy (team admins)
#[utoipa::path(
    put, path = "/api/v1/teams/{team}/policy", tag = "teams",
    params(("team" = String, Path)), request_body = Policy,
    responses(
        (status = 200, body = Policy),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
    )
)]
pub async fn put_policy(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(team): ApiPath<String>,
    ApiJson(req): ApiJson<Policy>,
) -> Result<Json<Policy>, ApiError> {
    caller.require(&team, Role::Admin)?;
    if !req.policy.is_empty() {
        let parsed = trust::team_policy(&req.policy).map_err(ApiError::bad_request)?;
        trust::combine(app.trust_policy.as_ref(), Some(&parsed)).map_err(ApiError::bad_request)?;
    }
    let now = db::now();
    let text = serde_json::Value::Object(req.policy.clone()).to_string();
    sqlx::query(
        "INSERT INTO policies (team, policy, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (team) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
    )
    .bind(&team)
    .bind(&text)
    .bind(now)
    .execute(&app.db)
    .await?;
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&team),
        "policy.update",
        Some(&team),
        serde_json::Value::Object(req.policy.clone()),
    )
    .await;
    Ok(Json(Policy {
        policy: req.policy,
        updated_at: Some(rfc3339(now)),
    }))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/teams/{team}/policy", get(get_policy).put(put_policy))
}
