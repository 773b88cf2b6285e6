//! The task of one torrent: the only owner of its scheduler, choker, piece buffers and
//! peer table. See the parent module for the lifecycle; the invariants of this state are
//! listed on [`TorrentTask`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::assembly::{Assembly, PieceBuf, Suspects, block_digests};
use super::dialer::Dialer;
use super::verified::VerifiedSet;
use super::{
    COMMAND_CAPACITY, Command, EVENT_CAPACITY, FailReason, FromPeer, PeerMsg, Refusal,
    Registration, Role, Route, Shared, StreamSlot, ToPeer, Torrent, TorrentSpec, TorrentState,
    TorrentStatus,
};
use crate::choker::Choker;
use crate::peer::{PeerEvent, Strike};
use crate::scheduler::{Action, PeerKey, Receipt, Scheduler, StreamId};
use crate::session::SessionCtx;
use crate::storage::{Storage, StorageError};
use crate::wire::BlockRef;

/// Events handled per wake-up before the task polls the scheduler again.
const EVENT_BATCH: usize = 64;

/// Addresses of peers (gone ones included) remembered to blame them for a hash failure.
const MAX_REMEMBERED_SENDERS: usize = 4096;

/// The longest the task sleeps with nothing scheduled.
const IDLE_WAKEUP: Duration = Duration::from_secs(60);

/// Starts the task of a torrent; returns its handle and the task's join handle.
pub(crate) fn spawn_torrent(
    ctx: &Arc<SessionCtx>,
    spec: TorrentSpec,
) -> (Torrent, Route, tokio::task::JoinHandle<()>) {
    let geo = spec.geometry;
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
    let status = TorrentStatus {
        state: TorrentState::Checking {
            checked: 0,
            total: geo.piece_count(),
        },
        pieces: geo.piece_count(),
        verified: 0,
        peers: 0,
        unchoking_us: 0,
        downloaded: 0,
        uploaded: 0,
        hash_failures: 0,
        buffered: 0,
    };
    let (status, _) = watch::channel(status);
    let shared = Arc::new(Shared {
        info_hash: spec.info_hash,
        geo,
        storage: spec.storage,
        role: spec.role,
        verified: VerifiedSet::new(geo.piece_count()),
        status,
        streams_changed: tokio::sync::Notify::new(),
        tasks: ctx.tasks.clone(),
    });
    let route = Route {
        cmd: cmd_tx,
        events: events_tx,
        shared: shared.clone(),
    };
    let now = Instant::now();
    let mut scheduler_cfg = spec.options.scheduler.clone();
    if scheduler_cfg.seed == 0 {
        scheduler_cfg.seed = ctx.random_seed;
    }
    let mut choker_cfg = ctx.cfg.choker.clone();
    if choker_cfg.seed == 0 {
        choker_cfg.seed = ctx.random_seed;
    }
    let task = TorrentTask {
        ctx: ctx.clone(),
        route: route.clone(),
        hashes: spec.piece_hashes,
        max_buffered: spec.options.max_buffered_bytes,
        hash_jobs: spec.options.hash_jobs.max(1),
        scheduler: Scheduler::new(geo, scheduler_cfg),
        choker: Choker::new(choker_cfg, now),
        state: TorrentState::Checking {
            checked: 0,
            total: geo.piece_count(),
        },
        pause_after_check: false,
        next_check: 0,
        peers: BTreeMap::new(),
        senders: BTreeMap::new(),
        dialer: Dialer::default(),
        streams: Vec::new(),
        assembly: Assembly::new(geo),
        hash_queue: VecDeque::new(),
        hashing_bytes: 0,
        jobs: JoinSet::new(),
        job_pieces: HashMap::new(),
        suspects: Suspects::default(),
        sources: vec![0; geo.piece_count() as usize],
        to_close: Vec::new(),
        downloaded: 0,
        uploaded: 0,
        hash_failures: 0,
        epoch: 0,
        cmd_rx,
        events_rx,
        token: CancellationToken::new(),
    };
    let span = tracing::debug_span!("torrent", info_hash = %short_hex(&spec.info_hash));
    let handle = ctx
        .tasks
        .spawn("torrent", span, ctx.torrents_token.child_token(), |token| {
            task.run(token)
        });
    (Torrent::new(route.clone()), route, handle)
}

/// The first 8 hex digits of an infohash, for logs.
pub(crate) fn short_hex(bytes: &[u8; 20]) -> String {
    bytes[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// A connected peer, as the task knows it.
struct PeerEntry {
    addr: SocketAddr,
    peer_id: [u8; 20],
    to_peer: mpsc::Sender<ToPeer>,
    token: CancellationToken,
    unchoking_us: bool,
}

/// A registered reader.
struct StreamEntry {
    id: StreamId,
    slot: std::sync::Weak<StreamSlot>,
    playhead: u64,
    bitrate: u64,
    seeks: u64,
}

/// What a blocking job did.
enum Job {
    /// A piece read at start: whether its bytes match its hash.
    Checked { piece: u32, ok: bool },
    /// A downloaded piece hashed, and written if it matched.
    Stored {
        piece: u32,
        senders: Vec<Option<PeerKey>>,
        len: usize,
        outcome: Stored,
    },
}

enum Stored {
    /// In the storage; with the blocks' digests when a failure of it is on record.
    Verified { digests: Option<Vec<[u8; 20]>> },
    /// Its hash does not match: the digests of its blocks.
    Mismatch { digests: Vec<[u8; 20]> },
    /// It matched but the write failed.
    WriteFailed(StorageError),
}

/// What a running job is about, to recover if it panics.
#[derive(Clone, Copy)]
enum JobKind {
    Check(u32),
    /// `epoch`: the task's resume count when the job started.
    Store {
        piece: u32,
        len: usize,
        epoch: u64,
    },
}

/// The state of one torrent, owned by its task.
///
/// # Invariants
/// - `peers`, the scheduler's peers and the choker's peers are the same keys (see
///   `register` and `remove_peer`, the only places that change them).
/// - `senders` maps every key in `peers` to its address (and some gone peers').
/// - Every piece in the assembly or in `hash_queue`/a job is not verified; `hashing_bytes`
///   is the bytes of the pieces in `hash_queue` and in store jobs.
/// - `job_pieces` has an entry for every job in `jobs`.
/// - The dialer counts as connecting every outgoing attempt that has not registered or
///   ended (see `torrent/dialer.rs`).
/// - `state` is what `publish` last put in the shared status (plus the counters), and
///   `Live` or `Failed` only after every piece was checked.
struct TorrentTask {
    ctx: Arc<SessionCtx>,
    route: Route,
    hashes: Vec<[u8; 20]>,
    max_buffered: usize,
    hash_jobs: usize,
    scheduler: Scheduler,
    choker: Choker,
    state: TorrentState,
    pause_after_check: bool,
    next_check: u32,
    peers: BTreeMap<PeerKey, PeerEntry>,
    senders: BTreeMap<PeerKey, IpAddr>,
    dialer: Dialer,
    streams: Vec<StreamEntry>,
    assembly: Assembly,
    hash_queue: VecDeque<(u32, PieceBuf)>,
    hashing_bytes: usize,
    jobs: JoinSet<Job>,
    job_pieces: HashMap<tokio::task::Id, JobKind>,
    suspects: Suspects,
    /// Per piece: how many distinct peers sent the blocks that verified it.
    sources: Vec<u8>,
    /// Peers to close after the current step, with the reason.
    to_close: Vec<(PeerKey, String)>,
    downloaded: u64,
    uploaded: u64,
    hash_failures: u32,
    /// Resumes so far: a write that failed in a job started before the last resume does
    /// not fail the torrent again (the space may have been freed since it started).
    epoch: u64,
    cmd_rx: mpsc::Receiver<Command>,
    events_rx: mpsc::Receiver<PeerMsg>,
    /// The task's own token (outgoing connections get children of it).
    token: CancellationToken,
}

/// Marks the torrent stopped however the task ends (a panic included), so no reader waits
/// for a task that is gone.
struct StoppedOnDrop(Arc<Shared>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0
            .status
            .send_modify(|s| s.state = TorrentState::Stopped);
    }
}

impl TorrentTask {
    fn shared(&self) -> &Shared {
        &self.route.shared
    }

    async fn run(mut self, token: CancellationToken) {
        self.token = token;
        let _stopped = StoppedOnDrop(self.route.shared.clone());
        loop {
            let now = Instant::now();
            self.drive(now);
            let wake = tokio::time::Instant::from_std(self.next_wakeup(now));
            tokio::select! {
                _ = self.token.cancelled() => break,
                command = self.cmd_rx.recv() => match command {
                    None | Some(Command::Stop) => break,
                    Some(command) => self.on_command(command),
                },
                Some(message) = self.events_rx.recv() => {
                    self.on_peer(message);
                    for _ in 1..EVENT_BATCH {
                        match self.events_rx.try_recv() {
                            Ok(message) => self.on_peer(message),
                            Err(_) => break,
                        }
                    }
                }
                Some(done) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => {
                    self.on_job(done);
                }
                _ = self.route.shared.streams_changed.notified() => self.sync_streams(),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.shutdown().await;
    }

    /// Ends the torrent: closes its peers, lets its blocking jobs finish, leaves the
    /// session's routing table.
    async fn shutdown(mut self) {
        self.state = TorrentState::Stopped;
        self.publish();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.remove_peer(key, "the torrent stopped");
        }
        self.token.cancel();
        self.ctx.remove_route(&self.route);
        while self.jobs.join_next().await.is_some() {}
        debug!("torrent stopped");
    }

    // ------------------------------------------------------------------ stepping

    /// After every event: requests, chokes, connections, jobs, status.
    fn drive(&mut self, now: Instant) {
        match self.state {
            TorrentState::Checking { .. } => self.start_checks(),
            TorrentState::Live => {
                if self.shared().role == Role::Download {
                    self.request(now);
                }
                for action in self.choker.poll(now) {
                    self.send(action.peer, ToPeer::Choke(action.choke));
                }
                self.dispatch_connects();
            }
            _ => {}
        }
        self.start_stores();
        self.close_marked();
        self.publish();
    }

    fn next_wakeup(&mut self, now: Instant) -> Instant {
        let mut at = now + IDLE_WAKEUP;
        if self.state == TorrentState::Live {
            if self.shared().role == Role::Download
                && let Some(next) = self.scheduler.next_wakeup(now)
            {
                at = at.min(next);
            }
            if let Some(next) = self.choker.next_wakeup() {
                at = at.min(next);
            }
            if let Some(next) = self.dialer.next_retry() {
                at = at.min(next);
            }
        }
        at.max(now)
    }

    /// Polls the scheduler and sends its actions, holding new pieces while too many bytes
    /// are buffered.
    fn request(&mut self, now: Instant) {
        let buffered = self.assembly.bytes() + self.hashing_bytes;
        let hold = buffered >= self.max_buffered;
        self.scheduler.set_new_pieces(!hold);
        let actions = self.scheduler.poll_actions(now);
        if !actions.is_empty() {
            tracing::trace!(actions = actions.len(), "scheduler actions");
        }
        for action in actions {
            match action {
                Action::Request { peer, block } => self.send(peer, ToPeer::Request(block)),
                Action::Cancel { peer, block } => self.send(peer, ToPeer::Cancel(block)),
                Action::Interested { peer } => self.send(peer, ToPeer::Interested(true)),
                Action::NotInterested { peer } => self.send(peer, ToPeer::Interested(false)),
            }
        }
        // The partial pieces alone fill the bound and no request can complete one (their
        // peers left or choke us, or no stream needs them): drop the least complete (its
        // blocks are wanted again; nobody is blamed), so the download goes on. Pieces
        // waiting for their hash free their bytes by themselves.
        if hold && self.assembly.bytes() >= self.max_buffered {
            let in_flight: u32 = self
                .scheduler
                .peers()
                .filter_map(|key| self.scheduler.peer_stats(key, now))
                .map(|stats| stats.in_flight)
                .sum();
            if in_flight == 0
                && let Some(piece) = self.assembly.least_complete()
            {
                self.assembly.take(piece);
                let _ = self.scheduler.piece_failed(piece);
                debug!(piece, "dropped a partial piece: buffers over their bound");
            }
        }
    }

    /// Starts check jobs while checking, a few at a time.
    fn start_checks(&mut self) {
        let count = self.shared().geo.piece_count();
        while self.jobs.len() < self.hash_jobs && self.next_check < count {
            let piece = self.next_check;
            self.next_check += 1;
            let geo = self.shared().geo;
            let storage = self.shared().storage.clone();
            let expected = self.hashes[piece as usize];
            let handle = self.jobs.spawn_blocking(move || {
                let mut data = vec![0u8; geo.piece_size(piece) as usize];
                let ok = storage.read_at(geo.piece_start(piece), &mut data).is_ok()
                    && <[u8; 20]>::from(Sha1::digest(&data)) == expected;
                Job::Checked { piece, ok }
            });
            self.job_pieces.insert(handle.id(), JobKind::Check(piece));
        }
    }

    /// Starts hash-and-write jobs for complete pieces, a few at a time.
    fn start_stores(&mut self) {
        while self.jobs.len() < self.hash_jobs {
            let Some((piece, buf)) = self.hash_queue.pop_front() else {
                return;
            };
            let len = buf.data.len();
            let expected = self.hashes[piece as usize];
            let storage = self.shared().storage.clone();
            let offset = self.shared().geo.piece_start(piece);
            let want_digests = self.suspects.wants_digests(piece);
            let handle = self.jobs.spawn_blocking(move || {
                let outcome = hash_and_store(&buf.data, expected, &*storage, offset, want_digests);
                Job::Stored {
                    piece,
                    senders: buf.senders,
                    len,
                    outcome,
                }
            });
            self.job_pieces.insert(
                handle.id(),
                JobKind::Store {
                    piece,
                    len,
                    epoch: self.epoch,
                },
            );
        }
    }

    /// Connects to candidate addresses while there is room.
    fn dispatch_connects(&mut self) {
        let limit = self.ctx.cfg.max_peers_per_torrent;
        let now = Instant::now();
        while self.peers.len() + self.dialer.connecting() < limit {
            let (peers, ctx) = (&self.peers, &self.ctx);
            let skip = |addr: SocketAddr| {
                peers.values().any(|p| p.addr == addr) || ctx.is_banned(addr.ip())
            };
            let Some(addr) = self.dialer.next(now, skip) else {
                return;
            };
            crate::connection::spawn_outgoing(
                &self.ctx,
                self.route.clone(),
                addr,
                self.token.child_token(),
            );
        }
    }

    /// Publishes the status if it changed.
    fn publish(&mut self) {
        let status = TorrentStatus {
            state: self.state.clone(),
            pieces: self.shared().geo.piece_count(),
            verified: self.scheduler.verified_pieces(),
            peers: self.peers.len(),
            unchoking_us: self.peers.values().filter(|p| p.unchoking_us).count(),
            downloaded: self.downloaded,
            uploaded: self.uploaded,
            hash_failures: self.hash_failures,
            buffered: self.assembly.bytes() + self.hashing_bytes,
        };
        self.shared().status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }

    // ------------------------------------------------------------------ commands

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::AddStream { range, slot, reply } => {
                let result = self
                    .scheduler
                    .add_stream(range.clone(), range.start, None, now);
                if let Ok(id) = result {
                    self.streams.push(StreamEntry {
                        id,
                        slot,
                        playhead: range.start,
                        bitrate: 0,
                        seeks: 0,
                    });
                }
                let _ = reply.send(result);
                // The reader may have moved before we registered it.
                self.sync_streams();
            }
            Command::AddPeers(addrs) => {
                for addr in addrs {
                    self.dialer.add(addr);
                }
            }
            Command::Register {
                registration,
                reply,
            } => {
                let result = self.register(registration, now);
                if reply.send(result).is_err()
                    && let Ok(key) = result
                {
                    self.remove_peer(key, "its connection ended while registering");
                }
            }
            Command::ConnectEnded(addr) => self.dialer.failed(addr, now),
            Command::Pause(done) => {
                match self.state {
                    TorrentState::Live => {
                        self.state = TorrentState::Paused;
                        self.dialer.hold();
                        self.close_all("the torrent is paused");
                    }
                    TorrentState::Checking { .. } => self.pause_after_check = true,
                    _ => {}
                }
                self.publish();
                let _ = done.send(());
            }
            Command::Resume(done) => {
                self.resume();
                self.publish();
                let _ = done.send(());
            }
            Command::Stop => {}
            Command::PieceSources { piece, reply } => {
                let sources = self
                    .scheduler
                    .has_piece(piece)
                    .then(|| self.sources.get(piece as usize).copied())
                    .flatten();
                let _ = reply.send(sources);
            }
        }
    }

    fn resume(&mut self) {
        match self.state {
            TorrentState::Paused | TorrentState::Failed(_) => {
                self.state = TorrentState::Live;
                self.epoch += 1;
                self.dialer.add_all_known();
            }
            TorrentState::Checking { .. } => self.pause_after_check = false,
            _ => {}
        }
    }

    fn register(&mut self, registration: Registration, now: Instant) -> Result<PeerKey, Refusal> {
        let (addr, outgoing) = (registration.addr, registration.outgoing);
        let result = self.admit(registration, now);
        if outgoing {
            match result {
                Ok(_) => self.dialer.connected(addr),
                Err(_) => self.dialer.failed(addr, now),
            }
        }
        result
    }

    fn admit(&mut self, registration: Registration, now: Instant) -> Result<PeerKey, Refusal> {
        if self.state != TorrentState::Live {
            return Err(Refusal::NotLive);
        }
        if self.ctx.is_banned(registration.addr.ip()) {
            return Err(Refusal::Banned);
        }
        if self.peers.len() >= self.ctx.cfg.max_peers_per_torrent {
            return Err(Refusal::Full);
        }
        if self
            .peers
            .values()
            .any(|p| p.peer_id == registration.peer_id)
        {
            return Err(Refusal::Duplicate);
        }
        let key = self.scheduler.add_peer(now);
        self.choker.add_peer(key, now);
        self.senders.insert(key, registration.addr.ip());
        while self.senders.len() > MAX_REMEMBERED_SENDERS {
            let oldest_gone = self
                .senders
                .keys()
                .copied()
                .find(|k| !self.peers.contains_key(k));
            match oldest_gone {
                Some(gone) => self.senders.remove(&gone),
                None => break,
            };
        }
        self.peers.insert(
            key,
            PeerEntry {
                addr: registration.addr,
                peer_id: registration.peer_id,
                to_peer: registration.to_peer,
                token: registration.token,
                unchoking_us: false,
            },
        );
        debug!(%key, addr = %registration.addr, "peer registered");
        Ok(key)
    }

    // ------------------------------------------------------------------ peers

    fn on_peer(&mut self, message: PeerMsg) {
        let PeerMsg { key, what } = message;
        if !self.peers.contains_key(&key) {
            return; // a gone peer's last words
        }
        let now = Instant::now();
        match what {
            FromPeer::Event(event) => self.on_event(key, event, now),
            FromPeer::Interest(interested) => self.choker.set_interested(key, interested),
            FromPeer::Uploaded(bytes) => {
                self.choker.sent(key, bytes);
                self.uploaded += bytes;
            }
            FromPeer::Closed(reason) => self.remove_peer(key, &reason),
        }
    }

    fn on_event(&mut self, key: PeerKey, event: PeerEvent, now: Instant) {
        let result = match event {
            PeerEvent::Have(piece) => self.scheduler.peer_have(key, piece),
            PeerEvent::Bitfield(bits) => self.scheduler.peer_bitfield(key, &bits),
            PeerEvent::HaveAll => self.scheduler.peer_have_all(key),
            PeerEvent::HaveNone => self.scheduler.peer_have_none(key),
            PeerEvent::Choked => {
                self.set_unchoking_us(key, false);
                self.scheduler.peer_choked(key, now)
            }
            PeerEvent::Unchoked => {
                self.set_unchoking_us(key, true);
                self.scheduler.peer_unchoked(key, now)
            }
            PeerEvent::Block { block, data } => self.on_block(key, block, data, now),
            PeerEvent::Rejected(block) => {
                self.scheduler
                    .block_rejected(key, block, now)
                    .map(|requested| {
                        if !requested {
                            self.send(key, ToPeer::UnrequestedReject);
                        }
                    })
            }
            PeerEvent::AllowedFast(_) => Ok(()),
        };
        if let Err(error) = result {
            self.to_close.push((key, error.to_string()));
        }
    }

    fn set_unchoking_us(&mut self, key: PeerKey, unchoking: bool) {
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.unchoking_us = unchoking;
        }
    }

    fn on_block(
        &mut self,
        key: PeerKey,
        block: BlockRef,
        data: Bytes,
        now: Instant,
    ) -> Result<(), crate::scheduler::ScheduleError> {
        match self.scheduler.block_received(key, block, now)? {
            Receipt::Wanted { piece_complete } => {
                if self.assembly.put(key, block, &data) {
                    let len = u64::from(block.length);
                    self.downloaded += len;
                    self.choker.received(key, len);
                }
                if piece_complete && let Some(buf) = self.assembly.take(block.piece) {
                    self.hashing_bytes += buf.data.len();
                    self.hash_queue.push_back((block.piece, buf));
                }
            }
            Receipt::Redundant => {}
            Receipt::Unrequested => self.send(key, ToPeer::UnrequestedBlock),
        }
        Ok(())
    }

    /// Queues a message to a peer; a peer whose queue is full (it does not drain its
    /// socket) is closed.
    fn send(&mut self, key: PeerKey, message: ToPeer) {
        if let Some(peer) = self.peers.get(&key)
            && peer.to_peer.try_send(message).is_err()
        {
            self.to_close
                .push((key, "it does not take our messages".to_string()));
        }
    }

    fn close_marked(&mut self) {
        for (key, reason) in std::mem::take(&mut self.to_close) {
            self.remove_peer(key, &reason);
        }
    }

    fn close_all(&mut self, reason: &str) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.remove_peer(key, reason);
        }
    }

    /// The one way a peer leaves: its connection is cancelled, the scheduler and the
    /// choker forget it.
    fn remove_peer(&mut self, key: PeerKey, reason: &str) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        peer.token.cancel();
        let _ = self.scheduler.peer_gone(key, Instant::now());
        self.choker.remove_peer(key);
        debug!(%key, addr = %peer.addr, reason, "peer closed");
    }

    // ------------------------------------------------------------------ streams

    /// Applies the readers' playheads and bitrates; forgets dropped readers.
    fn sync_streams(&mut self) {
        let now = Instant::now();
        let scheduler = &mut self.scheduler;
        self.streams.retain_mut(|stream| {
            let Some(slot) = stream.slot.upgrade() else {
                let _ = scheduler.remove_stream(stream.id);
                return false;
            };
            let seeks = slot.seeks.load(std::sync::atomic::Ordering::Acquire);
            let playhead = slot.playhead.load(std::sync::atomic::Ordering::Acquire);
            if seeks != stream.seeks {
                stream.seeks = seeks;
                stream.playhead = playhead;
                let _ = scheduler.seek(stream.id, playhead, now);
            } else if playhead != stream.playhead {
                stream.playhead = playhead;
                let _ = scheduler.set_playhead(stream.id, playhead, now);
            }
            let bitrate = slot.bitrate.load(std::sync::atomic::Ordering::Relaxed);
            if bitrate != stream.bitrate {
                stream.bitrate = bitrate;
                let _ = scheduler.set_bitrate(stream.id, (bitrate > 0).then_some(bitrate));
            }
            true
        });
    }

    // ------------------------------------------------------------------ jobs

    fn on_job(&mut self, done: Result<(tokio::task::Id, Job), JoinError>) {
        let now = Instant::now();
        let id = match &done {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        let kind = self.job_pieces.remove(&id);
        let job = match done {
            Ok((_, job)) => job,
            Err(error) => {
                // A storage implementation panicked: count the piece as not there.
                warn!(%error, "a storage job failed");
                match kind {
                    Some(JobKind::Check(piece)) => Job::Checked { piece, ok: false },
                    Some(JobKind::Store { piece, len, .. }) => Job::Stored {
                        piece,
                        senders: Vec::new(),
                        len,
                        outcome: Stored::WriteFailed(StorageError::Io {
                            action: "write",
                            offset: self.shared().geo.piece_start(piece),
                            len,
                            source: std::io::Error::other("the storage job panicked"),
                        }),
                    },
                    None => return,
                }
            }
        };
        match job {
            Job::Checked { piece, ok } => self.on_checked(piece, ok, now),
            Job::Stored {
                piece,
                senders,
                len,
                outcome,
            } => {
                self.hashing_bytes -= len;
                let stale = match kind {
                    Some(JobKind::Store { epoch, .. }) => epoch != self.epoch,
                    _ => false,
                };
                self.on_stored(piece, senders, outcome, stale, now);
            }
        }
    }

    fn on_checked(&mut self, piece: u32, ok: bool, now: Instant) {
        if ok {
            self.mark_verified(piece, 0, now);
        }
        let TorrentState::Checking { checked, total } = self.state else {
            return;
        };
        let checked = checked + 1;
        if checked < total {
            self.state = TorrentState::Checking { checked, total };
            return;
        }
        self.state = if self.pause_after_check {
            TorrentState::Paused
        } else {
            TorrentState::Live
        };
        self.choker.set_seeding(self.scheduler.is_complete());
        debug!(
            verified = self.scheduler.verified_pieces(),
            total, "check done"
        );
    }

    fn on_stored(
        &mut self,
        piece: u32,
        senders: Vec<Option<PeerKey>>,
        outcome: Stored,
        stale: bool,
        now: Instant,
    ) {
        match outcome {
            Stored::Verified { digests } => {
                let distinct: BTreeSet<PeerKey> = senders.iter().flatten().copied().collect();
                let count = u8::try_from(distinct.len()).unwrap_or(u8::MAX);
                self.mark_verified(piece, count, now);
                for liar in self.suspects.verified(piece, digests.as_deref()) {
                    self.blame(liar);
                }
            }
            Stored::Mismatch { digests } => {
                self.hash_failures += 1;
                let _ = self.scheduler.piece_failed(piece);
                debug!(piece, "piece failed its hash check");
                for sender in self.suspects.failed(piece, &senders, &digests) {
                    self.blame(sender);
                }
            }
            Stored::WriteFailed(error) => {
                let _ = self.scheduler.piece_failed(piece);
                let reason = if error.is_disk_full() {
                    FailReason::DiskFull
                } else {
                    FailReason::Storage(error.to_string())
                };
                if self.state == TorrentState::Live && !stale {
                    warn!(%error, "cannot store a piece: the torrent stops downloading");
                    self.state = TorrentState::Failed(reason);
                    self.dialer.hold();
                    self.close_all("the torrent's storage failed");
                }
            }
        }
    }

    fn mark_verified(&mut self, piece: u32, sources: u8, now: Instant) {
        if self.scheduler.has_piece(piece) || self.scheduler.piece_verified(piece, now).is_err() {
            return;
        }
        self.shared().verified.insert(piece);
        if let Some(slot) = self.sources.get_mut(piece as usize) {
            *slot = sources;
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.send(key, ToPeer::Have(piece));
        }
        if self.scheduler.is_complete() {
            self.choker.set_seeding(true);
        }
    }

    /// A hash failure is `key`'s fault: a strike for its address; at the second, the
    /// address is banned and its connections closed.
    fn blame(&mut self, key: PeerKey) {
        let Some(ip) = self.senders.get(&key).copied() else {
            return;
        };
        let already = self.ctx.is_banned(ip);
        if self.ctx.hash_failure(ip) != Strike::Banned {
            return;
        }
        if !already {
            info!("a peer was banned: two pieces with its blocks failed their hash check");
        }
        let banned: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| self.ctx.is_banned(p.addr.ip()))
            .map(|(k, _)| *k)
            .collect();
        for key in banned {
            self.remove_peer(key, "banned after two hash failures");
        }
    }
}

/// Hashes a complete piece and writes it if it matches (runs on the blocking pool).
fn hash_and_store(
    data: &[u8],
    expected: [u8; 20],
    storage: &dyn Storage,
    offset: u64,
    want_digests: bool,
) -> Stored {
    let digest: [u8; 20] = Sha1::digest(data).into();
    if digest != expected {
        return Stored::Mismatch {
            digests: block_digests(data),
        };
    }
    if let Err(error) = storage.write_at(offset, data) {
        return Stored::WriteFailed(error);
    }
    Stored::Verified {
        digests: want_digests.then(|| block_digests(data)),
    }
}
