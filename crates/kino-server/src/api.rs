//! The JSON API under `/api/` that the web app uses (and only it), one module per resource:
//! [`titles`] (lists, search, genres, a title's details with codec support and peers, posters,
//! subtitles as WebVTT), [`playback`] (play, playback status, external players), [`history`]
//! (resume positions, "Continue watching"), [`settings`] (app info, sharing settings, the data
//! folder), [`sharing`] (torrents kept and seeded) and [`publishers`] (subscriptions). Every
//! answer is a typed body from [`types`].
//!
//! Every error is `{error, message}` ([`ApiError`]). Writes need the page's token
//! ([`crate::security`]). Catalog text goes out as JSON strings only; the page puts it in the
//! DOM with `textContent`. SQL lives in the crates that own the tables (`kino-store`,
//! `kino_catalog::library`) and runs through [`blocking`], never on the runtime's threads.

mod history;
mod playback;
mod publishers;
mod settings;
mod sharing;
mod titles;
mod types;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Json, Query};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use kino_catalog::library::{self, StoredTitle};
use kino_catalog::sync::CatalogSync;
use kino_engine::{Engine, Id20};
use kino_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{ApiError, internal};

#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) engine: Engine,
    pub(crate) store: Arc<Store>,
    pub(crate) peers: Arc<Vec<SocketAddr>>,
    pub(crate) sync: Option<CatalogSync>,
    pub(crate) data_dir: crate::DataDirSaving,
    pub(crate) prepared: Arc<Mutex<HashSet<(Id20, usize)>>>,
    pub(crate) tasks: TaskTracker,
    pub(crate) cancel: CancellationToken,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        internal(kino_core::Report(&e))
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
}

/// Runs blocking work (file reads, folder checks) on tokio's blocking pool, never on the
/// runtime's threads.
async fn run_blocking<R, E>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, ApiError>
where
    R: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(Into::into)
}

/// Runs `f` with the database on tokio's blocking pool: every SQLite call of a handler goes
/// through here (a query waits for the store's lock and for the disk).
async fn blocking<R, E>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<R, E> + Send + 'static,
) -> Result<R, ApiError>
where
    R: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let store = store.clone();
    run_blocking(move || f(&store)).await
}

/// The held title `id` of publisher `key` (hex), or 404. Call it inside [`blocking`].
fn load_title(store: &Store, key: &str, id: &str) -> Result<StoredTitle, ApiError> {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found("no such title"));
    }
    library::stored_title(store, key, id)?.ok_or_else(|| not_found("no such title"))
}

/// The URL of a title's poster.
fn poster_url(key: &str, id: &str) -> String {
    format!("/api/poster/{key}/{id}")
}

/// `Json<T>` whose rejections (no JSON content type, malformed or unknown fields) are
/// `{error, message}` like every other error.
struct ApiJson<T>(T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e| invalid(e.body_text()))
    }
}

/// `Query<T>` with `{error, message}` rejections.
struct ApiQuery<T>(T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| invalid(e.body_text()))
    }
}

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/api/info", get(settings::info))
        .route("/api/titles", get(titles::list))
        .route("/api/genres", get(titles::genres))
        .route("/api/titles/{key}/{id}", get(titles::details))
        .route("/api/titles/{key}/{id}/peers", get(titles::peers))
        .route("/api/poster/{key}/{id}", get(titles::poster))
        .route("/api/subtitles/{key}/{id}/{n}", get(titles::subtitle))
        .route("/api/play", post(playback::play))
        .route("/api/status/{infohash}/{file}", get(playback::status))
        .route("/api/open", post(playback::open_player))
        .route("/api/history", get(history::list).post(history::save))
        .route("/api/history/{key}/{id}", delete(history::forget))
        .route("/api/settings", get(settings::get).put(settings::put))
        .route("/api/settings/data-dir", put(settings::put_data_dir))
        .route("/api/sharing", get(sharing::list))
        .route("/api/sharing/{infohash}/stop", post(sharing::stop))
        .route(
            "/api/publishers",
            get(publishers::list).post(publishers::subscribe),
        )
        .route("/api/publishers/refresh", post(publishers::refresh))
        .route("/api/publishers/{key}", delete(publishers::unsubscribe))
        .route("/api/{*rest}", get(api_not_found).post(api_not_found))
}

async fn api_not_found() -> ApiError {
    not_found("no such API endpoint")
}
