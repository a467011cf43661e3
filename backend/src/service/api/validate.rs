//! `POST /api/v1/validate`: the diagnostics `shared` produces, unchanged.

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use kiln_shared::Diagnostic;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiJson, ErrorBody};
use crate::service::auth::Caller;
use crate::service::AppState;

/// A spec to check.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ValidateRequest {
    /// The YAML text of the spec.
    pub spec: String,
}

/// One problem, as `kiln validate --format json` prints it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticSchema {
    /// The file, for merged specs.
    pub file: Option<String>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    #[schema(example = "error")]
    pub severity: String,
    /// A stable code such as `unknown-key`.
    pub code: String,
    pub message: String,
    /// The key path, such as `onboot[0].image`.
    pub path: String,
}

/// A spec with no errors (it may have warnings).
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateResponse {
    pub valid: bool,
    #[schema(value_type = Vec<DiagnosticSchema>)]
    pub diagnostics: Vec<Diagnostic>,
}

/// The 422 error for a spec with errors: `details.diagnostics` lists every
/// problem.
pub fn invalid_spec(diagnostics: &[Diagnostic]) -> ApiError {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-spec",
        format!(
            "the spec has {errors} error{}",
            if errors == 1 { "" } else { "s" }
        ),
    )
    .with_details(serde_json::json!({ "diagnostics": diagnostics }))
}

/// Checks the spec size against the configured quota.
pub fn check_spec_size(app: &AppState, spec: &str) -> Result<(), ApiError> {
    if spec.len() > app.cfg.max_spec_bytes {
        return Err(ApiError::too_large(format!(
            "the spec is {} bytes; the limit is {} bytes",
            spec.len(),
            app.cfg.max_spec_bytes
        )));
    }
    Ok(())
}

/// Validate a spec
///
/// Every problem comes back with its line, column, key path and code,
/// exactly as the `shared` validator (and the browser editor) reports it.
#[utoipa::path(
    post, path = "/api/v1/validate", tag = "validate",
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "The spec is valid", body = ValidateResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 413, description = "Spec or body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The spec has errors; `details.diagnostics`", body = ErrorBody),
    )
)]
pub async fn validate(
    axum::extract::State(app): axum::extract::State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    check_spec_size(&app, &req.spec)?;
    let v = kiln_shared::validate(&req.spec);
    if v.spec.is_none() {
        return Err(invalid_spec(&v.diagnostics));
    }
    Ok(Json(ValidateResponse {
        valid: true,
        diagnostics: v.diagnostics,
    }))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/validate", post(validate))
}
