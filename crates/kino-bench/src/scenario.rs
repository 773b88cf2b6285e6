//! The scenarios: neutral libtorrent seeders, the clients read in turn against them.
//!
//! One module per scenario, named by what it measures (BENCHMARKS.md numbers them; its number
//! is in brackets):
//! - `linear` (1-3): one capped seeder and one viewer. Startup and playback share one session
//!   per run: the reader takes the whole file in order; startup is when the first 10 s of media
//!   are readable, the player simulation runs on the arrival curve. Seek: a fresh session reads
//!   the first 10 s, then seeks to 30/60/90 %.
//! - `swarm` (4): an origin and N viewers joining staggered, sharing on and off.
//! - `throughput` (5): a big file, unthrottled.
//! - `mesh` (6): several slow seeders far away, one viewer, startup and seeks.
//! - `real_film` (7): an H.264/AAC MP4 made by ffmpeg (index at the end), played by mpv through
//!   each client's stream on the linear scenario's link: time until mpv plays, its stalls, its
//!   seeks.
//!
//! This module holds what they share: the [`Config`], the [`Results`], [`run`] (every scenario
//! in turn), starting seeders, the one-seeder link, making films and torrents, and recording a
//! viewer's run. Reps interleave the clients (rotated order), so drift hits all alike.

mod linear;
mod mesh;
mod real_film;
mod swarm;
mod throughput;

pub use mesh::{MeshConfig, MeshResults};
pub use real_film::{PlayerConfig, PlayerResults};
pub use swarm::SwarmFigures;
pub use throughput::ThroughputFigures;

use crate::clients::{self, Kind, Proc, Tools, ViewRun, ViewSpec};
use crate::data;
use crate::metrics::{self, Summary};
use crate::net::{Caps, Node, Topology};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Film seed (any constant; the reader checks bytes against it).
pub const SEED: u64 = 0x6b69_6e6f;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Clients, in table order (Kino first).
    pub clients: Vec<Kind>,
    /// Film length, s.
    pub film_secs: f64,
    /// Declared bitrate, bit/s.
    pub bitrate_bps: u64,
    /// Seeder uplink cap, bit/s.
    pub uplink_bps: u64,
    /// Added round-trip time (delaying relay), ms; 0: no relay.
    pub rtt_ms: u64,
    /// Repetitions of the linear and seek sessions (and of the mesh and real-film runs).
    pub reps: usize,
    /// Piece length of the torrent (None: Kino's choice).
    pub piece_length: Option<u32>,
    /// Media needed for startup, s.
    pub startup_secs: f64,
    /// Media needed after a seek, s.
    pub seek_secs: f64,
    /// Seek points.
    pub seeks: Vec<f64>,
    /// Per-run deadline.
    pub deadline: Duration,
    /// Swarm: number of viewers (0: skip).
    pub swarm_viewers: usize,
    /// Swarm: film length, s.
    pub swarm_film_secs: f64,
    /// Swarm: origin uplink, bit/s.
    pub swarm_origin_bps: u64,
    /// Swarm: each viewer's uplink, bit/s.
    pub swarm_viewer_bps: u64,
    /// Swarm: seconds between joins.
    pub swarm_stagger: f64,
    /// Swarm: clients.
    pub swarm_clients: Vec<Kind>,
    /// Throughput: file size in bytes (0: skip).
    pub throughput_bytes: u64,
    /// Several slow seeders (`seeders` 0: skip).
    pub mesh: MeshConfig,
    /// A real film in mpv (`film_secs` 0: skip).
    pub player: PlayerConfig,
    /// The config file Kino ran with, if not its defaults (recorded in the results).
    pub kino_config: Option<String>,
    /// Work folder (deleted at the end).
    pub work: PathBuf,
    /// Where results go.
    pub out: PathBuf,
}

/// One client's figures in the linear and seek sessions (and, each in a table of its own, in
/// the mesh and real-film runs).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ClientFigures {
    /// Version that ran.
    pub version: String,
    /// Why it has no figures.
    pub skipped: Option<String>,
    /// Errors of failed runs.
    pub errors: Vec<String>,
    /// Time to first byte, s.
    pub ttfb: Vec<f64>,
    /// Time until the first `startup_secs` are readable, s (both run types).
    pub startup: Vec<f64>,
    /// Stalls per linear run.
    pub stalls: Vec<f64>,
    /// Stall time per linear run, s.
    pub stall_s: Vec<f64>,
    /// Seek-to-play by seek point.
    pub seek: BTreeMap<String, Vec<f64>>,
    /// Buffer ahead over time of the run with the median startup.
    pub buffer: Vec<(f64, f64)>,
    /// Peak RSS, MiB (linear runs).
    pub rss_mib: Vec<f64>,
}

impl ClientFigures {
    /// The same client with no figures yet (for another scenario's table).
    fn fresh(&self) -> ClientFigures {
        ClientFigures {
            version: self.version.clone(),
            skipped: self.skipped.clone(),
            ..Default::default()
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Date (UTC, from `date`).
    pub date: String,
    /// Machine.
    pub machine: String,
    /// libtorrent version of the seeder.
    pub seeder: String,
    /// Film size, bytes.
    pub size: u64,
    /// Piece length.
    pub piece: u64,
    /// Bitrate, bit/s.
    pub bitrate_bps: u64,
    /// Seeder uplink, bit/s.
    pub uplink_bps: u64,
    /// Added RTT, ms.
    pub rtt_ms: u64,
    /// Repetitions.
    pub reps: usize,
    /// Startup media, s.
    pub startup_secs: f64,
    /// Seek media, s.
    pub seek_secs: f64,
    /// Physical limit of startup, s.
    pub startup_limit: f64,
    /// Physical limit of a seek, s (idle link).
    pub seek_limit: f64,
    /// Per client (the linear and seek sessions).
    pub clients: BTreeMap<Kind, ClientFigures>,
    /// The swarm runs.
    pub swarm: Vec<SwarmFigures>,
    /// The swarm's film size, bytes.
    pub swarm_size: u64,
    /// The throughput runs.
    pub throughput: Vec<ThroughputFigures>,
    /// The throughput film's size, bytes.
    pub throughput_size: u64,
    /// Several slow seeders (absent in results of runs before it existed).
    #[serde(default)]
    pub mesh: Option<MeshResults>,
    /// The real film in mpv (absent in results of runs before it existed).
    #[serde(default)]
    pub player: Option<PlayerResults>,
    /// The config file Kino ran with, when not its defaults.
    #[serde(default)]
    pub kino_config: Option<String>,
}

/// Per client: (startup, buffer-ahead series) of each linear run.
type BufferRuns = BTreeMap<Kind, Vec<(f64, Vec<(f64, f64)>)>>;

/// A started seeder (and relay) in one node of a topology.
struct Seeder {
    _procs: Vec<Proc>,
    /// Address viewers dial.
    addr: String,
}

async fn start_seeder(
    tools: &Tools,
    topo: &Topology,
    node: usize,
    torrent: &Path,
    data_dir: &Path,
    rtt_ms: u64,
    logs: &Path,
) -> anyhow::Result<Seeder> {
    let n = topo.nodes.get(node).context("no such node")?;
    let script = tools.repo.join("bench/lt_bench.py");
    let args: Vec<String> = vec![
        script.display().to_string(),
        "seed".into(),
        "--torrent".into(),
        torrent.display().to_string(),
        "--data".into(),
        data_dir.display().to_string(),
        "--bind".into(),
        n.ip.to_string(),
        "--port".into(),
        "6881".into(),
    ];
    let mut s = Proc::spawn_in(
        &n.ns,
        Path::new("/usr/bin/python3"),
        &args,
        &logs.join(format!("seeder{node}.log")),
        &[],
    )?;
    let addr = s
        .wait_line(Duration::from_secs(120), |l| {
            l.strip_prefix("LISTENING ").map(str::to_owned)
        })
        .await
        .with_context(|| format!("the libtorrent seeder did not start (see seeder{node}.log)"))?;
    let mut procs = vec![s];
    let mut dial = addr.clone();
    if rtt_ms > 0 {
        let listen = format!("{}:7000", n.ip);
        let args: Vec<String> = vec![
            "relay".into(),
            "--listen".into(),
            listen.clone(),
            "--to".into(),
            addr,
            "--delay-ms".into(),
            (rtt_ms / 2).to_string(),
        ];
        let log = logs.join(format!("relay{node}.log"));
        let mut r = Proc::spawn_in(&n.ns, &tools.bench, &args, &log, &[])?;
        r.wait_line(Duration::from_secs(10), |l| {
            l.starts_with("relay listening").then_some(())
        })
        .await
        .context("the relay did not start")?;
        procs.push(r);
        dial = listen;
    }
    Ok(Seeder {
        _procs: procs,
        addr: dial,
    })
}

/// One libtorrent seeder (uplink capped unless `None`, `rtt_ms` added unless 0) serving the
/// torrent's data from beside it (`T.torrent` -> `T/`), and one viewer node. Dropping it stops
/// the seeder first, then removes the namespaces.
struct SingleLink {
    seeder: Seeder,
    topo: Topology,
}

impl SingleLink {
    fn viewer(&self) -> &Node {
        &self.topo.nodes[1]
    }
}

async fn single_link(
    tools: &Tools,
    uplink_bps: Option<u64>,
    torrent: &Path,
    rtt_ms: u64,
    logs: &Path,
) -> anyhow::Result<SingleLink> {
    let seeder_caps = Caps {
        up_bps: uplink_bps,
        down_bps: None,
    };
    let topo = Topology::new(&[seeder_caps, Caps::default()])?;
    std::fs::create_dir_all(logs)?;
    let data = torrent.with_extension("");
    let seeder = start_seeder(tools, &topo, 0, torrent, &data, rtt_ms, logs).await?;
    Ok(SingleLink { seeder, topo })
}

/// Writes the film and its torrent (made by libtorrent, the neutral party, with Kino's piece
/// length rule, `kino_core::piece::streaming_piece_length`, unless given) under `dir`; returns
/// (torrent, piece length).
fn make_film(
    tools: &Tools,
    dir: &Path,
    size: u64,
    piece: Option<u32>,
) -> anyhow::Result<(PathBuf, u64)> {
    std::fs::create_dir_all(dir)?;
    let film = dir.join("film.mp4");
    data::write_film(&film, SEED, size)?;
    make_torrent(tools, &film, size, piece)
}

/// Makes `dir.torrent` for the film `dir/film.mp4` with libtorrent; returns (torrent, piece
/// length).
fn make_torrent(
    tools: &Tools,
    film: &Path,
    size: u64,
    piece: Option<u32>,
) -> anyhow::Result<(PathBuf, u64)> {
    let dir = film.parent().context("film without a folder")?;
    let torrent = dir.with_extension("torrent");
    let piece = piece.unwrap_or_else(|| kino_core::piece::streaming_piece_length(size));
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(tools.repo.join("bench/lt_bench.py"))
        .args(["create", "--piece-length", &piece.to_string(), "--path"])
        .arg(film)
        .arg("--out")
        .arg(&torrent)
        .output()
        .context("cannot run bench/lt_bench.py create")?;
    if !out.status.success() {
        bail!(
            "making the torrent failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bytes = std::fs::read(&torrent)?;
    Ok((
        torrent,
        piece_length(&bytes).context("no piece length in the torrent")?,
    ))
}

fn piece_length(t: &[u8]) -> Option<u64> {
    let key = b"12:piece lengthi";
    let i = t.windows(key.len()).position(|w| w == key)? + key.len();
    let end = t[i..].iter().position(|&b| b == b'e')? + i;
    std::str::from_utf8(&t[i..end]).ok()?.parse().ok()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{n} CPUs ({cpu}), {} GiB RAM, Linux {}",
        mem / (1 << 20),
        kernel.trim()
    )
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Runs every scenario `cfg` asks for, in this order: startup, playback and seek (`linear`),
/// swarm, several slow seeders (`mesh`), the real film in mpv, throughput. Progress goes to
/// stderr, one line per viewer run.
pub async fn run(cfg: &Config, tools: &Tools) -> anyhow::Result<Results> {
    let bitrate = cfg.bitrate_bps as f64 / 8.0;
    let size = (cfg.film_secs * bitrate) as u64;
    std::fs::create_dir_all(&cfg.work)?;
    let (torrent, piece) = make_film(tools, &cfg.work.join("film"), size, cfg.piece_length)?;
    let mut res = Results {
        date: date(),
        machine: machine(),
        seeder: tools.version(Kind::Libtorrent),
        size,
        piece,
        bitrate_bps: cfg.bitrate_bps,
        uplink_bps: cfg.uplink_bps,
        rtt_ms: cfg.rtt_ms,
        reps: cfg.reps,
        startup_secs: cfg.startup_secs,
        seek_secs: cfg.seek_secs,
        startup_limit: 0.0,
        seek_limit: 0.0,
        clients: BTreeMap::new(),
        swarm: Vec::new(),
        swarm_size: 0,
        throughput: Vec::new(),
        throughput_size: 0,
        mesh: None,
        player: None,
        kino_config: cfg.kino_config.clone(),
    };
    res.recompute_limits();
    eprintln!(
        "film {size} bytes ({:.0} s at {:.2} Mbit/s), pieces of {} KiB; seeder uplink {:.1} Mbit/s, RTT +{} ms; startup limit {:.2} s",
        cfg.film_secs,
        cfg.bitrate_bps as f64 / 1e6,
        piece / 1024,
        cfg.uplink_bps as f64 / 1e6,
        cfg.rtt_ms,
        res.startup_limit
    );
    let mut active = Vec::new();
    for &k in &cfg.clients {
        let mut f = ClientFigures {
            version: tools.version(k),
            ..Default::default()
        };
        f.skipped = tools.missing(k);
        if f.skipped.is_none() {
            active.push(k);
        }
        res.clients.insert(k, f);
    }
    if cfg.reps > 0 && !active.is_empty() {
        linear::run(cfg, tools, &torrent, size, &active, &mut res.clients).await?;
    }
    if cfg.swarm_viewers > 0 {
        let (swarm_size, runs) = swarm::run(cfg, tools).await?;
        res.swarm_size = swarm_size;
        res.swarm = runs;
    }
    if cfg.mesh.seeders > 0 && cfg.reps > 0 && !active.is_empty() {
        res.mesh = Some(mesh::run(cfg, tools, &res.clients, &active).await?);
    }
    if cfg.player.film_secs > 0.0 && cfg.reps > 0 && !active.is_empty() {
        res.player = Some(real_film::run(cfg, tools, &res.clients, &active).await?);
    }
    if cfg.throughput_bytes > 0 {
        res.throughput_size = cfg.throughput_bytes;
        res.throughput = throughput::run(cfg, tools, bitrate).await?;
    }
    Ok(res)
}

/// Which viewer run this is: client, repetition and phase (`play`, `seek`, `mesh` or `mpv`),
/// for the log line and the errors.
struct Run {
    k: Kind,
    rep: usize,
    phase: &'static str,
}

/// Runs one viewer, records its figures in `f` (and its buffer curve in `buffers`, for the
/// charts), prints one line, and removes the downloaded data.
async fn view_recorded(
    run: Run,
    tools: &Tools,
    node: &Node,
    spec: &ViewSpec,
    dir: &Path,
    f: &mut ClientFigures,
    buffers: Option<&mut BufferRuns>,
) {
    let started = Instant::now();
    let r = clients::view(run.k, tools, node, spec, dir).await;
    let line = record(f, buffers, r, spec, run.phase, spec.startup_bytes);
    eprintln!(
        "  rep {} {:4} {:10} {line} ({:.1} s)",
        run.rep + 1,
        run.phase,
        run.k.name(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir.join("data"));
}

fn record(
    f: &mut ClientFigures,
    buffers: Option<&mut BufferRuns>,
    r: anyhow::Result<ViewRun>,
    spec: &ViewSpec,
    phase: &str,
    startup_bytes: u64,
) -> String {
    let run = match r {
        Ok(run) => run,
        Err(e) => {
            f.errors.push(format!("{phase}: {e:#}"));
            return format!("FAILED: {e:#}");
        }
    };
    if !run.report.ok {
        let e = run.report.error.clone().unwrap_or_default();
        f.errors.push(format!("{phase}: {e}"));
    }
    let mut line = String::new();
    if spec.player_watch.is_some() {
        // mpv: "first byte" is when it started playing; stalls are its own.
        if let Some(t) = metrics::ttfb(&run) {
            f.startup.push(t);
            line += &format!("playing {t:.2} s ");
            let st = &run.report.stalls;
            let total: u64 = st.iter().map(|(a, b)| b.saturating_sub(*a)).sum();
            f.stalls.push(st.len() as f64);
            f.stall_s.push(total as f64 / 1e6);
            line += &format!("stalls {} ({:.1} s) ", st.len(), total as f64 / 1e6);
        }
    } else if let Some(t) = metrics::ttfb(&run) {
        f.ttfb.push(t);
        line += &format!("ttfb {t:.2} s ");
    }
    if let Some(t) = metrics::time_to_bytes(&run, startup_bytes.min(spec.size)) {
        f.startup.push(t);
        line += &format!("startup {t:.2} s ");
    }
    if phase == "play" && run.report.ok {
        if let Some(p) = metrics::playback(&run, spec.size, spec.bitrate, startup_bytes, 2.0) {
            f.stalls.push(p.stalls as f64);
            f.stall_s.push(p.stall_s);
            line += &format!("stalls {} ({:.1} s) ", p.stalls, p.stall_s);
            if let Some(buffers) = buffers {
                let st = metrics::time_to_bytes(&run, startup_bytes).unwrap_or(f64::MAX);
                buffers.entry(run.kind).or_default().push((st, p.buffer));
            }
        }
        if let Some(r) = run.peak_rss_kib {
            f.rss_mib.push(r as f64 / 1024.0);
        }
    }
    for (frac, t) in metrics::seek_times(&run) {
        if let Some(t) = t {
            f.seek
                .entry(format!("{:.0}%", frac * 100.0))
                .or_default()
                .push(t);
            line += &format!("seek {:.0}% {t:.2} s ", frac * 100.0);
        }
    }
    if let Some(e) = &run.report.error {
        line += &format!("ERROR {e}");
    }
    line
}

impl Results {
    /// Computes the physical limits from the recorded parameters (at the start of a run, and
    /// again in `kino-bench report` after a change of the formula).
    pub fn recompute_limits(&mut self) {
        let bitrate = self.bitrate_bps as f64 / 8.0;
        let rtt = self.rtt_ms as f64 / 1000.0;
        let up = self.uplink_bps as f64;
        self.startup_limit =
            metrics::startup_limit((self.startup_secs * bitrate) as u64, self.piece, up, rtt);
        self.seek_limit = metrics::seek_limit(
            self.size / 2,
            (self.seek_secs * bitrate) as u64,
            self.piece,
            up,
            rtt,
        );
        if let Some(m) = &mut self.mesh {
            m.compute_limits(self.startup_secs, self.seek_secs);
        }
    }
}

/// Summary of a vector for tables.
pub fn sum(v: &[f64]) -> Option<Summary> {
    metrics::summary(v)
}
