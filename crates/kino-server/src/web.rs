//! The web app's static files: the `web/` folder, embedded in the binary at build time
//! (no front-end build step, nothing fetched from outside). `/` is the single page; the
//! per-launch token is written into its `<meta name="kino-token">`. Everything else is served
//! from `/assets/…` by path lookup in the embedded folder.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use crate::ApiError;
use crate::security::Token;

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// The placeholder in index.html replaced by the token.
const TOKEN_PLACEHOLDER: &str = "__KINO_TOKEN__";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// `GET /`: the app page, with the token.
pub async fn index(State(token): State<Token>) -> Response {
    let Some(html) = WEB.get_file("index.html").and_then(|f| f.contents_utf8()) else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "index.html missing",
        )
        .into_response();
    };
    let body = html.replace(TOKEN_PLACEHOLDER, token.as_str());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// `GET /assets/{*path}`: an embedded file.
pub async fn asset(Path(path): Path<String>) -> Response {
    let bad = path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..");
    match (!bad).then(|| WEB.get_file(&path)).flatten() {
        Some(f) if path != "index.html" => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&path)),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            f.contents(),
        )
            .into_response(),
        _ => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file").into_response(),
    }
}

/// Names of the embedded files (tests).
pub fn embedded_files() -> Vec<String> {
    fn walk(d: &Dir<'_>, out: &mut Vec<String>) {
        for f in d.files() {
            out.push(f.path().to_string_lossy().into_owned());
        }
        for sub in d.dirs() {
            walk(sub, out);
        }
    }
    let mut v = Vec::new();
    walk(&WEB, &mut v);
    v
}
