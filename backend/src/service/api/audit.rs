//! Reading the append-only audit log.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::error::{list_limit, ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::service::auth::{Caller, Role};
use crate::service::db::rfc3339;
use crate::service::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries with a larger id only.
    pub after: Option<i64>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// A team's audit log (team admins)
#[utoipa::path(
    get, path = "/api/v1/teams/{team}/audit", tag = "teams",
    params(("team" = String, Path), AuditQuery),
    responses(
        (status = 200, body = AuditList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn team_audit(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(team): ApiPath<String>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    caller.require(&team, Role::Admin)?;
    let limit = list_limit(q.limit, 100, 1000)?;
    let rows = sqlx::query(
        "SELECT id, at, actor, action, target, detail FROM audit_log \
         WHERE team = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(&team)
    .bind(q.after.unwrap_or(0))
    .bind(limit)
    .fetch_all(&app.db)
    .await?;
    Ok(Json(AuditList {
        entries: rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at: rfc3339(r.get(1)),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                detail: r
                    .get::<Option<&str>, _>(5)
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect(),
    }))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/teams/{team}/audit", get(team_audit))
}
