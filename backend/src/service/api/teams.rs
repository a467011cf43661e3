//! Teams and their members.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::service::auth::{Caller, Role};
use crate::service::db;
use crate::service::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Team {
    pub name: String,
    /// The caller's role in it.
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamList {
    pub teams: Vec<Team>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTeam {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<Member>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetRole {
    pub role: Role,
}

/// Names of users and teams: 1-64 letters, digits, `-`, `_`, `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// List my teams
#[utoipa::path(
    get, path = "/api/v1/teams", tag = "teams",
    responses((status = 200, body = TeamList), (status = 401, body = ErrorBody))
)]
pub async fn list_teams(caller: Caller) -> Json<TeamList> {
    Json(TeamList {
        teams: caller
            .teams
            .into_iter()
            .map(|(name, role)| Team { name, role })
            .collect(),
    })
}

/// Create a team (server admins); the creator becomes its admin
#[utoipa::path(
    post, path = "/api/v1/teams", tag = "teams", request_body = NewTeam,
    responses(
        (status = 201, body = Team),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody),
    )
)]
pub async fn create_team(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewTeam>,
) -> Result<(StatusCode, Json<Team>), ApiError> {
    if !caller.server_admin {
        return Err(ApiError::forbidden("only server admins create teams"));
    }
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request(
            "a team name is 1-64 letters, digits, `-`, `_` or `.`",
        ));
    }
    let mut tx = app.db.begin().await?;
    let r =
        sqlx::query("INSERT INTO teams (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&req.name)
            .bind(db::now())
            .execute(&mut *tx)
            .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("team `{}` exists", req.name)));
    }
    sqlx::query("INSERT INTO members (team, user_id, role) VALUES ($1, $2, 'admin')")
        .bind(&req.name)
        .bind(&caller.user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&req.name),
        "team.create",
        Some(&req.name),
        serde_json::json!({}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(Team {
            name: req.name,
            role: Role::Admin,
        }),
    ))
}

/// Get a team
#[utoipa::path(
    get, path = "/api/v1/teams/{team}", tag = "teams",
    params(("team" = String, Path)),
    responses((status = 200, body = Team), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn get_team(
    caller: Caller,
    ApiPath(team): ApiPath<String>,
) -> Result<Json<Team>, ApiError> {
    let role = caller.require(&team, Role::Viewer)?;
    Ok(Json(Team { name: team, role }))
}

/// List a team's members
#[utoipa::path(
    get, path = "/api/v1/teams/{team}/members", tag = "teams",
    params(("team" = String, Path)),
    responses((status = 200, body = MemberList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn list_members(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(team): ApiPath<String>,
) -> Result<Json<MemberList>, ApiError> {
    caller.require(&team, Role::Viewer)?;
    let rows = sqlx::query(
        "SELECT u.name, m.role FROM members m JOIN users u ON u.id = m.user_id \
         WHERE m.team = $1 ORDER BY u.name",
    )
    .bind(&team)
    .fetch_all(&app.db)
    .await?;
    Ok(Json(MemberList {
        members: rows
            .iter()
            .map(|r| Member {
                user: r.get(0),
                role: Role::parse(r.get(1)).unwrap_or(Role::Viewer),
            })
            .collect(),
    }))
}

/// Add a member or change its role (team admins)
#[utoipa::path(
    put, path = "/api/v1/teams/{team}/members/{user}", tag = "teams",
    params(("team" = String, Path), ("user" = String, Path)), request_body = SetRole,
    responses(
        (status = 200, body = Member),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody),
    )
)]
pub async fn set_member(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath((team, user)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<SetRole>,
) -> Result<Json<Member>, ApiError> {
    caller.require(&team, Role::Admin)?;
    let user_id: String = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(&user)
        .fetch_optional(&app.db)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    sqlx::query(
        "INSERT INTO members (team, user_id, role) VALUES ($1, $2, $3) \
         ON CONFLICT (team, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(&team)
    .bind(&user_id)
    .bind(req.role.as_str())
    .execute(&app.db)
    .await?;
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&team),
        "member.set",
        Some(&user),
        serde_json::json!({ "role": req.role.as_str() }),
    )
    .await;
    Ok(Json(Member {
        user,
        role: req.role,
    }))
}

/// Remove a member (team admins)
#[utoipa::path(
    delete, path = "/api/v1/teams/{team}/members/{user}", tag = "teams",
    params(("team" = String, Path), ("user" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn remove_member(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath((team, user)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(&team, Role::Admin)?;
    let r = sqlx::query(
        "DELETE FROM members WHERE team = $1 AND user_id = (SELECT id FROM users WHERE name = $2)",
    )
    .bind(&team)
    .bind(&user)
    .execute(&app.db)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("member"));
    }
    db::audit(
        &app.db,
        Some(&caller.user_name),
        Some(&team),
        "member.remove",
        Some(&user),
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams", get(list_teams).post(create_team))
        .route("/teams/{team}", get(get_team))
        .route("/teams/{team}/members", get(list_members))
        .route(
            "/teams/{team}/members/{user}",
            put(set_member).delete(remove_member),
        )
}
