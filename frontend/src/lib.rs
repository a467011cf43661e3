//! kiln's browser front end. It runs the `shared` validator in the page, so
//! a spec author sees every problem while typing, with no server round trip.
//!
//! - `model` — everything with logic, as plain Rust tested natively: editor
//!   markers, completion from the schema, drafts, routes, the build event
//!   reducer, history filters, API shapes, key fingerprints.
//! - `web` (wasm32 only) — the Yew components and browser bindings; they
//!   render state and dispatch, and hold no logic worth a test of its own.

pub mod model;
#[cfg(target_arch = "wasm32")]
mod web;

/// Validates a spec text and returns its diagnostics as a JSON array, the
/// shape the editor consumes.
pub fn validate_to_json(text: &str) -> String {
    let validation = kiln_shared::validate(text);
    serde_json::to_string(&validation.diagnostics).unwrap_or_else(|_| "[]".to_owned())
}
