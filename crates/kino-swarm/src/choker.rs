//! The upload side: which interested peers we unchoke, and the upload rate cap.
//!
//! A pure state machine like the others: time is passed in, nothing is sent. The caller
//! (the torrent task, `torrent/task.rs`) tells the [`Choker`] about peers
//! ([`Choker::add_peer`], [`Choker::set_interested`], [`Choker::received`],
//! [`Choker::sent`]), calls
//! [`Choker::poll`] after events and at [`Choker::next_wakeup`], and applies each
//! [`ChokeAction`] with [`crate::peer::PeerProtocol::choke`] or
//! [`crate::peer::PeerProtocol::unchoke`]. Before sending a block it asks the engine-wide
//! [`UploadBudget`] how long to wait.
//!
//! # How it chooses (BEP 3, as the mainline client and libtorrent do)
//! - **Every 10 s** ([`ChokerConfig::rechoke_interval`]) the regular slots are chosen again
//!   among the interested peers; between rechokes a free slot (a peer left, lost interest)
//!   is filled at the next poll, and a peer that loses interest is choked at once.
//! - **While downloading: reciprocation.** The [`ChokerConfig::upload_slots`] peers that sent
//!   us the most lately (bytes of the last interval plus half the score before: about two
//!   intervals) get the regular slots; ties keep the peers already unchoked.
//! - **While seeding: rotation.** A peer keeps its slot for one turn
//!   ([`ChokerConfig::seed_turn`], 30 s); then the slots go to the peers we uploaded the
//!   least to lately, and among equals to the one that has waited longest since its last
//!   turn (never served first), so every viewer gets its turn.
//! - **One optimistic unchoke**, on top of the regular slots, rotated every 30 s
//!   ([`ChokerConfig::optimistic_interval`]) among the interested peers without a regular
//!   slot, at random, a peer connected for less than [`ChokerConfig::new_peer_age`] three
//!   times as likely ([`ChokerConfig::new_peer_weight`]): that is how a newcomer, with nothing
//!   to reciprocate yet, gets its first pieces, and how we discover faster peers.
//! - **Sharing off** ([`Choker::set_sharing`], `--no-share`) or the **ratio limit** reached
//!   ([`Choker::set_ratio_limit`]: bytes uploaded ≥ limit × the torrent's size): every peer
//!   is choked and none is unchoked; choking a peer drops its queued requests (rejected with
//!   Fast, see [`crate::peer::PeerProtocol::choke`]).
//!
//! # Invariants (checked by [`Choker::check_invariants`])
//! - At most `upload_slots` peers hold a regular slot and at most one the optimistic slot;
//!   `optimistic` names exactly the peer in the optimistic slot.
//! - Right after a poll (no event since): every unchoked peer is interested, and nobody is
//!   unchoked while sharing is stopped.
//! - Memory is O(peers).

mod budget;
#[cfg(test)]
mod tests;

pub use budget::{BURST, UploadBudget};

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::scheduler::PeerKey;

/// The choker's knobs. Every field has a documented default ([`Default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular upload slots (default 4, as the mainline client), on top of the optimistic one.
    pub upload_slots: usize,
    /// How often the regular slots are chosen again (default 10 s, BEP 3).
    pub rechoke_interval: Duration,
    /// How often the optimistic unchoke moves on (default 30 s, BEP 3).
    pub optimistic_interval: Duration,
    /// A peer connected for less than this is new (default 60 s).
    pub new_peer_age: Duration,
    /// How much likelier a new peer is to be picked as the optimistic unchoke (default 3).
    pub new_peer_weight: u32,
    /// While seeding, how long a peer keeps a regular slot before others get their turn
    /// (default 30 s).
    pub seed_turn: Duration,
    /// Seed of the pseudo-random choices (default 0; give each session its own).
    pub seed: u64,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            upload_slots: 4,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            new_peer_age: Duration::from_secs(60),
            new_peer_weight: 3,
            seed_turn: Duration::from_secs(30),
            seed: 0,
        }
    }
}

/// Choke or unchoke this peer (send it with [`crate::peer::PeerProtocol::choke`] or
/// [`crate::peer::PeerProtocol::unchoke`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokeAction<K = PeerKey> {
    /// The peer.
    pub peer: K,
    /// Choke it (`true`) or unchoke it (`false`).
    pub choke: bool,
}

/// Where a peer stands with us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Choked.
    Choked,
    /// Unchoked in a regular slot (reciprocation or rotation).
    Regular,
    /// The optimistic unchoke.
    Optimistic,
}

/// Why nobody is unchoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Sharing is off (`--no-share`).
    SharingOff,
    /// The torrent uploaded its ratio limit.
    RatioReached,
}

#[derive(Clone, Debug)]
struct ChokerPeer {
    interested: bool,
    slot: Slot,
    connected_at: Instant,
    /// Bytes it sent us since the last rechoke, and the decayed score of before.
    received: u64,
    received_score: u64,
    /// Bytes we sent it since the last rechoke, and the decayed score of before.
    sent: u64,
    sent_score: u64,
    /// When its current unchoke began.
    unchoked_at: Option<Instant>,
    /// When it was last choked after an unchoke; `None`: never served.
    served_until: Option<Instant>,
    /// A pseudo-random tie-break, drawn when it connected.
    rank: u64,
}

impl ChokerPeer {
    fn unchoked(&self) -> bool {
        self.slot != Slot::Choked
    }

    fn received_lately(&self) -> u64 {
        self.received_score + self.received
    }

    fn sent_lately(&self) -> u64 {
        self.sent_score + self.sent
    }
}

/// The ratio limit of a torrent.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RatioLimit {
    ratio: f64,
    torrent_len: u64,
}

/// The choker of one torrent, over peers named by `K` (the scheduler's [`PeerKey`] by
/// default). See the module docs.
#[derive(Clone, Debug)]
pub struct Choker<K = PeerKey> {
    cfg: ChokerConfig,
    peers: BTreeMap<K, ChokerPeer>,
    seeding: bool,
    sharing: bool,
    ratio: Option<RatioLimit>,
    uploaded_before: u64,
    uploaded: u64,
    optimistic: Option<K>,
    next_rechoke: Instant,
    next_optimistic: Instant,
    /// Rechoke at the next poll whatever the time (the mode changed).
    force_rechoke: bool,
    /// No event since the last poll.
    settled: bool,
    rng: u64,
}

impl<K: Copy + Ord + Debug> Choker<K> {
    /// A choker with no peer, downloading, sharing on, no ratio limit. Its first poll
    /// chooses.
    pub fn new(config: ChokerConfig, now: Instant) -> Self {
        let rng = config.seed ^ 0x9E37_79B9_7F4A_7C15;
        Choker {
            cfg: config,
            peers: BTreeMap::new(),
            seeding: false,
            sharing: true,
            ratio: None,
            uploaded_before: 0,
            uploaded: 0,
            optimistic: None,
            next_rechoke: now,
            next_optimistic: now,
            force_rechoke: false,
            settled: true,
            rng,
        }
    }

    // ---------------------------------------------------------------- queries

    /// The configuration in use.
    pub fn config(&self) -> &ChokerConfig {
        &self.cfg
    }

    /// Where `peer` stands, `None` if it is not known.
    pub fn slot(&self, peer: K) -> Option<Slot> {
        self.peers.get(&peer).map(|p| p.slot)
    }

    /// The peers we unchoke.
    pub fn unchoked(&self) -> impl Iterator<Item = K> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.unchoked())
            .map(|(k, _)| *k)
    }

    /// The optimistic unchoke, if any.
    pub fn optimistic(&self) -> Option<K> {
        self.optimistic
    }

    /// Bytes uploaded, earlier runs included (see [`Choker::set_ratio_limit`]).
    pub fn uploaded(&self) -> u64 {
        self.uploaded_before + self.uploaded
    }

    /// Why nobody is unchoked, `None` while sharing.
    pub fn stopped(&self) -> Option<Stopped> {
        if !self.sharing {
            return Some(Stopped::SharingOff);
        }
        let limit = self.ratio?;
        let allowed = limit.ratio * limit.torrent_len as f64;
        (self.uploaded() as f64 >= allowed).then_some(Stopped::RatioReached)
    }

    // ---------------------------------------------------------------- events

    /// A peer connected (choked, not interested). Adding a known peer does nothing.
    pub fn add_peer(&mut self, peer: K, now: Instant) {
        if self.peers.contains_key(&peer) {
            return;
        }
        let rank = self.next_random();
        self.peers.insert(
            peer,
            ChokerPeer {
                interested: false,
                slot: Slot::Choked,
                connected_at: now,
                received: 0,
                received_score: 0,
                sent: 0,
                sent_score: 0,
                unchoked_at: None,
                served_until: None,
                rank,
            },
        );
        self.settled = false;
    }

    /// The peer disconnected; its slot is filled at the next poll.
    pub fn remove_peer(&mut self, peer: K) {
        if self.peers.remove(&peer).is_some() {
            if self.optimistic == Some(peer) {
                self.optimistic = None;
            }
            self.settled = false;
        }
    }

    /// The peer is (or is no longer) interested in us. Unknown peers are ignored.
    pub fn set_interested(&mut self, peer: K, interested: bool) {
        if let Some(p) = self.peers.get_mut(&peer)
            && p.interested != interested
        {
            p.interested = interested;
            self.settled = false;
        }
    }

    /// The peer sent us `bytes` of wanted block data. Unknown peers are ignored.
    pub fn received(&mut self, peer: K, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.received = p.received.saturating_add(bytes);
        }
    }

    /// We sent the peer `bytes` of block data. Unknown peers are ignored (the bytes still
    /// count towards the ratio).
    pub fn sent(&mut self, peer: K, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.sent = p.sent.saturating_add(bytes);
        }
        let before = self.stopped();
        self.uploaded = self.uploaded.saturating_add(bytes);
        if self.stopped() != before {
            self.settled = false;
        }
    }

    /// Whether we have every piece (rotation) or are still downloading (reciprocation).
    /// A change rechokes at the next poll.
    pub fn set_seeding(&mut self, seeding: bool) {
        if self.seeding != seeding {
            self.seeding = seeding;
            self.force_rechoke = true;
            self.settled = false;
        }
    }

    /// Sharing on or off (`--no-share`). Off chokes everyone at the next poll.
    pub fn set_sharing(&mut self, sharing: bool) {
        if self.sharing != sharing {
            self.sharing = sharing;
            self.force_rechoke = true;
            self.settled = false;
        }
    }

    /// Stop sharing once `ratio` × `torrent_len` bytes are uploaded, counting
    /// `uploaded_before` bytes from earlier runs (`None`: no limit).
    pub fn set_ratio_limit(&mut self, ratio: Option<f64>, torrent_len: u64, uploaded_before: u64) {
        self.ratio = ratio.map(|ratio| RatioLimit {
            ratio: if ratio.is_finite() {
                ratio.max(0.0)
            } else {
                0.0
            },
            torrent_len,
        });
        self.uploaded_before = uploaded_before;
        self.force_rechoke = true;
        self.settled = false;
    }

    // ---------------------------------------------------------------- deciding

    /// What to choke and unchoke now: the full choice at each rechoke interval (or after a
    /// mode change), the optimistic rotation when due, and in between free slots filled
    /// and uninterested peers choked.
    pub fn poll(&mut self, now: Instant) -> Vec<ChokeAction<K>> {
        let mut actions = Vec::new();
        self.settled = true;
        if self.stopped().is_some() {
            self.optimistic = None;
            let keys: Vec<K> = self.peers.keys().copied().collect();
            for key in keys {
                self.assign(key, Slot::Choked, now, &mut actions);
            }
            return actions;
        }
        let full = std::mem::take(&mut self.force_rechoke) || now >= self.next_rechoke;
        if full {
            for p in self.peers.values_mut() {
                p.received_score = p.received_score / 2 + p.received;
                p.sent_score = p.sent_score / 2 + p.sent;
                p.received = 0;
                p.sent = 0;
            }
            self.next_rechoke = now + self.cfg.rechoke_interval;
        }
        let regular = self.choose_regular(full, now);
        let keep_optimistic = self.optimistic.is_some_and(|k| {
            now < self.next_optimistic
                && !regular.contains(&k)
                && self.peers.get(&k).is_some_and(|p| p.interested)
        });
        if !keep_optimistic {
            let previous = self.optimistic.take();
            self.optimistic = self.pick_optimistic(&regular, previous, now);
            if self.optimistic.is_some() {
                self.next_optimistic = now + self.cfg.optimistic_interval;
            }
        }
        let keys: Vec<K> = self.peers.keys().copied().collect();
        for key in keys {
            let slot = if regular.contains(&key) {
                Slot::Regular
            } else if self.optimistic == Some(key) {
                Slot::Optimistic
            } else {
                Slot::Choked
            };
            self.assign(key, slot, now, &mut actions);
        }
        actions
    }

    /// When to poll again if no event comes: the next rechoke or optimistic rotation;
    /// `None` while sharing is stopped (only an event can change anything then).
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.stopped().is_some() {
            None
        } else if self.optimistic.is_some() {
            Some(self.next_rechoke.min(self.next_optimistic))
        } else {
            Some(self.next_rechoke)
        }
    }

    /// The peers for the regular slots: at a full rechoke the best ranked interested peers;
    /// in between the interested peers holding one, plus the best ranked to fill free ones.
    fn choose_regular(&self, full: bool, now: Instant) -> Vec<K> {
        let slots = self.cfg.upload_slots;
        let mut chosen: Vec<K> = if full {
            Vec::new()
        } else {
            self.peers
                .iter()
                .filter(|(_, p)| p.slot == Slot::Regular && p.interested)
                .map(|(k, _)| *k)
                .take(slots)
                .collect()
        };
        if chosen.len() >= slots {
            return chosen;
        }
        let mut candidates: Vec<(&K, &ChokerPeer)> = self
            .peers
            .iter()
            .filter(|(k, p)| p.interested && !chosen.contains(k))
            .collect();
        if self.seeding {
            let turn = self.cfg.seed_turn;
            candidates.sort_by_key(|(_, p)| {
                let in_turn =
                    p.slot == Slot::Regular && p.unchoked_at.is_some_and(|at| now < at + turn);
                (!in_turn, p.sent_lately(), p.served_until, p.rank)
            });
        } else {
            candidates.sort_by_key(|(_, p)| {
                (
                    std::cmp::Reverse(p.received_lately()),
                    !p.unchoked(),
                    p.rank,
                )
            });
        }
        let room = slots - chosen.len();
        chosen.extend(candidates.into_iter().take(room).map(|(k, _)| *k));
        chosen
    }

    /// A random interested peer without a regular slot, new peers weighted; the previous
    /// optimistic unchoke only if there is no other.
    fn pick_optimistic(&mut self, regular: &[K], previous: Option<K>, now: Instant) -> Option<K> {
        let eligible = |k: &K, p: &ChokerPeer| p.interested && !regular.contains(k);
        let mut candidates: Vec<(K, u64)> = self
            .peers
            .iter()
            .filter(|(k, p)| eligible(k, p) && Some(**k) != previous)
            .map(|(k, p)| {
                let new = now.saturating_duration_since(p.connected_at) < self.cfg.new_peer_age;
                let weight = if new {
                    u64::from(self.cfg.new_peer_weight.max(1))
                } else {
                    1
                };
                (*k, weight)
            })
            .collect();
        if candidates.is_empty() {
            let previous = previous?;
            let still = self.peers.get(&previous)?;
            return eligible(&previous, still).then_some(previous);
        }
        let total: u64 = candidates.iter().map(|(_, w)| w).sum();
        let mut ticket = self.next_random() % total;
        for (key, weight) in candidates.drain(..) {
            if ticket < weight {
                return Some(key);
            }
            ticket -= weight;
        }
        None
    }

    /// Puts `key` in `slot`, recording a choke or unchoke when that changes.
    fn assign(&mut self, key: K, slot: Slot, now: Instant, actions: &mut Vec<ChokeAction<K>>) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let was_unchoked = p.unchoked();
        p.slot = slot;
        match (was_unchoked, p.unchoked()) {
            (false, true) => {
                p.unchoked_at = Some(now);
                actions.push(ChokeAction {
                    peer: key,
                    choke: false,
                });
            }
            (true, false) => {
                p.unchoked_at = None;
                p.served_until = Some(now);
                actions.push(ChokeAction {
                    peer: key,
                    choke: true,
                });
            }
            _ => {}
        }
    }

    /// splitmix64 over a counter: deterministic per seed.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    // ---------------------------------------------------------------- invariants

    /// Checks every invariant of the module docs.
    ///
    /// # Panics
    /// When one does not hold: a bug in this module. Meant for tests.
    pub fn check_invariants(&self) {
        let regular = self
            .peers
            .values()
            .filter(|p| p.slot == Slot::Regular)
            .count();
        assert!(
            regular <= self.cfg.upload_slots,
            "{regular} regular slots, {} allowed",
            self.cfg.upload_slots
        );
        let optimistic: Vec<K> = self
            .peers
            .iter()
            .filter(|(_, p)| p.slot == Slot::Optimistic)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(
            optimistic,
            self.optimistic.into_iter().collect::<Vec<_>>(),
            "the optimistic slot"
        );
        for (key, p) in &self.peers {
            assert_eq!(
                p.unchoked(),
                p.unchoked_at.is_some(),
                "{key:?}: unchoke time"
            );
        }
        if self.settled {
            for (key, p) in &self.peers {
                if p.unchoked() {
                    assert!(p.interested, "{key:?} unchoked, not interested");
                    assert!(
                        self.stopped().is_none(),
                        "{key:?} unchoked, sharing stopped"
                    );
                }
            }
        }
    }
}
