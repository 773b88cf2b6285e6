//! The scenarios: neutral libtorrent seeders, the clients read in turn against them.
//!
//! 1 startup + 2 playback share one session per run: the reader takes the whole file in order;
//! startup is when the first 10 s of media are readable, the player simulation runs on the
//! arrival curve. 3 seek: a fresh session reads the first 10 s, then seeks to 30/60/90 %.
//! 4 swarm: an origin and N viewers joining staggered, sharing on and off. 5 throughput: a big
//! file, unthrottled. 6 mesh: several slow seeders far away, one viewer, startup and seeks.
//! 7 real film: an H.264/AAC MP4 made by ffmpeg (index at the end), played by mpv through each
//! client's stream on scenario 1's link: time until mpv plays, its stalls, its seeks.
//! Reps interleave the clients (rotated order), so drift hits all alike.

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
    /// Repetitions of scenarios 1-3.
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
    /// Scenario 4: number of viewers (0: skip).
    pub swarm_viewers: usize,
    /// Scenario 4: film length, s.
    pub swarm_film_secs: f64,
    /// Scenario 4: origin uplink, bit/s.
    pub swarm_origin_bps: u64,
    /// Scenario 4: each viewer's uplink, bit/s.
    pub swarm_viewer_bps: u64,
    /// Scenario 4: seconds between joins.
    pub swarm_stagger: f64,
    /// Scenario 4: clients.
    pub swarm_clients: Vec<Kind>,
    /// Scenario 5: file size in bytes (0: skip).
    pub throughput_bytes: u64,
    /// Scenario 6: several slow seeders (0: skip).
    pub mesh: MeshConfig,
    /// Scenario 7: a real film in mpv (film_secs 0: skip).
    pub player: PlayerConfig,
    /// The config file Kino ran with, if not its defaults (recorded in the results).
    pub kino_config: Option<String>,
    /// Work folder (deleted at the end).
    pub work: PathBuf,
    /// Where results go.
    pub out: PathBuf,
}

/// Scenario 6: one viewer, several seeders, each slow and far away. The aggregate uplink is
/// what a viewer of a real swarm sees; which seeder gets the urgent piece, and how many requests
/// wait at a slow one, decide startup and seek here.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MeshConfig {
    /// Seeders (0: skip the scenario).
    pub seeders: usize,
    /// Each seeder's uplink cap, bit/s.
    pub uplink_bps: u64,
    /// Added RTT to each seeder, ms.
    pub rtt_ms: u64,
    /// Declared bitrate, bit/s.
    pub bitrate_bps: u64,
    /// Film length, s.
    pub film_secs: f64,
}

/// Scenario 6's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshResults {
    /// What ran.
    pub config: MeshConfig,
    /// Film size, bytes.
    pub size: u64,
    /// Piece length.
    pub piece: u64,
    /// Physical limit of startup over the seeders' aggregate uplink, s.
    pub startup_limit: f64,
    /// Physical limit of a seek over the aggregate uplink (idle links), s.
    pub seek_limit: f64,
    /// Per client (startup, time to first byte and seeks; no playback run).
    pub clients: BTreeMap<Kind, ClientFigures>,
}

/// Scenario 7: a real film (made by ffmpeg from its test sources: H.264 at a constant bitrate,
/// AAC, in an MP4 whose `moov` index sits at the end, as ffmpeg writes it without
/// `+faststart`, or at the front with `faststart`) played by mpv through each client's stream,
/// on scenario 1's link.
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

/// Scenario 7's figures.
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

/// One client's figures in scenarios 1-3.
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

/// A swarm run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmFigures {
    /// Client.
    pub client: Kind,
    /// Viewers upload to each other.
    pub share: bool,
    /// Origin bytes sent on the wire / file size.
    pub egress_ratio: f64,
    /// Startup of every viewer that started, s.
    pub startup: Vec<f64>,
    /// Viewers that read the whole file.
    pub completed: usize,
    /// Viewers.
    pub viewers: usize,
    /// Errors.
    pub errors: Vec<String>,
}

/// A throughput run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputFigures {
    /// Client.
    pub client: Kind,
    /// MB/s from spawn to the last byte.
    pub mb_s: Option<f64>,
    /// CPU seconds per GiB.
    pub cpu_s_per_gib: Option<f64>,
    /// Peak RSS, MiB.
    pub rss_mib: Option<f64>,
    /// Error or why skipped.
    pub error: Option<String>,
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
    /// Per client.
    pub clients: BTreeMap<Kind, ClientFigures>,
    /// Scenario 4.
    pub swarm: Vec<SwarmFigures>,
    /// Scenario 4 file size.
    pub swarm_size: u64,
    /// Scenario 5.
    pub throughput: Vec<ThroughputFigures>,
    /// Scenario 5 file size.
    pub throughput_size: u64,
    /// Scenario 6 (absent in results of runs before it existed).
    #[serde(default)]
    pub mesh: Option<MeshResults>,
    /// Scenario 7 (absent in results of runs before it existed).
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
/// length rule unless given) under `dir`; returns (torrent, piece length).
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
    let piece = piece.unwrap_or_else(|| streaming_piece_length(size));
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

/// Kino's own rule for the piece length of a torrent it makes (`kino create`): the smallest
/// power of two from 256 KiB that keeps the torrent at or under 8192 pieces, at most 4 MiB
/// (`kino_engine::create::streaming_piece_length`, not linked here to keep the bench light).
fn streaming_piece_length(size: u64) -> u32 {
    let mut p: u64 = 256 * 1024;
    while size.div_ceil(p) > 8192 && p < 4 << 20 {
        p *= 2;
    }
    p as u32
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

/// Runs scenarios 1-5 per `cfg`. `progress` gets one line per run.
pub async fn run(cfg: &Config, tools: &Tools) -> anyhow::Result<Results> {
    let bitrate = cfg.bitrate_bps as f64 / 8.0;
    let size = (cfg.film_secs * bitrate) as u64;
    let startup_bytes = (cfg.startup_secs * bitrate) as u64;
    let seek_bytes = (cfg.seek_secs * bitrate) as u64;
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
        let link = single_link(
            tools,
            Some(cfg.uplink_bps),
            &torrent,
            cfg.rtt_ms,
            &cfg.work.join("logs"),
        )
        .await?;
        let mut buffers: BufferRuns = BTreeMap::new();
        for rep in 0..cfg.reps {
            let mut order = active.clone();
            order.rotate_left(rep % active.len());
            for (phase, seeks) in [("play", Vec::new()), ("seek", cfg.seeks.clone())] {
                for &k in &order {
                    let spec = ViewSpec {
                        torrent: torrent.clone(),
                        peers: vec![link.seeder.addr.clone()],
                        size,
                        seed: SEED,
                        bitrate,
                        startup_bytes,
                        seeks: seeks.clone(),
                        seek_bytes,
                        share: true,
                        deadline: cfg.deadline,
                        player_watch: None,
                    };
                    let dir = cfg.work.join(format!("run-{rep}-{phase}-{}", k.name()));
                    let f = res.clients.get_mut(&k).context("client")?;
                    let run = Run { k, rep, phase };
                    view_recorded(
                        run,
                        tools,
                        link.viewer(),
                        &spec,
                        &dir,
                        f,
                        Some(&mut buffers),
                    )
                    .await;
                }
            }
        }
        // Chart the run with the median startup of each client.
        for (k, mut runs) in buffers {
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let Some(f) = res.clients.get_mut(&k)
                && !runs.is_empty()
            {
                f.buffer = runs.swap_remove(runs.len() / 2).1;
            }
        }
        drop(link);
    }
    if cfg.swarm_viewers > 0 {
        let swarm_size = (cfg.swarm_film_secs * bitrate) as u64;
        res.swarm_size = swarm_size;
        let (storrent, _) = make_film(
            tools,
            &cfg.work.join("swarmfilm"),
            swarm_size,
            cfg.piece_length,
        )?;
        for &k in &cfg.swarm_clients {
            if let Some(why) = tools.missing(k) {
                res.swarm.push(SwarmFigures {
                    client: k,
                    share: true,
                    egress_ratio: f64::NAN,
                    startup: vec![],
                    completed: 0,
                    viewers: 0,
                    errors: vec![why],
                });
                continue;
            }
            for share in [true, false] {
                let f = swarm(
                    cfg,
                    tools,
                    k,
                    share,
                    &storrent,
                    swarm_size,
                    bitrate,
                    startup_bytes,
                )
                .await?;
                eprintln!(
                    "  swarm {:10} share {:5} origin egress {:.2}x file, startup p50 {:?} p95 {:?}, {}/{} complete",
                    k.name(),
                    share,
                    f.egress_ratio,
                    metrics::percentile(&f.startup, 50.0),
                    metrics::percentile(&f.startup, 95.0),
                    f.completed,
                    f.viewers
                );
                res.swarm.push(f);
            }
        }
    }
    if cfg.mesh.seeders > 0 && cfg.reps > 0 && !active.is_empty() {
        res.mesh = Some(mesh(cfg, tools, &res.clients, &active).await?);
    }
    if cfg.player.film_secs > 0.0 && cfg.reps > 0 && !active.is_empty() {
        res.player = Some(player(cfg, tools, &res.clients, &active).await?);
    }
    if cfg.throughput_bytes > 0 {
        res.throughput_size = cfg.throughput_bytes;
        res.throughput = throughput(cfg, tools, bitrate).await?;
    }
    Ok(res)
}

/// Scenario 6: `cfg.mesh.seeders` libtorrent seeders, each capped and behind its own delaying
/// relay; one viewer given all of them reads the first 10 s, then seeks to 30/60/90 %.
async fn mesh(
    cfg: &Config,
    tools: &Tools,
    clients: &BTreeMap<Kind, ClientFigures>,
    active: &[Kind],
) -> anyhow::Result<MeshResults> {
    let m = &cfg.mesh;
    let bitrate = m.bitrate_bps as f64 / 8.0;
    let size = (m.film_secs * bitrate) as u64;
    let startup_bytes = (cfg.startup_secs * bitrate) as u64;
    let seek_bytes = (cfg.seek_secs * bitrate) as u64;
    let (torrent, piece) = make_film(tools, &cfg.work.join("meshfilm"), size, cfg.piece_length)?;
    let links = m.seeders;
    let mut out = MeshResults {
        config: m.clone(),
        size,
        piece,
        startup_limit: 0.0,
        seek_limit: 0.0,
        clients: clients.iter().map(|(k, f)| (*k, f.fresh())).collect(),
    };
    out.compute_limits(cfg.startup_secs, cfg.seek_secs);
    eprintln!(
        "mesh: film {size} bytes at {:.2} Mbit/s, {links} seeders of {:.1} Mbit/s each, RTT +{} ms; startup limit {:.2} s, seek limit {:.2} s",
        m.bitrate_bps as f64 / 1e6,
        m.uplink_bps as f64 / 1e6,
        m.rtt_ms,
        out.startup_limit,
        out.seek_limit
    );
    let mut caps: Vec<Caps> = (0..links)
        .map(|_| Caps {
            up_bps: Some(m.uplink_bps),
            down_bps: None,
        })
        .collect();
    caps.push(Caps::default());
    let topo = Topology::new(&caps)?;
    let logs = cfg.work.join("mesh-logs");
    std::fs::create_dir_all(&logs)?;
    let mut seeders = Vec::new();
    for i in 0..links {
        seeders.push(
            start_seeder(
                tools,
                &topo,
                i,
                &torrent,
                &torrent.with_extension(""),
                m.rtt_ms,
                &logs,
            )
            .await?,
        );
    }
    let viewer = &topo.nodes[links];
    for rep in 0..cfg.reps {
        let mut order = active.to_vec();
        order.rotate_left(rep % active.len());
        for &k in &order {
            let spec = ViewSpec {
                torrent: torrent.clone(),
                peers: seeders.iter().map(|s| s.addr.clone()).collect(),
                size,
                seed: SEED,
                bitrate,
                startup_bytes,
                seeks: cfg.seeks.clone(),
                seek_bytes,
                share: true,
                deadline: cfg.deadline,
                player_watch: None,
            };
            let dir = cfg.work.join(format!("mesh-{rep}-{}", k.name()));
            let f = out.clients.get_mut(&k).context("client")?;
            let run = Run {
                k,
                rep,
                phase: "mesh",
            };
            view_recorded(run, tools, viewer, &spec, &dir, f, None).await;
        }
    }
    drop(seeders);
    drop(topo);
    Ok(out)
}

/// Encodes scenario 7's film with ffmpeg into `dir/film.mp4`; returns its size.
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

/// Scenario 7: one libtorrent seeder on scenario 1's link; each client's stream is played by
/// mpv (`kino-bench player`): time until it plays, stalls while watching, then seeks.
async fn player(
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

/// Which run of scenarios 1-3 or 6 this is (for the log line and the errors).
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

#[allow(clippy::too_many_arguments)]
async fn swarm(
    cfg: &Config,
    tools: &Tools,
    k: Kind,
    share: bool,
    torrent: &Path,
    size: u64,
    bitrate: f64,
    startup_bytes: u64,
) -> anyhow::Result<SwarmFigures> {
    let mut caps = vec![Caps {
        up_bps: Some(cfg.swarm_origin_bps),
        down_bps: None,
    }];
    caps.extend((0..cfg.swarm_viewers).map(|_| Caps {
        up_bps: Some(cfg.swarm_viewer_bps),
        down_bps: None,
    }));
    let topo = Topology::new(&caps)?;
    let logs = cfg.work.join(format!("swarm-{}-{share}", k.name()));
    std::fs::create_dir_all(&logs)?;
    let seeder = start_seeder(
        tools,
        &topo,
        0,
        torrent,
        &torrent.with_extension(""),
        0,
        &logs,
    )
    .await?;
    let before = topo.tx_bytes(0)?;
    let mut tasks = Vec::new();
    let mut peers: Vec<String> = Vec::new();
    for i in 0..cfg.swarm_viewers {
        let node = topo.nodes[i + 1].clone();
        let mut dial = vec![seeder.addr.clone()];
        if share {
            dial.extend(peers.iter().cloned());
        }
        let spec = ViewSpec {
            torrent: torrent.to_path_buf(),
            peers: dial,
            size,
            seed: SEED,
            bitrate,
            startup_bytes,
            seeks: Vec::new(),
            seek_bytes: 0,
            share,
            deadline: cfg.deadline,
            player_watch: None,
        };
        peers.push(format!("{}:6881", node.ip));
        let tools = tools.clone();
        let dir = logs.join(format!("v{i}"));
        tasks.push(tokio::spawn(async move {
            clients::view_keep(k, &tools, &node, &spec, &dir).await
        }));
        tokio::time::sleep(Duration::from_secs_f64(cfg.swarm_stagger)).await;
    }
    let mut fig = SwarmFigures {
        client: k,
        share,
        egress_ratio: 0.0,
        startup: vec![],
        completed: 0,
        viewers: cfg.swarm_viewers,
        errors: vec![],
    };
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await);
    }
    let after = topo.tx_bytes(0)?;
    let mut keep = Vec::new();
    for d in done {
        match d {
            Ok(Ok((run, procs))) => {
                keep.push(procs);
                if let Some(t) = metrics::time_to_bytes(&run, startup_bytes) {
                    fig.startup.push(t);
                }
                if run.report.ok {
                    fig.completed += 1;
                } else {
                    fig.errors.push(run.report.error.unwrap_or_default());
                }
            }
            Ok(Err(e)) => fig.errors.push(format!("{e:#}")),
            Err(e) => fig.errors.push(format!("{e}")),
        }
    }
    fig.egress_ratio = (after - before) as f64 / size as f64;
    drop(keep);
    drop(seeder);
    drop(topo);
    Ok(fig)
}

async fn throughput(
    cfg: &Config,
    tools: &Tools,
    bitrate: f64,
) -> anyhow::Result<Vec<ThroughputFigures>> {
    let size = cfg.throughput_bytes;
    let (torrent, _) = make_film(tools, &cfg.work.join("bigfilm"), size, cfg.piece_length)?;
    let logs = cfg.work.join("throughput");
    let link = single_link(tools, None, &torrent, 0, &logs).await?;
    let mut out = Vec::new();
    for &k in &cfg.clients {
        if let Some(why) = tools.missing(k) {
            out.push(ThroughputFigures {
                client: k,
                mb_s: None,
                cpu_s_per_gib: None,
                rss_mib: None,
                error: Some(why),
            });
            continue;
        }
        let spec = ViewSpec {
            torrent: torrent.clone(),
            peers: vec![link.seeder.addr.clone()],
            size,
            seed: SEED,
            bitrate,
            startup_bytes: 0,
            seeks: Vec::new(),
            seek_bytes: 0,
            share: true,
            deadline: cfg.deadline.max(Duration::from_secs(300)),
            player_watch: None,
        };
        let dir = logs.join(k.name());
        let r = clients::view(k, tools, link.viewer(), &spec, &dir).await;
        let _ = std::fs::remove_dir_all(dir.join("data"));
        let gib = size as f64 / (1u64 << 30) as f64;
        let f = match r {
            Ok(run) if run.report.ok => {
                let secs = metrics::time_to_bytes(&run, size).unwrap_or(f64::NAN);
                ThroughputFigures {
                    client: k,
                    mb_s: Some(size as f64 / 1e6 / secs),
                    cpu_s_per_gib: run.cpu_s.map(|c| c / gib),
                    rss_mib: run.peak_rss_kib.map(|r| r as f64 / 1024.0),
                    error: None,
                }
            }
            Ok(run) => ThroughputFigures {
                client: k,
                mb_s: None,
                cpu_s_per_gib: None,
                rss_mib: None,
                error: run.report.error,
            },
            Err(e) => ThroughputFigures {
                client: k,
                mb_s: None,
                cpu_s_per_gib: None,
                rss_mib: None,
                error: Some(format!("{e:#}")),
            },
        };
        eprintln!(
            "  throughput {:10} {:?} MB/s, {:?} CPU s/GiB, {:?} MiB peak RSS {}",
            k.name(),
            f.mb_s,
            f.cpu_s_per_gib,
            f.rss_mib,
            f.error.clone().unwrap_or_default()
        );
        out.push(f);
    }
    drop(link);
    Ok(out)
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

impl MeshResults {
    /// The physical limits over the seeders' aggregate uplink, from the recorded parameters.
    fn compute_limits(&mut self, startup_secs: f64, seek_secs: f64) {
        let c = &self.config;
        let bitrate = c.bitrate_bps as f64 / 8.0;
        let rtt = c.rtt_ms as f64 / 1000.0;
        let up = c.uplink_bps as f64;
        self.startup_limit = metrics::startup_limit_links(
            (startup_secs * bitrate) as u64,
            self.piece,
            up,
            c.seeders,
            rtt,
        );
        self.seek_limit = metrics::seek_limit(
            self.size / 2,
            (seek_secs * bitrate) as u64,
            self.piece,
            up * c.seeders as f64,
            rtt,
        );
    }
}

/// Summary of a vector for tables.
pub fn sum(v: &[f64]) -> Option<Summary> {
    metrics::summary(v)
}
