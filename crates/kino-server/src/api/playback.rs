//! Playback: adding a title's torrent to play it, playback status while it streams, and
//! handing a stream to an external player (mpv, VLC).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kino_engine::{AddOptions, Placement, TorrentSource, infohash_hex};
use serde::Deserialize;
use tracing::{Instrument, info_span};

use super::types::{Media, Play, PlayerStarted, Status};
use super::{ApiJson, Ctx, blocking, invalid, load_title, not_found};
use crate::{ApiError, BoundAddr, internal, stream_url_at};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlayRequest {
    key: String,
    id: String,
    #[serde(default)]
    stream: usize,
}

/// `POST /api/play`: adds (and pins) the stream's torrent and starts reading its header.
pub(super) async fn play(
    State(c): State<Ctx>,
    ApiJson(req): ApiJson<PlayRequest>,
) -> Result<Json<Play>, ApiError> {
    let (h, resume) = blocking(&c.store, move |s| {
        let h = load_title(s, &req.key, &req.id)?;
        let resume = s.watch_position(&h.public_key, &h.title.id)?;
        Ok::<_, ApiError>((h, resume))
    })
    .await?;
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
    // watched last does (the engine never evicts the most recently used one). The engine
    // removes evicted folders on the blocking pool.
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
    Ok(Json(Play {
        stream_url: format!("/stream/{hex}/{file}"),
        infohash: hex,
        file,
        mime: s.mime.clone(),
        resume: resume.map(Into::into),
        cache_warning,
    }))
}

/// `GET /api/status/{infohash}/{file}`: position, buffer, transfer and what the header said.
pub(super) async fn status(
    State(c): State<Ctx>,
    Path((infohash, file)): Path<(String, String)>,
) -> Result<Json<Status>, ApiError> {
    let ih = kino_engine::parse_infohash(&infohash).ok_or_else(|| invalid("malformed infohash"))?;
    let file: usize = file.parse().map_err(|_| invalid("malformed file index"))?;
    let p = c
        .engine
        .playback_status(&ih, file)
        .ok_or_else(|| not_found("this stream is not loaded"))?;
    let media = p.media.map(|m| Media {
        container: m.container.into(),
        duration_secs: m.duration.map(|d| d.as_secs_f64()),
        bitrate_bps: m.bitrate_bps,
        video_codecs: m.video_codecs,
        audio_codecs: m.audio_codecs,
    });
    let t = p.transfer;
    Ok(Json(Status {
        position: p.position,
        buffered_bytes: p.buffered_bytes,
        buffered_secs: p.buffered_secs,
        down_bps: t.down_bps,
        up_bps: t.up_bps,
        peers: t.peers,
        have_bytes: t.have_bytes,
        total_bytes: t.total_bytes,
        finished: t.finished,
        rejected_pieces: t.rejected_pieces,
        problem: t.problem.map(|x| x.code()),
        problem_message: t.problem.map(|x| x.message()),
        media,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenRequest {
    player: String,
    infohash: String,
    file: usize,
}

/// `POST /api/open`: starts mpv or VLC on a loaded stream.
pub(super) async fn open_player(
    State(c): State<Ctx>,
    bound: Option<Extension<BoundAddr>>,
    ApiJson(req): ApiJson<OpenRequest>,
) -> Result<Json<PlayerStarted>, ApiError> {
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
    Ok(Json(PlayerStarted {
        started: program,
        url,
    }))
}
