//! The block-level, deadline-driven request scheduler: which 16 KiB block to request from
//! which peer, when to CANCEL, when to ask a second peer for a late block.
//!
//! A pure state machine: no sockets, no tasks, no clock reads. Every call that depends on
//! time takes `now: Instant`, so tests move time by hand. The caller (the torrent task,
//! `torrent/task.rs`) reports what happens on the wire with the event methods (`add_peer`,
//! `peer_have`, `peer_unchoked`, `block_received`, ...), tells where the players are with the
//! stream methods (`add_stream`, `set_playhead`, `mark_urgent`), and after each event calls
//! [`Scheduler::poll_actions`], which returns the messages to send: [`Action::Request`],
//! [`Action::Cancel`], [`Action::Interested`], [`Action::NotInterested`]. When no event
//! comes, [`Scheduler::next_wakeup`] says when to poll again (a stalled block, a snub).
//!
//! # How it picks (one `poll_actions` call)
//! 1. **Deadlines.** Every stream gives the pieces from its playhead over its horizon
//!    (`max(horizon × bitrate, min_horizon_pieces)` bytes) a deadline:
//!    `when the playhead was set + (piece start − playhead) / bitrate`. Urgent ranges (a
//!    container index) get the time they were marked: already due. A piece's deadline is the
//!    earliest any stream or range gives it; deadline pieces are served earliest first.
//! 2. **Seek.** After a playhead jump (or [`Scheduler::seek`]), a new stream or an urgent
//!    range, every request for a piece that now has no deadline is cancelled, except the
//!    oldest few at each peer that one RTT at its rate covers (those are already on the
//!    way). The new deadline blocks are requested in the same call.
//! 3. **Deadline blocks**, block by block, go to the peer expected to deliver soonest:
//!    `(bytes in flight there + this pass's assignments) / rate + RTT`, so one urgent piece
//!    spreads over several peers. If that peer's pipeline is full the block waits for it
//!    (counted against its queue in this pass) instead of going to a slower peer. A peer that
//!    is not a seed and would deliver in time is preferred over a seed (the origin's upload
//!    goes to pieces nobody else has). The slowest 10 % of peers with a measured rate get no
//!    deadline block while a faster peer has the piece. A deadline block requested longer
//!    than `max(stall_factor × expected delivery, stall_floor)` ago, or at a snubbed peer,
//!    gets one duplicate request elsewhere; so does one whose request is expected after its
//!    deadline, when another peer would deliver it in less than half the remaining wait (a
//!    block asked of a slow peer before its piece came into the horizon). Whichever copy
//!    arrives first, the other requester gets a CANCEL.
//! 4. **Everything else** fills the remaining pipeline room of each peer, fastest peer first:
//!    partially downloaded pieces first, then rarest first (ties in a per-scheduler
//!    pseudo-random order from [`SchedulerConfig::seed`], so viewers diverge), or in piece
//!    order with [`SchedulerConfig::sequential`]. When every missing block that a connected
//!    peer has is requested, a peer that would beat the expected arrival of a block at
//!    another peer, or whose requester is stalled, gets a duplicate (end game).
//!    With [`SchedulerConfig::background`] off this step is skipped: only what streams and
//!    urgent ranges need is requested.
//!
//! While the caller holds new pieces ([`Scheduler::set_new_pieces`], its buffers of
//! unverified blocks are over their bound), steps 3 and 4 only request blocks of pieces
//! already started, deadline or not, so they complete and free memory.
//!
//! # Pipelines
//! A peer's pipeline target is `clamp(ceil(rate × (RTT + margin) / 16 KiB), min_pipeline,
//! min(reqq, max_pipeline))`: enough requests to keep its link busy for one round trip plus
//! a margin, no more, so a seek waits behind little. Until it has a measured rate the target
//! is `initial_pipeline`; as its rate is measured while it has requests in flight, the window
//! grows like TCP's slow start. The rate is smoothed over samples of busy time (requests in
//! flight), counted from its first block: a sample ends at the first block after 250 ms, or
//! after 2 s without one (an idle peer is unused, not slow; a peer that stops delivering
//! sees its rate fall). The RTT is the smallest request-to-block time less one block's
//! transfer time: each such time is an upper bound (a block may have queued behind others),
//! a full pipeline hides the RTT, and requests to an idle peer show it. A peer that sends
//! no block for `snub_timeout` while requests are in flight is snubbed: no new requests,
//! and its pending blocks may be asked of others. A peer whose
//! oldest request is overdue (stalled, see below) and that sent no block for `stall_floor`
//! gets no new request either, until a block comes: its measured rate may still look good.
//!
//! # Invariants (checked by [`Scheduler::check_invariants`] after every step in tests)
//! - `have` holds the verified pieces (and their count); a verified piece has no entry in
//!   `active` and no request in flight anywhere.
//! - `availability[p]` is the number of connected peers whose `has` contains `p`;
//!   `peer.wanted` is the number of pieces in `peer.has` we have not verified.
//! - A request in flight at a peer (`peer.in_flight`) is for a block of a piece the peer has,
//!   not verified, whose slot in `active` lists the peer among its requesters and is not
//!   received; conversely every requester a slot lists has that block in flight. A peer
//!   never has the same block in flight twice.
//! - A block has at most 2 requests in flight; a received block has none.
//! - `peer.in_flight_bytes` is the sum of the lengths in `peer.in_flight`;
//!   `peer.in_flight.len()` never exceeds the peer's hard cap (its `reqq`, at most
//!   `max_pipeline`), and requests are only added while it is below the pipeline target.
//! - A peer that chokes us has nothing in flight (its requests are released at the choke);
//!   a peer with something in flight is one we announced interest in.
//! - A piece is in `active` iff one of its blocks is requested or received; its
//!   `received` and `unrequested` counts match its slots.
//! - Memory per peer is O(pieces / 8 + in flight + MAX_RELEASED).

mod bitset;
mod peer;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::geometry::Geometry;
use crate::wire::BlockRef;
use bitset::{BitfieldError, Bitset};
use peer::{InFlight, MAX_RELEASED, Peer};

/// Most streams at once.
pub const MAX_STREAMS: usize = 64;

/// Most urgent ranges at once.
pub const MAX_URGENT_RANGES: usize = 32;

/// A connected peer, as the scheduler names it: a small key handed out by
/// [`Scheduler::add_peer`] and never reused (not the 20-byte BitTorrent peer id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(u64);

impl PeerKey {
    /// The key as a number (for logs and maps).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// A registered stream (a reader with a playhead), handed out by [`Scheduler::add_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

impl StreamId {
    /// The id as a number (for logs and maps).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A block by piece and index in the piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Block {
    piece: u32,
    index: u32,
}

/// What the caller should send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `request` for this block to this peer.
    Request {
        /// The peer.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// Send `cancel` for this block to this peer.
    Cancel {
        /// The peer.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// Send `interested` to this peer.
    Interested {
        /// The peer.
        peer: PeerKey,
    },
    /// Send `not interested` to this peer.
    NotInterested {
        /// The peer.
        peer: PeerKey,
    },
}

/// What a received block is to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// We asked this peer for it and still miss it: store it. With `piece_complete`, every
    /// block of the piece is now here: hash it and report [`Scheduler::piece_verified`] or
    /// [`Scheduler::piece_failed`].
    Wanted {
        /// Whether this block completed its piece.
        piece_complete: bool,
    },
    /// We asked this peer for it, but another copy arrived first (or we cancelled it and it
    /// crossed the CANCEL): drop it. Not the peer's fault.
    Redundant,
    /// We never asked this peer for it, or it is not a block of this torrent: drop it and
    /// count it against the peer.
    Unrequested,
}

/// A snapshot of what the scheduler knows about a peer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerStats {
    /// Measured rate in bytes/s while it had requests in flight, if measured yet.
    pub rate: Option<f64>,
    /// Round-trip time estimate (smallest request-to-block time less transfer), if measured.
    pub rtt: Option<Duration>,
    /// How many requests it should have in flight.
    pub pipeline_target: u32,
    /// How many requests it has in flight.
    pub in_flight: u32,
    /// No block for `snub_timeout` while requests were in flight.
    pub snubbed: bool,
    /// It chokes us.
    pub choking_us: bool,
    /// We announced interest.
    pub interested: bool,
    /// It has every piece.
    pub seed: bool,
    /// How many pieces it has.
    pub pieces: u32,
}

/// How far a piece is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceProgress {
    /// Verified.
    pub verified: bool,
    /// Its number of blocks.
    pub blocks: u32,
    /// Blocks received (all of them once verified).
    pub received: u32,
    /// Blocks with a request in flight.
    pub requested: u32,
}

/// A call the scheduler refused: the caller named something it does not know or passed
/// something out of range.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// No connected peer has this key (never added, or gone).
    #[error("{0} is not connected")]
    UnknownPeer(PeerKey),
    /// No stream has this id.
    #[error("stream {} is not registered", .0.get())]
    UnknownStream(StreamId),
    /// A piece index past the last piece.
    #[error("piece {piece} does not exist (the torrent has {count} pieces)")]
    PieceOutOfRange {
        /// The index given.
        piece: u32,
        /// The number of pieces.
        count: u32,
    },
    /// A peer's bitfield has the wrong length.
    #[error("bitfield of {len} bytes, expected {expected} for this torrent")]
    BitfieldLength {
        /// Its length.
        len: usize,
        /// The length for this torrent's piece count.
        expected: usize,
    },
    /// A peer's bitfield sets bits past the last piece.
    #[error("bitfield sets bits past the last piece")]
    BitfieldSpareBits,
    /// A byte range that is empty or runs past the end of the torrent.
    #[error("byte range {start}..{end} is empty or past the torrent's {total} bytes")]
    BadRange {
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// The torrent's length.
        total: u64,
    },
    /// Too many streams registered.
    #[error("too many streams (at most {MAX_STREAMS})")]
    TooManyStreams,
    /// Too many urgent ranges marked.
    #[error("too many urgent ranges (at most {MAX_URGENT_RANGES})")]
    TooManyUrgentRanges,
    /// A hash failure reported for a piece already verified.
    #[error("piece {0} is already verified")]
    AlreadyVerified(u32),
}

impl From<BitfieldError> for ScheduleError {
    fn from(error: BitfieldError) -> Self {
        match error {
            BitfieldError::Length { len, expected } => {
                ScheduleError::BitfieldLength { len, expected }
            }
            BitfieldError::SpareBits => ScheduleError::BitfieldSpareBits,
        }
    }
}

/// The scheduler's knobs. Every field has a documented default ([`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// How much media ahead of a playhead gets deadlines (default 30 s, at the stream's
    /// bitrate).
    pub horizon: Duration,
    /// At least this many pieces ahead of a playhead get deadlines (default 8).
    pub min_horizon_pieces: u32,
    /// The bitrate assumed for a stream that has none yet, bytes/s (default 1 MiB/s).
    pub default_bitrate: u64,
    /// Time added to the RTT when sizing pipelines (default 1 s).
    pub pipeline_margin: Duration,
    /// Smallest pipeline target (default 2).
    pub min_pipeline: u32,
    /// Largest pipeline target, also the cap when a peer sent no `reqq` (default 250).
    pub max_pipeline: u32,
    /// Pipeline target of a peer whose rate is not measured yet (default 4).
    pub initial_pipeline: u32,
    /// RTT assumed until one is measured (default 200 ms).
    pub default_rtt: Duration,
    /// Rate assumed for a peer not measured yet, bytes/s (default 256 KiB/s).
    pub unknown_peer_rate: u64,
    /// A peer with requests in flight and no block for this long is snubbed (default 8 s).
    pub snub_timeout: Duration,
    /// A deadline block is stalled after this many times its expected delivery (default 2).
    pub stall_factor: u32,
    /// ... and never before this long (default 1 s).
    pub stall_floor: Duration,
    /// The slowest this-many percent of peers with a rate get no deadline blocks while a
    /// faster peer has the piece (default 10).
    pub slow_peer_percent: u32,
    /// Beyond the deadlines, pieces in order instead of rarest first (whole downloads,
    /// default false).
    pub sequential: bool,
    /// Seed of the tie-break order between equally rare pieces (default 0; give each
    /// session its own so viewers diverge).
    pub seed: u64,
    /// Beyond the deadlines, request every other piece too (default true: download the
    /// whole torrent). Off: only what streams and urgent ranges need (a viewer that does
    /// not keep the film).
    pub background: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            horizon: Duration::from_secs(30),
            min_horizon_pieces: 8,
            default_bitrate: 1024 * 1024,
            pipeline_margin: Duration::from_secs(1),
            min_pipeline: 2,
            max_pipeline: 250,
            initial_pipeline: 4,
            default_rtt: Duration::from_millis(200),
            unknown_peer_rate: 256 * 1024,
            snub_timeout: Duration::from_secs(8),
            stall_factor: 2,
            stall_floor: Duration::from_secs(1),
            slow_peer_percent: 10,
            sequential: false,
            seed: 0,
            background: true,
        }
    }
}

impl SchedulerConfig {
    /// How long a request may take before its block counts as stalled.
    pub(crate) fn stall_timeout(&self, expected: Duration) -> Duration {
        (expected * self.stall_factor).max(self.stall_floor)
    }
}

/// A finite, non-negative number of seconds as a `Duration` (0 for anything else, capped
/// at about 30 years).
pub(crate) fn secs(seconds: f64) -> Duration {
    if seconds.is_finite() && seconds > 0.0 {
        Duration::from_secs_f64(seconds.min(1e9))
    } else {
        Duration::ZERO
    }
}

/// A block's reservation: who sent it, or who we asked for it.
#[derive(Clone, Copy, Debug, Default)]
struct BlockSlot {
    received_from: Option<PeerKey>,
    requested_by: [Option<PeerKey>; 2],
}

impl BlockSlot {
    fn requests(&self) -> usize {
        self.requested_by.iter().flatten().count()
    }

    fn requested_by(&self, peer: PeerKey) -> bool {
        self.requested_by.contains(&Some(peer))
    }

    /// The requester when exactly one.
    fn sole_requester(&self) -> Option<PeerKey> {
        match self.requested_by {
            [Some(peer), None] | [None, Some(peer)] => Some(peer),
            _ => None,
        }
    }
}

/// A piece with a block requested or received, not verified.
#[derive(Clone, Debug)]
struct ActivePiece {
    blocks: Vec<BlockSlot>,
    received: u32,
    /// Blocks neither received nor requested.
    unrequested: u32,
}

impl ActivePiece {
    fn new(blocks: u32) -> Self {
        ActivePiece {
            blocks: vec![BlockSlot::default(); blocks as usize],
            received: 0,
            unrequested: blocks,
        }
    }

    fn add_request(&mut self, index: u32, peer: PeerKey) {
        let slot = &mut self.blocks[index as usize];
        if slot.requests() == 0 && slot.received_from.is_none() {
            self.unrequested -= 1;
        }
        if let Some(free) = slot.requested_by.iter_mut().find(|r| r.is_none()) {
            *free = Some(peer);
        }
    }

    fn remove_request(&mut self, index: u32, peer: PeerKey) {
        let slot = &mut self.blocks[index as usize];
        for requester in &mut slot.requested_by {
            if *requester == Some(peer) {
                *requester = None;
            }
        }
        if slot.requests() == 0 && slot.received_from.is_none() {
            self.unrequested += 1;
        }
    }

    /// Marks the block received from `peer`; returns the requesters it had.
    fn mark_received(&mut self, index: u32, peer: PeerKey) -> [Option<PeerKey>; 2] {
        let slot = &mut self.blocks[index as usize];
        if slot.requests() == 0 {
            self.unrequested -= 1;
        }
        self.received += 1;
        slot.received_from = Some(peer);
        std::mem::take(&mut slot.requested_by)
    }

    /// Forgets every received block; returns the peers that sent them.
    fn reset_received(&mut self) -> Vec<PeerKey> {
        let mut senders = BTreeSet::new();
        for slot in &mut self.blocks {
            if let Some(peer) = slot.received_from.take() {
                senders.insert(peer);
                if slot.requests() == 0 {
                    self.unrequested += 1;
                }
            }
        }
        self.received = 0;
        senders.into_iter().collect()
    }

    fn is_idle(&self) -> bool {
        self.received == 0 && self.unrequested as usize == self.blocks.len()
    }

    fn is_complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }
}

/// Why the sole request of a deadline block deserves a duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lateness {
    /// It is expected before its deadline.
    OnTime,
    /// Overdue (past `stall_factor` x its expected delivery, or its peer is snubbed).
    Stalled,
    /// Expected after its deadline, `remaining` from now.
    AfterDeadline { remaining: Duration },
}

/// A registered reader.
#[derive(Clone, Debug)]
struct Stream {
    range: Range<u64>,
    playhead: u64,
    bitrate: Option<u64>,
    /// When the playhead was last set: deadlines count from here.
    anchor: Instant,
}

/// A byte range marked urgent (a container index).
#[derive(Clone, Debug)]
struct Urgent {
    pieces: Range<u32>,
    at: Instant,
}

/// The scheduler of one torrent. See the module docs for how it picks and its invariants.
#[derive(Debug)]
pub struct Scheduler {
    geo: Geometry,
    cfg: SchedulerConfig,
    have: Bitset,
    availability: Vec<u32>,
    active: BTreeMap<u32, ActivePiece>,
    peers: BTreeMap<PeerKey, Peer>,
    next_peer: u64,
    streams: BTreeMap<StreamId, Stream>,
    next_stream: u64,
    urgent: Vec<Urgent>,
    /// Deadline pieces, earliest first; valid when `deadlines_dirty` is false.
    deadlines: Vec<(Instant, u32)>,
    deadline_of: BTreeMap<u32, Instant>,
    deadlines_dirty: bool,
    /// A seek happened: cancel requests that serve no deadline at the next poll.
    reseek: bool,
    /// Pieces we miss, rarest first (or in order); valid when `order_dirty` is false.
    order: Vec<u32>,
    order_dirty: bool,
    /// Actions decided by events (CANCELs), handed out by the next poll.
    pending: Vec<Action>,
    /// Whether a piece with no block requested or received may be started (see
    /// [`Scheduler::set_new_pieces`]).
    new_pieces: bool,
}

impl Scheduler {
    /// A scheduler for a torrent of this shape, with no piece, peer or stream.
    pub fn new(geometry: Geometry, mut config: SchedulerConfig) -> Self {
        config.max_pipeline = config.max_pipeline.max(1);
        config.min_pipeline = config.min_pipeline.clamp(1, config.max_pipeline);
        config.initial_pipeline = config.initial_pipeline.max(1);
        config.stall_factor = config.stall_factor.max(1);
        let count = geometry.piece_count();
        Scheduler {
            geo: geometry,
            cfg: config,
            have: Bitset::new(count),
            availability: vec![0; count as usize],
            active: BTreeMap::new(),
            peers: BTreeMap::new(),
            next_peer: 0,
            streams: BTreeMap::new(),
            next_stream: 0,
            urgent: Vec::new(),
            deadlines: Vec::new(),
            deadline_of: BTreeMap::new(),
            deadlines_dirty: false,
            reseek: false,
            order: Vec::new(),
            order_dirty: true,
            pending: Vec::new(),
            new_pieces: true,
        }
    }

    /// The torrent's shape.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The configuration in use.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    // ---------------------------------------------------------------- queries

    /// Whether `piece` is verified.
    pub fn has_piece(&self, piece: u32) -> bool {
        self.have.contains(piece)
    }

    /// How many pieces are verified.
    pub fn verified_pieces(&self) -> u32 {
        self.have.count()
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// How far `piece` is, `None` if it does not exist.
    pub fn piece_progress(&self, piece: u32) -> Option<PieceProgress> {
        if piece >= self.geo.piece_count() {
            return None;
        }
        let blocks = self.geo.blocks_in(piece);
        if self.have.contains(piece) {
            return Some(PieceProgress {
                verified: true,
                blocks,
                received: blocks,
                requested: 0,
            });
        }
        let (received, requested) = self.active.get(&piece).map_or((0, 0), |active| {
            let requested = active.blocks.iter().filter(|s| s.requests() > 0).count();
            (active.received, requested as u32)
        });
        Some(PieceProgress {
            verified: false,
            blocks,
            received,
            requested,
        })
    }

    /// What the scheduler knows about `peer` at `now`, `None` if it is not connected.
    pub fn peer_stats(&self, peer: PeerKey, now: Instant) -> Option<PeerStats> {
        let state = self.peers.get(&peer)?;
        Some(PeerStats {
            rate: state.measured_rate(),
            rtt: state.rtt(),
            pipeline_target: state.pipeline_target(&self.cfg),
            in_flight: state.in_flight.len() as u32,
            snubbed: state.snubbed(now, &self.cfg),
            choking_us: state.choking_us,
            interested: state.interested,
            seed: state.is_seed(),
            pieces: state.has.count(),
        })
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.peers.keys().copied()
    }

    /// How many connected peers have `piece` (0 if it does not exist).
    pub fn availability(&self, piece: u32) -> u32 {
        self.availability.get(piece as usize).copied().unwrap_or(0)
    }

    /// The deadline `piece` has now, if any.
    pub fn deadline(&mut self, piece: u32) -> Option<Instant> {
        self.refresh_deadlines();
        self.deadline_of.get(&piece).copied()
    }

    // ---------------------------------------------------------------- peer events

    /// A peer connected (handshake done). It has no piece and chokes us until it says
    /// otherwise.
    pub fn add_peer(&mut self, now: Instant) -> PeerKey {
        let key = PeerKey(self.next_peer);
        self.next_peer += 1;
        self.peers
            .insert(key, Peer::new(self.geo.piece_count(), now));
        key
    }

    /// The peer's `reqq` from its extended handshake: the most requests it queues. Requests
    /// already in flight beyond it (the newest) are cancelled at the next poll.
    pub fn peer_reqq(
        &mut self,
        peer: PeerKey,
        reqq: u32,
        now: Instant,
    ) -> Result<(), ScheduleError> {
        let state = self
            .peers
            .get_mut(&peer)
            .ok_or(ScheduleError::UnknownPeer(peer))?;
        state.reqq = Some(reqq);
        state.tick(now);
        let cap = state.hard_cap(&self.cfg) as usize;
        while state.in_flight.len() > cap {
            let last = state.in_flight.len() - 1;
            let request = drop_request(&mut self.active, peer, state, last);
            state.remember_released(request.block);
            self.pending.push(Action::Cancel {
                peer,
                block: self.geo.block(request.block.piece, request.block.index),
            });
        }
        Ok(())
    }

    /// The peer's bitfield. Pieces it announced before stay announced (a peer cannot lose
    /// a piece).
    pub fn peer_bitfield(&mut self, peer: PeerKey, bits: &[u8]) -> Result<(), ScheduleError> {
        self.peer_mut(peer)?;
        let set = Bitset::from_bitfield(bits, self.geo.piece_count())?;
        for piece in set.iter() {
            self.add_has(peer, piece);
        }
        Ok(())
    }

    /// The peer has every piece (BEP 6 `have all`).
    pub fn peer_have_all(&mut self, peer: PeerKey) -> Result<(), ScheduleError> {
        self.peer_mut(peer)?;
        for piece in 0..self.geo.piece_count() {
            self.add_has(peer, piece);
        }
        Ok(())
    }

    /// The peer has no piece (BEP 6 `have none`): nothing changes.
    pub fn peer_have_none(&mut self, peer: PeerKey) -> Result<(), ScheduleError> {
        self.peer_mut(peer).map(|_| ())
    }

    /// The peer has a new piece (`have`).
    pub fn peer_have(&mut self, peer: PeerKey, piece: u32) -> Result<(), ScheduleError> {
        self.peer_mut(peer)?;
        self.check_piece(piece)?;
        self.add_has(peer, piece);
        Ok(())
    }

    /// The peer chokes us: its requests are released (a peer without the Fast extension
    /// drops them; a Fast peer rejects them). A block that still arrives is accepted.
    pub fn peer_choked(&mut self, peer: PeerKey, now: Instant) -> Result<(), ScheduleError> {
        let state = self
            .peers
            .get_mut(&peer)
            .ok_or(ScheduleError::UnknownPeer(peer))?;
        state.tick(now);
        state.choking_us = true;
        while !state.in_flight.is_empty() {
            let request = drop_request(&mut self.active, peer, state, 0);
            state.remember_released(request.block);
        }
        Ok(())
    }

    /// The peer unchokes us.
    pub fn peer_unchoked(&mut self, peer: PeerKey, now: Instant) -> Result<(), ScheduleError> {
        let state = self.peer_mut(peer)?;
        state.tick(now);
        state.choking_us = false;
        Ok(())
    }

    /// The peer rejected a request (BEP 6). Returns whether we had asked it for that block
    /// (a reject for anything else may be counted against the peer).
    pub fn block_rejected(
        &mut self,
        peer: PeerKey,
        block: BlockRef,
        now: Instant,
    ) -> Result<bool, ScheduleError> {
        let state = self
            .peers
            .get_mut(&peer)
            .ok_or(ScheduleError::UnknownPeer(peer))?;
        let Some(index) = self.geo.block_index(&block) else {
            return Ok(false);
        };
        let block = Block {
            piece: block.piece,
            index,
        };
        state.tick(now);
        match state.position(block) {
            Some(position) => {
                drop_request(&mut self.active, peer, state, position);
                Ok(true)
            }
            None => Ok(state.forget_released(block)),
        }
    }

    /// A block arrived from `peer`. Says whether to store it; see [`Receipt`].
    pub fn block_received(
        &mut self,
        peer: PeerKey,
        block: BlockRef,
        now: Instant,
    ) -> Result<Receipt, ScheduleError> {
        let state = self
            .peers
            .get_mut(&peer)
            .ok_or(ScheduleError::UnknownPeer(peer))?;
        let Some(index) = self.geo.block_index(&block) else {
            return Ok(Receipt::Unrequested);
        };
        let b = Block {
            piece: block.piece,
            index,
        };
        let position = state.position(b);
        if position.is_none() && !state.forget_released(b) {
            return Ok(Receipt::Unrequested);
        }
        state.on_block(block.length, now);
        match position {
            Some(position) => {
                let request = drop_request(&mut self.active, peer, state, position);
                state.learn(&request, now);
            }
            None => state.on_late_block(now),
        }
        if self.have.contains(b.piece)
            || self
                .active
                .get(&b.piece)
                .is_some_and(|a| a.blocks[index as usize].received_from.is_some())
        {
            return Ok(Receipt::Redundant);
        }
        let blocks = self.geo.blocks_in(b.piece);
        let active = self
            .active
            .entry(b.piece)
            .or_insert_with(|| ActivePiece::new(blocks));
        let others = active.mark_received(index, peer);
        let piece_complete = active.is_complete();
        for other in others.into_iter().flatten() {
            self.cancel_at(other, b, now);
        }
        Ok(Receipt::Wanted { piece_complete })
    }

    /// The peer disconnected: its requests are released, its pieces no longer count.
    pub fn peer_gone(&mut self, peer: PeerKey, now: Instant) -> Result<(), ScheduleError> {
        let mut state = self
            .peers
            .remove(&peer)
            .ok_or(ScheduleError::UnknownPeer(peer))?;
        state.tick(now);
        while !state.in_flight.is_empty() {
            drop_request(&mut self.active, peer, &mut state, 0);
        }
        for piece in state.has.iter() {
            self.availability[piece as usize] -= 1;
        }
        self.order_dirty = true;
        Ok(())
    }

    // ---------------------------------------------------------------- piece events

    /// `piece` passed its hash check (or was found complete on disk at start): it is ours.
    /// Requests still in flight for it are cancelled.
    pub fn piece_verified(&mut self, piece: u32, now: Instant) -> Result<(), ScheduleError> {
        self.check_piece(piece)?;
        if !self.have.insert(piece) {
            return Ok(());
        }
        if let Some(active) = self.active.remove(&piece) {
            for (index, slot) in active.blocks.iter().enumerate() {
                for requester in slot.requested_by.into_iter().flatten() {
                    let block = Block {
                        piece,
                        index: index as u32,
                    };
                    self.cancel_at(requester, block, now);
                }
            }
        }
        for state in self.peers.values_mut() {
            if state.has.contains(piece) {
                state.wanted -= 1;
            }
        }
        self.deadlines_dirty = true;
        self.order_dirty = true;
        Ok(())
    }

    /// `piece` failed its hash check: its blocks are missing again. Returns the peers that
    /// sent its blocks (connected or not), so the caller can ban a peer after two failures.
    pub fn piece_failed(&mut self, piece: u32) -> Result<Vec<PeerKey>, ScheduleError> {
        self.check_piece(piece)?;
        if self.have.contains(piece) {
            return Err(ScheduleError::AlreadyVerified(piece));
        }
        let Some(active) = self.active.get_mut(&piece) else {
            return Ok(Vec::new());
        };
        let senders = active.reset_received();
        if active.is_idle() {
            self.active.remove(&piece);
        }
        Ok(senders)
    }

    // ---------------------------------------------------------------- streams

    /// Registers a reader of the bytes `range` (a file of the torrent), at `playhead`, with
    /// its bitrate in bytes/s if known.
    pub fn add_stream(
        &mut self,
        range: Range<u64>,
        playhead: u64,
        bitrate: Option<u64>,
        now: Instant,
    ) -> Result<StreamId, ScheduleError> {
        self.check_range(&range)?;
        if self.streams.len() >= MAX_STREAMS {
            return Err(ScheduleError::TooManyStreams);
        }
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        let playhead = playhead.clamp(range.start, range.end);
        self.streams.insert(
            id,
            Stream {
                range,
                playhead,
                bitrate,
                anchor: now,
            },
        );
        self.deadlines_dirty = true;
        self.reseek = true;
        Ok(id)
    }

    /// The reader is now at `offset` (clamped to its range). Moving more than a piece back
    /// or past the old horizon is a seek: requests that serve no deadline any more are
    /// cancelled at the next poll. A reader that knows it seeked says so with
    /// [`Scheduler::seek`].
    pub fn set_playhead(
        &mut self,
        stream: StreamId,
        offset: u64,
        now: Instant,
    ) -> Result<(), ScheduleError> {
        self.move_playhead(stream, offset, false, now)
    }

    /// The reader seeked to `offset` (clamped to its range), however near: like
    /// [`Scheduler::set_playhead`], and requests that serve no deadline any more are
    /// cancelled at the next poll (a jump forward inside the horizon leaves requests behind
    /// the new playhead that the heuristic of `set_playhead` keeps).
    pub fn seek(
        &mut self,
        stream: StreamId,
        offset: u64,
        now: Instant,
    ) -> Result<(), ScheduleError> {
        self.move_playhead(stream, offset, true, now)
    }

    fn move_playhead(
        &mut self,
        stream: StreamId,
        offset: u64,
        seek: bool,
        now: Instant,
    ) -> Result<(), ScheduleError> {
        let horizon = {
            let s = self
                .streams
                .get(&stream)
                .ok_or(ScheduleError::UnknownStream(stream))?;
            self.horizon_bytes(s)
        };
        let piece_len = u64::from(self.geo.piece_len());
        let Some(s) = self.streams.get_mut(&stream) else {
            return Err(ScheduleError::UnknownStream(stream));
        };
        let offset = offset.clamp(s.range.start, s.range.end);
        if seek
            || offset < s.playhead.saturating_sub(piece_len)
            || offset > s.playhead.saturating_add(horizon)
        {
            self.reseek = true;
        }
        s.playhead = offset;
        s.anchor = now;
        self.deadlines_dirty = true;
        Ok(())
    }

    /// The stream's bitrate in bytes/s (`None`: unknown, the default is assumed).
    pub fn set_bitrate(
        &mut self,
        stream: StreamId,
        bitrate: Option<u64>,
    ) -> Result<(), ScheduleError> {
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(ScheduleError::UnknownStream(stream))?;
        s.bitrate = bitrate;
        self.deadlines_dirty = true;
        Ok(())
    }

    /// The reader is gone. Its requests stay (they are still useful for the download).
    pub fn remove_stream(&mut self, stream: StreamId) -> Result<(), ScheduleError> {
        self.streams
            .remove(&stream)
            .ok_or(ScheduleError::UnknownStream(stream))?;
        self.deadlines_dirty = true;
        Ok(())
    }

    /// Marks `range` urgent (a container index the player needs first): its pieces are due
    /// now. The mark ends when its pieces are verified, or at [`Scheduler::clear_urgent`].
    pub fn mark_urgent(&mut self, range: Range<u64>, now: Instant) -> Result<(), ScheduleError> {
        self.check_range(&range)?;
        self.refresh_deadlines();
        if self.urgent.len() >= MAX_URGENT_RANGES {
            return Err(ScheduleError::TooManyUrgentRanges);
        }
        self.urgent.push(Urgent {
            pieces: self.geo.pieces_in(range),
            at: now,
        });
        self.deadlines_dirty = true;
        self.reseek = true;
        Ok(())
    }

    /// Whether pieces with no block requested or received yet may be started (default
    /// true). The caller turns this off while the blocks it buffers for unverified pieces
    /// are over its memory bound: only the pieces already started are requested (deadline
    /// or not), so they complete and free their buffers, and none is left half-done.
    pub fn set_new_pieces(&mut self, allowed: bool) {
        self.new_pieces = allowed;
    }

    /// Forgets every urgent range.
    pub fn clear_urgent(&mut self) {
        self.urgent.clear();
        self.deadlines_dirty = true;
    }

    // ---------------------------------------------------------------- picking

    /// What to send now: CANCELs decided by events, interest changes, CANCELs after a seek,
    /// then requests (deadline blocks first, then the rest), in the order to send them.
    pub fn poll_actions(&mut self, now: Instant) -> Vec<Action> {
        for state in self.peers.values_mut() {
            state.tick(now);
        }
        let mut actions = std::mem::take(&mut self.pending);
        self.refresh_deadlines();
        self.update_interest(&mut actions);
        let mut cancelled = BTreeSet::new();
        if std::mem::take(&mut self.reseek) {
            self.cancel_stale(now, &mut actions, &mut cancelled);
        }
        self.pick_deadline_blocks(now, &mut actions);
        self.pick_other_blocks(now, &mut actions, &cancelled);
        actions
    }

    /// When to poll again if no event comes first: the next time a request stalls or a peer
    /// becomes snubbed. `None`: nothing is pending.
    pub fn next_wakeup(&mut self, now: Instant) -> Option<Instant> {
        self.refresh_deadlines();
        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| {
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for state in self.peers.values() {
            if let Some(since) = state.waiting_since {
                consider(since + self.cfg.snub_timeout);
            }
            for request in &state.in_flight {
                if self.deadline_of.contains_key(&request.block.piece) {
                    consider(request.sent_at + self.cfg.stall_timeout(request.expected));
                }
            }
        }
        next
    }

    fn refresh_deadlines(&mut self) {
        if !self.deadlines_dirty {
            return;
        }
        let have = &self.have;
        self.urgent
            .retain(|u| u.pieces.clone().any(|piece| !have.contains(piece)));
        let mut due: BTreeMap<u32, Instant> = BTreeMap::new();
        let mut offer = |piece: u32, at: Instant| {
            if !have.contains(piece) {
                due.entry(piece)
                    .and_modify(|t| *t = (*t).min(at))
                    .or_insert(at);
            }
        };
        for s in self.streams.values() {
            let bitrate = s
                .bitrate
                .filter(|b| *b > 0)
                .unwrap_or(self.cfg.default_bitrate)
                .max(1) as f64;
            let end = s
                .range
                .end
                .min(s.playhead.saturating_add(self.horizon_bytes(s)));
            for piece in self.geo.pieces_in(s.playhead..end) {
                let ahead = self.geo.piece_start(piece).saturating_sub(s.playhead);
                offer(piece, s.anchor + secs(ahead as f64 / bitrate));
            }
        }
        for u in &self.urgent {
            for piece in u.pieces.clone() {
                offer(piece, u.at);
            }
        }
        self.deadlines = due.iter().map(|(&piece, &at)| (at, piece)).collect();
        self.deadlines.sort_unstable();
        self.deadline_of = due;
        self.deadlines_dirty = false;
    }

    fn horizon_bytes(&self, s: &Stream) -> u64 {
        let bitrate = s
            .bitrate
            .filter(|b| *b > 0)
            .unwrap_or(self.cfg.default_bitrate);
        let by_time = (self.cfg.horizon.as_secs_f64() * bitrate as f64) as u64;
        let by_pieces = u64::from(self.cfg.min_horizon_pieces) * u64::from(self.geo.piece_len());
        by_time.max(by_pieces)
    }

    fn update_interest(&mut self, actions: &mut Vec<Action>) {
        for (&key, state) in &mut self.peers {
            let want = state.wanted > 0;
            if want != state.interested {
                state.interested = want;
                actions.push(if want {
                    Action::Interested { peer: key }
                } else {
                    Action::NotInterested { peer: key }
                });
            }
        }
    }

    /// After a seek: cancels every request for a piece without a deadline, except each
    /// peer's oldest ones that are already on their way.
    fn cancel_stale(
        &mut self,
        now: Instant,
        actions: &mut Vec<Action>,
        cancelled: &mut BTreeSet<Block>,
    ) {
        for (&key, state) in &mut self.peers {
            let keep = state.committed_requests(&self.cfg);
            state.tick(now);
            let mut i = keep;
            while i < state.in_flight.len() {
                let block = state.in_flight[i].block;
                if self.deadline_of.contains_key(&block.piece) {
                    i += 1;
                    continue;
                }
                drop_request(&mut self.active, key, state, i);
                state.remember_released(block);
                cancelled.insert(block);
                actions.push(Action::Cancel {
                    peer: key,
                    block: self.geo.block(block.piece, block.index),
                });
            }
        }
    }

    /// Whether `peer` may be given requests now (pipeline room aside).
    /// A peer whose oldest request is overdue, with no block for `stall_floor`, is not
    /// delivering now, whatever its rate says: it gets nothing more until a block comes.
    fn can_ask(&self, state: &Peer, now: Instant) -> bool {
        state.interested
            && !state.choking_us
            && !state.snubbed(now, &self.cfg)
            && !state.head_stalled(now, &self.cfg)
    }

    /// The slowest `slow_peer_percent` of the askable peers with a measured rate.
    fn slow_peers(&self, now: Instant) -> BTreeSet<PeerKey> {
        let mut rated: Vec<(f64, PeerKey)> = self
            .peers
            .iter()
            .filter(|(_, s)| self.can_ask(s, now))
            .filter_map(|(&k, s)| s.measured_rate().map(|r| (r, k)))
            .collect();
        rated.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let slow = rated.len() * self.cfg.slow_peer_percent.min(100) as usize / 100;
        rated.into_iter().take(slow).map(|(_, k)| k).collect()
    }

    fn pick_deadline_blocks(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.deadlines.is_empty() {
            return;
        }
        let slow = self.slow_peers(now);
        // Bytes assigned in this pass to peers whose pipeline is full: the block waits for
        // them, and the next block sees their queue longer.
        let mut waiting: BTreeMap<PeerKey, u64> = BTreeMap::new();
        let deadlines = self.deadlines.clone();
        for (deadline, piece) in deadlines {
            if !self.new_pieces && !self.active.contains_key(&piece) {
                continue;
            }
            let any_room = self
                .peers
                .values()
                .any(|s| self.can_ask(s, now) && s.room(&self.cfg) > 0);
            if !any_room {
                break;
            }
            for index in 0..self.geo.blocks_in(piece) {
                let block = Block { piece, index };
                let slot = self
                    .active
                    .get(&piece)
                    .map(|a| a.blocks[index as usize])
                    .unwrap_or_default();
                if slot.received_from.is_some() {
                    continue;
                }
                let duplicate = match (slot.requests(), slot.sole_requester()) {
                    (0, _) => None,
                    (1, Some(requester)) => match self.lateness(requester, block, deadline, now) {
                        Lateness::OnTime => continue,
                        late => Some((requester, late)),
                    },
                    _ => continue,
                };
                let len = self.geo.block(piece, index).length;
                let exclude = duplicate.map(|(requester, _)| requester);
                let Some((key, has_room, expected)) =
                    self.choose_deadline_peer(piece, exclude, len, deadline, &slow, &waiting, now)
                else {
                    continue;
                };
                if let Some((_, Lateness::AfterDeadline { remaining })) = duplicate {
                    // Worth a second request only from a peer with room that delivers in
                    // less than half the remaining wait (no churn on estimate noise).
                    if has_room && expected * 2 < remaining {
                        self.issue(key, block, now, actions);
                    }
                } else if has_room {
                    self.issue(key, block, now, actions);
                } else {
                    *waiting.entry(key).or_default() += u64::from(len);
                }
            }
        }
    }

    /// Whether the sole request of a deadline block at `peer` deserves a duplicate.
    fn lateness(&self, peer: PeerKey, block: Block, deadline: Instant, now: Instant) -> Lateness {
        let Some(state) = self.peers.get(&peer) else {
            return Lateness::OnTime;
        };
        let Some(request) = state.position(block).map(|i| &state.in_flight[i]) else {
            return Lateness::OnTime;
        };
        let waited = now.saturating_duration_since(request.sent_at);
        if state.snubbed(now, &self.cfg) || waited >= self.cfg.stall_timeout(request.expected) {
            return Lateness::Stalled;
        }
        let arrival = request.sent_at + request.expected;
        if arrival > deadline {
            return Lateness::AfterDeadline {
                remaining: arrival.saturating_duration_since(now),
            };
        }
        Lateness::OnTime
    }

    /// The peer a deadline block goes to, whether it has room now, and its expected delivery.
    #[allow(clippy::too_many_arguments)]
    fn choose_deadline_peer(
        &self,
        piece: u32,
        exclude: Option<PeerKey>,
        len: u32,
        deadline: Instant,
        slow: &BTreeSet<PeerKey>,
        waiting: &BTreeMap<PeerKey, u64>,
        now: Instant,
    ) -> Option<(PeerKey, bool, Duration)> {
        let holders: Vec<(PeerKey, &Peer)> = self
            .peers
            .iter()
            .filter(|(k, s)| Some(**k) != exclude && s.has.contains(piece) && self.can_ask(s, now))
            .map(|(k, s)| (*k, s))
            .collect();
        let fast_holder = holders.iter().any(|(k, _)| !slow.contains(k));
        let mut best_viewer: Option<(Duration, PeerKey)> = None;
        let mut best_seed: Option<(Duration, PeerKey)> = None;
        let mut best_any: Option<(Duration, PeerKey)> = None;
        for (key, state) in holders {
            if fast_holder && slow.contains(&key) {
                continue;
            }
            let extra = waiting.get(&key).copied().unwrap_or(0);
            let expected = state.expected_delivery(extra, len, &self.cfg);
            let candidate = Some((expected, key));
            let in_time = now + expected <= deadline;
            let better =
                |best: &Option<(Duration, PeerKey)>| best.is_none_or(|b| (expected, key) < b);
            if in_time && !state.is_seed() && better(&best_viewer) {
                best_viewer = candidate;
            }
            if in_time && better(&best_seed) {
                best_seed = candidate;
            }
            if better(&best_any) {
                best_any = candidate;
            }
        }
        let (expected, key) = best_viewer.or(best_seed).or(best_any)?;
        let has_room = self.peers.get(&key).is_some_and(|s| s.room(&self.cfg) > 0);
        Some((key, has_room, expected))
    }

    fn pick_other_blocks(
        &mut self,
        now: Instant,
        actions: &mut Vec<Action>,
        cancelled: &BTreeSet<Block>,
    ) {
        if !self.cfg.background {
            return;
        }
        self.refresh_order();
        // Fastest first, so the best peers continue the partial pieces.
        let mut askers: Vec<(f64, PeerKey)> = self
            .peers
            .iter()
            .filter(|(_, s)| self.can_ask(s, now) && s.room(&self.cfg) > 0)
            .map(|(&k, s)| (s.rate_or_guess(&self.cfg), k))
            .collect();
        askers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, key) in askers {
            let picks = self.other_blocks_for(key, now, cancelled);
            for block in picks {
                self.issue(key, block, now, actions);
            }
        }
    }

    /// Blocks outside the deadlines for `key`, up to its room: partial pieces first, then
    /// the order (rarest first or sequential), then end-game duplicates.
    fn other_blocks_for(
        &self,
        key: PeerKey,
        now: Instant,
        cancelled: &BTreeSet<Block>,
    ) -> Vec<Block> {
        let Some(state) = self.peers.get(&key) else {
            return Vec::new();
        };
        let room = state.room(&self.cfg) as usize;
        let mut picks = Vec::new();
        let any_snubbed = self
            .peers
            .values()
            .any(|s| s.snubbed(now, &self.cfg) && !s.in_flight.is_empty());
        let wanted_piece = |piece: u32| {
            state.has.contains(piece)
                && !self.have.contains(piece)
                && !self.deadline_of.contains_key(&piece)
        };
        // Partial pieces, rarest first.
        let mut partial: Vec<u32> = self
            .active
            .iter()
            .filter(|(p, a)| {
                wanted_piece(**p) && !a.is_complete() && (a.unrequested > 0 || any_snubbed)
            })
            .map(|(p, _)| *p)
            .collect();
        partial.sort_by_key(|p| (self.availability[*p as usize], self.rank(*p)));
        for piece in partial {
            let active = &self.active[&piece];
            for (index, slot) in active.blocks.iter().enumerate() {
                if picks.len() >= room {
                    return picks;
                }
                let block = Block {
                    piece,
                    index: index as u32,
                };
                let free = slot.received_from.is_none()
                    && !slot.requested_by(key)
                    && match (slot.requests(), slot.sole_requester()) {
                        (0, _) => true,
                        (1, Some(other)) => self
                            .peers
                            .get(&other)
                            .is_some_and(|s| s.snubbed(now, &self.cfg)),
                        _ => false,
                    };
                if free && !cancelled.contains(&block) {
                    picks.push(block);
                }
            }
        }
        // Untouched pieces in order.
        let untouched = if self.new_pieces {
            &self.order[..]
        } else {
            &[]
        };
        for &piece in untouched {
            if picks.len() >= room {
                return picks;
            }
            if !wanted_piece(piece) || self.active.contains_key(&piece) {
                continue;
            }
            for index in 0..self.geo.blocks_in(piece) {
                if picks.len() >= room {
                    return picks;
                }
                let block = Block { piece, index };
                if !cancelled.contains(&block) {
                    picks.push(block);
                }
            }
        }
        // End game: every missing block that a connected peer has is requested; duplicate
        // the ones this peer would deliver before their requester is expected to.
        let available = |piece: &u32| self.availability[*piece as usize] > 0;
        let end_game = picks.len() < room
            && self
                .order
                .iter()
                .all(|p| self.active.contains_key(p) || !available(p))
            && self
                .active
                .iter()
                .all(|(p, a)| a.unrequested == 0 || !available(p));
        if end_game {
            let mine = state.expected_delivery(0, crate::wire::BLOCK_LEN, &self.cfg);
            for (&piece, active) in &self.active {
                if !wanted_piece(piece) {
                    continue;
                }
                for (index, slot) in active.blocks.iter().enumerate() {
                    if picks.len() >= room {
                        return picks;
                    }
                    let block = Block {
                        piece,
                        index: index as u32,
                    };
                    let Some(other) = slot.sole_requester().filter(|o| *o != key) else {
                        continue;
                    };
                    if slot.received_from.is_some() || cancelled.contains(&block) {
                        continue;
                    }
                    let late = self.peers.get(&other).and_then(|s| {
                        let request = &s.in_flight[s.position(block)?];
                        let due = request.sent_at + request.expected;
                        Some(
                            now + mine < due
                                || now.saturating_duration_since(request.sent_at)
                                    >= self.cfg.stall_timeout(request.expected),
                        )
                    });
                    if late == Some(true) {
                        picks.push(block);
                    }
                }
            }
        }
        picks
    }

    fn refresh_order(&mut self) {
        if !self.order_dirty {
            return;
        }
        let mut order: Vec<u32> = (0..self.geo.piece_count())
            .filter(|p| !self.have.contains(*p))
            .collect();
        if !self.cfg.sequential {
            order.sort_by_key(|p| (self.availability[*p as usize], self.rank(*p)));
        }
        self.order = order;
        self.order_dirty = false;
    }

    /// The tie-break rank of a piece: a hash of the seed and the index (splitmix64).
    fn rank(&self, piece: u32) -> u64 {
        let mut z = self
            .cfg
            .seed
            .wrapping_add(u64::from(piece).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Sends a request for `block` to `key`.
    fn issue(&mut self, key: PeerKey, block: Block, now: Instant, actions: &mut Vec<Action>) {
        let wire = self.geo.block(block.piece, block.index);
        let Some(state) = self.peers.get_mut(&key) else {
            return;
        };
        state.tick(now);
        let expected = state.expected_delivery(0, wire.length, &self.cfg);
        state.push_request(block, wire.length, now, expected);
        let blocks = self.geo.blocks_in(block.piece);
        self.active
            .entry(block.piece)
            .or_insert_with(|| ActivePiece::new(blocks))
            .add_request(block.index, key);
        actions.push(Action::Request {
            peer: key,
            block: wire,
        });
    }

    /// Takes `block` out of `key`'s requests (its slot is already cleared) and queues a
    /// CANCEL for it.
    fn cancel_at(&mut self, key: PeerKey, block: Block, now: Instant) {
        let Some(state) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(position) = state.position(block) else {
            return;
        };
        state.tick(now);
        state.take_request(position);
        state.remember_released(block);
        self.pending.push(Action::Cancel {
            peer: key,
            block: self.geo.block(block.piece, block.index),
        });
    }

    fn add_has(&mut self, key: PeerKey, piece: u32) {
        let Some(state) = self.peers.get_mut(&key) else {
            return;
        };
        if state.has.insert(piece) {
            self.availability[piece as usize] += 1;
            if !self.have.contains(piece) {
                state.wanted += 1;
            }
            self.order_dirty = true;
        }
    }

    fn peer_mut(&mut self, peer: PeerKey) -> Result<&mut Peer, ScheduleError> {
        self.peers
            .get_mut(&peer)
            .ok_or(ScheduleError::UnknownPeer(peer))
    }

    fn check_piece(&self, piece: u32) -> Result<(), ScheduleError> {
        if piece < self.geo.piece_count() {
            Ok(())
        } else {
            Err(ScheduleError::PieceOutOfRange {
                piece,
                count: self.geo.piece_count(),
            })
        }
    }

    fn check_range(&self, range: &Range<u64>) -> Result<(), ScheduleError> {
        if range.start < range.end && range.end <= self.geo.total_len() {
            Ok(())
        } else {
            Err(ScheduleError::BadRange {
                start: range.start,
                end: range.end,
                total: self.geo.total_len(),
            })
        }
    }

    // ---------------------------------------------------------------- invariants

    /// Checks every invariant of the module docs.
    ///
    /// # Panics
    /// When one does not hold: a bug in the scheduler. Meant for tests and debug builds.
    pub fn check_invariants(&self) {
        let count = self.geo.piece_count();
        assert_eq!(self.have.recount(), self.have.count(), "have count");
        let mut availability = vec![0u32; count as usize];
        // Every request in flight is listed in its block's slot, and no slot lists a peer
        // twice: with the totals equal, slots list exactly the requests in flight, and no
        // peer has a block in flight twice (two requests would share one listing).
        let mut in_flight_total = 0usize;
        for (&key, state) in &self.peers {
            assert_eq!(state.has.len(), count, "{key}: bitset length");
            assert_eq!(state.has.recount(), state.has.count(), "{key}: has count");
            let mut wanted = 0;
            for piece in state.has.iter() {
                availability[piece as usize] += 1;
                if !self.have.contains(piece) {
                    wanted += 1;
                }
            }
            assert_eq!(state.wanted, wanted, "{key}: wanted count");
            let bytes: u64 = state.in_flight.iter().map(|r| u64::from(r.len)).sum();
            assert_eq!(state.in_flight_bytes, bytes, "{key}: bytes in flight");
            assert!(
                state.in_flight.len() as u32 <= state.hard_cap(&self.cfg),
                "{key}: {} in flight over its cap {}",
                state.in_flight.len(),
                state.hard_cap(&self.cfg)
            );
            assert!(state.released.len() <= MAX_RELEASED, "{key}: released list");
            if state.choking_us {
                assert!(state.in_flight.is_empty(), "{key}: requests while choked");
            }
            if !state.in_flight.is_empty() {
                assert!(state.interested, "{key}: requests without interest");
                assert!(state.waiting_since.is_some(), "{key}: no snub clock");
            }
            for request in &state.in_flight {
                let block = request.block;
                assert!(state.has.contains(block.piece), "{key}: {block:?} not had");
                assert!(
                    !self.have.contains(block.piece),
                    "{key}: {block:?} verified"
                );
                assert_eq!(
                    request.len,
                    self.geo.block(block.piece, block.index).length,
                    "{key}: {block:?} length"
                );
                let slot = self
                    .active
                    .get(&block.piece)
                    .and_then(|a| a.blocks.get(block.index as usize));
                assert!(
                    slot.is_some_and(|s| s.requested_by(key) && s.received_from.is_none()),
                    "{key}: {block:?} in flight but its slot says {slot:?}"
                );
            }
            in_flight_total += state.in_flight.len();
        }
        assert_eq!(availability, self.availability, "availability");
        let mut listed_total = 0usize;
        for (&piece, active) in &self.active {
            assert!(!self.have.contains(piece), "verified piece {piece} active");
            assert_eq!(active.blocks.len() as u32, self.geo.blocks_in(piece));
            let mut received = 0;
            let mut unrequested = 0;
            for (index, slot) in active.blocks.iter().enumerate() {
                let listed = slot.requests();
                if let [Some(first), Some(second)] = slot.requested_by {
                    assert_ne!(first, second, "piece {piece} block {index}: one peer twice");
                }
                listed_total += listed;
                if slot.received_from.is_some() {
                    received += 1;
                    assert_eq!(
                        listed, 0,
                        "piece {piece} block {index}: received, requested"
                    );
                } else if listed == 0 {
                    unrequested += 1;
                }
            }
            assert_eq!(active.received, received, "piece {piece}: received count");
            assert_eq!(
                active.unrequested, unrequested,
                "piece {piece}: unrequested"
            );
            assert!(!active.is_idle(), "piece {piece}: idle but active");
        }
        assert_eq!(
            listed_total, in_flight_total,
            "slots list requests that no peer has in flight"
        );
    }
}

/// Removes request `index` of `peer` and its reservation on the block.
fn drop_request(
    active: &mut BTreeMap<u32, ActivePiece>,
    key: PeerKey,
    peer: &mut Peer,
    index: usize,
) -> InFlight {
    let request = peer.take_request(index);
    let piece = request.block.piece;
    if let Some(a) = active.get_mut(&piece) {
        a.remove_request(request.block.index, key);
        if a.is_idle() {
            active.remove(&piece);
        }
    }
    request
}
