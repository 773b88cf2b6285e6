//! Test utilities shared by the integration tests: media generators, `kino` processes with
//! line readers, loopback engines, and the python3-libtorrent peer.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use anyhow::{Context, bail};

/// Deterministic pseudo-random bytes (xorshift), so tests compare against known data.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a pseudo-random file and returns its bytes.
pub fn write_random(path: &Path, len: usize, seed: u64) -> anyhow::Result<Vec<u8>> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let data = pseudo_random(len, seed);
    std::fs::write(path, &data)?;
    Ok(data)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A demo clip's path.
pub fn demo_media(name: &str) -> PathBuf {
    repo_root().join("media/demo").join(name)
}

/// The `kino` binary under test, with loopback-only global flags: no DHT, no LSD, peers on
/// 127.0.0.1, a private data folder and no user config.
pub fn kino(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.arg("--data-dir")
        .arg(data_dir)
        .args(["--no-dht", "--no-lsd", "--bind", "127.0.0.1"])
        // No user config: the default config path (under XDG_CONFIG_HOME) does not exist.
        .env("XDG_CONFIG_HOME", data_dir.join("config-home"))
        .env_remove("KINO_CONFIG")
        .env_remove("KINO_DATA_DIR")
        .env("KINO_LOG", "warn,kino=info,kino_engine=debug");
    c
}

/// Same as [`kino`], but with the config file pointing at a missing file is an error for an
/// explicit path; so instead write an empty config.
pub fn kino_with_empty_config(data_dir: &Path) -> anyhow::Result<Command> {
    std::fs::create_dir_all(data_dir)?;
    let cfg = data_dir.join("config.toml");
    std::fs::write(&cfg, "")?;
    let mut c = kino(data_dir);
    c.env("KINO_CONFIG", cfg);
    Ok(c)
}

/// A running `kino` process whose stdout lines arrive on a channel; killed on drop.
pub struct KinoProcess {
    pub child: Child,
    lines: Receiver<String>,
}

impl KinoProcess {
    /// Spawns the command with stdout piped (stderr goes to the test's stderr).
    pub fn spawn(mut cmd: Command) -> anyhow::Result<KinoProcess> {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().context("spawning kino")?;
        let stdout: ChildStdout = child.stdout.take().context("no stdout")?;
        // Unbounded on purpose: the reader thread must never stop draining the child's stdout,
        // or a test that reads only the first lines would block the process it watches.
        #[allow(clippy::disallowed_methods)]
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(KinoProcess { child, lines: rx })
    }

    /// Waits (bounded) for a stdout line satisfying `pred`.
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                bail!("no matching line from kino within {timeout:?}");
            }
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => continue,
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        bail!("kino exited with {status} before printing the expected line");
                    }
                }
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        bail!("kino did not exit within 15 s of SIGTERM")
    }

    /// Kills with SIGKILL (no cleanup at all) and reaps.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for KinoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `listening on ADDR` from `kino seed` output into a loopback address.
pub fn parse_listen_line(line: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .context("not a listening line")?
        .trim()
        .parse()?;
    Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()))
}

/// The python3-libtorrent interop peer script; fails with a clear message when the Debian
/// package is missing.
pub fn lt_peer() -> anyhow::Result<Command> {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!(
            "python3-libtorrent is not installed under /usr/bin/python3: run scripts/install-test-deps"
        );
    }
    let mut c = Command::new("/usr/bin/python3");
    c.arg(repo_root().join("tests/interop/lt_peer.py"));
    Ok(c)
}

/// An in-process engine on 127.0.0.1 with its own data folder (no DHT, no LSD).
pub async fn engine(
    dir: &Path,
    tweak: impl FnOnce(&mut kino_engine::EngineConfig),
) -> anyhow::Result<kino_engine::Engine> {
    let mut cfg = kino_engine::EngineConfig::new(dir.to_path_buf());
    cfg.listen = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0));
    cfg.dht = false;
    cfg.local_discovery = false;
    cfg.metadata_timeout = Duration::from_secs(30);
    tweak(&mut cfg);
    std::fs::create_dir_all(dir)?;
    let store = Arc::new(kino_store::Store::open(&dir.join("kino.sqlite3"))?);
    Ok(kino_engine::Engine::start(cfg, store).await?)
}

/// The loopback address an engine listens on.
pub fn engine_addr(e: &kino_engine::Engine) -> anyhow::Result<SocketAddr> {
    let a = e.listen_addr().context("engine is not listening")?;
    Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port()))
}

/// Stops an engine and asserts that no background task outlived it.
pub async fn shutdown_checked(e: kino_engine::Engine) -> anyhow::Result<()> {
    e.shutdown().await;
    anyhow::ensure!(
        e.task_count() == 0,
        "{} engine tasks outlived shutdown",
        e.task_count()
    );
    Ok(())
}

/// The `kino` binary with the DHT on, bootstrapped only from `bootstrap` (a loopback testnet;
/// an empty list is only for `kino dht testnet` starting a new network): no LSD, peers on
/// 127.0.0.1, a private data folder and an empty config file.
pub fn kino_dht(data_dir: &Path, bootstrap: &[&str]) -> anyhow::Result<Command> {
    std::fs::create_dir_all(data_dir)?;
    let cfg = data_dir.join("config.toml");
    if !cfg.exists() {
        std::fs::write(&cfg, "")?;
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.arg("--data-dir")
        .arg(data_dir)
        .args(["--no-lsd", "--bind", "127.0.0.1"])
        .env("KINO_CONFIG", cfg)
        .env_remove("KINO_DATA_DIR")
        .env("KINO_LOG", "warn,kino=info");
    for b in bootstrap {
        c.args(["--dht-bootstrap", b]);
    }
    Ok(c)
}
