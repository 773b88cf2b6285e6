//! Updates end to end: a release published by one `kino` process (`kino release publish`:
//! TUF repository as a torrent, pointer under the timestamp key on a loopback DHT testnet)
//! reaches another `kino` process, a *copy* of the test binary in a temp folder, which applies
//! it to itself (`kino update apply`): the swapped-in file runs and reports the new version,
//! the previous binary is kept and `kino update rollback` restores it.
//!
//! What this proves: discovery over the DHT, download from the swarm, tough's verification
//! with a root given through `KINO_UPDATE_ROOT`, and the atomic self-replacement. The "new
//! version" is a tiny shell script printing `kino 0.2.0` (not a rebuilt Kino): it shows that
//! exactly the signed bytes were installed and run. The attacks are tested in kino-update.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use common::{KinoProcess, kino_dht};

const LIMIT: Duration = Duration::from_secs(120);

fn free_udp_port() -> anyhow::Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

fn run_ok(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    cmd.stdin(std::process::Stdio::null());
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {what}"))?;
    for _ in 0..(LIMIT.as_millis() / 100) {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait()?.is_none() {
        child.kill()?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{what} failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

fn kino_at(bin: &Path, data: &Path, bootstrap: &str) -> anyhow::Result<Command> {
    let base = kino_dht(data, &[bootstrap])?;
    let mut c = Command::new(bin);
    c.args(base.get_args());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    Ok(c)
}

#[test]
fn update_published_by_one_kino_is_applied_by_another() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    // Loopback DHT testnet.
    let port = free_udp_port()?;
    let mut cmd = kino_dht(&root.join("testnet"), &[])?;
    cmd.args([
        "dht",
        "testnet",
        "--nodes",
        "20",
        "--port",
        &port.to_string(),
    ]);
    let mut net = KinoProcess::spawn(cmd)?;
    let bootstrap = net
        .wait_line(LIMIT, |l| l.starts_with("127.0.0.1:"))?
        .trim()
        .to_owned();

    // Release manager: keys, root, publication.
    let rm = root.join("release");
    let repo = rm.join("repo");
    for k in ["root.der", "online.der"] {
        let mut c = kino_dht(&rm, &[])?;
        c.args(["release", "keygen", "-o"]).arg(rm.join(k));
        run_ok(c, "kino release keygen")?;
    }
    let mut c = kino_dht(&rm, &[])?;
    c.args(["release", "init", "--repo"])
        .arg(&repo)
        .arg("--key")
        .arg(rm.join("root.der"))
        .args(["--threshold", "1", "--online-key"])
        .arg(rm.join("online.der"));
    run_ok(c, "kino release init")?;
    let artifact = rm.join("kino-new");
    std::fs::write(&artifact, "#!/bin/sh\necho kino 0.2.0\n")?;
    let mut c = kino_dht(&rm, &[&bootstrap])?;
    c.args(["release", "publish", "--repo"])
        .arg(&repo)
        .arg("--key")
        .arg(rm.join("root.der"))
        .arg("--key")
        .arg(rm.join("online.der"))
        .args(["--release-version", "0.2.0"])
        .arg(&artifact);
    let mut publisher = KinoProcess::spawn(c)?;
    publisher
        .wait_line(LIMIT, |l| l.starts_with("published update torrent"))
        .context("the release was not published")?;

    // The user: a copy of this build's kino, trusting the repository's first root.
    let bin_dir = root.join("user-bin");
    std::fs::create_dir_all(&bin_dir)?;
    let bin = bin_dir.join("kino");
    std::fs::copy(env!("CARGO_BIN_EXE_kino"), &bin)?;
    let user = root.join("user");
    let trusted = repo.join("metadata/1.root.json");
    let mut check = kino_at(&bin, &user, &bootstrap)?;
    check
        .env("KINO_UPDATE_ROOT", &trusted)
        .args(["update", "check"]);
    let out = run_ok(check, "kino update check")?;
    ensure!(
        out.contains("verified update available: kino 0.2.0"),
        "{out}"
    );
    ensure!(out.contains("trusted because"), "{out}");
    ensure!(
        std::fs::read(&bin)? == std::fs::read(env!("CARGO_BIN_EXE_kino"))?,
        "check changed the binary"
    );

    // The running app (another user, its own data folder) checks at start and reports it, and
    // the web app's /api/info carries the same message.
    let mut app = kino_at(
        env!("CARGO_BIN_EXE_kino").as_ref(),
        &root.join("app-user"),
        &bootstrap,
    )?;
    app.env("KINO_UPDATE_ROOT", &trusted);
    let mut app = KinoProcess::spawn(app)?;
    let line = app
        .wait_line(LIMIT, |l| l.starts_with("verified update available"))
        .context("the running app did not report the update")?;
    ensure!(line.contains("kino 0.2.0"), "{line}");
    app.terminate()?;

    let mut apply = kino_at(&bin, &user, &bootstrap)?;
    apply
        .env("KINO_UPDATE_ROOT", &trusted)
        .args(["update", "apply"]);
    let out = run_ok(apply, "kino update apply")?;
    ensure!(out.contains("installed kino 0.2.0"), "{out}");

    // The new binary runs and reports its version; the previous one is kept.
    let out = run_ok(Command::new(&bin), "the new binary")?;
    ensure!(out.trim() == "kino 0.2.0", "{out}");
    let previous = bin_dir.join("kino.previous");
    let out = run_ok(
        {
            let mut c = Command::new(&previous);
            c.arg("--version");
            c
        },
        "the previous binary",
    )?;
    ensure!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");

    // Rollback with the kept binary.
    let mut rb = Command::new(&previous);
    rb.args(["update", "rollback", "--binary"]).arg(&bin);
    run_ok(rb, "kino update rollback")?;
    ensure!(
        std::fs::read(&bin)? == std::fs::read(env!("CARGO_BIN_EXE_kino"))?,
        "rollback did not restore"
    );

    publisher.terminate()?;
    net.terminate()?;
    Ok(())
}
