//! The shape of a torrent's data: pieces of a fixed length (the last one shorter), each cut
//! into 16 KiB blocks (the last block of a piece shorter when the piece is).

use std::ops::Range;

use thiserror::Error;

use crate::wire::{BLOCK_LEN, BlockRef};

/// Why a torrent's shape was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum GeometryError {
    /// The torrent has no data.
    #[error("the torrent's total length is 0")]
    Empty,
    /// The piece length is 0.
    #[error("the torrent's piece length is 0")]
    ZeroPieceLength,
    /// More pieces than a 32-bit piece index can name.
    #[error("{total_len} bytes in pieces of {piece_len} bytes is more than 2^32 pieces")]
    TooManyPieces {
        /// The total length.
        total_len: u64,
        /// The piece length.
        piece_len: u32,
    },
}

/// Piece and block arithmetic for one torrent. All piece and block indices passed to its
/// methods must be in range (`piece < piece_count()`); out of range they return 0 or `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    total_len: u64,
    piece_len: u32,
    piece_count: u32,
}

impl Geometry {
    /// The geometry of `total_len` bytes in pieces of `piece_len` bytes.
    pub fn new(total_len: u64, piece_len: u32) -> Result<Self, GeometryError> {
        if total_len == 0 {
            return Err(GeometryError::Empty);
        }
        if piece_len == 0 {
            return Err(GeometryError::ZeroPieceLength);
        }
        let count = total_len.div_ceil(u64::from(piece_len));
        let piece_count = u32::try_from(count).map_err(|_| GeometryError::TooManyPieces {
            total_len,
            piece_len,
        })?;
        Ok(Geometry {
            total_len,
            piece_len,
            piece_count,
        })
    }

    /// The total length in bytes.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The nominal piece length (every piece but the last).
    pub fn piece_len(&self) -> u32 {
        self.piece_len
    }

    /// The number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// The byte offset where `piece` starts.
    pub fn piece_start(&self, piece: u32) -> u64 {
        u64::from(piece) * u64::from(self.piece_len)
    }

    /// The length of `piece` in bytes (0 if out of range).
    pub fn piece_size(&self, piece: u32) -> u32 {
        if piece >= self.piece_count {
            return 0;
        }
        let rest = self.total_len - self.piece_start(piece);
        // rest > 0 for an in-range piece; at most piece_len
        rest.min(u64::from(self.piece_len)) as u32
    }

    /// The piece holding byte `offset`, `None` past the end.
    pub fn piece_at(&self, offset: u64) -> Option<u32> {
        (offset < self.total_len).then(|| (offset / u64::from(self.piece_len)) as u32)
    }

    /// The pieces holding any byte of `range` (clamped to the data).
    pub fn pieces_in(&self, range: Range<u64>) -> Range<u32> {
        let end = range.end.min(self.total_len);
        if range.start >= end {
            return 0..0;
        }
        let first = (range.start / u64::from(self.piece_len)) as u32;
        let last = ((end - 1) / u64::from(self.piece_len)) as u32;
        first..last + 1
    }

    /// The number of blocks in `piece`.
    pub fn blocks_in(&self, piece: u32) -> u32 {
        self.piece_size(piece).div_ceil(BLOCK_LEN)
    }

    /// The wire form of block `index` of `piece`.
    pub fn block(&self, piece: u32, index: u32) -> BlockRef {
        let size = self.piece_size(piece);
        let begin = index.saturating_mul(BLOCK_LEN).min(size);
        BlockRef {
            piece,
            begin,
            length: (size - begin).min(BLOCK_LEN),
        }
    }

    /// The index of the block `block` names, `None` unless it is exactly one of this
    /// torrent's blocks (piece in range, offset on a block boundary, the block's length).
    pub fn block_index(&self, block: &BlockRef) -> Option<u32> {
        if block.piece >= self.piece_count || !block.begin.is_multiple_of(BLOCK_LEN) {
            return None;
        }
        let index = block.begin / BLOCK_LEN;
        (index < self.blocks_in(block.piece) && self.block(block.piece, index) == *block)
            .then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_piece_and_its_last_block_are_shorter() {
        let geo = Geometry::new(3 * 65536 + 20000, 65536).unwrap();
        assert_eq!(geo.piece_count(), 4);
        assert_eq!(geo.piece_size(3), 20000);
        assert_eq!(geo.blocks_in(0), 4);
        assert_eq!(geo.blocks_in(3), 2);
        let last = geo.block(3, 1);
        assert_eq!((last.begin, last.length), (BLOCK_LEN, 20000 - BLOCK_LEN));
        assert_eq!(geo.block_index(&last), Some(1));
        assert_eq!(geo.piece_size(4), 0);
        assert_eq!(geo.piece_at(3 * 65536 + 19999), Some(3));
        assert_eq!(geo.piece_at(3 * 65536 + 20000), None);
        assert_eq!(geo.pieces_in(65535..65537), 0..2);
        assert_eq!(geo.pieces_in(10..10), 0..0);
    }

    #[test]
    fn blocks_that_are_not_ours_have_no_index() {
        let geo = Geometry::new(100_000, 32768).unwrap();
        let bad = [
            BlockRef {
                piece: 0,
                begin: 1,
                length: BLOCK_LEN,
            },
            BlockRef {
                piece: 0,
                begin: 0,
                length: 100,
            },
            BlockRef {
                piece: 0,
                begin: 2 * BLOCK_LEN,
                length: BLOCK_LEN,
            },
            BlockRef {
                piece: 4,
                begin: 0,
                length: BLOCK_LEN,
            },
            BlockRef {
                piece: 3,
                begin: 0,
                length: BLOCK_LEN,
            },
        ];
        for block in bad {
            assert_eq!(geo.block_index(&block), None, "{block:?}");
        }
        assert_eq!(
            geo.block_index(&BlockRef {
                piece: 3,
                begin: 0,
                length: 100_000 - 3 * 32768
            }),
            Some(0)
        );
    }

    #[test]
    fn degenerate_shapes_are_refused() {
        assert_eq!(Geometry::new(0, 16384), Err(GeometryError::Empty));
        assert_eq!(Geometry::new(1, 0), Err(GeometryError::ZeroPieceLength));
        assert!(matches!(
            Geometry::new(u64::MAX, 1),
            Err(GeometryError::TooManyPieces { .. })
        ));
    }
}
