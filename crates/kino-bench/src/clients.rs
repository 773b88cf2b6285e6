//! The clients under test, each started inside a viewer namespace, and the read of its stream.
//!
//! Every client gets a fresh data folder, the same .torrent, and the seeder's address as its only
//! peer. Time zero of a run is the moment the client's process is spawned; the stream is read by
//! `kino-bench reader` in the same namespace (libtorrent has no HTTP stream: `bench/lt_bench.py`
//! plays the file itself with piece deadlines and reports the same JSON).

use crate::net::Node;
use crate::reader::{ReadReport, now_us};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A client under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// This project.
    Kino,
    /// libtorrent-rasterbar 2.0 (python bindings).
    Libtorrent,
    /// peerflix (torrent-stream).
    Peerflix,
    /// WebTorrent (the library, with its HTTP server).
    Webtorrent,
    /// rqbit's server (librqbit's HTTP API).
    Rqbit,
}

impl Kind {
    /// Every client, Kino first.
    pub const ALL: [Kind; 5] = [
        Kind::Kino,
        Kind::Libtorrent,
        Kind::Peerflix,
        Kind::Webtorrent,
        Kind::Rqbit,
    ];

    /// Whether the client serves its stream over HTTP (libtorrent's bench script reads from
    /// disk instead), so a player can be given it.
    pub fn has_http_stream(self) -> bool {
        self != Kind::Libtorrent
    }

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kino => "kino",
            Kind::Libtorrent => "libtorrent",
            Kind::Peerflix => "peerflix",
            Kind::Webtorrent => "webtorrent",
            Kind::Rqbit => "rqbit",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> anyhow::Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| {
                format!("unknown client {s:?} (kino, libtorrent, peerflix, webtorrent, rqbit)")
            })
    }
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// This executable (re-run as `reader` / `relay` inside namespaces).
    pub bench: PathBuf,
    /// The `kino` binary.
    pub kino: PathBuf,
    /// A config file Kino runs with (its defaults when `None`): to measure a setting.
    pub kino_config: Option<PathBuf>,
    /// The repository (for `bench/*.py|js` and `target/bench-peers`).
    pub repo: PathBuf,
}

impl Tools {
    fn peers(&self) -> PathBuf {
        self.repo.join("target/bench-peers")
    }

    /// Why `k` cannot run here, if it cannot.
    pub fn missing(&self, k: Kind) -> Option<String> {
        let need = |p: PathBuf, what: &str| {
            if p.exists() {
                None
            } else {
                Some(format!(
                    "{what} not installed (scripts/install-bench-peers)"
                ))
            }
        };
        match k {
            Kind::Kino => need(self.kino.clone(), "kino binary"),
            Kind::Libtorrent => {
                let ok = std::process::Command::new("/usr/bin/python3")
                    .args(["-c", "import libtorrent"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!ok).then(|| {
                    "python3-libtorrent not installed (scripts/install-bench-peers)".into()
                })
            }
            Kind::Peerflix => need(
                self.peers().join("node/node_modules/.bin/peerflix"),
                "peerflix",
            ),
            Kind::Webtorrent => need(
                self.peers()
                    .join("node/node_modules/webtorrent/package.json"),
                "webtorrent",
            ),
            Kind::Rqbit => need(self.peers().join("cargo/bin/rqbit"), "rqbit"),
        }
    }

    /// Version string of `k` for the report.
    pub fn version(&self, k: Kind) -> String {
        let pkg = |name: &str| -> String {
            let p = self
                .peers()
                .join(format!("node/node_modules/{name}/package.json"));
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| v["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".into())
        };
        let run = |prog: &Path, args: &[&str]| stdout_of(prog, args).unwrap_or_else(|| "?".into());
        match k {
            Kind::Kino => {
                let v = run(&self.kino, &["--version"]);
                match std::env::var("KINO_REV") {
                    Ok(rev) => format!("{v} ({rev})"),
                    Err(_) => v,
                }
            }
            Kind::Libtorrent => run(
                Path::new("/usr/bin/python3"),
                &["-c", "import libtorrent; print(libtorrent.__version__)"],
            ),
            Kind::Peerflix => pkg("peerflix"),
            Kind::Webtorrent => pkg("webtorrent"),
            Kind::Rqbit => run(&self.peers().join("cargo/bin/rqbit"), &["--version"]),
        }
    }
}

/// What `prog args` prints on stdout (trimmed), if it runs and prints anything.
pub fn stdout_of(prog: &Path, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(prog).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    (o.status.success() && !s.is_empty()).then_some(s)
}

/// What a viewer run does.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    /// The .torrent.
    pub torrent: PathBuf,
    /// Peers to dial, `IP:PORT`: the seeder(s) first (the relay's address where latency is
    /// added), then other viewers in the swarm. Every client is given all of them.
    pub peers: Vec<String>,
    /// File size.
    pub size: u64,
    /// Film seed.
    pub seed: u64,
    /// Bitrate, bytes per second.
    pub bitrate: f64,
    /// Bytes before the first seek (the first 10 s).
    pub startup_bytes: u64,
    /// Seek fractions; empty: read the whole file.
    pub seeks: Vec<f64>,
    /// Bytes to read after each seek.
    pub seek_bytes: u64,
    /// Upload to other viewers.
    pub share: bool,
    /// Give up after.
    pub deadline: Duration,
    /// Play the stream in mpv (`kino-bench player`) instead of reading its bytes, watching this
    /// long for stalls before the seeks (the real-film scenario).
    pub player_watch: Option<Duration>,
}

impl ViewSpec {
    /// The peers as one comma-separated list (WebTorrent's script, rqbit's `initial_peers`).
    fn peer_list(&self) -> String {
        self.peers.join(",")
    }

    /// `--seeks F,F,...` for the reader and lt_bench.py, when there are seeks.
    fn push_seeks(&self, args: &mut Vec<String>) {
        if !self.seeks.is_empty() {
            let list: Vec<String> = self.seeks.iter().map(f64::to_string).collect();
            args.extend(["--seeks".into(), list.join(",")]);
        }
    }
}

/// The outcome of one viewer run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewRun {
    /// Client.
    pub kind: Kind,
    /// Spawn time (µs since the epoch).
    pub t0_us: u64,
    /// The reader's report.
    pub report: ReadReport,
    /// Peak RSS of the client process, KiB (VmHWM).
    pub peak_rss_kib: Option<u64>,
    /// CPU seconds of the client process (user + system).
    pub cpu_s: Option<f64>,
}

/// A child process killed on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `prog args` inside `ns`, stdout piped, stderr to `log`.
    pub fn spawn_in(
        ns: &str,
        prog: &Path,
        args: &[String],
        log: &Path,
        envs: &[(&str, String)],
    ) -> anyhow::Result<Proc> {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(ns).arg(prog).args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let err = std::fs::File::create(log)?;
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", prog.display()))?;
        Ok(Proc { child })
    }

    /// The process id (`ip netns exec` execs the program, so it is the program's).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Reads stdout lines until `pick` returns a value, within `timeout`.
    pub async fn wait_line<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let out = self.child.stdout.as_mut().context("no stdout")?;
        let mut lines = BufReader::new(out).lines();
        let fut = async {
            while let Some(l) = lines.next_line().await? {
                if let Some(v) = pick(l.trim()) {
                    return Ok(v);
                }
            }
            bail!("exited before printing the expected line")
        };
        tokio::time::timeout(timeout, fut)
            .await
            .context("timed out waiting for output")?
    }

    /// Peak RSS (KiB) and CPU seconds so far, from /proc.
    pub fn usage(&self) -> (Option<u64>, Option<f64>) {
        let Some(pid) = self.pid() else {
            return (None, None);
        };
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            });
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ut: f64 = f.get(11)?.parse().ok()?;
                let st: f64 = f.get(12)?.parse().ok()?;
                Some((ut + st) / 100.0)
            });
        (rss, cpu)
    }
}

/// How long a dropped process may take to exit after SIGKILL.
const EXIT_WAIT: Duration = Duration::from_secs(3);

impl Drop for Proc {
    /// Kills the process and waits (bounded) until it is gone, so the next client started in
    /// the same namespace finds its ports free (every viewer listens on 6881; a client still
    /// exiting made the next one fail to start).
    fn drop(&mut self) {
        if self.child.start_kill().is_err() {
            return;
        }
        let until = std::time::Instant::now() + EXIT_WAIT;
        while std::time::Instant::now() < until {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// The command line of what reads the stream in the viewer's namespace: `kino-bench reader`
/// (bytes) or `kino-bench player` (mpv).
fn reader_args(spec: &ViewSpec) -> Vec<String> {
    if let Some(watch) = spec.player_watch {
        let mut a = vec![
            "player".into(),
            "--watch-ms".into(),
            watch.as_millis().to_string(),
            "--deadline".into(),
            spec.deadline.as_secs().to_string(),
        ];
        spec.push_seeks(&mut a);
        return a;
    }
    let mut a = vec![
        "reader".into(),
        "--size".into(),
        spec.size.to_string(),
        "--seed".into(),
        spec.seed.to_string(),
        "--startup-bytes".into(),
        spec.startup_bytes.to_string(),
        "--seek-bytes".into(),
        spec.seek_bytes.to_string(),
        "--deadline".into(),
        spec.deadline.as_secs().to_string(),
    ];
    spec.push_seeks(&mut a);
    a
}

/// Runs one viewer of kind `k` on `node`, reads its stream per `spec`, then stops it.
/// `dir` is a fresh folder for this run (data and logs).
pub async fn view(
    k: Kind,
    tools: &Tools,
    node: &Node,
    spec: &ViewSpec,
    dir: &Path,
) -> anyhow::Result<ViewRun> {
    Ok(view_keep(k, tools, node, spec, dir).await?.0)
}

/// Like [`view`], but the client keeps running (and sharing) until the returned processes are
/// dropped.
pub async fn view_keep(
    k: Kind,
    tools: &Tools,
    node: &Node,
    spec: &ViewSpec,
    dir: &Path,
) -> anyhow::Result<(ViewRun, Vec<Proc>)> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let log = dir.join(format!("{}.log", k.name()));
    let ns = &node.ns;
    let ip = node.ip.to_string();
    let torrent = spec.torrent.display().to_string();
    let mut reader = reader_args(spec);
    let t0_us = now_us();
    let (client, report_proc) = match k {
        Kind::Kino => {
            let mut args: Vec<String> = vec![
                "--data-dir".into(),
                data.display().to_string(),
                "--no-dht".into(),
                "--no-lsd".into(),
                "--bind".into(),
                ip.clone(),
                "--listen-port".into(),
                "6881".into(),
            ];
            if !spec.share {
                args.push("--no-share".into());
            }
            args.extend(["play".into(), torrent, "--player".into(), "none".into()]);
            for p in &spec.peers {
                args.extend(["--peer".into(), p.clone()]);
            }
            if let Some(cfg) = &tools.kino_config {
                std::fs::create_dir_all(dir.join("kino"))?;
                std::fs::copy(cfg, dir.join("kino/config.toml"))
                    .with_context(|| format!("cannot copy {}", cfg.display()))?;
            }
            let envs = [
                ("XDG_CONFIG_HOME", dir.display().to_string()),
                ("RUST_LOG", "warn".to_string()),
            ];
            let mut c = Proc::spawn_in(ns, &tools.kino, &args, &log, &envs)?;
            let url = c
                .wait_line(spec.deadline, |l| {
                    l.starts_with("http://").then(|| l.to_owned())
                })
                .await
                .context("kino did not print its stream URL")?;
            reader.extend(["--url".into(), url]);
            let r = Proc::spawn_in(ns, &tools.bench, &reader, &dir.join("reader.log"), &[])?;
            (Some(c), r)
        }
        Kind::Peerflix => {
            let bin = tools.peers().join("node/node_modules/.bin/peerflix");
            let mut args: Vec<String> = vec![
                torrent,
                "-p".into(),
                "8888".into(),
                "-f".into(),
                data.display().to_string(),
                "-x".into(),
                "6881".into(),
                "-q".into(),
            ];
            for p in &spec.peers {
                args.extend(["-e".into(), p.clone()]);
            }
            let c = Proc::spawn_in(ns, &bin, &args, &log, &[])?;
            reader.extend(["--url".into(), "http://127.0.0.1:8888/".into()]);
            let r = Proc::spawn_in(ns, &tools.bench, &reader, &dir.join("reader.log"), &[])?;
            (Some(c), r)
        }
        Kind::Webtorrent => {
            let script = tools.repo.join("bench/wt_viewer.js");
            let args: Vec<String> = vec![
                script.display().to_string(),
                torrent,
                data.display().to_string(),
                spec.peer_list(),
                "8888".into(),
            ];
            let node_path = tools.peers().join("node/node_modules");
            let mut c = Proc::spawn_in(
                ns,
                Path::new("/usr/bin/node"),
                &args,
                &log,
                &[("NODE_PATH", node_path.display().to_string())],
            )?;
            let url = c
                .wait_line(spec.deadline, |l| {
                    l.starts_with("http://").then(|| l.to_owned())
                })
                .await
                .context("webtorrent did not print its stream URL")?;
            reader.extend(["--url".into(), url]);
            let r = Proc::spawn_in(ns, &tools.bench, &reader, &dir.join("reader.log"), &[])?;
            (Some(c), r)
        }
        Kind::Rqbit => {
            let bin = tools.peers().join("cargo/bin/rqbit");
            let mut args: Vec<String> = [
                "--disable-dht",
                "--disable-dht-persistence",
                "--disable-lsd",
                "--disable-trackers",
                "--disable-upnp-port-forward",
                "--listen-port",
                "6881",
                "--http-api-listen-addr",
                "127.0.0.1:3030",
            ]
            .map(String::from)
            .to_vec();
            // rqbit's release binary has no switch to turn uploads off (librqbit's
            // `disable-upload` is a build feature); with sharing off no viewer is told about the
            // others, as for libtorrent, peerflix and WebTorrent, so nobody asks it for pieces.
            args.extend([
                "server".into(),
                "start".into(),
                "--disable-persistence".into(),
                data.display().to_string(),
            ]);
            let c = Proc::spawn_in(
                ns,
                &bin,
                &args,
                &log,
                &[("RQBIT_LOG_LEVEL_CONSOLE", "warn".into())],
            )?;
            reader.extend([
                "--rqbit-api".into(),
                "http://127.0.0.1:3030".into(),
                "--torrent".into(),
                torrent,
                "--peer".into(),
                spec.peer_list(),
                "--out".into(),
                data.display().to_string(),
            ]);
            let r = Proc::spawn_in(ns, &tools.bench, &reader, &dir.join("reader.log"), &[])?;
            (Some(c), r)
        }
        _ if spec.player_watch.is_some() && !k.has_http_stream() => {
            bail!("{} has no HTTP stream to give a player", k.name())
        }
        Kind::Libtorrent => {
            let script = tools.repo.join("bench/lt_bench.py");
            let mut args: Vec<String> = vec![
                script.display().to_string(),
                "view".into(),
                "--torrent".into(),
                torrent,
                "--out".into(),
                data.display().to_string(),
                "--bind".into(),
                ip.clone(),
                "--peer".into(),
                spec.peer_list(),
                "--bitrate".into(),
                spec.bitrate.to_string(),
                "--startup-bytes".into(),
                spec.startup_bytes.to_string(),
                "--seek-bytes".into(),
                spec.seek_bytes.to_string(),
                "--deadline".into(),
                spec.deadline.as_secs().to_string(),
                "--linger".into(),
            ];
            spec.push_seeks(&mut args);
            let r = Proc::spawn_in(ns, Path::new("/usr/bin/python3"), &args, &log, &[])?;
            (None, r)
        }
    };
    // The reader (or lt_bench.py) prints its report when its plan is done or its deadline
    // passed; lt_bench.py then lingers so its own usage can be read like the other clients'.
    let mut report_proc = report_proc;
    let line = report_proc
        .wait_line(spec.deadline + Duration::from_secs(10), |l| {
            l.starts_with('{').then(|| l.to_owned())
        })
        .await
        .with_context(|| format!("{} produced no report; see {}", k.name(), log.display()))?;
    let (peak_rss_kib, cpu_s) = client.as_ref().unwrap_or(&report_proc).usage();
    let report: ReadReport = serde_json::from_str(&line)?;
    let mut keep = vec![report_proc];
    keep.extend(client);
    Ok((
        ViewRun {
            kind: k,
            t0_us,
            report,
            peak_rss_kib,
            cpu_s,
        },
        keep,
    ))
}
