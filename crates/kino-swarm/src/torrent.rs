//! One torrent: a task that owns its [`crate::Scheduler`] and [`crate::Choker`], assembles
//! and verifies pieces, writes them to the [`Storage`], serves uploads from verified pieces,
//! and feeds streaming [`Reader`]s.
//!
//! [`Torrent`] is the handle (cheap to clone); the task runs until the torrent is stopped or
//! the session shuts down. Everything reaches the task through bounded channels: commands
//! from handles, events from its peer connections (a block, a have, a choke, ...); readers
//! tell it where they are through shared atomics and a [`tokio::sync::Notify`], so a reader
//! never blocks on a full channel and a dropped reader is noticed.
//!
//! # States and transitions
//! ```text
//!  add ──> Checking ──(every piece checked)──> Live ──(pause)──> Paused ──(resume)──> Live
//!            (a pause during the check takes effect when it ends)
//!  Live ──(a write fails: disk full, I/O error)──> Failed ──(resume)──> Live
//!  any state ──(stop, session shutdown)──> Stopped (the task ends)
//! ```
//! - **Checking**: every piece is read from the storage and hashed, a few at a time on the
//!   blocking pool; the status counts the pieces checked. Pieces that match are verified
//!   (readers of them are served at once); a read error means the piece is not there.
//!   Peers are refused until the check ends (they would be asked for pieces that may be
//!   on disk already).
//! - **Live**: peers connect (incoming, and the addresses given to
//!   [`Torrent::add_peers`]); with [`Role::Download`] the scheduler's requests go out and
//!   pieces come in; every role uploads verified pieces to the peers the choker unchokes.
//! - **Paused**: every peer connection is closed and none accepted; readers keep waiting
//!   (served from verified pieces only). Resuming reconnects to the known addresses.
//! - **Failed**: a write failed ([`FailReason::DiskFull`] or another storage error): peers
//!   are closed as when paused, and a reader waiting for a piece that is not verified fails
//!   with the reason instead of waiting. Resuming (after space was freed) goes back to Live.
//! - **Stopped**: the task ended; every reader's next wait fails.
//!
//! # Invariants (of the task's state, beside it in `torrent/task.rs`)
//! - The scheduler's peers, the choker's peers and the task's peer table hold the same
//!   keys; a peer leaves all three at once (`remove_peer`), and its connection is cancelled.
//! - A piece is verified in the shared set, the scheduler and the status only after its
//!   bytes are in the storage; nobody reads a piece from the storage before that.
//! - Bytes of unverified blocks held in memory: the assembly buffers plus the pieces
//!   waiting for or in their hash check. Over [`TorrentOptions::max_buffered_bytes`] no new
//!   piece is started (only blocks of started pieces are requested) until pieces complete;
//!   if nothing is in flight then, the least complete buffer is dropped. So at most that
//!   bound plus one piece per request in flight is held (the pipelines are bounded by
//!   [`SchedulerConfig::max_pipeline`] per peer).
//! - Nothing is requested unless the torrent is Live with [`Role::Download`].

mod assembly;
mod dialer;
mod reader;
mod task;
mod verified;

pub use reader::{ReadError, Reader};

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use thiserror::Error;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::geometry::Geometry;
use crate::peer::PeerEvent;
use crate::scheduler::{PeerKey, ScheduleError, SchedulerConfig, StreamId};
use crate::storage::Storage;
use crate::tasks::Tasks;
use crate::wire::BlockRef;
use verified::VerifiedSet;

pub(crate) use task::spawn_torrent;

/// Commands from handles to the task.
const COMMAND_CAPACITY: usize = 64;

/// Events from all peer connections to the task (each may carry a 16 KiB block: at most
/// 4 MiB waiting).
const EVENT_CAPACITY: usize = 256;

/// Messages from the task to one connection. A connection that lets this fill up (it does
/// not drain its socket) is closed.
pub(crate) const TO_PEER_CAPACITY: usize = 1024;

/// Most addresses remembered to (re)connect to.
const MAX_KNOWN_ADDRESSES: usize = 1024;

/// What the session does with a torrent's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serve the data that is there and never write: the user's own files. Missing pieces
    /// stay missing (a reader of one fails with [`ReadError::NotAvailable`]).
    Seed,
    /// Download what is missing, then keep seeding.
    Download,
}

/// A torrent's knobs. Every field has a documented default ([`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TorrentOptions {
    /// The scheduler's configuration (default [`SchedulerConfig::default`]).
    pub scheduler: SchedulerConfig,
    /// Most bytes of unverified blocks held in memory (default 64 MiB; see the module docs).
    pub max_buffered_bytes: usize,
    /// Pieces hashed (and written) at once on the blocking pool (default 2).
    pub hash_jobs: usize,
}

impl Default for TorrentOptions {
    fn default() -> Self {
        TorrentOptions {
            scheduler: SchedulerConfig::default(),
            max_buffered_bytes: 64 * 1024 * 1024,
            hash_jobs: 2,
        }
    }
}

/// What a session needs to serve a torrent: in phase 2b the caller gives the infohash, the
/// shape and the piece hashes (no metainfo parsing yet).
pub struct TorrentSpec {
    /// The v1 infohash peers name it by.
    pub info_hash: [u8; 20],
    /// Its pieces.
    pub geometry: Geometry,
    /// The SHA-1 of each piece, in order (one per piece).
    pub piece_hashes: Vec<[u8; 20]>,
    /// Where its bytes are.
    pub storage: Arc<dyn Storage>,
    /// Seed only, or download.
    pub role: Role,
    /// Its knobs.
    pub options: TorrentOptions,
}

/// Why a torrent stopped downloading.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FailReason {
    /// The disk is full: free space, then resume.
    #[error("the disk is full: free some space, then resume the torrent")]
    DiskFull,
    /// Another storage error (its message).
    #[error("the torrent's data cannot be written: {0}")]
    Storage(String),
}

/// Where a torrent is in its lifecycle (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorrentState {
    /// Verifying the data already in the storage.
    Checking {
        /// Pieces checked so far.
        checked: u32,
        /// Pieces to check.
        total: u32,
    },
    /// Connected to peers, downloading and uploading.
    Live,
    /// No peers, on request.
    Paused,
    /// A write failed; no peers.
    Failed(FailReason),
    /// Ended.
    Stopped,
}

/// A snapshot of a torrent, published after every batch of events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentStatus {
    /// The lifecycle state.
    pub state: TorrentState,
    /// Pieces in the torrent.
    pub pieces: u32,
    /// Pieces verified.
    pub verified: u32,
    /// Peers connected.
    pub peers: usize,
    /// Connected peers that unchoke us.
    pub unchoking_us: usize,
    /// Bytes of wanted blocks received.
    pub downloaded: u64,
    /// Bytes of blocks uploaded.
    pub uploaded: u64,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// Bytes of unverified blocks held in memory.
    pub buffered: usize,
}

impl TorrentStatus {
    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.verified == self.pieces
    }
}

/// Why a torrent refused a call.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TorrentError {
    /// The torrent was stopped (or its session shut down).
    #[error("the torrent is stopped")]
    Stopped,
    /// The scheduler refused (a bad range, too many readers).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// What a reader shares with the task: where it is and how fast it plays. The task holds a
/// `Weak` to it, so a dropped reader is seen as gone.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    /// The torrent offset the reader is at.
    pub(crate) playhead: AtomicU64,
    /// Its bitrate in bytes/s, 0 when unknown.
    pub(crate) bitrate: AtomicU64,
    /// How many times it seeked (a change tells the scheduler to cancel stale requests).
    pub(crate) seeks: AtomicU64,
}

/// What the task, its connections and its readers share.
pub(crate) struct Shared {
    pub(crate) info_hash: [u8; 20],
    pub(crate) geo: Geometry,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) role: Role,
    pub(crate) verified: VerifiedSet,
    pub(crate) status: watch::Sender<TorrentStatus>,
    /// A reader moved, changed its bitrate or went away.
    pub(crate) streams_changed: Notify,
    pub(crate) tasks: Tasks,
}

/// A connection's registration, once its handshake named this torrent.
pub(crate) struct Registration {
    pub(crate) addr: SocketAddr,
    pub(crate) peer_id: [u8; 20],
    /// We dialled it (from the torrent's address list).
    pub(crate) outgoing: bool,
    pub(crate) to_peer: mpsc::Sender<ToPeer>,
    /// Cancels the connection.
    pub(crate) token: tokio_util::sync::CancellationToken,
}

/// Why the torrent refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub(crate) enum Refusal {
    #[error("the torrent is not live")]
    NotLive,
    #[error("the torrent has its maximum of peers")]
    Full,
    #[error("the address is banned")]
    Banned,
    #[error("already connected to this peer id")]
    Duplicate,
}

/// Commands to the task.
pub(crate) enum Command {
    AddStream {
        range: Range<u64>,
        slot: std::sync::Weak<StreamSlot>,
        reply: oneshot::Sender<Result<StreamId, ScheduleError>>,
    },
    AddPeers(Vec<SocketAddr>),
    Register {
        registration: Registration,
        reply: oneshot::Sender<Result<PeerKey, Refusal>>,
    },
    /// An outgoing attempt ended before it registered.
    ConnectEnded(SocketAddr),
    /// Pause; the reply says it is done.
    Pause(oneshot::Sender<()>),
    /// Resume; the reply says it is done.
    Resume(oneshot::Sender<()>),
    Stop,
    PieceSources {
        piece: u32,
        reply: oneshot::Sender<Option<u8>>,
    },
}

/// What a connection tells the task.
#[derive(Debug)]
pub(crate) enum FromPeer {
    Event(PeerEvent),
    Interest(bool),
    Uploaded(u64),
    Closed(String),
}

/// An event from connection `key`.
#[derive(Debug)]
pub(crate) struct PeerMsg {
    pub(crate) key: PeerKey,
    pub(crate) what: FromPeer,
}

/// What the task tells a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ToPeer {
    Request(BlockRef),
    Cancel(BlockRef),
    Interested(bool),
    Choke(bool),
    Have(u32),
    /// The block it sent was never asked for.
    UnrequestedBlock,
    /// The request it rejected was never sent.
    UnrequestedReject,
}

/// How connections and handles reach a torrent's task.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) cmd: mpsc::Sender<Command>,
    pub(crate) events: mpsc::Sender<PeerMsg>,
    pub(crate) shared: Arc<Shared>,
}

/// A handle to a torrent of a [`crate::Session`]. Cheap to clone; the torrent runs until
/// [`Torrent::stop`] or the session's shutdown, not until its handles are dropped.
#[derive(Clone)]
pub struct Torrent {
    route: Route,
}

impl std::fmt::Debug for Torrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Torrent")
            .field("status", &*self.route.shared.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Torrent {
    pub(crate) fn new(route: Route) -> Self {
        Torrent { route }
    }

    /// The v1 infohash.
    pub fn info_hash(&self) -> [u8; 20] {
        self.route.shared.info_hash
    }

    /// Its pieces.
    pub fn geometry(&self) -> Geometry {
        self.route.shared.geo
    }

    /// Whether `piece` is verified (its bytes are in the storage).
    pub fn has_piece(&self, piece: u32) -> bool {
        self.route.shared.verified.contains(piece)
    }

    /// The latest status.
    pub fn status(&self) -> TorrentStatus {
        self.route.shared.status.borrow().clone()
    }

    /// A receiver of every new status (wait with `wait_for`, under a timeout).
    pub fn watch(&self) -> watch::Receiver<TorrentStatus> {
        self.route.shared.status.subscribe()
    }

    /// A reader of the torrent bytes `range` (positions 0..range length), registered with
    /// the scheduler as a stream whose playhead follows the reader. See [`Reader`].
    pub async fn reader(&self, range: Range<u64>) -> Result<Reader, TorrentError> {
        let slot = Arc::new(StreamSlot {
            playhead: AtomicU64::new(range.start),
            bitrate: AtomicU64::new(0),
            seeks: AtomicU64::new(0),
        });
        let (reply, answer) = oneshot::channel();
        self.command(Command::AddStream {
            range: range.clone(),
            slot: Arc::downgrade(&slot),
            reply,
        })
        .await?;
        answer.await.map_err(|_| TorrentError::Stopped)??;
        Ok(Reader::new(self.route.shared.clone(), slot, range))
    }

    /// Addresses to connect to (now if the torrent is live and has room, else when it
    /// does). At most 1024 are remembered.
    pub async fn add_peers(
        &self,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<(), TorrentError> {
        let addrs: Vec<SocketAddr> = addrs.into_iter().take(MAX_KNOWN_ADDRESSES).collect();
        self.command(Command::AddPeers(addrs)).await
    }

    /// Closes every peer connection and accepts none until [`Torrent::resume`] (during the
    /// check: pauses when it ends). Returns once the torrent has applied it.
    pub async fn pause(&self) -> Result<(), TorrentError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Pause(reply)).await?;
        answer.await.map_err(|_| TorrentError::Stopped)
    }

    /// Goes back to Live after a pause or a failed write. Returns once the torrent has
    /// applied it.
    pub async fn resume(&self) -> Result<(), TorrentError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Resume(reply)).await?;
        answer.await.map_err(|_| TorrentError::Stopped)
    }

    /// Stops the torrent for good: its task ends, its readers fail.
    pub async fn stop(&self) -> Result<(), TorrentError> {
        self.command(Command::Stop).await
    }

    /// How many distinct peers sent the blocks that made verified `piece` (0 for a piece
    /// found in the storage at start); `None` if it is not verified. A diagnostic (and test
    /// hook): the piece under a fresh playhead should come from several peers.
    pub async fn piece_sources(&self, piece: u32) -> Result<Option<u8>, TorrentError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::PieceSources { piece, reply }).await?;
        answer.await.map_err(|_| TorrentError::Stopped)
    }

    async fn command(&self, command: Command) -> Result<(), TorrentError> {
        self.route
            .cmd
            .send(command)
            .await
            .map_err(|_| TorrentError::Stopped)
    }
}
