//! A small discrete-event simulation of a swarm, for the scheduler's tests: simulated peers
//! with a rate and an RTT serve requests in order, one block at a time; CANCELs remove
//! queued requests; a peer can stop answering. Time is simulated; the scheduler's
//! invariants are checked after every event.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use super::{Action, PeerKey, Receipt, Scheduler, SchedulerConfig};
use crate::geometry::Geometry;
use crate::wire::BlockRef;

/// How a simulated peer behaves.
#[derive(Clone, Debug)]
pub(super) struct PeerSpec {
    /// Upload rate in bytes/s.
    pub rate: f64,
    /// Round-trip time.
    pub rtt: Duration,
    /// The pieces it has; `None`: all of them (a seed, announced with `have all`).
    pub pieces: Option<Vec<u32>>,
    /// Its `reqq`, if it announces one.
    pub reqq: Option<u32>,
    /// From this simulated time on it answers nothing (a frozen connection).
    pub stop_at: Option<Duration>,
}

impl PeerSpec {
    pub fn seed(rate: f64, rtt_ms: u64) -> Self {
        PeerSpec {
            rate,
            rtt: Duration::from_millis(rtt_ms),
            pieces: None,
            reqq: None,
            stop_at: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    RequestArrives { peer: usize, block: BlockRef },
    CancelArrives { peer: usize, block: BlockRef },
    Served { peer: usize, block: BlockRef },
    BlockArrives { peer: usize, block: BlockRef },
    UnchokeArrives { peer: usize },
    Wakeup,
}

struct SimPeer {
    key: PeerKey,
    spec: PeerSpec,
    queue: VecDeque<BlockRef>,
    serving: bool,
}

impl SimPeer {
    fn stopped(&self, now: Duration) -> bool {
        self.spec.stop_at.is_some_and(|at| now >= at)
    }
}

pub(super) struct Sim {
    pub sched: Scheduler,
    pub t0: Instant,
    pub now: Duration,
    /// Poll the scheduler (and send what it says) after every event.
    pub auto_poll: bool,
    peers: Vec<SimPeer>,
    events: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
    wakeups: BTreeSet<Duration>,
    /// Every action the scheduler returned, with its time.
    pub actions: Vec<(Duration, Action)>,
    /// Every receipt, per block.
    pub receipts: BTreeMap<BlockRef, Vec<(PeerKey, Receipt)>>,
    /// When each piece was verified.
    pub verified_at: BTreeMap<u32, Duration>,
    /// Events handled.
    pub steps: usize,
}

impl Sim {
    pub fn new(geo: Geometry, cfg: SchedulerConfig) -> Self {
        Sim {
            sched: Scheduler::new(geo, cfg),
            t0: Instant::now(),
            now: Duration::ZERO,
            auto_poll: true,
            peers: Vec::new(),
            events: BinaryHeap::new(),
            seq: 0,
            wakeups: BTreeSet::new(),
            actions: Vec::new(),
            receipts: BTreeMap::new(),
            verified_at: BTreeMap::new(),
            steps: 0,
        }
    }

    pub fn at(&self) -> Instant {
        self.t0 + self.now
    }

    /// Connects a simulated peer now; returns its index.
    pub fn add_peer(&mut self, spec: PeerSpec) -> usize {
        let now = self.at();
        let key = self.sched.add_peer(now);
        match &spec.pieces {
            None => self.sched.peer_have_all(key).unwrap(),
            Some(pieces) => {
                for &piece in pieces {
                    self.sched.peer_have(key, piece).unwrap();
                }
            }
        }
        if let Some(reqq) = spec.reqq {
            self.sched.peer_reqq(key, reqq, now).unwrap();
        }
        self.peers.push(SimPeer {
            key,
            spec,
            queue: VecDeque::new(),
            serving: false,
        });
        self.sched.check_invariants();
        self.peers.len() - 1
    }

    /// The peer stops answering now: nothing it queued or sent arrives any more.
    pub fn stop_peer(&mut self, peer: usize) {
        self.peers[peer].spec.stop_at = Some(self.now);
    }

    pub fn key(&self, peer: usize) -> PeerKey {
        self.peers[peer].key
    }

    pub fn index_of(&self, key: PeerKey) -> usize {
        self.peers.iter().position(|p| p.key == key).unwrap()
    }

    fn push(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    /// Polls the scheduler and puts its actions on the simulated wire; returns them.
    pub fn poll(&mut self) -> Vec<Action> {
        let now = self.at();
        let actions = self.sched.poll_actions(now);
        self.sched.check_invariants();
        for action in &actions {
            self.actions.push((self.now, *action));
            match *action {
                Action::Request { peer, block } => {
                    let i = self.index_of(peer);
                    let at = self.now + self.peers[i].spec.rtt / 2;
                    self.push(at, Event::RequestArrives { peer: i, block });
                }
                Action::Cancel { peer, block } => {
                    let i = self.index_of(peer);
                    let at = self.now + self.peers[i].spec.rtt / 2;
                    self.push(at, Event::CancelArrives { peer: i, block });
                }
                Action::Interested { peer } => {
                    let i = self.index_of(peer);
                    let at = self.now + self.peers[i].spec.rtt;
                    self.push(at, Event::UnchokeArrives { peer: i });
                }
                Action::NotInterested { .. } => {}
            }
        }
        if let Some(wake) = self.sched.next_wakeup(now) {
            let wake = wake - self.t0;
            if self.wakeups.insert(wake) {
                self.push(wake, Event::Wakeup);
            }
        }
        actions
    }

    /// Handles the next event (and polls); false when there is none.
    pub fn step(&mut self) -> bool {
        let Some(Reverse((at, _, event))) = self.events.pop() else {
            return false;
        };
        self.steps += 1;
        self.now = self.now.max(at);
        let now = self.at();
        match event {
            Event::RequestArrives { peer, block } => {
                if !self.peers[peer].stopped(self.now) {
                    self.peers[peer].queue.push_back(block);
                    self.serve_next(peer);
                }
            }
            Event::CancelArrives { peer, block } => {
                self.peers[peer].queue.retain(|b| *b != block);
            }
            Event::Served { peer, block } => {
                self.peers[peer].serving = false;
                if !self.peers[peer].stopped(self.now) {
                    let at = self.now + self.peers[peer].spec.rtt / 2;
                    self.push(at, Event::BlockArrives { peer, block });
                    self.serve_next(peer);
                }
            }
            Event::BlockArrives { peer, block } => {
                if !self.peers[peer].stopped(self.now) {
                    let key = self.peers[peer].key;
                    let receipt = self.sched.block_received(key, block, now).unwrap();
                    self.receipts.entry(block).or_default().push((key, receipt));
                    if receipt
                        == (Receipt::Wanted {
                            piece_complete: true,
                        })
                    {
                        self.sched.piece_verified(block.piece, now).unwrap();
                        self.verified_at.insert(block.piece, self.now);
                    }
                }
            }
            Event::UnchokeArrives { peer } => {
                let key = self.peers[peer].key;
                self.sched.peer_unchoked(key, now).unwrap();
            }
            Event::Wakeup => {
                self.wakeups.remove(&self.now);
            }
        }
        self.sched.check_invariants();
        if self.auto_poll {
            self.poll();
        }
        true
    }

    fn serve_next(&mut self, peer: usize) {
        let p = &mut self.peers[peer];
        if p.serving {
            return;
        }
        let Some(block) = p.queue.pop_front() else {
            return;
        };
        p.serving = true;
        let took = Duration::from_secs_f64(f64::from(block.length) / p.spec.rate);
        let at = self.now + took;
        self.push(at, Event::Served { peer, block });
    }

    /// Handles events up to simulated time `until` (at most `max_steps` of them).
    pub fn run_until(&mut self, until: Duration, max_steps: usize) {
        let start = self.steps;
        while let Some(Reverse((at, _, _))) = self.events.peek() {
            if *at > until {
                break;
            }
            assert!(
                self.steps - start < max_steps,
                "simulation did not reach {until:?} in {max_steps} steps"
            );
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Handles events until none is left (at most `max_steps`).
    pub fn run_to_end(&mut self, max_steps: usize) {
        let start = self.steps;
        while self.step() {
            assert!(self.steps - start < max_steps, "simulation did not settle");
        }
    }
}
