//! The verified pieces of a torrent, shared between its task (the only writer), its
//! connections (uploads only serve verified pieces) and its readers (which only return
//! verified bytes).
//!
//! # Invariants
//! - A bit is set only after the piece's bytes are in the storage (the torrent task sets it
//!   when the write, or the check at start, has completed), and is never cleared: a reader
//!   or an upload that sees the bit may read the storage.
//! - Setting a bit uses `Release` and reading it `Acquire`, so whoever sees the bit also
//!   sees everything the writer did before.

use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed-size set of piece indices, readable and settable from any thread.
#[derive(Debug)]
pub(crate) struct VerifiedSet {
    words: Box<[AtomicU64]>,
    len: u32,
}

impl VerifiedSet {
    /// An empty set for `len` pieces.
    pub(crate) fn new(len: u32) -> Self {
        let words = (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        VerifiedSet { words, len }
    }

    /// Whether `piece` is verified (`false` out of range).
    pub(crate) fn contains(&self, piece: u32) -> bool {
        if piece >= self.len {
            return false;
        }
        let word = &self.words[(piece / 64) as usize];
        word.load(Ordering::Acquire) & (1 << (piece % 64)) != 0
    }

    /// Marks `piece` verified (ignored out of range).
    pub(crate) fn insert(&self, piece: u32) {
        if piece < self.len {
            self.words[(piece / 64) as usize].fetch_or(1 << (piece % 64), Ordering::Release);
        }
    }

    /// The set as a BitTorrent bitfield: `ceil(len / 8)` bytes, piece 0 in the high bit.
    pub(crate) fn to_bitfield(&self) -> Vec<u8> {
        let mut bits = vec![0u8; self.len.div_ceil(8) as usize];
        for piece in 0..self.len {
            if self.contains(piece) {
                bits[(piece / 8) as usize] |= 0x80 >> (piece % 8);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verified_set_is_a_bitfield_with_piece_0_in_the_high_bit() {
        let set = VerifiedSet::new(70);
        set.insert(0);
        set.insert(65);
        set.insert(70);
        assert!(set.contains(0) && set.contains(65));
        assert!(!set.contains(1) && !set.contains(70));
        let bits = set.to_bitfield();
        assert_eq!(bits.len(), 9);
        assert_eq!(bits[0], 0x80);
        assert_eq!(bits[8], 0x40);
    }
}
