//! kiln's browser front end. It runs the `shared` validator in the page, so
//! a spec author sees every problem while typing, with no server round trip.

/// Validates a spec text and returns its diagnostics as a JSON array, the
/// shape the editor consumes.
pub fn validate_to_json(text: &str) -> String {
    let validation = kiln_shared::validate(text);
    serde_json::to_string(&validation.diagnostics).unwrap_or_else(|_| "[]".to_owned())
}
