//! `kino demo`: the whole streaming path, offline, in one command.
//!
//! The CC0 demo films are embedded in the binary. One engine seeds them; a second engine
//! (the viewer) knows only their magnet link and the seeder's loopback address, fetches the
//! metadata and the pieces over real BitTorrent, and serves each film over HTTP. Nothing leaves
//! 127.0.0.1: no DHT, no local discovery.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kino_engine::{AddOptions, Placement, TorrentSource, infohash_hex};

use crate::cli::{self, Player, Settings};

/// The embedded demo media: (file name, bytes). Made by scripts/make-demo-media.sh, CC0.
const DEMO_FILES: &[(&str, &[u8])] = &[
    (
        "kino-testcard.mp4",
        include_bytes!("../../../media/demo/kino-testcard.mp4"),
    ),
    (
        "kino-testcard.webm",
        include_bytes!("../../../media/demo/kino-testcard.webm"),
    ),
    (
        "kino-testcard.mkv",
        include_bytes!("../../../media/demo/kino-testcard.mkv"),
    ),
    (
        "kino-moov-at-end.mp4",
        include_bytes!("../../../media/demo/kino-moov-at-end.mp4"),
    ),
    (
        "kino-testcard.en.srt",
        include_bytes!("../../../media/demo/kino-testcard.en.srt"),
    ),
    (
        "LICENSE.md",
        include_bytes!("../../../media/demo/LICENSE.md"),
    ),
];

/// The folder name (and torrent name) of the demo films.
const DEMO_NAME: &str = "Kino demo films";

/// Arguments of `kino demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Player to start on the first film.
    #[arg(long, value_enum, default_value_t = Player::None)]
    pub player: Player,
    /// Stop by itself after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
}

fn write_demo_files(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in DEMO_FILES {
        let path = dir.join(name);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64)
            && std::fs::read(&path).is_ok_and(|b| b == *bytes);
        if !same {
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs the demo.
pub async fn run(s: Settings, a: DemoArgs) -> anyhow::Result<()> {
    let base = s.engine.data_dir.join("demo");
    let source_dir = base.join("source").join(DEMO_NAME);
    write_demo_files(&source_dir)?;
    let created = kino_engine::create::create_torrent(&source_dir, None, |_, _| {})?;
    let info = created.info.clone();

    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let mut seeder_cfg = s.clone();
    seeder_cfg.engine.data_dir = base.join("seeder");
    seeder_cfg.engine.listen = Some(loopback);
    seeder_cfg.engine.dht = false;
    seeder_cfg.engine.local_discovery = false;
    seeder_cfg.engine.share.enabled = true;
    seeder_cfg.engine.share.ratio_limit = None;
    let mut viewer_cfg = s.clone();
    viewer_cfg.engine.data_dir = base.join("viewer");
    viewer_cfg.engine.listen = Some(loopback);
    viewer_cfg.engine.dht = false;
    viewer_cfg.engine.local_discovery = false;

    let seeder = seeder_cfg.start_engine().await?;
    let viewer = match viewer_cfg.start_engine().await {
        Ok(v) => v,
        Err(e) => {
            seeder.shutdown().await;
            return Err(e);
        }
    };
    let result = async {
        let seeded = seeder
            .add(
                &TorrentSource::Metainfo(info.clone()),
                AddOptions {
                    peers: Vec::new(),
                    placement: Placement::SeedFrom(created.content_root.clone()),
                },
            )
            .await?;
        seeded.wait_until_completed().await?;
        let seeder_addr = seeder
            .listen_addr()
            .context("the demo seeder is not listening")?;
        let seeder_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), seeder_addr.port());

        let server = viewer_cfg.start_server(&viewer).await?;
        // The viewer starts from the magnet link alone: metadata and pieces come from the
        // seeder over BitTorrent.
        let magnet = TorrentSource::parse(&info.magnet())?;
        let torrent = viewer
            .add(
                &magnet,
                AddOptions {
                    peers: vec![seeder_addr],
                    placement: Placement::Cache,
                },
            )
            .await?;
        let ih = torrent.infohash();
        let _guard = viewer.play_guard(&ih)?;
        println!(
            "Kino demo: {} streamed from a local seeder at {seeder_addr}",
            DEMO_NAME
        );
        let mut first = None;
        for f in &torrent.info().files {
            let name = f.path.to_string_lossy();
            if kino_media::is_video_name(&name) {
                viewer.prepare_playback(&ih, f.index);
                first.get_or_insert(f.index);
            }
            if kino_media::is_video_name(&name) || name.ends_with(".srt") {
                println!(
                    "  {:<24} {}",
                    name,
                    server.stream_url(&infohash_hex(&ih), f.index)
                );
            }
        }
        println!("Open a URL in a browser, mpv or VLC. Ctrl-C stops the demo.");
        let _ = std::io::stdout().flush();
        let mut child = None;
        if a.player != Player::None
            && let Some(idx) = first
        {
            let cmd = if a.player == Player::Mpv {
                "mpv"
            } else {
                "vlc"
            };
            let url = server.stream_url(&infohash_hex(&ih), idx);
            match tokio::process::Command::new(cmd)
                .arg(&url)
                .kill_on_drop(true)
                .spawn()
            {
                Ok(c) => child = Some(c),
                Err(e) => eprintln!("cannot start {cmd}: {e}"),
            }
        }
        let until = async {
            if a.seconds > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(a.seconds)) => {}
                    _ = cli::shutdown_signal() => {}
                }
            } else {
                cli::shutdown_signal().await;
            }
        };
        until.await;
        drop(child);
        server.shutdown().await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    viewer.shutdown().await;
    seeder.shutdown().await;
    result
}
