//! The built web apps on the appliance's listener, from the folder Vite writes
//! (`appliance/web/dist`, or `storage.web_dir`): each app's page at `/<app>/` and under it
//! (the app routes in the browser; the page is never cached, so a new build takes effect at
//! the next load), and the hashed files Vite names at `/assets/<name>`, cached for a year and
//! sent precompressed (`.br`, `.gz` beside each file) when the client accepts it. Only plain
//! file names under `assets/` are served: no path from a request reaches the file system.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The web apps this build has, by their entry page (`<app>.html`).
pub const APPS: &[&str] = &["centre"];

/// Where the built web apps are: `storage.web_dir`, else the folder beside the sources this
/// binary was built from.
pub fn dir(configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dist"),
        Path::to_path_buf,
    )
}

/// Whether `dir` holds a built consultation centre.
pub fn built(dir: &Path) -> bool {
    dir.join("centre.html").is_file()
}

/// The site's icon (a white cross on the hospital blue), for the pages and for what browsers
/// ask for on their own (`/favicon.ico`, e.g. beside a PDF in a tab).
pub const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"6\" fill=\"#1d5fa8\"/>\
<path d=\"M13 6h6v7h7v6h-7v7h-6v-7H6v-6h7z\" fill=\"#fff\"/></svg>";

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON,
    )
        .into_response()
}

/// The routes for the apps in `dir`: `/` goes to the consultation centre.
pub fn routes(dir: PathBuf) -> Router {
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::temporary("/centre/") }))
        .route("/favicon.ico", get(icon))
        .route("/favicon.svg", get(icon))
        .route("/assets/{name}", get(asset));
    for app in APPS {
        let page = format!("{app}.html");
        let entry = move |State(dir): State<PathBuf>| {
            let page = page.clone();
            async move { page_file(&dir, &page).await }
        };
        router = router
            .route(
                &format!("/{app}"),
                get(move || async move { Redirect::permanent(&format!("/{app}/")) }),
            )
            .route(&format!("/{app}/"), get(entry.clone()))
            .route(&format!("/{app}/{{*route}}"), get(entry));
    }
    router.with_state(dir)
}

/// An app's page, never cached (it names the hashed files of the current build).
async fn page_file(dir: &Path, page: &str) -> Response {
    match tokio::fs::read(dir.join(page)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(page, error = %e, "web app page missing");
            (StatusCode::NOT_FOUND, "web app not built: run scripts/run").into_response()
        }
    }
}

/// A plain file name Vite may write under `assets/` (letters, digits, `.`, `-`, `_`; no
/// leading dot).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "json" => "application/json",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Which precompressed forms the client takes, best first.
fn encodings(headers: &HeaderMap) -> Vec<(&'static str, &'static str)> {
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let takes = |coding: &str| {
        accept.split(',').any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim();
            let refused = it.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case(coding) && !refused
        })
    };
    let mut out = Vec::new();
    if takes("br") {
        out.push(("br", "br"));
    }
    if takes("gzip") {
        out.push(("gzip", "gz"));
    }
    out
}

async fn asset(
    State(dir): State<PathBuf>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !plain_name(&name) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = dir.join("assets").join(&name);
    let mut headers_out = HeaderMap::new();
    headers_out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    headers_out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers_out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    for (coding, suffix) in encodings(&headers) {
        let mut file = path.clone().into_os_string();
        file.push(format!(".{suffix}"));
        if let Ok(bytes) = tokio::fs::read(&file).await {
            headers_out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
            return (headers_out, bytes).into_response();
        }
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => (headers_out, bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_the_disk() {
        assert!(plain_name("centre-Bx81_a.js"));
        for bad in ["", "../centre.html", ".env", "a/b.js", "a\\b.js", "%2e%2e"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn precompressed_forms_follow_accept_encoding() {
        let mut h = HeaderMap::new();
        assert!(encodings(&h).is_empty());
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert_eq!(encodings(&h), [("br", "br"), ("gzip", "gz")]);
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=0, gzip;q=0.8"),
        );
        assert_eq!(encodings(&h), [("gzip", "gz")]);
    }
}
