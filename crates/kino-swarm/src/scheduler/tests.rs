use std::collections::{BTreeMap, BTreeSet};

use super::sim::{PeerSpec, Sim};
use super::*;
use crate::wire::BLOCK_LEN;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn geo(pieces: u64, piece_len: u32) -> Geometry {
    Geometry::new(pieces * u64::from(piece_len), piece_len).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A scheduler driven by hand: time is `t0 + offset`, invariants checked after each poll.
struct Hand {
    s: Scheduler,
    t0: Instant,
}

impl Hand {
    fn new(geometry: Geometry, cfg: SchedulerConfig) -> Self {
        Hand {
            s: Scheduler::new(geometry, cfg),
            t0: Instant::now(),
        }
    }

    fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    /// A peer with every piece that has unchoked us.
    fn seed(&mut self, t: Duration) -> PeerKey {
        let key = self.s.add_peer(self.at(t));
        self.s.peer_have_all(key).unwrap();
        self.s.peer_unchoked(key, self.at(t)).unwrap();
        self.s.check_invariants();
        key
    }

    fn poll(&mut self, t: Duration) -> Vec<Action> {
        let actions = self.s.poll_actions(self.at(t));
        self.s.check_invariants();
        actions
    }

    fn receive(&mut self, peer: PeerKey, block: BlockRef, t: Duration) -> Receipt {
        let receipt = self.s.block_received(peer, block, self.at(t)).unwrap();
        self.s.check_invariants();
        receipt
    }
}

fn requests(actions: &[Action]) -> Vec<(PeerKey, BlockRef)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Request { peer, block } => Some((*peer, *block)),
            _ => None,
        })
        .collect()
}

fn requests_to(actions: &[Action], to: PeerKey) -> Vec<BlockRef> {
    requests(actions)
        .into_iter()
        .filter(|(p, _)| *p == to)
        .map(|(_, b)| b)
        .collect()
}

fn cancels(actions: &[Action]) -> Vec<(PeerKey, BlockRef)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { peer, block } => Some((*peer, *block)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_urgent_piece_is_spread_over_several_peers() {
    // Two fast seeds and a slow one; 128 pieces of 256 KiB.
    let mut sim = Sim::new(geo(128, 256 * 1024), SchedulerConfig::default());
    let a = sim.add_peer(PeerSpec::seed(2.0 * MIB as f64, 40));
    let b = sim.add_peer(PeerSpec::seed(2.0 * MIB as f64, 60));
    let slow = sim.add_peer(PeerSpec::seed(100.0 * KIB as f64, 100));
    sim.poll();
    // Two seconds of downloading teach the scheduler the peers' rates; then the requests
    // in flight are answered without new ones, so every pipeline is empty.
    sim.run_until(Duration::from_secs(2), 100_000);
    sim.auto_poll = false;
    sim.run_to_end(100_000);
    let now = sim.at();
    let (key_a, key_b, key_slow) = (sim.key(a), sim.key(b), sim.key(slow));
    for key in [key_a, key_b, key_slow] {
        let stats = sim.sched.peer_stats(key, now).unwrap();
        assert!(stats.rate.is_some(), "{key} has a measured rate");
        assert_eq!(stats.in_flight, 0);
    }
    let targets: Vec<u32> = [key_a, key_b]
        .iter()
        .map(|k| sim.sched.peer_stats(*k, now).unwrap().pipeline_target)
        .collect();
    assert!(
        targets.iter().all(|t| *t > 16),
        "room for the whole piece: {targets:?}"
    );
    let piece = (0..128)
        .rev()
        .find(|p| {
            let progress = sim.sched.piece_progress(*p).unwrap();
            progress.received == 0 && progress.requested == 0 && !progress.verified
        })
        .unwrap();
    // A player opens the film at that piece: it is due now.
    let start = sim.sched.geometry().piece_start(piece);
    sim.sched
        .add_stream(start..128 * 256 * KIB, start, None, now)
        .unwrap();
    let actions = sim.poll();
    let mut by_peer: BTreeMap<PeerKey, usize> = BTreeMap::new();
    for (peer, block) in requests(&actions) {
        if block.piece == piece {
            *by_peer.entry(peer).or_default() += 1;
        }
    }
    assert_eq!(
        by_peer.values().sum::<usize>(),
        16,
        "every block requested at once"
    );
    assert!(
        by_peer.len() > 1,
        "one piece over several peers: {by_peer:?}"
    );
    assert_eq!(
        by_peer.get(&key_slow),
        None,
        "the slow peer gets none of it"
    );
    for key in [key_a, key_b] {
        assert!(by_peer[&key] >= 6, "{key} took a share: {by_peer:?}");
    }
}

#[test]
fn the_slowest_tenth_of_peers_gets_no_deadline_block() {
    let cfg = SchedulerConfig {
        horizon: Duration::from_secs(2),
        min_horizon_pieces: 4,
        ..SchedulerConfig::default()
    };
    let mut sim = Sim::new(geo(256, 256 * 1024), cfg);
    // Nine peers at 1 MiB/s, 100 ms away; one at 256 KiB/s but 10 ms away, so its first
    // block would come soonest.
    for _ in 0..9 {
        sim.add_peer(PeerSpec::seed(MIB as f64, 100));
    }
    let slow = sim.add_peer(PeerSpec::seed(256.0 * KIB as f64, 10));
    let slow = sim.key(slow);
    sim.poll();
    sim.run_until(Duration::from_secs(1), 100_000);
    sim.auto_poll = false;
    sim.run_to_end(100_000);
    let now = sim.at();
    let slow_stats = sim.sched.peer_stats(slow, now).unwrap();
    let expected_slow = slow_stats.rtt.unwrap()
        + Duration::from_secs_f64(f64::from(BLOCK_LEN) / slow_stats.rate.unwrap());
    assert!(
        expected_slow < ms(100),
        "it would be the soonest: {slow_stats:?}"
    );
    let piece = untouched_piece(&sim.sched, 0);
    let start = sim.sched.geometry().piece_start(piece);
    sim.sched
        .add_stream(start..256 * 256 * KIB, start, None, now)
        .unwrap();
    let actions = sim.poll();
    let mut due = 0;
    for (peer, block) in requests(&actions) {
        if sim.sched.deadline(block.piece).is_some() {
            due += 1;
            assert_ne!(peer, slow, "a deadline block went to the slowest peer");
        }
    }
    assert!(due >= 4 * 16, "the horizon was requested: {due}");
    assert!(
        !requests_to(&actions, slow).is_empty(),
        "it still gets blocks beyond the horizon"
    );
}

#[test]
fn a_seek_cancels_requests_that_serve_no_deadline() {
    let cfg = SchedulerConfig {
        initial_pipeline: 40,
        min_horizon_pieces: 2,
        horizon: Duration::from_secs(1),
        ..SchedulerConfig::default()
    };
    let mut h = Hand::new(geo(64, 64 * 1024), cfg);
    let peer = h.seed(ms(0));
    let stream =
        h.s.add_stream(0..64 * 64 * KIB, 0, Some(64 * KIB), h.at(ms(0)))
            .unwrap();
    let first = h.poll(ms(0));
    let sent = requests_to(&first, peer);
    assert_eq!(sent.len(), 40);
    assert!(
        sent[..8].iter().all(|b| b.piece < 2),
        "the playhead's two pieces first: {sent:?}"
    );

    // The player seeks to piece 40.
    let offset = h.s.geometry().piece_start(40) + 1000;
    h.s.set_playhead(stream, offset, h.at(ms(50))).unwrap();
    let actions = h.poll(ms(50));
    let committed = h.s.peers[&peer].committed_requests(&h.s.cfg);
    let now_due: BTreeSet<u32> = (0..64).filter(|p| h.s.deadline(*p).is_some()).collect();
    assert_eq!(
        now_due,
        (40..43).collect(),
        "two pieces' worth from inside piece 40"
    );
    let expected_cancels: Vec<BlockRef> = sent[committed..]
        .iter()
        .filter(|b| !now_due.contains(&b.piece))
        .copied()
        .collect();
    assert!(expected_cancels.len() > 30, "{}", expected_cancels.len());
    let got: Vec<BlockRef> = cancels(&actions).into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        got, expected_cancels,
        "everything not on its way is cancelled"
    );
    let new: BTreeSet<(u32, u32)> = requests_to(&actions, peer)
        .into_iter()
        .map(|b| (b.piece, b.begin))
        .collect();
    for piece in now_due {
        for index in 0..4 {
            let begin = index * BLOCK_LEN;
            let kept = |b: &&BlockRef| b.piece == piece && b.begin == begin && !got.contains(b);
            let already = sent.iter().any(|b| kept(&b));
            assert!(
                already || new.contains(&(piece, begin)),
                "block {index} of piece {piece} requested in the same call"
            );
        }
    }
    let last_cancel = actions
        .iter()
        .rposition(|a| matches!(a, Action::Cancel { .. }))
        .unwrap();
    let first_request = actions
        .iter()
        .position(|a| matches!(a, Action::Request { .. }))
        .unwrap();
    assert!(
        last_cancel < first_request,
        "CANCELs go out before the new requests"
    );

    // A cancelled block that crossed the CANCEL is still stored, not held against the
    // peer; a second copy was never asked for.
    let crossed = expected_cancels[0];
    assert_eq!(
        h.receive(peer, crossed, ms(60)),
        Receipt::Wanted {
            piece_complete: false
        }
    );
    assert_eq!(h.receive(peer, crossed, ms(61)), Receipt::Unrequested);
}

#[test]
fn a_seek_forward_inside_the_horizon_cancels_the_requests_left_behind() {
    // The horizon (30 s at 1 MiB/s) covers the whole 4 MiB film.
    let cfg = SchedulerConfig {
        initial_pipeline: 32,
        ..SchedulerConfig::default()
    };
    let mut h = Hand::new(geo(64, 64 * 1024), cfg);
    let peer = h.seed(ms(0));
    let stream =
        h.s.add_stream(0..64 * 64 * KIB, 0, None, h.at(ms(0)))
            .unwrap();
    let sent = requests_to(&h.poll(ms(0)), peer);
    assert_eq!(sent.len(), 32);
    assert!(sent.iter().all(|b| b.piece < 8));
    // Moving the playhead there is not a seek by the heuristic: nothing is cancelled.
    let offset = h.s.geometry().piece_start(50);
    h.s.set_playhead(stream, offset, h.at(ms(10))).unwrap();
    assert!(cancels(&h.poll(ms(10))).is_empty());
    // The reader says it seeked: what no deadline needs, beyond what is on its way, goes.
    h.s.seek(stream, offset + 1, h.at(ms(20))).unwrap();
    let cancelled = cancels(&h.poll(ms(20)));
    let committed = h.s.peers[&peer].committed_requests(&h.s.cfg);
    assert_eq!(cancelled.len(), 32 - committed, "{cancelled:?}");
    assert!(cancelled.iter().all(|(p, b)| *p == peer && b.piece < 8));
}

#[test]
fn a_stalled_block_gets_one_duplicate_and_the_loser_is_cancelled() {
    let mut h = Hand::new(geo(4, 64 * 1024), SchedulerConfig::default());
    let a = h.seed(ms(0));
    let b = h.seed(ms(0));
    h.s.add_stream(0..4 * 64 * KIB, 0, None, h.at(ms(0)))
        .unwrap();
    let first = h.poll(ms(0));
    let at_a = requests_to(&first, a);
    assert_eq!(at_a.len(), 4);
    // B answers everything every 200 ms (as fast as A was expected to), three times; A
    // never answers.
    let mut t = ms(0);
    let mut at_b = requests_to(&first, b);
    for _ in 0..3 {
        t += ms(200);
        for block in at_b.clone() {
            assert!(matches!(h.receive(b, block, t), Receipt::Wanted { .. }));
        }
        at_b = requests_to(&h.poll(t), b);
    }
    assert!(at_b.is_empty(), "only A's blocks are missing: {at_b:?}");
    // The stall timeout is max(2 x expected, 1 s floor) = 1 s here: nothing before it.
    assert!(requests(&h.poll(ms(999))).is_empty());
    let duplicates = h.poll(ms(1000));
    assert_eq!(
        requests_to(&duplicates, b),
        at_a,
        "each of A's stalled blocks once at B"
    );
    for t in [ms(1500), ms(3000)] {
        assert!(requests(&h.poll(t)).is_empty(), "never a third request");
    }
    // B's copy wins; A is told to forget it.
    let won = at_a[0];
    assert!(matches!(
        h.receive(b, won, ms(3100)),
        Receipt::Wanted { .. }
    ));
    assert_eq!(cancels(&h.poll(ms(3100))), vec![(a, won)]);
    // A's copy arrives after all: it crossed the CANCEL.
    assert_eq!(h.receive(a, won, ms(3200)), Receipt::Redundant);
}

#[test]
fn a_block_asked_of_a_slow_peer_is_asked_again_when_its_piece_falls_due() {
    let mut h = Hand::new(geo(8, 64 * 1024), SchedulerConfig::default());
    let slow = h.seed(ms(0));
    let first = requests_to(&h.poll(ms(0)), slow);
    assert_eq!(first.len(), 4, "background blocks while no one plays");
    // The slow peer answers one block every 2 s: its rate is measured at about 8 KiB/s.
    for (n, block) in first.iter().enumerate() {
        h.receive(slow, *block, ms(2000 * (n as u64 + 1)));
    }
    let t = ms(8000);
    let asked = requests_to(&h.poll(t), slow);
    let rate = h.s.peer_stats(slow, h.at(t)).unwrap().rate.unwrap();
    assert!(rate < 16.0 * KIB as f64, "{rate}");
    assert_eq!(asked.len(), 2, "a pipeline of 2 at that rate");
    // Its second request is expected in about 4 s: far from stalled (2 x 4 s), but a
    // player starts on that block's piece now, and a fast peer arrives.
    let pending = asked[1];
    let fast = h.seed(t + ms(100));
    let start = h.s.geometry().piece_start(pending.piece);
    h.s.add_stream(start..8 * 64 * KIB, start, None, h.at(t + ms(100)))
        .unwrap();
    let again = requests_to(&h.poll(t + ms(100)), fast);
    assert!(
        again.contains(&pending),
        "the late block is asked of the fast peer too"
    );
    // Never a third time.
    let later = h.poll(t + ms(200));
    assert!(!requests(&later).iter().any(|(_, b)| *b == pending));
}

/// Runs one simulated peer for `secs` and returns what the scheduler learnt of it, checking
/// at every step that its requests stay within its pipeline target and its `reqq`.
fn measure(spec: PeerSpec, secs: u64) -> (PeerStats, SchedulerConfig) {
    let cfg = SchedulerConfig::default();
    let reqq = spec.reqq;
    let mut sim = Sim::new(geo(512, 256 * 1024), cfg.clone());
    let peer = sim.add_peer(spec);
    let key = sim.key(peer);
    sim.poll();
    let mut peak = 0;
    for step in 1..=secs * 20 {
        sim.run_until(ms(step * 50), 100_000);
        let stats = sim.sched.peer_stats(key, sim.at()).unwrap();
        peak = peak.max(stats.in_flight);
        assert!(stats.in_flight <= reqq.unwrap_or(cfg.max_pipeline));
    }
    let stats = sim.sched.peer_stats(key, sim.at()).unwrap();
    assert!(
        peak >= stats.pipeline_target.min(8),
        "the pipeline was used"
    );
    (stats, cfg)
}

#[test]
fn pipelines_follow_rate_times_rtt() {
    let formula = |stats: &PeerStats, cfg: &SchedulerConfig, cap: u32| {
        let window = (stats.rtt.unwrap() + cfg.pipeline_margin).as_secs_f64();
        let blocks = (stats.rate.unwrap() * window / f64::from(BLOCK_LEN)).ceil() as u32;
        blocks.clamp(2, cap)
    };
    // 1 MiB/s at 100 ms: about 1 MiB/s x 1.1 s = 70 blocks.
    let (stats, cfg) = measure(
        PeerSpec {
            reqq: Some(500),
            ..PeerSpec::seed(MIB as f64, 100)
        },
        6,
    );
    let rate = stats.rate.unwrap();
    assert!((0.85..1.15).contains(&(rate / MIB as f64)), "rate {rate}");
    let rtt = stats.rtt.unwrap();
    // Within one block transfer (16 ms here) of the true 100 ms.
    assert!(rtt >= ms(80) && rtt <= ms(120), "rtt {rtt:?}");
    assert_eq!(stats.pipeline_target, formula(&stats, &cfg, 250));
    assert!((60..=82).contains(&stats.pipeline_target), "{stats:?}");

    // A fast peer that queues at most 20 requests gets 20.
    let (stats, cfg) = measure(
        PeerSpec {
            reqq: Some(20),
            ..PeerSpec::seed(4.0 * MIB as f64, 50)
        },
        4,
    );
    assert_eq!(stats.pipeline_target, 20);
    assert_eq!(formula(&stats, &cfg, 20), 20);

    // A slow peer gets the floor of 2.
    let (stats, cfg) = measure(PeerSpec::seed(8.0 * KIB as f64, 50), 12);
    assert_eq!(stats.pipeline_target, 2, "{stats:?}");
    assert_eq!(formula(&stats, &cfg, 250), 2);
}

#[test]
fn choked_and_snubbed_peers_get_no_requests() {
    let mut h = Hand::new(geo(8, 64 * 1024), SchedulerConfig::default());
    let choking = h.s.add_peer(h.at(ms(0)));
    h.s.peer_have_all(choking).unwrap();
    let silent = h.seed(ms(0));
    let first = h.poll(ms(0));
    assert!(first.contains(&Action::Interested { peer: choking }));
    assert!(
        requests_to(&first, choking).is_empty(),
        "no request while choked"
    );
    let at_silent = requests_to(&first, silent);
    assert_eq!(at_silent.len(), 4);

    // Eight seconds without a block: snubbed. It rejects one request (room again), but
    // gets no new one.
    let t = h.s.cfg.snub_timeout;
    assert!(!h.s.peer_stats(silent, h.at(t - ms(1))).unwrap().snubbed);
    assert!(h.s.peer_stats(silent, h.at(t)).unwrap().snubbed);
    assert!(h.s.block_rejected(silent, at_silent[3], h.at(t)).unwrap());
    let actions = h.poll(t);
    assert!(requests(&actions).is_empty(), "{actions:?}");

    // A new peer takes over the snubbed peer's blocks.
    let helper = h.seed(t);
    let taken = requests_to(&h.poll(t), helper);
    for block in &at_silent {
        assert!(taken.contains(block), "{block:?} asked of the new peer");
    }
    // A block from the snubbed peer ends the snub.
    assert!(matches!(
        h.receive(silent, at_silent[0], t + ms(10)),
        Receipt::Wanted { .. }
    ));
    assert!(!h.s.peer_stats(silent, h.at(t + ms(10))).unwrap().snubbed);
    // A peer that chokes us loses its requests and gets no new ones.
    h.s.peer_choked(helper, h.at(t + ms(20))).unwrap();
    assert_eq!(
        h.s.peer_stats(helper, h.at(t + ms(20))).unwrap().in_flight,
        0
    );
    assert!(requests_to(&h.poll(t + ms(20)), helper).is_empty());
    assert!(requests_to(&h.poll(t + ms(20)), choking).is_empty());
}

#[test]
fn a_peer_whose_oldest_request_is_overdue_gets_no_new_request() {
    let mut h = Hand::new(geo(8, 64 * 1024), SchedulerConfig::default());
    let peer = h.seed(ms(0));
    let sent = requests_to(&h.poll(ms(0)), peer);
    assert_eq!(sent.len(), 4);
    // It rejects its last request: a free slot, well before any snub (8 s).
    assert!(h.s.block_rejected(peer, sent[3], h.at(ms(500))).unwrap());
    assert_eq!(requests_to(&h.poll(ms(500)), peer), vec![sent[3]]);
    assert!(h.s.block_rejected(peer, sent[3], h.at(ms(600))).unwrap());
    // Its oldest request was expected after 262 ms: overdue at max(2 x 262 ms, 1 s), and
    // no block came for the 1 s floor.
    assert!(
        requests(&h.poll(ms(1000))).is_empty(),
        "nothing for a peer not delivering"
    );
    assert!(!h.s.peer_stats(peer, h.at(ms(1000))).unwrap().snubbed);
    // Once a block comes, it is asked again, though its next requests are overdue too.
    h.receive(peer, sent[0], ms(1100));
    assert_eq!(requests_to(&h.poll(ms(1100)), peer).len(), 2);
}

#[test]
fn a_reqq_below_the_requests_in_flight_cancels_the_newest() {
    let mut h = Hand::new(geo(8, 64 * 1024), SchedulerConfig::default());
    let peer = h.seed(ms(0));
    let sent = requests_to(&h.poll(ms(0)), peer);
    assert_eq!(sent.len(), 4);
    // Its extended handshake arrives late and says it queues 2 requests.
    h.s.peer_reqq(peer, 2, h.at(ms(10))).unwrap();
    h.s.check_invariants();
    let actions = h.poll(ms(10));
    assert_eq!(cancels(&actions), vec![(peer, sent[3]), (peer, sent[2])]);
    assert!(requests(&actions).is_empty());
    assert_eq!(
        h.s.peer_stats(peer, h.at(ms(10))).unwrap().pipeline_target,
        2
    );
}

#[test]
fn a_gone_peer_releases_its_blocks() {
    let mut h = Hand::new(geo(2, 64 * 1024), SchedulerConfig::default());
    let gone = h.seed(ms(0));
    let stays = h.seed(ms(0));
    let first = h.poll(ms(0));
    let lost = requests_to(&first, gone);
    let kept = requests_to(&first, stays);
    assert_eq!((lost.len(), kept.len()), (4, 4));
    h.s.peer_gone(gone, h.at(ms(50))).unwrap();
    h.s.check_invariants();
    assert_eq!(
        h.s.block_received(gone, lost[0], h.at(ms(50))),
        Err(ScheduleError::UnknownPeer(gone))
    );
    for piece in 0..2 {
        assert_eq!(h.s.availability(piece), 1);
    }
    for block in kept {
        h.receive(stays, block, ms(100));
    }
    let mut again = requests_to(&h.poll(ms(100)), stays);
    again.sort();
    let mut lost = lost;
    lost.sort();
    assert_eq!(again, lost, "the gone peer's blocks are asked of the other");
}

#[test]
fn beyond_the_horizon_pieces_go_rarest_first() {
    let cfg = SchedulerConfig {
        initial_pipeline: 16,
        ..SchedulerConfig::default()
    };
    let mut h = Hand::new(geo(16, 64 * 1024), cfg.clone());
    let seed = h.seed(ms(0));
    // Pieces 0..8 are also at two viewers, 8..12 at one: 12..16 only at the seed.
    for have in [0..12u32, 0..8] {
        let viewer = h.s.add_peer(h.at(ms(0)));
        for piece in have {
            h.s.peer_have(viewer, piece).unwrap();
        }
    }
    let pieces: BTreeSet<u32> = requests_to(&h.poll(ms(0)), seed)
        .iter()
        .map(|b| b.piece)
        .collect();
    assert_eq!(pieces, (12..16).collect(), "the four rarest pieces first");

    // Equally rare pieces: the order differs between sessions and is stable within one.
    let first_pieces = |seed_value: u64| {
        let mut h = Hand::new(
            geo(64, 64 * 1024),
            SchedulerConfig {
                seed: seed_value,
                ..cfg.clone()
            },
        );
        let peer = h.seed(ms(0));
        requests_to(&h.poll(ms(0)), peer)
            .iter()
            .map(|b| b.piece)
            .collect::<Vec<u32>>()
    };
    assert_eq!(first_pieces(1), first_pieces(1));
    assert_ne!(first_pieces(1), first_pieces(2));
    assert_ne!(first_pieces(1)[0..4], [0, 0, 0, 0], "not in index order");

    // In sequential mode (whole downloads), piece order.
    let mut h = Hand::new(
        geo(16, 64 * 1024),
        SchedulerConfig {
            sequential: true,
            ..cfg.clone()
        },
    );
    let peer = h.seed(ms(0));
    let pieces: Vec<u32> = requests_to(&h.poll(ms(0)), peer)
        .iter()
        .map(|b| b.piece)
        .collect();
    assert_eq!(pieces, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);

    // A partial piece is finished first, even when others are rarer.
    let mut h = Hand::new(
        geo(16, 64 * 1024),
        SchedulerConfig {
            initial_pipeline: 4,
            ..cfg
        },
    );
    let first_seed = h.seed(ms(0));
    let started = requests_to(&h.poll(ms(0)), first_seed);
    let piece = started[0].piece;
    assert!(started.iter().all(|b| b.piece == piece));
    h.receive(first_seed, started[0], ms(50));
    h.s.peer_choked(first_seed, h.at(ms(60))).unwrap();
    let common = h.s.add_peer(h.at(ms(60)));
    h.s.peer_have(common, piece).unwrap();
    let next = h.seed(ms(60));
    let asked = requests_to(&h.poll(ms(60)), next);
    assert_eq!(h.s.availability(piece), 3);
    assert_eq!(
        &asked[..3],
        &started[1..],
        "the partial piece's missing blocks first"
    );
}

#[test]
fn in_the_end_game_a_faster_peer_duplicates_the_last_blocks() {
    // Two pieces; piece 1 is nowhere, which must not keep the end game away. One peer
    // with piece 0 is asked for all of it.
    let mut h = Hand::new(geo(2, 64 * 1024), SchedulerConfig::default());
    let slow = h.s.add_peer(h.at(ms(0)));
    h.s.peer_have(slow, 0).unwrap();
    h.s.peer_unchoked(slow, h.at(ms(0))).unwrap();
    let sent = requests_to(&h.poll(ms(0)), slow);
    assert_eq!(sent.len(), 4);
    assert_eq!(h.s.availability(1), 0, "piece 1 is nowhere");
    // 100 ms later a second peer arrives: the slow peer's last two blocks are expected at
    // 387 and 450 ms, later than the newcomer's 100 + 262 ms.
    let fast = h.s.add_peer(h.at(ms(100)));
    h.s.peer_have(fast, 0).unwrap();
    h.s.peer_unchoked(fast, h.at(ms(100))).unwrap();
    let dup = requests_to(&h.poll(ms(100)), fast);
    assert_eq!(dup, sent[2..].to_vec());
    // The first copy wins, the other is cancelled.
    assert!(matches!(
        h.receive(fast, sent[3], ms(200)),
        Receipt::Wanted { .. }
    ));
    assert_eq!(cancels(&h.poll(ms(200))), vec![(slow, sent[3])]);
}

#[test]
fn deadline_blocks_prefer_a_viewer_over_the_seed_when_both_are_in_time() {
    let cfg = SchedulerConfig {
        initial_pipeline: 16,
        ..SchedulerConfig::default()
    };
    let mut h = Hand::new(geo(32, 64 * 1024), cfg);
    // The seed connected first: on equal estimates it would win every tie.
    let seed = h.seed(ms(0));
    let viewer = h.s.add_peer(h.at(ms(0)));
    for piece in 8..16 {
        h.s.peer_have(viewer, piece).unwrap();
    }
    h.s.peer_unchoked(viewer, h.at(ms(0))).unwrap();
    // A player at piece 8, 64 KiB/s: piece p is due p - 8 seconds from now.
    let start = h.s.geometry().piece_start(8);
    h.s.add_stream(start..32 * 64 * KIB, start, Some(64 * KIB), h.at(ms(0)))
        .unwrap();
    assert_eq!(h.s.deadline(9), Some(h.at(ms(1000))));
    let actions = h.poll(ms(0));
    let at_seed = requests_to(&actions, seed);
    let at_viewer = requests_to(&actions, viewer);
    assert_eq!((at_seed.len(), at_viewer.len()), (16, 16));
    // Piece 8 is due now: nobody is in time, so it goes by soonest delivery, over both.
    assert!(at_seed.iter().any(|b| b.piece == 8) && at_viewer.iter().any(|b| b.piece == 8));
    // Pieces 9.. are due later and the viewer is in time: the seed gets none of them.
    assert!(
        at_seed.iter().all(|b| b.piece == 8 || b.piece >= 16),
        "the seed serves only what the viewer lacks: {at_seed:?}"
    );
    for piece in 9..12 {
        assert_eq!(at_viewer.iter().filter(|b| b.piece == piece).count(), 4);
    }
}

#[test]
fn a_deadline_block_waits_for_a_full_fast_peer_rather_than_go_to_a_slow_one() {
    let mut h = Hand::new(geo(8, 64 * 1024), SchedulerConfig::default());
    let slow = h.seed(ms(0));
    let first = requests_to(&h.poll(ms(0)), slow);
    // The slow peer answers one block every 2 s: measured at about 8 KiB/s.
    for (n, block) in first.iter().enumerate() {
        h.receive(slow, *block, ms(2000 * (n as u64 + 1)));
    }
    let t = ms(8000);
    let at_slow = requests_to(&h.poll(t), slow);
    // It rejects one: room for one more.
    assert!(h.s.block_rejected(slow, at_slow[1], h.at(t)).unwrap());
    // A fast peer (not measured yet: 256 KiB/s assumed) fills its pipeline of 4.
    let fast = h.seed(t);
    let at_fast = requests_to(&h.poll(t), fast);
    assert_eq!(at_fast.len(), 4);
    // A player starts on an untouched piece: due now. The fast peer, though full, delivers
    // a block in about 0.5 s; the slow peer would need 2 s.
    let piece = (0..8)
        .find(|p| {
            h.s.piece_progress(*p).unwrap()
                == PieceProgress {
                    verified: false,
                    blocks: 4,
                    received: 0,
                    requested: 0,
                }
        })
        .unwrap();
    let start = h.s.geometry().piece_start(piece);
    h.s.add_stream(start..start + 64 * KIB, start, None, h.at(t))
        .unwrap();
    let actions = h.poll(t);
    assert!(
        requests_to(&actions, slow).iter().all(|b| b.piece != piece),
        "the due piece waits for the fast peer: {actions:?}"
    );
    // As soon as the fast peer has room, it gets the due blocks.
    h.receive(fast, at_fast[0], t + ms(300));
    let next = requests_to(&h.poll(t + ms(300)), fast);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].piece, piece);
}

#[test]
fn a_failed_hash_resets_the_piece_and_names_its_peers() {
    let mut h = Hand::new(geo(4, 64 * 1024), SchedulerConfig::default());
    let a = h.seed(ms(0));
    let b = h.seed(ms(0));
    h.s.add_stream(0..4 * 64 * KIB, 0, None, h.at(ms(0)))
        .unwrap();
    let first = h.poll(ms(0));
    let piece0: Vec<(PeerKey, BlockRef)> = requests(&first)
        .into_iter()
        .filter(|(_, block)| block.piece == 0)
        .collect();
    assert_eq!(piece0.len(), 4);
    let mut last = None;
    for (peer, block) in &piece0 {
        last = Some(h.receive(*peer, *block, ms(100)));
    }
    assert_eq!(
        last,
        Some(Receipt::Wanted {
            piece_complete: true
        })
    );
    assert_eq!(h.s.piece_failed(0), Ok(vec![a, b]));
    h.s.check_invariants();
    assert_eq!(h.s.piece_progress(0).unwrap().received, 0);
    let again = h.poll(ms(100));
    let pieces: Vec<u32> = requests(&again).iter().map(|(_, b)| b.piece).collect();
    assert_eq!(
        pieces,
        vec![0; 4],
        "the failed piece is due first: {again:?}"
    );
    h.s.piece_verified(0, h.at(ms(200))).unwrap();
    assert_eq!(h.s.piece_failed(0), Err(ScheduleError::AlreadyVerified(0)));
    // The requests still out for the verified piece are cancelled.
    assert_eq!(cancels(&h.poll(ms(200))).len(), 4);
}

#[test]
fn with_background_off_only_what_streams_need_is_requested() {
    let cfg = SchedulerConfig {
        background: false,
        initial_pipeline: 64,
        ..SchedulerConfig::default()
    };
    let mut h = Hand::new(geo(64, 64 * 1024), cfg);
    let a = h.seed(ms(0));
    let b = h.seed(ms(0));
    let first = h.poll(ms(0));
    assert!(
        requests(&first).is_empty(),
        "no stream, no request: {first:?}"
    );
    assert!(first.contains(&Action::Interested { peer: a }));
    assert!(first.contains(&Action::Interested { peer: b }));
    // A stream at piece 40, slow enough that the horizon is its 8 pieces minimum: those
    // and nothing else.
    let start = 40 * 64 * KIB;
    h.s.add_stream(0..64 * 64 * KIB, start, Some(KIB), h.at(ms(10)))
        .unwrap();
    let pieces: BTreeSet<u32> = requests(&h.poll(ms(10)))
        .iter()
        .map(|(_, block)| block.piece)
        .collect();
    assert_eq!(pieces, (40..48).collect::<BTreeSet<u32>>());
}

#[test]
fn with_new_pieces_held_only_started_pieces_are_requested() {
    let mut h = Hand::new(geo(16, 64 * 1024), SchedulerConfig::default());
    let a = h.seed(ms(0));
    h.s.add_stream(0..16 * 64 * KIB, 0, None, h.at(ms(0)))
        .unwrap();
    let first = requests_to(&h.poll(ms(0)), a);
    assert_eq!(first.len(), 4, "the initial pipeline");
    assert!(first.iter().all(|block| block.piece == 0));
    // Two blocks of piece 0 arrive, the other two are cancelled by a choke; with new
    // pieces held, only piece 0's missing blocks are asked for again.
    h.receive(a, first[0], ms(50));
    h.receive(a, first[1], ms(50));
    h.s.peer_choked(a, h.at(ms(60))).unwrap();
    h.s.peer_unchoked(a, h.at(ms(70))).unwrap();
    h.s.set_new_pieces(false);
    let held = requests_to(&h.poll(ms(70)), a);
    assert_eq!(held, vec![first[2], first[3]], "only the started piece");
    h.receive(a, first[2], ms(80));
    h.receive(a, first[3], ms(80));
    h.s.piece_verified(0, h.at(ms(90))).unwrap();
    assert!(
        requests(&h.poll(ms(90))).is_empty(),
        "nothing started, nothing asked"
    );
    h.s.set_new_pieces(true);
    let released = requests_to(&h.poll(ms(100)), a);
    assert!(!released.is_empty(), "new pieces again once released");
}

#[test]
fn bad_input_from_peers_and_callers_is_refused() {
    let mut h = Hand::new(geo(10, 64 * 1024), SchedulerConfig::default());
    let peer = h.s.add_peer(h.at(ms(0)));
    assert_eq!(
        h.s.peer_bitfield(peer, &[0xFF]),
        Err(ScheduleError::BitfieldLength {
            len: 1,
            expected: 2
        })
    );
    assert_eq!(
        h.s.peer_bitfield(peer, &[0xFF, 0xFF]),
        Err(ScheduleError::BitfieldSpareBits)
    );
    assert!(h.s.peer_bitfield(peer, &[0xFF, 0xC0]).is_ok());
    assert_eq!(
        h.s.peer_have(peer, 10),
        Err(ScheduleError::PieceOutOfRange {
            piece: 10,
            count: 10
        })
    );
    assert!(matches!(
        h.s.add_stream(0..11 * 64 * KIB, 0, None, h.at(ms(0))),
        Err(ScheduleError::BadRange { .. })
    ));
    let odd = BlockRef {
        piece: 0,
        begin: 5,
        length: 16,
    };
    assert_eq!(
        h.s.block_received(peer, odd, h.at(ms(0))),
        Ok(Receipt::Unrequested)
    );
    h.s.check_invariants();
}

/// The reader of the simulation: plays at a bitrate through verified pieces, records how
/// long it waited each time it had to.
struct Player {
    stream: StreamId,
    pos: u64,
    end: u64,
    bitrate: u64,
    waiting_since: Option<Duration>,
    /// (when the wait ended, how long it was)
    waits: Vec<(Duration, Duration)>,
}

impl Player {
    fn tick(&mut self, sim: &mut Sim, dt: Duration) {
        let geo = *sim.sched.geometry();
        let mut budget = (self.bitrate as f64 * dt.as_secs_f64()) as u64;
        let mut blocked = false;
        while budget > 0 && self.pos < self.end {
            let piece = geo.piece_at(self.pos).unwrap();
            if !sim.sched.has_piece(piece) {
                blocked = true;
                break;
            }
            let piece_end = geo.piece_start(piece) + u64::from(geo.piece_size(piece));
            let step = budget.min(piece_end - self.pos);
            self.pos += step;
            budget -= step;
        }
        match (blocked, self.waiting_since) {
            (true, None) => self.waiting_since = Some(sim.now),
            (false, Some(since)) => {
                self.waits.push((sim.now, sim.now - since));
                self.waiting_since = None;
            }
            _ => {}
        }
        sim.sched
            .set_playhead(self.stream, self.pos, sim.at())
            .unwrap();
    }

    fn seek(&mut self, sim: &mut Sim, to: u64) {
        if let Some(since) = self.waiting_since.take() {
            self.waits.push((sim.now, sim.now - since));
        }
        self.pos = to;
        sim.sched.set_playhead(self.stream, to, sim.at()).unwrap();
    }
}

/// The first piece from `from` on that nobody has sent or been asked for yet.
fn untouched_piece(sched: &Scheduler, from: u32) -> u32 {
    (from..sched.geometry().piece_count())
        .find(|p| {
            let progress = sched.piece_progress(*p).unwrap();
            !progress.verified && progress.received == 0 && progress.requested == 0
        })
        .unwrap()
}

#[test]
fn a_simulated_swarm_streams_through_a_stall_and_two_seeks() {
    const PIECES: u64 = 192;
    const PIECE_LEN: u32 = 256 * 1024;
    let total = PIECES * u64::from(PIECE_LEN);
    let cfg = SchedulerConfig {
        horizon: Duration::from_secs(4),
        min_horizon_pieces: 4,
        pipeline_margin: ms(500),
        stall_floor: ms(500),
        seed: 7,
        ..SchedulerConfig::default()
    };
    let mut sim = Sim::new(geo(PIECES, PIECE_LEN), cfg.clone());
    let specs = [
        PeerSpec::seed(1.5 * MIB as f64, 40),
        PeerSpec {
            pieces: Some((0..150).collect()),
            ..PeerSpec::seed(MIB as f64, 80)
        },
        PeerSpec {
            pieces: Some((40..192).collect()),
            ..PeerSpec::seed(MIB as f64, 120)
        },
        PeerSpec::seed(128.0 * KIB as f64, 200),
    ];
    for spec in specs.clone() {
        sim.add_peer(spec);
    }
    let frozen = sim.key(1);
    let bitrate = MIB;
    let stream = sim
        .sched
        .add_stream(0..total, 0, Some(bitrate), sim.at())
        .unwrap();
    let mut player = Player {
        stream,
        pos: 0,
        end: total,
        bitrate,
        waiting_since: None,
        waits: Vec::new(),
    };
    sim.poll();
    let tick = ms(50);
    // Two seeks to pieces nobody has touched yet: forward at 2 s, back at 6 s. Right after
    // the first, one peer freezes holding blocks of the new playhead's piece.
    let (first_seek, second_seek) = (tick * 40, tick * 120);
    let mut stop_at = None;
    let mut frozen_blocks = Vec::new();
    let mut seek_pieces = Vec::new();
    let mut done = false;
    for n in 1..=4000u32 {
        let t = tick * n;
        sim.run_until(t, 200_000);
        if t == first_seek || t == second_seek {
            let from = if t == first_seek { 100 } else { 20 };
            let piece = untouched_piece(&sim.sched, from);
            seek_pieces.push(piece);
            let to = sim.sched.geometry().piece_start(piece);
            player.seek(&mut sim, to);
            let actions = sim.poll();
            if t == first_seek {
                frozen_blocks = requests_to(&actions, frozen)
                    .into_iter()
                    .filter(|b| b.piece == piece)
                    .collect();
                sim.stop_peer(1);
                stop_at = Some(t);
            }
            continue;
        }
        player.tick(&mut sim, tick);
        sim.poll();
        if player.pos >= player.end && sim.sched.is_complete() {
            done = true;
            break;
        }
    }
    assert!(done, "the film played to its end and downloaded whole");
    sim.run_to_end(200_000);
    let stop_at = stop_at.unwrap();
    assert!(
        !frozen_blocks.is_empty(),
        "the frozen peer held blocks of the playhead's piece"
    );

    // Every block arrived exactly once as wanted; the frozen peer's from someone else.
    let geo = *sim.sched.geometry();
    let mut redundant = 0;
    for piece in 0..geo.piece_count() {
        for index in 0..geo.blocks_in(piece) {
            let block = geo.block(piece, index);
            let receipts = sim.receipts.get(&block).cloned().unwrap_or_default();
            let wanted = receipts
                .iter()
                .filter(|(_, r)| matches!(r, Receipt::Wanted { .. }))
                .count();
            assert_eq!(wanted, 1, "{block:?}: {receipts:?}");
            redundant += receipts.len() - wanted;
            assert!(receipts.iter().all(|(_, r)| *r != Receipt::Unrequested));
        }
    }
    let blocks = (total / u64::from(BLOCK_LEN)) as usize;
    assert!(
        redundant * 20 < blocks,
        "{redundant} redundant blocks of {blocks}"
    );
    for block in &frozen_blocks {
        assert!(sim.receipts[block].iter().all(|(peer, _)| *peer != frozen));
    }

    // Both seeks made the player wait, and after the freeze it never waited longer than a
    // duplicate request takes: the stall timeout of the frozen peer's deepest request, plus
    // one fetch elsewhere. Without duplicates it would wait for the snub (8 s).
    let spec = &specs[1];
    let deepest = spec.rtt
        + cfg.pipeline_margin
        + Duration::from_secs_f64(f64::from(BLOCK_LEN) / spec.rate)
        + spec.rtt;
    let bound = cfg.stall_timeout(deepest) + Duration::from_secs(1);
    assert!(bound < cfg.snub_timeout, "the bound says something");
    let after: Vec<(Duration, Duration)> = player
        .waits
        .iter()
        .filter(|(ended, _)| *ended > stop_at)
        .copied()
        .collect();
    assert!(after.len() >= 2, "both seeks waited: {:?}", player.waits);
    for (ended, waited) in &after {
        assert!(
            *waited <= bound,
            "waited {waited:?} until {ended:?} (bound {bound:?}); all waits: {:?}",
            player.waits
        );
    }
}
