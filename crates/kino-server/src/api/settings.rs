//! App info and settings: the version and what is enabled, the sharing settings saved for the
//! next start, and the data folder.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::types::{DataDir, Info, Settings};
use super::{ApiJson, Ctx, blocking, invalid, run_blocking};
use crate::settings::{self, AppSettings};
use crate::{ApiError, DataDirSaving};

/// `GET /api/info`.
pub(super) async fn info(State(c): State<Ctx>) -> Result<Json<Info>, ApiError> {
    // Written by the running app's periodic, fully verified update check; an unreadable
    // setting only hides the notice.
    let update = blocking(&c.store, |s| {
        Ok::<_, ApiError>(
            s.setting("update.available")
                .ok()
                .flatten()
                .filter(|m| !m.is_empty()),
        )
    })
    .await?;
    Ok(Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        sharing: c.engine.config().share.enabled,
        catalogs: c.sync.is_some(),
        update,
    }))
}

fn answer(c: &Ctx, settings: AppSettings) -> Settings {
    let effective = AppSettings::from_policy(&c.engine.config().share);
    Settings {
        settings,
        effective,
        restart_needed: settings != effective,
        data_dir: c.engine.config().data_dir.to_string_lossy().into_owned(),
    }
}

/// `GET /api/settings`: the saved settings (those in effect when none are saved).
pub(super) async fn get(State(c): State<Ctx>) -> Result<Json<Settings>, ApiError> {
    let effective = AppSettings::from_policy(&c.engine.config().share);
    let saved = blocking(&c.store, settings::load).await?;
    Ok(Json(answer(&c, saved.unwrap_or(effective))))
}

/// `PUT /api/settings`: saves settings for the next start.
pub(super) async fn put(
    State(c): State<Ctx>,
    ApiJson(new): ApiJson<AppSettings>,
) -> Result<Json<Settings>, ApiError> {
    new.validate().map_err(invalid)?;
    blocking(&c.store, move |s| settings::save(s, &new)).await?;
    Ok(Json(answer(&c, new)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DataDirBody {
    path: String,
}

/// `PUT /api/settings/data-dir`: saves a new data folder for the next start (it holds the
/// database itself, so it cannot be switched while running). The folder must be usable
/// ([`settings::check_data_dir`]); the demo refuses (409): it never changes the user's
/// settings.
pub(super) async fn put_data_dir(
    State(c): State<Ctx>,
    ApiJson(body): ApiJson<DataDirBody>,
) -> Result<Json<DataDir>, ApiError> {
    let path = PathBuf::from(body.path.trim());
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
    let message = run_blocking(move || {
        settings::check_data_dir(&checked)
            .map_err(|e| invalid(kino_core::Report(&e).to_string()))?;
        // The binary writes its config file.
        setter(&checked).map_err(invalid)
    })
    .await?;
    Ok(Json(DataDir {
        data_dir: c.engine.config().data_dir.to_string_lossy().into_owned(),
        data_dir_next: path.to_string_lossy().into_owned(),
        message,
    }))
}
