//! Measures how the piece length of a torrent changes streaming start-up and seek latency, to
//! choose the piece length `kino create` uses (see `create::streaming_piece_length`).
//!
//! One seeder engine with its upload capped (default 2 MiB/s, a 16 Mbit/s uplink) and one viewer
//! engine on loopback. For each piece length: the viewer adds the torrent by magnet link (the
//! metadata comes from the seeder), opens a stream and reads the first 64 KiB (start-up), then
//! seeks to 50 % and reads 64 KiB (seek). Each case runs `--reps` times on fresh engines; the
//! table shows medians and min–max.
//!
//! `cargo bench -p kino-engine --bench piece_length -- [--size-mib 64] [--rate-kib 2048] [--reps 3]`

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kino_engine::{AddOptions, Engine, EngineConfig, Placement, TorrentSource};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn engine(dir: &std::path::Path, upload: Option<u32>) -> anyhow::Result<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf());
    cfg.listen = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0));
    cfg.dht = false;
    cfg.local_discovery = false;
    cfg.share.upload_limit_bps = upload;
    std::fs::create_dir_all(dir)?;
    let store = Arc::new(kino_store::Store::open(&dir.join("kino.sqlite3"))?);
    Ok(Engine::start(cfg, store).await?)
}

async fn one_run(
    file: &std::path::Path,
    piece_len: u32,
    rate: u32,
    work: &std::path::Path,
) -> anyhow::Result<(Duration, Duration)> {
    let created = kino_engine::create::create_torrent(file, Some(piece_len), |_, _| {})?;
    let seeder = engine(&work.join("a"), Some(rate)).await?;
    let t = seeder
        .add(
            &TorrentSource::Metainfo(created.info.clone()),
            AddOptions {
                peers: vec![],
                placement: Placement::SeedFrom(created.content_root.clone()),
            },
        )
        .await?;
    t.wait_until_completed().await?;
    let addr = seeder
        .listen_addr()
        .ok_or_else(|| anyhow::anyhow!("not listening"))?;
    let viewer = engine(&work.join("b"), None).await?;
    let started = Instant::now();
    let v = viewer
        .add(
            &TorrentSource::parse(&created.info.magnet())?,
            AddOptions {
                peers: vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())],
                placement: Placement::Cache,
            },
        )
        .await?;
    let mut s = viewer.open_stream(&v.infohash(), 0).await?;
    let mut buf = vec![0u8; 64 * 1024];
    s.read_exact(&mut buf).await?;
    let startup = started.elapsed();
    let seek_at = Instant::now();
    s.seek(std::io::SeekFrom::Start(created.info.total_len / 2))
        .await?;
    s.read_exact(&mut buf).await?;
    let seek = seek_at.elapsed();
    drop(s);
    viewer.shutdown().await;
    seeder.shutdown().await;
    Ok((startup, seek))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let size = arg("--size-mib", 64) << 20;
    let rate = (arg("--rate-kib", 2048) * 1024) as u32;
    let reps = arg("--reps", 3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("film.bin");
    let mut data = vec![0u8; size as usize];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    std::fs::write(&file, &data)?;
    println!(
        "piece length vs start-up and seek: {} MiB file, seeder uplink {} KiB/s, {reps} runs, loopback",
        size >> 20,
        rate / 1024
    );
    println!(
        "| piece length | pieces | start-up median (min–max) | seek to 50 % median (min–max) |"
    );
    println!("|---|---|---|---|");
    for piece_len in [64 * 1024u32, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024] {
        let mut ups = Vec::new();
        let mut seeks = Vec::new();
        for rep in 0..reps {
            let work = dir.path().join(format!("run-{piece_len}-{rep}"));
            let (u, s) = rt.block_on(one_run(&file, piece_len, rate, &work))?;
            ups.push(u);
            seeks.push(s);
            let _ = std::fs::remove_dir_all(&work);
        }
        let range = |v: &[Duration]| {
            format!(
                "{:.0}–{:.0} ms",
                v.iter().min().map_or(0.0, |d| d.as_secs_f64() * 1e3),
                v.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3)
            )
        };
        let (ur, sr) = (range(&ups), range(&seeks));
        println!(
            "| {} KiB | {} | {:.0} ms ({ur}) | {:.0} ms ({sr}) |",
            piece_len / 1024,
            size.div_ceil(piece_len as u64),
            median(&mut ups).as_secs_f64() * 1e3,
            median(&mut seeks).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
