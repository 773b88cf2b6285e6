//! The engine: one librqbit session plus what a streaming product needs around it.
//!
//! ## Invariants
//! - Every torrent the engine manages is in `torrents` and in the database; a cache torrent's
//!   files live in `media/<infohash>/` and nowhere else.
//! - A torrent with an open stream or a live [`PlayGuard`] is never evicted; one with an open
//!   stream is never paused by the ratio limit. Pinning and the eviction's "in use?" check
//!   both happen under the `torrents` lock, so neither can slip between the other's steps.
//! - [`Engine::add_for_playing`] holds `evicting` from adding to pinning: no eviction runs
//!   between the two, so a film larger than the whole cache is never evicted on arrival.
//! - The most recently used cache torrent (watched or added last) is never evicted: a film
//!   larger than the cache limit stays until the user watches something else.
//! - Stream slots (`max_streams`) are always fewer than librqbit's blocking-I/O permits, by
//!   [`RESERVED_IO_PERMITS`]: open streams cannot stop disk writes or uploads.
//! - Every background task is spawned on `tasks` with the engine's cancellation token;
//!   [`Engine::shutdown`] cancels, waits for all of them, and stops the session.
//! - Every torrent is stored through Kino's own [`TorrentFiles`] (never librqbit's default
//!   storage). The user's own files (`Placement::SeedFrom`, and a seeded torrent resumed at
//!   start) are read-only: they are verified piece by piece before seeding, and a torrent
//!   whose data does not all match is not seeded. A download into the user's folder writes
//!   only when nothing of it exists yet, when the database records this torrent downloading
//!   there, when what exists already verifies fully, or when the user said to replace it.
//! - A failed add leaves nothing behind: the torrent leaves the session and every file or
//!   folder its storage created is removed.
//! - A torrent whose write failed for lack of space is "disk full" (its storage says so) until
//!   the policy task sees room again and restarts it; readers waiting on it get an error.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kino_core::Report;
use kino_media::{IndexLocator, MediaInfo, Step};
use kino_store::{Store, TorrentKind, TorrentRecord, now_unix};
use librqbit::api::{Api, TorrentIdOrHash};
use librqbit::dht::Id20;
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ConnectionOptions, DhtSessionConfig,
    ListenerMode, ListenerOptions, ManagedTorrent, PeerConnectionOptions, Session, SessionOptions,
    limits::LimitsConfig,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::EngineError;
use crate::config::{EngineConfig, RESERVED_IO_PERMITS};
use crate::source::{TorrentInfo, TorrentSource, infohash_hex};
use crate::storage::rqbit::KinoStorageFactory;
use crate::storage::{Access, FileSpec, StorageError, TorrentFiles};
use librqbit::storage::StorageFactoryExt;

// Pieces that failed verification (librqbit keeps no count of them).
mod rejected;
// User controls over sharing (the web app's Sharing page).
mod sharing;
use crate::stream::{KinoStream, StreamRegistration};

/// How often transfer totals are saved and the share policy is enforced.
pub const POLICY_INTERVAL: Duration = Duration::from_secs(2);
/// How far ahead of each stream librqbit fetches (a constant of librqbit 9).
pub const LIBRQBIT_STREAM_WINDOW: u64 = 32 * 1024 * 1024;
/// Largest index (moov / Cues) Kino prefetches.
const MAX_INDEX_PREFETCH: u64 = 64 * 1024 * 1024;
/// Free space a torrent stopped by a full disk needs before it is restarted (at least two of
/// its pieces).
const DISK_FULL_RESUME_ROOM: u64 = 1024 * 1024;

/// Where a torrent's files go, and who owns them.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Kino's cache (`media/<infohash>/`): evictable.
    Cache,
    /// Seed the user's files in place: the folder holding the torrent's content.
    SeedFrom(PathBuf),
    /// Download into a folder the user chose (`kino fetch -o DIR`): never evicted. A file of
    /// the torrent that already exists there is never overwritten, unless it already holds the
    /// torrent's data (it is then used as is) or this engine was downloading the torrent there.
    Download(PathBuf),
    /// Like [`Placement::Download`], but replacing whatever files with the torrent's names are
    /// in the folder (`kino fetch --overwrite`).
    Replace(PathBuf),
}

/// How a torrent's files may be used, decided from its placement and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Write freely: Kino's cache, a download Kino recorded into this folder, or the user's
    /// consent to replace what is there.
    Write,
    /// The user's own files: read-only, and seeded only if every piece matches; otherwise
    /// the add is refused.
    Seed,
    /// A seeded torrent resumed at start: read-only and verified like [`Plan::Seed`], but in
    /// the background; one that does not match is dropped with a warning.
    SeedInBackground,
    /// A new download into the user's folder: files already there must hold the torrent's
    /// data, or the add is refused.
    Download,
}

/// Something that keeps a torrent from making progress, for status lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A write failed for lack of space: the download waits until there is room again (the
    /// policy task checks every [`POLICY_INTERVAL`]).
    DiskFull,
}

impl Problem {
    /// A stable code for APIs (`"disk_full"`).
    pub fn code(self) -> &'static str {
        match self {
            Problem::DiskFull => "disk_full",
        }
    }

    /// What to tell the user, in one line.
    pub fn message(self) -> &'static str {
        match self {
            Problem::DiskFull => {
                "disk full: free some space (or lower the cache limit); the download resumes by itself"
            }
        }
    }
}

/// Options for [`Engine::add`].
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Peers to connect to directly (in addition to DHT/PEX/LSD).
    pub peers: Vec<SocketAddr>,
    /// Where the files go.
    pub placement: Placement,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            peers: Vec::new(),
            placement: Placement::Cache,
        }
    }
}

pub(crate) struct Entry {
    pub(crate) info: TorrentInfo,
    pub(crate) handle: Arc<ManagedTorrent>,
    /// The torrent's files (shared with librqbit's storage adapter).
    pub(crate) files: Arc<TorrentFiles>,
    pub(crate) open_streams: AtomicUsize,
    pins: AtomicUsize,
    /// Reader positions by stream id: (file index, byte position in file).
    pub(crate) positions: Mutex<HashMap<u64, (usize, u64)>>,
    media: Mutex<HashMap<usize, MediaInfo>>,
    /// Session counters already added to the database: (uploaded, downloaded).
    counted: Mutex<(u64, u64)>,
    pub(crate) next_stream_id: AtomicU64,
}

impl Entry {
    fn in_use(&self) -> bool {
        self.open_streams.load(Ordering::SeqCst) > 0 || self.pins.load(Ordering::SeqCst) > 0
    }
}

struct Inner {
    session: Arc<Session>,
    api: Api,
    store: Arc<Store>,
    config: EngineConfig,
    media_dir: PathBuf,
    stream_slots: Arc<Semaphore>,
    torrents: Mutex<HashMap<Id20, Arc<Entry>>>,
    /// Held while evicting, and by [`Engine::add_for_playing`] from add to pin.
    evicting: tokio::sync::Mutex<()>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    _lock: File,
}

/// The swarm engine. Cheap to clone; [`Engine::shutdown`] stops it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A torrent managed by the engine.
#[derive(Clone)]
pub struct Torrent {
    entry: Arc<Entry>,
}

impl Torrent {
    /// Its metainfo.
    pub fn info(&self) -> &TorrentInfo {
        &self.entry.info
    }
    /// Its infohash.
    pub fn infohash(&self) -> Id20 {
        self.entry.info.infohash
    }
    /// Waits until every selected piece is downloaded and verified. A full disk ends the wait
    /// with [`EngineError::DiskFull`].
    pub async fn wait_until_completed(&self) -> Result<(), EngineError> {
        let files = &self.entry.files;
        let result = tokio::select! {
            r = self.entry.handle.wait_until_completed() => r,
            _ = wait_disk_full(files) => Err(anyhow::anyhow!("disk full")),
        };
        result.map_err(|e| {
            if files.is_disk_full() {
                EngineError::DiskFull {
                    dir: files.root().to_path_buf(),
                }
            } else {
                EngineError::session("download failed", e)
            }
        })
    }
    /// Whether all pieces are verified.
    pub fn is_finished(&self) -> bool {
        self.entry.handle.stats().finished
    }
}

/// Keeps a torrent from being evicted while a player is on it.
pub struct PlayGuard {
    entry: Arc<Entry>,
    over_cache_limit: Option<CacheOverflow>,
}

impl PlayGuard {
    /// Set when this film alone is larger than the cache limit: it plays all the same, and
    /// is the first to be evicted once something else is watched.
    pub fn over_cache_limit(&self) -> Option<CacheOverflow> {
        self.over_cache_limit
    }
}

/// A film in the cache that is larger than the whole cache limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOverflow {
    /// The film's size in bytes.
    pub film_bytes: u64,
    /// The cache limit in bytes.
    pub limit_bytes: u64,
}

impl std::fmt::Display for CacheOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this film ({}) is larger than the cache limit ({}): it plays, and is evicted \
             first when you watch something else",
            kino_core::size::human_bytes(self.film_bytes),
            kino_core::size::human_bytes(self.limit_bytes)
        )
    }
}

impl Drop for PlayGuard {
    fn drop(&mut self) {
        self.entry.pins.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Transfer figures for one torrent, for status lines and `kino status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferStatus {
    /// Download rate, bytes per second.
    pub down_bps: f64,
    /// Upload rate, bytes per second.
    pub up_bps: f64,
    /// Connected peers.
    pub peers: u32,
    /// Bytes verified so far.
    pub have_bytes: u64,
    /// Total bytes.
    pub total_bytes: u64,
    /// Bytes uploaded over all runs (shared).
    pub uploaded_total: u64,
    /// Whether the torrent is complete.
    pub finished: bool,
    /// Whether it is uploading (sharing on, not stopped).
    pub sharing: bool,
    /// Pieces peers sent that failed verification (a lower bound: see `engine/rejected.rs`).
    /// Their bytes never reach a reader; the pieces are fetched again.
    pub rejected_pieces: u64,
    /// What keeps it from making progress, if anything (shown instead of peer counts).
    pub problem: Option<Problem>,
}

/// What a player has ahead of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlaybackStatus {
    /// Reader position in the file (the furthest open reader).
    pub position: u64,
    /// Bytes readable without waiting from that position.
    pub buffered_bytes: u64,
    /// The same in seconds of media, when the bitrate is known.
    pub buffered_secs: Option<f64>,
    /// Container facts, once probed.
    pub media: Option<MediaInfo>,
    /// Transfer figures.
    pub transfer: TransferStatus,
}

impl Engine {
    /// Starts the engine: locks the data folder, opens the session and starts the share
    /// policy task.
    pub async fn start(config: EngineConfig, store: Arc<Store>) -> Result<Engine, EngineError> {
        let media_dir = config.data_dir.join("media");
        std::fs::create_dir_all(&media_dir)
            .map_err(|e| EngineError::io(format!("cannot create {}", media_dir.display()), e))?;
        let lock_path = config.data_dir.join("kino.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| EngineError::io(format!("cannot open {}", lock_path.display()), e))?;
        if lock.try_lock().is_err() {
            return Err(EngineError::DataDirLocked(config.data_dir.clone()));
        }

        let cancel = CancellationToken::new();
        let max_streams = config.max_streams.max(1);
        let mut opts = SessionOptions {
            disable_trackers: false,
            fastresume: false,
            persistence: None,
            listen: config.listen.map(|addr| ListenerOptions {
                mode: ListenerMode::TcpOnly,
                listen_addr: addr,
                enable_upnp_port_forwarding: false,
                announce_port: (addr.port() != 0).then_some(addr.port()),
                ipv4_only: addr.is_ipv4(),
                ..Default::default()
            }),
            dht: config.dht.then(|| DhtSessionConfig {
                bootstrap_addrs: (!config.dht_bootstrap.is_empty())
                    .then(|| config.dht_bootstrap.clone()),
                port: None,
                persistence: None,
            }),
            cancellation_token: Some(cancel.child_token()),
            runtime_worker_threads: Some(max_streams + RESERVED_IO_PERMITS),
            ratelimits: LimitsConfig {
                upload_bps: config
                    .share
                    .upload_limit_bps
                    .and_then(std::num::NonZeroU32::new),
                download_bps: None,
            },
            disable_local_service_discovery: !config.local_discovery,
            disable_upload: !config.share.enabled,
            ipv4_only: config.listen.is_some_and(|a| a.is_ipv4()),
            client_name_and_version: Some(concat!("Kino ", env!("CARGO_PKG_VERSION")).into()),
            connect: Some(ConnectionOptions {
                peer_opts: Some(PeerConnectionOptions {
                    max_request_window: Some(config.peer_request_window.max(1)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        opts.root_span = Some(info_span!("engine"));
        let session = Session::new_with_opts(media_dir.clone(), opts)
            .await
            .map_err(|e| EngineError::session("cannot start the torrent session", e))?;
        let api = Api::new(session.clone(), None);
        let engine = Engine {
            inner: Arc::new(Inner {
                session,
                api,
                store,
                media_dir,
                stream_slots: Arc::new(Semaphore::new(max_streams)),
                torrents: Mutex::new(HashMap::new()),
                evicting: tokio::sync::Mutex::new(()),
                cancel,
                tasks: TaskTracker::new(),
                config,
                _lock: lock,
            }),
        };
        engine.spawn_policy_task();
        Ok(engine)
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The database.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The address peers can reach this engine on, if it listens.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.session.listen_addr()
    }

    /// Background tasks still running (tests assert none outlive [`Engine::shutdown`]).
    pub fn task_count(&self) -> usize {
        self.inner.tasks.len()
    }

    fn entry(&self, ih: &Id20) -> Option<Arc<Entry>> {
        lock(&self.inner.torrents).get(ih).cloned()
    }

    /// A managed torrent by infohash.
    pub fn torrent(&self, ih: &Id20) -> Option<Torrent> {
        self.entry(ih).map(|entry| Torrent { entry })
    }

    /// Resolves a source to validated metainfo without adding it (to check a user's choice of
    /// file before anything is written): from the source itself, from the database, or from
    /// the swarm (magnet metadata, BEP 9), bounded by `metadata_timeout`. Returns the peers seen
    /// while resolving, to pass on to [`Engine::add`].
    pub async fn resolve_source(
        &self,
        source: &TorrentSource,
        peers: &[SocketAddr],
    ) -> Result<(TorrentInfo, Vec<SocketAddr>), EngineError> {
        self.resolve(source, peers).await
    }

    async fn resolve(
        &self,
        source: &TorrentSource,
        peers: &[SocketAddr],
    ) -> Result<(TorrentInfo, Vec<SocketAddr>), EngineError> {
        if let TorrentSource::Metainfo(info) = source {
            return Ok((info.clone(), Vec::new()));
        }
        let ih = source.infohash();
        let hex = infohash_hex(&ih);
        if let Some(rec) = self.inner.store.torrent(&hex)? {
            return Ok((
                TorrentInfo::from_bytes(Bytes::from(rec.metainfo))?,
                Vec::new(),
            ));
        }
        let uri = match source {
            TorrentSource::Magnet { uri, .. } => uri.clone(),
            _ => format!("magnet:?xt=urn:btih:{hex}"),
        };
        let opts = AddTorrentOptions {
            list_only: true,
            initial_peers: (!peers.is_empty()).then(|| peers.to_vec()),
            ..Default::default()
        };
        let timeout = self.inner.config.metadata_timeout;
        let resp = tokio::select! {
            r = tokio::time::timeout(timeout, self.inner.session.add_torrent(AddTorrent::from_url(uri), Some(opts))) => r,
            _ = self.inner.cancel.cancelled() => return Err(EngineError::ShuttingDown),
        };
        let resp = resp.map_err(|_| {
            EngineError::Timeout(format!(
                "no peer sent the torrent's metadata within {} s: the swarm is unreachable \
                 (check --peer, the DHT bootstrap nodes, or your network)",
                timeout.as_secs()
            ))
        })?;
        match resp.map_err(|e| EngineError::session("cannot resolve magnet", e))? {
            AddTorrentResponse::ListOnly(r) => {
                let info = TorrentInfo::from_bytes(r.torrent_bytes)?;
                if info.infohash != ih {
                    return Err(EngineError::invalid(
                        "peer sent metadata of another torrent",
                    ));
                }
                Ok((info, r.seen_peers))
            }
            _ => Err(EngineError::Session(
                "unexpected answer while resolving magnet".into(),
            )),
        }
    }

    /// Adds a torrent (or returns the one already managed), downloading in the background and
    /// sharing per the policy.
    pub async fn add(
        &self,
        source: &TorrentSource,
        opts: AddOptions,
    ) -> Result<Torrent, EngineError> {
        self.add_capped(source, opts, None).await
    }

    /// [`Engine::add`], refusing torrents larger than `max_total_bytes` (checked on the
    /// metainfo, before any piece is fetched): catalogs and update repositories are small, and
    /// a hostile pointer must not make Kino download a film.
    pub async fn add_capped(
        &self,
        source: &TorrentSource,
        opts: AddOptions,
        max_total_bytes: Option<u64>,
    ) -> Result<Torrent, EngineError> {
        Ok(self
            .add_inner(source, opts, max_total_bytes, false)
            .await?
            .0)
    }

    /// [`Engine::add`] for a player: the torrent comes back already pinned by a
    /// [`PlayGuard`], which was taken before the cache limit is enforced, so a film larger
    /// than the whole cache still plays ([`PlayGuard::over_cache_limit`] says so).
    pub async fn add_for_playing(
        &self,
        source: &TorrentSource,
        opts: AddOptions,
    ) -> Result<(Torrent, PlayGuard), EngineError> {
        let (torrent, guard) = self.add_inner(source, opts, None, true).await?;
        let guard = guard.ok_or_else(|| EngineError::Session("the film was not pinned".into()))?;
        Ok((torrent, guard))
    }

    async fn add_inner(
        &self,
        source: &TorrentSource,
        opts: AddOptions,
        max_total_bytes: Option<u64>,
        play: bool,
    ) -> Result<(Torrent, Option<PlayGuard>), EngineError> {
        // Playing: no eviction may run between finding (or adding) the torrent and pinning it.
        let evicting = if play {
            Some(self.inner.evicting.lock().await)
        } else {
            None
        };
        if let Some(entry) = self.entry(&source.infohash()) {
            let guard = self.pin_if(play, &entry)?;
            return Ok((Torrent { entry }, guard));
        }
        drop(evicting);
        let (info, mut seen) = self.resolve(source, &opts.peers).await?;
        if let Some(max) = max_total_bytes
            && info.total_len > max
        {
            return Err(EngineError::invalid(format!(
                "torrent {} is {} bytes, more than the {max} allowed here",
                info.name, info.total_len
            )));
        }
        let hex = infohash_hex(&info.infohash);
        let known = self.inner.store.torrent(&hex)?;
        let cache_dir = self.inner.media_dir.join(&hex);
        let (kind, output_dir, plan) = match &opts.placement {
            // Files Kino already has (a cache entry, a fetched or seeded copy) are reused; a
            // fetched or seeded copy is the user's, so only read, and only if it still matches.
            Placement::Cache => match known {
                Some(r) if r.kind == TorrentKind::Seed => (r.kind, r.output_dir, Plan::Seed),
                Some(r) => (r.kind, r.output_dir, Plan::Write),
                None => (TorrentKind::Cache, cache_dir.clone(), Plan::Write),
            },
            Placement::SeedFrom(root) => (TorrentKind::Seed, root.clone(), Plan::Seed),
            Placement::Download(dir) | Placement::Replace(dir) => {
                let out = if info.single_file {
                    dir.clone()
                } else {
                    dir.join(&info.name)
                };
                let ours = known.is_some_and(|r| r.output_dir == out);
                let replace = matches!(opts.placement, Placement::Replace(_));
                let plan = if ours || replace {
                    Plan::Write
                } else {
                    Plan::Download
                };
                (TorrentKind::Seed, out, plan)
            }
        };
        seen.extend(opts.peers.iter().copied());
        seen.sort();
        seen.dedup();
        let evicting = if play {
            Some(self.inner.evicting.lock().await)
        } else {
            None
        };
        let reused_users_copy = matches!(opts.placement, Placement::Cache) && plan == Plan::Seed;
        let entry = match self
            .add_resolved(info.clone(), kind, output_dir, seen.clone(), plan)
            .await
        {
            // The user's copy changed since: play from a fresh cache copy, leaving it alone.
            Err(EngineError::DataMismatch { dir, .. }) if reused_users_copy => {
                warn!(dir = %dir.display(), "the files Kino had for this torrent changed; downloading it into the cache");
                self.add_resolved(info, TorrentKind::Cache, cache_dir, seen, Plan::Write)
                    .await?
            }
            r => r?,
        };
        let guard = self.pin_if(play, &entry)?;
        drop(evicting);
        self.enforce_cache_limit().await?;
        Ok((Torrent { entry }, guard))
    }

    fn pin_if(&self, play: bool, entry: &Arc<Entry>) -> Result<Option<PlayGuard>, EngineError> {
        if play {
            self.play_guard(&entry.info.infohash).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Seeds a torrent made by [`crate::create::create_torrent`] from its files in place, and
    /// waits until librqbit has verified them (a publisher announces only what it can serve).
    pub async fn seed_created(
        &self,
        created: &crate::create::CreatedTorrent,
    ) -> Result<Torrent, EngineError> {
        let torrent = self
            .add(
                &TorrentSource::Metainfo(created.info.clone()),
                AddOptions {
                    peers: Vec::new(),
                    placement: Placement::SeedFrom(created.content_root.clone()),
                },
            )
            .await?;
        torrent.wait_until_completed().await?;
        Ok(torrent)
    }

    /// Downloads a small torrent named only by its infohash (a catalog or an update repository
    /// found through a signed pointer) into `folder`, refusing it when its metainfo says more
    /// than `max_total_bytes`, and waiting at most `timeout`. Returns the torrent and the folder
    /// holding its content (`folder`, or `folder/<name>` for a multi-file torrent). It keeps
    /// seeding afterwards, per the share policy. `what` names it in errors.
    pub async fn download_small(
        &self,
        infohash: Id20,
        peers: Vec<SocketAddr>,
        folder: &Path,
        max_total_bytes: u64,
        timeout: Duration,
        what: &str,
    ) -> Result<(Torrent, PathBuf), EngineError> {
        std::fs::create_dir_all(folder)
            .map_err(|e| EngineError::io(format!("cannot create {}", folder.display()), e))?;
        let torrent = self
            .add_capped(
                &TorrentSource::InfoHash(infohash),
                AddOptions {
                    peers,
                    placement: Placement::Download(folder.to_path_buf()),
                },
                Some(max_total_bytes),
            )
            .await?;
        tokio::time::timeout(timeout, torrent.wait_until_completed())
            .await
            .map_err(|_| {
                EngineError::Timeout(format!(
                    "the {what} torrent did not download within {} s",
                    timeout.as_secs()
                ))
            })??;
        let info = torrent.info();
        let content = if info.single_file {
            folder.to_path_buf()
        } else {
            folder.join(&info.name)
        };
        Ok((torrent, content))
    }

    /// Adds a resolved torrent to the session over Kino's own storage, per `plan` (see
    /// [`Plan`]), and records it. On any failure the torrent leaves the session and nothing
    /// its storage created is left behind.
    async fn add_resolved(
        &self,
        info: TorrentInfo,
        kind: TorrentKind,
        output_dir: PathBuf,
        peers: Vec<SocketAddr>,
        plan: Plan,
    ) -> Result<Arc<Entry>, EngineError> {
        let access = match plan {
            Plan::Write => Access::ReadWrite,
            Plan::Seed | Plan::SeedInBackground | Plan::Download => Access::ReadOnly,
        };
        let files = TorrentFiles::new(
            &output_dir,
            info.files.iter().map(|f| FileSpec {
                path: f.path.clone(),
                len: f.len,
                padding: f.padding,
            }),
            access,
            self.inner.config.max_open_files_per_torrent,
        )
        .map_err(|e| match e {
            StorageError::Name { .. } => {
                EngineError::invalid(format!("refused torrent: {}", Report(&e)))
            }
            e => EngineError::Session(Report(&e).to_string()),
        })?;
        let files = Arc::new(files);
        // What must be checked before anything is written or seeded.
        let check = match plan {
            Plan::Write => None,
            Plan::Seed | Plan::SeedInBackground => Some(None),
            Plan::Download => match files.first_existing() {
                Some(existing) => Some(Some(existing)),
                None => {
                    // Nothing of it is there yet: nothing can be overwritten.
                    files.allow_writes();
                    None
                }
            },
        };
        let output = output_dir.to_str().ok_or_else(|| {
            EngineError::invalid(format!("{} is not valid UTF-8", output_dir.display()))
        })?;
        let add_opts = AddTorrentOptions {
            // A torrent to check starts paused: librqbit's initial check hashes what is there
            // through the read-only storage, and it goes live only if that is all right.
            paused: check.is_some(),
            overwrite: true,
            output_folder: Some(output.to_owned()),
            initial_peers: (!peers.is_empty()).then_some(peers),
            storage_factory: Some(KinoStorageFactory::new(files.clone()).boxed()),
            ..Default::default()
        };
        let resp = self
            .inner
            .session
            .add_torrent(
                AddTorrent::from_bytes(info.metainfo.clone()),
                Some(add_opts),
            )
            .await
            .map_err(|e| {
                files.remove_created();
                EngineError::session("cannot add torrent", e)
            })?;
        let handle = match resp {
            AddTorrentResponse::Added(_, h) => h,
            // Added meanwhile by another caller: use theirs.
            AddTorrentResponse::AlreadyManaged(_, h) => match self.entry(&info.infohash) {
                Some(entry) => return Ok(entry),
                None => h,
            },
            AddTorrentResponse::ListOnly(_) => {
                return Err(EngineError::Session("torrent was not added".into()));
            }
        };
        let ih = info.infohash;
        let name = info.name.clone();
        let entry = Arc::new(Entry {
            info,
            handle,
            files: files.clone(),
            open_streams: AtomicUsize::new(0),
            pins: AtomicUsize::new(0),
            positions: Mutex::new(HashMap::new()),
            media: Mutex::new(HashMap::new()),
            counted: Mutex::new((0, 0)),
            next_stream_id: AtomicU64::new(0),
        });
        let checked = match check {
            Some(existing) if plan != Plan::SeedInBackground => {
                self.check_existing(&entry, existing).await
            }
            _ => Ok(()),
        };
        let recorded = checked.and_then(|()| self.record(&entry, kind, &output_dir));
        if let Err(e) = recorded {
            self.discard(&ih, &files).await;
            return Err(e);
        }
        let entry = lock(&self.inner.torrents)
            .entry(ih)
            .or_insert(entry)
            .clone();
        if plan == Plan::SeedInBackground {
            self.spawn_background_check(entry.clone());
        }
        debug!(%name, "torrent added");
        Ok(entry)
    }

    /// Waits for librqbit's initial check of a paused torrent (read-only storage) and starts it
    /// if every piece matched. `existing` names the file a download would overwrite; without
    /// it, the data is the user's to seed from.
    async fn check_existing(
        &self,
        entry: &Entry,
        existing: Option<PathBuf>,
    ) -> Result<(), EngineError> {
        let (matching, pieces) = self.verified_pieces(entry).await?;
        if matching < pieces {
            return Err(match existing {
                Some(path) => EngineError::WouldOverwrite {
                    path,
                    matching,
                    pieces,
                },
                None => EngineError::DataMismatch {
                    dir: entry.files.root().to_path_buf(),
                    torrent: entry.info.name.clone(),
                    matching,
                    pieces,
                },
            });
        }
        if existing.is_some() {
            // The files there are this torrent's own: it may write (no piece is missing, but
            // an empty file of the torrent has no piece to prove it, so make it now).
            entry.files.allow_writes();
            for (index, f) in entry.info.files.iter().enumerate() {
                if f.len == 0 && !f.padding {
                    entry.files.set_len(index, 0).map_err(|e| {
                        EngineError::io(
                            "cannot create an empty file of the torrent",
                            std::io::Error::other(e),
                        )
                    })?;
                }
            }
        }
        self.inner
            .session
            .unpause(&entry.handle)
            .await
            .map_err(|e| EngineError::session("cannot start torrent", e))
    }

    /// (pieces whose SHA-1 matched, pieces) once librqbit's initial check is done.
    async fn verified_pieces(&self, entry: &Entry) -> Result<(u64, u64), EngineError> {
        tokio::select! {
            r = entry.handle.wait_until_initialized() => {
                r.map_err(|e| EngineError::session("cannot check the existing data", e))?
            }
            _ = self.inner.cancel.cancelled() => return Err(EngineError::ShuttingDown),
        }
        let (haves, pieces) = self
            .inner
            .api
            .api_dump_haves(TorrentIdOrHash::Hash(entry.info.infohash))
            .map_err(|e| EngineError::Session(format!("cannot read the check's result: {e}")))?;
        Ok((haves.count_ones() as u64, pieces as u64))
    }

    /// Checks a resumed seed in the background: starts it if all its data matches, stops
    /// managing it (the database keeps it) if not.
    fn spawn_background_check(&self, entry: Arc<Entry>) {
        let weak = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(
            async move {
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                let r = tokio::select! {
                    r = engine.check_existing(&entry, None) => r,
                    _ = cancel.cancelled() => return,
                };
                if let Err(e) = r {
                    warn!(name = %entry.info.name, error = %Report(&e), "not seeding");
                    let ih = entry.info.infohash;
                    let ours = lock(&engine.inner.torrents)
                        .get(&ih)
                        .is_some_and(|e| Arc::ptr_eq(e, &entry));
                    if ours && !entry.in_use() {
                        lock(&engine.inner.torrents).remove(&ih);
                        engine.discard(&ih, &entry.files).await;
                    }
                }
            }
            .instrument(info_span!("seed_check")),
        );
    }

    /// Saves a torrent's record (keeping what the database knew of its history).
    fn record(
        &self,
        entry: &Entry,
        kind: TorrentKind,
        output_dir: &Path,
    ) -> Result<(), EngineError> {
        let hex = infohash_hex(&entry.info.infohash);
        let existing = self.inner.store.torrent(&hex)?;
        let record = TorrentRecord {
            infohash: hex,
            name: entry.info.name.clone(),
            metainfo: entry.info.metainfo.to_vec(),
            output_dir: output_dir.to_path_buf(),
            total_bytes: entry.info.total_len,
            kind,
            added_at: existing.as_ref().map_or_else(now_unix, |r| r.added_at),
            last_watched_at: existing.as_ref().and_then(|r| r.last_watched_at),
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            share_stopped: false,
        };
        self.inner.store.upsert_torrent(&record)?;
        Ok(())
    }

    /// Takes a torrent out of the session after a failed add, and removes whatever its
    /// storage created.
    async fn discard(&self, ih: &Id20, files: &TorrentFiles) {
        if let Err(e) = self
            .inner
            .session
            .delete(TorrentIdOrHash::Hash(*ih), false)
            .await
        {
            debug!(error = %format!("{e:#}"), "removing a refused torrent");
        }
        let removed = files.remove_created();
        if removed > 0 {
            debug!(removed, "removed what a failed add created");
        }
    }

    /// Re-adds every torrent in the database whose sharing is not stopped, so they seed
    /// again (what `kino seed` and the long-running app do at start). Torrents whose files
    /// are gone are skipped with a warning. The user's own files (seeded or fetched torrents)
    /// are verified in the background, read-only, and seeded only if they still match.
    /// Returns how many were resumed.
    pub async fn resume_shared(&self) -> Result<usize, EngineError> {
        if !self.inner.config.share.enabled {
            return Ok(0);
        }
        let mut n = 0;
        for rec in self.inner.store.torrents()? {
            if rec.share_stopped {
                continue;
            }
            let Ok(ih) = rec.infohash.parse::<Id20>() else {
                continue;
            };
            if self.entry(&ih).is_some() {
                continue;
            }
            if !rec.output_dir.exists() {
                warn!(name = %rec.name, "files are gone; not seeding");
                continue;
            }
            let info = match TorrentInfo::from_bytes(Bytes::from(rec.metainfo.clone())) {
                Ok(i) => i,
                Err(e) => {
                    warn!(name = %rec.name, error = %Report(&e), "stored metainfo is invalid; skipping");
                    continue;
                }
            };
            let plan = match rec.kind {
                TorrentKind::Cache => Plan::Write,
                TorrentKind::Seed => Plan::SeedInBackground,
            };
            self.add_resolved(info, rec.kind, rec.output_dir.clone(), Vec::new(), plan)
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Keeps a torrent from eviction while a player uses it, and records it as watched now.
    /// (Ratio stop waits only for open streams to close.) To add and pin in one step, use
    /// [`Engine::add_for_playing`].
    pub fn play_guard(&self, ih: &Id20) -> Result<PlayGuard, EngineError> {
        // Pinned under the map lock: eviction checks and removes under it too.
        let entry = {
            let map = lock(&self.inner.torrents);
            let entry = map
                .get(ih)
                .cloned()
                .ok_or_else(|| EngineError::NotFound("torrent not managed".into()))?;
            entry.pins.fetch_add(1, Ordering::SeqCst);
            entry
        };
        let mut guard = PlayGuard {
            entry,
            over_cache_limit: None,
        };
        let hex = infohash_hex(ih);
        self.inner.store.touch_watched(&hex, now_unix())?;
        if let Some(limit) = self.inner.config.share.cache_limit_bytes
            && let Some(rec) = self.inner.store.torrent(&hex)?
            && rec.kind == TorrentKind::Cache
            && rec.total_bytes > limit
        {
            guard.over_cache_limit = Some(CacheOverflow {
                film_bytes: rec.total_bytes,
                limit_bytes: limit,
            });
        }
        Ok(guard)
    }

    /// Opens a reader on one file. Waits up to `stream_slot_wait` for a free slot.
    pub async fn open_stream(&self, ih: &Id20, file: usize) -> Result<KinoStream, EngineError> {
        let entry = self.entry(ih).ok_or_else(|| {
            EngineError::NotFound(format!("torrent {} is not loaded", infohash_hex(ih)))
        })?;
        if entry.info.files.get(file).is_none_or(|f| f.padding) {
            return Err(EngineError::NotFound(format!(
                "no file {file} in this torrent"
            )));
        }
        let wait = self.inner.config.stream_slot_wait;
        let slot = tokio::time::timeout(wait, self.inner.stream_slots.clone().acquire_owned())
            .await
            .map_err(|_| EngineError::Busy(self.inner.config.max_streams))?
            .map_err(|_| EngineError::ShuttingDown)?;
        self.open_stream_with_slot(entry, file, slot).await
    }

    async fn open_stream_with_slot(
        &self,
        entry: Arc<Entry>,
        file: usize,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<KinoStream, EngineError> {
        if entry.files.is_disk_full() && !self.resume_after_disk_full(&entry).await {
            return Err(EngineError::DiskFull {
                dir: entry.files.root().to_path_buf(),
            });
        }
        // A read-only torrent (the user's files, maybe still being checked) is never started
        // to download: it could not store a piece. Paused, it still serves what it has.
        if entry.handle.is_paused()
            && !entry.handle.stats().finished
            && entry.files.access() == Access::ReadWrite
        {
            self.inner
                .session
                .unpause(&entry.handle)
                .await
                .map_err(|e| EngineError::session("cannot resume torrent", e))?;
        }
        let inner = entry.handle.clone().stream(file).await.map_err(|e| {
            if entry.files.is_disk_full() {
                EngineError::DiskFull {
                    dir: entry.files.root().to_path_buf(),
                }
            } else {
                EngineError::session("cannot open stream", e)
            }
        })?;
        self.inner
            .store
            .touch_watched(&infohash_hex(&entry.info.infohash), now_unix())?;
        let len = entry.info.files.get(file).map_or(0, |f| f.len);
        Ok(KinoStream::new(
            Box::new(inner),
            len,
            StreamRegistration::new(entry, file),
            slot,
        ))
    }

    /// Starts fetching the container's index (MP4 `moov` wherever it sits, Matroska `Cues`)
    /// in the background, by parking a stream on it: librqbit fetches the pieces ahead of every
    /// open stream first, so the index arrives early instead of last. The probed facts
    /// (duration, bitrate, codecs) become part of [`PlaybackStatus`].
    pub fn prepare_playback(&self, ih: &Id20, file: usize) {
        let Some(entry) = self.entry(ih) else { return };
        let Some(f) = entry.info.files.get(file).cloned() else {
            return;
        };
        let Ok(slot) = self.inner.stream_slots.clone().try_acquire_owned() else {
            debug!("no free stream slot for index prefetch");
            return;
        };
        let engine = self.clone();
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(
            async move {
                let work = async {
                    let mut stream = engine
                        .open_stream_with_slot(entry.clone(), file, slot)
                        .await?;
                    stream.set_background(true);
                    let name = f.path.to_string_lossy();
                    let mut locator = IndexLocator::new(&name, f.len);
                    let mut buf = Vec::new();
                    for _ in 0..128 {
                        match locator.next_step() {
                            Step::Read { offset, len } => {
                                read_at(&mut stream, offset, len, &mut buf).await?;
                                locator
                                    .feed(offset, &buf)
                                    .map_err(|e| EngineError::invalid(e.to_string()))?;
                            }
                            Step::Done(media) => {
                                // Make sure the whole index is local before parking ends.
                                for r in &media.index_ranges {
                                    let len = (r.end - r.start).min(MAX_INDEX_PREFETCH);
                                    drain_at(&mut stream, r.start, len).await?;
                                }
                                debug!(?media, "container probed");
                                let bitrate = media.bitrate_bps;
                                lock(&entry.media).insert(file, media);
                                engine
                                    .follow_readers(&entry, file, f.len, bitrate, stream)
                                    .await;
                                return Ok::<_, EngineError>(());
                            }
                        }
                    }
                    Ok(())
                };
                tokio::select! {
                    r = work => if let Err(e) = r { debug!(error = %Report(&e), "index prefetch stopped") },
                    _ = cancel.cancelled() => {}
                }
            }
            .instrument(info_span!("index_prefetch", file)),
        );
    }

    /// Sizes the read-ahead to the bitrate. librqbit fetches a fixed 32 MiB ahead of each
    /// stream: at 8 Mbit/s that is only 33 s. When `readahead_secs` of media need more, this
    /// keeps a companion stream parked where the players' window ends, so librqbit fetches the
    /// next 32 MiB too. It parks there only once the players have a window's worth buffered
    /// (or `readahead_secs / 4` seconds), so it never competes with the urgent first pieces.
    /// Ends when the file is complete or the engine stops.
    async fn follow_readers(
        &self,
        entry: &Arc<Entry>,
        file: usize,
        file_len: u64,
        bitrate_bps: Option<u64>,
        mut companion: KinoStream,
    ) {
        let Some(bytes_per_sec) = bitrate_bps.map(|b| b / 8).filter(|b| *b > 0) else {
            return;
        };
        let want = bytes_per_sec.saturating_mul(self.inner.config.readahead_secs as u64);
        if want <= LIBRQBIT_STREAM_WINDOW || file_len <= LIBRQBIT_STREAM_WINDOW {
            return;
        }
        let min_buffer = LIBRQBIT_STREAM_WINDOW
            .min(bytes_per_sec.saturating_mul(self.inner.config.readahead_secs as u64 / 4));
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // Bounded by the file completing or the engine's cancellation (the caller selects on it).
        loop {
            tick.tick().await;
            let Some(pos) = lock(&entry.positions)
                .values()
                .filter(|(fi, _)| *fi == file)
                .map(|(_, p)| *p)
                .max()
            else {
                continue;
            };
            let buffered = self.contiguous_from(entry, file, pos).unwrap_or(0);
            if pos + buffered >= file_len {
                if self.contiguous_from(entry, file, 0).unwrap_or(0) >= file_len {
                    return;
                }
                continue;
            }
            let target = if buffered >= min_buffer {
                (pos + LIBRQBIT_STREAM_WINDOW).min(file_len - 1)
            } else {
                pos
            };
            if companion.position() != target
                && companion
                    .seek(std::io::SeekFrom::Start(target))
                    .await
                    .is_err()
            {
                return;
            }
        }
    }

    /// Transfer figures for a torrent.
    pub fn transfer_status(&self, ih: &Id20) -> Option<TransferStatus> {
        let entry = self.entry(ih)?;
        let stats = entry.handle.stats();
        let hex = infohash_hex(ih);
        let stored = self.inner.store.torrent(&hex).ok().flatten();
        let counted = lock(&entry.counted).0;
        let uploaded_total = stored.as_ref().map_or(0, |r| r.uploaded_bytes)
            + stats.uploaded_bytes.saturating_sub(counted);
        let (down_bps, up_bps, peers) = stats.live.as_ref().map_or((0.0, 0.0, 0), |l| {
            (
                l.download_speed.mbps * 1024.0 * 1024.0,
                l.upload_speed.mbps * 1024.0 * 1024.0,
                l.snapshot.peer_stats.live,
            )
        });
        Some(TransferStatus {
            down_bps,
            up_bps,
            peers,
            have_bytes: stats.progress_bytes,
            total_bytes: stats.total_bytes,
            uploaded_total,
            finished: stats.finished,
            sharing: self.inner.config.share.enabled
                && !stored.is_some_and(|r| r.share_stopped)
                && !entry.handle.is_paused(),
            rejected_pieces: rejected::rejected_pieces(&entry),
            problem: entry.files.is_disk_full().then_some(Problem::DiskFull),
        })
    }

    /// What the readers of one file have ahead of them.
    pub fn playback_status(&self, ih: &Id20, file: usize) -> Option<PlaybackStatus> {
        let entry = self.entry(ih)?;
        let transfer = self.transfer_status(ih)?;
        entry.info.files.get(file)?;
        let position = lock(&entry.positions)
            .values()
            .filter(|(fi, _)| *fi == file)
            .map(|(_, p)| *p)
            .max()
            .unwrap_or(0);
        let media = lock(&entry.media).get(&file).cloned();
        let buffered_bytes = self.contiguous_from(&entry, file, position).unwrap_or(0);
        let buffered_secs = media
            .as_ref()
            .and_then(|m| m.bitrate_bps)
            .filter(|b| *b > 0)
            .map(|b| buffered_bytes as f64 * 8.0 / b as f64);
        Some(PlaybackStatus {
            position,
            buffered_bytes,
            buffered_secs,
            media,
            transfer,
        })
    }

    /// Bytes available without waiting from `pos` in `file`.
    fn contiguous_from(&self, entry: &Entry, file: usize, pos: u64) -> Option<u64> {
        let f = entry.info.files.get(file)?;
        let offset: u64 = entry.info.files[..file].iter().map(|f| f.len).sum();
        let (haves, _n) = self
            .inner
            .api
            .api_dump_haves(TorrentIdOrHash::Hash(entry.info.infohash))
            .ok()?;
        let pl = entry.info.piece_length as u64;
        let abs = offset + pos;
        let end = offset + f.len;
        let mut piece = abs / pl;
        let mut reach = abs;
        while reach < end {
            if !haves.get(piece as usize).map(|b| *b).unwrap_or(false) {
                break;
            }
            piece += 1;
            reach = (piece * pl).min(end);
        }
        Some(reach.saturating_sub(abs))
    }

    /// Saves transfer totals, stops sharing torrents that reached the ratio limit, and
    /// evicts cache entries over the cache limit. Runs every [`POLICY_INTERVAL`].
    pub async fn enforce_share_policy(&self) -> Result<(), EngineError> {
        let entries: Vec<Arc<Entry>> = lock(&self.inner.torrents).values().cloned().collect();
        let ratio_limit = self.inner.config.share.ratio_limit;
        for entry in entries {
            let stats = entry.handle.stats();
            let down = stats
                .live
                .as_ref()
                .map_or(0, |l| l.snapshot.downloaded_and_checked_bytes);
            let (du, dd) = {
                let mut c = lock(&entry.counted);
                let delta = (
                    stats.uploaded_bytes.saturating_sub(c.0),
                    down.saturating_sub(c.1),
                );
                *c = (c.0.max(stats.uploaded_bytes), c.1.max(down));
                delta
            };
            let hex = infohash_hex(&entry.info.infohash);
            self.inner.store.add_transfer(&hex, du, dd)?;
            let Some(rec) = self.inner.store.torrent(&hex)? else {
                continue;
            };
            // Ratio stop waits for open streams to end (a play guard only protects from eviction).
            if !stats.finished
                || entry.open_streams.load(Ordering::SeqCst) > 0
                || entry.handle.is_paused()
            {
                continue;
            }
            // Stopped earlier (and played again since), or the ratio limit is reached now.
            let reached = ratio_limit.is_some_and(|limit| rec.ratio() >= limit);
            if rec.share_stopped || reached {
                info!(name = %rec.name, ratio = rec.ratio(), "sharing stopped (ratio limit)");
                self.inner
                    .session
                    .pause(&entry.handle)
                    .await
                    .map_err(|e| EngineError::session("cannot pause torrent", e))?;
                self.inner.store.set_share_stopped(&hex, true)?;
            }
        }
        self.enforce_cache_limit().await
    }

    /// Evicts least-recently-watched cache torrents until the cache fits its limit. Never
    /// evicts a torrent in use (open stream or play guard), the most recently used one (a
    /// film larger than the limit stays until something else is watched), or anything outside
    /// the cache.
    pub async fn enforce_cache_limit(&self) -> Result<(), EngineError> {
        let Some(limit) = self.inner.config.share.cache_limit_bytes else {
            return Ok(());
        };
        let _evicting = self.inner.evicting.lock().await;
        let mut candidates = self.inner.store.eviction_candidates()?;
        let mut total: u64 = candidates.iter().map(|r| r.total_bytes).sum();
        // The last in eviction order is the one watched (or added) most recently.
        candidates.pop();
        for rec in candidates {
            if total <= limit {
                break;
            }
            let Ok(ih) = rec.infohash.parse::<Id20>() else {
                continue;
            };
            let removed = {
                let mut map = lock(&self.inner.torrents);
                match map.get(&ih) {
                    Some(entry) if entry.in_use() => continue,
                    Some(_) => map.remove(&ih).is_some(),
                    None => false,
                }
            };
            if removed {
                self.inner
                    .session
                    .delete(TorrentIdOrHash::Hash(ih), false)
                    .await
                    .map_err(|e| EngineError::session("cannot remove torrent", e))?;
            }
            let engine = self.clone();
            let hex = rec.infohash.clone();
            tokio::task::spawn_blocking(move || engine.remove_cache_dir(&hex))
                .await
                .map_err(|e| EngineError::Session(format!("cache eviction failed: {e}")))??;
            self.inner.store.remove_torrent(&rec.infohash)?;
            info!(name = %rec.name, bytes = rec.total_bytes, "evicted from cache");
            total = total.saturating_sub(rec.total_bytes);
        }
        Ok(())
    }

    /// Restarts every torrent stopped by a full disk that has room again.
    async fn resume_disk_full(&self) {
        let stopped: Vec<Arc<Entry>> = lock(&self.inner.torrents)
            .values()
            .filter(|e| e.files.is_disk_full())
            .cloned()
            .collect();
        for entry in stopped {
            self.resume_after_disk_full(&entry).await;
        }
    }

    /// Restarts one torrent stopped by a full disk if the file system has room for a couple of
    /// its pieces again (or cannot say). Returns whether it was restarted.
    async fn resume_after_disk_full(&self, entry: &Entry) -> bool {
        let room = (entry.info.piece_length as u64)
            .saturating_mul(2)
            .max(DISK_FULL_RESUME_ROOM);
        if entry.files.free_space().is_some_and(|free| free < room) {
            return false;
        }
        info!(name = %entry.info.name, "there is room on the disk again; resuming");
        entry.files.clear_disk_full();
        let failed = entry
            .handle
            .with_state(|s| matches!(s, librqbit::ManagedTorrentState::Error(_)));
        if failed && let Err(e) = self.inner.session.unpause(&entry.handle).await {
            warn!(name = %entry.info.name, error = %format!("{e:#}"), "cannot resume after a full disk");
            return false;
        }
        true
    }

    /// Deletes `media/<infohash>` (and nothing else: the name is checked to be a plain
    /// 40-hex infohash).
    fn remove_cache_dir(&self, hex: &str) -> Result<(), EngineError> {
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EngineError::invalid(format!(
                "refusing to delete cache entry {hex:?}"
            )));
        }
        let dir = self.inner.media_dir.join(hex);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(
                format!("cannot delete {}", dir.display()),
                e,
            )),
        }
    }

    fn spawn_policy_task(&self) {
        let weak = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(
            async move {
                let mut tick = tokio::time::interval(POLICY_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = cancel.cancelled() => return,
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    let engine = Engine { inner };
                    if let Err(e) = engine.enforce_share_policy().await {
                        warn!(error = %Report(&e), "share policy");
                    }
                    // After the cache limit may have evicted something: room for a torrent
                    // stopped by a full disk?
                    engine.resume_disk_full().await;
                }
            }
            .instrument(info_span!("share_policy")),
        );
    }

    /// Stops the engine: saves totals, cancels and awaits every background task, stops the
    /// session. Open streams end with an error.
    pub async fn shutdown(&self) {
        if let Err(e) = self.enforce_share_policy().await {
            warn!(error = %Report(&e), "saving totals at shutdown");
        }
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.session.stop().await;
        lock(&self.inner.torrents).clear();
    }

    /// Stops managing a torrent and forgets it in the database. Files are left in place
    /// (the caller owns them); a torrent in use is refused.
    pub async fn forget(&self, ih: &Id20) -> Result<(), EngineError> {
        if let Some(entry) = self.entry(ih) {
            if entry.in_use() {
                return Err(EngineError::invalid(
                    "the torrent is playing; stop it first",
                ));
            }
            lock(&self.inner.torrents).remove(ih);
            self.inner
                .session
                .delete(TorrentIdOrHash::Hash(*ih), false)
                .await
                .map_err(|e| EngineError::session("cannot remove torrent", e))?;
        }
        self.inner.store.remove_torrent(&infohash_hex(ih))?;
        Ok(())
    }

    /// Media folder (cache).
    pub fn media_dir(&self) -> &Path {
        &self.inner.media_dir
    }
}

async fn read_at(
    stream: &mut KinoStream,
    offset: u64,
    len: usize,
    buf: &mut Vec<u8>,
) -> Result<(), EngineError> {
    let len = len.min(MAX_INDEX_PREFETCH as usize);
    stream
        .seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| EngineError::io("seek", e))?;
    buf.clear();
    (&mut *stream)
        .take(len as u64)
        .read_to_end(buf)
        .await
        .map_err(|e| EngineError::io("read", e))?;
    Ok(())
}

async fn drain_at(stream: &mut KinoStream, offset: u64, len: u64) -> Result<(), EngineError> {
    stream
        .seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| EngineError::io("seek", e))?;
    tokio::io::copy(&mut (&mut *stream).take(len), &mut tokio::io::sink())
        .await
        .map_err(|e| EngineError::io("read", e))?;
    Ok(())
}

/// Completes once `files` is marked disk-full (at once if it is now). Never completes
/// otherwise: the caller selects it against the work it guards.
pub(crate) async fn wait_disk_full(files: &TorrentFiles) {
    // Each turn waits for a cancellation, which only comes with a full disk.
    loop {
        let signal = files.disk_full_signal();
        if files.is_disk_full() {
            return;
        }
        signal.cancelled().await;
        if files.is_disk_full() {
            return;
        }
    }
}

/// Locks a mutex, recovering from poisoning (no invariant here spans a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
