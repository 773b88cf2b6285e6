//! z-base-32, the human-oriented base-32 encoding by Zooko Wilcox-O'Hearn.
//!
//! Bits are taken most significant first, five at a time, and mapped through the alphabet
//! `ybndrfg8ejkmcpqxot1uwisza345h769`. The last character is padded with zero bits; there is
//! no `=` padding. This module encodes whole bytes only (the spec also allows bit lengths that
//! are not a multiple of 8, which Kino never needs).
//!
//! Decoding is strict: it accepts only the canonical encoding of some byte string, so every
//! byte string has exactly one accepted spelling (upper case is folded to lower case first).

use thiserror::Error;

/// The z-base-32 alphabet, index = 5-bit value.
pub const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Why a z-base-32 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Zbase32Error {
    /// A character outside the alphabet.
    #[error("character {ch:?} at position {position} is not in the z-base-32 alphabet")]
    BadCharacter {
        /// The offending character.
        ch: char,
        /// Its position (in characters) in the input.
        position: usize,
    },
    /// The length cannot be the encoding of whole bytes (e.g. 1, 3, 6 characters).
    #[error("length {0} is not the length of a z-base-32 encoding of whole bytes")]
    BadLength(usize),
    /// The padding bits of the last character are not zero, so this is not a canonical encoding.
    #[error("the last character carries non-zero padding bits (not a canonical encoding)")]
    NonCanonical,
}

/// The number of characters that encode `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    kino_core::base32::encoded_len(len)
}

/// z-base-32 for the bit packing [`kino_core::base32`] implements once.
const ZBASE32: kino_core::base32::Alphabet = kino_core::base32::Alphabet {
    symbols: ALPHABET,
    upper: false,
};

/// Encodes bytes as z-base-32 (lower case).
pub fn encode(bytes: &[u8]) -> String {
    kino_core::base32::encode_with(&ZBASE32, bytes)
}

/// Decodes a canonical z-base-32 string into bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, Zbase32Error> {
    use kino_core::base32::Base32Error;
    kino_core::base32::decode_with(&ZBASE32, text).map_err(|e| match e {
        Base32Error::BadCharacter { ch, position } => Zbase32Error::BadCharacter { ch, position },
        Base32Error::BadLength(n) => Zbase32Error::BadLength(n),
        Base32Error::NonCanonical => Zbase32Error::NonCanonical,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // Worked by hand from the alphabet: 0x00 -> 00000|000(00) -> "yy".
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00]), "yy");
        // 0xf0 -> 11110|000(00) -> 30, 0 -> "6y".
        assert_eq!(encode(&[0xf0]), "6y");
        // 0xff -> 11111|111(00) -> 31, 28 -> "9h".
        assert_eq!(encode(&[0xff]), "9h");
        // 5 bytes = 40 bits = exactly 8 characters, no padding.
        assert_eq!(encode(&[0xff; 5]), "99999999");
        assert_eq!(encode(&[0x00; 5]), "yyyyyyyy");
        // 0x01 0x02 -> 00000|00100|00001|0(0000) -> 0,4,1,0 -> "yrby".
        assert_eq!(encode(&[0x01, 0x02]), "yrby");
        // A 32-byte key encodes to 52 characters.
        assert_eq!(encode(&[7u8; 32]).len(), 52);
    }

    #[test]
    fn round_trip_all_lengths() {
        let data: Vec<u8> = (0..=255u8).collect();
        for len in 0..64 {
            let slice = &data[len..len * 2 + 3];
            let enc = encode(slice);
            assert_eq!(enc.len(), encoded_len(slice.len()));
            assert_eq!(decode(&enc).expect("decodes"), slice);
            assert_eq!(
                decode(&enc.to_uppercase()).expect("upper case folds"),
                slice
            );
        }
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(decode("y"), Err(Zbase32Error::BadLength(1)));
        assert_eq!(decode("yyy"), Err(Zbase32Error::BadLength(3)));
        // 'l', 'v', '0', '2' are not in the alphabet.
        assert!(matches!(
            decode("yl"),
            Err(Zbase32Error::BadCharacter {
                ch: 'l',
                position: 1
            })
        ));
        assert!(matches!(
            decode("0y"),
            Err(Zbase32Error::BadCharacter { ch: '0', .. })
        ));
        assert!(matches!(
            decode("yé"),
            Err(Zbase32Error::BadLength(_)) | Err(Zbase32Error::BadCharacter { .. })
        ));
        // "yb": second char carries value 1 in the padding bits.
        assert_eq!(decode("yb"), Err(Zbase32Error::NonCanonical));
    }
}
