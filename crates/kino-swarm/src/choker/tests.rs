use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::geometry::Geometry;
use crate::peer::{Inbound, PeerConfig, PeerProtocol};
use crate::wire::{BLOCK_LEN, Message, Reserved};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A choker over peers numbered 0.., driven by hand; invariants checked after each poll.
struct Hand {
    c: Choker<u32>,
    t0: Instant,
}

impl Hand {
    fn new(cfg: ChokerConfig) -> Self {
        let t0 = Instant::now();
        Hand {
            c: Choker::new(cfg, t0),
            t0,
        }
    }

    /// `n` interested peers connected at `t0 + at`.
    fn interested_peers(&mut self, range: std::ops::Range<u32>, at: Duration) {
        for peer in range {
            self.c.add_peer(peer, self.t0 + at);
            self.c.set_interested(peer, true);
        }
    }

    fn poll(&mut self, at: Duration) -> Vec<ChokeAction<u32>> {
        let actions = self.c.poll(self.t0 + at);
        self.c.check_invariants();
        actions
    }

    fn unchoked(&self) -> BTreeSet<u32> {
        self.c.unchoked().collect()
    }

    fn regular(&self) -> BTreeSet<u32> {
        self.c
            .unchoked()
            .filter(|k| self.c.slot(*k) == Some(Slot::Regular))
            .collect()
    }
}

#[test]
fn reciprocation_unchokes_the_fastest_uploaders() {
    let mut h = Hand::new(ChokerConfig::default());
    h.interested_peers(0..8, secs(0));
    h.poll(secs(0));
    assert_eq!(
        h.unchoked().len(),
        5,
        "4 regular slots and the optimistic one"
    );
    // Over the next interval peer i sends us i × 100 kB.
    for peer in 0..8 {
        h.c.received(peer, u64::from(peer) * 100_000);
    }
    let actions = h.poll(secs(10));
    assert_eq!(
        h.regular(),
        BTreeSet::from([4, 5, 6, 7]),
        "the four fastest"
    );
    let optimistic = h.c.optimistic().expect("an optimistic unchoke");
    assert!(optimistic < 4, "the optimistic slot goes to another peer");
    assert_eq!(h.unchoked().len(), 5);
    // Each action moves a peer to where it now stands.
    for action in actions {
        let unchoked = h.c.slot(action.peer) != Some(Slot::Choked);
        assert_eq!(action.choke, !unchoked, "{action:?}");
    }
    // A peer that was fast but stopped sending falls behind one that keeps sending.
    for peer in [4, 5, 6] {
        h.c.received(peer, 500_000);
    }
    h.c.received(0, 2_000_000);
    h.poll(secs(20));
    assert!(h.regular().contains(&0) && !h.regular().contains(&7));
}

#[test]
fn the_optimistic_unchoke_rotates() {
    let mut h = Hand::new(ChokerConfig::default());
    h.interested_peers(0..10, secs(0));
    // Every peer is old by the time we look; nobody uploads, so the regular set stays.
    let mut history: Vec<(u64, u32)> = Vec::new();
    for t in 100..=400 {
        h.poll(secs(t));
        let optimistic =
            h.c.optimistic()
                .expect("always one with ten interested peers");
        assert!(!h.regular().contains(&optimistic));
        if history.last().is_none_or(|(_, last)| *last != optimistic) {
            history.push((t, optimistic));
        }
    }
    let changes: Vec<u64> = history.iter().skip(1).map(|(t, _)| *t).collect();
    assert_eq!(changes.len(), 10, "a new one every 30 s: {history:?}");
    for pair in history.windows(2) {
        assert_eq!(
            pair[1].0 - pair[0].0,
            30,
            "held for exactly 30 s: {history:?}"
        );
    }
    let distinct: BTreeSet<u32> = history.iter().map(|(_, k)| *k).collect();
    assert!(distinct.len() >= 4, "it moves around: {history:?}");
}

#[test]
fn new_peers_are_three_times_as_likely_to_be_the_optimistic_unchoke() {
    // Nine old peers and one new; no regular slots, so only the optimistic one is chosen.
    let mut new_picked = 0;
    let runs = 600;
    for seed in 0..runs {
        let cfg = ChokerConfig {
            upload_slots: 0,
            seed,
            ..ChokerConfig::default()
        };
        let mut h = Hand::new(cfg);
        h.interested_peers(0..9, secs(0));
        h.interested_peers(9..10, secs(100));
        h.poll(secs(101));
        if h.c.optimistic() == Some(9) {
            new_picked += 1;
        }
    }
    // Expected 3 / (9 + 3) = 25 % (150 of 600); uniformly it would be 10 % (60).
    assert!(
        (110..=190).contains(&new_picked),
        "the new peer was picked {new_picked} times of {runs}"
    );
}

#[test]
fn seeding_rotates_through_every_viewer() {
    let mut h = Hand::new(ChokerConfig::default());
    h.c.set_seeding(true);
    h.interested_peers(0..12, secs(0));
    let mut first_turn: BTreeMap<u32, u64> = BTreeMap::new();
    let mut bytes: BTreeMap<u32, u64> = BTreeMap::new();
    for t in 0..=600 {
        h.poll(secs(t));
        assert!(h.unchoked().len() <= 5);
        // Each unchoked viewer takes 50 kB/s from us.
        for peer in h.unchoked() {
            first_turn.entry(peer).or_insert(t);
            *bytes.entry(peer).or_default() += 50_000;
            h.c.sent(peer, 50_000);
        }
    }
    assert_eq!(
        first_turn.len(),
        12,
        "every viewer got a turn: {first_turn:?}"
    );
    assert!(
        first_turn.values().all(|t| *t <= 120),
        "within a few turns: {first_turn:?}"
    );
    let most = bytes.values().max().copied().unwrap_or(0);
    let least = bytes.values().min().copied().unwrap_or(0);
    assert!(
        most <= least * 3 / 2,
        "a fair share: {least}..{most} bytes ({bytes:?})"
    );
}

#[test]
fn sharing_off_unchokes_nobody() {
    let mut h = Hand::new(ChokerConfig::default());
    h.interested_peers(0..6, secs(0));
    h.poll(secs(0));
    let unchoked = h.unchoked();
    assert_eq!(unchoked.len(), 5);

    // Peer 0's connection, a Fast peer with queued requests.
    let geo = Geometry::new(4 * 65536, 65536).unwrap();
    let fast = Reserved::NONE.with_fast(true);
    let t0 = h.t0;
    let mut conn = PeerProtocol::new(geo, PeerConfig::default(), fast, fast, t0);
    conn.unchoke();
    let request = geo.block(1, 0);
    assert_eq!(
        conn.on_message(Message::Request(request), t0, |_| true),
        Ok(Inbound::UploadQueued(request))
    );

    h.c.set_sharing(false);
    assert_eq!(h.c.stopped(), Some(Stopped::SharingOff));
    let actions = h.poll(secs(1));
    assert_eq!(actions.len(), 5);
    assert!(actions.iter().all(|a| a.choke));
    assert!(h.unchoked().is_empty());
    // The choke reaches the connection: its queued request is rejected, never served.
    let sent = conn.choke(t0 + secs(1));
    assert_eq!(sent, vec![Message::Choke, Message::RejectRequest(request)]);
    assert_eq!(conn.next_upload(), None);

    // Nothing unchokes anyone while sharing is off: new peers, interest, time.
    h.interested_peers(6..9, secs(2));
    for t in 2..100 {
        assert!(h.poll(secs(t)).is_empty());
    }
    assert!(h.unchoked().is_empty());
    h.c.set_sharing(true);
    h.poll(secs(100));
    assert_eq!(h.unchoked().len(), 5);
}

#[test]
fn the_ratio_limit_stops_uploads() {
    let mut h = Hand::new(ChokerConfig::default());
    h.c.set_seeding(true);
    // A 1 MB torrent with a ratio limit of 2, of which 1.5 MB were uploaded before.
    h.c.set_ratio_limit(Some(2.0), 1_000_000, 1_500_000);
    h.interested_peers(0..3, secs(0));
    h.poll(secs(0));
    assert_eq!(h.unchoked().len(), 3);
    h.c.sent(0, 400_000);
    assert_eq!(h.c.stopped(), None);
    h.poll(secs(1));
    assert_eq!(h.unchoked().len(), 3);
    h.c.sent(1, 100_000);
    assert_eq!(h.c.stopped(), Some(Stopped::RatioReached));
    assert_eq!(h.c.uploaded(), 2_000_000);
    let actions = h.poll(secs(2));
    assert_eq!(actions.len(), 3);
    assert!(h.unchoked().is_empty());
    assert!(h.poll(secs(60)).is_empty(), "it stays stopped");
    // Lifting the limit shares again.
    h.c.set_ratio_limit(None, 1_000_000, 1_500_000);
    h.poll(secs(61));
    assert_eq!(h.unchoked().len(), 3);
}

#[test]
fn a_free_slot_is_filled_without_waiting_for_the_rechoke() {
    let mut h = Hand::new(ChokerConfig::default());
    h.interested_peers(0..2, secs(0));
    h.poll(secs(0));
    assert_eq!(h.unchoked(), BTreeSet::from([0, 1]));
    // A viewer arrives one second later: there is room, it is unchoked at once.
    h.interested_peers(2..3, secs(1));
    assert_eq!(
        h.poll(secs(1)),
        vec![ChokeAction {
            peer: 2,
            choke: false
        }]
    );
    // Fill every slot; the next one waits.
    h.interested_peers(3..5, secs(2));
    h.poll(secs(2));
    assert_eq!(h.unchoked().len(), 5);
    h.interested_peers(5..6, secs(3));
    assert!(h.poll(secs(3)).is_empty(), "all slots taken");
    // A peer that loses interest is choked and its slot given to the waiting one.
    let leaving = *h.regular().iter().next().unwrap();
    h.c.set_interested(leaving, false);
    let actions = h.poll(secs(4));
    assert!(actions.contains(&ChokeAction {
        peer: leaving,
        choke: true
    }));
    assert!(actions.contains(&ChokeAction {
        peer: 5,
        choke: false
    }));
    // A peer that leaves frees its slot too.
    h.interested_peers(6..7, secs(5));
    let gone = h.c.optimistic().unwrap();
    h.c.remove_peer(gone);
    assert_eq!(
        h.poll(secs(5)),
        vec![ChokeAction {
            peer: 6,
            choke: false
        }]
    );
}

#[test]
fn random_events_keep_the_choker_within_its_slots() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let cfg = ChokerConfig {
        upload_slots: 3,
        ..ChokerConfig::default()
    };
    let mut h = Hand::new(cfg);
    h.c.set_ratio_limit(Some(50.0), 1_000_000, 0);
    let mut t = Duration::ZERO;
    let mut unchokes = 0;
    for _ in 0..20_000 {
        t += Duration::from_millis(next() % 2000);
        let peer = (next() % 20) as u32;
        match next() % 10 {
            0 => h.c.add_peer(peer, h.t0 + t),
            1 => h.c.remove_peer(peer),
            2 | 3 => h.c.set_interested(peer, next() % 3 != 0),
            4 => h.c.received(peer, next() % 100_000),
            5 => h.c.sent(peer, next() % 10_000),
            6 => h.c.set_seeding(next() % 2 == 0),
            7 => h.c.set_sharing(next() % 8 != 0),
            _ => {}
        }
        h.c.check_invariants();
        let actions = h.poll(t);
        unchokes += actions.iter().filter(|a| !a.choke).count();
        assert!(h.unchoked().len() <= 4);
        match h.c.next_wakeup() {
            Some(at) => assert!(at > h.t0 + t, "a wakeup in the past"),
            None => assert!(h.c.stopped().is_some() && h.unchoked().is_empty()),
        }
    }
    assert!(unchokes > 1000, "{unchokes} unchokes");
}

#[test]
fn the_upload_budget_paces_at_the_cap() {
    let t0 = Instant::now();
    let rate = 200_000u64;
    let mut budget = UploadBudget::new(Some(rate), t0);
    // Three connections take 16 KiB blocks as fast as the budget lets them, for 20 s.
    let mut sent = 0u64;
    let mut clocks = [Duration::ZERO; 3];
    let end = secs(20);
    for _ in 0..100_000 {
        let Some((i, at)) = clocks
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, at)| *at < end)
            .min_by_key(|(_, at)| *at)
        else {
            break;
        };
        match budget.take(BLOCK_LEN, t0 + at) {
            None => sent += u64::from(BLOCK_LEN),
            Some(wait) => {
                assert!(wait > Duration::ZERO);
                clocks[i] = at + wait;
            }
        }
    }
    let burst = (rate as f64 * BURST.as_secs_f64()) as u64;
    let cap = rate * 20;
    assert!(
        sent >= cap - u64::from(BLOCK_LEN) && sent <= cap + burst + u64::from(BLOCK_LEN),
        "{sent} bytes in 20 s at {rate} B/s"
    );
    // A block bigger than the bucket still goes once the bucket is full, and the debt is
    // paid by waiting.
    // At 1000 B/s the bucket holds one block (16,384 bytes).
    let mut small = UploadBudget::new(Some(1000), t0);
    assert_eq!(small.take(20_000, t0), None);
    let wait = small.take(1000, t0).expect("in debt");
    assert_eq!(
        wait,
        Duration::from_millis(4616),
        "3,616 bytes of debt and 1,000 more"
    );
    assert_eq!(small.take(1000, t0 + wait), None);
    // No cap: always go.
    let mut free = UploadBudget::unlimited(t0);
    for _ in 0..1000 {
        assert_eq!(free.take(BLOCK_LEN, t0), None);
    }
    free.set_rate(Some(rate), t0);
    assert_eq!(free.rate(), Some(rate));
    assert_eq!(free.take(BLOCK_LEN, t0), None, "starts with a full bucket");
}

#[test]
fn a_choke_action_reaches_a_connection_without_fast_as_a_silent_drop() {
    // Without Fast, choking drops the queue without rejects (BEP 3).
    let geo = Geometry::new(4 * 65536, 65536).unwrap();
    let t0 = Instant::now();
    let mut conn = PeerProtocol::new(
        geo,
        PeerConfig::default(),
        Reserved::NONE,
        Reserved::NONE,
        t0,
    );
    conn.unchoke();
    for index in 0..3 {
        let _ = conn.on_message(Message::Request(geo.block(0, index)), t0, |_| true);
    }
    assert_eq!(conn.queued_uploads(), 3);
    assert_eq!(conn.choke(t0), vec![Message::Choke]);
    assert_eq!(conn.queued_uploads(), 0);
}
