//! Kino's own swarm engine (phase 2b): the pure cores (the peer wire codec, the block
//! scheduler, the per-connection protocol state, the upload side) and the tokio I/O layer
//! that makes them move bytes (a session, a task per torrent and per connection, streaming
//! readers).
//!
//! Kino streams films over BitTorrent. Its engine today is librqbit 9.1, whose scheduler
//! cannot be steered: one peer owns a whole piece, a seek sends no CANCEL, the request
//! window is one static number, there is no rarest-first, every peer is unchoked at once and
//! incoming CANCELs are ignored (see `DESIGN.md`, "How the reference clients schedule for
//! streaming"). This crate grows into Kino's replacement engine. Nothing uses it yet;
//! `kino-engine` switches to it once benchmarks and tests say it is better.
//!
//! # Modules
//! The pure cores (no I/O, time passed in):
//! - [`wire`]: the peer wire protocol: handshake with its reserved bits, every BEP 3 message,
//!   the BEP 6 Fast messages, BEP 5's `port`, the BEP 10 envelope; an incremental
//!   [`wire::Decoder`] with hard size limits.
//! - [`geometry`]: pieces and 16 KiB blocks of a torrent.
//! - [`scheduler`]: which block to request from which peer, when to CANCEL, when to ask a
//!   second peer; deadlines from the players' playheads.
//! - [`peer`]: one connection's protocol state: choke and interest both ways, the opening
//!   rule, Fast and extension negotiation, the peer's requests to us (a bounded queue, BEP 6
//!   rejects, CANCEL honoured), keep-alive and idle timers; every message classified as a
//!   scheduler event, an upload request or a typed [`peer::Violation`]. [`peer::BanList`]
//!   bans an address after two hash failures.
//! - [`choker`]: which interested peers we unchoke (reciprocation and an optimistic unchoke
//!   while downloading, rotation while seeding, nobody with sharing off or the ratio
//!   reached) and [`choker::UploadBudget`], the upload cap as a token bucket.
//!
//! The I/O layer (tokio):
//! - [`storage`]: the [`Storage`] seam (read and write torrent byte ranges, from blocking
//!   threads; a typed disk-full error) and [`MemoryStorage`] for tests.
//! - [`session`]: the [`Session`]: a listener, the torrents, the ban list and the upload
//!   budget they share, the peer and half-open limits, and the ordered shutdown of every
//!   task (each spawned through one helper with a name, a span and a cancellation token).
//! - [`torrent`]: a task per torrent owning its scheduler and choker: checking, piece
//!   assembly, SHA-1 checks and writes on the blocking pool, uploads from verified pieces,
//!   haves, hash failures to the ban list (blaming only the peer whose block differed),
//!   the lifecycle (checking, live, paused, failed, stopped); and the streaming [`Reader`]
//!   (`AsyncRead + AsyncSeek`) whose position is a scheduler playhead.
//! - [`connection`]: a task per peer: connect or accept, handshake (Fast on, BEP 10 off in
//!   this phase), the decoder and the protocol state in, the torrent's messages out in
//!   batched writes, uploads paced by the budget, keep-alives, timeouts, violations.
//!
//! To come in phase 2c: BEP 9/10 metadata exchange (and the extended handshake's `reqq`),
//! PEX, DHT and tracker peers, LSD, MSE, uTP, the file-backed storage (`kino-engine`'s
//! `TorrentFiles` implementing [`Storage`]), the resume bitfield in SQLite, the adapter that
//! gives `kino-engine`'s API this engine, and the benchmark switch.
//!
//! # Running a session
//! See the [`session`] module for a leecher that streams a torrent; the tests in
//! `tests/swarm.rs` run several sessions against each other on loopback.
//!
//! # Driving the cores
//! A connection task decodes the peer's bytes and runs each message through the
//! connection's [`peer::PeerProtocol`]; the torrent task turns its events into scheduler
//! calls, and the scheduler's actions into wire messages:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::BytesMut;
//! use kino_swarm::{
//!     Action, Decoder, Geometry, Inbound, Message, PeerConfig, PeerEvent, PeerProtocol,
//!     Receipt, Reserved, Scheduler, SchedulerConfig,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let geometry = Geometry::new(8 * 1024 * 1024, 256 * 1024)?;
//! let mut scheduler = Scheduler::new(geometry, SchedulerConfig::default());
//! let start = Instant::now();
//!
//! // A peer finished its handshake (both sides announce the Fast extension); its first
//! // messages say it has everything and unchokes us.
//! let fast = Reserved::NONE.with_fast(true);
//! let peer = scheduler.add_peer(start);
//! let mut conn = PeerProtocol::new(geometry, PeerConfig::default(), fast, fast, start);
//! let mut decoder = Decoder::new();
//! let mut incoming = BytesMut::new();
//! Message::HaveAll.encode(&mut incoming)?;
//! Message::Unchoke.encode(&mut incoming)?;
//! decoder.feed(&incoming);
//! while let Some(message) = decoder.next_message()? {
//!     // A violation (`?` here) would close the connection.
//!     match conn.on_message(message, start, |piece| scheduler.has_piece(piece))? {
//!         Inbound::Event(PeerEvent::HaveAll) => scheduler.peer_have_all(peer)?,
//!         Inbound::Event(PeerEvent::Unchoked) => scheduler.peer_unchoked(peer, start)?,
//!         _ => {}
//!     }
//! }
//!
//! // A player opens the film at its start (500 kB/s).
//! scheduler.add_stream(0..geometry.total_len(), 0, Some(500_000), start)?;
//! let mut outgoing = BytesMut::new();
//! let mut asked = Vec::new();
//! for action in scheduler.poll_actions(start) {
//!     match action {
//!         Action::Request { block, .. } => {
//!             Message::Request(block).encode(&mut outgoing)?;
//!             asked.push(block);
//!         }
//!         Action::Cancel { block, .. } => Message::Cancel(block).encode(&mut outgoing)?,
//!         Action::Interested { .. } | Action::NotInterested { .. } => {
//!             let interested = matches!(action, Action::Interested { .. });
//!             if let Some(message) = conn.set_interested(interested) {
//!                 message.encode(&mut outgoing)?;
//!             }
//!         }
//!     }
//! }
//! assert_eq!(asked[0].piece, 0, "the playhead's piece first");
//!
//! // The first block arrives 80 ms later: the scheduler says to store it, and the
//! // connection hears that it was asked for.
//! let later = start + Duration::from_millis(80);
//! let mut incoming = BytesMut::new();
//! let data = vec![0u8; asked[0].length as usize].into();
//! Message::Piece { piece: asked[0].piece, begin: asked[0].begin, data }.encode(&mut incoming)?;
//! decoder.feed(&incoming);
//! if let Some(message) = decoder.next_message()? {
//!     if let Inbound::Event(PeerEvent::Block { block, .. }) =
//!         conn.on_message(message, later, |piece| scheduler.has_piece(piece))?
//!     {
//!         let receipt = scheduler.block_received(peer, block, later)?;
//!         assert_eq!(receipt, Receipt::Wanted { piece_complete: false });
//!         conn.block_outcome(receipt)?;
//!     }
//! }
//! // Poll again after every event, or at `next_wakeup` when nothing happens.
//! let _more = scheduler.poll_actions(later);
//! assert!(scheduler.next_wakeup(later).is_some());
//! # Ok(()) }
//! ```
//!
//! The upload side: the choker decides who is unchoked, the connection queues what an
//! unchoked peer asks for, and the upload budget paces the blocks:
//!
//! ```
//! use std::time::Instant;
//! use kino_swarm::{
//!     Choker, ChokerConfig, Geometry, Inbound, Message, PeerConfig, PeerProtocol, Reserved,
//!     Scheduler, SchedulerConfig, UploadBudget,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let geometry = Geometry::new(8 * 1024 * 1024, 256 * 1024)?;
//! let mut scheduler = Scheduler::new(geometry, SchedulerConfig::default());
//! let start = Instant::now();
//! for piece in 0..geometry.piece_count() {
//!     scheduler.piece_verified(piece, start)?; // a seed
//! }
//! let mut choker: Choker = Choker::new(ChokerConfig::default(), start);
//! choker.set_seeding(true);
//! let mut budget = UploadBudget::new(Some(1_000_000), start); // 1 MB/s cap
//!
//! let peer = scheduler.add_peer(start);
//! let mut conn = PeerProtocol::new(
//!     geometry, PeerConfig::default(), Reserved::NONE, Reserved::NONE, start,
//! );
//! choker.add_peer(peer, start);
//! if let Inbound::Interest(interested) =
//!     conn.on_message(Message::Interested, start, |p| scheduler.has_piece(p))?
//! {
//!     choker.set_interested(peer, interested);
//! }
//! let mut sent = Vec::new();
//! for action in choker.poll(start) {
//!     assert_eq!(action.peer, peer);
//!     if action.choke {
//!         sent.extend(conn.choke(start));
//!     } else {
//!         sent.extend(conn.unchoke());
//!     }
//! }
//! assert_eq!(sent, vec![Message::Unchoke]);
//!
//! let asked = geometry.block(3, 0);
//! conn.on_message(Message::Request(asked), start, |p| scheduler.has_piece(p))?;
//! if budget.take(asked.length, start).is_none() {
//!     let block = conn.next_upload().expect("queued");
//!     // ... read the block from storage, send it as a `piece` message ...
//!     choker.sent(peer, u64::from(block.length));
//! }
//! # Ok(()) }
//! ```
//!
//! # Design decisions
//! - **Pure cores, time passed in.** No module does I/O or reads a clock: every call that
//!   needs time takes `now: Instant`, and the decoder is fed bytes. Their
//!   behaviour under loss, stalls, seeks and slow peers is therefore tested deterministically
//!   in milliseconds, including a discrete-event simulation of a swarm.
//! - **Block-level reservation, not piece ownership.** A block (16 KiB) is the unit a peer is
//!   asked for, so the piece under the playhead spreads over several peers, and a late block
//!   can be asked of a second peer (at most two requests per block) without giving up the
//!   rest of the piece. This is what WebTorrent and libtorrent's time-critical path do, and
//!   what librqbit cannot.
//! - **Deadlines, not priorities.** A stream turns its playhead and bitrate into a deadline
//!   per piece; everything is ordered by deadline, and a block goes to the peer expected to
//!   deliver it soonest (its queued bytes / its rate + its RTT). No fixed look-ahead and no
//!   once-a-second pass (libtorrent's costs seeks up to a second): every event may pick.
//! - **Pipelines follow rate × RTT.** Each peer gets as many requests as it delivers in one
//!   RTT plus a margin, within [2, its `reqq`], instead of one static window: short queues
//!   make seeks fast on slow peers, long ones keep a fast distant peer busy.
//! - **A seek cancels.** Requests that serve no deadline any more, beyond what is already on
//!   its way, get a CANCEL at once, so the new playhead does not wait behind them.
//! - **Offload the origin.** A deadline block that a viewer can deliver in time goes to the
//!   viewer rather than to a seed, and beyond the deadlines pieces go rarest first with a
//!   per-session random tie-break, so a publisher's upload goes to pieces nobody else has.
//! - **Every length from the network is bounded before it is trusted.** The decoder checks a
//!   length prefix against per-message limits before buffering the payload; the scheduler
//!   checks bitfields against the piece count and blocks against the torrent's geometry; the
//!   peer protocol checks every piece index and request before it keeps anything.
//! - **Hostile input is a typed violation, never memory.** What a peer may make us keep is
//!   bounded per connection (its request queue, its allowed-fast set); a request flood, a
//!   lying or late bitfield, Fast messages without Fast, requests over 16 KiB, blocks and
//!   rejects we never asked for beyond a tolerance, silence: each is a
//!   [`peer::Violation`] that names what happened, and the connection is closed.
//! - **The upload side serves viewers, then reciprocates.** BEP 3's choker, with a 30 s
//!   seeding turn so every viewer of a film gets upload in turn, a free slot filled at once
//!   (a viewer should not wait 10 s for its first block), and CANCEL honoured so a viewer
//!   that seeks stops receiving what it no longer wants.
//! - **Invariants written beside the state and checked.** Each module lists its invariants
//!   and has a `check_invariants` that asserts every one; the tests call it after every
//!   step, including runs of thousands of random events.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod choker;
pub mod connection;
pub mod geometry;
pub mod peer;
pub mod scheduler;
pub mod session;
pub mod storage;
mod tasks;
pub mod torrent;
pub mod wire;

pub use choker::{ChokeAction, Choker, ChokerConfig, UploadBudget};
pub use geometry::{Geometry, GeometryError};
pub use peer::{BanList, Inbound, PeerConfig, PeerEvent, PeerProtocol, Violation};
pub use scheduler::{
    Action, PeerKey, PeerStats, PieceProgress, Receipt, ScheduleError, Scheduler, SchedulerConfig,
    StreamId,
};
pub use session::{AddError, Session, SessionConfig, SessionError, SessionStats};
pub use storage::{MemoryStorage, Storage, StorageError};
pub use torrent::{
    FailReason, ReadError, Reader, Role, Torrent, TorrentError, TorrentOptions, TorrentSpec,
    TorrentState, TorrentStatus,
};
pub use wire::{
    BLOCK_LEN, BlockRef, Decoder, DecoderLimits, Handshake, Message, Reserved, WireError,
};
