//! The protocol core of one peer connection: what the peer's messages mean, which of them
//! break the protocol, and the peer's requests to us (the upload queue).
//!
//! A pure state machine, like the scheduler: no socket, no task, no clock read. A connection
//! task ([`crate::connection`]) decodes the peer's bytes with [`crate::wire::Decoder`] and
//! feeds each [`Message`] to [`PeerProtocol::on_message`], which classifies it as one [`Inbound`]:
//! - an event for the scheduler ([`Inbound::Event`]: have, bitfield, have all/none, choke,
//!   unchoke, a block, a reject, an allowed-fast piece), or for the choker
//!   ([`Inbound::Interest`]);
//! - an upload request, queued ([`Inbound::UploadQueued`], served with
//!   [`PeerProtocol::next_upload`] as the upload budget allows), or refused
//!   ([`Inbound::Refused`], answered with `reject request` when the Fast extension is on);
//! - a cancelled upload ([`Inbound::UploadCancelled`]), an extension message, a DHT port;
//! - or a [`Violation`]: the peer broke the protocol, the caller closes the connection.
//!
//! What we do goes through it too: [`PeerProtocol::choke`] / [`PeerProtocol::unchoke`]
//! (what the choker decided), [`PeerProtocol::set_interested`] (what the scheduler decided),
//! [`PeerProtocol::allow_fast`]; each returns the messages to send. [`PeerProtocol::poll`]
//! says when to send a keep-alive and when the peer has been silent too long.
//!
//! # Rules
//! - **Opening.** `bitfield`, `have all` and `have none` are only allowed as the peer's first
//!   message, once. Extension messages (BEP 10), `port` and keep-alives may come before it:
//!   librqbit sends its extended handshake before its bitfield. A peer with nothing may send
//!   none of them (BEP 3); [`PeerProtocol::opening`] says what happened.
//! - **Fast extension** (BEP 6) is on when both handshakes announce it. Without it, `have all`,
//!   `have none`, `suggest piece`, `reject request` and `allowed fast` are violations; BEP 10
//!   messages without both extension-protocol bits are too.
//! - **Requests to us.** Longer than 16 KiB, or for a piece index past the last piece: a
//!   violation. Not starting on a 16 KiB boundary, empty, or running past its piece; for a
//!   piece we do not have; while we choke the peer (unless the piece is one we allowed fast):
//!   refused, with `reject request` when Fast is on (BEP 6), silently dropped otherwise (BEP
//!   3 has no reject). A duplicate of a queued request is ignored. The queue holds at most
//!   [`PeerConfig::max_queued_uploads`] (announce it as `reqq`); a request beyond that is a
//!   flood, a violation. Refusals are counted: more than
//!   [`PeerConfig::max_bad_requests`] malformed or not-had requests, or more than
//!   [`PeerConfig::max_requests_while_choked`] requests while choked after
//!   [`PeerConfig::choke_grace`] (requests sent before our choke arrived are not the peer's
//!   fault) are violations.
//! - **Cancel** removes the queued request (and, with Fast, is answered with a reject, as
//!   BEP 6 wants a reply to every request). librqbit ignores incoming CANCELs; we must not,
//!   or a seeking viewer waits behind blocks it no longer wants.
//! - **Choking the peer** drops its queued requests, except those for allowed-fast pieces;
//!   with Fast each dropped request is rejected (BEP 6: a choke no longer implies it).
//! - **Blocks and rejects we did not ask for.** The scheduler knows what we asked for: the
//!   caller reports its verdict with [`PeerProtocol::block_outcome`] and
//!   [`PeerProtocol::reject_outcome`]; beyond [`PeerConfig::max_unrequested`] such messages
//!   the peer is in violation. A block for a piece past the last one, or running past its
//!   piece, is a violation at once.
//! - **Idle.** No message at all (not even a keep-alive) for [`PeerConfig::idle_timeout`]:
//!   a violation. Nothing sent for [`PeerConfig::keep_alive_interval`]: send a keep-alive.
//!
//! # Invariants (checked by [`PeerProtocol::check_invariants`])
//! - The upload queue holds at most `max_queued_uploads` requests, no two alike, each a valid
//!   request: piece in range, 1..=16 KiB, on a block boundary, inside its piece.
//! - While we choke the peer, every queued request is for a piece we allowed fast.
//! - Without Fast, both allowed-fast sets are empty; each holds at most
//!   `max_allowed_fast` distinct pieces in range.
//! - The strike counters never exceed their limits (the message that would is a violation).
//! - The opening is `Announced` only if a bitfield, `have all` or `have none` came first.
//! - Memory is O(`max_queued_uploads` + `max_allowed_fast`): nothing here grows with what
//!   the peer sends.

mod ban;
#[cfg(test)]
mod tests;

pub use ban::{BanList, DEFAULT_BAN_CAPACITY, STRIKES_TO_BAN, Strike};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use crate::geometry::Geometry;
use crate::scheduler::Receipt;
use crate::wire::{BLOCK_LEN, BlockRef, Message, Reserved};

/// The limits and timers of a peer connection. Every field has a documented default
/// ([`Default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Most requests from the peer queued at once (default 256). Announce it as `reqq` in
    /// the extended handshake; a request beyond it is a [`Violation::RequestFlood`].
    pub max_queued_uploads: usize,
    /// Most allowed-fast pieces kept in each direction (default 32; more from the peer are
    /// ignored).
    pub max_allowed_fast: usize,
    /// Blocks and rejects we never asked for tolerated before [`Violation::Unrequested`]
    /// (default 16; a block that crossed our CANCEL is not counted, see [`Receipt`]).
    pub max_unrequested: u32,
    /// Malformed requests and requests for pieces we do not have tolerated before
    /// [`Violation::BadRequests`] (default 32).
    pub max_bad_requests: u32,
    /// Requests while we choke the peer tolerated, per choke, before
    /// [`Violation::RequestsWhileChoked`] (default 50).
    pub max_requests_while_choked: u32,
    /// Requests within this long after we choked the peer are not counted (default 2 s):
    /// they may have been sent before our choke arrived.
    pub choke_grace: Duration,
    /// Send a keep-alive when nothing was sent for this long (default 60 s; BEP 3 peers
    /// time out after 2 minutes).
    pub keep_alive_interval: Duration,
    /// Close the connection when the peer sent nothing for this long (default 180 s:
    /// librqbit sends a keep-alive after 120 s of silence).
    pub idle_timeout: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            max_queued_uploads: 256,
            max_allowed_fast: 32,
            max_unrequested: 16,
            max_bad_requests: 32,
            max_requests_while_choked: 50,
            choke_grace: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(180),
        }
    }
}

/// How a peer broke the protocol. The caller closes the connection (and may log the reason;
/// none of these can happen with an honest, working peer).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Violation {
    /// A `bitfield`, `have all` or `have none` that is not the peer's first message.
    #[error("{message} is only allowed as the first message")]
    OpeningNotFirst {
        /// The message's name.
        message: &'static str,
    },
    /// A bitfield of the wrong length.
    #[error("bitfield of {len} bytes, expected {expected} for this torrent")]
    BitfieldLength {
        /// Its length.
        len: usize,
        /// The length for this torrent's piece count.
        expected: usize,
    },
    /// A bitfield with bits set past the last piece.
    #[error("bitfield sets bits past the last piece")]
    BitfieldSpareBits,
    /// A message naming a piece index past the last piece.
    #[error("{message} for piece {piece}, the torrent has {count} pieces")]
    PieceOutOfRange {
        /// The message's name.
        message: &'static str,
        /// The index given.
        piece: u32,
        /// The number of pieces.
        count: u32,
    },
    /// A `piece` message whose data runs past the end of its piece.
    #[error("block of {length} bytes at {begin} runs past the end of piece {piece}")]
    BlockOutOfPiece {
        /// The piece.
        piece: u32,
        /// The offset in the piece.
        begin: u32,
        /// The data length.
        length: u32,
    },
    /// A Fast extension message (BEP 6) although Fast was not negotiated.
    #[error("{message} without the Fast extension negotiated")]
    FastNotNegotiated {
        /// The message's name.
        message: &'static str,
    },
    /// An extension message (BEP 10) although the extension protocol was not negotiated.
    #[error("extended message without the extension protocol negotiated")]
    ExtensionNotNegotiated,
    /// A request for more than 16 KiB.
    #[error("request for {length} bytes, at most {BLOCK_LEN} allowed")]
    OversizedRequest {
        /// The length asked for.
        length: u32,
    },
    /// A request while the upload queue is full.
    #[error("request flood: {queued} requests already queued")]
    RequestFlood {
        /// The queue's length (its bound).
        queued: usize,
    },
    /// Too many malformed requests or requests for pieces we do not have.
    #[error("{count} malformed requests or requests for pieces we do not have")]
    BadRequests {
        /// How many.
        count: u32,
    },
    /// Too many requests while we choke the peer.
    #[error("{count} requests while choked")]
    RequestsWhileChoked {
        /// How many since the choke (after the grace period).
        count: u32,
    },
    /// Too many blocks or rejects for requests we never sent.
    #[error("{count} blocks or rejects we never asked for")]
    Unrequested {
        /// How many.
        count: u32,
    },
    /// The peer sent nothing, not even a keep-alive, for too long.
    #[error("no message for {silent:?}")]
    Idle {
        /// How long it has been silent.
        silent: Duration,
    },
}

/// What the peer's first message was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// No message yet (or only extension messages, `port` or keep-alives).
    Pending,
    /// It opened with a `bitfield`, `have all` or `have none`; no other may follow.
    Announced,
    /// Its first message was another one: it had nothing to announce (BEP 3 allows this).
    Skipped,
}

/// What the scheduler (and storage, for blocks) should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// `have`: the peer has a new piece (in range).
    Have(u32),
    /// `bitfield`: the peer's pieces (length and spare bits checked).
    Bitfield(Bytes),
    /// `have all` (BEP 6).
    HaveAll,
    /// `have none` (BEP 6).
    HaveNone,
    /// The peer chokes us (only reported when it changes).
    Choked,
    /// The peer unchokes us (only reported when it changes).
    Unchoked,
    /// A block arrived (inside its piece). Report it to the scheduler, store it if the
    /// scheduler wants it, and tell [`PeerProtocol::block_outcome`] what the scheduler said.
    Block {
        /// Which block (its length is the data's).
        block: BlockRef,
        /// The data.
        data: Bytes,
    },
    /// The peer rejected a request (BEP 6). Tell [`PeerProtocol::reject_outcome`] whether the
    /// scheduler knew the request.
    Rejected(BlockRef),
    /// The peer lets us request this piece while it chokes us (BEP 6; reported once per
    /// piece, at most [`PeerConfig::max_allowed_fast`] pieces).
    AllowedFast(u32),
}

/// Why a request from the peer was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// Empty, not on a 16 KiB boundary, or running past its piece.
    NotABlock,
    /// We do not have the piece.
    DontHave,
    /// We choke the peer and the piece is not one we allowed fast.
    Choked,
}

/// What one message from the peer means to us. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Nothing to do: a keep-alive, a repeated state, a duplicate request, a cancel for
    /// nothing queued, `suggest piece`, an unknown message id (BEP 3 says to ignore those).
    Nothing,
    /// For the scheduler.
    Event(PeerEvent),
    /// The peer's interest in us changed: tell the choker.
    Interest(bool),
    /// The request was queued: take it with [`PeerProtocol::next_upload`] when the upload
    /// budget allows.
    UploadQueued(BlockRef),
    /// The request was refused; with `send_reject`, send `reject request` for it.
    Refused {
        /// The request.
        block: BlockRef,
        /// Why.
        reason: RefuseReason,
        /// Fast is on: answer with `reject request`.
        send_reject: bool,
    },
    /// A CANCEL removed this queued request; with `send_reject`, send `reject request`.
    UploadCancelled {
        /// The request.
        block: BlockRef,
        /// Fast is on: answer with `reject request`.
        send_reject: bool,
    },
    /// A BEP 10 message, for the extension layer (handshake, `ut_metadata`, PEX).
    Extended {
        /// The extended message id.
        id: u8,
        /// Its payload.
        payload: Bytes,
    },
    /// The peer's DHT port (BEP 5).
    DhtPort(u16),
}

/// The protocol state of one connection. See the module docs.
#[derive(Debug)]
pub struct PeerProtocol {
    geo: Geometry,
    cfg: PeerConfig,
    fast: bool,
    extensions: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    opening: Opening,
    /// Pieces the peer lets us request while it chokes us.
    peer_allowed_fast: Vec<u32>,
    /// Pieces we let the peer request while we choke it.
    our_allowed_fast: Vec<u32>,
    /// The peer's requests to us, oldest first.
    uploads: VecDeque<BlockRef>,
    /// When we last choked the peer (the connection's start: peers start choked).
    choked_at: Instant,
    requests_while_choked: u32,
    bad_requests: u32,
    unrequested: u32,
    last_received: Instant,
    last_sent: Instant,
}

impl PeerProtocol {
    /// The state right after both handshakes: each side chokes the other and is not
    /// interested. `ours` and `theirs` are the handshakes' reserved bits.
    pub fn new(
        geometry: Geometry,
        config: PeerConfig,
        ours: Reserved,
        theirs: Reserved,
        now: Instant,
    ) -> Self {
        PeerProtocol {
            geo: geometry,
            cfg: config,
            fast: ours.fast() && theirs.fast(),
            extensions: ours.extension_protocol() && theirs.extension_protocol(),
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            opening: Opening::Pending,
            peer_allowed_fast: Vec::new(),
            our_allowed_fast: Vec::new(),
            uploads: VecDeque::new(),
            choked_at: now,
            requests_while_choked: 0,
            bad_requests: 0,
            unrequested: 0,
            last_received: now,
            last_sent: now,
        }
    }

    // ---------------------------------------------------------------- queries

    /// The configuration in use.
    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// Whether the Fast extension (BEP 6) is on: both handshakes announced it.
    pub fn fast(&self) -> bool {
        self.fast
    }

    /// Whether the extension protocol (BEP 10) is on: both handshakes announced it.
    pub fn extensions(&self) -> bool {
        self.extensions
    }

    /// We choke the peer.
    pub fn am_choking(&self) -> bool {
        self.am_choking
    }

    /// We told the peer we are interested.
    pub fn am_interested(&self) -> bool {
        self.am_interested
    }

    /// The peer chokes us.
    pub fn peer_choking(&self) -> bool {
        self.peer_choking
    }

    /// The peer told us it is interested.
    pub fn peer_interested(&self) -> bool {
        self.peer_interested
    }

    /// What the peer's first message was.
    pub fn opening(&self) -> Opening {
        self.opening
    }

    /// The pieces the peer lets us request while it chokes us.
    pub fn peer_allowed_fast(&self) -> &[u32] {
        &self.peer_allowed_fast
    }

    /// The pieces we let the peer request while we choke it.
    pub fn our_allowed_fast(&self) -> &[u32] {
        &self.our_allowed_fast
    }

    /// How many of the peer's requests are queued.
    pub fn queued_uploads(&self) -> usize {
        self.uploads.len()
    }

    /// The message to open with after the handshake, given our verified pieces as a
    /// BitTorrent bitfield (`ceil(pieces / 8)` bytes): with Fast, `have all` or `have none`
    /// when they say the same in one byte, else the bitfield; without Fast, the bitfield, or
    /// nothing when we have no piece (BEP 3 allows skipping it). With sharing off, pass an
    /// empty bitfield: we announce nothing.
    pub fn opening_message(&self, our_bitfield: &[u8]) -> Option<Message> {
        let count = self.geo.piece_count() as usize;
        let expected = count.div_ceil(8);
        let none = our_bitfield.iter().all(|b| *b == 0);
        let all = our_bitfield.len() == expected
            && (0..count).all(|i| our_bitfield[i / 8] & (0x80 >> (i % 8)) != 0);
        match (self.fast, none, all) {
            (true, true, _) => Some(Message::HaveNone),
            (true, false, true) => Some(Message::HaveAll),
            (false, true, _) => None,
            _ => Some(Message::Bitfield(Bytes::copy_from_slice(our_bitfield))),
        }
    }

    // ---------------------------------------------------------------- incoming

    /// Classifies one message from the peer. `we_have(piece)` says whether we have a
    /// verified piece (and share it: with sharing off, answer `false`). An error is a
    /// protocol violation: close the connection.
    pub fn on_message(
        &mut self,
        message: Message,
        now: Instant,
        we_have: impl Fn(u32) -> bool,
    ) -> Result<Inbound, Violation> {
        self.last_received = self.last_received.max(now);
        let name = message.name();
        if self.is_fast_only(&message) && !self.fast {
            return Err(Violation::FastNotNegotiated { message: name });
        }
        match &message {
            Message::Bitfield(_) | Message::HaveAll | Message::HaveNone => {
                if self.opening != Opening::Pending {
                    return Err(Violation::OpeningNotFirst { message: name });
                }
                self.opening = Opening::Announced;
            }
            Message::KeepAlive
            | Message::Extended { .. }
            | Message::Port(_)
            | Message::Unknown { .. } => {}
            _ => {
                if self.opening == Opening::Pending {
                    self.opening = Opening::Skipped;
                }
            }
        }
        Ok(match message {
            Message::KeepAlive | Message::Unknown { .. } => Inbound::Nothing,
            Message::Choke => self.peer_choke(true),
            Message::Unchoke => self.peer_choke(false),
            Message::Interested => self.peer_interest(true),
            Message::NotInterested => self.peer_interest(false),
            Message::Have { piece } => {
                self.check_piece("have", piece)?;
                Inbound::Event(PeerEvent::Have(piece))
            }
            Message::Bitfield(bits) => {
                self.check_bitfield(&bits)?;
                Inbound::Event(PeerEvent::Bitfield(bits))
            }
            Message::HaveAll => Inbound::Event(PeerEvent::HaveAll),
            Message::HaveNone => Inbound::Event(PeerEvent::HaveNone),
            Message::Request(block) => self.on_request(block, now, we_have)?,
            Message::Piece { piece, begin, data } => {
                self.check_piece("piece", piece)?;
                let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
                if u64::from(begin) + u64::from(length) > u64::from(self.geo.piece_size(piece)) {
                    return Err(Violation::BlockOutOfPiece {
                        piece,
                        begin,
                        length,
                    });
                }
                let block = BlockRef {
                    piece,
                    begin,
                    length,
                };
                Inbound::Event(PeerEvent::Block { block, data })
            }
            Message::Cancel(block) => match self.uploads.iter().position(|b| *b == block) {
                Some(position) => {
                    self.uploads.remove(position);
                    Inbound::UploadCancelled {
                        block,
                        send_reject: self.fast,
                    }
                }
                None => Inbound::Nothing,
            },
            Message::Port(port) => Inbound::DhtPort(port),
            Message::SuggestPiece { piece } => {
                self.check_piece("suggest piece", piece)?;
                Inbound::Nothing
            }
            Message::RejectRequest(block) => Inbound::Event(PeerEvent::Rejected(block)),
            Message::AllowedFast { piece } => {
                self.check_piece("allowed fast", piece)?;
                if self.peer_allowed_fast.contains(&piece)
                    || self.peer_allowed_fast.len() >= self.cfg.max_allowed_fast
                {
                    Inbound::Nothing
                } else {
                    self.peer_allowed_fast.push(piece);
                    Inbound::Event(PeerEvent::AllowedFast(piece))
                }
            }
            Message::Extended { id, payload } => {
                if !self.extensions {
                    return Err(Violation::ExtensionNotNegotiated);
                }
                Inbound::Extended { id, payload }
            }
        })
    }

    /// The scheduler's verdict on a block the peer sent ([`PeerEvent::Block`]): a block we
    /// never asked for counts against the peer.
    pub fn block_outcome(&mut self, receipt: Receipt) -> Result<(), Violation> {
        match receipt {
            Receipt::Unrequested => self.strike_unrequested(),
            Receipt::Wanted { .. } | Receipt::Redundant => Ok(()),
        }
    }

    /// Whether the scheduler knew the request the peer rejected ([`PeerEvent::Rejected`],
    /// [`crate::Scheduler::block_rejected`]'s answer): a reject for a request we never sent
    /// counts against the peer.
    pub fn reject_outcome(&mut self, requested: bool) -> Result<(), Violation> {
        if requested {
            Ok(())
        } else {
            self.strike_unrequested()
        }
    }

    // ---------------------------------------------------------------- outgoing

    /// We choke the peer (the choker decided so): returns the messages to send, nothing if
    /// we already choke it. Queued requests are dropped, except those for pieces we allowed
    /// fast; with Fast each dropped one is rejected.
    pub fn choke(&mut self, now: Instant) -> Vec<Message> {
        if self.am_choking {
            return Vec::new();
        }
        self.am_choking = true;
        self.choked_at = now;
        self.requests_while_choked = 0;
        let mut out = vec![Message::Choke];
        let allowed = &self.our_allowed_fast;
        let fast = self.fast;
        self.uploads.retain(|block| {
            let keep = allowed.contains(&block.piece);
            if !keep && fast {
                out.push(Message::RejectRequest(*block));
            }
            keep
        });
        out
    }

    /// We unchoke the peer: the message to send, `None` if it is already unchoked.
    pub fn unchoke(&mut self) -> Option<Message> {
        if !self.am_choking {
            return None;
        }
        self.am_choking = false;
        self.requests_while_choked = 0;
        Some(Message::Unchoke)
    }

    /// We are (or are no longer) interested in the peer: the message to send, `None` if
    /// nothing changes.
    pub fn set_interested(&mut self, interested: bool) -> Option<Message> {
        if self.am_interested == interested {
            return None;
        }
        self.am_interested = interested;
        Some(if interested {
            Message::Interested
        } else {
            Message::NotInterested
        })
    }

    /// Lets the peer request `piece` while we choke it (BEP 6 `allowed fast`): the message to
    /// send, `None` without Fast, for a piece out of range, already allowed, or when
    /// [`PeerConfig::max_allowed_fast`] pieces are.
    pub fn allow_fast(&mut self, piece: u32) -> Option<Message> {
        if !self.fast
            || piece >= self.geo.piece_count()
            || self.our_allowed_fast.contains(&piece)
            || self.our_allowed_fast.len() >= self.cfg.max_allowed_fast
        {
            return None;
        }
        self.our_allowed_fast.push(piece);
        Some(Message::AllowedFast { piece })
    }

    /// The oldest queued request to serve: read its data and send it as a `piece` message
    /// (the upload budget permitting). Only requests we may serve are queued.
    pub fn next_upload(&mut self) -> Option<BlockRef> {
        self.uploads.pop_front()
    }

    /// Something was written to the peer at `now` (resets the keep-alive timer).
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    // ---------------------------------------------------------------- timers

    /// Timers at `now`: a keep-alive to send (the keep-alive timer restarts), or
    /// [`Violation::Idle`] when the peer has been silent for too long.
    pub fn poll(&mut self, now: Instant) -> Result<Option<Message>, Violation> {
        let silent = now.saturating_duration_since(self.last_received);
        if silent >= self.cfg.idle_timeout {
            return Err(Violation::Idle { silent });
        }
        if now.saturating_duration_since(self.last_sent) >= self.cfg.keep_alive_interval {
            self.last_sent = now;
            return Ok(Some(Message::KeepAlive));
        }
        Ok(None)
    }

    /// When to [`PeerProtocol::poll`] next if nothing happens before.
    pub fn next_wakeup(&self) -> Instant {
        (self.last_received + self.cfg.idle_timeout)
            .min(self.last_sent + self.cfg.keep_alive_interval)
    }

    // ---------------------------------------------------------------- internals

    fn is_fast_only(&self, message: &Message) -> bool {
        matches!(
            message,
            Message::HaveAll
                | Message::HaveNone
                | Message::SuggestPiece { .. }
                | Message::RejectRequest(_)
                | Message::AllowedFast { .. }
        )
    }

    fn peer_choke(&mut self, choking: bool) -> Inbound {
        if self.peer_choking == choking {
            return Inbound::Nothing;
        }
        self.peer_choking = choking;
        Inbound::Event(if choking {
            PeerEvent::Choked
        } else {
            PeerEvent::Unchoked
        })
    }

    fn peer_interest(&mut self, interested: bool) -> Inbound {
        if self.peer_interested == interested {
            return Inbound::Nothing;
        }
        self.peer_interested = interested;
        Inbound::Interest(interested)
    }

    fn check_piece(&self, message: &'static str, piece: u32) -> Result<(), Violation> {
        let count = self.geo.piece_count();
        if piece < count {
            Ok(())
        } else {
            Err(Violation::PieceOutOfRange {
                message,
                piece,
                count,
            })
        }
    }

    fn check_bitfield(&self, bits: &[u8]) -> Result<(), Violation> {
        let count = self.geo.piece_count() as usize;
        let expected = count.div_ceil(8);
        if bits.len() != expected {
            return Err(Violation::BitfieldLength {
                len: bits.len(),
                expected,
            });
        }
        let spare = expected * 8 - count;
        let mask = ((1u16 << spare) - 1) as u8;
        match bits.last() {
            Some(last) if last & mask != 0 => Err(Violation::BitfieldSpareBits),
            _ => Ok(()),
        }
    }

    fn on_request(
        &mut self,
        block: BlockRef,
        now: Instant,
        we_have: impl Fn(u32) -> bool,
    ) -> Result<Inbound, Violation> {
        if block.length > BLOCK_LEN {
            return Err(Violation::OversizedRequest {
                length: block.length,
            });
        }
        self.check_piece("request", block.piece)?;
        let fast = self.fast;
        let refuse = move |reason| Inbound::Refused {
            block,
            reason,
            send_reject: fast,
        };
        if !self.is_block(&block) {
            self.strike_bad_request()?;
            return Ok(refuse(RefuseReason::NotABlock));
        }
        if !we_have(block.piece) {
            self.strike_bad_request()?;
            return Ok(refuse(RefuseReason::DontHave));
        }
        if self.am_choking && !self.our_allowed_fast.contains(&block.piece) {
            if now.saturating_duration_since(self.choked_at) >= self.cfg.choke_grace {
                if self.requests_while_choked >= self.cfg.max_requests_while_choked {
                    return Err(Violation::RequestsWhileChoked {
                        count: self.requests_while_choked + 1,
                    });
                }
                self.requests_while_choked += 1;
            }
            return Ok(refuse(RefuseReason::Choked));
        }
        if self.uploads.contains(&block) {
            return Ok(Inbound::Nothing);
        }
        if self.uploads.len() >= self.cfg.max_queued_uploads {
            return Err(Violation::RequestFlood {
                queued: self.uploads.len(),
            });
        }
        self.uploads.push_back(block);
        Ok(Inbound::UploadQueued(block))
    }

    /// A request we could serve: 1..=16 KiB from a block boundary, inside its piece.
    fn is_block(&self, block: &BlockRef) -> bool {
        block.piece < self.geo.piece_count()
            && block.length > 0
            && block.length <= BLOCK_LEN
            && block.begin.is_multiple_of(BLOCK_LEN)
            && u64::from(block.begin) + u64::from(block.length)
                <= u64::from(self.geo.piece_size(block.piece))
    }

    fn strike_bad_request(&mut self) -> Result<(), Violation> {
        if self.bad_requests >= self.cfg.max_bad_requests {
            return Err(Violation::BadRequests {
                count: self.bad_requests + 1,
            });
        }
        self.bad_requests += 1;
        Ok(())
    }

    fn strike_unrequested(&mut self) -> Result<(), Violation> {
        if self.unrequested >= self.cfg.max_unrequested {
            return Err(Violation::Unrequested {
                count: self.unrequested + 1,
            });
        }
        self.unrequested += 1;
        Ok(())
    }

    // ---------------------------------------------------------------- invariants

    /// Checks every invariant of the module docs.
    ///
    /// # Panics
    /// When one does not hold: a bug in this module. Meant for tests and debug builds.
    pub fn check_invariants(&self) {
        assert!(
            self.uploads.len() <= self.cfg.max_queued_uploads,
            "upload queue {} over its bound {}",
            self.uploads.len(),
            self.cfg.max_queued_uploads
        );
        for (i, block) in self.uploads.iter().enumerate() {
            assert!(
                self.is_block(block),
                "queued request {block:?} is not a block"
            );
            assert!(
                !self.uploads.iter().skip(i + 1).any(|b| b == block),
                "queued twice: {block:?}"
            );
            if self.am_choking {
                assert!(
                    self.our_allowed_fast.contains(&block.piece),
                    "{block:?} queued while choked and not allowed fast"
                );
            }
        }
        for set in [&self.peer_allowed_fast, &self.our_allowed_fast] {
            if !self.fast {
                assert!(set.is_empty(), "allowed fast without Fast: {set:?}");
            }
            assert!(
                set.len() <= self.cfg.max_allowed_fast,
                "allowed-fast set size"
            );
            for (i, piece) in set.iter().enumerate() {
                assert!(
                    *piece < self.geo.piece_count(),
                    "allowed fast {piece} range"
                );
                assert!(!set[i + 1..].contains(piece), "allowed fast {piece} twice");
            }
        }
        assert!(
            self.bad_requests <= self.cfg.max_bad_requests,
            "bad requests"
        );
        assert!(self.unrequested <= self.cfg.max_unrequested, "unrequested");
        assert!(
            self.requests_while_choked <= self.cfg.max_requests_while_choked,
            "requests while choked"
        );
        if !self.am_choking {
            assert_eq!(self.requests_while_choked, 0, "choked count while unchoked");
        }
    }
}
