//! The engine on a full disk (issue 12, D5): a viewer whose media folder is a small tmpfs
//! streams a film that does not fit. The reader waiting for a piece that cannot be stored gets
//! an error instead of waiting forever, the HTTP stream answers "disk full", the status (the
//! engine's and the API's JSON) says so, and once space is freed the download resumes and
//! completes by itself.
//!
//! Mounting a tmpfs needs root; without it the test says why and skips. Everything runs on
//! 127.0.0.1 and every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use kino_engine::{AddOptions, Placement, Problem, TorrentSource, infohash_hex};
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "4m") on `dir`; `Ok(None)` when this machine does not
    /// let the test mount one.
    fn mount(dir: &Path, size: &str) -> anyhow::Result<Option<Tmpfs>> {
        std::fs::create_dir_all(dir)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        match status {
            Ok(s) if s.success() => Ok(Some(Tmpfs {
                dir: dir.to_path_buf(),
            })),
            Ok(s) => {
                eprintln!("skipped: `mount -t tmpfs` failed ({s}); the test needs root");
                Ok(None)
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                Ok(None)
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file there: detach it now, it goes when released.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_ends_the_stream_with_an_error() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film_path = root.join("src/film.mp4");
    let film = common::write_random(&film_path, 3 * MIB, 71)?;
    let created = kino_engine::create::create_torrent(&film_path, Some(256 * 1024), |_, _| {})?;

    // The viewer's media folder: 4 MiB, of which a filler takes 2.5 MiB, so the 3 MiB film
    // cannot fit (the database stays outside, on the normal disk).
    let viewer_dir = root.join("viewer");
    let media = viewer_dir.join("media");
    let Some(tmpfs) = Tmpfs::mount(&media, "4m")? else {
        return Ok(());
    };
    let filler = media.join("filler.bin");
    std::fs::write(&filler, vec![1u8; 5 * MIB / 2])?;

    let seeder = common::engine(&root.join("seed"), |_| {}).await?;
    tokio::time::timeout(Duration::from_secs(60), seeder.seed_created(&created)).await??;
    let addr = common::engine_addr(&seeder)?;
    let viewer = common::engine(&viewer_dir, |_| {}).await?;
    let app = kino_server::WebApp::new(viewer.clone(), kino_server::AppOptions::default())?;
    let server = kino_server::Server::bind("127.0.0.1:0".parse()?, app.router()).await?;

    let torrent = viewer
        .add(
            &TorrentSource::Metainfo(created.info.clone()),
            AddOptions {
                peers: vec![addr],
                placement: Placement::Cache,
            },
        )
        .await?;
    let ih = torrent.infohash();
    let hex = infohash_hex(&ih);

    // A player reading the whole film: it gets what fit, then an error (not a hang).
    let mut reader = viewer.open_stream(&ih, 0).await?;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(120), reader.read_to_end(&mut got))
        .await
        .context("the reader hung on a full disk")?;
    let err = read.expect_err("the film cannot fit, so the read must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(got.len() < film.len(), "read {} bytes", got.len());
    assert_eq!(got[..], film[..got.len()], "what was read is the film");
    drop(reader);

    // The status says "disk full": the engine's, and the API's JSON.
    let status = viewer.playback_status(&ih, 0).context("no status")?;
    assert_eq!(status.transfer.problem, Some(Problem::DiskFull));
    let base = format!("http://{}", server.addr());
    let body = reqwest::get(format!("{base}/api/status/{hex}/0"))
        .await?
        .bytes()
        .await?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(json["problem"], "disk_full", "{json}");
    assert!(
        json["problem_message"]
            .as_str()
            .is_some_and(|m| m.contains("disk full")),
        "{json}"
    );

    // The HTTP stream answers at once: 507 with the stable error code, or, had it started
    // before, a body that ends with an error; never a stall.
    let resp = tokio::time::timeout(Duration::from_secs(60), async {
        let resp = reqwest::get(server.stream_url(&hex, 0)).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await;
        anyhow::Ok((status, body))
    })
    .await
    .context("the HTTP stream stalled on a full disk")??;
    match resp {
        (507, Ok(body)) => {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            assert_eq!(v["error"], "disk_full", "{v}");
        }
        (200, body) => assert!(body.is_err(), "a complete body from a full disk?"),
        (status, body) => panic!("unexpected answer {status}: {body:?}"),
    }

    // Space comes back: the engine resumes by itself and the film completes.
    std::fs::remove_file(&filler)?;
    let mut finished = false;
    for _ in 0..600 {
        let t = viewer.transfer_status(&ih).context("no status")?;
        if t.finished {
            assert_eq!(t.problem, None);
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        finished,
        "the download did not resume after space was freed"
    );
    let mut reader = viewer.open_stream(&ih, 0).await?;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut all)).await??;
    assert!(all == film, "the resumed film differs");
    drop(reader);

    server.shutdown().await;
    app.shutdown().await;
    common::shutdown_checked(viewer).await?;
    common::shutdown_checked(seeder).await?;
    // Whatever holds the viewer's files (and so the mount) goes before the unmount.
    drop((torrent, app));
    drop(tmpfs);
    Ok(())
}

/// The same full disk seen from `kino play`: its status says "disk full" (once as a line of
/// its own, then in place of the peer count), instead of "no peer reachable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kino_play_says_disk_full() -> anyhow::Result<()> {
    use std::io::BufRead;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film_path = root.join("src/film.mp4");
    common::write_random(&film_path, 3 * MIB, 72)?;
    let created = kino_engine::create::create_torrent(&film_path, Some(256 * 1024), |_, _| {})?;
    let torrent = root.join("film.torrent");
    std::fs::write(&torrent, &created.info.metainfo)?;

    let data = root.join("viewer");
    let Some(tmpfs) = Tmpfs::mount(&data.join("media"), "4m")? else {
        return Ok(());
    };
    std::fs::write(data.join("media/filler.bin"), vec![1u8; 5 * MIB / 2])?;
    let seeder = common::engine(&root.join("seed"), |_| {}).await?;
    tokio::time::timeout(Duration::from_secs(60), seeder.seed_created(&created)).await??;
    let addr = common::engine_addr(&seeder)?;

    let mut c = common::kino_with_empty_config(&data)?;
    c.env("KINO_LOG", "warn")
        .arg("play")
        .arg(&torrent)
        .args(["--peer", &addr.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    // Unbounded on purpose: the reader thread must never stop draining the child's stderr.
    #[allow(clippy::disallowed_methods)]
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The status loop of a non-terminal prints every 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let (mut told, mut in_status) = (false, false);
    while !(told && in_status) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        anyhow::ensure!(
            !left.is_zero(),
            "kino play never said 'disk full': {seen:#?}"
        );
        let Ok(line) = rx.recv_timeout(left) else {
            continue;
        };
        told |= line.starts_with("disk full: free some space");
        in_status |= line.contains("| disk full |");
        assert!(!line.contains("no peer reachable"), "{line}");
        seen.push(line);
    }
    // Our own child, by its id.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut exited = false;
    for _ in 0..150 {
        if child.try_wait()?.is_some() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !exited {
        child.kill()?;
        child.wait()?;
    }
    common::shutdown_checked(seeder).await?;
    drop(tmpfs);
    Ok(())
}
