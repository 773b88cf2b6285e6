//! Figures from arrival curves: startup, the simulated player's stalls, buffer ahead over time,
//! seek-to-play; medians with a spread; the physical limit.

use crate::clients::ViewRun;
use serde::Serialize;

/// Seconds from the client's spawn to `us`.
fn rel(run: &ViewRun, us: u64) -> f64 {
    us.saturating_sub(run.t0_us) as f64 / 1e6
}

/// Time to the first byte of the stream, s.
pub fn ttfb(run: &ViewRun) -> Option<f64> {
    run.report.first_byte_us.map(|t| rel(run, t))
}

/// Time until `bytes` are readable in order from offset 0, s.
pub fn time_to_bytes(run: &ViewRun, bytes: u64) -> Option<f64> {
    run.report
        .samples
        .iter()
        .find(|(_, b)| *b >= bytes)
        .map(|(t, _)| rel(run, *t))
}

/// Bytes readable in order at `t` s after spawn.
fn arrived(run: &ViewRun, t: f64) -> u64 {
    let us = run.t0_us + (t * 1e6) as u64;
    let i = run.report.samples.partition_point(|(s, _)| *s <= us);
    if i == 0 {
        0
    } else {
        run.report.samples[i - 1].1
    }
}

/// The simulated player's playback of a linear read.
#[derive(Debug, Clone, Serialize)]
pub struct Playback {
    /// Stalls after startup.
    pub stalls: u32,
    /// Total stall time, s.
    pub stall_s: f64,
    /// (t s since spawn, seconds of media buffered ahead of the playhead).
    pub buffer: Vec<(f64, f64)>,
}

/// Plays the arrival curve: starts when `startup_bytes` are in, consumes `bitrate` bytes/s,
/// stalls when the playhead reaches the data, resumes when `resume_s` of media are buffered
/// again (or the file is complete). Steps of 10 ms; ends when the playhead reaches the end.
pub fn playback(
    run: &ViewRun,
    size: u64,
    bitrate: f64,
    startup_bytes: u64,
    resume_s: f64,
) -> Option<Playback> {
    let start = time_to_bytes(run, startup_bytes.min(size))?;
    let complete = run.report.samples.last().is_some_and(|(_, b)| *b >= size);
    let dt = 0.01;
    let mut out = Playback {
        stalls: 0,
        stall_s: 0.0,
        buffer: Vec::new(),
    };
    let mut head = 0.0f64;
    let mut stalled = false;
    let playing_from = (start / dt).ceil() as u64;
    let last_sample = rel(run, run.report.samples.last()?.0);
    let limit = start + size as f64 / bitrate * 4.0 + 600.0;
    let mut step: u64 = 0;
    while head < size as f64 {
        let t = step as f64 * dt;
        if t > limit {
            break;
        }
        let a = arrived(run, t) as f64;
        if step >= playing_from {
            if stalled {
                out.stall_s += dt;
                if a >= size as f64 || a - head >= resume_s * bitrate {
                    stalled = false;
                }
            } else {
                head = (head + bitrate * dt).min(size as f64);
                if head > a && a < size as f64 {
                    head = a;
                    stalled = true;
                    out.stalls += 1;
                }
            }
        }
        if step.is_multiple_of(10) && out.buffer.len() < 100_000 {
            out.buffer.push((t, (a - head).max(0.0) / bitrate));
        }
        if !complete && t > last_sample + 1.0 {
            // The read stopped early (deadline): the rest is one long stall.
            out.stalls += u32::from(!stalled);
            break;
        }
        step += 1;
    }
    Some(out)
}

/// Seek-to-play of each seek: time from the Range request until `seek_bytes` were read, s.
pub fn seek_times(run: &ViewRun) -> Vec<(f64, Option<f64>)> {
    run.report
        .seeks
        .iter()
        .map(|s| {
            (
                s.frac,
                s.done_us.map(|d| d.saturating_sub(s.start_us) as f64 / 1e6),
            )
        })
        .collect()
}

/// Median and spread (min, max) of a sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Sample count.
    pub n: usize,
}

/// Summarizes `v` (None if empty).
pub fn summary(v: &[f64]) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: s[0],
        max: s[n - 1],
        n,
    })
}

/// Percentile `p` (0..=100) by nearest rank.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    Some(s[rank.min(s.len()) - 1])
}

/// Payload share of a TCP/IPv4 segment on veth as tbf counts it (1448 of 1514 bytes), less the
/// BitTorrent piece message header (13 bytes per 16 KiB block).
pub const GOODPUT: f64 = 1448.0 / 1514.0 * 16384.0 / 16397.0;

/// Round trips before the first piece can arrive: TCP connect, BitTorrent handshake with
/// bitfield and interested/unchoke, request -> data.
pub const STARTUP_RTTS: f64 = 3.0;

/// The physical limit of startup: the whole pieces holding the first `bytes`, at the link's
/// goodput, less what the token bucket lets through at once (it starts full), plus the round
/// trips.
pub fn startup_limit(bytes: u64, piece: u64, link_bps: f64, rtt_s: f64) -> f64 {
    startup_limit_links(bytes, piece, link_bps, 1, rtt_s)
}

/// [`startup_limit`] over `links` seeders of `link_bps` each, used at once (each link's tbf
/// burst counts).
pub fn startup_limit_links(bytes: u64, piece: u64, link_bps: f64, links: usize, rtt_s: f64) -> f64 {
    let links = links.max(1) as f64;
    let need = bytes.div_ceil(piece) * piece;
    let wire = need as f64 / GOODPUT - links * crate::net::tbf_burst(link_bps as u64) as f64;
    wire.max(0.0) * 8.0 / (link_bps * links) + STARTUP_RTTS * rtt_s
}

/// The physical limit of a seek on an idle link: the pieces covering `[offset, offset+bytes)`
/// plus one round trip for the request.
pub fn seek_limit(offset: u64, bytes: u64, piece: u64, link_bps: f64, rtt_s: f64) -> f64 {
    let first = offset / piece;
    let last = (offset + bytes).div_ceil(piece);
    ((last - first) * piece) as f64 * 8.0 / (link_bps * GOODPUT) + rtt_s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_limit_over_several_links() {
        let piece = 256 * 1024;
        let one = startup_limit(5_000_000, piece, 20e6, 0.1);
        assert_eq!(one, startup_limit_links(5_000_000, piece, 20e6, 1, 0.1));
        // Four links of a quarter of the rate: same wire time, but four token buckets start
        // full, so a little less (each burst is at least 64 KiB).
        let four = startup_limit_links(5_000_000, piece, 5e6, 4, 0.1);
        let burst_gain = 3.0 * crate::net::tbf_burst(5_000_000) as f64 * 8.0 / 20e6;
        assert!(
            (one - four - burst_gain).abs() < 0.05,
            "one {one} four {four}"
        );
        // Round trips are paid once, not per link.
        assert!(four > STARTUP_RTTS * 0.1);
    }
}
