//! The JSON bodies the API answers with, one `#[derive(Serialize)]` type per answer. Field
//! names and shapes are what `web/app.js` (and `crates/kino/tests/webapp.rs`) read: rename
//! nothing here without changing the page. Enums go out as stable snake_case codes, never as
//! `Debug` text.

use kino_media::Container;
use serde::Serialize;

use crate::codecs::BrowserSupport;
use crate::settings::AppSettings;

/// `GET /api/info`.
#[derive(Serialize)]
pub(crate) struct Info {
    pub(crate) version: &'static str,
    pub(crate) sharing: bool,
    pub(crate) catalogs: bool,
    /// The message of an available update, from the app's verified update check.
    pub(crate) update: Option<String>,
}

/// `GET /api/titles`.
#[derive(Serialize)]
pub(crate) struct Titles {
    pub(crate) titles: Vec<TitleCard>,
}

/// A title in a list.
#[derive(Serialize)]
pub(crate) struct TitleCard {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) year: Option<i64>,
    pub(crate) genres: Vec<String>,
    pub(crate) publisher: String,
    pub(crate) licence: String,
    pub(crate) poster_url: Option<String>,
}

/// `GET /api/genres`.
#[derive(Serialize)]
pub(crate) struct Genres {
    pub(crate) genres: Vec<String>,
}

/// `GET /api/titles/{key}/{id}`.
#[derive(Serialize)]
pub(crate) struct TitleDetails {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) year: Option<u16>,
    pub(crate) synopsis: String,
    pub(crate) genres: Vec<String>,
    pub(crate) runtime_minutes: Option<u32>,
    pub(crate) licence: String,
    pub(crate) poster_url: Option<String>,
    pub(crate) publisher: PublisherRef,
    pub(crate) streams: Vec<StreamDetails>,
    pub(crate) subtitles: Vec<SubtitleRef>,
    pub(crate) resume: Option<Resume>,
}

/// Who publishes a title.
#[derive(Serialize)]
pub(crate) struct PublisherRef {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) address: String,
}

/// Where a stream's codec names came from.
#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CodecSource {
    /// The catalog entry names them.
    Catalog,
    /// Read from the file's own header (the catalog names none).
    Probe,
}

/// One stream of a title.
#[derive(Serialize)]
pub(crate) struct StreamDetails {
    pub(crate) index: usize,
    pub(crate) quality: String,
    pub(crate) mime: String,
    pub(crate) size_bytes: u64,
    pub(crate) video_codecs: Vec<String>,
    pub(crate) audio_codecs: Vec<String>,
    pub(crate) codec_source: CodecSource,
    pub(crate) browser: BrowserSupport,
    pub(crate) infohash: String,
    pub(crate) file: usize,
    pub(crate) magnet: String,
    pub(crate) stream_url: String,
    pub(crate) loaded: bool,
    pub(crate) peers_now: Option<u32>,
}

/// One subtitle of a title.
#[derive(Serialize)]
pub(crate) struct SubtitleRef {
    pub(crate) language: String,
    pub(crate) url: String,
}

/// Where a title was left off.
#[derive(Serialize)]
pub(crate) struct Resume {
    pub(crate) stream: u32,
    pub(crate) position: f64,
    pub(crate) duration: Option<f64>,
}

impl From<kino_store::WatchPosition> for Resume {
    fn from(p: kino_store::WatchPosition) -> Self {
        Resume {
            stream: p.stream,
            position: p.position_secs,
            duration: p.duration_secs,
        }
    }
}

/// `GET /api/titles/{key}/{id}/peers`.
#[derive(Serialize)]
pub(crate) struct TitlePeers {
    pub(crate) streams: Vec<StreamPeers>,
}

/// Peers found for one stream.
#[derive(Serialize)]
pub(crate) struct StreamPeers {
    pub(crate) index: usize,
    pub(crate) peers: usize,
}

/// `POST /api/play`.
#[derive(Serialize)]
pub(crate) struct Play {
    pub(crate) infohash: String,
    pub(crate) file: usize,
    pub(crate) mime: String,
    pub(crate) stream_url: String,
    pub(crate) resume: Option<Resume>,
    pub(crate) cache_warning: Option<String>,
}

/// `GET /api/status/{infohash}/{file}`.
#[derive(Serialize)]
pub(crate) struct Status {
    pub(crate) position: u64,
    pub(crate) buffered_bytes: u64,
    pub(crate) buffered_secs: Option<f64>,
    pub(crate) down_bps: f64,
    pub(crate) up_bps: f64,
    pub(crate) peers: u32,
    pub(crate) have_bytes: u64,
    pub(crate) total_bytes: u64,
    pub(crate) finished: bool,
    pub(crate) rejected_pieces: u64,
    /// What keeps the torrent from making progress (`"disk_full"`), if anything.
    pub(crate) problem: Option<&'static str>,
    /// The same, in one line for the user.
    pub(crate) problem_message: Option<&'static str>,
    pub(crate) media: Option<Media>,
}

/// What the engine read from a file's header.
#[derive(Serialize)]
pub(crate) struct Media {
    pub(crate) container: ContainerCode,
    pub(crate) duration_secs: Option<f64>,
    pub(crate) bitrate_bps: Option<u64>,
    pub(crate) video_codecs: Vec<String>,
    pub(crate) audio_codecs: Vec<String>,
}

/// A container format on the wire.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ContainerCode {
    /// MP4, M4V, MOV, 3GP.
    Mp4,
    /// Matroska.
    Matroska,
    /// WebM.
    Webm,
    /// Anything else.
    Other,
}

impl From<Container> for ContainerCode {
    fn from(c: Container) -> Self {
        match c {
            Container::Mp4 => ContainerCode::Mp4,
            Container::Matroska => ContainerCode::Matroska,
            Container::WebM => ContainerCode::Webm,
            Container::Other => ContainerCode::Other,
        }
    }
}

/// `GET /api/history`.
#[derive(Serialize)]
pub(crate) struct History {
    #[serde(rename = "continue")]
    pub(crate) continue_watching: Vec<ContinueItem>,
}

/// A row of "Continue watching".
#[derive(Serialize)]
pub(crate) struct ContinueItem {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) position: f64,
    pub(crate) duration: Option<f64>,
    pub(crate) title: String,
    pub(crate) year: Option<i64>,
    pub(crate) publisher: String,
    pub(crate) poster_url: Option<String>,
}

/// `POST /api/history`.
#[derive(Serialize)]
pub(crate) struct Saved {
    pub(crate) saved: bool,
}

/// `DELETE /api/history/{key}/{id}`.
#[derive(Serialize)]
pub(crate) struct Removed {
    pub(crate) removed: bool,
}

/// `GET`/`PUT /api/settings`.
#[derive(Serialize)]
pub(crate) struct Settings {
    pub(crate) settings: AppSettings,
    pub(crate) effective: AppSettings,
    pub(crate) restart_needed: bool,
    pub(crate) data_dir: String,
}

/// `PUT /api/settings/data-dir`.
#[derive(Serialize)]
pub(crate) struct DataDir {
    pub(crate) data_dir: String,
    pub(crate) data_dir_next: String,
    pub(crate) message: String,
}

/// `GET /api/sharing`.
#[derive(Serialize)]
pub(crate) struct Sharing {
    pub(crate) enabled: bool,
    pub(crate) torrents: Vec<SharedTorrent>,
}

/// A torrent Kino keeps.
#[derive(Serialize)]
pub(crate) struct SharedTorrent {
    pub(crate) infohash: String,
    pub(crate) name: String,
    /// The title that plays it, or "Catalog of …" for a catalog torrent.
    pub(crate) title: Option<String>,
    pub(crate) total_bytes: u64,
    pub(crate) uploaded_bytes: u64,
    pub(crate) ratio: f64,
    pub(crate) peers: u32,
    pub(crate) up_bps: f64,
    pub(crate) sharing: bool,
    pub(crate) stopped: bool,
    pub(crate) last_watched_at: Option<i64>,
}

/// `POST /api/sharing/{infohash}/stop`.
#[derive(Serialize)]
pub(crate) struct Stopped {
    pub(crate) stopped: bool,
}

/// `GET /api/publishers`.
#[derive(Serialize)]
pub(crate) struct Publishers {
    pub(crate) publishers: Vec<PublisherItem>,
    pub(crate) catalogs: bool,
}

/// A subscription, with its held catalog if any.
#[derive(Serialize)]
pub(crate) struct PublisherItem {
    pub(crate) key: String,
    pub(crate) address: String,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) titles: u32,
    pub(crate) seq: Option<u64>,
    pub(crate) updated_at: Option<i64>,
    pub(crate) last_refresh_at: Option<i64>,
    pub(crate) last_error: Option<String>,
}

/// `POST /api/publishers` (202).
#[derive(Serialize)]
pub(crate) struct Subscribed {
    pub(crate) address: String,
    pub(crate) refreshing: bool,
}

/// `POST /api/publishers/refresh`.
#[derive(Serialize)]
pub(crate) struct Refreshing {
    pub(crate) refreshing: usize,
}

/// `DELETE /api/publishers/{key}`.
#[derive(Serialize)]
pub(crate) struct Unsubscribed {
    pub(crate) unsubscribed: String,
}

/// `POST /api/open`.
#[derive(Serialize)]
pub(crate) struct PlayerStarted {
    pub(crate) started: &'static str,
    pub(crate) url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: the status answer sent the container as Rust `Debug` text ("WebM").
    #[test]
    fn status_container_is_a_stable_snake_case_code() -> Result<(), serde_json::Error> {
        let codes: Vec<String> = [
            Container::Mp4,
            Container::Matroska,
            Container::WebM,
            Container::Other,
        ]
        .into_iter()
        .map(|c| serde_json::to_string(&ContainerCode::from(c)))
        .collect::<Result<_, _>>()?;
        assert_eq!(codes, ["\"mp4\"", "\"matroska\"", "\"webm\"", "\"other\""]);
        let source = serde_json::to_string(&[CodecSource::Catalog, CodecSource::Probe])?;
        assert_eq!(source, r#"["catalog","probe"]"#);
        Ok(())
    }

    #[test]
    fn history_rows_go_out_under_continue() -> Result<(), serde_json::Error> {
        let v = serde_json::to_value(History {
            continue_watching: vec![],
        })?;
        assert_eq!(v, serde_json::json!({ "continue": [] }));
        Ok(())
    }
}
