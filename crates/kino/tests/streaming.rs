//! Two Kino engines on loopback: one seeds, one streams over HTTP. Proves that a Range read
//! from the middle returns the source bytes before the whole file has arrived, that far seeks
//! are served, that many concurrent readers and several files all progress, and the HTTP
//! semantics players rely on.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, ensure};
use kino_engine::{AddOptions, Engine, Placement, TorrentSource, infohash_hex};
use kino_server::Server;

struct Swarm {
    seeder: Engine,
    viewer: Engine,
    server: Server,
    ih: String,
    _dir: tempfile::TempDir,
}

impl Swarm {
    /// Seeds `files` (name, bytes) as one torrent from engine A (upload capped at
    /// `seed_rate` bytes/s when given); engine B adds it by magnet link with A as its peer and
    /// serves it over HTTP.
    async fn start(
        files: &[(&str, &[u8])],
        seed_rate: Option<u32>,
        max_streams: usize,
    ) -> anyhow::Result<Swarm> {
        let dir = tempfile::tempdir()?;
        let content = if files.len() == 1 {
            let p = dir.path().join("src").join(files[0].0);
            std::fs::create_dir_all(dir.path().join("src"))?;
            std::fs::write(&p, files[0].1)?;
            p
        } else {
            let root = dir.path().join("src").join("film-set");
            std::fs::create_dir_all(&root)?;
            for (name, data) in files {
                std::fs::write(root.join(name), data)?;
            }
            root
        };
        let created = kino_engine::create::create_torrent(&content, None, |_, _| {})?;
        let seeder = common::engine(&dir.path().join("a"), |c| {
            c.share.upload_limit_bps = seed_rate;
        })
        .await?;
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
        let viewer = common::engine(&dir.path().join("b"), |c| c.max_streams = max_streams).await?;
        let magnet = TorrentSource::parse(&created.info.magnet())?;
        viewer
            .add(
                &magnet,
                AddOptions {
                    peers: vec![common::engine_addr(&seeder)?],
                    placement: Placement::Cache,
                },
            )
            .await?;
        let server = Server::bind(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            kino_server::router(viewer.clone()),
        )
        .await?;
        Ok(Swarm {
            seeder,
            viewer,
            server,
            ih: infohash_hex(&created.info.infohash),
            _dir: dir,
        })
    }

    fn url(&self, file: usize) -> String {
        self.server.stream_url(&self.ih, file)
    }

    fn viewer_have(&self) -> anyhow::Result<(u64, u64)> {
        let ih = kino_engine::parse_infohash(&self.ih).context("infohash")?;
        let t = self.viewer.transfer_status(&ih).context("no status")?;
        Ok((t.have_bytes, t.total_bytes))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.server.shutdown().await;
        common::shutdown_checked(self.viewer).await?;
        common::shutdown_checked(self.seeder).await
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .no_proxy()
        .build()?)
}

async fn get_range(
    c: &reqwest::Client,
    url: &str,
    start: u64,
    end: u64,
) -> anyhow::Result<Vec<u8>> {
    let r = c
        .get(url)
        .header("Range", format!("bytes={start}-{end}"))
        .send()
        .await?;
    ensure!(r.status() == 206, "expected 206, got {}", r.status());
    let want = format!("bytes {start}-{end}/");
    let cr = r
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    ensure!(
        cr.starts_with(&want),
        "content-range {cr:?}, expected {want}..."
    );
    Ok(r.bytes().await?.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn middle_range_is_served_before_the_file_is_complete() -> anyhow::Result<()> {
    let data = common::pseudo_random(48 << 20, 1);
    // 4 MiB/s from the only seeder: the whole file needs ~12 s, one MiB from the middle far less.
    let swarm = Swarm::start(&[("film.bin", &data)], Some(4 << 20), 32).await?;
    let c = client()?;
    let mid = (data.len() / 2) as u64;
    let got = get_range(&c, &swarm.url(0), mid, mid + (1 << 20) - 1).await?;
    let (have, total) = swarm.viewer_have()?;
    ensure!(
        got == data[mid as usize..mid as usize + (1 << 20)],
        "middle bytes differ"
    );
    ensure!(
        have < total,
        "the file was already complete ({have}/{total}); the test proves nothing"
    );
    // A seek far ahead (90 %) is served too, still before completion.
    let far = (data.len() as u64) * 9 / 10;
    let got = get_range(&c, &swarm.url(0), far, far + 300_000).await?;
    ensure!(
        got == data[far as usize..far as usize + 300_001],
        "far bytes differ"
    );
    let (have, total) = swarm.viewer_have()?;
    ensure!(
        have < total,
        "complete before the far read returned ({have}/{total})"
    );
    // And the last byte (players read the tail for the index).
    let end = data.len() as u64 - 1;
    let got = get_range(&c, &swarm.url(0), end - 99, end).await?;
    ensure!(got == data[data.len() - 100..], "tail differs");
    swarm.stop().await
}

async fn read_ranges_concurrently(
    swarm: &Swarm,
    files: &[(usize, &[u8])],
    readers_per_file: usize,
    chunk: u64,
) -> anyhow::Result<()> {
    let c = client()?;
    let mut tasks = tokio::task::JoinSet::new();
    for &(file, data) in files {
        for i in 0..readers_per_file {
            let len = data.len() as u64;
            let start = len * i as u64 / readers_per_file as u64;
            let end = (start + chunk - 1).min(len - 1);
            let want = data[start as usize..=end as usize].to_vec();
            let url = swarm.url(file);
            let c = c.clone();
            tasks.spawn(async move {
                let got = get_range(&c, &url, start, end).await?;
                ensure!(
                    got == want,
                    "file {file} reader {i} at {start}: bytes differ"
                );
                Ok::<_, anyhow::Error>(())
            });
        }
    }
    let mut n = 0;
    while let Some(r) = tasks.join_next().await {
        r??;
        n += 1;
    }
    ensure!(n == files.len() * readers_per_file);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_readers_on_one_file_all_progress() -> anyhow::Result<()> {
    let data = common::pseudo_random(24 << 20, 2);
    let swarm = Swarm::start(&[("film.bin", &data)], None, 32).await?;
    read_ranges_concurrently(&swarm, &[(0, &data)], 16, 512 << 10).await?;
    swarm.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_files_play_at_once() -> anyhow::Result<()> {
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                format!("part{i}.mkv"),
                common::pseudo_random((6 << 20) + i * 4099, 10 + i as u64),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let swarm = Swarm::start(&refs, Some(16 << 20), 32).await?;
    let by_index: Vec<(usize, &[u8])> = files
        .iter()
        .enumerate()
        .map(|(i, (_, d))| (i, d.as_slice()))
        .collect();
    read_ranges_concurrently(&swarm, &by_index, 4, 256 << 10).await?;
    swarm.stop().await
}

/// With fewer stream slots than readers, the extra readers wait for a slot instead of taking
/// the blocking-I/O permits librqbit needs to write pieces: every reader still completes.
/// (librqbit's default is 8 permits shared by streams and disk writes; 8 open streams that
/// wait for data would stop the download for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_readers_than_stream_slots_do_not_stall_the_download() -> anyhow::Result<()> {
    let data = common::pseudo_random(16 << 20, 3);
    let swarm = Swarm::start(&[("film.bin", &data)], Some(8 << 20), 8).await?;
    read_ranges_concurrently(&swarm, &[(0, &data)], 20, 256 << 10).await?;
    swarm.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_semantics_for_players() -> anyhow::Result<()> {
    let data = std::fs::read(common::demo_media("kino-testcard.webm"))?;
    let swarm = Swarm::start(&[("kino-testcard.webm", &data)], None, 32).await?;
    let c = client()?;
    let url = swarm.url(0);
    let len = data.len() as u64;

    let head = c.head(&url).send().await?;
    ensure!(head.status() == 200);
    let h = head.headers();
    ensure!(
        h.get("content-type").is_some_and(|v| v == "video/webm"),
        "{h:?}"
    );
    ensure!(h.get("accept-ranges").is_some_and(|v| v == "bytes"));
    ensure!(
        h.get("content-length")
            .is_some_and(|v| v == len.to_string().as_str())
    );

    let full = c.get(&url).send().await?;
    ensure!(full.status() == 200);
    ensure!(
        full.bytes().await?.as_ref() == data.as_slice(),
        "whole file differs"
    );

    let suffix = c.get(&url).header("Range", "bytes=-1000").send().await?;
    ensure!(suffix.status() == 206);
    let want_cr = format!("bytes {}-{}/{len}", len - 1000, len - 1);
    ensure!(
        suffix
            .headers()
            .get("content-range")
            .is_some_and(|v| v == want_cr.as_str())
    );
    ensure!(suffix.bytes().await?.as_ref() == &data[data.len() - 1000..]);

    let open = c.get(&url).header("Range", "bytes=100-").send().await?;
    ensure!(open.status() == 206);
    ensure!(
        open.headers()
            .get("content-length")
            .is_some_and(|v| v == (len - 100).to_string().as_str())
    );
    ensure!(open.bytes().await?.as_ref() == &data[100..]);

    let bad = c
        .get(&url)
        .header("Range", format!("bytes={len}-"))
        .send()
        .await?;
    ensure!(bad.status() == 416, "got {}", bad.status());
    let want_cr = format!("bytes */{len}");
    ensure!(
        bad.headers()
            .get("content-range")
            .is_some_and(|v| v == want_cr.as_str())
    );

    let head_range = c.head(&url).header("Range", "bytes=0-9").send().await?;
    ensure!(head_range.status() == 206);
    ensure!(
        head_range
            .headers()
            .get("content-length")
            .is_some_and(|v| v == "10")
    );

    // Errors are JSON {error, message} with fitting status codes.
    let base = format!("http://{}", swarm.server.addr());
    let r = c.get(format!("{base}/stream/nothex/0")).send().await?;
    ensure!(r.status() == 400);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
    ensure!(
        body["error"] == "invalid_input" && body["message"].is_string(),
        "{body}"
    );
    let r = c
        .get(format!("{base}/stream/{}/0", "ab".repeat(20)))
        .send()
        .await?;
    ensure!(r.status() == 404);
    let r = c.get(swarm.url(7)).send().await?;
    ensure!(r.status() == 404);
    // A page on another site cannot reach the server through DNS rebinding.
    let r = c
        .get(&url)
        .header("Host", "attacker.example:80")
        .send()
        .await?;
    ensure!(r.status() == 403);
    swarm.stop().await
}

/// Inserts a `free` box of `pad` bytes right before the last top-level box (the moov).
fn pad_before_moov(mp4: &[u8], pad: usize) -> anyhow::Result<Vec<u8>> {
    let mut pos = 0usize;
    let mut last = None;
    while pos + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[pos..pos + 4].try_into()?) as usize;
        ensure!(
            size >= 8 && pos + size <= mp4.len(),
            "unexpected box layout at {pos}"
        );
        last = Some((pos, mp4[pos + 4..pos + 8].to_vec()));
        pos += size;
    }
    let (moov_at, kind) = last.context("no boxes")?;
    ensure!(kind == b"moov", "the clip's last box is not moov");
    let mut out = Vec::with_capacity(mp4.len() + pad);
    out.extend_from_slice(&mp4[..moov_at]);
    out.extend_from_slice(&u32::try_from(pad)?.to_be_bytes());
    out.extend_from_slice(b"free");
    out.resize(out.len() + pad - 8, 0);
    out.extend_from_slice(&mp4[moov_at..]);
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moov_at_end_is_fetched_early_and_probed() -> anyhow::Result<()> {
    // The demo clip with 40 MiB of padding (a `free` box) between its mdat and its moov: still
    // a valid MP4 with the index at the very end, now far from the head, so the probe can only
    // finish early if the moov's pieces are fetched out of order. From one seeder at 4 MiB/s
    // the whole file needs ~10 s; the head and the moov are a few pieces.
    let clip = std::fs::read(common::demo_media("kino-moov-at-end.mp4"))?;
    let data = pad_before_moov(&clip, 40 << 20)?;
    let swarm = Swarm::start(&[("kino-moov-at-end.mp4", &data)], Some(4 << 20), 32).await?;
    let ih = kino_engine::parse_infohash(&swarm.ih).context("ih")?;
    swarm.viewer.prepare_playback(&ih, 0);
    // Bounded wait for the probe (it needs the head and the moov at the end of the file).
    let mut media = None;
    for _ in 0..600 {
        if let Some(m) = swarm.viewer.playback_status(&ih, 0).and_then(|p| p.media) {
            media = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let media = media.context("container was not probed within 60 s")?;
    let (have, total) = swarm.viewer_have()?;
    ensure!(
        have < total,
        "file complete before the probe; the test proves nothing"
    );
    ensure!(media.index_ranges.len() == 1, "{media:?}");
    ensure!(
        media.index_ranges[0].end == data.len() as u64,
        "moov is at the end: {media:?}"
    );
    ensure!(
        media.video_codecs == ["avc1"] && media.audio_codecs == ["mp4a"],
        "{media:?}"
    );
    let secs = media.duration.context("duration")?.as_secs_f64();
    ensure!((29.0..31.0).contains(&secs), "duration {secs}");
    ensure!(media.bitrate_bps.is_some());
    swarm.stop().await
}

/// An engine that seeds `data` (one file, `piece` bytes per piece when given) from a temp
/// folder, with `tweak` applied to its config; returns it with the torrent's metainfo.
async fn seeding_engine(
    dir: &std::path::Path,
    data: &[u8],
    piece: Option<u32>,
    tweak: impl FnOnce(&mut kino_engine::EngineConfig),
) -> anyhow::Result<(Engine, kino_engine::TorrentInfo)> {
    let src = dir.join("src").join("film.bin");
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(&src, data)?;
    let created = kino_engine::create::create_torrent(&src, piece, |_, _| {})?;
    let engine = common::engine(&dir.join("engine"), tweak).await?;
    tokio::time::timeout(Duration::from_secs(120), engine.seed_created(&created)).await??;
    Ok((engine, created.info))
}

/// A raw HTTP/1.1 GET that reads the response head and then stops reading (a small receive
/// buffer, so the server soon has to wait for it): a paused player, or one gone without
/// closing its socket.
async fn stalled_reader(addr: SocketAddr, path: &str) -> anyhow::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut s = socket.connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(head.len() < 8192, "no end of the response head");
        s.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Ok(s)
}

/// Readers that stop reading give their stream slots back after the idle timeout: with every
/// slot held by a connection that read the headers and then nothing, the next request is
/// served once the timeout passes, instead of waiting for a slot and failing with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_stream_readers_give_their_slots_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Far more than the socket buffers between server and client hold.
    let data = common::pseudo_random(24 << 20, 13);
    let (engine, info) = seeding_engine(dir.path(), &data, None, |c| {
        c.max_streams = 2;
        c.stream_idle_timeout = Duration::from_secs(1);
        // Longer than the test's own bound: without the idle timeout the next reader waits
        // all of it, then gets 503.
        c.stream_slot_wait = Duration::from_secs(300);
    })
    .await?;
    let server = Server::bind(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        kino_server::router(engine.clone()),
    )
    .await?;
    let ih = infohash_hex(&info.infohash);
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_reader(server.addr(), &format!("/stream/{ih}/0")).await?);
    }
    let got = tokio::time::timeout(
        Duration::from_secs(120),
        get_range(
            &client()?,
            &server.stream_url(&ih, 0),
            1 << 20,
            (2 << 20) - 1,
        ),
    )
    .await
    .context("the next reader was not served: idle readers kept their slots")??;
    ensure!(got == data[1 << 20..2 << 20], "wrong bytes");
    drop(stalled);
    server.shutdown().await;
    common::shutdown_checked(engine).await
}

/// A BitTorrent peer that has every piece and answers every request with garbage: it
/// handshakes, sends a full bitfield, unchokes, and sends a block of junk for each request.
/// Serves connections (the viewer reconnects after each disconnection) until aborted.
async fn corrupt_peer(listener: tokio::net::TcpListener, infohash: [u8; 20], pieces: usize) {
    let mut conns = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        conns.spawn(serve_garbage(socket, infohash, pieces));
    }
}

async fn serve_garbage(
    mut s: tokio::net::TcpStream,
    infohash: [u8; 20],
    pieces: usize,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).await?;
    ensure!(theirs[28..48] == infohash, "handshake for another torrent");
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0; 8]); // no extensions
    hs.extend_from_slice(&infohash);
    hs.extend_from_slice(b"-XX0001-corruptpeer!");
    s.write_all(&hs).await?;
    let mut bitfield = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bitfield[i / 8] |= 0x80 >> (i % 8);
    }
    let mut msg = ((bitfield.len() + 1) as u32).to_be_bytes().to_vec();
    msg.push(5);
    msg.extend_from_slice(&bitfield);
    msg.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
    s.write_all(&msg).await?;
    let junk = common::pseudo_random(16 * 1024, 666);
    // Bounded by the connection (the viewer drops it at the first failed piece) and a count.
    for _ in 0..100_000 {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        ensure!(len <= 1 << 20, "message of {len} bytes");
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await?;
        if len == 13 && body[0] == 6 {
            let want = u32::from_be_bytes([body[9], body[10], body[11], body[12]]) as usize;
            ensure!(want <= junk.len(), "request of {want} bytes");
            let mut piece = ((9 + want) as u32).to_be_bytes().to_vec();
            piece.push(7);
            piece.extend_from_slice(&body[1..9]); // index, begin
            piece.extend_from_slice(&junk[..want]);
            s.write_all(&piece).await?;
        }
    }
    Ok(())
}

/// When the only peer sends corrupt pieces, the status says that peers sent data that failed
/// verification (not that no peer is reachable), and no byte of it reaches a reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_pieces_are_reported_and_never_reach_the_reader() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir()?;
    // The real film, only to make a torrent with real hashes; nobody seeds it.
    let src = dir.path().join("src").join("film.mp4");
    common::write_random(&src, 256 * 1024, 21)?;
    let created = kino_engine::create::create_torrent(&src, Some(16 * 1024), |_, _| {})?;
    let info = created.info;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let peer_addr = listener.local_addr()?;
    let pieces = info.total_len.div_ceil(u64::from(info.piece_length)) as usize;
    let peer = tokio::spawn(corrupt_peer(listener, info.infohash.0, pieces));

    let viewer = common::engine(&dir.path().join("viewer"), |_| {}).await?;
    let torrent = viewer
        .add(
            &TorrentSource::Metainfo(info.clone()),
            AddOptions {
                peers: vec![peer_addr],
                placement: Placement::Cache,
            },
        )
        .await?;
    let ih = torrent.infohash();
    let mut reader = viewer.open_stream(&ih, 0).await?;
    let read = tokio::spawn(async move {
        let mut first = [0u8; 1024];
        let n = reader.read(&mut first).await;
        (n.map(|n| first[..n].to_vec()), reader)
    });
    let app = kino_server::WebApp::new(viewer.clone(), Default::default())?;
    let server = Server::bind(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        app.router(),
    )
    .await?;

    // Bounded wait for the first rejected piece (the policy of the status line needs one).
    let mut rejected = 0;
    for _ in 0..600 {
        rejected = viewer
            .transfer_status(&ih)
            .context("no status")?
            .rejected_pieces;
        if rejected > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(rejected > 0, "no rejected piece counted within 60 s");
    let status = client()?
        .get(format!(
            "http://{}/api/status/{}/0",
            server.addr(),
            infohash_hex(&ih)
        ))
        .send()
        .await?
        .text()
        .await?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    ensure!(
        status["rejected_pieces"].as_u64().is_some_and(|n| n >= 1),
        "{status}"
    );
    let t = viewer.transfer_status(&ih).context("no status")?;
    ensure!(t.have_bytes == 0, "a corrupt piece was accepted: {t:?}");
    if read.is_finished() {
        let (got, _) = read.await?;
        anyhow::bail!("the reader got something: {got:?}");
    }
    read.abort();
    peer.abort();
    server.shutdown().await;
    app.shutdown().await;
    common::shutdown_checked(viewer).await
}
