//! The upload rate cap: a token bucket every connection consults before sending a block.
//!
//! The bucket fills at the cap's rate up to [`BURST`] worth of bytes (at least one block),
//! and starts full. [`UploadBudget::take`] either takes the bytes (they may be sent now) or
//! says how long to wait before asking again. A block larger than the bucket is allowed
//! once the bucket is full and leaves it in debt, so the long-run rate stays the cap.

use std::time::{Duration, Instant};

use crate::wire::BLOCK_LEN;

/// How much sending the bucket lets through at once: this long at the cap's rate.
pub const BURST: Duration = Duration::from_millis(250);

/// Slack for floating-point rounding when comparing tokens (bytes).
const EPSILON: f64 = 1e-6;

/// The upload rate cap (engine-wide: one budget shared by every connection).
#[derive(Clone, Debug)]
pub struct UploadBudget {
    /// Bytes per second; `None`: no cap.
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
}

impl UploadBudget {
    /// A budget of `rate` bytes per second (`None`: unlimited; 0 counts as 1 B/s), full.
    pub fn new(rate: Option<u64>, now: Instant) -> Self {
        let mut budget = UploadBudget {
            rate: rate.map(|r| r.max(1)),
            tokens: 0.0,
            last: now,
        };
        budget.tokens = budget.capacity();
        budget
    }

    /// No cap.
    pub fn unlimited(now: Instant) -> Self {
        Self::new(None, now)
    }

    /// The cap in bytes per second, `None` if there is none.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// Changes the cap (the tokens saved so far are kept, within the new bucket size).
    pub fn set_rate(&mut self, rate: Option<u64>, now: Instant) {
        self.refill(now);
        self.rate = rate.map(|r| r.max(1));
        self.tokens = self.tokens.min(self.capacity());
    }

    /// Asks to send `bytes` now: `None` means go (the bytes are taken), `Some(wait)` means
    /// ask again after `wait` (nothing is taken).
    pub fn take(&mut self, bytes: u32, now: Instant) -> Option<Duration> {
        let Some(rate) = self.rate else {
            return None; // no cap: go
        };
        let rate = rate as f64;
        self.refill(now);
        let need = f64::from(bytes).min(self.capacity());
        if self.tokens + EPSILON >= need {
            self.tokens -= f64::from(bytes);
            return None;
        }
        // Round up to the microsecond, so that waiting this long is always enough.
        let micros = ((need - self.tokens) / rate * 1e6).ceil().max(1.0);
        Some(Duration::from_micros(micros.min(1e15) as u64))
    }

    /// The bucket's size in bytes: `BURST` at the cap, at least one block.
    fn capacity(&self) -> f64 {
        match self.rate {
            Some(rate) => (rate as f64 * BURST.as_secs_f64()).max(f64::from(BLOCK_LEN)),
            None => f64::INFINITY,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        if let Some(rate) = self.rate {
            self.tokens = (self.tokens + elapsed.as_secs_f64() * rate as f64).min(self.capacity());
        }
    }
}
