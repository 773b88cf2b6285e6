//! Titles: the list and search, genres, a title's details (streams with codec support and
//! peers now, subtitles, resume position), its peers on the DHT, its poster and subtitles.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kino_catalog::library::{self, TitleHit};
use kino_catalog::{AssetKind, PublisherKey, Stream};
use kino_engine::{Id20, infohash_hex};
use serde::Deserialize;

use super::types::{
    CodecSource, Genres, PublisherRef, StreamDetails, StreamPeers, SubtitleRef, TitleCard,
    TitleDetails, TitlePeers, Titles,
};
use super::{ApiQuery, Ctx, blocking, invalid, load_title, not_found, poster_url, run_blocking};
use crate::ApiError;
use crate::codecs::browser_support;
use crate::vtt::{self, SubtitleFormat};

/// How long the title page's peer count may look on the DHT.
const PEER_LOOKUP: Duration = Duration::from_secs(3);
/// Most genres listed.
const MAX_GENRES: usize = 100;

fn card(h: TitleHit) -> TitleCard {
    let poster_url = h.poster.is_some().then(|| poster_url(&h.public_key, &h.id));
    TitleCard {
        key: h.public_key,
        id: h.id,
        title: h.title,
        year: h.year,
        genres: h.genres,
        publisher: h.publisher_name,
        licence: h.licence,
        poster_url,
    }
}

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
    genre: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/titles?q=&genre=&limit=`: full-text search (all titles without `q`).
pub(super) async fn list(
    State(c): State<Ctx>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Titles>, ApiError> {
    let words = q.q.unwrap_or_default();
    if words.len() > 512 {
        return Err(invalid("search text is longer than 512 bytes"));
    }
    let genre = q.genre.filter(|g| !g.is_empty());
    let limit = q.limit.unwrap_or(200);
    let hits = blocking(&c.store, move |s| {
        library::search(s, &words, genre.as_deref(), limit)
    })
    .await?;
    Ok(Json(Titles {
        titles: hits.into_iter().map(card).collect(),
    }))
}

/// `GET /api/genres`.
pub(super) async fn genres(State(c): State<Ctx>) -> Result<Json<Genres>, ApiError> {
    let genres = blocking(&c.store, |s| library::genres(s, MAX_GENRES)).await?;
    Ok(Json(Genres { genres }))
}

fn stream_infohash(s: &Stream) -> Option<Id20> {
    s.info_hash().map(Id20::new)
}

fn stream_details(c: &Ctx, index: usize, s: &Stream) -> StreamDetails {
    let ih = stream_infohash(s);
    let file = s.file_index as usize;
    let probed = ih
        .and_then(|ih| c.engine.playback_status(&ih, file))
        .and_then(|p| p.media);
    let (video_codecs, audio_codecs, codec_source) = match (&s.video_codec, &s.audio_codec, probed)
    {
        (None, None, Some(m)) => (m.video_codecs, m.audio_codecs, CodecSource::Probe),
        (v, a, _) => (
            v.iter().cloned().collect(),
            a.iter().cloned().collect(),
            CodecSource::Catalog,
        ),
    };
    let browser = browser_support(&s.mime, &video_codecs, &audio_codecs);
    let peers_now = ih
        .and_then(|ih| c.engine.transfer_status(&ih))
        .map(|t| t.peers);
    let hex = ih.map(|ih| infohash_hex(&ih)).unwrap_or_default();
    StreamDetails {
        index,
        quality: s.quality.clone(),
        mime: s.mime.clone(),
        size_bytes: s.size_bytes,
        video_codecs,
        audio_codecs,
        codec_source,
        browser,
        magnet: s
            .magnet
            .clone()
            .unwrap_or_else(|| format!("magnet:?xt=urn:btih:{hex}")),
        stream_url: format!("/stream/{hex}/{file}"),
        infohash: hex,
        file,
        loaded: peers_now.is_some(),
        peers_now,
    }
}

/// `GET /api/titles/{key}/{id}`.
pub(super) async fn details(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<TitleDetails>, ApiError> {
    let (h, resume) = blocking(&c.store, move |s| {
        let h = load_title(s, &key, &id)?;
        let resume = s.watch_position(&h.public_key, &h.title.id)?;
        Ok::<_, ApiError>((h, resume))
    })
    .await?;
    let t = h.title;
    let key = h.public_key;
    let streams = t
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| stream_details(&c, i, s))
        .collect();
    let subtitles = t
        .subtitles
        .into_iter()
        .enumerate()
        .map(|(n, s)| SubtitleRef {
            language: s.language,
            url: format!("/api/subtitles/{key}/{}/{n}", t.id),
        })
        .collect();
    let address = PublisherKey::from_hex(&key)
        .map(|k| k.address())
        .unwrap_or_default();
    Ok(Json(TitleDetails {
        poster_url: t.poster.as_ref().map(|_| poster_url(&key, &t.id)),
        publisher: PublisherRef {
            name: h.publisher_name,
            key: key.clone(),
            address,
        },
        key,
        id: t.id,
        title: t.title,
        year: t.year,
        synopsis: t.synopsis,
        genres: t.genres,
        runtime_minutes: t.runtime_minutes,
        licence: t.licence,
        streams,
        subtitles,
        resume: resume.map(Into::into),
    }))
}

/// `GET /api/titles/{key}/{id}/peers`: peers per stream, from the loaded torrent or a DHT
/// lookup of at most [`PEER_LOOKUP`].
pub(super) async fn peers(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<TitlePeers>, ApiError> {
    let h = blocking(&c.store, move |s| load_title(s, &key, &id)).await?;
    let mut streams = Vec::new();
    for (index, s) in h.title.streams.iter().enumerate() {
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
        streams.push(StreamPeers { index, peers });
    }
    Ok(Json(TitlePeers { streams }))
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

/// `GET /api/poster/{key}/{id}`: the image bytes.
pub(super) async fn poster(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (rel, bytes) = blocking(&c.store, move |s| {
        let h = load_title(s, &key, &id)?;
        let rel = h
            .title
            .poster
            .ok_or_else(|| not_found("this title has no poster"))?;
        let folder = PathBuf::from(&h.folder);
        let bytes = kino_catalog::read_asset(&folder, "poster", &rel, AssetKind::Poster)
            .map_err(|e| not_found(&kino_core::Report(&e).to_string()))?;
        Ok::<_, ApiError>((rel, bytes))
    })
    .await?;
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

/// `GET /api/subtitles/{key}/{id}/{n}[.vtt]`: subtitle `n` as WebVTT.
pub(super) async fn subtitle(
    State(c): State<Ctx>,
    Path((key, id, n)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let h = blocking(&c.store, move |s| load_title(s, &key, &id)).await?;
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
    let folder = PathBuf::from(&h.folder);
    let path = sub.path.clone();
    let vtt = run_blocking(move || {
        let bytes = kino_catalog::read_asset(&folder, "subtitle", &path, AssetKind::Subtitle)
            .map_err(|e| not_found(&kino_core::Report(&e).to_string()))?;
        vtt::convert(&bytes, format).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_subtitles",
                format!("the subtitle file {path} was refused: {e}"),
            )
        })
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/vtt; charset=utf-8"),
        )],
        vtt,
    )
        .into_response())
}
