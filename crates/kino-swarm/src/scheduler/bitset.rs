//! A fixed-length set of piece indices, one bit per piece, with its count kept.

/// Why a peer's bitfield was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitfieldError {
    /// The bitfield is not `ceil(pieces / 8)` bytes long.
    Length { len: usize, expected: usize },
    /// A bit past the last piece is set.
    SpareBits,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    len: u32,
    count: u32,
}

impl Bitset {
    pub(crate) fn new(len: u32) -> Self {
        Bitset {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
            count: 0,
        }
    }

    /// Parses a BitTorrent bitfield: piece 0 is the most significant bit of byte 0.
    pub(crate) fn from_bitfield(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::Length {
                len: bytes.len(),
                expected,
            });
        }
        let mut set = Self::new(len);
        for (i, byte) in bytes.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) == 0 {
                    continue;
                }
                let index = i * 8 + bit;
                if index >= len as usize {
                    return Err(BitfieldError::SpareBits);
                }
                set.insert(index as u32);
            }
        }
        Ok(set)
    }

    pub(crate) fn contains(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Adds `i`; whether it was new.
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        if i >= self.len || self.contains(i) {
            return false;
        }
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        self.count += 1;
        true
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// The members in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros();
                    rest &= rest - 1;
                    w as u32 * 64 + bit
                })
            })
        })
    }

    /// The number of set bits, counted again (for invariant checks).
    pub(crate) fn recount(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_are_read_most_significant_bit_first() {
        let set = Bitset::from_bitfield(&[0b1000_0001, 0b0100_0000], 10).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 7, 9]);
        assert_eq!(set.count(), 3);
        assert_eq!(
            Bitset::from_bitfield(&[0, 0b0010_0000], 10),
            Err(BitfieldError::SpareBits)
        );
        assert_eq!(
            Bitset::from_bitfield(&[0], 10),
            Err(BitfieldError::Length {
                len: 1,
                expected: 2
            })
        );
    }

    #[test]
    fn a_set_filled_one_by_one_is_full_at_its_length() {
        for len in [0, 1, 63, 64, 65, 130] {
            let mut set = Bitset::new(len);
            for i in 0..len {
                assert!(set.insert(i));
            }
            assert!(!set.insert(len), "out of range");
            assert_eq!(set.recount(), len);
            assert_eq!(set.iter().count() as u32, len);
            assert!(set.is_full());
        }
    }
}
