//! Which addresses a torrent dials, and when it tries again.
//!
//! Addresses come from [`crate::Torrent::add_peers`] (later: trackers, DHT, PEX). Each is
//! dialled when the torrent is live and has room; an attempt that fails (no answer, a
//! refused handshake, the other side still holding our previous connection) is retried
//! after 1 s, 2 s, 4 s, 8 s, then given up until the address is added again or the torrent
//! resumes.
//!
//! # Invariants
//! - At most [`MAX_KNOWN_ADDRESSES`] addresses are known; every address in `ready`,
//!   `retries` or `connecting` is known, and in at most one of them.
//! - `failures[addr]` is below [`MAX_ATTEMPTS`] for an address waiting in `retries`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::MAX_KNOWN_ADDRESSES;

/// Attempts per address before it is given up.
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// The wait before the first retry; it doubles with each failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The addresses of one torrent. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Dialer {
    /// Known addresses and their failed attempts in a row.
    known: BTreeMap<SocketAddr, u32>,
    /// To dial now, in order.
    ready: VecDeque<SocketAddr>,
    /// To dial again at a time.
    retries: BTreeSet<(Instant, SocketAddr)>,
    /// Attempts in progress.
    connecting: BTreeSet<SocketAddr>,
}

impl Dialer {
    /// An address to dial (again): its failures are forgotten.
    pub(crate) fn add(&mut self, addr: SocketAddr) {
        if !self.known.contains_key(&addr) && self.known.len() >= MAX_KNOWN_ADDRESSES {
            return;
        }
        self.known.insert(addr, 0);
        self.retries.retain(|(_, a)| *a != addr);
        if !self.connecting.contains(&addr) && !self.ready.contains(&addr) {
            self.ready.push_back(addr);
        }
    }

    /// Every known address, again (the torrent resumed).
    pub(crate) fn add_all_known(&mut self) {
        let known: Vec<SocketAddr> = self.known.keys().copied().collect();
        for addr in known {
            self.add(addr);
        }
    }

    /// Nothing to dial until addresses are added again (the torrent paused); attempts in
    /// progress run out.
    pub(crate) fn hold(&mut self) {
        self.ready.clear();
        self.retries.clear();
    }

    /// Attempts in progress.
    pub(crate) fn connecting(&self) -> usize {
        self.connecting.len()
    }

    /// The next address to dial, skipping those `skip` says (already connected, banned).
    /// The address counts as an attempt in progress until [`Dialer::connected`] or
    /// [`Dialer::failed`].
    pub(crate) fn next(
        &mut self,
        now: Instant,
        skip: impl Fn(SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        while let Some(&(at, addr)) = self.retries.first() {
            if at > now {
                break;
            }
            self.retries.pop_first();
            self.ready.push_back(addr);
        }
        while let Some(addr) = self.ready.pop_front() {
            if !skip(addr) {
                self.connecting.insert(addr);
                return Some(addr);
            }
        }
        None
    }

    /// The attempt to `addr` gave a registered peer.
    pub(crate) fn connected(&mut self, addr: SocketAddr) {
        self.connecting.remove(&addr);
        if let Some(failures) = self.known.get_mut(&addr) {
            *failures = 0;
        }
    }

    /// The attempt to `addr` failed: retried later, or given up.
    pub(crate) fn failed(&mut self, addr: SocketAddr, now: Instant) {
        if !self.connecting.remove(&addr) {
            return;
        }
        let Some(failures) = self.known.get_mut(&addr) else {
            return;
        };
        *failures += 1;
        if *failures < MAX_ATTEMPTS {
            let backoff = FIRST_BACKOFF * 2u32.pow(*failures - 1);
            self.retries.insert((now + backoff, addr));
        }
    }

    /// When the next retry is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.retries.first().map(|(at, _)| *at)
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        assert!(self.known.len() <= MAX_KNOWN_ADDRESSES);
        let mut seen = BTreeSet::new();
        let all = self
            .ready
            .iter()
            .chain(self.retries.iter().map(|(_, a)| a))
            .chain(self.connecting.iter());
        for addr in all {
            assert!(self.known.contains_key(addr), "{addr} unknown");
            assert!(seen.insert(*addr), "{addr} twice");
        }
        for (_, addr) in &self.retries {
            assert!(self.known[addr] < MAX_ATTEMPTS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_failed_address_is_retried_with_a_growing_wait_then_given_up() {
        let t0 = Instant::now();
        let mut dialer = Dialer::default();
        dialer.add(addr(1));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let Some(next) = dialer.next(now, |_| false) else {
                let Some(at) = dialer.next_retry() else {
                    break;
                };
                waits.push(at - now);
                now = at;
                continue;
            };
            assert_eq!(next, addr(1));
            assert_eq!(dialer.connecting(), 1);
            dialer.failed(next, now);
            dialer.check_invariants();
        }
        assert_eq!(
            waits,
            [1, 2, 4, 8].map(Duration::from_secs).to_vec(),
            "four retries, then given up"
        );
        // Added again: a fresh start.
        dialer.add(addr(1));
        assert_eq!(dialer.next(now, |_| false), Some(addr(1)));
        dialer.connected(addr(1));
        dialer.check_invariants();
        assert_eq!(dialer.connecting(), 0);
    }

    #[test]
    fn the_dialer_skips_what_it_is_told_and_holds_when_paused() {
        let now = Instant::now();
        let mut dialer = Dialer::default();
        for port in 1..=3 {
            dialer.add(addr(port));
            dialer.add(addr(port));
        }
        dialer.check_invariants();
        assert_eq!(dialer.next(now, |a| a == addr(1)), Some(addr(2)));
        dialer.hold();
        assert_eq!(dialer.next(now, |_| false), None);
        dialer.add_all_known();
        dialer.check_invariants();
        let mut got = Vec::new();
        while let Some(a) = dialer.next(now, |_| false) {
            got.push(a);
        }
        assert_eq!(
            got,
            vec![addr(1), addr(3)],
            "the one connecting is not dialled twice"
        );
        for port in 10..(10 + 2 * MAX_KNOWN_ADDRESSES as u16) {
            dialer.add(addr(port));
        }
        dialer.check_invariants();
    }
}
