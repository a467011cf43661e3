//! The output formats a build may ask for, so clients offer exactly what
//! the engine writes.

use std::path::Path;

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::formats::format::Format;
use crate::service::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct FormatInfo {
    /// The name to put in a build's `formats`.
    pub name: String,
    /// The files it writes for a build named `NAME`.
    pub files: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FormatList {
    pub formats: Vec<FormatInfo>,
    /// What a build without `formats` writes.
    pub default: Vec<String>,
}

/// List the output formats
#[utoipa::path(
    get, path = "/api/v1/formats", tag = "builds", security(),
    responses((status = 200, body = FormatList))
)]
pub async fn list_formats() -> Json<FormatList> {
    let default = Format::parse_list(&[], false)
        .unwrap_or_default()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    Json(FormatList {
        formats: Format::ALL
            .iter()
            .map(|f| FormatInfo {
                name: f.name().to_owned(),
                files: f
                    .outputs(Path::new(""), "NAME")
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            })
            .collect(),
        default,
    })
}

pub fn router() -> Router<AppState> {
    Router::new().route("/formats", get(list_formats))
}
