//! Sharing: the torrents Kino keeps, what each plays, how much it uploaded, and stopping it.

use axum::Json;
use axum::extract::{Path, State};
use kino_catalog::library;
use kino_engine::infohash_hex;

use super::types::{SharedTorrent, Sharing, Stopped};
use super::{Ctx, blocking, invalid, not_found};
use crate::ApiError;

/// `GET /api/sharing`.
pub(super) async fn list(State(c): State<Ctx>) -> Result<Json<Sharing>, ApiError> {
    let rows = blocking(&c.store, |s| {
        let records = s.torrents()?;
        let titles = library::titles_by_infohash(s)?;
        let mut rows = Vec::with_capacity(records.len());
        for rec in records {
            let name = match titles.get(&rec.infohash) {
                Some(t) => Some(t.clone()),
                None => library::catalog_publisher_by_infohash(s, &rec.infohash)?
                    .map(|p| format!("Catalog of {p}")),
            };
            rows.push((rec, name));
        }
        Ok::<_, ApiError>(rows)
    })
    .await?;
    let torrents = rows
        .into_iter()
        .map(|(rec, title)| {
            let live = kino_engine::parse_infohash(&rec.infohash)
                .and_then(|ih| c.engine.transfer_status(&ih));
            let uploaded_bytes = live
                .as_ref()
                .map_or(rec.uploaded_bytes, |t| t.uploaded_total);
            let ratio = if rec.total_bytes == 0 {
                0.0
            } else {
                uploaded_bytes as f64 / rec.total_bytes as f64
            };
            SharedTorrent {
                title,
                total_bytes: rec.total_bytes,
                uploaded_bytes,
                ratio,
                peers: live.as_ref().map_or(0, |t| t.peers),
                up_bps: live.as_ref().map_or(0.0, |t| t.up_bps),
                sharing: live.as_ref().is_some_and(|t| t.sharing) && !rec.share_stopped,
                stopped: rec.share_stopped,
                last_watched_at: rec.last_watched_at,
                infohash: rec.infohash,
                name: rec.name,
            }
        })
        .collect();
    Ok(Json(Sharing {
        enabled: c.engine.config().share.enabled,
        torrents,
    }))
}

/// `POST /api/sharing/{infohash}/stop`.
pub(super) async fn stop(
    State(c): State<Ctx>,
    Path(infohash): Path<String>,
) -> Result<Json<Stopped>, ApiError> {
    let ih = kino_engine::parse_infohash(&infohash).ok_or_else(|| invalid("malformed infohash"))?;
    let hex = infohash_hex(&ih);
    if blocking(&c.store, move |s| s.torrent(&hex))
        .await?
        .is_none()
    {
        return Err(not_found("no such torrent"));
    }
    c.engine.stop_sharing(&ih).await?;
    Ok(Json(Stopped { stopped: true }))
}
