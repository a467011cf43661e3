//! Calls to the service's `/api/v1`, with the session's CSRF token on every
//! state-changing request and failures as readable text.

use std::cell::RefCell;

use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::model::api::ApiFailure;
use crate::model::json::{self, FromJson};

thread_local! {
    static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Remembers the session's CSRF token (from login or `auth/me`).
pub fn set_csrf(token: Option<String>) {
    CSRF.with(|c| *c.borrow_mut() = token);
}

fn url(path: &str) -> String {
    format!("/api/v1{path}")
}

/// One fetch: `method` on `url` with the CSRF header and an optional JSON
/// body (straight on `fetch`: a request library cost the module more code
/// than this).
async fn run(method: &str, url: &str, body: Option<String>) -> Result<(u16, String), ApiFailure> {
    let failed = |what: &str| ApiFailure::network(what);
    let headers = web_sys::Headers::new().map_err(|_| failed("no Headers"))?;
    if let Some(t) = CSRF.with(|c| c.borrow().clone()) {
        let _ = headers.set("X-CSRF-Token", &t);
    }
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(b) = body {
        let _ = headers.set("Content-Type", "application/json");
        init.set_body(&JsValue::from_str(&b));
    }
    init.set_headers(&headers);
    let request =
        web_sys::Request::new_with_str_and_init(url, &init).map_err(|_| failed("bad request"))?;
    let window = web_sys::window().ok_or_else(|| failed("no window"))?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .ok()
        .and_then(|r| r.dyn_into().ok())
        .ok_or_else(|| failed("the request failed"))?;
    let status = response.status();
    let text = match response.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()),
        Err(_) => None,
    }
    .unwrap_or_default();
    if (200..300).contains(&status) {
        Ok((status, text))
    } else {
        Err(ApiFailure::from_response(status, &text))
    }
}

/// Reads an answer with [`json`]: serde's derived readers would cost the
/// WASM module kilobytes of code per response type.
fn parse<T: FromJson>(status: u16, text: &str) -> Result<T, ApiFailure> {
    json::from_str(text).map_err(|e| ApiFailure {
        status,
        code: "bad-response".into(),
        text: format!("The server's answer could not be read: {e}."),
    })
}

pub async fn get<T: FromJson>(path: &str) -> Result<T, ApiFailure> {
    let (status, text) = run("GET", &url(path), None).await?;
    parse(status, &text)
}

/// A GET of a URL the API handed out (an artifact).
pub async fn get_at<T: FromJson>(url: &str) -> Result<T, ApiFailure> {
    let (status, text) = run("GET", url, None).await?;
    parse(status, &text)
}

pub async fn post<B: Serialize, T: FromJson>(path: &str, body: &B) -> Result<T, ApiFailure> {
    let body = serde_json::to_string(body).unwrap_or_default();
    let (status, text) = run("POST", &url(path), Some(body)).await?;
    parse(status, &text)
}

pub async fn put<B: Serialize, T: FromJson>(path: &str, body: &B) -> Result<T, ApiFailure> {
    let body = serde_json::to_string(body).unwrap_or_default();
    let (status, text) = run("PUT", &url(path), Some(body)).await?;
    parse(status, &text)
}

/// A PUT of a body that is already JSON text.
pub async fn put_raw<T: FromJson>(path: &str, body: String) -> Result<T, ApiFailure> {
    let (status, text) = run("PUT", &url(path), Some(body)).await?;
    parse(status, &text)
}

/// A POST or DELETE whose answer has no body worth reading.
pub async fn act(method: &str, path: &str) -> Result<(), ApiFailure> {
    let method = if method == "DELETE" { "DELETE" } else { "POST" };
    run(method, &url(path), None).await.map(|_| ())
}
