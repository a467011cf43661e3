//! Logging in and out (session cookies), who am I, and creating accounts.

use crate::service::tls::Peer;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::service::auth::{self, Caller, Role, SESSION_COOKIE};
use crate::service::db;
use crate::service::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Membership {
    pub team: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub user: String,
    pub server_admin: bool,
    pub teams: Vec<Membership>,
    /// Send it as `X-CSRF-Token` with every state-changing request made
    /// with the session cookie (present after login only).
    pub csrf_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
}

/// A hash to verify against when the user does not exist, so that the
/// answer takes as long either way.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password("kiln-dummy-password"))
}

/// Log in
///
/// Sets an HttpOnly, SameSite=Strict session cookie (Secure under TLS) and
/// returns the CSRF token. Failed attempts are rate-limited per address and
/// user name.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, security(),
    responses(
        (status = 200, body = Me),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    )
)]
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    if let Err(wait) = app
        .limiter
        .check(ip, &req.username, app.cfg.login_attempts_per_minute)
    {
        return Err(ApiError::too_many(
            format!("too many failed logins; try again in {wait} s"),
            wait,
        ));
    }
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE name = $1")
        .bind(&req.username)
        .fetch_optional(&app.db)
        .await?;
    let (user_id, hash) = match &row {
        Some(r) => (Some(r.get::<String, _>(0)), r.get::<String, _>(1)),
        None => (None, dummy_hash().to_owned()),
    };
    let password = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user_id) = user_id.filter(|_| ok) else {
        app.limiter.failed(ip, &req.username);
        db::audit(
            &app.db,
            Some(&req.username),
            None,
            "login.failure",
            None,
            serde_json::json!({ "address": ip.to_string() }),
        )
        .await;
        return Err(ApiError::unauthorized("wrong user name or password"));
    };
    app.limiter.succeeded(ip, &req.username);
    let secret = db::random_hex(32);
    let csrf = db::random_hex(16);
    let now = db::now();
    sqlx::query(
        "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(auth::secret_hash(&secret))
    .bind(&user_id)
    .bind(&csrf)
    .bind(now)
    .bind(now + app.cfg.session_ttl_secs)
    .execute(&app.db)
    .await?;
    db::audit(
        &app.db,
        Some(&req.username),
        None,
        "login.success",
        None,
        serde_json::json!({ "address": ip.to_string() }),
    )
    .await;
    let teams = sqlx::query("SELECT team, role FROM members WHERE user_id = $1 ORDER BY team")
        .bind(&user_id)
        .fetch_all(&app.db)
        .await?
        .iter()
        .map(|r| Membership {
            team: r.get(0),
            role: Role::parse(r.get(1)).unwrap_or(Role::Viewer),
        })
        .collect();
    let server_admin: i64 = sqlx::query_scalar("SELECT server_admin FROM users WHERE id = $1")
        .bind(&user_id)
        .fetch_one(&app.db)
        .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        app.cfg.session_ttl_secs,
        if app.tls { "; Secure" } else { "" }
    );
    let mut r = Json(Me {
        user: req.username,
        server_admin: server_admin != 0,
        teams,
        csrf_token: Some(csrf),
    })
    .into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).unwrap());
    Ok(r)
}

/// Log out
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn logout(
    State(app): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(cookie) = session_cookie(&headers) {
        sqlx::query("DELETE FROM sessions WHERE hash = $1 AND user_id = $2")
            .bind(auth::secret_hash(&cookie))
            .bind(&caller.user_id)
            .execute(&app.db)
            .await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("kiln_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

/// Who am I
///
/// With a session cookie, also the session's CSRF token, so a reloaded
/// page can keep making changes (only same-origin scripts can read it).
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody))
)]
pub async fn me(
    State(app): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Json<Me>, ApiError> {
    let csrf_token = match (&caller.token_id, session_cookie(&headers)) {
        (None, Some(secret)) => {
            sqlx::query_scalar("SELECT csrf FROM sessions WHERE hash = $1 AND user_id = $2")
                .bind(auth::secret_hash(&secret))
                .bind(&caller.user_id)
                .fetch_optional(&app.db)
                .await?
        }
        _ => None,
    };
    Ok(Json(Me {
        user: caller.user_name,
        server_admin: caller.server_admin,
        teams: caller
            .teams
            .into_iter()
            .map(|(team, role)| Membership { team, role })
            .collect(),
        csrf_token,
    }))
}

fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Create a local account (server admins)
#[utoipa::path(
    post, path = "/api/v1/users", tag = "auth", request_body = NewUser,
    responses(
        (status = 201, body = User),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 415, body = ErrorBody),
    )
)]
pub async fn create_user(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    if !caller.server_admin {
        return Err(ApiError::forbidden("only server admins create accounts"));
    }
    if !super::teams::valid_name(&req.name) {
        return Err(ApiError::bad_request(
            "a user name is 1-64 letters, digits, `-`, `_` or `.`",
        ));
    }
    if req.password.chars().count() < 12 {
        return Err(ApiError::bad_request(
            "a password has at least 12 characters",
        ));
    }
    let id = db::new_id();
    let password = req.password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)?;
    let r = sqlx::query(
        "INSERT INTO users (id, name, password_hash, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&id)
    .bind(&req.name)
    .bind(&hash)
    .bind(db::now())
    .execute(&app.db)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("user `{}` exists", req.name)));
    }
    db::audit(
        &app.db,
        Some(&caller.user_name),
        None,
        "user.create",
        Some(&req.name),
        serde_json::json!({}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(User { id, name: req.name })))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/users", post(create_user))
}
