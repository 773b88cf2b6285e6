//! The reader: runs inside a viewer's namespace (`kino-bench reader`), reads any client's HTTP
//! stream the same way, checks every byte against the generated film, and prints one JSON line
//! ([`ReadReport`]) with absolute timestamps (µs since the Unix epoch), so the bench can put
//! every client on the same time axis from the moment it spawned it.
//!
//! Plans: `linear` reads the whole file from offset 0 in order, as fast as the client serves it
//! (the arrival curve a player's buffer sees); `seeks` reads the first `startup_bytes`, then for
//! each fraction closes the connection and opens a new Range request at that point, reading
//! `seek_bytes` from it.

use crate::data;
use anyhow::{Context, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most arrival samples kept (one every 64 KiB or 20 ms, whichever is rarer).
const MAX_SAMPLES: usize = 50_000;

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One seek of the `seeks` plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeekReport {
    /// Fraction of the file.
    pub frac: f64,
    /// Byte offset requested.
    pub offset: u64,
    /// When the Range request was sent.
    pub start_us: u64,
    /// First byte of the body.
    pub first_byte_us: Option<u64>,
    /// When `seek_bytes` past the offset (or the end of file) were read.
    pub done_us: Option<u64>,
}

/// What the reader (or the libtorrent bench script) reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadReport {
    /// The read completed its plan.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// First body byte at offset 0.
    pub first_byte_us: Option<u64>,
    /// (time, bytes readable in order from offset 0).
    pub samples: Vec<(u64, u64)>,
    /// Seeks, in order.
    pub seeks: Vec<SeekReport>,
    /// (start, end) of each stall of a real player (`kino-bench player` only), µs.
    #[serde(default)]
    pub stalls: Vec<(u64, u64)>,
}

/// Where the stream is.
#[derive(Debug, Clone)]
pub enum Source {
    /// A plain URL (retried until it answers).
    Url(String),
    /// rqbit's HTTP API: add the torrent with its initial peers, then stream file 0.
    Rqbit {
        /// e.g. `http://127.0.0.1:3030`.
        api: String,
        /// .torrent path.
        torrent: std::path::PathBuf,
        /// Peers, `IP:PORT[,IP:PORT...]`.
        peer: String,
        /// Download folder.
        out: std::path::PathBuf,
    },
}

/// A reader run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Stream location.
    pub source: Source,
    /// File size.
    pub size: u64,
    /// Seed of the generated film (bytes are checked).
    pub seed: u64,
    /// Bytes to read before the first seek.
    pub startup_bytes: u64,
    /// Seek fractions (empty: linear read of the whole file).
    pub seeks: Vec<f64>,
    /// Bytes to read after each seek.
    pub seek_bytes: u64,
    /// Give up after this long.
    pub deadline: Duration,
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()?)
}

async fn rqbit_add(
    c: &reqwest::Client,
    api: &str,
    torrent: &std::path::Path,
    peer: &str,
    out: &std::path::Path,
    until: tokio::time::Instant,
) -> anyhow::Result<String> {
    let body = std::fs::read(torrent)?;
    let url = format!(
        "{api}/torrents?overwrite=true&initial_peers={peer}&output_folder={}",
        out.display()
    );
    loop {
        match c.post(&url).body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => {
                let v: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
                let id = v["id"].as_u64().context("rqbit answered without an id")?;
                return Ok(format!("{api}/torrents/{id}/stream/0"));
            }
            Ok(r) => {
                let s = r.status();
                bail!("rqbit refused the torrent: {s} {}", r.text().await?)
            }
            Err(_) if tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => bail!("rqbit API unreachable: {e}"),
        }
    }
}

/// The stream's URL (for rqbit, after adding the torrent through its API).
pub async fn resolve(source: &Source, until: tokio::time::Instant) -> anyhow::Result<String> {
    match source {
        Source::Url(u) => Ok(u.clone()),
        Source::Rqbit {
            api,
            torrent,
            peer,
            out,
        } => rqbit_add(&client()?, api, torrent, peer, out, until).await,
    }
}

/// Waits until the server of `url` accepts TCP connections (20 ms apart, until `until`): a
/// player given the URL before the client's server listens gives up at once, where the reader
/// retries. Only connects, so the client sees no request it would not see from the player.
pub async fn wait_until_listening(url: &str, until: tokio::time::Instant) -> anyhow::Result<()> {
    let u = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    let host = u.host_str().context("URL without a host")?.to_owned();
    let port = u.port_or_known_default().context("URL without a port")?;
    loop {
        match tokio::net::TcpStream::connect((host.as_str(), port)).await {
            Ok(_) => return Ok(()),
            Err(_) if tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => bail!("{url} does not accept connections: {e}"),
        }
    }
}

/// Opens `url` at `offset`, retrying (20 ms apart) until it answers 200/206 or `until`.
async fn open(
    c: &reqwest::Client,
    url: &str,
    offset: u64,
    until: tokio::time::Instant,
) -> anyhow::Result<reqwest::Response> {
    loop {
        let r = c
            .get(url)
            .header("Range", format!("bytes={offset}-"))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 206 || (r.status() == 200 && offset == 0) => return Ok(r),
            Ok(r) if r.status() == 200 => bail!("{url} ignores Range (200 for offset {offset})"),
            _ if tokio::time::Instant::now() >= until => bail!("{url} did not answer in time"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Reads from `offset` until `want` bytes (capped at the file end) arrived; calls `on_bytes`
/// with the running total after each chunk. Reopens the request if the body ends early.
async fn read_span(
    c: &reqwest::Client,
    url: &str,
    p: &Plan,
    offset: u64,
    want: u64,
    until: tokio::time::Instant,
    mut on_bytes: impl FnMut(u64),
) -> anyhow::Result<()> {
    let want = want.min(p.size - offset);
    let mut got = 0u64;
    let mut reopens = 0;
    while got < want {
        let r = open(c, url, offset + got, until).await?;
        let mut body = r.bytes_stream();
        loop {
            let next = tokio::time::timeout_at(until, body.next()).await;
            let chunk = match next {
                Err(_) => bail!("deadline: {got} of {want} bytes at offset {offset}"),
                Ok(None) => break,
                Ok(Some(c)) => c?,
            };
            let take = (chunk.len() as u64).min(want - got) as usize;
            if !data::check(p.seed, offset + got, &chunk[..take]) {
                bail!("wrong bytes at offset {}", offset + got);
            }
            got += take as u64;
            on_bytes(got);
            if got >= want {
                return Ok(());
            }
        }
        reopens += 1;
        if reopens > 20 {
            bail!("stream ended early 20 times at offset {}", offset + got);
        }
    }
    Ok(())
}

/// Runs a plan; never fails (errors go into the report).
pub async fn run(p: Plan) -> ReadReport {
    let mut rep = ReadReport::default();
    if let Err(e) = run_inner(&p, &mut rep).await {
        rep.ok = false;
        rep.error = Some(format!("{e:#}"));
    } else {
        rep.ok = true;
    }
    rep
}

async fn run_inner(p: &Plan, rep: &mut ReadReport) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + p.deadline;
    let c = client()?;
    let url = resolve(&p.source, until).await?;
    let first_read = if p.seeks.is_empty() {
        p.size
    } else {
        p.startup_bytes
    };
    let mut last = (0u64, 0u64);
    let samples = &mut rep.samples;
    let first = &mut rep.first_byte_us;
    read_span(&c, &url, p, 0, first_read, until, |got| {
        let t = now_us();
        if first.is_none() {
            *first = Some(t);
        }
        let done = got >= first_read.min(p.size);
        if done || (samples.len() < MAX_SAMPLES && (got >= last.1 + 65536 || t >= last.0 + 20_000))
        {
            samples.push((t, got));
            last = (t, got);
        }
    })
    .await?;
    for &frac in &p.seeks {
        let offset = ((p.size as f64 * frac) as u64).min(p.size.saturating_sub(1));
        let mut s = SeekReport {
            frac,
            offset,
            start_us: now_us(),
            first_byte_us: None,
            done_us: None,
        };
        let want = p.seek_bytes.min(p.size - offset);
        let r = read_span(&c, &url, p, offset, want, until, |got| {
            let t = now_us();
            if s.first_byte_us.is_none() {
                s.first_byte_us = Some(t);
            }
            if got >= want {
                s.done_us = Some(t);
            }
        })
        .await;
        rep.seeks.push(s);
        r?;
    }
    Ok(())
}
