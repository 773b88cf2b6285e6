//! A real film in mpv (BENCHMARKS.md's scenario 7).

use super::{ClientFigures, Config, Run, SEED, make_torrent, single_link, view_recorded};
use crate::clients::{self, Kind, Tools, ViewSpec};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A real film (made by ffmpeg from its test sources: H.264 at a constant bitrate, AAC, in an
/// MP4 whose `moov` index sits at the end, as ffmpeg writes it without `+faststart`, or at the
/// front with `faststart`) played by mpv through each client's stream, on the linear
/// scenario's link.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PlayerConfig {
    /// Film length, s (0: skip the scenario).
    pub film_secs: f64,
    /// Video bitrate given to x264 (CBR), bit/s.
    pub video_bps: u64,
    /// Frame size, `WxH`.
    pub frame: String,
    /// Playback watched for stalls after startup, before the seeks, s.
    pub watch_secs: f64,
    /// Write the `moov` index at the front (`-movflags +faststart`) instead of the end.
    #[serde(default)]
    pub faststart: bool,
}

/// The real film's figures.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PlayerResults {
    /// What ran.
    pub config: PlayerConfig,
    /// Why the scenario did not run (no ffmpeg or mpv).
    pub skipped: Option<String>,
    /// mpv's version.
    pub mpv: String,
    /// Film size, bytes.
    pub size: u64,
    /// Piece length.
    pub piece: u64,
    /// Average bitrate of the file (size / duration), bit/s.
    pub bitrate_bps: u64,
    /// Where the `moov` index starts, bytes.
    pub index_at: Option<u64>,
    /// Per client: `startup` = spawn to mpv playing, `stalls`/`stall_s` while watching,
    /// `seek` = seek command to mpv playing again.
    pub clients: BTreeMap<Kind, ClientFigures>,
}

/// Encodes the real film with ffmpeg into `dir/film.mp4`; returns its size.
fn encode_film(dir: &Path, c: &PlayerConfig) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let film = dir.join("film.mp4");
    let v = c.video_bps.to_string();
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={}:rate=30", c.frame))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
        ])
        .arg(c.film_secs.to_string())
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60",
        ])
        .args(["-b:v", &v, "-minrate", &v, "-maxrate", &v, "-bufsize", &v])
        .args(["-x264-params", "nal-hrd=cbr", "-c:a", "aac", "-b:a", "128k"])
        .args(if c.faststart {
            &["-movflags", "+faststart"][..]
        } else {
            &[]
        })
        .arg(&film)
        .output()
        .context("cannot run ffmpeg")?;
    if !out.status.success() {
        bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(std::fs::metadata(&film)?.len())
}

/// Where the film's index (`moov`) starts, found as Kino finds it.
fn index_at(film: &Path, len: u64) -> Option<u64> {
    use kino_media::{IndexLocator, Step};
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(film).ok()?;
    let mut loc = IndexLocator::new("film.mp4", len);
    for _ in 0..64 {
        match loc.next_step() {
            Step::Read { offset, len } => {
                let mut buf = vec![0u8; len.min(1 << 20)];
                let n = f.read_at(&mut buf, offset).ok()?;
                loc.feed(offset, &buf[..n]).ok()?;
            }
            Step::Done(m) => return m.index_ranges.first().map(|r| r.start),
        }
    }
    None
}

/// One libtorrent seeder on the linear scenario's link; each client's stream is played by mpv
/// (`kino-bench player`): time until it plays, stalls while watching, then seeks.
pub(super) async fn run(
    cfg: &Config,
    tools: &Tools,
    clients: &BTreeMap<Kind, ClientFigures>,
    active: &[Kind],
) -> anyhow::Result<PlayerResults> {
    let c = &cfg.player;
    let mut out = PlayerResults {
        config: c.clone(),
        ..Default::default()
    };
    let mpv = clients::stdout_of(Path::new("mpv"), &["--version"]);
    let (Some(mpv), Some(_)) = (mpv, clients::stdout_of(Path::new("ffmpeg"), &["-version"])) else {
        out.skipped = Some(
            "ffmpeg or mpv is not installed (scripts/install-bench-peers installs them)".into(),
        );
        return Ok(out);
    };
    // "mpv 0.35.1 Copyright ..." -> "mpv 0.35.1"
    out.mpv = mpv.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let dir = cfg.work.join("realfilm");
    let size = encode_film(&dir, c)?;
    let (torrent, piece) = make_torrent(tools, &dir.join("film.mp4"), size, cfg.piece_length)?;
    out.size = size;
    out.piece = piece;
    out.bitrate_bps = (size as f64 * 8.0 / c.film_secs) as u64;
    out.index_at = index_at(&dir.join("film.mp4"), size);
    out.clients = clients
        .iter()
        .map(|(k, f)| {
            let mut fresh = f.fresh();
            if !k.has_http_stream() {
                fresh.skipped = Some("no HTTP stream to give mpv".into());
            }
            (*k, fresh)
        })
        .collect();
    eprintln!(
        "real film: {size} bytes, {:.2} Mbit/s average, moov at {:?}; seeder uplink {:.1} Mbit/s, RTT +{} ms",
        out.bitrate_bps as f64 / 1e6,
        out.index_at,
        cfg.uplink_bps as f64 / 1e6,
        cfg.rtt_ms
    );
    let link = single_link(
        tools,
        Some(cfg.uplink_bps),
        &torrent,
        cfg.rtt_ms,
        &cfg.work.join("player-logs"),
    )
    .await?;
    let playable: Vec<Kind> = active
        .iter()
        .copied()
        .filter(|k| out.clients.get(k).is_some_and(|f| f.skipped.is_none()))
        .collect();
    for rep in 0..cfg.reps {
        let mut order = playable.clone();
        order.rotate_left(rep % playable.len().max(1));
        for &k in &order {
            let spec = ViewSpec {
                torrent: torrent.clone(),
                peers: vec![link.seeder.addr.clone()],
                size,
                seed: SEED,
                bitrate: out.bitrate_bps as f64 / 8.0,
                startup_bytes: 0,
                seeks: cfg.seeks.clone(),
                seek_bytes: 0,
                share: true,
                deadline: cfg.deadline,
                player_watch: Some(Duration::from_secs_f64(c.watch_secs)),
            };
            let d = cfg.work.join(format!("mpv-{rep}-{}", k.name()));
            let f = out.clients.get_mut(&k).context("client")?;
            let run = Run {
                k,
                rep,
                phase: "mpv",
            };
            view_recorded(run, tools, link.viewer(), &spec, &d, f, None).await;
        }
    }
    drop(link);
    Ok(out)
}
