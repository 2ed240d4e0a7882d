//! The web console: the hand-written single-page app in the repository's `ui/` folder,
//! embedded in the binary at build time and served under `/ui`. The page talks only to
//! this API (`/graphql`, and `/console/UNIT` for a unit's serial console); a
//! Content-Security-Policy keeps it from loading anything from another origin.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Everything the page may load or connect to: this origin only (`'self'` covers the
/// same origin's `ws:` in browsers implementing CSP 3), images drawn into `blob:`/`data:`,
/// inline styles (xterm.js sets its theme in a `<style>` element it creates).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// One embedded file: its path under `/ui/` and its bytes.
macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../../../ui/", $path)) as &[u8])),*]
    };
}

/// The files of `ui/`, as committed (the vendored xterm.js included).
const ASSETS: &[(&str, &[u8])] = assets![
    "index.html",
    "app.css",
    "app.js",
    "gql.js",
    "units.js",
    "terminal.js",
    "storage.js",
    "backups.js",
    "cluster.js",
    "monitoring.js",
    "audit.js",
    "chart.js",
    "vendor/xterm.js",
    "vendor/xterm.css",
];

/// The routes of the console: `/ui` and `/ui/FILE`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route(
            "/ui/{*path}",
            get(|Path(p): Path<String>| async move { asset(&p) }),
        )
}

/// The embedded file at `path`, or 404.
fn asset(path: &str) -> Response {
    let Some((_, bytes)) = ASSETS.iter().find(|(p, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, format!("/ui/{path}: no such file\n")).into_response();
    };
    (
        [
            (CONTENT_TYPE, content_type(path)),
            (CONTENT_SECURITY_POLICY, CSP),
            (CACHE_CONTROL, "no-cache"),
        ],
        *bytes,
    )
        .into_response()
}

/// The content type of a file by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_known_type_and_no_foreign_reference() {
        for (path, bytes) in ASSETS {
            assert_ne!(content_type(path), "application/octet-stream", "{path}");
            if path.starts_with("vendor/") {
                continue;
            }
            let text = std::str::from_utf8(bytes).unwrap();
            for needle in ["http://", "https://", "//cdn", "fonts.googleapis"] {
                assert!(!text.contains(needle), "{path} refers to {needle}");
            }
        }
    }

    #[test]
    fn unknown_files_are_not_found() {
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(asset("index.html").status(), StatusCode::OK);
    }
}
