//! The subcommands: thin wiring of the engine, the store and the server.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kino_engine::{
    AddOptions, Engine, EngineConfig, EngineError, Placement, SharePolicy, TorrentInfo,
    TorrentSource, infohash_hex,
};
use kino_server::Server;
use kino_store::Store;

use crate::GlobalArgs;
use crate::config::Config;
use crate::error::user_error;
use crate::format;

/// Everything a subcommand needs, from the config file and the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub engine: EngineConfig,
    pub http_port: u16,
    /// The config file in use (named with --config, or the default path).
    pub config_path: Option<PathBuf>,
    /// Which trackers of catalog magnets are kept (`catalog.allow_local_trackers`).
    pub catalog_trackers: kino_catalog::trackers::TrackerPolicy,
}

impl Settings {
    /// Loads the config file and applies the flags over it.
    pub fn load(g: &GlobalArgs) -> anyhow::Result<Settings> {
        let mut cfg = Config::load(g.config.as_deref())?;
        if let Some(d) = &g.data_dir {
            cfg.data_dir = Some(d.clone());
        }
        let data_dir = cfg.data_dir()?;
        let net = &cfg.network;
        let port = g.listen_port.unwrap_or(net.listen_port);
        let ip = g.bind.unwrap_or(net.listen_ip);
        let mut engine = EngineConfig::new(data_dir);
        engine.listen = Some(SocketAddr::new(ip, port));
        engine.dht = net.dht && !g.no_dht;
        engine.dht_bootstrap = if g.dht_bootstrap.is_empty() {
            net.dht_bootstrap.clone()
        } else {
            g.dht_bootstrap.clone()
        };
        for b in &engine.dht_bootstrap {
            let port_ok = b
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                bail!(user_error(format!(
                    "--dht-bootstrap {b:?}: expected HOST:PORT"
                )));
            }
        }
        engine.local_discovery = net.local_discovery && !g.no_lsd;
        if !(1..=1024).contains(&net.request_window) {
            bail!(user_error(
                "network.request_window must be between 1 and 1024"
            ));
        }
        engine.peer_request_window = net.request_window;
        engine.stream_idle_timeout = Duration::from_secs(cfg.http.stream_idle_timeout_secs.max(1));
        let s = &cfg.share;
        let upload = g.upload_limit.unwrap_or(s.upload_limit_kib);
        let ratio = g.ratio_limit.unwrap_or(s.ratio_limit);
        let cache = g.cache_limit.unwrap_or(s.cache_limit_mib);
        if !(ratio.is_finite() && ratio >= 0.0) {
            bail!(user_error("--ratio-limit must be a number of at least 0"));
        }
        engine.share = SharePolicy {
            enabled: s.enabled && !g.no_share,
            upload_limit_bps: (upload > 0).then(|| upload.saturating_mul(1024)),
            ratio_limit: (ratio > 0.0).then_some(ratio),
            cache_limit_bytes: (cache > 0).then(|| cache.saturating_mul(1024 * 1024)),
        };
        Ok(Settings {
            engine,
            http_port: g.http_port.unwrap_or(cfg.http.port),
            config_path: g.config.clone().or_else(Config::default_path),
            catalog_trackers: kino_catalog::trackers::TrackerPolicy::from_allow_local(
                cfg.catalog.allow_local_trackers,
            ),
        })
    }

    /// Opens the database in the data folder.
    pub fn open_store(&self) -> anyhow::Result<Arc<Store>> {
        let dir = &self.engine.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
        Ok(Arc::new(Store::open(&dir.join("kino.sqlite3"))?))
    }

    /// Opens the store and starts the engine.
    pub async fn start_engine(&self) -> anyhow::Result<Engine> {
        // From here on a Ctrl-C or SIGTERM must reach the command's orderly shutdown, whenever
        // it arrives.
        listen_for_shutdown();
        let store = self.open_store()?;
        Ok(Engine::start(self.engine.clone(), store).await?)
    }

    /// Binds the HTTP server on 127.0.0.1.
    pub async fn start_server(&self, engine: &Engine) -> anyhow::Result<Server> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.http_port);
        Server::bind(addr, kino_server::router(engine.clone()))
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    }
}

fn parse_peer(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP:PORT address"))
}

/// Arguments of `kino create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// File or folder to share.
    pub path: PathBuf,
    /// Where to write the .torrent (default: NAME.torrent here).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Piece length in bytes (a power of two; default: chosen for streaming).
    #[arg(long)]
    pub piece_length: Option<u32>,
}

fn hashing_bar(total_hint: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total_hint)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn make_torrent(
    path: &Path,
    piece_length: Option<u32>,
) -> anyhow::Result<kino_engine::create::CreatedTorrent> {
    let bar = hashing_bar(0);
    let created = kino_engine::create::create_torrent(path, piece_length, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    Ok(created)
}

/// `kino create`.
pub fn create(a: CreateArgs) -> anyhow::Result<()> {
    let created = make_torrent(&a.path, a.piece_length)?;
    let info = &created.info;
    let out = a
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", info.name)));
    std::fs::write(&out, &info.metainfo)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "{}: {} in {} pieces of {}",
        out.display(),
        format::bytes(info.total_len),
        info.total_len.div_ceil(info.piece_length as u64),
        format::bytes(info.piece_length as u64)
    );
    println!("{}", info.magnet());
    Ok(())
}

/// Arguments of `kino seed`.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// A file or folder to share, or a .torrent whose data is beside it (or in --data).
    pub path: PathBuf,
    /// For a .torrent: the folder holding its content.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Piece length when making the torrent.
    #[arg(long)]
    pub piece_length: Option<u32>,
}

/// Ctrl-C or SIGTERM, seen once for the whole process.
static SHUTDOWN: std::sync::OnceLock<tokio_util::sync::CancellationToken> =
    std::sync::OnceLock::new();

/// Registers the Ctrl-C and SIGTERM handlers ([`Settings::start_engine`] calls it: every command
/// that starts an engine shuts it down in order): from then on a signal is never lost and never
/// kills Kino with the default action, even when it arrives while nothing is waiting for it
/// (between two steps of a command); every later [`shutdown_signal`] sees it at once. Commands
/// that start no engine keep the default action (Ctrl-C stops `kino create` at once). Returns
/// the token that the signal cancels.
pub fn listen_for_shutdown() -> tokio_util::sync::CancellationToken {
    SHUTDOWN
        .get_or_init(|| {
            let token = tokio_util::sync::CancellationToken::new();
            let cancel = token.clone();
            #[cfg(unix)]
            let (term, int) = {
                use tokio::signal::unix::{SignalKind, signal};
                (
                    signal(SignalKind::terminate()).ok(),
                    signal(SignalKind::interrupt()).ok(),
                )
            };
            // The process's signal listener: it lives as long as the process.
            tokio::spawn(async move {
                #[cfg(unix)]
                {
                    let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                        match s {
                            Some(mut s) => {
                                s.recv().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    if term.is_some() || int.is_some() {
                        tokio::select! {
                            _ = wait(term) => {}
                            _ = wait(int) => {}
                        }
                        cancel.cancel();
                        return;
                    }
                }
                let _ = tokio::signal::ctrl_c().await;
                cancel.cancel();
            });
            token
        })
        .clone()
}

/// Waits for Ctrl-C or SIGTERM (also one that arrived before this was called).
pub async fn shutdown_signal() {
    listen_for_shutdown().cancelled().await;
}

/// `kino seed`.
pub async fn seed(s: Settings, a: SeedArgs) -> anyhow::Result<()> {
    let is_torrent = a.path.extension().is_some_and(|e| e == "torrent") && a.path.is_file();
    let (info, root) = if is_torrent {
        let info = TorrentInfo::from_file(&a.path)?;
        let beside = a.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = match a.data {
            Some(d) => d,
            None if info.single_file => beside,
            None => beside.join(&info.name),
        };
        (info, root)
    } else {
        if !a.path.exists() {
            bail!(user_error(format!("{} does not exist", a.path.display())));
        }
        let c = make_torrent(&a.path, a.piece_length)?;
        (c.info, c.content_root)
    };
    let engine = s.start_engine().await?;
    let source = TorrentSource::Metainfo(info.clone());
    // The data is verified (read-only) before anything is announced.
    let added = engine
        .add(
            &source,
            AddOptions {
                peers: Vec::new(),
                placement: Placement::SeedFrom(root.clone()),
            },
        )
        .await;
    let torrent = match added {
        Ok(t) => t,
        Err(e) => {
            engine.shutdown().await;
            return Err(match e {
                EngineError::DataMismatch {
                    dir,
                    matching,
                    pieces,
                    ..
                } if is_torrent => user_error(format!(
                    "the data in {} does not match {}: {matching} of {pieces} pieces match; \
                     nothing was written (pass the folder that holds the torrent's content \
                     with --data)",
                    dir.display(),
                    a.path.display()
                )),
                e => e.into(),
            });
        }
    };
    println!("{}", info.magnet());
    match engine.listen_addr() {
        Some(addr) => println!("listening on {addr}"),
        None => println!("not accepting peers"),
    }
    let _ = std::io::stdout().flush();
    // Checking existing data before seeding.
    tokio::select! {
        r = torrent.wait_until_completed() => r?,
        _ = shutdown_signal() => { engine.shutdown().await; return Ok(()); }
    }
    if !s.engine.share.enabled {
        eprintln!("sharing is off (--no-share): nothing will be uploaded");
    }
    eprintln!(
        "seeding {} from {} (Ctrl-C to stop)",
        info.name,
        root.display()
    );
    status_loop(&engine, &torrent.infohash(), None, shutdown_signal()).await;
    engine.shutdown().await;
    Ok(())
}

/// Arguments of `kino play`.
#[derive(Debug, clap::Args)]
pub struct PlayArgs {
    /// Magnet link, .torrent file or infohash.
    pub source: String,
    /// File index to play (default: the largest video).
    #[arg(long)]
    pub file: Option<usize>,
    /// Player to start on the stream URL.
    #[arg(long, value_enum, default_value_t = Player::None)]
    pub player: Player,
    /// Peer to connect to, IP:PORT (repeatable).
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<SocketAddr>,
}

/// External players.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Player {
    /// mpv.
    Mpv,
    /// VLC.
    Vlc,
    /// None: print the URL only.
    None,
}

/// `kino play`.
pub async fn play(s: Settings, a: PlayArgs) -> anyhow::Result<()> {
    let source = TorrentSource::parse(&a.source)?;
    let engine = s.start_engine().await?;
    let result = play_inner(&s, &engine, source, a).await;
    engine.shutdown().await;
    result
}

async fn play_inner(
    s: &Settings,
    engine: &Engine,
    source: TorrentSource,
    a: PlayArgs,
) -> anyhow::Result<()> {
    let server = s.start_server(engine).await?;
    // Resolve first, so that a refused --file leaves nothing behind.
    let resolve = engine.resolve_source(&source, &a.peers);
    let (info, seen) = tokio::select! {
        r = resolve => match r {
            Ok(x) => x,
            Err(e) => { server.shutdown().await; return Err(e.into()); }
        },
        _ = shutdown_signal() => { server.shutdown().await; return Ok(()); }
    };
    let file = match a.file {
        Some(n) if info.files.get(n).is_none_or(|f| f.padding) => {
            server.shutdown().await;
            bail!(user_error(format!(
                "--file {n}: this torrent has files 0 to {}",
                info.files.len().saturating_sub(1)
            )));
        }
        Some(n) => n,
        None => match info.default_play_file() {
            Some(f) => f.index,
            None => {
                server.shutdown().await;
                bail!(user_error("this torrent has no playable file"));
            }
        },
    };
    let mut peers = a.peers.clone();
    peers.extend(seen);
    // Added and pinned in one step: a film larger than the whole cache is not evicted.
    let (torrent, guard) = engine
        .add_for_playing(
            &TorrentSource::Metainfo(info),
            AddOptions {
                peers,
                placement: Placement::Cache,
            },
        )
        .await?;
    let info = torrent.info();
    let ih = torrent.infohash();
    if let Some(over) = guard.over_cache_limit() {
        eprintln!("warning: {over}");
    }
    engine.prepare_playback(&ih, file);
    let url = server.stream_url(&infohash_hex(&ih), file);
    println!("{url}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "playing {} ({})",
        info.files[file].path.display(),
        format::bytes(info.files[file].len)
    );

    let mut child = match a.player {
        Player::None => None,
        p => {
            let cmd = if p == Player::Mpv { "mpv" } else { "vlc" };
            match tokio::process::Command::new(cmd)
                .arg(&url)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
            {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("cannot start {cmd}: {e}; open {url} in any player");
                    None
                }
            }
        }
    };
    if let Some(c) = child.as_mut() {
        let status_until_exit = async {
            let _ = c.wait().await;
        };
        let interrupted = tokio::select! {
            _ = status_loop(engine, &ih, Some(file), status_until_exit) => false,
            _ = shutdown_signal() => true,
        };
        if interrupted || !s.engine.share.enabled {
            server.shutdown().await;
            return Ok(());
        }
        eprintln!("\nplayback ended; still sharing (Ctrl-C to stop)");
    }
    status_loop(engine, &ih, Some(file), shutdown_signal()).await;
    server.shutdown().await;
    Ok(())
}

/// After this long with no peer and data missing, the status line says so.
const NO_PEER_WARNING: Duration = Duration::from_secs(30);

/// Prints a live status line on stderr until `until` completes.
async fn status_loop(
    engine: &Engine,
    ih: &kino_engine::Id20,
    file: Option<usize>,
    until: impl std::future::Future<Output = ()>,
) {
    let tty = std::io::stderr().is_terminal();
    let period = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut tick = tokio::time::interval(period);
    let started = tokio::time::Instant::now();
    let mut warned = false;
    let mut told_problem = None;
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = tick.tick() => {}
        }
        // A problem (a full disk) is said once when it starts, in place of the no-peer
        // warning; the status line keeps showing it.
        let problem = engine.transfer_status(ih).and_then(|t| t.problem);
        if let Some(p) = problem.filter(|p| Some(*p) != told_problem) {
            if tty {
                eprintln!("\r\x1b[2K{}", p.message());
            } else {
                eprintln!("{}", p.message());
            }
        }
        told_problem = problem;
        if !warned
            && problem.is_none()
            && started.elapsed() > NO_PEER_WARNING
            && let Some(t) = engine.transfer_status(ih)
            && t.peers == 0
            && !t.finished
        {
            warned = true;
            let msg = no_progress_message(&t);
            if tty {
                eprintln!("\r\x1b[2K{msg}");
            } else {
                eprintln!("{msg}");
            }
        }
        let line = match file.and_then(|f| engine.playback_status(ih, f)) {
            Some(p) => {
                let ahead = match p.buffered_secs {
                    Some(secs) => format!("{secs:.0} s"),
                    None => format::bytes(p.buffered_bytes),
                };
                format!("buffered ahead {ahead} | {}", transfer_line(&p.transfer))
            }
            None => match engine.transfer_status(ih) {
                Some(t) => transfer_line(&t),
                None => continue,
            },
        };
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprintln!();
    }
}

/// What the status line says when no peer is connected and data is missing: that peers sent
/// corrupt data, when that is why (a peer whose pieces fail verification is disconnected),
/// else that no peer is reachable.
fn no_progress_message(t: &kino_engine::TransferStatus) -> String {
    match t.rejected_pieces {
        0 => format!(
            "no peer reachable after {} s: the swarm may be unreachable (check --peer, \
             the DHT bootstrap nodes, or your network); still trying",
            NO_PEER_WARNING.as_secs()
        ),
        n => format!(
            "peers sent data that failed verification ({n} {} rejected, none of it played): \
             the only peers found send corrupt data; still looking for others",
            if n == 1 { "piece" } else { "pieces" }
        ),
    }
}

fn transfer_line(t: &kino_engine::TransferStatus) -> String {
    // A problem takes the place of the peer count: peers do not help a full disk.
    let peers = match t.problem {
        Some(kino_engine::Problem::DiskFull) => "disk full".to_owned(),
        _ => format!("peers {}", t.peers),
    };
    format!(
        "{:.0}% | down {} | up {} | {peers} | shared {}{}",
        pct(t.have_bytes, t.total_bytes),
        format::rate(t.down_bps),
        format::rate(t.up_bps),
        format::bytes(t.uploaded_total),
        if t.sharing { "" } else { " (not sharing)" }
    )
}

fn pct(have: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        have as f64 * 100.0 / total as f64
    }
}

/// Arguments of `kino fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Magnet link, .torrent file or infohash.
    pub source: String,
    /// Folder to download into.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Peer to connect to, IP:PORT (repeatable).
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<SocketAddr>,
    /// Give up when no byte arrives for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub stall_timeout: u64,
    /// Replace files in the folder that have the torrent's names but not its data (without
    /// this, such a file is never touched and the download is refused).
    #[arg(long)]
    pub overwrite: bool,
}

/// `kino fetch`.
pub async fn fetch(s: Settings, a: FetchArgs) -> anyhow::Result<()> {
    let source = TorrentSource::parse(&a.source)?;
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    let output = a
        .output
        .canonicalize()
        .with_context(|| format!("cannot use {}", a.output.display()))?;
    let engine = s.start_engine().await?;
    let result = async {
        let placement = if a.overwrite {
            Placement::Replace(output.clone())
        } else {
            Placement::Download(output.clone())
        };
        let added = engine
            .add(
                &source,
                AddOptions {
                    peers: a.peers.clone(),
                    placement,
                },
            )
            .await;
        let torrent = match added {
            Ok(t) => t,
            Err(EngineError::WouldOverwrite {
                path,
                matching,
                pieces,
            }) => bail!(user_error(format!(
                "{} already exists and is not this torrent's data ({matching} of {pieces} \
                 pieces match); nothing was written (pass --overwrite to replace it, or choose \
                 another folder with -o)",
                path.display()
            ))),
            Err(e) => return Err(e.into()),
        };
        let ih = torrent.infohash();
        let bar = hashing_bar(torrent.info().total_len);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let stall = Duration::from_secs(a.stall_timeout.max(1));
        let mut last = (0u64, tokio::time::Instant::now());
        let done = torrent.wait_until_completed();
        tokio::pin!(done);
        loop {
            tokio::select! {
                r = &mut done => match r {
                    Ok(()) => break,
                    Err(e @ EngineError::DiskFull { .. }) => {
                        bail!("{e}, then run the same command again: it resumes")
                    }
                    Err(e) => return Err(e.into()),
                },
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown_signal() => bail!("interrupted"),
            }
            if let Some(t) = engine.transfer_status(&ih) {
                bar.set_position(t.have_bytes);
                if t.have_bytes > last.0 {
                    last = (t.have_bytes, tokio::time::Instant::now());
                } else if last.1.elapsed() > stall {
                    bail!(EngineError::Timeout(format!(
                        "no data arrived for {} s: the swarm is unreachable",
                        stall.as_secs()
                    )));
                }
            }
        }
        bar.finish_and_clear();
        let info = torrent.info();
        eprintln!(
            "downloaded and verified {} ({})",
            info.name,
            format::bytes(info.total_len)
        );
        println!("{}", output.display());
        Ok(())
    }
    .await;
    engine.shutdown().await;
    result
}

/// `kino status`.
pub fn status(s: Settings) -> anyhow::Result<()> {
    let store = s.open_store()?;
    let now = kino_store::now_unix();
    let torrents = store.torrents()?;
    let share = &s.engine.share;
    println!(
        "sharing: {} | upload cap: {} | ratio limit: {} | cache limit: {}",
        if share.enabled { "on" } else { "off" },
        share
            .upload_limit_bps
            .map_or("none".into(), |b| format::rate(b as f64)),
        share
            .ratio_limit
            .map_or("none".into(), |r| format!("{r:.2}")),
        share.cache_limit_bytes.map_or("none".into(), format::bytes),
    );
    if torrents.is_empty() {
        println!("nothing cached or shared yet");
        return Ok(());
    }
    println!(
        "{:<40}  {:>10}  {:>10}  {:>10}  {:>6}  {:<8}  {:<14}  NAME",
        "INFOHASH", "SIZE", "ON DISK", "SHARED", "RATIO", "STATE", "WATCHED"
    );
    let mut total_disk = 0;
    let mut total_up = 0;
    for r in &torrents {
        let disk = disk_usage(
            &r.output_dir,
            r.kind == kino_store::TorrentKind::Cache,
            &r.metainfo,
        );
        total_disk += disk;
        total_up += r.uploaded_bytes;
        let state = match (r.kind, r.share_stopped) {
            (_, true) => "stopped",
            (kino_store::TorrentKind::Seed, false) => "seed",
            (kino_store::TorrentKind::Cache, false) => "cached",
        };
        println!(
            "{:<40}  {:>10}  {:>10}  {:>10}  {:>6.2}  {:<8}  {:<14}  {}",
            r.infohash,
            format::bytes(r.total_bytes),
            format::bytes(disk),
            format::bytes(r.uploaded_bytes),
            r.ratio(),
            state,
            format::ago(r.last_watched_at, now),
            r.name
        );
    }
    println!(
        "{} torrents, {} on disk, {} shared in all",
        torrents.len(),
        format::bytes(total_disk),
        format::bytes(total_up)
    );
    Ok(())
}

/// Bytes the torrent's files take on disk (sparse-aware).
fn disk_usage(dir: &Path, cache: bool, metainfo: &[u8]) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(info) = TorrentInfo::from_bytes(metainfo.to_vec().into()) else {
        return 0;
    };
    let _ = cache;
    info.files
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(&f.path)).ok())
        .map(|m| (m.blocks() * 512).min(m.len()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_peers_are_named_instead_of_no_peer_reachable() {
        let mut t = kino_engine::TransferStatus::default();
        assert!(no_progress_message(&t).starts_with("no peer reachable after 30 s"));
        t.rejected_pieces = 3;
        let msg = no_progress_message(&t);
        assert!(
            msg.starts_with("peers sent data that failed verification (3 pieces rejected"),
            "{msg}"
        );
        t.rejected_pieces = 1;
        assert!(no_progress_message(&t).contains("(1 piece rejected"));
    }
}
