//! Publishers: subscriptions with their held catalogs, subscribing (and fetching at once),
//! refreshing all, unsubscribing.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kino_catalog::PublisherKey;
use kino_catalog::library;
use serde::Deserialize;
use tracing::{Instrument, info_span, warn};

use super::types::{PublisherItem, Publishers, Refreshing, Subscribed, Unsubscribed};
use super::{ApiJson, Ctx, blocking, invalid, not_found};
use crate::ApiError;

fn address_of(hex: &str) -> String {
    PublisherKey::from_hex(hex)
        .map(|k| k.address())
        .unwrap_or_default()
}

/// `GET /api/publishers`.
pub(super) async fn list(State(c): State<Ctx>) -> Result<Json<Publishers>, ApiError> {
    let (held, subs) = blocking(&c.store, |s| {
        Ok::<_, ApiError>((library::held_catalogs(s)?, library::subscriptions(s)?))
    })
    .await?;
    let publishers = subs
        .into_iter()
        .map(|s| {
            let h = held.iter().find(|h| h.public_key == s.public_key);
            PublisherItem {
                address: address_of(&s.public_key),
                key: s.public_key,
                name: h.map(|h| h.publisher_name.clone()),
                description: h.map(|h| h.publisher_description.clone()),
                titles: h.map_or(0, |h| h.titles),
                seq: h.map(|h| h.seq),
                updated_at: h.map(|h| h.updated_at),
                last_refresh_at: s.last_refresh_at,
                last_error: s.last_error,
            }
        })
        .collect();
    Ok(Json(Publishers {
        publishers,
        catalogs: c.sync.is_some(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscribeRequest {
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

/// `POST /api/publishers` (202): subscribes and starts fetching the catalog.
pub(super) async fn subscribe(
    State(c): State<Ctx>,
    ApiJson(req): ApiJson<SubscribeRequest>,
) -> Result<(StatusCode, Json<Subscribed>), ApiError> {
    if req.address.len() > 4096 {
        return Err(invalid("the address is too long"));
    }
    let t = kino_catalog::parse_subscribe_target(req.address.trim())
        .map_err(|e| invalid(kino_core::Report(&e).to_string()))?;
    let (key, salt) = (t.key, t.salt.clone());
    blocking(&c.store, move |s| {
        library::subscribe(s, &key, salt.as_deref())
    })
    .await?;
    let address = t.key.address();
    let refreshing = c.sync.is_some();
    spawn_refresh(&c, t.key, t.salt);
    Ok((
        StatusCode::ACCEPTED,
        Json(Subscribed {
            address,
            refreshing,
        }),
    ))
}

/// `POST /api/publishers/refresh`: fetches every subscription again.
pub(super) async fn refresh(State(c): State<Ctx>) -> Result<Json<Refreshing>, ApiError> {
    let subs = blocking(&c.store, library::subscriptions).await?;
    let mut n = 0;
    for s in subs {
        if let Ok(key) = PublisherKey::from_hex(&s.public_key) {
            spawn_refresh(&c, key, s.salt);
            n += 1;
        }
    }
    Ok(Json(Refreshing {
        refreshing: if c.sync.is_some() { n } else { 0 },
    }))
}

/// `DELETE /api/publishers/{key}` (a hex key or an address).
pub(super) async fn unsubscribe(
    State(c): State<Ctx>,
    Path(key): Path<String>,
) -> Result<Json<Unsubscribed>, ApiError> {
    let k = PublisherKey::from_hex(&key)
        .or_else(|_| kino_catalog::parse_address(&key))
        .map_err(|e| invalid(kino_core::Report(&e).to_string()))?;
    let address = k.address();
    if !blocking(&c.store, move |s| library::unsubscribe(s, &k)).await? {
        return Err(not_found("not subscribed to this publisher"));
    }
    Ok(Json(Unsubscribed {
        unsubscribed: address,
    }))
}
