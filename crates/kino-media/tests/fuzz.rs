//! Seeded random mutations of valid files: the locator must never panic,
//! never loop, never ask for bytes outside the file, and report sane ranges.

mod support;

use kino_media::{MAX_MOOV_LEN, MAX_READS};
use support::*;

const ITERATIONS: usize = 3000;

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..=rng.below(8) {
        if f.is_empty() {
            break;
        }
        // Most structure sits in the first few KiB; aim there most of the time.
        let hot = f.len().min(4096);
        let at = if rng.below(4) == 0 {
            rng.below(f.len())
        } else {
            rng.below(hot)
        };
        match rng.below(7) {
            0 => f[at] = rng.next_u64() as u8,
            1 => f[at] ^= 1 << rng.below(8),
            2 => {
                let v: u32 = match rng.below(6) {
                    0 => 0,
                    1 => 1,
                    2 => u32::MAX,
                    3 => 7,
                    4 => 0x7FFF_FFFF,
                    _ => rng.next_u64() as u32,
                };
                let end = (at + 4).min(f.len());
                f[at..end].copy_from_slice(&v.to_be_bytes()[..end - at]);
            }
            3 => {
                // EBML-ish size bytes: unknown size, invalid, huge.
                let v: &[u8] = match rng.below(3) {
                    0 => &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                    1 => &[0x00],
                    _ => &[0x08, 0xFF, 0xFF, 0xFF, 0xFF],
                };
                let end = (at + v.len()).min(f.len());
                f[at..end].copy_from_slice(&v[..end - at]);
            }
            4 => f.truncate(at),
            5 => {
                let n = rng.below(16);
                f.splice(at..at, (0..n).map(|_| rng.next_u64() as u8));
            }
            _ => {
                let end = (at + rng.below(16)).min(f.len());
                f.drain(at..end);
            }
        }
    }
    f
}

fn fuzz(name: &str, base: &[u8], seed: u64, iterations: usize) {
    let mut rng = Rng(seed);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..iterations {
        let file = mutate(&mut rng, base);
        // `drive` panics on non-termination or out-of-file reads.
        let run = drive_bytes(name, &file);
        assert!(run.reads.len() <= MAX_READS as usize, "iteration {i}");
        for &(_, len) in &run.reads {
            assert!(len as u64 <= MAX_MOOV_LEN, "iteration {i}: read of {len}");
        }
        match run.result {
            Ok(info) => {
                ok += 1;
                let mut prev_end = 0;
                for r in &info.index_ranges {
                    assert!(r.start < r.end, "iteration {i}: empty range {r:?}");
                    assert!(r.end <= file.len() as u64, "iteration {i}: {r:?} past EOF");
                    assert!(
                        r.start >= prev_end,
                        "iteration {i}: ranges overlap/unsorted"
                    );
                    prev_end = r.end;
                }
                match (info.duration, info.bitrate_bps) {
                    (Some(d), Some(bps)) => {
                        let want = u128::from(file.len() as u64) * 8_000_000_000 / d.as_nanos();
                        assert_eq!(u128::from(bps), want, "iteration {i}");
                    }
                    (None, None) => {}
                    other => panic!("iteration {i}: duration/bitrate mismatch {other:?}"),
                }
            }
            Err(e) => {
                failed += 1;
                if std::env::var_os("KINO_FUZZ_VERBOSE").is_some() {
                    eprintln!("{name} #{i}: {e}");
                }
                assert!(!e.to_string().is_empty());
            }
        }
    }
    eprintln!("{name}: {ok} ok, {failed} failed");
    // The mutations must exercise both the happy and the error paths.
    assert!(ok > iterations / 20, "{name}: only {ok} successes");
    assert!(failed > iterations / 20, "{name}: only {failed} failures");
}

#[test]
fn mutated_faststart_mp4() {
    fuzz("a.mp4", &faststart_mp4(), 0x6b69_6e6f_0001, ITERATIONS);
}

#[test]
fn mutated_moov_at_end_mp4() {
    fuzz(
        "a.mp4",
        &moov_at_end_mp4(3000),
        0x6b69_6e6f_0002,
        ITERATIONS,
    );
}

#[test]
fn mutated_matroska() {
    let m = mkv_file("webm", 3000, true, true);
    let bytes = m.file.read(0, m.file.len as usize);
    fuzz("a.webm", &bytes, 0x6b69_6e6f_0003, ITERATIONS);
}

#[test]
fn mutated_demo_heads() {
    // The real clips (a couple of MiB each).
    for (name, seed) in [
        ("kino-testcard.mp4", 11),
        ("kino-moov-at-end.mp4", 14),
        ("kino-testcard.mkv", 12),
        ("kino-testcard.webm", 13),
    ] {
        let path = format!("{}/../../media/demo/{name}", env!("CARGO_MANIFEST_DIR"));
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipping: {path} not present");
            continue;
        };
        fuzz(name, &bytes, seed, 300);
    }
}
