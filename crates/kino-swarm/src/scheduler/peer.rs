//! What the scheduler knows about one connected peer: its pieces, its choke state, the
//! requests we have in flight at it, and what it has shown of its speed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::bitset::Bitset;
use super::{Block, SchedulerConfig, secs};
use crate::wire::BLOCK_LEN;

/// Shortest rate sample: a sample ends at the first block after this much busy time
/// (requests in flight), so a slow peer's sample holds at least one block.
const SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// A sample also ends after this much busy time without a block: a peer that stops
/// delivering sees its rate fall.
const QUIET_SAMPLE: Duration = Duration::from_secs(2);

/// Weight of a new sample in the smoothed rate.
const RATE_WEIGHT: f64 = 0.3;

/// The lowest rate used as a divisor (bytes/s), so a peer measured at 0 is very slow, not
/// infinitely slow.
pub(super) const MIN_RATE: f64 = 1024.0;

/// Released requests remembered per peer, to recognise a block that crossed our CANCEL.
pub(super) const MAX_RELEASED: usize = 512;

/// A request we sent and the peer has not answered.
#[derive(Clone, Copy, Debug)]
pub(super) struct InFlight {
    pub(super) block: Block,
    pub(super) len: u32,
    pub(super) sent_at: Instant,
    /// The delivery delay expected when it was sent.
    pub(super) expected: Duration,
}

/// The peer's rate, measured over the time it had requests in flight (an idle peer is not
/// slow, only unused).
#[derive(Clone, Debug)]
pub(super) struct RateMeter {
    smoothed: Option<f64>,
    /// Busy time counts from the first byte on: before it, the wait is the first round
    /// trip, not slowness.
    started: bool,
    sample_bytes: u64,
    sample_busy: Duration,
    last: Instant,
}

impl RateMeter {
    fn new(now: Instant) -> Self {
        RateMeter {
            smoothed: None,
            started: false,
            sample_bytes: 0,
            sample_busy: Duration::ZERO,
            last: now,
        }
    }

    /// Accounts the time since the last call as busy or idle; `block` bytes arrived now.
    /// Busy time counts from the first block on (before it, the wait was the first round
    /// trip). A sample ends at a block once it spans `SAMPLE_PERIOD`, or at `QUIET_SAMPLE`.
    fn advance(&mut self, now: Instant, busy: bool, block: Option<u32>) {
        if busy && self.started {
            self.sample_busy += now.saturating_duration_since(self.last);
        }
        self.last = self.last.max(now);
        let Some(bytes) = block else {
            if self.sample_busy >= QUIET_SAMPLE {
                self.fold();
            }
            return;
        };
        if !self.started {
            self.started = true;
            return;
        }
        self.sample_bytes += u64::from(bytes);
        if self.sample_busy >= SAMPLE_PERIOD {
            self.fold();
        }
    }

    fn fold(&mut self) {
        let sample = self.sample_bytes as f64 / self.sample_busy.as_secs_f64();
        self.smoothed = Some(match self.smoothed {
            None => sample,
            Some(old) => old + RATE_WEIGHT * (sample - old),
        });
        self.sample_bytes = 0;
        self.sample_busy = Duration::ZERO;
    }
}

#[derive(Clone, Debug)]
pub(super) struct Peer {
    /// The pieces the peer has said it has.
    pub(super) has: Bitset,
    /// How many of `has` we do not have verified.
    pub(super) wanted: u32,
    pub(super) choking_us: bool,
    /// Our interest as last announced (an `Interested`/`NotInterested` action).
    pub(super) interested: bool,
    /// The peer's `reqq` (BEP 10 extended handshake), if it sent one.
    pub(super) reqq: Option<u32>,
    /// Our requests at this peer, in the order they were sent (the order it serves them).
    pub(super) in_flight: Vec<InFlight>,
    pub(super) in_flight_bytes: u64,
    /// Requests we cancelled or dropped (choke) that the peer may still answer.
    pub(super) released: VecDeque<Block>,
    pub(super) rate: RateMeter,
    /// The smallest request-to-block time seen (see `learn`).
    pub(super) min_took: Option<Duration>,
    /// Since when we have been waiting for a block from it (requests in flight, none arrived
    /// since); `None` with nothing in flight.
    pub(super) waiting_since: Option<Instant>,
}

impl Peer {
    pub(super) fn new(piece_count: u32, now: Instant) -> Self {
        Peer {
            has: Bitset::new(piece_count),
            wanted: 0,
            choking_us: true,
            interested: false,
            reqq: None,
            in_flight: Vec::new(),
            in_flight_bytes: 0,
            released: VecDeque::new(),
            rate: RateMeter::new(now),
            min_took: None,
            waiting_since: None,
        }
    }

    /// Moves the peer's clock to `now`; call before changing `in_flight`.
    pub(super) fn tick(&mut self, now: Instant) {
        let busy = !self.in_flight.is_empty();
        self.rate.advance(now, busy, None);
    }

    /// The measured rate in bytes/s, if a sample has been taken.
    pub(super) fn measured_rate(&self) -> Option<f64> {
        self.rate.smoothed
    }

    /// The rate used for predictions: measured, else the configured guess.
    pub(super) fn rate_or_guess(&self, cfg: &SchedulerConfig) -> f64 {
        self.measured_rate()
            .unwrap_or(cfg.unknown_peer_rate as f64)
            .max(MIN_RATE)
    }

    pub(super) fn rtt_or_guess(&self, cfg: &SchedulerConfig) -> Duration {
        self.rtt().unwrap_or(cfg.default_rtt)
    }

    pub(super) fn is_seed(&self) -> bool {
        self.has.is_full()
    }

    pub(super) fn snubbed(&self, now: Instant, cfg: &SchedulerConfig) -> bool {
        self.waiting_since
            .is_some_and(|since| now.saturating_duration_since(since) >= cfg.snub_timeout)
    }

    /// The protocol bound on requests in flight: its `reqq` (or our maximum when it sent
    /// none), never above our maximum, at least 1.
    pub(super) fn hard_cap(&self, cfg: &SchedulerConfig) -> u32 {
        self.reqq
            .unwrap_or(cfg.max_pipeline)
            .min(cfg.max_pipeline)
            .max(1)
    }

    /// How many requests to keep in flight: the bytes it delivers in one RTT plus the margin,
    /// in blocks, within [min_pipeline, hard cap]; `initial_pipeline` until it has a rate.
    pub(super) fn pipeline_target(&self, cfg: &SchedulerConfig) -> u32 {
        let cap = self.hard_cap(cfg);
        let wanted = match self.measured_rate() {
            None => cfg.initial_pipeline,
            Some(rate) => {
                let window = (self.rtt_or_guess(cfg) + cfg.pipeline_margin).as_secs_f64();
                let blocks = (rate * window / f64::from(BLOCK_LEN)).ceil();
                // saturating float-to-int conversion
                blocks as u32
            }
        };
        wanted.max(cfg.min_pipeline).min(cap)
    }

    /// Free request slots now.
    pub(super) fn room(&self, cfg: &SchedulerConfig) -> u32 {
        self.pipeline_target(cfg)
            .saturating_sub(self.in_flight.len() as u32)
    }

    /// The delay until a block of `len` bytes requested now (after `extra` bytes more
    /// assigned in this pass) would arrive: queued bytes / rate + RTT.
    pub(super) fn expected_delivery(
        &self,
        extra: u64,
        len: u32,
        cfg: &SchedulerConfig,
    ) -> Duration {
        let bytes = self.in_flight_bytes + extra + u64::from(len);
        secs(bytes as f64 / self.rate_or_guess(cfg)) + self.rtt_or_guess(cfg)
    }

    /// How many of the oldest requests are already being answered (on the wire or about to
    /// be): what one RTT at its rate covers, at least one.
    pub(super) fn committed_requests(&self, cfg: &SchedulerConfig) -> usize {
        let bytes = self.rate_or_guess(cfg) * self.rtt_or_guess(cfg).as_secs_f64();
        ((bytes / f64::from(BLOCK_LEN)).ceil() as usize).max(1)
    }

    /// Whether it is not delivering now, whatever its rate says: its oldest request is
    /// overdue and no block came for `stall_floor`.
    pub(super) fn head_stalled(&self, now: Instant, cfg: &SchedulerConfig) -> bool {
        let quiet = self
            .waiting_since
            .is_some_and(|since| now.saturating_duration_since(since) >= cfg.stall_floor);
        quiet
            && self.in_flight.first().is_some_and(|head| {
                now.saturating_duration_since(head.sent_at) >= cfg.stall_timeout(head.expected)
            })
    }

    pub(super) fn position(&self, block: Block) -> Option<usize> {
        self.in_flight.iter().position(|r| r.block == block)
    }

    /// Adds a request; the caller updates the block's slot.
    pub(super) fn push_request(
        &mut self,
        block: Block,
        len: u32,
        now: Instant,
        expected: Duration,
    ) {
        self.in_flight.push(InFlight {
            block,
            len,
            sent_at: now,
            expected,
        });
        self.in_flight_bytes += u64::from(len);
        if self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
    }

    /// Removes the request at `index`; the caller updates the block's slot.
    pub(super) fn take_request(&mut self, index: usize) -> InFlight {
        let request = self.in_flight.remove(index);
        self.in_flight_bytes -= u64::from(request.len);
        if self.in_flight.is_empty() {
            self.waiting_since = None;
        }
        request
    }

    /// Remembers a request we released so a late answer is recognised.
    pub(super) fn remember_released(&mut self, block: Block) {
        if self.released.len() >= MAX_RELEASED {
            self.released.pop_front();
        }
        self.released.push_back(block);
    }

    /// Forgets a released request; whether it was remembered.
    pub(super) fn forget_released(&mut self, block: Block) -> bool {
        match self.released.iter().position(|b| *b == block) {
            Some(i) => {
                self.released.remove(i);
                true
            }
            None => false,
        }
    }

    /// Accounts a block of `len` bytes arriving at `now`, before the request list changes:
    /// its bytes belong to the busy time that ends now.
    pub(super) fn on_block(&mut self, len: u32, now: Instant) {
        let busy = !self.in_flight.is_empty();
        self.rate.advance(now, busy, Some(len));
    }

    /// Learns from a block that answered `request` (already taken out of the list) at `now`:
    /// the snub clock restarts, and the RTT estimate may fall.
    ///
    /// A block arrives one RTT plus its own transfer time after its request at the soonest,
    /// later when it queued behind other requests at the peer: the smallest request-to-block
    /// time seen is the tightest bound, and is exact for a request sent to an idle peer (at
    /// the start, after a pause). A full pipeline hides the RTT, so queueing never raises
    /// the estimate. The transfer time is taken off when the RTT is read, at the rate known
    /// then (see `rtt`).
    pub(super) fn learn(&mut self, request: &InFlight, now: Instant) {
        self.waiting_since = (!self.in_flight.is_empty()).then_some(now);
        let took = now.saturating_duration_since(request.sent_at);
        self.min_took = Some(self.min_took.map_or(took, |min| min.min(took)));
    }

    /// The RTT estimate: the smallest request-to-block time less one block's transfer at
    /// the measured rate (at least 1 ms).
    pub(super) fn rtt(&self) -> Option<Duration> {
        let took = self.min_took?;
        let transfer = self.measured_rate().map_or(Duration::ZERO, |rate| {
            secs(f64::from(BLOCK_LEN) / rate.max(MIN_RATE))
        });
        Some(took.saturating_sub(transfer).max(Duration::from_millis(1)))
    }

    /// A block we had released (cancelled or dropped at a choke) arrived: the snub clock
    /// restarts as for any block.
    pub(super) fn on_late_block(&mut self, now: Instant) {
        if !self.in_flight.is_empty() {
            self.waiting_since = Some(now);
        }
    }
}
