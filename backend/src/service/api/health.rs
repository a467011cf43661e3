//! `/healthz` (the process answers), `/readyz` (the database answers and
//! the state directories are there) and Prometheus `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use crate::service::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness
#[utoipa::path(get, path = "/healthz", tag = "health", security(),
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness
#[utoipa::path(get, path = "/readyz", tag = "health", security(),
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    let unavailable = |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m);
    sqlx::query("SELECT 1")
        .execute(&app.db)
        .await
        .map_err(|e| unavailable(format!("database: {e}")))?;
    if !app.store.root().is_dir() {
        return Err(unavailable("the image store is missing".into()));
    }
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "health", security(),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
              (status = 500, body = ErrorBody)))]
pub async fn metrics(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM builds GROUP BY state")
        .fetch_all(&app.db)
        .await?;
    let states: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let queued = states
        .iter()
        .find(|(s, _)| s == "queued")
        .map_or(0, |(_, n)| *n);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.jobs.metrics.render(&states, queued),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
