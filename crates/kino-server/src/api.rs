//! The JSON API under `/api/` that the web app uses (and only it): titles and search, a title's
//! details with codec support and peers, posters, subtitles as WebVTT, play, playback status,
//! watch history and resume positions, settings, sharing, publishers.
//!
//! Every error is `{error, message}` ([`ApiError`]). Writes need the page's token
//! ([`crate::security`]). Catalog text goes out as JSON strings only; the page puts it in the
//! DOM with `textContent`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use kino_catalog::library::{self, TitleHit};
use kino_catalog::sync::CatalogSync;
use kino_catalog::{AssetKind, PublisherKey, Title};
use kino_engine::{AddOptions, Engine, Id20, Placement, TorrentSource, infohash_hex};
use kino_store::{Store, StoreError, now_unix};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span, warn};

use crate::codecs::browser_support;
use crate::settings::{self, AppSettings};
use crate::vtt::{self, SubtitleFormat};
use crate::{ApiError, BoundAddr, DataDirSaving, internal, stream_url_at};

/// How long the title page's peer count may look on the DHT.
const PEER_LOOKUP: Duration = Duration::from_secs(3);
/// Most rows in "Continue watching".
const CONTINUE_LIMIT: i64 = 20;

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
        internal(e)
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
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
        .route("/api/info", get(info))
        .route("/api/titles", get(titles))
        .route("/api/genres", get(genres))
        .route("/api/titles/{key}/{id}", get(title))
        .route("/api/titles/{key}/{id}/peers", get(title_peers))
        .route("/api/poster/{key}/{id}", get(poster))
        .route("/api/subtitles/{key}/{id}/{n}", get(subtitle))
        .route("/api/play", post(play))
        .route("/api/status/{infohash}/{file}", get(status))
        .route("/api/history", get(history).post(save_position))
        .route("/api/history/{key}/{id}", delete(forget_position))
        .route("/api/settings", get(get_settings).put(put_settings))
        .route("/api/settings/data-dir", put(put_data_dir))
        .route("/api/sharing", get(sharing))
        .route("/api/sharing/{infohash}/stop", post(stop_sharing))
        .route("/api/publishers", get(publishers).post(subscribe))
        .route("/api/publishers/refresh", post(refresh))
        .route("/api/publishers/{key}", delete(unsubscribe))
        .route("/api/open", post(open_player))
        .route("/api/{*rest}", get(api_not_found).post(api_not_found))
}

async fn api_not_found() -> ApiError {
    not_found("no such API endpoint")
}

async fn info(State(c): State<Ctx>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "sharing": c.engine.config().share.enabled,
        "catalogs": c.sync.is_some(),
        // Written by the running app's periodic, fully verified update check.
        "update": c.engine.store().setting("update.available").ok().flatten().filter(|m| !m.is_empty()),
    }))
}

fn poster_of(entry_json: &str) -> bool {
    serde_json::from_str::<Title>(entry_json).is_ok_and(|t| t.poster.is_some())
}

fn card(h: &TitleHit) -> Value {
    json!({
        "key": h.public_key,
        "id": h.id,
        "title": h.title,
        "year": h.year,
        "genres": h.genres,
        "publisher": h.publisher_name,
        "licence": h.licence,
        "poster_url": poster_of(&h.entry_json)
            .then(|| format!("/api/poster/{}/{}", h.public_key, h.id)),
    })
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    genre: Option<String>,
    limit: Option<usize>,
}

async fn titles(
    State(c): State<Ctx>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    let words = q.q.unwrap_or_default();
    if words.len() > 512 {
        return Err(invalid("search text is longer than 512 bytes"));
    }
    let genre = q.genre.filter(|g| !g.is_empty());
    let hits = library::search(&c.store, &words, genre.as_deref(), q.limit.unwrap_or(200))?;
    Ok(Json(
        json!({ "titles": hits.iter().map(card).collect::<Vec<_>>() }),
    ))
}

async fn genres(State(c): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let rows: Vec<String> = c.store.with_conn(|conn| {
        let mut st = conn.prepare("SELECT genres FROM titles")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })?;
    let mut set: Vec<String> = Vec::new();
    for g in rows.iter().flat_map(|r| r.split(", ")) {
        if !g.is_empty() && !set.iter().any(|x| x.eq_ignore_ascii_case(g)) {
            set.push(g.to_owned());
        }
    }
    set.sort_by_key(|g| g.to_lowercase());
    set.truncate(100);
    Ok(Json(json!({ "genres": set })))
}

/// A title as held, with where its catalog folder is.
struct Held {
    key: String,
    title: Title,
    publisher_name: String,
    folder: String,
}

fn load_title(store: &Store, key: &str, id: &str) -> Result<Held, ApiError> {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found("no such title"));
    }
    let row: Option<(String, String, String)> = store.with_conn(|conn| {
        conn.query_row(
            "SELECT t.entry_json, c.publisher_name, c.folder FROM titles t
             JOIN catalogs c ON c.public_key = t.public_key
             WHERE t.public_key = ?1 AND t.id = ?2",
            params![key, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
    })?;
    let (entry, publisher_name, folder) = row.ok_or_else(|| not_found("no such title"))?;
    let title: Title = serde_json::from_str(&entry).map_err(internal)?;
    Ok(Held {
        key: key.to_owned(),
        title,
        publisher_name,
        folder,
    })
}

fn stream_infohash(s: &kino_catalog::Stream) -> Option<Id20> {
    s.info_hash().map(Id20::new)
}

#[derive(Serialize)]
struct Resume {
    stream: i64,
    position: f64,
    duration: Option<f64>,
}

fn resume_of(store: &Store, key: &str, id: &str) -> Result<Option<Resume>, ApiError> {
    Ok(store.with_conn(|conn| {
        conn.query_row(
            "SELECT stream, position_secs, duration_secs FROM watch_history
             WHERE public_key = ?1 AND id = ?2",
            params![key, id],
            |r| {
                Ok(Resume {
                    stream: r.get(0)?,
                    position: r.get(1)?,
                    duration: r.get(2)?,
                })
            },
        )
        .optional()
    })?)
}

async fn title(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let h = load_title(&c.store, &key, &id)?;
    let t = &h.title;
    let streams: Vec<Value> = t
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ih = stream_infohash(s);
            let file = s.file_index as usize;
            let probed = ih
                .and_then(|ih| c.engine.playback_status(&ih, file))
                .and_then(|p| p.media);
            let (video, audio, codec_source) = match (&s.video_codec, &s.audio_codec, &probed) {
                (None, None, Some(m)) => (m.video_codecs.clone(), m.audio_codecs.clone(), "probe"),
                (v, a, _) => (
                    v.iter().cloned().collect(),
                    a.iter().cloned().collect(),
                    "catalog",
                ),
            };
            let support = browser_support(&s.mime, &video, &audio);
            let peers_now = ih
                .and_then(|ih| c.engine.transfer_status(&ih))
                .map(|t| t.peers);
            let hex = ih.map(|ih| infohash_hex(&ih)).unwrap_or_default();
            json!({
                "index": i,
                "quality": s.quality,
                "mime": s.mime,
                "size_bytes": s.size_bytes,
                "video_codecs": video,
                "audio_codecs": audio,
                "codec_source": codec_source,
                "browser": support,
                "infohash": hex,
                "file": file,
                "magnet": s.magnet.clone().unwrap_or_else(|| format!("magnet:?xt=urn:btih:{hex}")),
                "stream_url": format!("/stream/{hex}/{file}"),
                "loaded": peers_now.is_some(),
                "peers_now": peers_now,
            })
        })
        .collect();
    let subtitles: Vec<Value> = t
        .subtitles
        .iter()
        .enumerate()
        .map(|(n, s)| {
            json!({
                "language": s.language,
                "url": format!("/api/subtitles/{}/{}/{n}", h.key, t.id),
            })
        })
        .collect();
    let address = PublisherKey::from_hex(&h.key)
        .map(|k| k.address())
        .unwrap_or_default();
    Ok(Json(json!({
        "key": h.key,
        "id": t.id,
        "title": t.title,
        "year": t.year,
        "synopsis": t.synopsis,
        "genres": t.genres,
        "runtime_minutes": t.runtime_minutes,
        "licence": t.licence,
        "poster_url": t.poster.as_ref().map(|_| format!("/api/poster/{}/{}", h.key, t.id)),
        "publisher": { "name": h.publisher_name, "key": h.key, "address": address },
        "streams": streams,
        "subtitles": subtitles,
        "resume": resume_of(&c.store, &h.key, &t.id)?,
    })))
}

async fn title_peers(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let h = load_title(&c.store, &key, &id)?;
    let mut out = Vec::new();
    for (i, s) in h.title.streams.iter().enumerate() {
        let Some(ih) = stream_infohash(s) else {
            continue;
        };
        let peers = match c.engine.transfer_status(&ih) {
            Some(t) if t.peers > 0 => t.peers as usize,
            _ => {
                let mut found: HashSet<SocketAddr> = c.peers.iter().copied().collect();
                if let Some(sync) = &c.sync {
                    found.extend(sync.dht().get_peers(ih.0, PEER_LOOKUP).await);
                }
                found.len()
            }
        };
        out.push(json!({ "index": i, "peers": peers }));
    }
    Ok(Json(json!({ "streams": out })))
}

fn image_type(path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".webp") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

async fn poster(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let h = load_title(&c.store, &key, &id)?;
    let rel = h
        .title
        .poster
        .ok_or_else(|| not_found("this title has no poster"))?;
    let folder = std::path::PathBuf::from(&h.folder);
    let rel2 = rel.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        kino_catalog::read_asset(&folder, "poster", &rel2, AssetKind::Poster)
    })
    .await
    .map_err(internal)?
    .map_err(|e| not_found(&e.to_string()))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(image_type(&rel)),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn subtitle(
    State(c): State<Ctx>,
    Path((key, id, n)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let h = load_title(&c.store, &key, &id)?;
    let n: usize = n
        .trim_end_matches(".vtt")
        .parse()
        .map_err(|_| invalid("malformed subtitle number"))?;
    let sub = h
        .title
        .subtitles
        .get(n)
        .ok_or_else(|| not_found("no such subtitle"))?
        .clone();
    let format = SubtitleFormat::from_name(&sub.path)
        .ok_or_else(|| invalid("subtitles must be .srt or .vtt"))?;
    let folder = std::path::PathBuf::from(&h.folder);
    let path = sub.path.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        kino_catalog::read_asset(&folder, "subtitle", &path, AssetKind::Subtitle)
    })
    .await
    .map_err(internal)?
    .map_err(|e| not_found(&e.to_string()))?;
    let vtt = vtt::convert(&bytes, format).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_subtitles",
            format!("the subtitle file {} was refused: {e}", sub.path),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/vtt; charset=utf-8"),
        )],
        vtt,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayRequest {
    key: String,
    id: String,
    #[serde(default)]
    stream: usize,
}

async fn play(
    State(c): State<Ctx>,
    ApiJson(req): ApiJson<PlayRequest>,
) -> Result<Json<Value>, ApiError> {
    let h = load_title(&c.store, &req.key, &req.id)?;
    let s = h
        .title
        .streams
        .get(req.stream)
        .ok_or_else(|| not_found("no such stream"))?;
    let text = s
        .magnet
        .clone()
        .or_else(|| s.infohash.clone())
        .ok_or_else(|| invalid("the stream names no torrent"))?;
    let source = TorrentSource::parse(&text)?;
    // Added and pinned in one step, so a film larger than the whole cache is not evicted on
    // arrival; once the guard is gone, the player's stream keeps it, and then being the film
    // watched last does (the engine never evicts the most recently used one).
    let (torrent, guard) = c
        .engine
        .add_for_playing(
            &source,
            AddOptions {
                peers: c.peers.to_vec(),
                placement: Placement::Cache,
            },
        )
        .await?;
    let cache_warning = guard.over_cache_limit().map(|o| o.to_string());
    let ih = torrent.infohash();
    let file = s.file_index as usize;
    if torrent.info().files.get(file).is_none_or(|f| f.padding) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_catalog",
            format!("the torrent has no file {file}: the catalog entry is wrong"),
        ));
    }
    let first = c
        .prepared
        .lock()
        .map(|mut p| p.insert((ih, file)))
        .unwrap_or(false);
    if first {
        c.engine.prepare_playback(&ih, file);
    }
    let hex = infohash_hex(&ih);
    Ok(Json(json!({
        "infohash": hex,
        "file": file,
        "mime": s.mime,
        "stream_url": format!("/stream/{hex}/{file}"),
        "resume": resume_of(&c.store, &h.key, &h.title.id)?,
        "cache_warning": cache_warning,
    })))
}

async fn status(
    State(c): State<Ctx>,
    Path((infohash, file)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let ih = kino_engine::parse_infohash(&infohash).ok_or_else(|| invalid("malformed infohash"))?;
    let file: usize = file.parse().map_err(|_| invalid("malformed file index"))?;
    let p = c
        .engine
        .playback_status(&ih, file)
        .ok_or_else(|| not_found("this stream is not loaded"))?;
    let media = p.media.as_ref().map(|m| {
        json!({
            "container": format!("{:?}", m.container),
            "duration_secs": m.duration.map(|d| d.as_secs_f64()),
            "bitrate_bps": m.bitrate_bps,
            "video_codecs": m.video_codecs,
            "audio_codecs": m.audio_codecs,
        })
    });
    Ok(Json(json!({
        "position": p.position,
        "buffered_bytes": p.buffered_bytes,
        "buffered_secs": p.buffered_secs,
        "down_bps": p.transfer.down_bps,
        "up_bps": p.transfer.up_bps,
        "peers": p.transfer.peers,
        "have_bytes": p.transfer.have_bytes,
        "total_bytes": p.transfer.total_bytes,
        "finished": p.transfer.finished,
        "rejected_pieces": p.transfer.rejected_pieces,
        "problem": p.transfer.problem.map(|x| x.code()),
        "problem_message": p.transfer.problem.map(|x| x.message()),
        "media": media,
    })))
}

/// A "Continue watching" row: key, id, position, duration, title, year, publisher, poster?
type ContinueRow = (
    String,
    String,
    f64,
    Option<f64>,
    String,
    Option<i64>,
    String,
    bool,
);

async fn history(State(c): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let rows: Vec<ContinueRow> = c.store.with_conn(|conn| {
        let mut st = conn.prepare(
            "SELECT h.public_key, h.id, h.position_secs, h.duration_secs, t.title, t.year,
                        c.publisher_name, t.poster IS NOT NULL
                 FROM watch_history h
                 JOIN titles t ON t.public_key = h.public_key AND t.id = h.id
                 JOIN catalogs c ON c.public_key = h.public_key
                 WHERE h.position_secs >= 2
                   AND (h.duration_secs IS NULL OR h.position_secs < h.duration_secs * 0.95)
                 ORDER BY h.updated_at DESC LIMIT ?1",
        )?;
        let rows = st.query_map([CONTINUE_LIMIT], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?;
        rows.collect()
    })?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(
            |(key, id, position, duration, title, year, publisher, has_poster)| {
                json!({
                    "key": key, "id": id, "position": position, "duration": duration,
                    "title": title, "year": year, "publisher": publisher,
                    "poster_url": has_poster.then(|| format!("/api/poster/{key}/{id}")),
                })
            },
        )
        .collect();
    Ok(Json(json!({ "continue": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PositionRequest {
    key: String,
    id: String,
    #[serde(default)]
    stream: u32,
    position: f64,
    duration: Option<f64>,
}

async fn save_position(
    State(c): State<Ctx>,
    ApiJson(req): ApiJson<PositionRequest>,
) -> Result<Json<Value>, ApiError> {
    let sane = |x: f64| x.is_finite() && (0.0..1e7).contains(&x);
    if !sane(req.position) || req.duration.is_some_and(|d| !sane(d)) {
        return Err(invalid("position and duration are seconds from 0 to 10^7"));
    }
    load_title(&c.store, &req.key, &req.id)?;
    c.store.with_conn(|conn| {
        conn.execute(
            "INSERT INTO watch_history (public_key, id, stream, position_secs, duration_secs,
                updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(public_key, id) DO UPDATE SET stream = excluded.stream,
                position_secs = excluded.position_secs, duration_secs = excluded.duration_secs,
                updated_at = excluded.updated_at",
            params![
                req.key,
                req.id,
                req.stream,
                req.position,
                req.duration,
                now_unix()
            ],
        )
    })?;
    Ok(Json(json!({ "saved": true })))
}

async fn forget_position(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let n = c.store.with_conn(|conn| {
        conn.execute(
            "DELETE FROM watch_history WHERE public_key = ?1 AND id = ?2",
            params![key, id],
        )
    })?;
    Ok(Json(json!({ "removed": n > 0 })))
}

async fn get_settings(State(c): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let effective = AppSettings::from_policy(&c.engine.config().share);
    let saved = settings::load(&c.store)?.unwrap_or(effective);
    Ok(Json(json!({
        "settings": saved,
        "effective": effective,
        "restart_needed": saved != effective,
        "data_dir": c.engine.config().data_dir.to_string_lossy(),
    })))
}

async fn put_settings(
    State(c): State<Ctx>,
    ApiJson(new): ApiJson<AppSettings>,
) -> Result<Json<Value>, ApiError> {
    new.validate().map_err(invalid)?;
    settings::save(&c.store, &new)?;
    let effective = AppSettings::from_policy(&c.engine.config().share);
    Ok(Json(json!({
        "settings": new,
        "effective": effective,
        "restart_needed": new != effective,
        "data_dir": c.engine.config().data_dir.to_string_lossy(),
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DataDirBody {
    path: String,
}

/// Saves a new data folder for the next start (it holds the database itself, so it cannot be
/// switched while running). The folder must be usable ([`settings::check_data_dir`]); the
/// demo refuses (409): it never changes the user's settings.
async fn put_data_dir(
    State(c): State<Ctx>,
    ApiJson(body): ApiJson<DataDirBody>,
) -> Result<Json<Value>, ApiError> {
    let path = std::path::PathBuf::from(body.path.trim());
    if body.path.len() > 4096 || !path.is_absolute() {
        return Err(invalid("the data folder must be an absolute path"));
    }
    let setter = match &c.data_dir {
        DataDirSaving::Setter(setter) => setter.clone(),
        DataDirSaving::Nowhere => {
            return Err(invalid(
                "this Kino has no config file to save the data folder in; use --data-dir",
            ));
        }
        DataDirSaving::Demo => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "demo",
                "the demo does not change your settings: run `kino` to choose the data folder",
            ));
        }
    };
    let checked = path.clone();
    tokio::task::spawn_blocking(move || settings::check_data_dir(&checked))
        .await
        .map_err(internal)?
        .map_err(|e| invalid(e.to_string()))?;
    let message = setter(&path).map_err(invalid)?;
    Ok(Json(json!({
        "data_dir": c.engine.config().data_dir.to_string_lossy(),
        "data_dir_next": path.to_string_lossy(),
        "message": message,
    })))
}

/// Title names by infohash (the catalog entries that name it), and catalog torrents.
fn names_for(store: &Store, hex: &str) -> Result<Option<String>, StoreError> {
    store.with_conn(|conn| {
        let title: Option<String> = conn
            .query_row(
                "SELECT title FROM titles WHERE instr(lower(entry_json), ?1) > 0 LIMIT 1",
                [hex],
                |r| r.get(0),
            )
            .optional()?;
        if title.is_some() {
            return Ok(title);
        }
        conn.query_row(
            "SELECT 'Catalog of ' || publisher_name FROM catalogs WHERE infohash = ?1",
            [hex],
            |r| r.get(0),
        )
        .optional()
    })
}

async fn sharing(State(c): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let mut items = Vec::new();
    for rec in c.store.torrents()? {
        let live =
            kino_engine::parse_infohash(&rec.infohash).and_then(|ih| c.engine.transfer_status(&ih));
        let uploaded = live
            .as_ref()
            .map_or(rec.uploaded_bytes, |t| t.uploaded_total);
        let ratio = if rec.total_bytes == 0 {
            0.0
        } else {
            uploaded as f64 / rec.total_bytes as f64
        };
        items.push(json!({
            "infohash": rec.infohash,
            "name": rec.name,
            "title": names_for(&c.store, &rec.infohash)?,
            "total_bytes": rec.total_bytes,
            "uploaded_bytes": uploaded,
            "ratio": ratio,
            "peers": live.as_ref().map_or(0, |t| t.peers),
            "up_bps": live.as_ref().map_or(0.0, |t| t.up_bps),
            "sharing": live.as_ref().is_some_and(|t| t.sharing) && !rec.share_stopped,
            "stopped": rec.share_stopped,
            "last_watched_at": rec.last_watched_at,
        }));
    }
    Ok(Json(json!({
        "enabled": c.engine.config().share.enabled,
        "torrents": items,
    })))
}

async fn stop_sharing(
    State(c): State<Ctx>,
    Path(infohash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ih = kino_engine::parse_infohash(&infohash).ok_or_else(|| invalid("malformed infohash"))?;
    let hex = infohash_hex(&ih);
    if c.store.torrent(&hex)?.is_none() {
        return Err(not_found("no such torrent"));
    }
    c.engine.stop_sharing(&ih).await?;
    Ok(Json(json!({ "stopped": true })))
}

async fn publishers(State(c): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let held = library::held_catalogs(&c.store)?;
    let items: Vec<Value> = library::subscriptions(&c.store)?
        .into_iter()
        .map(|s| {
            let h = held.iter().find(|h| h.public_key == s.public_key);
            let address = PublisherKey::from_hex(&s.public_key)
                .map(|k| k.address())
                .unwrap_or_default();
            json!({
                "key": s.public_key,
                "address": address,
                "name": h.map(|h| h.publisher_name.clone()),
                "description": h.map(|h| h.publisher_description.clone()),
                "titles": h.map_or(0, |h| h.titles),
                "seq": h.map(|h| h.seq),
                "updated_at": h.map(|h| h.updated_at),
                "last_refresh_at": s.last_refresh_at,
                "last_error": s.last_error,
            })
        })
        .collect();
    Ok(Json(
        json!({ "publishers": items, "catalogs": c.sync.is_some() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    address: String,
}

fn spawn_refresh(c: &Ctx, key: PublisherKey, salt: Option<Vec<u8>>) {
    let Some(sync) = c.sync.clone() else { return };
    let cancel = c.cancel.clone();
    c.tasks.spawn(
        async move {
            tokio::select! {
                r = sync.refresh(&key, salt.as_deref()) => {
                    if let Err(e) = r {
                        warn!(error = %e, "refresh from the web app failed");
                    }
                }
                _ = cancel.cancelled() => {}
            }
        }
        .instrument(info_span!("web_refresh")),
    );
}

async fn subscribe(
    State(c): State<Ctx>,
    ApiJson(req): ApiJson<SubscribeRequest>,
) -> Result<Response, ApiError> {
    if req.address.len() > 4096 {
        return Err(invalid("the address is too long"));
    }
    let t = kino_catalog::parse_subscribe_target(req.address.trim())
        .map_err(|e| invalid(e.to_string()))?;
    library::subscribe(&c.store, &t.key, t.salt.as_deref())?;
    let address = t.key.address();
    let refreshing = c.sync.is_some();
    spawn_refresh(&c, t.key, t.salt);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "address": address, "refreshing": refreshing })),
    )
        .into_response())
}

async fn refresh(State(c): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let subs = library::subscriptions(&c.store)?;
    let mut n = 0;
    for s in subs {
        if let Ok(key) = PublisherKey::from_hex(&s.public_key) {
            spawn_refresh(&c, key, s.salt);
            n += 1;
        }
    }
    Ok(Json(
        json!({ "refreshing": if c.sync.is_some() { n } else { 0 } }),
    ))
}

async fn unsubscribe(
    State(c): State<Ctx>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let k = PublisherKey::from_hex(&key)
        .or_else(|_| kino_catalog::parse_address(&key))
        .map_err(|e| invalid(e.to_string()))?;
    if !library::unsubscribe(&c.store, &k)? {
        return Err(not_found("not subscribed to this publisher"));
    }
    Ok(Json(json!({ "unsubscribed": k.address() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    player: String,
    infohash: String,
    file: usize,
}

async fn open_player(
    State(c): State<Ctx>,
    bound: Option<Extension<BoundAddr>>,
    ApiJson(req): ApiJson<OpenRequest>,
) -> Result<Json<Value>, ApiError> {
    let program = match req.player.as_str() {
        "mpv" => "mpv",
        "vlc" => "vlc",
        _ => return Err(invalid("player must be \"mpv\" or \"vlc\"")),
    };
    let ih =
        kino_engine::parse_infohash(&req.infohash).ok_or_else(|| invalid("malformed infohash"))?;
    if c.engine.torrent(&ih).is_none() {
        return Err(not_found("this stream is not loaded: press play first"));
    }
    // The player connects to the address Kino is bound to; nothing of the request (its Host
    // names any loopback address) goes into the URL.
    let Some(Extension(BoundAddr(addr))) = bound else {
        return Err(internal("the server's bound address is unknown"));
    };
    let url = stream_url_at(addr, &infohash_hex(&ih), req.file);
    let mut child = tokio::process::Command::new(program)
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "player_missing",
                format!("cannot start {program}: {e}; is it installed?"),
            )
        })?;
    let cancel = c.cancel.clone();
    c.tasks.spawn(
        async move {
            tokio::select! {
                _ = child.wait() => {}
                _ = cancel.cancelled() => { let _ = child.kill().await; }
            }
        }
        .instrument(info_span!("external_player")),
    );
    Ok(Json(json!({ "started": program, "url": url })))
}
