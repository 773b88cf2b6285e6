//! The sharing settings a user changes in the web app, saved in the database's `settings`
//! table so they survive restarts. The binary applies them over the config file when it
//! starts the engine ([`AppSettings::apply`]); a change made while running takes effect at the
//! next start (the page says so).

use kino_engine::SharePolicy;
use kino_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

const KEY: &str = "web.share";

/// Sharing settings. `0` means "no limit" for the caps and the ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Share (seed) at all.
    pub share_enabled: bool,
    /// Upload cap in KiB/s (0: none).
    pub upload_limit_kib: u32,
    /// Stop seeding a film at this ratio (0: never).
    pub ratio_limit: f64,
    /// Media cache cap in MiB (0: none).
    pub cache_limit_mib: u64,
}

impl AppSettings {
    /// The settings a policy stands for.
    pub fn from_policy(p: &SharePolicy) -> Self {
        AppSettings {
            share_enabled: p.enabled,
            upload_limit_kib: p.upload_limit_bps.map_or(0, |b| b / 1024),
            ratio_limit: p.ratio_limit.unwrap_or(0.0),
            cache_limit_mib: p.cache_limit_bytes.map_or(0, |b| b / (1024 * 1024)),
        }
    }

    /// Writes these settings into a policy.
    pub fn apply(&self, p: &mut SharePolicy) {
        p.enabled = self.share_enabled;
        p.upload_limit_bps =
            (self.upload_limit_kib > 0).then(|| self.upload_limit_kib.saturating_mul(1024));
        p.ratio_limit = (self.ratio_limit > 0.0).then_some(self.ratio_limit);
        p.cache_limit_bytes =
            (self.cache_limit_mib > 0).then(|| self.cache_limit_mib.saturating_mul(1024 * 1024));
    }

    /// Refuses values out of range, saying which.
    pub fn validate(&self) -> Result<(), String> {
        if !self.ratio_limit.is_finite() || !(0.0..=1000.0).contains(&self.ratio_limit) {
            return Err("ratio_limit must be between 0 (never stop) and 1000".into());
        }
        if self.upload_limit_kib > 4 * 1024 * 1024 {
            return Err("upload_limit_kib must be at most 4194304 (4 GiB/s)".into());
        }
        if self.cache_limit_mib > 1 << 30 {
            return Err("cache_limit_mib is too large".into());
        }
        Ok(())
    }
}

/// The saved settings, if the user ever saved any.
pub fn load(store: &Store) -> Result<Option<AppSettings>, StoreError> {
    Ok(store
        .setting(KEY)?
        .and_then(|s| serde_json::from_str::<AppSettings>(&s).ok())
        .filter(|s| s.validate().is_ok()))
}

/// Saves settings.
pub fn save(store: &Store, s: &AppSettings) -> Result<(), StoreError> {
    let json = serde_json::to_string(s).unwrap_or_default();
    store.set_setting(KEY, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> Result<(), StoreError> {
        let store = Store::open_in_memory()?;
        assert_eq!(load(&store)?, None);
        let s = AppSettings {
            share_enabled: false,
            upload_limit_kib: 100,
            ratio_limit: 2.5,
            cache_limit_mib: 2048,
        };
        save(&store, &s)?;
        assert_eq!(load(&store)?, Some(s));
        let mut p = SharePolicy::default();
        s.apply(&mut p);
        assert_eq!(AppSettings::from_policy(&p), s);
        assert!(
            AppSettings {
                ratio_limit: f64::NAN,
                ..s
            }
            .validate()
            .is_err()
        );
        Ok(())
    }
}
