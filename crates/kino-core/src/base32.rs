//! RFC 4648 base32 (alphabet `A-Z2-7`), the form magnet links may give a 20-byte infohash in
//! (32 characters).
//!
//! Bits are taken most significant first, five at a time. Decoding takes either case and no `=`
//! padding (magnet links carry none), and is strict: it accepts only the canonical encoding of
//! some byte string (the unused low bits of the last character are zero), so every byte string
//! has exactly one accepted spelling up to case. Encoding writes upper case, unpadded.

use thiserror::Error;

/// The RFC 4648 base32 alphabet, index = 5-bit value.
pub const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A 32-symbol alphabet for the same bit packing (five bits a character, most significant
/// first, the last character zero-padded): RFC 4648 here, z-base-32 for publisher addresses.
/// Its symbols are ASCII in one case; decoding folds the other case to it.
#[derive(Debug, Clone, Copy)]
pub struct Alphabet {
    /// The symbols, index = 5-bit value.
    pub symbols: &'static [u8; 32],
    /// Whether the symbols are upper case (else lower case).
    pub upper: bool,
}

/// RFC 4648 (`A-Z2-7`).
pub const RFC4648: Alphabet = Alphabet {
    symbols: ALPHABET,
    upper: true,
};

/// Why a base32 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Base32Error {
    /// A character outside the alphabet (`=` padding included).
    #[error("character {ch:?} at position {position} is not base32 (A-Z or 2-7, no '=' padding)")]
    BadCharacter {
        /// The offending character.
        ch: char,
        /// Its position in the input, in characters, counted from 0.
        position: usize,
    },
    /// The length cannot be the encoding of whole bytes (e.g. 1, 3, 6 characters).
    #[error("length {0} is not the length of a base32 encoding of whole bytes")]
    BadLength(usize),
    /// The unused bits of the last character are not zero, so this is not a canonical encoding.
    #[error("the last character carries non-zero padding bits (not a canonical encoding)")]
    NonCanonical,
}

/// The number of characters that encode `len` bytes (without padding).
pub const fn encoded_len(len: usize) -> usize {
    (len * 8).div_ceil(5)
}

/// Encodes bytes as base32 (upper case, no padding).
pub fn encode(bytes: &[u8]) -> String {
    encode_with(&RFC4648, bytes)
}

/// Encodes bytes with `alphabet` (no padding).
pub fn encode_with(alphabet: &Alphabet, bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                alphabet.symbols[usize::from((acc >> bits) & 0x1f)],
            ));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            alphabet.symbols[usize::from((acc << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

/// The 5-bit value of a character of `alphabet` (either case).
fn value_of(alphabet: &Alphabet, c: char) -> Option<u8> {
    let b = u8::try_from(c).ok()?;
    let b = if alphabet.upper {
        b.to_ascii_uppercase()
    } else {
        b.to_ascii_lowercase()
    };
    let p = alphabet.symbols.iter().position(|&a| a == b)?;
    u8::try_from(p).ok()
}

/// Decodes a canonical, unpadded base32 string (either case) into bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, Base32Error> {
    decode_with(&RFC4648, text)
}

/// Decodes a canonical, unpadded string of `alphabet` (either case) into bytes.
pub fn decode_with(alphabet: &Alphabet, text: &str) -> Result<Vec<u8>, Base32Error> {
    // Characters first: a string with a non-ASCII character is refused for that character.
    let mut values = Vec::with_capacity(text.len());
    for (position, ch) in text.chars().enumerate() {
        values.push(value_of(alphabet, ch).ok_or(Base32Error::BadCharacter { ch, position })?);
    }
    let n = values.len();
    let byte_len = n * 5 / 8;
    if encoded_len(byte_len) != n {
        return Err(Base32Error::BadLength(n));
    }
    let mut out = Vec::with_capacity(byte_len);
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    for v in values {
        acc = (acc << 5) | u16::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err(Base32Error::NonCanonical);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 section 10, without the `=` padding.
    const VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "MY"),
        ("fo", "MZXQ"),
        ("foo", "MZXW6"),
        ("foob", "MZXW6YQ"),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI"),
    ];

    #[test]
    fn rfc_4648_vectors_encode_and_decode() {
        for (plain, coded) in VECTORS {
            assert_eq!(encode(plain.as_bytes()), coded, "{plain:?}");
            assert_eq!(decode(coded).as_deref(), Ok(plain.as_bytes()), "{coded:?}");
            let lower = coded.to_ascii_lowercase();
            assert_eq!(decode(&lower).as_deref(), Ok(plain.as_bytes()), "{lower:?}");
        }
    }

    #[test]
    fn every_byte_string_round_trips() {
        for len in 0..=40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let coded = encode(&bytes);
            assert_eq!(coded.len(), encoded_len(len));
            assert_eq!(decode(&coded), Ok(bytes));
        }
    }

    #[test]
    fn impossible_lengths_are_refused() {
        for n in [1, 3, 6, 9, 11, 14] {
            assert_eq!(
                decode(&"A".repeat(n)),
                Err(Base32Error::BadLength(n)),
                "{n}"
            );
        }
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused_with_their_position() {
        for ch in ['0', '1', '8', '9', '=', ' ', '-', '\u{e9}', '\u{41f}'] {
            let text = format!("MZX{ch}6YTB");
            assert_eq!(
                decode(&text),
                Err(Base32Error::BadCharacter { ch, position: 3 }),
                "{text:?}"
            );
        }
        // Padded input, as RFC 4648 writes it by default, is refused at the first `=`.
        assert_eq!(
            decode("MY======"),
            Err(Base32Error::BadCharacter {
                ch: '=',
                position: 2
            })
        );
    }

    #[test]
    fn non_zero_padding_bits_are_refused() {
        // "MY" is "f"; "MZ" sets one of the two unused bits.
        assert_eq!(decode("MZ"), Err(Base32Error::NonCanonical));
        assert_eq!(decode("MZXR"), Err(Base32Error::NonCanonical));
    }
}
