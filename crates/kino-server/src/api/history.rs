//! Watch history: "Continue watching", and saving or forgetting where a title was left off.

use axum::Json;
use axum::extract::{Path, State};
use kino_catalog::library;
use kino_store::{WatchPosition, now_unix};
use serde::Deserialize;

use super::types::{ContinueItem, History, Removed, Saved};
use super::{ApiJson, Ctx, blocking, invalid, load_title, poster_url};
use crate::ApiError;

/// Most rows in "Continue watching".
const CONTINUE_LIMIT: usize = 20;

/// `GET /api/history`: titles watched part-way, most recent first.
pub(super) async fn list(State(c): State<Ctx>) -> Result<Json<History>, ApiError> {
    let rows = blocking(&c.store, |s| library::continue_watching(s, CONTINUE_LIMIT)).await?;
    let continue_watching = rows
        .into_iter()
        .map(|r| ContinueItem {
            poster_url: r.has_poster.then(|| poster_url(&r.public_key, &r.id)),
            key: r.public_key,
            id: r.id,
            position: r.position_secs,
            duration: r.duration_secs,
            title: r.title,
            year: r.year,
            publisher: r.publisher_name,
        })
        .collect();
    Ok(Json(History { continue_watching }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PositionRequest {
    key: String,
    id: String,
    #[serde(default)]
    stream: u32,
    position: f64,
    duration: Option<f64>,
}

/// `POST /api/history`: saves where a held title was left off.
pub(super) async fn save(
    State(c): State<Ctx>,
    ApiJson(req): ApiJson<PositionRequest>,
) -> Result<Json<Saved>, ApiError> {
    let sane = |x: f64| x.is_finite() && (0.0..1e7).contains(&x);
    if !sane(req.position) || req.duration.is_some_and(|d| !sane(d)) {
        return Err(invalid("position and duration are seconds from 0 to 10^7"));
    }
    let pos = WatchPosition {
        stream: req.stream,
        position_secs: req.position,
        duration_secs: req.duration,
    };
    blocking(&c.store, move |s| {
        load_title(s, &req.key, &req.id)?;
        s.save_watch_position(&req.key, &req.id, &pos, now_unix())?;
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(Json(Saved { saved: true }))
}

/// `DELETE /api/history/{key}/{id}`.
pub(super) async fn forget(
    State(c): State<Ctx>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Removed>, ApiError> {
    let removed = blocking(&c.store, move |s| s.forget_watch_position(&key, &id)).await?;
    Ok(Json(Removed { removed }))
}
