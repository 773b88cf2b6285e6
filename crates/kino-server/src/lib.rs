//! Kino's local HTTP server.
//!
//! `GET`/`HEAD /stream/{infohash}/{file}` serves one file of a torrent while it downloads,
//! with single `Range` requests (`206` + `Content-Range`, `416` for unsatisfiable ranges),
//! `Accept-Ranges`, `Content-Length` and a `Content-Type` from the file name. Each response
//! body is a [`kino_engine::KinoStream`]: it waits only for the piece under its position, and
//! its position steers what the engine downloads next, so a player's seek re-aims the download.
//! A response whose reader asks for nothing during `stream_idle_timeout` releases its stream
//! slot and ends ([`kino_engine::EngineConfig::stream_idle_timeout`]).
//!
//! The server binds 127.0.0.1 by default and refuses requests whose `Host` is not a loopback
//! name with the port it is bound to (DNS rebinding); [`Server::bind`] hands the bound address
//! to every request. Every answer carries the security headers of [`security`], and every
//! error, unknown paths (404) and wrong methods (405) included, is JSON `{error, message}`
//! with a fitting status code.
//!
//! [`WebApp`] adds the user-facing app on the same server: the embedded single page (`/`,
//! `/assets/…`, from the `web/` folder), the JSON API under `/api/` ([`api`]), subtitles as
//! WebVTT ([`vtt`]), codec support ([`codecs`]), saved settings ([`settings`]), and the
//! defences of [`security`]: per-launch token on writes, no CORS, a Content-Security-Policy.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod api;
pub mod codecs;
mod idle;
mod range;
pub mod security;
pub mod settings;
pub mod vtt;
pub mod web;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use kino_engine::{Engine, EngineError, parse_infohash};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use range::{ByteRange, RangeError, parse_range};

/// A JSON error response: `{error, message}` with a stable `error` code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with a status, a stable code and a message for people.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match &e {
            EngineError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            EngineError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            EngineError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            EngineError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            EngineError::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, kino_core::Report(&e).to_string())
    }
}

/// The body of every error answer.
#[derive(serde::Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
}

/// The address the server is bound to, which [`Server::bind`] puts into every request: the
/// Host and Origin checks compare ports with it, and player URLs are built from it (never
/// from the request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoundAddr(pub(crate) SocketAddr);

/// The stream routes, without the layers of [`protect`].
fn stream_routes(engine: Engine) -> Router {
    Router::new()
        .route(
            "/stream/{infohash}/{file}",
            get(stream_file).head(stream_file),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(AppState { engine })
}

/// What every route gets, whatever router it came from: JSON `{error, message}` for unknown
/// paths (404) and wrong methods (405), the Host check, and the security headers on every
/// answer (refusals included).
fn protect(routes: Router) -> Router {
    routes
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn(require_loopback_host))
        .layer(middleware::from_fn(security::security_headers))
}

async fn unknown_path() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page")
}

async fn wrong_method(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}

/// The router: stream routes plus the Host check, JSON errors and security headers. Serve it
/// with [`Server::bind`]: requests carry the bound address only there, and without it every
/// request is refused.
pub fn router(engine: Engine) -> Router {
    protect(stream_routes(engine))
}

/// What the web app needs besides the engine.
#[derive(Clone, Default)]
pub struct AppOptions {
    /// The per-launch token (a random one when `None`).
    pub token: Option<security::Token>,
    /// Peers handed to every torrent the app adds (the demo's local seeder), besides the
    /// DHT and PEX.
    pub peers: Vec<SocketAddr>,
    /// Catalog sync, for subscribing and refreshing from the Publishers page (`None`: the
    /// page can still list and unsubscribe; new subscriptions are fetched by the next refresh).
    pub sync: Option<kino_catalog::sync::CatalogSync>,
    /// Where a data folder chosen on the Settings page is saved.
    pub data_dir: DataDirSaving,
}

/// Saves the data folder the user chose; returns a message for people, or why it failed.
pub type DataDirSetter =
    std::sync::Arc<dyn Fn(&std::path::Path) -> Result<String, String> + Send + Sync>;

/// Where `PUT /api/settings/data-dir` saves the data folder the user chose (after checking
/// that it is a usable folder: [`settings::check_data_dir`]).
#[derive(Clone, Default)]
pub enum DataDirSaving {
    /// Nowhere: there is no config file; the answer (400) says to use `--data-dir`.
    #[default]
    Nowhere,
    /// With this function (the binary writes its config file).
    Setter(DataDirSetter),
    /// Refused with 409: this is `kino demo`, which never changes the user's settings.
    Demo,
}

/// The web app: stream routes, the embedded pages and the JSON API on one router.
pub struct WebApp {
    router: Router,
    token: security::Token,
    tasks: tokio_util::task::TaskTracker,
    cancel: CancellationToken,
}

impl WebApp {
    /// Builds the app over `engine`.
    pub fn new(engine: Engine, opts: AppOptions) -> std::io::Result<WebApp> {
        let token = match opts.token {
            Some(t) => t,
            None => security::Token::generate()?,
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let cancel = CancellationToken::new();
        let ctx = api::Ctx {
            store: engine.store().clone(),
            engine: engine.clone(),
            peers: std::sync::Arc::new(opts.peers),
            sync: opts.sync,
            data_dir: opts.data_dir,
            prepared: Default::default(),
            tasks: tasks.clone(),
            cancel: cancel.clone(),
        };
        let pages = Router::new()
            .route("/", get(web::index))
            .route("/assets/{*path}", get(web::asset))
            .with_state(token.clone());
        let app = api::routes()
            .with_state(ctx)
            .merge(pages)
            .layer(middleware::from_fn_with_state(
                token.clone(),
                security::require_token,
            ));
        Ok(WebApp {
            router: protect(stream_routes(engine).merge(app)),
            token,
            tasks,
            cancel,
        })
    }

    /// The router to serve (with [`Server::bind`]).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The per-launch token.
    pub fn token(&self) -> &security::Token {
        &self.token
    }

    /// Cancels and awaits the app's background tasks (refreshes, external players).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Refuses requests whose `Host` header names anything but this machine's loopback names with
/// the port the server is bound to (a page on another site must not be able to reach the
/// server through DNS rebinding, and another local server's name is not ours).
async fn require_loopback_host(req: Request, next: Next) -> Response {
    let Some(BoundAddr(bound)) = req.extensions().get::<BoundAddr>().copied() else {
        return internal("the server's bound address is unknown (serve with Server::bind)")
            .into_response();
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_loopback_host(host, bound.port()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!(
                "requests for host {host:?} are not served: use 127.0.0.1:{}",
                bound.port()
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether a `Host` header value (or the `host[:port]` of an origin) names this server:
/// `localhost`, a `127.x.x.x` address or `[::1]`, with exactly `port` after the colon. The
/// port may be left out only when `port` is 80, HTTP's default.
pub fn is_loopback_host(host: &str, port: u16) -> bool {
    // The name and the port text after its colon, if any.
    let (name, given_port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => (ip, Some(p)),
            None if after.is_empty() => (ip, None),
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, p)) => (name, Some(p)),
            None => (host, None),
        }
    };
    let port_ok = match given_port {
        Some(p) => p == port.to_string(),
        None => port == 80,
    };
    port_ok
        && (name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
}

async fn stream_file(
    State(state): State<AppState>,
    Path((infohash, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ih = parse_infohash(&infohash).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "malformed infohash",
        )
    })?;
    let file: usize = file.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "malformed file index",
        )
    })?;
    let torrent = state.engine.torrent(&ih).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this torrent is not loaded",
        )
    })?;
    let entry = torrent
        .info()
        .files
        .get(file)
        .filter(|f| !f.padding)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file"))?;
    let len = entry.len;
    let mime = kino_media::mime_for_name(&entry.path.to_string_lossy());

    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(v) => match parse_range(v, len) {
            Ok(r) => r,
            Err(RangeError::Unsatisfiable) => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .header(header::ACCEPT_RANGES, "bytes")
                    .body(Body::empty())
                    .map_err(internal);
            }
        },
    };
    let (status, start, count) = match range {
        Some(r) => (
            StatusCode::PARTIAL_CONTENT,
            r.start,
            r.end_inclusive - r.start + 1,
        ),
        None => (StatusCode::OK, 0, len),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, HeaderValue::from_static(mime))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, count)
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(r) = range {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{len}", r.start, r.end_inclusive),
        );
    }
    if method == Method::HEAD || count == 0 {
        return builder.body(Body::empty()).map_err(internal);
    }
    let mut stream = state.engine.open_stream(&ih, file).await?;
    if start > 0 {
        stream
            .seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
    }
    debug!(file, start, count, "serving stream");
    // A player that stops reading gives its stream slot back after the idle timeout.
    let idle = state.engine.config().stream_idle_timeout;
    let reader = idle::with_idle_timeout(stream.take(count), idle);
    let body = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
    builder.body(Body::from_stream(body)).map_err(internal)
}

/// The URL of a stream on the server bound to `addr`.
pub(crate) fn stream_url_at(addr: SocketAddr, infohash: &str, file: usize) -> String {
    format!("http://{addr}/stream/{infohash}/{file}")
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `addr` (use 127.0.0.1) and serves `router` until [`Server::shutdown`].
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = router.layer(Extension(BoundAddr(addr)));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Ok(Server { addr, cancel, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of a stream.
    pub fn stream_url(&self, infohash: &str, file: usize) -> String {
        stream_url_at(self.addr, infohash, file)
    }

    /// Stops accepting, ends open responses, and waits for the server task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        // Open streaming bodies would keep a graceful shutdown waiting; give them a moment,
        // then abort.
        let mut task = self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "127.1.2.3:8080",
        ] {
            assert!(is_loopback_host(ok, 8080), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "",
            "[::2]:8080",
            "localhost.evil.com:8080",
            "[localhost]:8080",
            "[::1]x:8080",
        ] {
            assert!(!is_loopback_host(bad, 8080), "{bad}");
        }
    }

    /// Issue 12, D9: the Host check ignored what follows the last `:`.
    #[test]
    fn host_port_must_be_the_bound_port() {
        for bad in [
            "127.0.0.1:8081",
            "127.0.0.1:1",
            "localhost:80",
            "[::1]:99",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:",
            "127.0.0.1:08080",
            "127.0.0.1:8080x",
            "127.0.0.1:8080:8080",
            "127.0.0.1:+8080",
            "[::1]",
        ] {
            assert!(!is_loopback_host(bad, 8080), "{bad}");
        }
        // Without a port, a Host means HTTP's default port: only a server on 80 is named.
        assert!(is_loopback_host("127.0.0.1", 80));
        assert!(is_loopback_host("[::1]", 80));
        assert!(!is_loopback_host("127.0.0.1:8080", 80));
    }
}
