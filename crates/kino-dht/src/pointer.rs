//! The pointer value: which catalog torrent a publisher's key currently names.
//!
//! BEP 46 puts the dictionary `{ih: <20-byte infohash>}` in the mutable item's `v`. mainline 8
//! only signs and sends `v` as a bencode *byte string*, so Kino carries the bencoded dictionary
//! inside that byte string: `v = "d2:ih20:<20 raw bytes>e"` (29 bytes).
//!
//! This pair of functions is the only place that knows the encoding. Moving to a
//! dictionary-valued `v` (once the DHT library supports it) changes these two functions only.

use crate::DhtError;

/// Length of a BitTorrent v1 infohash.
pub const INFOHASH_LEN: usize = 20;

/// The bencode prefix of a pointer: a dictionary with one key `ih` whose value is 20 bytes.
const PREFIX: &[u8] = b"d2:ih20:";
/// The bencode suffix closing the dictionary.
const SUFFIX: &[u8] = b"e";
/// Exact length of an encoded pointer.
pub const POINTER_LEN: usize = PREFIX.len() + INFOHASH_LEN + SUFFIX.len();

/// Encode an infohash as the pointer value `d2:ih20:<20 bytes>e` signed into the DHT item.
pub fn encode_pointer(infohash: &[u8; INFOHASH_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(POINTER_LEN);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(infohash);
    out.extend_from_slice(SUFFIX);
    out
}

/// Decode a pointer value strictly: exactly the bencoded dictionary `{ih: <20 bytes>}`, with no
/// other key, no trailing byte and no alternative spelling of the length.
pub fn decode_pointer(value: &[u8]) -> Result<[u8; INFOHASH_LEN], DhtError> {
    let invalid = |reason: &'static str| DhtError::InvalidPointer {
        reason,
        len: value.len(),
    };
    if value.len() != POINTER_LEN {
        return Err(invalid("expected exactly 29 bytes: d2:ih20:<20 bytes>e"));
    }
    let Some(rest) = value.strip_prefix(PREFIX) else {
        return Err(invalid(
            "expected a dictionary whose only key is `ih` with a 20-byte value",
        ));
    };
    let Some(ih) = rest.strip_suffix(SUFFIX) else {
        return Err(invalid("the dictionary must end right after the infohash"));
    };
    let mut out = [0u8; INFOHASH_LEN];
    out.copy_from_slice(ih);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ih = [0xabu8; 20];
        let v = encode_pointer(&ih);
        assert_eq!(v.len(), POINTER_LEN);
        assert_eq!(&v[..8], b"d2:ih20:");
        assert_eq!(v[28], b'e');
        assert_eq!(decode_pointer(&v).unwrap(), ih);
    }

    #[test]
    fn bytes_that_look_like_bencode_inside_the_hash_are_fine() {
        let mut ih = *b"d2:ih20:eeeeeeeeeeee";
        ih[19] = b'e';
        assert_eq!(decode_pointer(&encode_pointer(&ih)).unwrap(), ih);
    }

    #[test]
    fn strict() {
        let ih = [7u8; 20];
        let good = encode_pointer(&ih);
        // Wrong key, extra key, wrong length, trailing bytes, not a dict, leading zero length.
        let mut bad_key = good.clone();
        bad_key[3] = b'x';
        let extra_key = [&good[..28], b"1:xi1e".as_slice(), b"e"].concat();
        let short = [b"d2:ih19:".as_slice(), &[7u8; 19], b"e"].concat();
        let trailing = [good.as_slice(), b"e"].concat();
        let leading_zero = [b"d2:ih020:".as_slice(), &[7u8; 20], b"e"].concat();
        let mut no_end = good.clone();
        no_end[28] = b'x';
        for bad in [
            bad_key,
            extra_key,
            short,
            trailing,
            leading_zero,
            no_end,
            b"".to_vec(),
            b"20:aaaaaaaaaaaaaaaaaaaa".to_vec(),
        ] {
            assert!(
                matches!(decode_pointer(&bad), Err(DhtError::InvalidPointer { .. })),
                "accepted {bad:?}"
            );
        }
    }
}
