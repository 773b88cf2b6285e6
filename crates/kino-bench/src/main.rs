//! `kino-bench`: parses arguments, runs the scenarios (or the reader / relay inside a
//! namespace), writes the results. Ctrl-C or SIGTERM drops the running scenario, which kills
//! every process it started and deletes its namespaces.

use anyhow::Context;
use clap::{Parser, Subcommand};
use kino_bench::clients::{Kind, Tools};
use kino_bench::scenario::{self, Config};
use kino_bench::{net, player, reader, relay, report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Kino against libtorrent, peerflix, WebTorrent and rqbit, in network namespaces")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// The kino binary (default: target/release/kino, then target/debug/kino).
    #[arg(long, env = "KINO_BIN")]
    kino: Option<PathBuf>,
    /// Where results go (default: bench/results, smoke: bench/results/tmp/smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A config.toml Kino runs with (default: none, Kino's defaults), to measure a setting.
    #[arg(long)]
    kino_config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Tiny sizes, Kino and libtorrent; startup, playback, seek, several seeders and the real
    /// film once; exits non-zero on any failure.
    Smoke {
        #[command(flatten)]
        common: Common,
    },
    /// The full benchmark.
    Run {
        #[command(flatten)]
        common: Common,
        /// Clients, comma-separated.
        #[arg(
            long,
            default_value = "kino,libtorrent,peerflix,webtorrent,rqbit",
            value_delimiter = ','
        )]
        clients: Vec<String>,
        /// Repetitions of the startup, playback and seek runs (and of the several-seeders and
        /// real-film runs).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Film length, s.
        #[arg(long, default_value_t = 40.0)]
        film_secs: f64,
        /// Declared bitrate, Mbit/s (default: 70 % of the uplink, the target's edge).
        #[arg(long, default_value_t = 5.6)]
        bitrate_mbit: f64,
        /// Seeder uplink, Mbit/s.
        #[arg(long, default_value_t = 8.0)]
        uplink_mbit: f64,
        /// Added RTT, ms (delaying relay; 0: none).
        #[arg(long, default_value_t = 50)]
        rtt_ms: u64,
        /// Piece length, bytes (default: Kino's choice).
        #[arg(long)]
        piece_length: Option<u32>,
        /// Swarm viewers (0: skip).
        #[arg(long, default_value_t = 20)]
        swarm_viewers: usize,
        /// Swarm clients, comma-separated.
        #[arg(long, default_value = "kino", value_delimiter = ',')]
        swarm_clients: Vec<String>,
        /// Swarm film length, s.
        #[arg(long, default_value_t = 20.0)]
        swarm_film_secs: f64,
        /// Swarm origin uplink, Mbit/s.
        #[arg(long, default_value_t = 40.0)]
        swarm_origin_mbit: f64,
        /// Swarm viewer uplink, Mbit/s.
        #[arg(long, default_value_t = 10.0)]
        swarm_viewer_mbit: f64,
        /// Throughput file size, MiB (0: skip).
        #[arg(long, default_value_t = 1024)]
        throughput_mib: u64,
        /// Several slow seeders: how many (0: skip).
        #[arg(long, default_value_t = 4)]
        mesh_seeders: usize,
        /// Several slow seeders: uplink of each, Mbit/s.
        #[arg(long, default_value_t = 5.0)]
        mesh_uplink_mbit: f64,
        /// Several slow seeders: added RTT to each, ms.
        #[arg(long, default_value_t = 100)]
        mesh_rtt_ms: u64,
        /// Several slow seeders: bitrate, Mbit/s.
        #[arg(long, default_value_t = 4.0)]
        mesh_bitrate_mbit: f64,
        /// Several slow seeders: film length, s (long enough that the 30 % seek jumps past what the first
        /// 10 s fetched).
        #[arg(long, default_value_t = 120.0)]
        mesh_film_secs: f64,
        /// Real film in mpv: film length, s (0: skip).
        #[arg(long, default_value_t = 60.0)]
        player_film_secs: f64,
        /// Real film: video bitrate (x264 CBR), Mbit/s.
        #[arg(long, default_value_t = 4.0)]
        player_video_mbit: f64,
        /// Real film: frame size.
        #[arg(long, default_value = "1280x720")]
        player_frame: String,
        /// Real film: playback watched for stalls before the seeks, s.
        #[arg(long, default_value_t = 10.0)]
        player_watch_secs: f64,
        /// Real film: its index at the front (`-movflags +faststart`).
        #[arg(long)]
        player_faststart: bool,
        /// Per-run deadline, s.
        #[arg(long, default_value_t = 120)]
        deadline: u64,
    },
    /// Re-renders results.md and the charts from a results.json.
    Report {
        /// results.json of a run.
        results: PathBuf,
    },
    /// (internal) Reads a stream inside a namespace and prints a JSON report.
    Reader {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long)]
        size: u64,
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value_t = 0)]
        startup_bytes: u64,
        #[arg(long, value_delimiter = ',')]
        seeks: Vec<f64>,
        #[arg(long, default_value_t = 0)]
        seek_bytes: u64,
        #[arg(long, default_value_t = 120)]
        deadline: u64,
    },
    /// (internal) Plays a stream in mpv inside a namespace and prints a JSON report.
    Player {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long, value_delimiter = ',')]
        seeks: Vec<f64>,
        /// Playback watched for stalls before the seeks, ms.
        #[arg(long, default_value_t = 10_000)]
        watch_ms: u64,
        #[arg(long, default_value_t = 120)]
        deadline: u64,
        #[arg(long, default_value = "mpv")]
        mpv: PathBuf,
    },
    /// (internal) Delaying TCP relay.
    Relay {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        delay_ms: u64,
    },
}

/// Where the stream of `reader` / `player` is.
#[derive(clap::Args)]
struct SourceArgs {
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    rqbit_api: Option<String>,
    #[arg(long)]
    torrent: Option<PathBuf>,
    #[arg(long)]
    peer: Option<String>,
    #[arg(long)]
    out: Option<PathBuf>,
}

impl SourceArgs {
    fn source(self) -> anyhow::Result<reader::Source> {
        match (self.url, self.rqbit_api) {
            (Some(u), _) => Ok(reader::Source::Url(u)),
            (None, Some(api)) => Ok(reader::Source::Rqbit {
                api,
                torrent: self.torrent.context("--torrent")?,
                peer: self.peer.context("--peer")?,
                out: self.out.context("--out")?,
            }),
            _ => anyhow::bail!("--url or --rqbit-api"),
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tools(c: &Common) -> anyhow::Result<Tools> {
    let repo = repo().canonicalize()?;
    let kino = match &c.kino {
        Some(k) => k.clone(),
        None => ["target/release/kino", "target/debug/kino"]
            .iter()
            .map(|p| repo.join(p))
            .find(|p| p.exists())
            .unwrap_or_else(|| repo.join("target/release/kino")),
    };
    Ok(Tools {
        bench: std::env::current_exe()?,
        kino: kino.canonicalize().unwrap_or(kino),
        kino_config: match &c.kino_config {
            Some(p) => Some(
                p.canonicalize()
                    .with_context(|| format!("--kino-config {}", p.display()))?,
            ),
            None => None,
        },
        repo,
    })
}

/// Removes the work folder when dropped.
struct WorkDir(PathBuf);
impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes results.md, results.json, charts.json and the PNG charts under `out`.
async fn write_results(res: &scenario::Results, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let md = report::markdown(res);
    println!("{md}");
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(res)?)?;
    let charts = out.join("charts.json");
    std::fs::write(&charts, serde_json::to_string(&report::chart_data(res))?)?;
    let plot = repo().join("bench/plot.py");
    match tokio::process::Command::new("/usr/bin/python3")
        .arg(&plot)
        .arg(&charts)
        .arg(out)
        .status()
        .await
    {
        Ok(s) if s.success() => eprintln!("charts written under {}", out.display()),
        _ => eprintln!(
            "no charts: bench/plot.py needs python3-matplotlib (scripts/install-bench-peers)"
        ),
    }
    eprintln!("results: {}", out.join("results.md").display());
    Ok(())
}

async fn bench(cfg: Config, tools: Tools, smoke: bool) -> anyhow::Result<bool> {
    net::preflight()?;
    net::remove_stale();
    let _work = WorkDir(cfg.work.clone());
    let res = scenario::run(&cfg, &tools).await?;
    write_results(&res, &cfg.out).await?;
    let mesh = res.mesh.iter().flat_map(|m| m.clients.values());
    let played = res.player.iter().flat_map(|p| p.clients.values());
    let failed = res
        .clients
        .values()
        .chain(mesh)
        .chain(played)
        .any(|f| !f.errors.is_empty() || (f.skipped.is_none() && f.startup.is_empty()));
    if smoke {
        let missing = res.clients.values().any(|f| f.skipped.is_some())
            || res.player.as_ref().is_none_or(|p| p.skipped.is_some());
        return Ok(!failed && !missing);
    }
    Ok(true)
}

/// A frame size `WxH` (ffmpeg's syntax), checked.
fn frame(s: &str) -> anyhow::Result<String> {
    let ok = s.split_once('x').is_some_and(|(w, h)| {
        w.parse::<u16>().is_ok_and(|w| w >= 16) && h.parse::<u16>().is_ok_and(|h| h >= 16)
    });
    anyhow::ensure!(
        ok,
        "--player-frame must be WIDTHxHEIGHT (e.g. 1280x720), not {s:?}"
    );
    Ok(s.to_owned())
}

fn mbit(x: f64) -> u64 {
    (x * 1e6) as u64
}

fn kinds(v: &[String]) -> anyhow::Result<Vec<Kind>> {
    v.iter().map(|s| Kind::parse(s.trim())).collect()
}

async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = std::env::temp_dir().join(format!("kino-bench-{}", std::process::id()));
    let job = async {
        match cli.cmd {
            Cmd::Reader {
                source,
                size,
                seed,
                startup_bytes,
                seeks,
                seek_bytes,
                deadline,
            } => {
                let rep = reader::run(reader::Plan {
                    source: source.source()?,
                    size,
                    seed,
                    startup_bytes,
                    seeks,
                    seek_bytes,
                    deadline: Duration::from_secs(deadline),
                })
                .await;
                println!("{}", serde_json::to_string(&rep)?);
                Ok(true)
            }
            Cmd::Player {
                source,
                seeks,
                watch_ms,
                deadline,
                mpv,
            } => {
                let rep = player::run(player::Plan {
                    source: source.source()?,
                    seeks,
                    watch: Duration::from_millis(watch_ms),
                    deadline: Duration::from_secs(deadline),
                    mpv,
                })
                .await;
                println!("{}", serde_json::to_string(&rep)?);
                Ok(true)
            }
            Cmd::Report { results } => {
                let mut res: scenario::Results = serde_json::from_slice(&std::fs::read(&results)?)?;
                res.recompute_limits();
                let out = results.parent().map(PathBuf::from).unwrap_or_default();
                write_results(&res, &out).await?;
                Ok(true)
            }
            Cmd::Relay {
                listen,
                to,
                delay_ms,
            } => {
                relay::run(listen, to, Duration::from_millis(delay_ms)).await?;
                Ok(true)
            }
            Cmd::Smoke { common } => {
                let tools = tools(&common)?;
                let out = common
                    .out
                    .clone()
                    .unwrap_or_else(|| tools.repo.join("bench/results/tmp/smoke"));
                let cfg = Config {
                    clients: vec![Kind::Kino, Kind::Libtorrent],
                    film_secs: 16.0,
                    bitrate_bps: mbit(2.0),
                    uplink_bps: mbit(10.0),
                    rtt_ms: 20,
                    reps: 1,
                    piece_length: Some(256 * 1024),
                    startup_secs: 10.0,
                    seek_secs: 5.0,
                    seeks: vec![0.3, 0.6, 0.9],
                    deadline: Duration::from_secs(20),
                    swarm_viewers: 0,
                    swarm_film_secs: 0.0,
                    swarm_origin_bps: 0,
                    swarm_viewer_bps: 0,
                    swarm_stagger: 1.0,
                    swarm_clients: vec![],
                    throughput_bytes: 0,
                    kino_config: None,
                    mesh: scenario::MeshConfig {
                        seeders: 2,
                        uplink_bps: mbit(5.0),
                        rtt_ms: 20,
                        bitrate_bps: mbit(2.0),
                        film_secs: 16.0,
                    },
                    player: scenario::PlayerConfig {
                        film_secs: 8.0,
                        video_bps: mbit(1.0),
                        frame: "320x180".into(),
                        watch_secs: 2.0,
                        faststart: false,
                    },
                    work: work.clone(),
                    out,
                };
                bench(cfg, tools, true).await
            }
            Cmd::Run {
                common,
                clients,
                reps,
                film_secs,
                bitrate_mbit,
                uplink_mbit,
                rtt_ms,
                piece_length,
                swarm_viewers,
                swarm_clients,
                swarm_film_secs,
                swarm_origin_mbit,
                swarm_viewer_mbit,
                throughput_mib,
                mesh_seeders,
                mesh_uplink_mbit,
                mesh_rtt_ms,
                mesh_bitrate_mbit,
                mesh_film_secs,
                player_film_secs,
                player_video_mbit,
                player_frame,
                player_watch_secs,
                player_faststart,
                deadline,
            } => {
                for (name, v) in [
                    ("--film-secs", film_secs),
                    ("--bitrate-mbit", bitrate_mbit),
                    ("--uplink-mbit", uplink_mbit),
                    ("--swarm-film-secs", swarm_film_secs),
                    ("--swarm-origin-mbit", swarm_origin_mbit),
                    ("--swarm-viewer-mbit", swarm_viewer_mbit),
                    ("--mesh-uplink-mbit", mesh_uplink_mbit),
                    ("--mesh-bitrate-mbit", mesh_bitrate_mbit),
                    ("--mesh-film-secs", mesh_film_secs),
                    ("--player-video-mbit", player_video_mbit),
                    ("--player-watch-secs", player_watch_secs),
                ] {
                    if !(v.is_finite() && v > 0.0) {
                        anyhow::bail!("{name} must be a number above 0, not {v}");
                    }
                }
                let tools = tools(&common)?;
                let kino_config =
                    match &tools.kino_config {
                        Some(p) => Some(std::fs::read_to_string(p).with_context(|| {
                            format!("cannot read --kino-config {}", p.display())
                        })?),
                        None => None,
                    };
                let out = common
                    .out
                    .clone()
                    .unwrap_or_else(|| tools.repo.join("bench/results"));
                let cfg = Config {
                    clients: kinds(&clients)?,
                    film_secs,
                    bitrate_bps: mbit(bitrate_mbit),
                    uplink_bps: mbit(uplink_mbit),
                    rtt_ms,
                    reps,
                    piece_length,
                    startup_secs: 10.0,
                    seek_secs: 5.0,
                    seeks: vec![0.3, 0.6, 0.9],
                    deadline: Duration::from_secs(deadline),
                    swarm_viewers,
                    swarm_film_secs,
                    swarm_origin_bps: mbit(swarm_origin_mbit),
                    swarm_viewer_bps: mbit(swarm_viewer_mbit),
                    swarm_stagger: 1.0,
                    swarm_clients: kinds(&swarm_clients)?,
                    throughput_bytes: throughput_mib << 20,
                    kino_config,
                    mesh: scenario::MeshConfig {
                        seeders: mesh_seeders,
                        uplink_bps: mbit(mesh_uplink_mbit),
                        rtt_ms: mesh_rtt_ms,
                        bitrate_bps: mbit(mesh_bitrate_mbit),
                        film_secs: mesh_film_secs,
                    },
                    player: scenario::PlayerConfig {
                        film_secs: player_film_secs.max(0.0),
                        video_bps: mbit(player_video_mbit),
                        frame: frame(&player_frame)?,
                        watch_secs: player_watch_secs,
                        faststart: player_faststart,
                    },
                    work: work.clone(),
                    out,
                };
                bench(cfg, tools, false).await
            }
        }
    };
    let r = tokio::select! {
        r = job => r,
        _ = signal() => {
            eprintln!("kino-bench: interrupted; everything it started has been stopped and removed");
            return ExitCode::from(130);
        }
    };
    let _ = std::fs::remove_dir_all(&work);
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("kino-bench: FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("kino-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
