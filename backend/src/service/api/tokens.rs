//! API tokens: the secret is shown once, at creation; only its SHA-256 is
//! kept. A revoked token fails on the next request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::service::auth::{self, Caller, Role};
use crate::service::db::{self, rfc3339};
use crate::service::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewToken {
    /// What the token is for (not blank).
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// At most the creator's role [default: the creator's role].
    pub role: Option<Role>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub id: String,
    pub team: String,
    pub name: String,
    pub role: Role,
    /// The owner.
    pub user: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A new token with its secret, which is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: Token,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// List tokens (yours; a team admin sees all of the team's)
#[utoipa::path(
    get, path = "/api/v1/teams/{team}/tokens", tag = "teams",
    params(("team" = String, Path)),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn list_tokens(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(team): ApiPath<String>,
) -> Result<Json<TokenList>, ApiError> {
    let role = caller.require(&team, Role::Viewer)?;
    let rows = sqlx::query(
        "SELECT t.id, t.team, t.name, t.role, u.name, t.created_at, t.revoked_at \
         FROM tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.team = $1 AND ($2 OR t.user_id = $3) ORDER BY t.created_at, t.id",
    )
    .bind(&team)
    .bind(role == Role::Admin)
    .bind(&caller.user_id)
    .fetch_all(&app.db)
    .await?;
    Ok(Json(TokenList {
        tokens: rows
            .iter()
            .map(|r| Token {
                id: r.get(0),
                team: r.get(1),
                name: r.get(2),
                role: Role::parse(r.get(3)).unwrap_or(Role::Viewer),
                user: r.get(4),
                created_at: rfc3339(r.get(5)),
                revoked_at: r.get::<Option<i64>, _>(6).map(rfc3339),
            })
            .collect(),
    }))
}

/// Create a token
#[utoipa::path(
    post, path = "/api/v1/teams/{team}/tokens", tag = "teams",
    params(("team" = String, Path)), request_body = NewToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A role above the creator's", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
    )
)]
pub async fn create_token(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(team): ApiPath<String>,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let mine = caller.require(&team, Role::Viewer)?;
    let role = req.role.unwrap_or(mine);
    if role > mine {
        return Err(ApiError::forbidden(format!(
            "you cannot give a token the `{}` role; yours is `{}`",
            role.as_str(),
            mine.as_str()
        )));
    }
    if req.name.trim().is_empty() || req.name.chars().count() > 200 {
        return Err(ApiError::bad_request("a token name is 1-200 characters"));
    }
    let id = db::new_id();
    let secret = auth::new_token_secret();
    let now = db::now();
    sqlx::query(
        "INSERT INTO tokens (id, team, user_id, name, role, hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(&team)
    .bind(&caller.user_id)
    .bind(&req.name)
    .bind(role.as_str())
    .bind(auth::secret_hash(&secret))
    .bind(now)
    .execute(&app.db)
    .await?;
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&team),
        "token.create",
        Some(&id),
        serde_json::json!({ "name": req.name, "role": role.as_str() }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: Token {
                id,
                team,
                name: req.name,
                role,
                user: caller.user_name,
                created_at: rfc3339(now),
                revoked_at: None,
            },
            secret,
        }),
    ))
}

/// Revoke a token (yours; a team admin may revoke any of the team's)
#[utoipa::path(
    delete, path = "/api/v1/teams/{team}/tokens/{id}", tag = "teams",
    params(("team" = String, Path), ("id" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath((team, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let role = caller.require(&team, Role::Viewer)?;
    let r = sqlx::query(
        "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND team = $3 AND revoked_at IS NULL \
         AND ($4 OR user_id = $5)",
    )
    .bind(db::now())
    .bind(&id)
    .bind(&team)
    .bind(role == Role::Admin)
    .bind(&caller.user_id)
    .execute(&app.db)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("token"));
    }
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&team),
        "token.revoke",
        Some(&id),
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams/{team}/tokens", get(list_tokens).post(create_token))
        .route("/teams/{team}/tokens/{id}", delete(revoke_token))
}
