//! Calls to the console's JSON API (contract §6), same origin, with the session cookie.
//!
//! Every call returns an [`ApiError`] with the server's message (and the field at fault,
//! for a refused job spec). A 401 means the session is gone: the browser is sent to the
//! login page, which comes back here afterwards.

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A failed call: the HTTP status (0 when the server could not be reached), what the
/// server said, and the field it named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status, 0 for a network error.
    pub status: u16,
    /// What went wrong, in the server's words.
    pub message: String,
    /// The field at fault (`schedule.cron`, ...), when the server named one.
    pub field: Option<String>,
}

impl ApiError {
    fn network(e: impl std::fmt::Display) -> Self {
        Self {
            status: 0,
            message: format!(
                "the console server cannot be reached ({e}): is `antares console` running?"
            ),
            field: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The body of an error answer: `{"error": "...", "field": "..."}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    field: Option<String>,
}

/// `{"instance": ID}`, the answer to a trigger.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Triggered {
    /// The new instance.
    pub instance: String,
}

/// Percent-encodes one query value or path segment.
pub fn enc(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

/// Builds `path?k=v&...`, leaving out empty values.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Sends the browser to the login page, remembering where it was.
pub fn to_login() {
    let window = leptos::prelude::window();
    let location = window.location();
    let here = format!(
        "{}{}",
        location.pathname().unwrap_or_default(),
        location.search().unwrap_or_default()
    );
    if here.starts_with("/login") {
        return;
    }
    let _ = location.set_href(&with_query("/login", &[("next", &here)]));
}

async fn check(res: Response) -> Result<Response, ApiError> {
    if res.ok() {
        return Ok(res);
    }
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if status == 401 {
        to_login();
    }
    let (message, field) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error, body.field),
        Err(_) if text.trim().is_empty() => (format!("the server answered {status}"), None),
        Err(_) => (text.trim().to_string(), None),
    };
    Err(ApiError {
        status,
        message,
        field,
    })
}

async fn send(req: RequestBuilder) -> Result<Response, ApiError> {
    check(req.send().await.map_err(ApiError::network)?).await
}

async fn send_json<B: Serialize>(req: RequestBuilder, body: &B) -> Result<Response, ApiError> {
    let req: Request = req.json(body).map_err(|e| ApiError {
        status: 0,
        message: format!("cannot encode the request: {e}"),
        field: None,
    })?;
    check(req.send().await.map_err(ApiError::network)?).await
}

async fn decode<T: DeserializeOwned>(res: Response) -> Result<T, ApiError> {
    let text = res.text().await.map_err(ApiError::network)?;
    serde_json::from_str(&text).map_err(|e| ApiError {
        status: res.status(),
        message: format!("the server's answer was not understood ({e})"),
        field: None,
    })
}

/// `GET path` as JSON.
pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    decode(send(Request::get(path)).await?).await
}

/// The header of a paged listing that holds the next page's `after` (absent on the
/// last page).
const NEXT_AFTER: &str = "x-next-after";

/// `GET path` of a paged listing: the page as JSON, and the next page's cursor.
pub async fn get_page<T: DeserializeOwned>(path: &str) -> Result<(T, Option<String>), ApiError> {
    let res = send(Request::get(path)).await?;
    let next = res.headers().get(NEXT_AFTER).filter(|n| !n.is_empty());
    Ok((decode(res).await?, next))
}

/// `POST path` with a JSON body, answer as JSON.
pub async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    decode(send_json(Request::post(path), body).await?).await
}

/// `POST path` without a body; the answer is not read.
pub async fn post_empty(path: &str) -> Result<(), ApiError> {
    send(Request::post(path)).await.map(drop)
}

/// `POST path` with a JSON body; the answer is not read.
pub async fn post_unit<B: Serialize>(path: &str, body: &B) -> Result<(), ApiError> {
    send_json(Request::post(path), body).await.map(drop)
}

/// `PUT path` with a JSON body; the answer is not read.
pub async fn put_unit<B: Serialize>(path: &str, body: &B) -> Result<(), ApiError> {
    send_json(Request::put(path), body).await.map(drop)
}

/// `DELETE path`; the answer is not read.
pub async fn delete(path: &str) -> Result<(), ApiError> {
    send(Request::delete(path)).await.map(drop)
}
