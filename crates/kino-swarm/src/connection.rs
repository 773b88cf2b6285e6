//! One tokio task per peer connection: connect (or accept), handshake, then pump bytes
//! between the socket and the torrent's task.
//!
//! # What the task does
//! - **Connect** (outgoing): waits for one of the session's half-open permits, connects
//!   within [`crate::SessionConfig::connect_timeout`], sends its handshake first.
//!   **Accept** (incoming): reads the peer's handshake first and answers only once its
//!   infohash names a torrent of the session and that torrent accepted the peer, so a
//!   refused peer sees no handshake (and retries later) rather than a connection that
//!   closes right after it. Either way the peer's handshake must arrive within
//!   [`crate::SessionConfig::handshake_timeout`]; a peer with our own peer id (we dialled
//!   ourselves) is dropped; the torrent may refuse the peer (not live, full, banned,
//!   already connected to that peer id).
//! - **Our reserved bits**: Fast (BEP 6) on; the extension protocol (BEP 10) **off** in this
//!   phase, since extended handshakes are not decoded yet (no bencode here): a peer that
//!   sends an extended message anyway breaks the protocol, as BEP 10 says. DHT off.
//! - **In**: bytes go through a [`Decoder`] (size limits before buffering) and each message
//!   through the connection's [`PeerProtocol`]; scheduler events (have, bitfield, choke,
//!   blocks, rejects) and interest go to the torrent task over its bounded event channel
//!   (the connection waits when it is full: TCP pushes back on the peer).
//! - **Out**: the torrent's messages (requests, cancels, interest, choke, have) arrive on a
//!   bounded channel and are encoded into one buffer that is written as the socket takes it:
//!   many messages per write. Uploads are served from the peer's request queue (only
//!   verified pieces are queued), one block at a time, when the session's
//!   [`crate::UploadBudget`] allows and the write buffer is low; the storage read runs on the
//!   blocking pool.
//! - **Timers**: a keep-alive after 60 s with nothing sent; the peer is closed after 180 s
//!   of silence ([`crate::PeerConfig`]).
//! - **Closing**: a protocol violation, a wire error, an I/O error, end of stream or a peer
//!   that does not read what we send closes the connection; the reason is logged (at info
//!   level without the address for a violation, at debug level with it) and sent to the
//!   torrent task. The torrent closes a connection by cancelling its token.
//!
//! # Invariants
//! - Memory per connection is bounded: the decoder holds at most one partial message, the
//!   read buffer [`READ_BUF`] bytes, the write buffer stops taking uploads at
//!   [`OUT_HIGH_WATER`] and the connection is closed past [`OUT_LIMIT`] (only small
//!   messages can push it past the high water mark), at most one upload read is in flight,
//!   and the peer's request queue is bounded by [`crate::PeerConfig::max_queued_uploads`].
//! - Nothing is sent before the handshakes, and the opening message (bitfield, have all or
//!   have none) is the first message after them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::peer::{Inbound, PeerProtocol, Violation};
use crate::scheduler::{PeerKey, Receipt};
use crate::session::SessionCtx;
use crate::storage::StorageError;
use crate::torrent::{Command, FromPeer, PeerMsg, Refusal, Registration, Route, ToPeer};
use crate::wire::{BlockRef, Decoder, Handshake, Message, Reserved, WireError};

/// Bytes read from the socket at once.
pub const READ_BUF: usize = 64 * 1024;

/// No upload is started while this much is waiting to be written.
pub const OUT_HIGH_WATER: usize = 256 * 1024;

/// A peer that lets this much pile up unwritten (it does not read) is closed.
pub const OUT_LIMIT: usize = 4 * 1024 * 1024;

/// Messages taken from the torrent per wake-up before the socket is served again.
const COMMAND_BATCH: usize = 256;

/// The reserved bits we announce: Fast on, extension protocol and DHT off (see the module
/// docs).
pub fn our_reserved() -> Reserved {
    Reserved::NONE.with_fast(true)
}

/// Why a connection ended.
#[derive(Debug, Error)]
pub(crate) enum CloseReason {
    #[error("cancelled")]
    Cancelled,
    #[error("the torrent is gone")]
    TorrentGone,
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("handshake for a torrent we do not have")]
    UnknownTorrent,
    #[error("connected to ourselves")]
    OwnPeerId,
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("protocol violation: {0}")]
    Violation(#[from] Violation),
    #[error("wire error: {0}")]
    Wire(#[from] WireError),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("the peer closed the connection")]
    Eof,
    #[error("the peer does not read what we send")]
    NotReading,
}

/// Starts an outgoing connection to `addr` for the torrent behind `route`.
pub(crate) fn spawn_outgoing(
    ctx: &Arc<SessionCtx>,
    route: Route,
    addr: SocketAddr,
    token: CancellationToken,
) {
    let span = tracing::debug_span!("peer", %addr, dir = "out");
    let task_ctx = ctx.clone();
    ctx.tasks.spawn("connection", span, token, move |token| {
        outgoing(task_ctx, route, addr, token)
    });
}

/// Starts the handshake of an accepted connection; `permit` is its half-open slot.
pub(crate) fn spawn_incoming(
    ctx: &Arc<SessionCtx>,
    stream: TcpStream,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    token: CancellationToken,
) {
    let span = tracing::debug_span!("peer", %addr, dir = "in");
    let task_ctx = ctx.clone();
    ctx.tasks.spawn("connection", span, token, move |token| {
        incoming(task_ctx, stream, addr, permit, token)
    });
}

async fn outgoing(ctx: Arc<SessionCtx>, route: Route, addr: SocketAddr, token: CancellationToken) {
    let opened = tokio::select! {
        _ = token.cancelled() => Err(CloseReason::Cancelled),
        opened = open_outgoing(&ctx, &route, addr) => opened,
    };
    let (stream, decoder, theirs) = match opened {
        Ok(opened) => opened,
        Err(reason) => {
            debug!(%reason, "outgoing connection failed");
            if !token.is_cancelled() {
                let _ = route.cmd.send(Command::ConnectEnded(addr)).await;
            }
            return;
        }
    };
    let reason = run(&ctx, route, stream, addr, decoder, theirs, true, token).await;
    debug!(%reason, "connection closed");
}

/// Connect (holding a half-open permit) and handshake.
async fn open_outgoing(
    ctx: &SessionCtx,
    route: &Route,
    addr: SocketAddr,
) -> Result<(TcpStream, Decoder, Handshake), CloseReason> {
    let _permit = ctx
        .half_open
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| CloseReason::Cancelled)?;
    let mut stream = tokio::time::timeout(ctx.cfg.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| CloseReason::ConnectTimeout)??;
    let ours = ctx.handshake(route.shared.info_hash);
    let exchange = async {
        stream.write_all(&ours.to_bytes()).await?;
        read_handshake(&mut stream).await
    };
    let (decoder, theirs) = tokio::time::timeout(ctx.cfg.handshake_timeout, exchange)
        .await
        .map_err(|_| CloseReason::HandshakeTimeout)??;
    if theirs.info_hash != route.shared.info_hash {
        return Err(CloseReason::UnknownTorrent);
    }
    if theirs.peer_id == ctx.peer_id {
        return Err(CloseReason::OwnPeerId);
    }
    Ok((stream, decoder, theirs))
}

async fn incoming(
    ctx: Arc<SessionCtx>,
    mut stream: TcpStream,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    token: CancellationToken,
) {
    let accepted = tokio::select! {
        _ = token.cancelled() => Err(CloseReason::Cancelled),
        accepted = tokio::time::timeout(ctx.cfg.handshake_timeout, accept(&ctx, &mut stream)) => {
            accepted.unwrap_or(Err(CloseReason::HandshakeTimeout))
        }
    };
    drop(permit);
    let (route, decoder, theirs) = match accepted {
        Ok(accepted) => accepted,
        Err(reason) => {
            debug!(%reason, "incoming connection refused");
            return;
        }
    };
    let reason = run(&ctx, route, stream, addr, decoder, theirs, false, token).await;
    debug!(%reason, "connection closed");
}

/// Reads the peer's handshake and finds its torrent. Ours is sent once the torrent has
/// accepted the peer (see `run`): a peer we refuse sees its handshake unanswered, and
/// dials again later, rather than a connection that closes after the handshakes.
async fn accept(
    ctx: &SessionCtx,
    stream: &mut TcpStream,
) -> Result<(Route, Decoder, Handshake), CloseReason> {
    let (decoder, theirs) = read_handshake(stream).await?;
    let route = ctx
        .route(&theirs.info_hash)
        .ok_or(CloseReason::UnknownTorrent)?;
    if theirs.peer_id == ctx.peer_id {
        return Err(CloseReason::OwnPeerId);
    }
    Ok((route, decoder, theirs))
}

/// Reads until a whole handshake is decoded; bytes after it stay in the decoder.
async fn read_handshake(stream: &mut TcpStream) -> Result<(Decoder, Handshake), CloseReason> {
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(handshake) = decoder.next_handshake()? {
            return Ok((decoder, handshake));
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(CloseReason::Eof);
        }
        decoder.feed(&buf[..n]);
    }
}

/// Registers with the torrent (then answers an incoming peer's handshake) and runs the
/// connection until it ends.
#[allow(clippy::too_many_arguments)]
async fn run(
    ctx: &Arc<SessionCtx>,
    route: Route,
    mut stream: TcpStream,
    addr: SocketAddr,
    decoder: Decoder,
    theirs: Handshake,
    outgoing: bool,
    token: CancellationToken,
) -> CloseReason {
    let (to_peer, from_torrent) = mpsc::channel(crate::torrent::TO_PEER_CAPACITY);
    let (reply, answer) = oneshot::channel();
    let registration = Registration {
        addr,
        peer_id: theirs.peer_id,
        outgoing,
        to_peer,
        token: token.clone(),
    };
    let registered = async {
        route
            .cmd
            .send(Command::Register {
                registration,
                reply,
            })
            .await
            .map_err(|_| CloseReason::TorrentGone)?;
        answer
            .await
            .map_err(|_| CloseReason::TorrentGone)?
            .map_err(CloseReason::Refused)
    };
    let key = tokio::select! {
        _ = token.cancelled() => return CloseReason::Cancelled,
        registered = registered => match registered {
            Ok(key) => key,
            Err(reason) => return reason,
        },
    };
    let _ = stream.set_nodelay(true);
    let now = Instant::now();
    let proto = PeerProtocol::new(
        route.shared.geo,
        ctx.cfg.peer.clone(),
        our_reserved(),
        theirs.reserved,
        now,
    );
    let mut conn = Conn {
        ctx: ctx.clone(),
        route,
        key,
        proto,
        decoder,
        out: BytesMut::with_capacity(READ_BUF),
        upload_wait: None,
        upload_read: None,
        unreported_upload: 0,
    };
    let answered = if outgoing {
        Ok(())
    } else {
        let ours = conn.ctx.handshake(conn.route.shared.info_hash).to_bytes();
        tokio::select! {
            _ = token.cancelled() => Err(CloseReason::Cancelled),
            written = stream.write_all(&ours) => written.map_err(CloseReason::Io),
        }
    };
    let reason = match answered {
        Ok(()) => conn.pump(stream, from_torrent, &token).await,
        Err(reason) => reason,
    };
    if !matches!(reason, CloseReason::Cancelled | CloseReason::TorrentGone) {
        let closed = PeerMsg {
            key,
            what: FromPeer::Closed(reason.to_string()),
        };
        tokio::select! {
            _ = token.cancelled() => {}
            _ = conn.route.events.send(closed) => {}
        }
    }
    reason
}

/// A block being read from the storage for an upload.
type UploadRead = JoinHandle<Result<Vec<u8>, StorageError>>;

/// A registered connection's state.
struct Conn {
    ctx: Arc<SessionCtx>,
    route: Route,
    key: PeerKey,
    proto: PeerProtocol,
    decoder: Decoder,
    /// Encoded messages not yet written.
    out: BytesMut,
    /// An upload waiting for the budget: when to ask again, and the block.
    upload_wait: Option<(tokio::time::Instant, BlockRef)>,
    /// An upload being read from the storage.
    upload_read: Option<(BlockRef, UploadRead)>,
    /// Bytes uploaded not yet reported to the torrent (its channel was full).
    unreported_upload: u64,
}

impl Conn {
    /// Runs the connection until it ends; a violation is counted and logged before the
    /// socket closes.
    async fn pump(
        &mut self,
        stream: TcpStream,
        from_torrent: mpsc::Receiver<ToPeer>,
        token: &CancellationToken,
    ) -> CloseReason {
        let (mut rd, mut wr) = stream.into_split();
        let reason = self
            .pump_halves(&mut rd, &mut wr, from_torrent, token)
            .await;
        if let CloseReason::Violation(violation) = &reason {
            self.ctx.count_violation();
            info!(%violation, "closed a peer for a protocol violation");
        }
        reason
    }

    async fn pump_halves(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        mut from_torrent: mpsc::Receiver<ToPeer>,
        token: &CancellationToken,
    ) -> CloseReason {
        let bitfield = self.route.shared.verified.to_bitfield();
        if let Some(opening) = self.proto.opening_message(&bitfield) {
            self.push(&opening);
        }
        // Messages that came with the handshake.
        if let Err(reason) = self.decode().await {
            return reason;
        }
        let mut read_buf = BytesMut::with_capacity(READ_BUF);
        loop {
            let now = Instant::now();
            self.start_upload(now);
            if let Err(reason) = self.report_upload() {
                return reason;
            }
            if self.out.len() > OUT_LIMIT {
                return CloseReason::NotReading;
            }
            read_buf.reserve(READ_BUF);
            let wake = tokio::time::Instant::from_std(self.proto.next_wakeup());
            let budget_wait = self.upload_wait.map(|(at, _)| at);
            tokio::select! {
                _ = token.cancelled() => return CloseReason::Cancelled,
                read = rd.read_buf(&mut read_buf) => {
                    match read {
                        Ok(0) => return CloseReason::Eof,
                        Ok(_) => {}
                        Err(error) => return CloseReason::Io(error),
                    }
                    self.decoder.feed(&read_buf);
                    read_buf.clear();
                    if let Err(reason) = self.decode().await {
                        return reason;
                    }
                }
                written = wr.write_buf(&mut self.out), if !self.out.is_empty() => {
                    if let Err(error) = written {
                        return CloseReason::Io(error);
                    }
                    self.proto.sent(Instant::now());
                }
                command = from_torrent.recv() => {
                    let Some(command) = command else {
                        return CloseReason::TorrentGone;
                    };
                    if let Err(reason) = self.apply(command) {
                        return reason;
                    }
                    for _ in 1..COMMAND_BATCH {
                        match from_torrent.try_recv() {
                            Ok(command) => {
                                if let Err(reason) = self.apply(command) {
                                    return reason;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until_some(budget_wait) => {
                    if let Some((_, block)) = self.upload_wait.take() {
                        self.try_upload(block, Instant::now());
                    }
                }
                read = join_some(&mut self.upload_read) => self.finish_upload(read),
                _ = tokio::time::sleep_until(wake) => {
                    match self.proto.poll(Instant::now()) {
                        Ok(Some(keep_alive)) => self.push(&keep_alive),
                        Ok(None) => {}
                        Err(violation) => return CloseReason::Violation(violation),
                    }
                }
            }
        }
    }

    /// Handles every whole message the decoder has.
    async fn decode(&mut self) -> Result<(), CloseReason> {
        while let Some(message) = self.decoder.next_message()? {
            tracing::trace!(message = message.name(), "from the peer");
            let shared = &self.route.shared;
            let inbound = self.proto.on_message(message, Instant::now(), |piece| {
                shared.verified.contains(piece)
            })?;
            let what = match inbound {
                Inbound::Event(event) => FromPeer::Event(event),
                Inbound::Interest(interested) => FromPeer::Interest(interested),
                Inbound::Refused {
                    block,
                    send_reject: true,
                    ..
                }
                | Inbound::UploadCancelled {
                    block,
                    send_reject: true,
                } => {
                    self.push(&Message::RejectRequest(block));
                    continue;
                }
                Inbound::Nothing
                | Inbound::UploadQueued(_)
                | Inbound::Refused { .. }
                | Inbound::UploadCancelled { .. }
                | Inbound::Extended { .. }
                | Inbound::DhtPort(_) => continue,
            };
            self.route
                .events
                .send(PeerMsg {
                    key: self.key,
                    what,
                })
                .await
                .map_err(|_| CloseReason::TorrentGone)?;
        }
        Ok(())
    }

    /// Applies one message from the torrent.
    fn apply(&mut self, command: ToPeer) -> Result<(), CloseReason> {
        tracing::trace!(?command, "from the torrent");
        match command {
            ToPeer::Request(block) => self.push(&Message::Request(block)),
            ToPeer::Cancel(block) => self.push(&Message::Cancel(block)),
            ToPeer::Have(piece) => self.push(&Message::Have { piece }),
            ToPeer::Interested(interested) => {
                if let Some(message) = self.proto.set_interested(interested) {
                    self.push(&message);
                }
            }
            ToPeer::Choke(true) => {
                for message in self.proto.choke(Instant::now()) {
                    self.push(&message);
                }
            }
            ToPeer::Choke(false) => {
                if let Some(message) = self.proto.unchoke() {
                    self.push(&message);
                }
            }
            ToPeer::UnrequestedBlock => self.proto.block_outcome(Receipt::Unrequested)?,
            ToPeer::UnrequestedReject => self.proto.reject_outcome(false)?,
        }
        Ok(())
    }

    fn push(&mut self, message: &Message) {
        // Only a payload over 4 GiB fails to encode; we never make one.
        if let Err(error) = message.encode(&mut self.out) {
            debug!(%error, "message not encoded");
        }
    }

    /// Takes the next queued request if nothing is being uploaded and the write buffer is low.
    fn start_upload(&mut self, now: Instant) {
        if self.upload_wait.is_some()
            || self.upload_read.is_some()
            || self.out.len() >= OUT_HIGH_WATER
        {
            return;
        }
        if let Some(block) = self.proto.next_upload() {
            self.try_upload(block, now);
        }
    }

    /// Asks the budget for `block`: reads it now, or waits.
    fn try_upload(&mut self, block: BlockRef, now: Instant) {
        let wait = self.ctx.take_upload_budget(block.length, now);
        if let Some(wait) = wait {
            self.upload_wait = Some((tokio::time::Instant::from_std(now + wait), block));
            return;
        }
        let shared = &self.route.shared;
        let storage = shared.storage.clone();
        let offset = shared.geo.piece_start(block.piece) + u64::from(block.begin);
        let len = block.length as usize;
        let read = shared.tasks.spawn_blocking("upload read", move || {
            let mut data = vec![0u8; len];
            storage.read_at(offset, &mut data).map(|()| data)
        });
        self.upload_read = Some((block, read));
    }

    fn finish_upload(&mut self, read: (BlockRef, Result<Vec<u8>, String>)) {
        let (block, data) = read;
        match data {
            Ok(data) => {
                self.unreported_upload += data.len() as u64;
                self.push(&Message::Piece {
                    piece: block.piece,
                    begin: block.begin,
                    data: Bytes::from(data),
                });
            }
            Err(error) => {
                debug!(%error, piece = block.piece, "cannot read a block to upload");
                if self.proto.fast() {
                    self.push(&Message::RejectRequest(block));
                }
            }
        }
    }

    /// Tells the torrent what was uploaded, without waiting (kept for later if its channel
    /// is full).
    fn report_upload(&mut self) -> Result<(), CloseReason> {
        if self.unreported_upload == 0 {
            return Ok(());
        }
        let message = PeerMsg {
            key: self.key,
            what: FromPeer::Uploaded(self.unreported_upload),
        };
        match self.route.events.try_send(message) {
            Ok(()) => {
                self.unreported_upload = 0;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(CloseReason::TorrentGone),
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Awaits the upload read in progress (forever without one) and clears it.
async fn join_some(
    read: &mut Option<(BlockRef, UploadRead)>,
) -> (BlockRef, Result<Vec<u8>, String>) {
    let Some((block, handle)) = read.as_mut() else {
        return std::future::pending().await;
    };
    let block = *block;
    let result = match handle.await {
        Ok(Ok(data)) => Ok(data),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    *read = None;
    (block, result)
}
