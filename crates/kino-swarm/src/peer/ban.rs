//! The peers banned for the session: a peer whose blocks were in two pieces that failed
//! their hash check is banned, by address, until the session ends.
//!
//! A piece that fails names every peer that sent one of its blocks
//! ([`crate::Scheduler::piece_failed`]); each gets a strike. One strike is forgiven (a bit
//! flipped on the way, or another peer's bad block in the same piece); the second bans.
//! Keys are addresses, not peer ids (a peer id is the peer's own choice): an IPv4 address,
//! or an IPv6 address's /64 prefix, since one host is usually given a whole /64 to hop
//! around in. An IPv4-mapped IPv6 address counts as the IPv4 address.
//!
//! The list is bounded: when it is full, the oldest address with a single strike is
//! forgotten first, then the oldest ban.
//!
//! # Invariants (checked by [`BanList::check_invariants`])
//! - At most `capacity` addresses are kept; each has 1 or [`STRIKES_TO_BAN`] strikes.
//! - Keys are normalised (IPv4, or an IPv6 /64 prefix with its host bits zero).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

/// Addresses remembered by [`BanList::default`].
pub const DEFAULT_BAN_CAPACITY: usize = 1024;

/// Hash failures that ban an address.
pub const STRIKES_TO_BAN: u8 = 2;

/// What a hash failure did to an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strike {
    /// Counted; the address is not banned yet (it has this many strikes).
    Counted(u8),
    /// The address is banned: close its connections and refuse it.
    Banned,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    strikes: u8,
    /// When the entry was last changed, in insertion order: the oldest goes first.
    seq: u64,
}

/// Strikes and bans by address, for one session. See the module docs.
#[derive(Clone, Debug)]
pub struct BanList {
    entries: BTreeMap<IpAddr, Entry>,
    capacity: usize,
    next_seq: u64,
}

impl Default for BanList {
    fn default() -> Self {
        BanList::new(DEFAULT_BAN_CAPACITY)
    }
}

impl BanList {
    /// An empty list remembering at most `capacity` addresses (at least 1).
    pub fn new(capacity: usize) -> Self {
        BanList {
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.entries
            .get(&key(ip))
            .is_some_and(|e| e.strikes >= STRIKES_TO_BAN)
    }

    /// The peer at `ip` sent a block of a piece that failed its hash check.
    pub fn hash_failure(&mut self, ip: IpAddr) -> Strike {
        let strikes = self.entries.get(&key(ip)).map_or(0, |e| e.strikes);
        self.set(ip, (strikes + 1).min(STRIKES_TO_BAN))
    }

    /// Bans `ip` at once (it sent something only a hostile peer sends).
    pub fn ban(&mut self, ip: IpAddr) {
        self.set(ip, STRIKES_TO_BAN);
    }

    /// How many addresses are banned.
    pub fn banned(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.strikes >= STRIKES_TO_BAN)
            .count()
    }

    fn set(&mut self, ip: IpAddr, strikes: u8) -> Strike {
        let ip = key(ip);
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.capacity {
            self.evict();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(ip, Entry { strikes, seq });
        if strikes >= STRIKES_TO_BAN {
            Strike::Banned
        } else {
            Strike::Counted(strikes)
        }
    }

    /// Forgets the oldest single-strike address, or the oldest ban if none.
    fn evict(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.strikes >= STRIKES_TO_BAN, e.seq))
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.entries.remove(&ip);
        }
    }

    /// Checks every invariant of the module docs.
    ///
    /// # Panics
    /// When one does not hold: a bug in this module. Meant for tests.
    pub fn check_invariants(&self) {
        assert!(self.entries.len() <= self.capacity, "over capacity");
        for (ip, entry) in &self.entries {
            assert!(
                (1..=STRIKES_TO_BAN).contains(&entry.strikes),
                "{ip}: strikes"
            );
            assert_eq!(key(*ip), *ip, "{ip}: key not normalised");
        }
    }
}

/// The key of an address: IPv4 as is (also when mapped into IPv6), IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn two_hash_failures_ban_the_peer() {
        let mut bans = BanList::default();
        assert_eq!(bans.hash_failure(v4(1)), Strike::Counted(1));
        assert!(!bans.is_banned(v4(1)), "one strike is forgiven");
        assert_eq!(bans.hash_failure(v4(2)), Strike::Counted(1));
        assert_eq!(bans.hash_failure(v4(1)), Strike::Banned);
        assert!(bans.is_banned(v4(1)));
        assert!(
            !bans.is_banned(v4(2)),
            "another address keeps its one strike"
        );
        assert_eq!(bans.hash_failure(v4(1)), Strike::Banned, "stays banned");
        assert_eq!(bans.banned(), 1);
        bans.check_invariants();
    }

    #[test]
    fn an_ipv6_host_cannot_hop_out_of_its_ban_within_its_64() {
        let mut bans = BanList::default();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        bans.hash_failure(first);
        assert_eq!(bans.hash_failure(second), Strike::Banned);
        assert!(bans.is_banned("2001:db8:1:2:abcd::1".parse().unwrap()));
        assert!(!bans.is_banned(elsewhere));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        bans.ban(mapped);
        assert!(
            bans.is_banned(v4(7)),
            "a mapped address is its IPv4 address"
        );
        bans.check_invariants();
    }

    #[test]
    fn the_ban_list_is_bounded_and_forgets_single_strikes_first() {
        let mut bans = BanList::new(4);
        bans.ban(v4(1));
        bans.ban(v4(2));
        for last in 10..100 {
            bans.hash_failure(v4(last));
            bans.check_invariants();
        }
        assert!(
            bans.is_banned(v4(1)) && bans.is_banned(v4(2)),
            "bans outlive strikes"
        );
        for last in 200..210 {
            bans.ban(v4(last));
            bans.check_invariants();
        }
        assert_eq!(bans.banned(), 4);
        assert!(
            bans.is_banned(v4(209)) && !bans.is_banned(v4(1)),
            "oldest ban goes"
        );
    }
}
