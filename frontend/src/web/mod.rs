//! The Yew app and its browser bindings (wasm32 only).

mod api;
mod app;
mod bindings;
mod build_page;
mod builds;
mod editor;
mod login;
mod pcr_table;
mod releases;
mod team;
mod widgets;

use wasm_bindgen::prelude::*;

use crate::model::completion::Completer;
use crate::model::markers::{markers, Marker};

/// The markers for a spec text: `shared` validation, positioned for the
/// editor.
pub fn check(text: &str) -> Vec<Marker> {
    markers(text, &kiln_shared::validate(text).diagnostics)
}

/// Completions at UTF-16 offset `pos`, as JSON, or nothing.
pub fn complete(text: &str, pos: u32) -> Option<String> {
    serde_json::to_string(&Completer.complete(text, pos)?).ok()
}

/// The validation the editor runs, exported for the in-browser benchmark:
/// the markers of `text` as JSON.
#[wasm_bindgen(js_name = validateMarkers)]
pub fn validate_markers(text: &str) -> String {
    serde_json::to_string(&check(text)).unwrap_or_else(|_| "[]".to_owned())
}

#[wasm_bindgen(start)]
pub fn start() {
    yew::Renderer::<app::App>::new().render();
}
