//! Calls to the service's `/api/v1`, with the session's CSRF token on every
//! state-changing request and failures as readable text.

use std::cell::RefCell;

use gloo_net::http::{Request, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::api::ApiFailure;

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

async fn run(builder: RequestBuilder, body: Option<String>) -> Result<(u16, String), ApiFailure> {
    let builder = match CSRF.with(|c| c.borrow().clone()) {
        Some(t) => builder.header("X-CSRF-Token", &t),
        None => builder,
    };
    let request = match body {
        Some(b) => builder
            .header("Content-Type", "application/json")
            .body(b)
            .map_err(|e| ApiFailure::network(&e.to_string()))?,
        None => builder
            .build()
            .map_err(|e| ApiFailure::network(&e.to_string()))?,
    };
    let response = request
        .send()
        .await
        .map_err(|e| ApiFailure::network(&e.to_string()))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        Ok((status, text))
    } else {
        Err(ApiFailure::from_response(status, &text))
    }
}

fn parse<T: DeserializeOwned>(status: u16, text: &str) -> Result<T, ApiFailure> {
    serde_json::from_str(text).map_err(|e| ApiFailure {
        status,
        code: "bad-response".into(),
        text: format!("The server's answer could not be read: {e}."),
    })
}

pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiFailure> {
    let (status, text) = run(Request::get(&url(path)), None).await?;
    parse(status, &text)
}

/// A GET of a URL the API handed out (an artifact), read as JSON.
pub async fn get_at<T: DeserializeOwned>(url: &str) -> Result<T, ApiFailure> {
    let (status, text) = run(Request::get(url), None).await?;
    parse(status, &text)
}

pub async fn post<B: Serialize, T: DeserializeOwned>(
    path: &str,
    body: &B,
) -> Result<T, ApiFailure> {
    let body = serde_json::to_string(body).unwrap_or_default();
    let (status, text) = run(Request::post(&url(path)), Some(body)).await?;
    parse(status, &text)
}

pub async fn put<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiFailure> {
    let body = serde_json::to_string(body).unwrap_or_default();
    let (status, text) = run(Request::put(&url(path)), Some(body)).await?;
    parse(status, &text)
}

/// A PUT of a body that is already JSON text.
pub async fn put_raw<T: DeserializeOwned>(path: &str, body: String) -> Result<T, ApiFailure> {
    let (status, text) = run(Request::put(&url(path)), Some(body)).await?;
    parse(status, &text)
}

/// A POST or DELETE whose answer has no body worth reading.
pub async fn act(method: &str, path: &str) -> Result<(), ApiFailure> {
    let builder = match method {
        "DELETE" => Request::delete(&url(path)),
        _ => Request::post(&url(path)),
    };
    run(builder, None).await.map(|_| ())
}
