//! The player: runs inside a viewer's namespace (`kino-bench player`), plays a client's HTTP
//! stream in mpv (no video or audio output, otherwise mpv's defaults: its own cache, probing,
//! precise seeks) and drives it over mpv's JSON IPC socket. It reports in the reader's format
//! ([`ReadReport`]): `first_byte_us` is when playback started (mpv's first `playback-restart`),
//! `stalls` the times mpv paused for its cache while `watch` seconds of playback ran, and one
//! [`SeekReport`] per seek (`done_us` = the `playback-restart` after it).
//!
//! What it measures is what a user of the client sees with a real film: the player reads the
//! file head, jumps to the index wherever the container keeps it (an MP4's `moov` at the end),
//! comes back to the first frames, and decodes them.

use crate::reader::{self, ReadReport, SeekReport, Source, now_us};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A player run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Stream location.
    pub source: Source,
    /// Seek points (fractions of the duration), in order.
    pub seeks: Vec<f64>,
    /// Playback watched for stalls after startup, before the first seek.
    pub watch: Duration,
    /// Give up after this long.
    pub deadline: Duration,
    /// The mpv binary.
    pub mpv: PathBuf,
}

/// Runs a plan; never fails (errors go into the report).
pub async fn run(p: Plan) -> ReadReport {
    let mut rep = ReadReport::default();
    match run_inner(&p, &mut rep).await {
        Ok(()) => rep.ok = true,
        Err(e) => rep.error = Some(format!("{e:#}")),
    }
    rep
}

/// mpv's IPC connection: events in, commands out.
struct Ipc {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    tx: tokio::net::unix::OwnedWriteHalf,
    until: tokio::time::Instant,
    /// (start, end) of each pause for the cache; end 0 while it lasts.
    stalls: Vec<(u64, u64)>,
}

impl Ipc {
    async fn connect(sock: &Path, until: tokio::time::Instant) -> anyhow::Result<Ipc> {
        let s = loop {
            match UnixStream::connect(sock).await {
                Ok(s) => break s,
                Err(_) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => bail!("mpv's IPC socket did not open: {e}"),
            }
        };
        let (rx, tx) = s.into_split();
        Ok(Ipc {
            lines: BufReader::new(rx).lines(),
            tx,
            until,
            stalls: Vec::new(),
        })
    }

    async fn send(&mut self, cmd: Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&json!({ "command": cmd }))?;
        line.push(b'\n');
        self.tx.write_all(&line).await?;
        Ok(())
    }

    /// Handles events until `stop` (exclusive) or the next `playback-restart`
    /// (`stop` = None). Returns whether a `playback-restart` ended the wait.
    async fn pump(&mut self, stop: Option<tokio::time::Instant>) -> anyhow::Result<bool> {
        loop {
            let end = stop.map_or(self.until, |s| s.min(self.until));
            let line = match tokio::time::timeout_at(end, self.lines.next_line()).await {
                Err(_) if stop.is_some_and(|s| s <= self.until) => return Ok(false),
                Err(_) => bail!("deadline: mpv did not (re)start playing"),
                Ok(r) => r?.context("mpv closed its IPC connection")?,
            };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match v["event"].as_str() {
                Some("playback-restart") if stop.is_none() => return Ok(true),
                Some("end-file") if v["reason"] == "error" => {
                    bail!("mpv could not play the stream: {}", v["file_error"])
                }
                Some("property-change") if v["name"] == "paused-for-cache" => {
                    let t = now_us();
                    match v["data"].as_bool() {
                        Some(true) => self.stalls.push((t, 0)),
                        Some(false) => {
                            if let Some(s) = self.stalls.last_mut().filter(|s| s.1 == 0) {
                                s.1 = t;
                            }
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
    }
}

async fn run_inner(p: &Plan, rep: &mut ReadReport) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + p.deadline;
    let url = reader::resolve(&p.source, until).await?;
    reader::wait_until_listening(&url, until).await?;
    let sock = std::env::temp_dir().join(format!("kino-bench-mpv-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut mpv = tokio::process::Command::new(&p.mpv)
        .args([
            "--no-config",
            "--vo=null",
            "--ao=null",
            "--no-terminal",
            "--idle=no",
            "--keep-open=always",
            "--cache=yes",
        ])
        .arg(format!("--input-ipc-server={}", sock.display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", p.mpv.display()))?;
    let result = drive(p, rep, &sock, until).await;
    let _ = mpv.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(3), mpv.wait()).await;
    let _ = std::fs::remove_file(&sock);
    result
}

async fn drive(
    p: &Plan,
    rep: &mut ReadReport,
    sock: &Path,
    until: tokio::time::Instant,
) -> anyhow::Result<()> {
    let mut ipc = Ipc::connect(sock, until).await?;
    ipc.send(json!(["observe_property", 1, "paused-for-cache"]))
        .await?;
    ipc.pump(None).await?;
    let started = now_us();
    rep.first_byte_us = Some(started);
    ipc.pump(Some(tokio::time::Instant::now() + p.watch))
        .await?;
    let watch_end = now_us();
    rep.stalls = ipc
        .stalls
        .iter()
        .filter(|&&(s, _)| s >= started)
        .map(|&(s, e)| (s, if e == 0 { watch_end } else { e }))
        .collect();
    for &frac in &p.seeks {
        let mut s = SeekReport {
            frac,
            offset: 0,
            start_us: now_us(),
            first_byte_us: None,
            done_us: None,
        };
        ipc.send(json!(["seek", frac * 100.0, "absolute-percent"]))
            .await?;
        let r = ipc.pump(None).await;
        if r.is_ok() {
            s.done_us = Some(now_us());
        }
        rep.seeks.push(s);
        r?;
    }
    let _ = ipc.send(json!(["quit"])).await;
    Ok(())
}
