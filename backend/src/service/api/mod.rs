//! The HTTP API under `/api/v1`: one module per resource, each with its own
//! router, and the OpenAPI document generated from their annotations.

pub mod audit;
pub mod builds;
pub mod error;
pub mod formats;
pub mod health;
pub mod policy;
pub mod releases;
pub mod session;
pub mod teams;
pub mod tokens;
pub mod validate;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use self::error::ApiError;
use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kiln",
        description = "Build reproducible LinuxKit-style OS images from YAML specs."
    ),
    paths(
        validate::validate,
        builds::submit,
        builds::list,
        builds::get_build,
        builds::cancel,
        builds::events,
        builds::artifacts,
        builds::download,
        releases::publish_build,
        releases::list,
        releases::get_release,
        releases::verify,
        releases::team_keys,
        formats::list_formats,
        session::login,
        session::logout,
        session::me,
        session::create_user,
        teams::list_teams,
        teams::create_team,
        teams::get_team,
        teams::list_members,
        teams::set_member,
        teams::remove_member,
        tokens::list_tokens,
        tokens::create_token,
        tokens::revoke_token,
        policy::get_policy,
        policy::put_policy,
        audit::team_audit,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "validate", description = "Check specs"),
        (name = "builds", description = "Build jobs, their logs and artifacts"),
        (name = "releases", description = "Signed releases in OCI registries and the keys that sign them"),
        (name = "auth", description = "Accounts and sessions"),
        (name = "teams", description = "Teams, members, tokens, trust policy, audit"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::service::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The OpenAPI 3 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method",
    )
}

/// Every route of the service.
/// What a `worker` process serves: health and metrics only.
pub fn health_router(app: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

pub fn router(app: AppState) -> Router {
    let limit = app.cfg.max_body_bytes;
    let api = Router::new()
        .merge(validate::router())
        .merge(builds::router())
        .merge(releases::router())
        .merge(formats::router())
        .merge(session::router())
        .merge(teams::router())
        .merge(tokens::router())
        .merge(policy::router())
        .merge(audit::router())
        .route("/openapi.json", get(openapi_json));
    Router::new()
        .nest("/api/v1", api)
        .merge(health::router())
        .merge(super::assets::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}
