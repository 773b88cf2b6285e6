//! `kino demo`: the whole product, offline, in one command.
//!
//! Everything runs on 127.0.0.1: a local DHT testnet (kino-dht's `LocalTestnet`); a seeder
//! engine that seeds the CC0 demo films (embedded in the binary) and, as the demo publisher,
//! publishes a signed catalog of them (titles, self-made posters drawn here, subtitles) with
//! its pointer on the testnet; and the viewer: a second engine, subscribed to the demo
//! publisher, that fetches and verifies the catalog over the DHT and BitTorrent like any
//! subscription, and serves the web app. Open the printed URL, pick a film, press play.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kino_catalog::library;
use kino_catalog::sync::CatalogSync;
use kino_dht::{LocalTestnet, PointerDht};
use kino_engine::{TorrentInfo, infohash_hex};

use crate::cli::{self, Settings};

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
    /// Open the app in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Stop by itself after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
    /// Add a title whose text is hostile HTML (tests check that pages show it as text).
    #[arg(long, hide = true)]
    pub with_hostile_title: bool,
}

/// Nodes of the demo's DHT testnet.
const DEMO_DHT_NODES: usize = 8;
/// Attempts at fetching the demo catalog (the testnet may still be settling).
const CATALOG_ATTEMPTS: usize = 3;

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

/// A stream entry for one demo file.
fn stream(
    info: &TorrentInfo,
    name: &str,
    quality: &str,
    mime: &str,
    video: &str,
    audio: &str,
) -> anyhow::Result<serde_json::Value> {
    let f = info
        .files
        .iter()
        .find(|f| f.path.to_string_lossy() == name)
        .with_context(|| format!("{name} is not in the demo torrent"))?;
    Ok(serde_json::json!({
        "infohash": infohash_hex(&info.infohash),
        "file_index": f.index,
        "quality": quality,
        "size_bytes": f.len,
        "mime": mime,
        "video_codec": video,
        "audio_codec": audio,
    }))
}

/// Writes the demo catalog folder: catalog.json, posters, subtitles.
fn write_catalog(dir: &Path, info: &TorrentInfo, seq: u64, hostile: bool) -> anyhow::Result<()> {
    let posters = dir.join("posters");
    let subs = dir.join("subtitles");
    std::fs::create_dir_all(&posters)?;
    std::fs::create_dir_all(&subs)?;
    let srt = DEMO_FILES
        .iter()
        .find(|(n, _)| n.ends_with(".srt"))
        .map(|(_, b)| *b)
        .unwrap_or_default();
    std::fs::write(subs.join("test-card.en.srt"), srt)?;
    let webm = stream(
        info,
        "kino-testcard.webm",
        "360p WebM",
        "video/webm",
        "vp9",
        "opus",
    )?;
    let mp4 = stream(
        info,
        "kino-testcard.mp4",
        "360p MP4",
        "video/mp4",
        "h264",
        "aac",
    )?;
    let late = stream(
        info,
        "kino-moov-at-end.mp4",
        "360p",
        "video/mp4",
        "h264",
        "aac",
    )?;
    let mkv = stream(
        info,
        "kino-testcard.mkv",
        "360p",
        "video/x-matroska",
        "h264",
        "opus",
    )?;
    let sub = serde_json::json!([{ "language": "en", "path": "subtitles/test-card.en.srt" }]);
    let mut titles = vec![
        serde_json::json!({
            "id": "test-card", "title": "Test Card", "year": 2026,
            "synopsis": "Colour bars, a moving test pattern and a running timecode over a steady tone.\nThirty seconds of pure signal, made by ffmpeg.",
            "genres": ["Documentary", "Abstract"], "runtime_minutes": 1,
            "poster": "posters/test-card.png", "licence": "CC0-1.0",
            "streams": [webm.clone(), mp4], "subtitles": sub.clone()
        }),
        serde_json::json!({
            "id": "late-index", "title": "The Late Index", "year": 2026,
            "synopsis": "An MP4 whose index sits at the very end of the file. Kino fetches it first, so the film still starts at once.",
            "genres": ["Mystery", "Abstract"], "runtime_minutes": 1,
            "poster": "posters/late-index.png", "licence": "CC0-1.0",
            "streams": [late], "subtitles": sub.clone()
        }),
        serde_json::json!({
            "id": "matroska-card", "title": "Test Card in Matroska", "year": 2025,
            "synopsis": "The test card in a Matroska container, which web browsers do not play: open it in mpv or VLC.",
            "genres": ["Documentary"], "runtime_minutes": 1,
            "poster": "posters/matroska-card.png", "licence": "CC0-1.0",
            "streams": [mkv], "subtitles": sub
        }),
    ];
    if hostile {
        titles.push(serde_json::json!({
            "id": "hostile-title",
            "title": "<script>window.kinoXss=1</script><img src=x onerror=\"window.kinoXss=2\"> Hostile",
            "synopsis": "<b>not bold</b> & <i>not italic</i>",
            "genres": ["Test"], "licence": "CC0-1.0", "streams": [webm]
        }));
    }
    for (name, hue) in [
        ("test-card", 350.0),
        ("late-index", 210.0),
        ("matroska-card", 140.0),
    ] {
        std::fs::write(posters.join(format!("{name}.png")), poster_png(hue))?;
    }
    let catalog = serde_json::json!({
        "schema": 1,
        "publisher": { "name": "Kino Demo Films", "description": "Self-made CC0 test films, published by this computer." },
        "seq": seq,
        "titles": titles,
    });
    std::fs::write(
        dir.join("catalog.json"),
        serde_json::to_vec_pretty(&catalog)?,
    )?;
    Ok(())
}

/// Runs the demo.
pub async fn run(s: Settings, a: DemoArgs) -> anyhow::Result<()> {
    let base = s.engine.data_dir.join("demo");
    let source_dir = base.join("source").join(DEMO_NAME);
    write_demo_files(&source_dir)?;
    let created = kino_engine::create::create_torrent(&source_dir, None, |_, _| {})?;
    let info = created.info.clone();

    let testnet = LocalTestnet::start(DEMO_DHT_NODES)?;
    let dht = testnet.client_config();

    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let mut seeder_cfg = s.clone();
    seeder_cfg.engine.data_dir = base.join("seeder");
    seeder_cfg.engine.listen = Some(loopback);
    seeder_cfg.engine.dht = false;
    seeder_cfg.engine.local_discovery = false;
    seeder_cfg.engine.share.enabled = true;
    seeder_cfg.engine.share.ratio_limit = None;
    seeder_cfg.engine.share.upload_limit_bps = None;
    let mut viewer_cfg = s.clone();
    viewer_cfg.engine.data_dir = base.join("viewer");
    viewer_cfg.engine.listen = Some(loopback);
    viewer_cfg.engine.dht = false;
    viewer_cfg.engine.local_discovery = false;
    crate::app::apply_saved_settings(&mut viewer_cfg, false)?;

    let seeder = seeder_cfg.start_engine().await?;
    let viewer = match viewer_cfg.start_engine().await {
        Ok(v) => v,
        Err(e) => {
            seeder.shutdown().await;
            return Err(e);
        }
    };
    let result = async {
        seeder.seed_created(&created).await?;
        let seeder_addr = seeder
            .listen_addr()
            .context("the demo seeder is not listening")?;
        let seeder_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), seeder_addr.port());

        // The demo publisher: a key kept under the demo folder, a fresh catalog version.
        let key_file = base.join("publisher.key");
        let key = if key_file.exists() {
            kino_catalog::load_key_file(&key_file)?
        } else {
            kino_catalog::generate_key_file(&key_file)?
        };
        let catalog_dir = base.join("catalog");
        let seq = kino_store::now_unix().max(1) as u64;
        write_catalog(&catalog_dir, &info, seq, a.with_hostile_title)?;
        let publisher = CatalogSync::new(
            seeder.clone(),
            PointerDht::new(dht.clone())?,
            seeder.store().clone(),
            &seeder_cfg.engine.data_dir,
        );
        let published = publisher.publish(&key, &catalog_dir).await?;

        // The viewer subscribes like any user would, and fetches the catalog.
        let sync = CatalogSync::new(
            viewer.clone(),
            PointerDht::new(dht.clone())?,
            viewer.store().clone(),
            &viewer_cfg.engine.data_dir,
        );
        let public = key.public_key();
        library::subscribe(viewer.store(), &public, None)?;
        let mut fetched = Err(anyhow::anyhow!("not tried"));
        for _ in 0..CATALOG_ATTEMPTS {
            match sync.refresh(&public, None).await {
                Ok(r) => {
                    fetched = Ok(r);
                    break;
                }
                Err(e) => fetched = Err(e.into()),
            }
        }
        fetched.context("the viewer could not fetch the demo catalog")?;

        // The demo never changes the user's settings: the app refuses to save a data folder
        // (the config file in use is the user's own).
        let web = crate::app::start_with(
            &viewer_cfg,
            &viewer,
            Some(sync),
            vec![seeder_addr],
            a.open,
            kino_server::DataDirSaving::Demo,
        )
        .await?;
        println!(
            "Kino demo: {} titles from the demo publisher {} (catalog seq {}), films seeded at {seeder_addr}",
            published.titles,
            public.address(),
            published.seq
        );
        println!("Open the app URL in a browser. Ctrl-C stops the demo.");
        let _ = std::io::stdout().flush();
        if a.seconds > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(a.seconds)) => {}
                _ = cli::shutdown_signal() => {}
            }
        } else {
            cli::shutdown_signal().await;
        }
        web.shutdown().await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    viewer.shutdown().await;
    seeder.shutdown().await;
    testnet.shutdown(Duration::from_secs(2)).await;
    result
}

/// A 200x300 poster with no text: a diagonal gradient around `hue` (degrees) with soft
/// concentric rings, as an uncompressed (stored-deflate) PNG.
fn poster_png(hue: f64) -> Vec<u8> {
    const W: usize = 200;
    const H: usize = 300;
    let mut raw = Vec::with_capacity(H * (1 + W * 3));
    for y in 0..H {
        raw.push(0); // filter: none
        for x in 0..W {
            let t = (x as f64 / W as f64 + y as f64 / H as f64) / 2.0;
            let dx = x as f64 - W as f64 * 0.7;
            let dy = y as f64 - H as f64 * 0.35;
            let ring = ((dx * dx + dy * dy).sqrt() / 14.0).sin() * 0.5 + 0.5;
            let h = (hue + 40.0 * t) % 360.0;
            let l = 0.12 + 0.38 * (1.0 - t) + 0.08 * ring * (1.0 - t);
            let (r, g, b) = hsl(h, 0.65, l);
            raw.extend_from_slice(&[r, g, b]);
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn hsl(h: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let q = |v: f64| ((v + m).clamp(0.0, 1.0) * 255.0).round() as u8;
    (q(r), q(g), q(b))
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poster_is_a_png() {
        let png = poster_png(200.0);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.len() < 1024 * 1024, "under the catalog's poster cap");
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }
}
