//! Engine configuration: where data lives, how to reach peers, and the share policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What Kino shares, and how much. Sharing is on by default: every viewer seeds what it
/// watches, within these limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SharePolicy {
    /// Upload at all. Off means no bitfield, no `have`, no piece served to anyone.
    pub enabled: bool,
    /// Upload rate cap in bytes per second, for the whole engine.
    pub upload_limit_bps: Option<u32>,
    /// Stop seeding a torrent once it uploaded this many times its size (librqbit has no
    /// ratio limit; Kino pauses the torrent when nothing is streaming from it).
    pub ratio_limit: Option<f64>,
    /// Keep Kino's cache under this many bytes, evicting the least recently watched torrents
    /// first; what is playing is never evicted.
    pub cache_limit_bytes: Option<u64>,
}

impl Default for SharePolicy {
    fn default() -> Self {
        SharePolicy {
            enabled: true,
            upload_limit_bps: None,
            ratio_limit: None,
            cache_limit_bytes: Some(20 * 1024 * 1024 * 1024),
        }
    }
}

/// Everything the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Data folder: the database, the lock and the media cache (`media/<infohash>/`).
    pub data_dir: PathBuf,
    /// Address to accept peers on; `None` accepts none (downloads still work).
    pub listen: Option<SocketAddr>,
    /// Use the Mainline DHT to find peers.
    pub dht: bool,
    /// DHT bootstrap nodes (`host:port`); empty means the well-known public ones.
    pub dht_bootstrap: Vec<String>,
    /// BEP 14 local service discovery (multicast on the LAN).
    pub local_discovery: bool,
    /// The share policy.
    pub share: SharePolicy,
    /// Most streams open at once (HTTP readers and Kino's own index prefetch). The torrent
    /// session gets this many blocking-I/O permits plus [`RESERVED_IO_PERMITS`] for disk writes
    /// and uploads, so open streams can never starve the download.
    pub max_streams: usize,
    /// How long to wait for a magnet's metadata from the swarm.
    pub metadata_timeout: Duration,
    /// How long a new reader waits for a free stream slot.
    pub stream_slot_wait: Duration,
    /// An HTTP stream whose reader asks for no data this long gives its stream slot back and
    /// ends (default [`DEFAULT_STREAM_IDLE_TIMEOUT`]). A player that stopped reading — gone
    /// without closing its socket, or paused — must not hold a slot forever; a paused player
    /// reconnects with a `Range` request when it resumes. Time spent waiting for pieces from
    /// the swarm does not count: only time in which the reader did not ask for data.
    pub stream_idle_timeout: Duration,
    /// Seconds of media to keep buffered ahead of a reader, when the bitrate is known.
    pub readahead_secs: u32,
    /// Most 16 KiB block requests outstanding at one peer (never more than the peer's own
    /// `reqq`). A piece that becomes urgent — the read position after a seek — is served by
    /// that peer only after the requests already queued there, so this bounds how long a seek
    /// waits behind stale requests: a window of `w` costs `w × 16 KiB / rate` (0.5 s for 32 at
    /// 1 MB/s), while it also caps one peer's rate at `w × 16 KiB / RTT` (5 MB/s for 32 at
    /// 100 ms). See [`DEFAULT_PEER_REQUEST_WINDOW`] for how the default was chosen.
    pub peer_request_window: usize,
    /// Most files of one torrent kept open at once. Files are opened on first use and the
    /// least recently used is closed beyond this, so a torrent with thousands of files works
    /// under a low open-file limit (`ulimit -n`).
    pub max_open_files_per_torrent: usize,
}

/// The default of [`EngineConfig::peer_request_window`], measured with `kino-bench` on three
/// scenarios (docs/streaming.md, "Requests in flight per peer"): librqbit's own default of 128
/// (2 MiB) made every seek on an 8 Mbit/s seeder wait ~1-2 s behind stale requests and started
/// at 1.5-1.9x the physical limit from four slow seeders; 16 and below cap one distant fast
/// seeder far below its uplink.
pub const DEFAULT_PEER_REQUEST_WINDOW: usize = 32;

/// The default of [`EngineConfig::stream_idle_timeout`]: long enough for a player's pause
/// between reads (browsers stop reading once their buffer is full, for up to tens of seconds),
/// short enough that abandoned connections free their slots well before new readers give up
/// waiting for one ([`EngineConfig::stream_slot_wait`]: 20 s).
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Blocking-I/O permits kept free of streams, for disk writes and uploads.
pub const RESERVED_IO_PERMITS: usize = 8;

impl EngineConfig {
    /// A configuration with defaults for everything but the data folder.
    pub fn new(data_dir: PathBuf) -> Self {
        EngineConfig {
            data_dir,
            listen: None,
            dht: true,
            dht_bootstrap: Vec::new(),
            local_discovery: true,
            share: SharePolicy::default(),
            max_streams: 32,
            metadata_timeout: Duration::from_secs(60),
            stream_slot_wait: Duration::from_secs(20),
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            readahead_secs: 60,
            peer_request_window: DEFAULT_PEER_REQUEST_WINDOW,
            max_open_files_per_torrent: crate::storage::DEFAULT_MAX_OPEN_FILES,
        }
    }
}
