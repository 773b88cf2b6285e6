//! The session: one listener, the torrents, the ban list and the upload budget they share,
//! and the ordered shutdown of every task.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kino_swarm::{Geometry, MemoryStorage, Role, Session, SessionConfig, TorrentOptions,
//!     TorrentSpec};
//! # async fn demo(piece_hashes: Vec<[u8; 20]>, info_hash: [u8; 20],
//! #     seeder: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
//! let session = Session::new(SessionConfig {
//!     listen: Some("127.0.0.1:0".parse()?),
//!     ..SessionConfig::default()
//! })
//! .await?;
//! let torrent = session.add_torrent(TorrentSpec {
//!     info_hash,
//!     geometry: Geometry::new(1 << 20, 256 * 1024)?,
//!     piece_hashes,
//!     storage: Arc::new(MemoryStorage::empty(1 << 20)),
//!     role: Role::Download,
//!     options: TorrentOptions::default(),
//! })?;
//! torrent.add_peers([seeder]).await?;
//! let mut reader = torrent.reader(0..1 << 20).await?;
//! let mut film = Vec::new();
//! tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut film).await?;
//! session.shutdown().await;
//! assert_eq!(session.task_count(), 0);
//! # Ok(()) }
//! ```
//!
//! # Tasks and shutdown
//! Every task is spawned through one helper (`tasks.rs`) with a name, a tracing span and a
//! cancellation token from its owner:
//! ```text
//! root token ── listener token ── the listener task
//!            ├─ torrents token ── a torrent task ── its outgoing connection tasks
//!            └─ incoming token ── incoming connection tasks (a torrent cancels the ones
//!                                 registered with it through their own token)
//! ```
//! [`Session::shutdown`] goes in order: (1) the listener stops accepting and is awaited;
//! (2) every torrent is cancelled and awaited: each closes its peers, waits for its
//! blocking hash and write jobs and marks itself stopped, so readers fail instead of
//! waiting; (3) everything left (handshakes in progress, connections winding down,
//! storage reads) is cancelled, and the session waits until no tracked task or blocking
//! job is left. [`Session::task_count`] is then 0. Dropping the session without shutting
//! it down cancels everything without waiting.
//!
//! # Limits
//! - Peers per torrent ([`SessionConfig::max_peers_per_torrent`]): outgoing attempts in
//!   progress count; a connection beyond it is refused.
//! - Half-open connections ([`SessionConfig::max_half_open`]): connection attempts and
//!   handshakes in progress, in both directions. An outgoing attempt waits for a slot; an
//!   incoming connection without one is closed at once.
//! - A banned address (two pieces with its blocks failed their hash check) is refused
//!   before its handshake, in both directions.
//!
//! # Invariants
//! - `torrents` holds the route of every torrent whose task runs, and only those (a task
//!   removes its own route when it ends).
//! - The ban list and the upload budget are behind `std::sync::Mutex`es held for a few
//!   instructions, never across an `await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::choker::{ChokerConfig, UploadBudget};
use crate::peer::{BanList, DEFAULT_BAN_CAPACITY, PeerConfig, Strike};
use crate::tasks::Tasks;
use crate::torrent::{Route, Torrent, TorrentSpec, spawn_torrent};
use crate::wire::Handshake;

/// How long the listener waits after an accept error (too many open files, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A session's knobs. Every field has a documented default ([`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionConfig {
    /// Where to listen for peers (default none: no incoming peers). Tests use
    /// `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Our peer id (default: `-KN0001-` and 12 random characters).
    pub peer_id: Option<[u8; 20]>,
    /// The upload cap of the whole session in bytes/s (default none).
    pub upload_rate: Option<u64>,
    /// Most peers per torrent (default 50).
    pub max_peers_per_torrent: usize,
    /// Most connection attempts and handshakes in progress (default 16).
    pub max_half_open: usize,
    /// How long a TCP connect may take (default 10 s).
    pub connect_timeout: Duration,
    /// How long the handshakes may take once connected (default 10 s).
    pub handshake_timeout: Duration,
    /// Limits and timers of each connection. Default: [`PeerConfig::default`] with 1024
    /// queued requests: without the extension protocol we announce no `reqq`, and
    /// libtorrent then keeps up to 500 requests at a peer; a queue under that would
    /// disconnect honest peers as flooders.
    pub peer: PeerConfig,
    /// The choker of each torrent (default [`ChokerConfig::default`]).
    pub choker: ChokerConfig,
    /// Addresses the ban list remembers (default 1024).
    pub ban_capacity: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            listen: None,
            peer_id: None,
            upload_rate: None,
            max_peers_per_torrent: 50,
            max_half_open: 16,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            peer: PeerConfig {
                max_queued_uploads: 1024,
                ..PeerConfig::default()
            },
            choker: ChokerConfig::default(),
            ban_capacity: DEFAULT_BAN_CAPACITY,
        }
    }
}

/// Why a session could not start.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr}: {source} (is another program using the port?)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why a torrent was not added.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AddError {
    /// The session already has a torrent with this infohash.
    #[error("this torrent is already in the session")]
    Duplicate,
    /// The piece hashes do not match the geometry.
    #[error("{got} piece hashes for {expected} pieces")]
    PieceHashes {
        /// Hashes given.
        got: usize,
        /// Pieces in the geometry.
        expected: u32,
    },
    /// The session is shutting down.
    #[error("the session is shutting down")]
    ShuttingDown,
}

/// Counters of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStats {
    /// Torrents running.
    pub torrents: usize,
    /// Connections closed for a protocol violation.
    pub violations: u64,
    /// Addresses banned.
    pub banned: usize,
}

/// What the tasks of a session share.
pub(crate) struct SessionCtx {
    pub(crate) cfg: SessionConfig,
    pub(crate) peer_id: [u8; 20],
    /// Seeds the schedulers' and chokers' pseudo-random choices.
    pub(crate) random_seed: u64,
    pub(crate) tasks: Tasks,
    torrents: Mutex<HashMap<[u8; 20], Route>>,
    torrent_tasks: Mutex<Vec<JoinHandle<()>>>,
    listener_task: Mutex<Option<JoinHandle<()>>>,
    bans: Mutex<BanList>,
    budget: Mutex<UploadBudget>,
    pub(crate) half_open: Arc<Semaphore>,
    violations: AtomicU64,
    root: CancellationToken,
    listener_token: CancellationToken,
    pub(crate) torrents_token: CancellationToken,
    incoming_token: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionCtx {
    /// Our handshake for a torrent.
    pub(crate) fn handshake(&self, info_hash: [u8; 20]) -> Handshake {
        Handshake {
            reserved: crate::connection::our_reserved(),
            info_hash,
            peer_id: self.peer_id,
        }
    }

    /// The route of a running torrent.
    pub(crate) fn route(&self, info_hash: &[u8; 20]) -> Option<Route> {
        lock(&self.torrents).get(info_hash).cloned()
    }

    /// A torrent task ends: its route goes (only if it is still this one).
    pub(crate) fn remove_route(&self, route: &Route) {
        let mut torrents = lock(&self.torrents);
        let info_hash = route.shared.info_hash;
        if torrents
            .get(&info_hash)
            .is_some_and(|r| Arc::ptr_eq(&r.shared, &route.shared))
        {
            torrents.remove(&info_hash);
        }
    }

    pub(crate) fn is_banned(&self, ip: IpAddr) -> bool {
        lock(&self.bans).is_banned(ip)
    }

    pub(crate) fn hash_failure(&self, ip: IpAddr) -> Strike {
        lock(&self.bans).hash_failure(ip)
    }

    pub(crate) fn take_upload_budget(&self, bytes: u32, now: Instant) -> Option<Duration> {
        lock(&self.budget).take(bytes, now)
    }

    pub(crate) fn count_violation(&self) {
        self.violations.fetch_add(1, Ordering::Relaxed);
    }
}

/// A BitTorrent session: a listener and the torrents it serves. See the module docs.
#[must_use = "a session runs until it is shut down (dropping it cancels its tasks)"]
pub struct Session {
    ctx: Arc<SessionCtx>,
    local_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session, listening on [`SessionConfig::listen`] if set.
    pub async fn new(config: SessionConfig) -> Result<Session, SessionError> {
        let random_seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let peer_id = config
            .peer_id
            .unwrap_or_else(|| random_peer_id(random_seed));
        let root = CancellationToken::new();
        let ctx = Arc::new(SessionCtx {
            peer_id,
            random_seed,
            tasks: Tasks::default(),
            torrents: Mutex::new(HashMap::new()),
            torrent_tasks: Mutex::new(Vec::new()),
            listener_task: Mutex::new(None),
            bans: Mutex::new(BanList::new(config.ban_capacity)),
            budget: Mutex::new(UploadBudget::new(config.upload_rate, Instant::now())),
            half_open: Arc::new(Semaphore::new(config.max_half_open.max(1))),
            violations: AtomicU64::new(0),
            listener_token: root.child_token(),
            torrents_token: root.child_token(),
            incoming_token: root.child_token(),
            root,
            cfg: config,
        });
        let mut local_addr = None;
        if let Some(addr) = ctx.cfg.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SessionError::Listen { addr, source })?;
            local_addr = listener.local_addr().ok();
            let task_ctx = ctx.clone();
            let handle = ctx.tasks.spawn(
                "listener",
                tracing::debug_span!("listener", ?local_addr),
                ctx.listener_token.clone(),
                move |token| listen(task_ctx, listener, token),
            );
            *lock(&ctx.listener_task) = Some(handle);
        }
        Ok(Session { ctx, local_addr })
    }

    /// The address peers reach us at, if the session listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Our peer id.
    pub fn peer_id(&self) -> [u8; 20] {
        self.ctx.peer_id
    }

    /// Adds a torrent; it starts by checking the data already in its storage.
    pub fn add_torrent(&self, spec: TorrentSpec) -> Result<Torrent, AddError> {
        if self.ctx.root.is_cancelled() {
            return Err(AddError::ShuttingDown);
        }
        let expected = spec.geometry.piece_count();
        if spec.piece_hashes.len() != expected as usize {
            return Err(AddError::PieceHashes {
                got: spec.piece_hashes.len(),
                expected,
            });
        }
        // The routing table stays locked from the duplicate check to the insertion.
        let mut torrents = lock(&self.ctx.torrents);
        if torrents.contains_key(&spec.info_hash) {
            return Err(AddError::Duplicate);
        }
        let info_hash = spec.info_hash;
        let (torrent, route, handle) = spawn_torrent(&self.ctx, spec);
        torrents.insert(info_hash, route);
        drop(torrents);
        let mut tasks = lock(&self.ctx.torrent_tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
        Ok(torrent)
    }

    /// The running torrent with this infohash.
    pub fn torrent(&self, info_hash: &[u8; 20]) -> Option<Torrent> {
        self.ctx.route(info_hash).map(Torrent::new)
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.ctx.is_banned(ip)
    }

    /// The session's counters.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            torrents: lock(&self.ctx.torrents).len(),
            violations: self.ctx.violations.load(Ordering::Relaxed),
            banned: lock(&self.ctx.bans).banned(),
        }
    }

    /// Tasks and blocking jobs still running (0 after [`Session::shutdown`]).
    pub fn task_count(&self) -> usize {
        self.ctx.tasks.len()
    }

    /// The names of the tasks and blocking jobs still running, for diagnostics.
    pub fn running_tasks(&self) -> Vec<&'static str> {
        self.ctx.tasks.running()
    }

    /// Stops everything in order and waits until every task has ended (see the module
    /// docs).
    pub async fn shutdown(&self) {
        self.ctx.listener_token.cancel();
        let listener = lock(&self.ctx.listener_task).take();
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        self.ctx.torrents_token.cancel();
        let torrents = std::mem::take(&mut *lock(&self.ctx.torrent_tasks));
        for torrent in torrents {
            let _ = torrent.await;
        }
        self.ctx.root.cancel();
        self.ctx.tasks.wait().await;
        debug!("session shut down");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ctx.root.cancel();
    }
}

/// `-KN0001-` and 12 characters drawn from `seed`.
fn random_peer_id(seed: u64) -> [u8; 20] {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = *b"-KN0001-000000000000";
    let mut state = seed;
    for byte in &mut id[8..] {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *byte = ALPHABET[(state >> 33) as usize % ALPHABET.len()];
    }
    id
}

/// Accepts peers until cancelled.
async fn listen(ctx: Arc<SessionCtx>, listener: TcpListener, token: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "cannot accept a connection");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        if ctx.is_banned(addr.ip()) {
            debug!(%addr, "refused a banned address");
            continue;
        }
        let Ok(permit) = ctx.half_open.clone().try_acquire_owned() else {
            debug!(%addr, "refused a connection: too many handshakes in progress");
            continue;
        };
        crate::connection::spawn_incoming(
            &ctx,
            stream,
            addr,
            permit,
            ctx.incoming_token.child_token(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_id_names_kino_and_differs_per_seed() {
        let a = random_peer_id(1);
        let b = random_peer_id(2);
        assert_eq!(&a[..8], b"-KN0001-");
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_alphanumeric_or_dash));
    }

    trait AlnumOrDash {
        fn is_ascii_alphanumeric_or_dash(&self) -> bool;
    }

    impl AlnumOrDash for u8 {
        fn is_ascii_alphanumeric_or_dash(&self) -> bool {
            self.is_ascii_alphanumeric() || *self == b'-'
        }
    }
}
