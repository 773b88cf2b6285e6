//! The test film: deterministic bytes, so any reader can check every byte it receives
//! against its offset without a copy of the file.

use std::io::Write;
use std::path::Path;

/// The 8-byte word at word index `i` of the film generated from `seed` (splitmix64).
fn word(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the film's bytes starting at `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut k = 0;
    while k < buf.len() {
        let w = word(seed, pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - k);
        buf[k..k + n].copy_from_slice(&w[start..start + n]);
        k += n;
        pos += n as u64;
    }
}

/// Checks that `buf` holds the film's bytes at `offset`.
pub fn check(seed: u64, offset: u64, buf: &[u8]) -> bool {
    let mut expect = vec![0u8; buf.len()];
    fill(seed, offset, &mut expect);
    expect == buf
}

/// Writes a film of `len` bytes to `path`.
pub fn write_film(path: &Path, seed: u64, len: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(buf.len());
        fill(seed, off, &mut buf[..n]);
        f.write_all(&buf[..n])?;
        off += n as u64;
    }
    f.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_fill_matches_aligned() {
        let mut whole = vec![0u8; 100];
        fill(7, 0, &mut whole);
        let mut part = vec![0u8; 37];
        fill(7, 13, &mut part);
        assert_eq!(&whole[13..50], &part[..]);
        assert!(check(7, 13, &part));
        assert!(!check(8, 13, &part));
    }
}
