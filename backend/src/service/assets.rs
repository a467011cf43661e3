//! The web UI, embedded at build time (see `build.rs`): `/assets/*` and
//! the app's pages, each answered with `index.html` so that links and
//! reloads land on the right page. A binary built without the UI answers
//! `/` with how to build it.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::api::error::ApiError;
use super::AppState;

/// `(path, bytes, gzip-compressed bytes)` of every built file.
type Asset = (&'static str, &'static [u8], Option<&'static [u8]>);

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The app's own paths (kept in step with the front end's routes).
const PAGES: [&str; 6] = [
    "/",
    "/builds",
    "/builds/{id}",
    "/team",
    "/releases",
    "/login",
];

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>kiln</title></head><body><main><h1>kiln</h1>\
<p>This kiln binary was built without its web UI. The API is at \
<a href=\"/api/v1/openapi.json\">/api/v1</a>.</p>\
<p>To build the UI into it, run <code>./scripts/run</code>, or \
<code>./scripts/build-web</code> and then \
<code>KILN_WEB_DIST=$PWD/frontend/dist cargo build --release --bin kiln</code>.</p>\
</main></body></html>";

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|(p, _, _)| *p == path)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let (path, bytes, gz) = *asset;
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let (body, encoded) = match gz {
        Some(gz) if gzip_ok => (gz, true),
        _ => (bytes, false),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    // The file names carry no hash: revalidate on each load.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if encoded {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

async fn page(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(index) => {
            let mut r = serve(index, &headers);
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
                     style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                     connect-src 'self'; frame-ancestors 'none'",
                ),
            );
            r
        }
        None => Html(NOT_BUILT).into_response(),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path) {
        Some(a) if path != "index.html" => serve(a, &headers),
        _ => ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such asset").into_response(),
    }
}

/// Whether this binary carries the web UI.
pub fn built() -> bool {
    find("index.html").is_some()
}

pub fn router() -> Router<AppState> {
    let mut r = Router::new().route("/assets/{*path}", get(asset));
    for p in PAGES {
        r = r.route(p, get(page));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type("kiln_frontend_bg.wasm"), "application/wasm");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
