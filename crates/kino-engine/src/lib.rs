//! Kino's swarm engine.
//!
//! One [`Engine`] owns a librqbit session and adds what a streaming product needs on top:
//!
//! - [`source`]: strict parsing of what a user hands Kino (magnet, infohash, `.torrent`), and
//!   validation of every file name before anything touches the disk ([`names`]); every
//!   `.torrent` passes Kino's strict [`bencode`] decoder before librqbit reads it.
//! - [`Engine::add`]: resolve metadata (from the database, the source, or the swarm with a
//!   timeout), then download into the cache folder, the user's folder, or seed in place. The
//!   user's own files are only ever read: seeding verifies them first and refuses data that is
//!   not the torrent's, and a download never overwrites an unrelated file unless told to.
//! - [`storage`]: Kino's own storage of torrent data (lazily opened files in a bounded set of
//!   handles, read-only mode, files created only when written, "disk full" as a typed state).
//! - [`Engine::open_stream`]: a [`KinoStream`] per reader, from a bounded pool of stream slots
//!   sized so that open streams never starve librqbit's disk writes and uploads.
//! - [`Engine::prepare_playback`]: fetch the container's index early by parking a stream on it
//!   (librqbit fetches the pieces ahead of every open stream first).
//! - The share policy ([`SharePolicy`]): seed by default, upload cap, stop at a ratio, keep the
//!   cache under a size by evicting the least recently watched, `--no-share`.
//! - [`create`]: make torrents of local files with progress and a streaming piece length.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<kino_store::Store>) -> Result<(), kino_engine::EngineError> {
//! use kino_engine::{AddOptions, Engine, EngineConfig, TorrentSource};
//! let engine = Engine::start(EngineConfig::new("/tmp/kino".into()), store).await?;
//! let source = TorrentSource::parse("magnet:?xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056")?;
//! let torrent = engine.add(&source, AddOptions::default()).await?;
//! let file = torrent.info().default_play_file().map(|f| f.index).unwrap_or(0);
//! let _reader = engine.open_stream(&torrent.infohash(), file).await?;
//! engine.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bencode;
pub mod config;
pub mod create;
mod engine;
mod error;
pub mod names;
pub mod source;
pub mod storage;
mod stream;

pub use config::{
    DEFAULT_PEER_REQUEST_WINDOW, DEFAULT_STREAM_IDLE_TIMEOUT, EngineConfig, SharePolicy,
};
pub use engine::{
    AddOptions, CacheOverflow, Engine, POLICY_INTERVAL, Placement, PlayGuard, PlaybackStatus,
    Problem, Torrent, TransferStatus,
};
pub use error::EngineError;
pub use kino_media::MediaInfo;
pub use librqbit::dht::Id20;
pub use source::{
    TorrentFile, TorrentInfo, TorrentSource, infohash_hex, magnet_link, parse_infohash,
};
pub use stream::KinoStream;
