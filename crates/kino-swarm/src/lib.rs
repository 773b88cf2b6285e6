//! Kino's own swarm engine (phase 1): the two pure cores, the peer wire codec and the
//! block scheduler.
//!
//! Kino streams films over BitTorrent. Its engine today is librqbit 9.1, whose scheduler
//! cannot be steered: one peer owns a whole piece, a seek sends no CANCEL, the request
//! window is one static number, there is no rarest-first (see `DESIGN.md`, "How the reference
//! clients schedule for streaming"). This crate grows into Kino's replacement engine. Nothing
//! uses it yet; `kino-engine` switches to it once benchmarks and tests say it is better.
//!
//! # Modules
//! - [`wire`]: the peer wire protocol: handshake with its reserved bits, every BEP 3 message,
//!   the BEP 6 Fast messages, BEP 5's `port`, the BEP 10 envelope; an incremental
//!   [`wire::Decoder`] with hard size limits.
//! - [`geometry`]: pieces and 16 KiB blocks of a torrent.
//! - [`scheduler`]: which block to request from which peer, when to CANCEL, when to ask a
//!   second peer; deadlines from the players' playheads.
//!
//! To come in phase 2, each its own module: the session (listening, peer limits, DHT and
//! tracker peers), the torrent lifecycle (metadata, checking, live, paused), the peer
//! connection task (socket I/O, the extended handshake, keep-alives, MSE, uTP), uploads and
//! choking, storage and resume, and the wiring into `kino-engine`'s API.
//!
//! # Driving it
//! A torrent task (phase 2) turns wire messages into scheduler events and the scheduler's
//! actions into wire messages:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::BytesMut;
//! use kino_swarm::{Action, Decoder, Geometry, Message, Receipt, Scheduler, SchedulerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let geometry = Geometry::new(8 * 1024 * 1024, 256 * 1024)?;
//! let mut scheduler = Scheduler::new(geometry, SchedulerConfig::default());
//! let start = Instant::now();
//!
//! // A peer finished its handshake; its first messages say it has everything and unchokes us.
//! let peer = scheduler.add_peer(start);
//! let mut decoder = Decoder::new();
//! let mut incoming = BytesMut::new();
//! Message::HaveAll.encode(&mut incoming)?;
//! Message::Unchoke.encode(&mut incoming)?;
//! decoder.feed(&incoming);
//! while let Some(message) = decoder.next_message()? {
//!     match message {
//!         Message::HaveAll => scheduler.peer_have_all(peer)?,
//!         Message::Unchoke => scheduler.peer_unchoked(peer, start)?,
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
//!         Action::Interested { .. } => Message::Interested.encode(&mut outgoing)?,
//!         Action::NotInterested { .. } => Message::NotInterested.encode(&mut outgoing)?,
//!     }
//! }
//! assert_eq!(asked[0].piece, 0, "the playhead's piece first");
//!
//! // The first block arrives 80 ms later: store it.
//! let later = start + Duration::from_millis(80);
//! let receipt = scheduler.block_received(peer, asked[0], later)?;
//! assert_eq!(receipt, Receipt::Wanted { piece_complete: false });
//! // Poll again after every event, or at `next_wakeup` when nothing happens.
//! let _more = scheduler.poll_actions(later);
//! assert!(scheduler.next_wakeup(later).is_some());
//! # Ok(()) }
//! ```
//!
//! # Design decisions
//! - **Pure cores, time passed in.** Neither module does I/O or reads a clock: the scheduler
//!   takes `now: Instant` in every call that needs time, and the decoder is fed bytes. Their
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
//!   checks bitfields against the piece count and blocks against the torrent's geometry.
//! - **Invariants written beside the state and checked.** `scheduler.rs` lists them;
//!   [`scheduler::Scheduler::check_invariants`] asserts every one, and the tests call it
//!   after every step.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod choker;
pub mod geometry;
pub mod peer;
pub mod scheduler;
pub mod wire;

pub use geometry::{Geometry, GeometryError};
pub use scheduler::{
    Action, PeerKey, PeerStats, PieceProgress, Receipt, ScheduleError, Scheduler, SchedulerConfig,
    StreamId,
};
pub use wire::{
    BLOCK_LEN, BlockRef, Decoder, DecoderLimits, Handshake, Message, Reserved, WireError,
};
