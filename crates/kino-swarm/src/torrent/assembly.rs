//! Pieces being assembled from blocks, and the record that finds who sent a bad block.
//!
//! [`Assembly`] buffers the blocks of each unverified piece until the piece is complete;
//! the torrent task then hashes it (off the runtime) and writes it. It counts the bytes it
//! holds, so the torrent task can hold new pieces when it is over its bound.
//!
//! [`Suspects`] decides whom a hash failure is blamed on. A piece that one peer sent alone
//! is that peer's fault at once. A piece mixed from several peers is not blamed yet: the
//! SHA-1 of each of its blocks is recorded with its sender, and when the piece later passes
//! its check, every peer whose block differed from the good one is blamed (libtorrent calls
//! this smart ban). An honest peer whose blocks shared a piece with a liar's is never
//! blamed: on loopback, or behind one NAT, a wrong strike could ban everyone.
//!
//! # Invariants
//! - `Assembly::bytes` is the sum of the buffers' lengths; a buffer is exactly its piece's
//!   size; `received` counts the blocks with a sender.
//! - `Suspects` holds at most `MAX_SUSPECTS` pieces and at most `MAX_DIGESTS_PER_BLOCK`
//!   digests per block: what a hostile peer can make us remember is bounded.

use std::collections::{BTreeMap, BTreeSet};

use sha1::{Digest, Sha1};

use crate::geometry::Geometry;
use crate::scheduler::PeerKey;
use crate::wire::{BLOCK_LEN, BlockRef};

/// Pieces with a failure on record at once.
const MAX_SUSPECTS: usize = 64;

/// Digests remembered per block (one per failed attempt).
const MAX_DIGESTS_PER_BLOCK: usize = 4;

/// The blocks of one piece received so far.
#[derive(Debug)]
pub(crate) struct PieceBuf {
    /// The piece's bytes (zeros where no block arrived yet).
    pub(crate) data: Vec<u8>,
    /// Who sent each block.
    pub(crate) senders: Vec<Option<PeerKey>>,
    received: u32,
}

/// The buffers of the pieces being assembled. See the module docs.
#[derive(Debug)]
pub(crate) struct Assembly {
    geo: Geometry,
    pieces: BTreeMap<u32, PieceBuf>,
    bytes: usize,
}

impl Assembly {
    pub(crate) fn new(geometry: Geometry) -> Self {
        Assembly {
            geo: geometry,
            pieces: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// Bytes buffered.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores a block the scheduler wanted (it checked the block is one of the torrent's).
    /// Returns `false` if the block does not fit its piece (nothing stored).
    pub(crate) fn put(&mut self, sender: PeerKey, block: BlockRef, data: &[u8]) -> bool {
        let size = self.geo.piece_size(block.piece) as usize;
        let begin = block.begin as usize;
        if data.len() != block.length as usize || begin + data.len() > size || size == 0 {
            return false;
        }
        let blocks = self.geo.blocks_in(block.piece) as usize;
        let buf = self.pieces.entry(block.piece).or_insert_with(|| {
            self.bytes += size;
            PieceBuf {
                data: vec![0; size],
                senders: vec![None; blocks],
                received: 0,
            }
        });
        let index = begin / BLOCK_LEN as usize;
        buf.data[begin..begin + data.len()].copy_from_slice(data);
        if buf.senders[index].replace(sender).is_none() {
            buf.received += 1;
        }
        true
    }

    /// Takes a piece's buffer out (complete, to be hashed; or dropped).
    pub(crate) fn take(&mut self, piece: u32) -> Option<PieceBuf> {
        let buf = self.pieces.remove(&piece)?;
        self.bytes -= buf.data.len();
        Some(buf)
    }

    /// The partial piece with the fewest blocks, the cheapest to drop when memory is short.
    pub(crate) fn least_complete(&self) -> Option<u32> {
        self.pieces
            .iter()
            .min_by_key(|(piece, buf)| (buf.received, std::cmp::Reverse(**piece)))
            .map(|(piece, _)| *piece)
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        let bytes: usize = self.pieces.values().map(|b| b.data.len()).sum();
        assert_eq!(bytes, self.bytes);
        for (piece, buf) in &self.pieces {
            assert_eq!(buf.data.len(), self.geo.piece_size(*piece) as usize);
            assert_eq!(buf.received as usize, buf.senders.iter().flatten().count());
        }
    }
}

/// The SHA-1 of each 16 KiB block of `data`.
pub(crate) fn block_digests(data: &[u8]) -> Vec<[u8; 20]> {
    data.chunks(BLOCK_LEN as usize)
        .map(|block| Sha1::digest(block).into())
        .collect()
}

#[derive(Debug)]
struct Suspect {
    /// Per block: (sender, digest of what it sent), one per failed attempt.
    blocks: Vec<Vec<(PeerKey, [u8; 20])>>,
    /// Insertion order, to forget the oldest first.
    seq: u64,
}

/// The failed pieces waiting to be verified, to blame who sent the bad blocks. See the
/// module docs.
#[derive(Debug, Default)]
pub(crate) struct Suspects {
    pieces: BTreeMap<u32, Suspect>,
    next_seq: u64,
}

impl Suspects {
    /// `piece` failed its check. `senders` and `digests` are per block. Returns whom to
    /// blame now: the sender if one peer sent every block, else nobody yet (the digests are
    /// kept until the piece verifies).
    pub(crate) fn failed(
        &mut self,
        piece: u32,
        senders: &[Option<PeerKey>],
        digests: &[[u8; 20]],
    ) -> Vec<PeerKey> {
        let distinct: BTreeSet<PeerKey> = senders.iter().flatten().copied().collect();
        if distinct.len() == 1 {
            return distinct.into_iter().collect();
        }
        if !self.pieces.contains_key(&piece) && self.pieces.len() >= MAX_SUSPECTS {
            let oldest = self
                .pieces
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.pieces.remove(&oldest);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let suspect = self.pieces.entry(piece).or_insert_with(|| Suspect {
            blocks: vec![Vec::new(); senders.len()],
            seq,
        });
        for (index, (sender, digest)) in senders.iter().zip(digests).enumerate() {
            if let (Some(sender), Some(seen)) = (sender, suspect.blocks.get_mut(index))
                && seen.len() < MAX_DIGESTS_PER_BLOCK
            {
                seen.push((*sender, *digest));
            }
        }
        Vec::new()
    }

    /// Whether a failure of `piece` is on record: its verification should compute the
    /// blocks' digests.
    pub(crate) fn wants_digests(&self, piece: u32) -> bool {
        self.pieces.contains_key(&piece)
    }

    /// `piece` passed its check, its good blocks having these digests (`None`: not
    /// computed). Returns the peers that had sent a different block, once each.
    pub(crate) fn verified(&mut self, piece: u32, digests: Option<&[[u8; 20]]>) -> Vec<PeerKey> {
        let Some(suspect) = self.pieces.remove(&piece) else {
            return Vec::new();
        };
        let Some(good) = digests else {
            return Vec::new();
        };
        let mut liars = BTreeSet::new();
        for (seen, good) in suspect.blocks.iter().zip(good) {
            for (sender, digest) in seen {
                if digest != good {
                    liars.insert(*sender);
                }
            }
        }
        liars.into_iter().collect()
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        assert!(self.pieces.len() <= MAX_SUSPECTS);
        for s in self.pieces.values() {
            assert!(s.blocks.iter().all(|b| b.len() <= MAX_DIGESTS_PER_BLOCK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Scheduler, SchedulerConfig};

    /// Two real peer keys (the type has no public constructor).
    fn keys() -> (PeerKey, PeerKey) {
        let geo = Geometry::new(1, 1).unwrap();
        let mut s = Scheduler::new(geo, SchedulerConfig::default());
        let now = std::time::Instant::now();
        (s.add_peer(now), s.add_peer(now))
    }

    #[test]
    fn a_piece_is_assembled_from_blocks_of_several_peers() {
        let geo = Geometry::new(3 * 32768, 32768).unwrap();
        let (a, b) = keys();
        let mut asm = Assembly::new(geo);
        assert!(asm.put(a, geo.block(1, 0), &[1; BLOCK_LEN as usize]));
        assert!(!asm.put(a, geo.block(1, 1), &[1; 10]), "wrong length");
        asm.check_invariants();
        assert_eq!(asm.bytes(), 32768);
        assert!(asm.put(b, geo.block(1, 1), &[2; BLOCK_LEN as usize]));
        assert!(asm.put(b, geo.block(2, 0), &[2; BLOCK_LEN as usize]));
        asm.check_invariants();
        assert_eq!(asm.least_complete(), Some(2));
        let piece = asm.take(1).unwrap();
        assert_eq!(piece.senders, vec![Some(a), Some(b)]);
        assert_eq!(&piece.data[..2], &[1, 1]);
        assert_eq!(piece.data[32767], 2);
        assert_eq!(asm.bytes(), 32768);
        asm.check_invariants();
    }

    #[test]
    fn only_the_peer_whose_block_differed_is_blamed_for_a_mixed_piece() {
        let (honest, liar) = keys();
        let good = vec![5u8; 2 * BLOCK_LEN as usize];
        let mut bad = good.clone();
        bad[BLOCK_LEN as usize] = 6;
        let mut suspects = Suspects::default();
        let blame = suspects.failed(0, &[Some(honest), Some(liar)], &block_digests(&bad));
        assert!(blame.is_empty(), "not known yet who lied");
        assert!(suspects.wants_digests(0));
        suspects.check_invariants();
        let blame = suspects.verified(0, Some(&block_digests(&good)));
        assert_eq!(blame, vec![liar]);
        assert!(!suspects.wants_digests(0));
        // A piece one peer sent alone is its fault at once.
        assert_eq!(
            suspects.failed(1, &[Some(liar), Some(liar)], &block_digests(&bad)),
            vec![liar]
        );
        assert!(!suspects.wants_digests(1));
    }

    #[test]
    fn the_suspect_record_is_bounded() {
        let (a, b) = keys();
        let mut suspects = Suspects::default();
        let digests = block_digests(&[0u8; 2 * BLOCK_LEN as usize]);
        for piece in 0..1000 {
            for _ in 0..10 {
                suspects.failed(piece, &[Some(a), Some(b)], &digests);
            }
        }
        suspects.check_invariants();
        assert!(suspects.wants_digests(999));
        assert!(!suspects.wants_digests(0), "the oldest is forgotten");
    }
}
