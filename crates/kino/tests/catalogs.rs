//! Catalogs end to end, over a loopback DHT testnet (`kino dht testnet`) and real `kino`
//! processes: publish, subscribe, search, update, a catalog outliving its publisher and its
//! DHT nodes, and the refusals (forged, oversized, malformed, rollback, seq reuse).
//!
//! Every process binds 127.0.0.1 and bootstraps only from a testnet started here. The tests
//! share one lock: each starts a testnet and a handful of engines, and they are heavy enough
//! that running them side by side only makes each slower.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::{KinoProcess, kino_dht};
use kino_catalog::library;
use kino_catalog::sync::{CatalogSync, SyncError};
use kino_catalog::{CatalogSignature, PublisherSecretKey, sign_catalog_dir};
use kino_dht::{DhtConfig, LocalTestnet, PointerDht};
use kino_engine::Engine;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const PUBLISHER_NAME: &str = "Kino Test Publisher";
/// Bound on one `kino subscribe`/`refresh` (resolve ≤ 15 s, peer lookup 5 s, download).
const SYNC_LIMIT: Duration = Duration::from_secs(150);
/// Bound on a read-only command (`catalogs`, `search`, `keygen`).
const QUICK_LIMIT: Duration = Duration::from_secs(30);
/// Bound on a process printing its first line (testnet address, publish result, app banner).
const START_LIMIT: Duration = Duration::from_secs(90);

fn sample_dir() -> PathBuf {
    common::repo_root().join("crates/kino-catalog/tests/fixtures/sample")
}

/// Copies the sample catalog folder to `to`.
fn copy_sample(to: &Path) -> anyhow::Result<()> {
    fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_dir(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }
    copy_dir(&sample_dir(), to)
}

/// Edits catalog.json in `dir` by plain text replacement (each `from` must occur).
fn edit_catalog(dir: &Path, edits: &[(&str, &str)]) -> anyhow::Result<()> {
    let path = dir.join("catalog.json");
    let mut text = std::fs::read_to_string(&path)?;
    for (from, to) in edits {
        ensure!(text.contains(from), "catalog.json has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// A UDP port that was free a moment ago on 127.0.0.1.
fn free_udp_port() -> anyhow::Result<u16> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(s.local_addr()?.port())
}

/// A finished process.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A process whose output is collected, waited for with a bound.
struct Running {
    what: String,
    child: std::process::Child,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

impl Running {
    fn spawn(mut cmd: Command, what: &str) -> anyhow::Result<Running> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("spawning {what}"))?;
        let mut so = child.stdout.take().context("no stdout")?;
        let mut se = child.stderr.take().context("no stderr")?;
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = so.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = se.read_to_string(&mut s);
            s
        });
        Ok(Running {
            what: what.to_owned(),
            child,
            out,
            err,
        })
    }

    /// Waits at most `limit`; a process still running then is killed and reported.
    fn finish(mut self, limit: Duration) -> anyhow::Result<Finished> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break Some(s);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = self.out.join().unwrap_or_default();
        let stderr = self.err.join().unwrap_or_default();
        let Some(status) = status else {
            bail!(
                "{} did not finish within {limit:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
                self.what
            );
        };
        Ok(Finished {
            code: status.code(),
            stdout,
            stderr,
        })
    }
}

fn run(cmd: Command, what: &str, limit: Duration) -> anyhow::Result<Finished> {
    Running::spawn(cmd, what)?.finish(limit)
}

/// `kino dht testnet` in the foreground, on a port picked here.
struct Testnet {
    proc: KinoProcess,
    addr: String,
}

impl Testnet {
    fn start(dir: &Path, nodes: usize, join: Option<&str>) -> anyhow::Result<Testnet> {
        let port = free_udp_port()?;
        let bootstrap: Vec<&str> = join.into_iter().collect();
        let mut cmd = kino_dht(dir, &bootstrap)?;
        cmd.args(["dht", "testnet", "--nodes", &nodes.to_string()])
            .args(["--port", &port.to_string()]);
        let mut proc = KinoProcess::spawn(cmd)?;
        let line = proc
            .wait_line(START_LIMIT, |l| l.starts_with("127.0.0.1:"))
            .context("the testnet did not print its address")?;
        let addr = line.trim().to_owned();
        ensure!(
            addr == format!("127.0.0.1:{port}"),
            "testnet address {addr}, asked for port {port}"
        );
        Ok(Testnet { proc, addr })
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let code = self.proc.terminate()?;
        ensure!(code == Some(0), "testnet exited with {code:?}");
        Ok(())
    }
}

/// Runs `kino keygen -o FILE` and returns the address it prints.
fn keygen(scratch: &Path, file: &Path) -> anyhow::Result<String> {
    let mut cmd = kino_dht(scratch, &[])?;
    cmd.arg("keygen").arg("-o").arg(file);
    let out = run(cmd, "kino keygen", QUICK_LIMIT)?;
    ensure!(out.ok(), "keygen failed: {out}");
    let address = out.stdout.trim().to_owned();
    ensure!(address.starts_with("kino:"), "keygen printed {address:?}");
    Ok(address)
}

/// `kino publish` running in the background, once it printed `published seq S`.
fn start_publisher(
    data: &Path,
    bootstrap: &str,
    key: &Path,
    dir: &Path,
    seq: u64,
) -> anyhow::Result<KinoProcess> {
    let mut cmd = kino_dht(data, &[bootstrap])?;
    cmd.arg("publish").arg("--key").arg(key).arg(dir);
    let mut p = KinoProcess::spawn(cmd)?;
    let line = p
        .wait_line(START_LIMIT, |l| l.starts_with("published seq"))
        .context("kino publish did not report a publication")?;
    ensure!(
        line.starts_with(&format!("published seq {seq} (2 titles), catalog torrent ")),
        "unexpected publish line {line:?}"
    );
    Ok(p)
}

/// `kino` with no subcommand (the app), refreshing every 3 s, once it printed its banner.
fn start_app(data: &Path, bootstrap: &str) -> anyhow::Result<KinoProcess> {
    let mut cmd = kino_dht(data, &[bootstrap])?;
    // The DHT puts and resolves show on stderr, to diagnose a failure.
    cmd.args(["--refresh-interval", "3"])
        .env("KINO_LOG", "warn,kino=info,kino_dht=debug");
    let mut p = KinoProcess::spawn(cmd)?;
    p.wait_line(START_LIMIT, |l| l.starts_with("Kino is running"))
        .context("the app did not start")?;
    Ok(p)
}

fn subscribe_cmd(data: &Path, bootstrap: &str, address: &str) -> anyhow::Result<Command> {
    let mut cmd = kino_dht(data, &[bootstrap])?;
    cmd.args(["subscribe", address]);
    Ok(cmd)
}

fn subscribe(data: &Path, bootstrap: &str, address: &str) -> anyhow::Result<Finished> {
    run(
        subscribe_cmd(data, bootstrap, address)?,
        "kino subscribe",
        SYNC_LIMIT,
    )
}

fn refresh(data: &Path, bootstrap: &str) -> anyhow::Result<Finished> {
    let mut cmd = kino_dht(data, &[bootstrap])?;
    cmd.arg("refresh");
    run(cmd, "kino refresh", SYNC_LIMIT)
}

/// Asserts a successful subscribe/refresh that indexed `seq`.
fn assert_indexed(out: &Finished, address: &str, seq: u64) {
    let want = format!("{address}: {PUBLISHER_NAME}: 2 titles (seq {seq})");
    assert!(
        out.ok() && out.stdout.lines().any(|l| l == want),
        "expected {want:?}: {out}"
    );
}

/// `kino search WORDS [--genre G]` in a data folder: the titles found (first column).
fn search(data: &Path, words: &[&str], genre: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut cmd = kino_dht(data, &[])?;
    cmd.arg("search").args(words);
    if let Some(g) = genre {
        cmd.args(["--genre", g]);
    }
    let out = run(cmd, "kino search", QUICK_LIMIT)?;
    ensure!(out.ok(), "search failed: {out}");
    if out.stdout.trim() == "no titles found" {
        return Ok(Vec::new());
    }
    Ok(out
        .stdout
        .lines()
        .map(|l| {
            // "Title (year)  [genres]  id  — publisher  licence L"
            let t = l.split("  ").next().unwrap_or(l);
            t.strip_suffix(" (2026)").unwrap_or(t).to_owned()
        })
        .collect())
}

/// One row of `kino catalogs`.
#[derive(Debug)]
struct Row {
    name_fetched: bool,
    titles: u32,
    seq: Option<u64>,
    line: String,
}

fn catalogs_row(data: &Path, address: &str) -> anyhow::Result<Row> {
    let mut cmd = kino_dht(data, &[])?;
    cmd.arg("catalogs");
    let out = run(cmd, "kino catalogs", QUICK_LIMIT)?;
    ensure!(out.ok(), "catalogs failed: {out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(address))
        .with_context(|| format!("no row for {address}: {out}"))?
        .to_owned();
    let rest = line[address.len()..].trim_start();
    let (name_fetched, rest) = if let Some(r) = rest.strip_prefix(PUBLISHER_NAME) {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("(not fetched yet)") {
        (false, r)
    } else {
        bail!("unexpected catalogs row {line:?}");
    };
    let mut cols = rest.split_whitespace();
    let titles = cols.next().context("no titles column")?.parse()?;
    let seq = match cols.next().context("no seq column")? {
        "-" => None,
        s => Some(s.parse()?),
    };
    Ok(Row {
        name_fetched,
        titles,
        seq,
        line,
    })
}

/// Polls `kino catalogs` (bounded) until the row for `address` shows `seq`.
fn wait_for_seq(data: &Path, address: &str, seq: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        let row = catalogs_row(data, address)?;
        if row.seq == Some(seq) {
            return Ok(());
        }
        last = Some(row);
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("seq {seq} not held within {limit:?}; last row: {last:?}")
}

/// Publish, subscribe twice, search, genre filter, then an update reaches both subscribers:
/// one through the running app's periodic refresh, one through `kino refresh`.
#[test]
fn publish_subscribe_search_update() -> anyhow::Result<()> {
    let _serial = serial();
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let mut net = Testnet::start(&root.join("testnet"), 30, None)?;
    let bs = net.addr.clone();

    let key = root.join("publisher.key");
    let address = keygen(&root.join("scratch"), &key)?;
    let folder = root.join("catalog");
    copy_sample(&folder)?;
    let pub_data = root.join("publisher");
    let mut publisher = start_publisher(&pub_data, &bs, &key, &folder, 5)?;

    let (s1, s2) = (root.join("s1"), root.join("s2"));
    let a = Running::spawn(subscribe_cmd(&s1, &bs, &address)?, "subscribe s1")?;
    let b = Running::spawn(subscribe_cmd(&s2, &bs, &address)?, "subscribe s2")?;
    let (a, b) = (a.finish(SYNC_LIMIT)?, b.finish(SYNC_LIMIT)?);
    assert_indexed(&a, &address, 5);
    assert_indexed(&b, &address, 5);

    for s in [&s1, &s2] {
        assert_eq!(search(s, &["pattern"], None)?, ["Test Pattern"]);
        assert_eq!(search(s, &["tone"], None)?, ["A Tone"]);
        // The genre filters: "Test Pattern" is test and abstract, "A Tone" has no genre.
        assert_eq!(search(s, &["pattern"], Some("abstract"))?, ["Test Pattern"]);
        assert!(search(s, &["pattern"], Some("drama"))?.is_empty());
        assert!(search(s, &["tone"], Some("test"))?.is_empty());
        assert!(search(s, &["remastered"], None)?.is_empty());
        let row = catalogs_row(s, &address)?;
        assert!(
            row.name_fetched && row.titles == 2 && row.seq == Some(5),
            "{row:?}"
        );
    }

    // The publisher moves to seq 6 with a changed title.
    assert_eq!(
        publisher.terminate()?,
        Some(0),
        "publish should stop cleanly"
    );
    edit_catalog(
        &folder,
        &[
            ("\"seq\": 5", "\"seq\": 6"),
            (
                "\"title\": \"Test Pattern\"",
                "\"title\": \"Test Pattern Remastered\"",
            ),
        ],
    )?;
    let mut publisher = start_publisher(&pub_data, &bs, &key, &folder, 6)?;

    // Subscriber 1 runs as the app and picks it up by itself; `catalogs` and `search` only
    // read the database, so they run next to it.
    let mut app = start_app(&s1, &bs)?;
    wait_for_seq(&s1, &address, 6, Duration::from_secs(120))?;
    assert_eq!(
        search(&s1, &["remastered"], None)?,
        ["Test Pattern Remastered"]
    );
    assert_eq!(
        search(&s1, &["pattern"], Some("abstract"))?,
        ["Test Pattern Remastered"]
    );

    // Subscriber 2 refreshes by hand.
    let r = refresh(&s2, &bs)?;
    assert_indexed(&r, &address, 6);
    assert_eq!(
        search(&s2, &["remastered"], None)?,
        ["Test Pattern Remastered"]
    );
    assert_eq!(catalogs_row(&s2, &address)?.seq, Some(6));
    // A second refresh finds nothing new.
    let r = refresh(&s2, &bs)?;
    assert!(
        r.ok() && r.stdout.contains(&format!("{address}: up to date (seq 6)")),
        "{r}"
    );

    assert_eq!(app.terminate()?, Some(0), "the app should stop cleanly");
    assert_eq!(publisher.terminate()?, Some(0));
    net.stop()?;
    Ok(())
}

/// Waits (bounded) for the app to print `ADDRESS: up to date (seq S)` `times` times: each is a
/// refresh that found the held catalog current, made sure its torrent is seeding and announced
/// this node as its peer.
fn wait_up_to_date(
    app: &mut KinoProcess,
    address: &str,
    seq: u64,
    times: usize,
) -> anyhow::Result<()> {
    let want = format!("{address}: up to date (seq {seq})");
    for _ in 0..times {
        app.wait_line(START_LIMIT, |l| l == want)
            .with_context(|| format!("the app never printed {want:?}"))?;
    }
    Ok(())
}

/// Subscribes with bounded retries: right after DHT nodes were replaced, the item and the
/// peers reach the new nodes only with the subscribers' next republish/announce.
fn subscribe_eventually(
    data: &Path,
    bootstrap: &str,
    address: &str,
    attempts: usize,
) -> anyhow::Result<Finished> {
    let mut last = None;
    for _ in 0..attempts {
        let out = subscribe(data, bootstrap, address)?;
        if out.ok() {
            return Ok(out);
        }
        eprintln!("subscribe attempt failed (retrying): {out}");
        last = Some(out);
    }
    bail!(
        "no successful subscribe in {attempts} attempts; last: {}",
        last.map(|o| o.to_string()).unwrap_or_default()
    )
}

/// Subscribers keep a catalog alive: once they run as apps, the publisher can die (kill -9)
/// and a new subscriber still gets the catalog from them; then even the DHT nodes that stored
/// the publisher's item can all be replaced, and the subscribers' republished copy of the
/// signed item still leads a fourth subscriber, bootstrapped only from the new nodes, to it.
#[test]
fn catalog_survives_its_publisher() -> anyhow::Result<()> {
    let _serial = serial();
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let mut net_a = Testnet::start(&root.join("testnet-a"), 30, None)?;
    let bs_a = net_a.addr.clone();

    let key = root.join("publisher.key");
    let address = keygen(&root.join("scratch"), &key)?;
    let folder = root.join("catalog");
    copy_sample(&folder)?;
    let mut publisher = start_publisher(&root.join("publisher"), &bs_a, &key, &folder, 5)?;

    let (s1, s2, s3, s4) = (
        root.join("s1"),
        root.join("s2"),
        root.join("s3"),
        root.join("s4"),
    );
    let a = Running::spawn(subscribe_cmd(&s1, &bs_a, &address)?, "subscribe s1")?;
    let b = Running::spawn(subscribe_cmd(&s2, &bs_a, &address)?, "subscribe s2")?;
    assert_indexed(&a.finish(SYNC_LIMIT)?, &address, 5);
    assert_indexed(&b.finish(SYNC_LIMIT)?, &address, 5);

    // Both run as apps: they seed the catalog torrent and announce themselves as its peers.
    let mut app1 = start_app(&s1, &bs_a)?;
    let mut app2 = start_app(&s2, &bs_a)?;
    wait_up_to_date(&mut app1, &address, 5, 1)?;
    wait_up_to_date(&mut app2, &address, 5, 1)?;

    // The publisher dies without any cleanup; subscriber 3 gets the catalog from 1 and 2.
    publisher.kill9()?;
    let out = subscribe(&s3, &bs_a, &address)?;
    assert_indexed(&out, &address, 5);
    assert_eq!(search(&s3, &["pattern"], None)?, ["Test Pattern"]);

    // New DHT nodes join; the apps restart bootstrapped from them only (the app republishes
    // its held items at start, and announces at every refresh); then every old node stops.
    let mut net_b = Testnet::start(&root.join("testnet-b"), 30, Some(&bs_a))?;
    let bs_b = net_b.addr.clone();
    assert_eq!(app1.terminate()?, Some(0));
    assert_eq!(app2.terminate()?, Some(0));
    let mut app1 = start_app(&s1, &bs_b)?;
    let mut app2 = start_app(&s2, &bs_b)?;
    // Two refreshes each: the start-up republish has run by then (one loop, one task at a time).
    wait_up_to_date(&mut app1, &address, 5, 2)?;
    wait_up_to_date(&mut app2, &address, 5, 2)?;
    net_a.stop()?;

    // Subscriber 4 knows only the new nodes. The item put while both networks were up is
    // sometimes not found once the old nodes are gone ("no catalog found", 2 runs in 4): the
    // joined testnet is poorly connected on its own (a put after the old nodes stopped
    // reported stored_at=1, against 20-37 before). Then the apps' next republish puts the item
    // on the surviving nodes: restarting them triggers it now instead of in 50 minutes.
    let first = subscribe(&s4, &bs_b, &address)?;
    let out = if first.ok() {
        first
    } else {
        eprintln!("subscriber 4 failed before the apps republished again: {first}");
        assert_eq!(app1.terminate()?, Some(0));
        assert_eq!(app2.terminate()?, Some(0));
        app1 = start_app(&s1, &bs_b)?;
        app2 = start_app(&s2, &bs_b)?;
        wait_up_to_date(&mut app1, &address, 5, 2)?;
        wait_up_to_date(&mut app2, &address, 5, 2)?;
        subscribe_eventually(&s4, &bs_b, &address, 3)?
    };
    assert_indexed(&out, &address, 5);
    assert_eq!(search(&s4, &["pattern"], None)?, ["Test Pattern"]);
    let row = catalogs_row(&s4, &address)?;
    assert!(row.name_fetched && row.seq == Some(5), "{row:?}");

    assert_eq!(app1.terminate()?, Some(0));
    assert_eq!(app2.terminate()?, Some(0));
    net_b.stop()?;
    Ok(())
}

/// Seeds hand-made catalog folders and puts their pointers, in this process, through the
/// library crates: what an attacker (or a buggy publisher) can do without `kino publish`.
struct Stager {
    rt: tokio::runtime::Runtime,
    engine: Engine,
}

impl Stager {
    fn new(dir: &Path) -> anyhow::Result<Stager> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let engine = rt.block_on(common::engine(dir, |_| {}))?;
        Ok(Stager { rt, engine })
    }

    /// A DHT client on 127.0.0.1 bootstrapped from `bootstrap` (its own pointer cache).
    fn dht(&self, bootstrap: &str) -> anyhow::Result<PointerDht> {
        let _rt = self.rt.enter();
        Ok(PointerDht::new(DhtConfig::loopback(&[
            bootstrap.to_owned()
        ]))?)
    }

    /// Seeds `folder` as a torrent, puts a pointer to it signed by `key` with `seq`, and
    /// announces the seeding engine as its peer. Returns the torrent's infohash.
    fn stage(
        &self,
        dht: &PointerDht,
        key: &PublisherSecretKey,
        folder: &Path,
        seq: i64,
    ) -> anyhow::Result<[u8; 20]> {
        self.rt.block_on(async {
            let created = kino_engine::create::create_torrent(folder, None, |_, _| {})?;
            let ih = created.info.infohash;
            tokio::time::timeout(Duration::from_secs(60), self.engine.seed_created(&created))
                .await
                .context("seeding did not start within 60 s")??;
            put_pointer(dht, key, ih.0, seq).await?;
            let port = common::engine_addr(&self.engine)?.port();
            dht.announce_peer(ih.0, port).await?;
            Ok(ih.0)
        })
    }

    /// Puts a pointer to `infohash` signed by `key` with `seq`, and nothing else: the
    /// publisher's own key signs it, so it is as genuine as one `kino publish` puts.
    fn put_pointer(
        &self,
        dht: &PointerDht,
        key: &PublisherSecretKey,
        infohash: [u8; 20],
        seq: i64,
    ) -> anyhow::Result<()> {
        self.rt.block_on(put_pointer(dht, key, infohash, seq))
    }

    fn shutdown(self) -> anyhow::Result<()> {
        self.rt.block_on(common::shutdown_checked(self.engine))
    }
}

async fn put_pointer(
    dht: &PointerDht,
    key: &PublisherSecretKey,
    infohash: [u8; 20],
    seq: i64,
) -> anyhow::Result<()> {
    let put = dht
        .publish(key.signing_key(), None, infohash, seq, None)
        .await?;
    ensure!(put.stored_at > 0, "no DHT node stored the pointer");
    Ok(())
}

/// A copy of the sample folder, with catalog.json edited, signed by `key` with the library.
fn signed_sample(
    to: &Path,
    key: &PublisherSecretKey,
    edits: &[(&str, &str)],
) -> anyhow::Result<()> {
    copy_sample(to)?;
    edit_catalog(to, edits)?;
    sign_catalog_dir(to, key)?;
    Ok(())
}

/// Writes catalog.sig for whatever bytes catalog.json holds, bypassing every check of
/// `sign_catalog_dir`: only a subscriber's checks stand in the way.
fn sign_raw(dir: &Path, key: &PublisherSecretKey) -> anyhow::Result<()> {
    let bytes = std::fs::read(dir.join("catalog.json"))?;
    let sig = CatalogSignature::sign(&bytes, key);
    std::fs::write(dir.join("catalog.sig"), sig.to_file_contents())?;
    Ok(())
}

/// A refused first subscribe: exit 1, the problem named on stderr and as the subscription's
/// last error, nothing indexed and no catalog folder left.
fn assert_refused_subscribe(
    case: &str,
    data: &Path,
    key: &PublisherSecretKey,
    out: &Finished,
    expect: &[&str],
) -> anyhow::Result<()> {
    let address = key.public_key().address();
    assert_eq!(out.code, Some(1), "{case}: subscribe should fail: {out}");
    for e in expect {
        assert!(out.stderr.contains(e), "{case}: stderr lacks {e:?}: {out}");
    }
    for words in [&["pattern"][..], &["tone"], &["tampered"]] {
        let hits = search(data, words, None)?;
        assert!(hits.is_empty(), "{case}: {words:?} found {hits:?}");
    }
    let row = catalogs_row(data, &address)?;
    assert!(
        !row.name_fetched && row.seq.is_none() && row.titles == 0,
        "{case}: {row:?}"
    );
    for e in expect {
        assert!(
            row.line.contains(e),
            "{case}: last error lacks {e:?}: {row:?}"
        );
    }
    let held = data.join("catalogs").join(key.public_key().to_hex());
    let left: Vec<_> = match std::fs::read_dir(&held) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(
        left.is_empty(),
        "{case}: a refused catalog stayed on disk: {left:?}"
    );
    Ok(())
}

/// Every refusal, staged honestly through the library crates: a catalog.json altered after
/// signing, a catalog.sig made by another key, a flipped signature byte, catalog.json over
/// 4 MiB, a poster over 1 MiB, a malformed stream infohash, a pointer whose seq is not the
/// catalog's; then, against a held seq 6, a rollback to seq 4 and seq 6 reused for other
/// content. Each fails with an error naming the problem and indexes nothing.
#[test]
fn refusals_index_nothing() -> anyhow::Result<()> {
    let _serial = serial();
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let mut net = Testnet::start(&root.join("testnet"), 30, None)?;
    let bs = net.addr.clone();
    let stager = Stager::new(&root.join("stager"))?;
    let dht = stager.dht(&bs)?;
    let staged = root.join("staged");

    struct Case {
        name: &'static str,
        key: PublisherSecretKey,
        expect: Vec<String>,
    }
    let mut cases = Vec::new();
    let mut case = |name: &'static str,
                    seq: i64,
                    make: &dyn Fn(&Path, &PublisherSecretKey) -> anyhow::Result<()>,
                    expect: &dyn Fn(&PublisherSecretKey) -> Vec<String>|
     -> anyhow::Result<()> {
        let key = PublisherSecretKey::generate()?;
        let dir = staged.join(name);
        make(&dir, &key).with_context(|| format!("making case {name}"))?;
        stager
            .stage(&dht, &key, &dir, seq)
            .with_context(|| format!("staging case {name}"))?;
        let expect = expect(&key);
        cases.push(Case { name, key, expect });
        Ok(())
    };
    let forged = |k: &PublisherSecretKey| {
        vec![format!(
            "catalog signature does not verify under publisher key {}",
            k.public_key().address()
        )]
    };

    case(
        "json-altered-after-signing",
        5,
        &|dir, key| {
            signed_sample(dir, key, &[])?;
            edit_catalog(dir, &[("\"Test Pattern\"", "\"Test Pattern Tampered\"")])
        },
        &forged,
    )?;
    case(
        "signed-by-another-key",
        5,
        &|dir, _key| signed_sample(dir, &PublisherSecretKey::generate()?, &[]),
        &forged,
    )?;
    case(
        "flipped-signature-byte",
        5,
        &|dir, key| {
            signed_sample(dir, key, &[])?;
            let path = dir.join("catalog.sig");
            let mut sig = std::fs::read(&path)?;
            // Still 128 well-formed hex characters, one of them changed.
            sig[10] = if sig[10] == b'0' { b'1' } else { b'0' };
            std::fs::write(&path, sig)?;
            Ok(())
        },
        &forged,
    )?;
    case(
        "catalog-json-over-4-mib",
        5,
        &|dir, key| {
            copy_sample(dir)?;
            let path = dir.join("catalog.json");
            let text = std::fs::read_to_string(&path)?;
            let cut = text.rfind('}').context("no closing brace")?;
            let pad = 4 * 1024 * 1024 + 1 - text.len();
            let big = format!("{}{}{}", &text[..cut], " ".repeat(pad), &text[cut..]);
            std::fs::write(&path, big)?;
            sign_raw(dir, key)
        },
        &|_| vec!["catalog.json is 4194305 bytes, over the cap of 4194304 bytes".into()],
    )?;
    case(
        "poster-over-1-mib",
        5,
        &|dir, key| {
            signed_sample(dir, key, &[])?;
            // Swapped after signing: catalog.sig covers catalog.json only.
            common::write_random(&dir.join("posters/tone.png"), 1024 * 1024 + 1, 7)?;
            Ok(())
        },
        &|_| {
            vec![
                "titles[1].poster (posters/tone.png) is 1048577 bytes, over the cap of 1048576 bytes"
                    .into(),
            ]
        },
    )?;
    case(
        "malformed-stream-infohash",
        5,
        &|dir, key| {
            copy_sample(dir)?;
            edit_catalog(
                dir,
                &[(
                    "0123456789abcdef0123456789abcdef01234567",
                    "0123456789abcdef0123456789abcdef0123456z",
                )],
            )?;
            sign_raw(dir, key)
        },
        &|_| vec!["titles[0].streams[0].infohash".into()],
    )?;
    case(
        "pointer-seq-is-not-the-catalogs",
        9,
        &|dir, key| signed_sample(dir, key, &[]),
        &|_| vec!["the catalog says seq 5 but its DHT pointer says seq 9".into()],
    )?;

    case(
        "unsigned",
        5,
        &|dir, key| {
            signed_sample(dir, key, &[])?;
            std::fs::remove_file(dir.join("catalog.sig"))?;
            Ok(())
        },
        &|_| vec!["unsigned catalog: catalog.sig is missing (sign it with kino publish)".into()],
    )?;
    case(
        "bidi-override-in-a-title",
        5,
        &|dir, key| {
            copy_sample(dir)?;
            edit_catalog(dir, &[("\"Test Pattern\"", "\"Film\u{202E}4pm.exe\"")])?;
            sign_raw(dir, key)
        },
        &|_| {
            vec![
                "titles[0].title: contains the bidirectional control character U+202E \
                 (RIGHT-TO-LEFT OVERRIDE)"
                    .into(),
            ]
        },
    )?;

    // All subscribers at once, each with its own data folder.
    let mut running = Vec::new();
    for c in &cases {
        let data = root.join("sub").join(c.name);
        let cmd = subscribe_cmd(&data, &bs, &c.key.public_key().address())?;
        running.push((data, Running::spawn(cmd, c.name)?));
    }
    for (c, (data, r)) in cases.iter().zip(running) {
        let out = r.finish(SYNC_LIMIT)?;
        let expect: Vec<&str> = c.expect.iter().map(String::as_str).collect();
        assert_refused_subscribe(c.name, &data, &c.key, &out, &expect)?;
    }

    // A subscriber holding seq 6.
    let key = PublisherSecretKey::generate()?;
    let address = key.public_key().address();
    let v6 = staged.join("v6");
    signed_sample(&v6, &key, &[("\"seq\": 5", "\"seq\": 6")])?;
    let v6_ih = stager.stage(&dht, &key, &v6, 6)?;
    let held = root.join("sub").join("held");
    assert_indexed(&subscribe(&held, &bs, &address)?, &address, 6);

    // Nodes the attacker runs (a separate network) serve the publisher's older, genuinely
    // signed seq 4: the refresh refuses it before downloading anything.
    let mut net2 = Testnet::start(&root.join("testnet-2"), 30, None)?;
    let bs2 = net2.addr.clone();
    let dht2 = stager.dht(&bs2)?;
    let v4 = staged.join("v4");
    signed_sample(
        &v4,
        &key,
        &[
            ("\"seq\": 5", "\"seq\": 4"),
            ("\"Test Pattern\"", "\"Old Pattern\""),
        ],
    )?;
    stager.stage(&dht2, &key, &v4, 4)?;
    let out = refresh(&held, &bs2)?;
    assert_eq!(out.code, Some(1), "rollback should fail: {out}");
    let want =
        format!("the DHT offers seq 4 for {address}, below seq 6 already accepted (rollback)");
    assert!(
        out.stderr.contains(&want),
        "rollback: stderr lacks {want:?}: {out}"
    );
    assert!(search(&held, &["old"], None)?.is_empty());
    assert_eq!(search(&held, &["pattern"], None)?, ["Test Pattern"]);
    let row = catalogs_row(&held, &address)?;
    assert!(
        row.seq == Some(6) && row.line.contains("rollback"),
        "{row:?}"
    );

    // The publisher's seq 6 again, with other content (a publisher that forgot to raise seq,
    // or a stolen key): refused, the held catalog kept.
    let v6b = staged.join("v6-other");
    signed_sample(
        &v6b,
        &key,
        &[
            ("\"seq\": 5", "\"seq\": 6"),
            ("\"Test Pattern\"", "\"Imposter Pattern\""),
        ],
    )?;
    stager.stage(&dht2, &key, &v6b, 6)?;
    let out = refresh(&held, &bs2)?;
    assert_eq!(out.code, Some(1), "seq reuse should fail: {out}");
    let want = "seq: catalog seq 6 was already seen with other content";
    assert!(
        out.stderr.contains(want),
        "seq reuse: stderr lacks {want:?}: {out}"
    );
    assert!(search(&held, &["imposter"], None)?.is_empty());
    assert_eq!(search(&held, &["pattern"], None)?, ["Test Pattern"]);
    let row = catalogs_row(&held, &address)?;
    assert!(row.seq == Some(6) && row.line.contains(want), "{row:?}");
    // Of the refused torrent nothing is left; the held folder is all there is.
    let folders = held_folders(&held, &key)?;
    assert_eq!(folders, [hex::encode(v6_ih)], "catalog folders");

    // Back on the honest network, the held catalog is still current.
    let out = refresh(&held, &bs)?;
    assert!(
        out.ok()
            && out
                .stdout
                .contains(&format!("{address}: up to date (seq 6)")),
        "{out}"
    );

    drop((dht, dht2));
    stager.shutdown()?;
    net2.stop()?;
    net.stop()?;
    Ok(())
}

/// The names of the folders under `data/catalogs/<publisher>` (one per catalog torrent kept),
/// sorted; none when that folder does not exist.
fn held_folders(data: &Path, key: &PublisherSecretKey) -> anyhow::Result<Vec<String>> {
    let dir = data.join("catalogs").join(key.public_key().to_hex());
    let mut names = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(rd) => {
            for e in rd {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    names.sort();
    Ok(names)
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
fn tree(dir: &Path) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
            } else {
                out.insert(
                    path.strip_prefix(root)?.to_path_buf(),
                    std::fs::read(&path)?,
                );
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// What a subscriber holds of one publisher's catalog: its database row, its titles, the
/// engine's record of its torrent, and its folder byte for byte.
#[derive(Debug, PartialEq)]
struct HeldState {
    catalog: library::HeldCatalog,
    titles: Vec<library::TitleHit>,
    /// The engine's record of the torrent, but its transfer counters.
    torrent: (String, Vec<u8>, PathBuf, kino_store::TorrentKind, bool),
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl HeldState {
    /// Reads it while no `kino` process runs in `data`.
    fn read(data: &Path, key: &PublisherSecretKey) -> anyhow::Result<HeldState> {
        let store = kino_store::Store::open(&data.join("kino.sqlite3"))?;
        let catalog = library::held(&store, &key.public_key())?.context("no catalog held")?;
        let titles = library::search(&store, "", None, 100)?;
        let t = store
            .torrent(&catalog.infohash)?
            .context("the engine has no record of the held catalog's torrent")?;
        let torrent = (
            t.infohash,
            t.metainfo,
            t.output_dir,
            t.kind,
            t.share_stopped,
        );
        let root = data
            .join("catalogs")
            .join(key.public_key().to_hex())
            .join(&catalog.infohash);
        let files = tree(&root)?;
        ensure!(
            files.keys().any(|p| p.ends_with("catalog.json")),
            "no catalog.json under {}: {:?}",
            root.display(),
            files.keys().collect::<Vec<_>>()
        );
        Ok(HeldState {
            catalog,
            titles,
            torrent,
            files,
        })
    }
}

/// Issue 12, D2: the publisher's genuinely signed pointer says seq 12 but names the torrent
/// of the held seq 11. The refresh refuses it with the reason, and the refusal touches
/// nothing held: the folder is byte-identical, the torrent is still the engine's to seed,
/// the database rows are unchanged (only the subscription's last error says what happened).
#[test]
fn a_refused_update_keeps_the_held_catalog() -> anyhow::Result<()> {
    let _serial = serial();
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let mut net = Testnet::start(&root.join("testnet"), 30, None)?;
    let bs = net.addr.clone();
    let stager = Stager::new(&root.join("stager"))?;
    let dht = stager.dht(&bs)?;

    let key = PublisherSecretKey::generate()?;
    let address = key.public_key().address();
    let v11 = root.join("staged").join("v11");
    signed_sample(&v11, &key, &[("\"seq\": 5", "\"seq\": 11")])?;
    let ih = stager.stage(&dht, &key, &v11, 11)?;
    let held = root.join("held");
    assert_indexed(&subscribe(&held, &bs, &address)?, &address, 11);
    let before = HeldState::read(&held, &key)?;
    assert_eq!(before.catalog.infohash, hex::encode(ih));

    stager.put_pointer(&dht, &key, ih, 12)?;
    let out = refresh(&held, &bs)?;
    assert_eq!(out.code, Some(1), "the refresh should be refused: {out}");
    let want = "refused: the catalog says seq 11 but its DHT pointer says seq 12";
    assert!(out.stderr.contains(want), "stderr lacks {want:?}: {out}");

    let after = HeldState::read(&held, &key)?;
    assert!(
        before.files == after.files,
        "the held folder changed: {:?} -> {:?}",
        before.files.keys().collect::<Vec<_>>(),
        after.files.keys().collect::<Vec<_>>()
    );
    assert_eq!(before, after, "what is held changed");
    assert_eq!(held_folders(&held, &key)?, [hex::encode(ih)]);
    // `kino status` lists it as seeding.
    let mut cmd = kino_dht(&held, &[])?;
    cmd.arg("status");
    let status = run(cmd, "kino status", QUICK_LIMIT)?;
    assert!(
        status.ok()
            && status
                .stdout
                .lines()
                .any(|l| l.starts_with(&hex::encode(ih)) && l.contains(" seed ")),
        "the held catalog is not seeding: {status}"
    );
    assert_eq!(search(&held, &["pattern"], None)?, ["Test Pattern"]);
    let row = catalogs_row(&held, &address)?;
    assert!(row.seq == Some(11) && row.line.contains(want), "{row:?}");

    drop(dht);
    stager.shutdown()?;
    net.stop()?;
    Ok(())
}

/// Issue 12, D10: a catalog magnet whose `tr=` trackers are on loopback and private
/// addresses. With the default config the subscriber stores (and so plays) the magnet
/// without them; with `catalog.allow_local_trackers = true` it keeps them.
#[test]
fn catalog_trackers_on_private_addresses_are_dropped() -> anyhow::Result<()> {
    let _serial = serial();
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let mut net = Testnet::start(&root.join("testnet"), 30, None)?;
    let bs = net.addr.clone();
    let stager = Stager::new(&root.join("stager"))?;
    let dht = stager.dht(&bs)?;

    let key = PublisherSecretKey::generate()?;
    let address = key.public_key().address();
    let plain = "magnet:?xt=urn:btih:89abcdef0123456789abcdef0123456789abcdef\
                 &dn=test-pattern-480p.webm";
    let public = "&tr=udp://tracker.invalid:6969/announce";
    let local = "&tr=udp%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=http://192.168.1.1:8000/a\
                 &tr=http://[::1]/announce&tr=http://localhost:9/a";
    let magnet = format!("{plain}{local}{public}");
    let folder = root.join("staged").join("trackers");
    signed_sample(
        &folder,
        &key,
        &[(&format!("\"{plain}\""), &format!("\"{magnet}\""))],
    )?;
    stager.stage(&dht, &key, &folder, 5)?;

    let stored_magnet = |data: &Path| -> anyhow::Result<String> {
        let store = kino_store::Store::open(&data.join("kino.sqlite3"))?;
        let hits = library::search(&store, "pattern", None, 10)?;
        let hit = hits.first().context("Test Pattern is not indexed")?;
        let title: kino_catalog::Title = serde_json::from_str(&hit.entry_json)?;
        title.streams[1]
            .magnet
            .clone()
            .context("the second stream has no magnet")
    };

    let default = root.join("default");
    let out = subscribe(&default, &bs, &address)?;
    assert_indexed(&out, &address, 5);
    assert_eq!(stored_magnet(&default)?, format!("{plain}{public}"));
    assert!(
        out.stderr.contains(
            "titles[0].streams[1].magnet: dropped the tracker \"udp://127.0.0.1:6969/announce\""
        ),
        "no warning about the dropped tracker: {out}"
    );

    let allowing = root.join("allowing");
    std::fs::create_dir_all(&allowing)?;
    std::fs::write(
        allowing.join("config.toml"),
        "[catalog]\nallow_local_trackers = true\n",
    )?;
    assert_indexed(&subscribe(&allowing, &bs, &address)?, &address, 5);
    assert_eq!(stored_magnet(&allowing)?, magnet);

    drop(dht);
    stager.shutdown()?;
    net.stop()?;
    Ok(())
}

/// Issue 12, D18: a genuinely signed pointer to a torrent nobody seeds (its only announced
/// peer is gone). The download fails and leaves no folder and no torrent record behind.
#[test]
fn a_catalog_without_seeders_leaves_no_folder() -> anyhow::Result<()> {
    let _serial = serial();
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("viewer");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let testnet = LocalTestnet::start(16)?;
        let engine = common::engine(&data, |c| c.metadata_timeout = Duration::from_secs(3)).await?;
        let key = PublisherSecretKey::generate()?;
        let nobody_seeds = [0x5a; 20];
        let publisher = PointerDht::new(testnet.client_config())?;
        put_pointer(&publisher, &key, nobody_seeds, 1).await?;
        // A peer that went away: the DHT still lists it, nothing answers on its port.
        let gone = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        publisher.announce_peer(nobody_seeds, gone).await?;

        let sync = CatalogSync::new(
            engine.clone(),
            PointerDht::new(testnet.client_config())?,
            engine.store().clone(),
            &data,
        );
        library::subscribe(engine.store(), &key.public_key(), None)?;
        // The engine has no DHT of its own here, so it gives up once the announced peer
        // failed, instead of at the metadata timeout: the same failed download either way.
        match sync.refresh(&key.public_key(), None).await {
            Ok(r) => bail!("a catalog nobody seeds was fetched: {r:?}"),
            Err(SyncError::Engine(e)) => eprintln!("refresh failed as expected: {e}"),
            Err(e) => bail!("the refresh failed, but not for want of a seeder: {e}"),
        }
        assert_eq!(held_folders(&data, &key)?, Vec::<String>::new());
        assert!(
            !data
                .join("catalogs")
                .join(key.public_key().to_hex())
                .exists(),
            "the publisher's empty catalog folder was left behind"
        );
        let hex = hex::encode(nobody_seeds);
        assert!(
            engine.store().torrent(&hex)?.is_none(),
            "a torrent record was left"
        );
        assert!(library::held(engine.store(), &key.public_key())?.is_none());

        drop((sync, publisher));
        common::shutdown_checked(engine).await?;
        testnet.shutdown(Duration::from_secs(5)).await;
        Ok(())
    })
}

/// Issue 12, D12: `kino publish` of a catalog whose seq is above i64::MAX (the DHT's seq is a
/// signed 64-bit number) exits 2 with the reason, before signing: no catalog.sig is written
/// and nothing is started (the DHT bootstrap given is a closed loopback port).
#[test]
fn seq_above_i64_max_is_refused_before_signing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let key = root.join("publisher.key");
    kino_catalog::generate_key_file(&key)?;
    let folder = root.join("catalog");
    copy_sample(&folder)?;
    edit_catalog(&folder, &[("\"seq\": 5", "\"seq\": 9223372036854775808")])?;
    let closed = format!("127.0.0.1:{}", free_udp_port()?);
    let mut cmd = kino_dht(&root.join("publisher"), &[&closed])?;
    cmd.arg("publish").arg("--key").arg(&key).arg(&folder);
    let out = run(cmd, "kino publish", QUICK_LIMIT)?;
    assert_eq!(out.code, Some(2), "bad input exits 2: {out}");
    let want = "seq: 9223372036854775808 is too large: a catalog seq can be at most \
                9223372036854775807";
    assert!(out.stderr.contains(want), "stderr lacks {want:?}: {out}");
    assert!(!folder.join("catalog.sig").exists(), "signed anyway: {out}");
    Ok(())
}

/// Issue 12, D19: `kino publish` of a catalog.json saved with a UTF-8 byte-order mark says
/// so (not "expected value at line 1 column 1"), exits 2 and signs nothing.
#[test]
fn bom_and_missing_signature_have_clear_errors() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let key = root.join("publisher.key");
    kino_catalog::generate_key_file(&key)?;
    let folder = root.join("catalog");
    copy_sample(&folder)?;
    let json = folder.join("catalog.json");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(&json)?);
    std::fs::write(&json, bytes)?;
    let closed = format!("127.0.0.1:{}", free_udp_port()?);
    let mut cmd = kino_dht(&root.join("publisher"), &[&closed])?;
    cmd.arg("publish").arg("--key").arg(&key).arg(&folder);
    let out = run(cmd, "kino publish", QUICK_LIMIT)?;
    assert_eq!(out.code, Some(2), "bad input exits 2: {out}");
    assert_eq!(
        out.stderr.trim(),
        "kino: catalog.json starts with a UTF-8 byte-order mark; save it without BOM",
        "{out}"
    );
    assert!(!folder.join("catalog.sig").exists(), "signed anyway: {out}");
    // The missing catalog.sig of a received catalog: the "unsigned" case of
    // `refusals_index_nothing`.
    Ok(())
}
