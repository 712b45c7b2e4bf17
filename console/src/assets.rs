//! The single-page app's files (`console/dist/`, made by `scripts/build-console`).
//!
//! Client routes (`/instances/01J...`) are the SPA's own: any path that is not a file
//! gets `index.html`, and the app routes in the browser. A release build embeds the
//! files; a debug build reads the folder at run time, so a rebuilt SPA shows without
//! rebuilding the server. When there are no files at all, `/` says how to build them,
//! and the API works regardless.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;
use tower_http::services::ServeDir;

/// Where the SPA's files come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Assets {
    /// Built into the binary (release), or read from `console/dist/` of the source tree
    /// (debug).
    #[default]
    Embedded,
    /// A folder (`--assets DIR`).
    Dir(PathBuf),
}

#[derive(RustEmbed)]
// Relative to the crate (console/): rust-embed reads no variables here.
#[folder = "dist"]
#[allow_missing = true]
struct Dist;

/// Shown at `/` when there is no SPA to serve.
const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Antares console</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Antares console</h1>
<p>The web app of the console is not built into this server.</p>
<p>Build it from the source tree with <code>scripts/build-console</code>, then restart
<code>antares console</code> (or point <code>--assets DIR</code> at a built <code>dist</code>
folder).</p>
<p>The HTTP API works without it: see <code>/api/...</code>.</p>
</body></html>
"#;

fn not_built() -> Response {
    let mut res = Html(NOT_BUILT).into_response();
    no_cache(&mut res);
    res
}

fn no_cache(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// The router serving the SPA (the fallback of the console's router).
pub fn router(assets: &Assets) -> Router {
    match assets {
        Assets::Embedded => Router::new().fallback(embedded),
        Assets::Dir(dir) => {
            let index = dir.join("index.html");
            let fallback = move || {
                let index = index.clone();
                async move {
                    match tokio::fs::read(&index).await {
                        Ok(bytes) => {
                            let mut res = Html(bytes).into_response();
                            no_cache(&mut res);
                            res
                        }
                        Err(_) => not_built(),
                    }
                }
            };
            Router::new().fallback_service(ServeDir::new(dir).fallback(fallback.into_service()))
        }
    }
}

/// Serves an embedded file, else `index.html`, else the page saying how to build.
async fn embedded(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if let Some(file) = Dist::get(path) {
        let mime = file.metadata.mimetype().to_string();
        let mut res = Response::new(Body::from(file.data.into_owned()));
        if let Ok(v) = HeaderValue::from_str(&mime) {
            res.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        if path == "index.html" {
            no_cache(&mut res);
        }
        return res;
    }
    match Dist::get("index.html") {
        Some(index) => {
            let mut res = Html(index.data.into_owned()).into_response();
            no_cache(&mut res);
            res
        }
        None => not_built(),
    }
}
