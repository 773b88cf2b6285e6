//! The piece length Kino gives a torrent it makes (`kino create`), chosen for streaming.
//!
//! A reader waits for the whole piece under its position to be verified, so the first byte
//! costs one piece from the swarm and a seek costs one piece again: small pieces start and seek
//! sooner. Large pieces keep the metainfo small (20 bytes of hash per piece, fetched before
//! anything else when starting from a magnet link). [`streaming_piece_length`] takes the
//! smallest power of two from [`MIN_PIECE_LENGTH`] that keeps the torrent at or under
//! [`TARGET_MAX_PIECES`] pieces (160 KiB of hashes), capped at [`MAX_PIECE_LENGTH`]: a 700 MiB
//! film gets 256 KiB pieces, a 4 GiB film 512 KiB pieces. The measurements behind the numbers
//! are in `kino_engine::create`'s documentation.

/// Smallest piece length Kino chooses.
pub const MIN_PIECE_LENGTH: u32 = 256 * 1024;
/// Largest piece length Kino chooses.
pub const MAX_PIECE_LENGTH: u32 = 4 * 1024 * 1024;
/// Pieces Kino aims to stay under.
pub const TARGET_MAX_PIECES: u64 = 8192;

/// The piece length Kino uses for a torrent of `total_len` bytes (see the module docs).
pub fn streaming_piece_length(total_len: u64) -> u32 {
    let mut len = MIN_PIECE_LENGTH;
    while len < MAX_PIECE_LENGTH && total_len.div_ceil(len as u64) > TARGET_MAX_PIECES {
        len *= 2;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_grows_with_size() {
        assert_eq!(streaming_piece_length(30 << 20), 256 * 1024);
        assert_eq!(streaming_piece_length(700 << 20), 256 * 1024);
        assert_eq!(streaming_piece_length(2 << 30), 256 * 1024);
        assert_eq!(streaming_piece_length(4 << 30), 512 * 1024);
        assert_eq!(streaming_piece_length(100 << 30), MAX_PIECE_LENGTH);
    }

    #[test]
    fn piece_length_stays_in_bounds_at_the_edges() {
        assert_eq!(streaming_piece_length(0), MIN_PIECE_LENGTH);
        assert_eq!(streaming_piece_length(u64::MAX), MAX_PIECE_LENGTH);
        // Exactly 8192 pieces of 256 KiB is still 256 KiB; one byte more doubles it.
        let edge = TARGET_MAX_PIECES * u64::from(MIN_PIECE_LENGTH);
        assert_eq!(streaming_piece_length(edge), MIN_PIECE_LENGTH);
        assert_eq!(streaming_piece_length(edge + 1), 2 * MIN_PIECE_LENGTH);
    }
}
