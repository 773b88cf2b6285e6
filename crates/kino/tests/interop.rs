//! Interop with foreign clients over 127.0.0.1: python3-libtorrent seeds and `kino play`
//! streams over HTTP (by .torrent and by magnet, metadata over BEP 9); `kino seed` seeds and
//! libtorrent downloads and verifies (single file and a folder); mpv plays and seeks through
//! `kino play`'s HTTP stream (MP4 with the index first and last, and Matroska).
//!
//! Every process is killed on drop, every wait is bounded, and failures name the process, its
//! exit status and the last lines it wrote on stderr.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::{KinoProcess, demo_media, kino_with_empty_config, lt_peer, parse_listen_line};

/// How long a process may take to print its first useful line (build caches, hashing).
const START: Duration = Duration::from_secs(60);
/// Upper bound for one HTTP response or one foreign-client run.
const TRANSFER: Duration = Duration::from_secs(120);

/// A spawned process whose stderr goes to a log file, so failures can quote it.
struct Proc {
    name: String,
    p: KinoProcess,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Proc> {
        let f = std::fs::File::create(&log)?;
        cmd.stderr(f);
        let p = KinoProcess::spawn(cmd).with_context(|| format!("spawning {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            p,
            log,
        })
    }

    /// Exit status (if it exited) and the last stderr lines, for failure messages.
    fn diag(&mut self) -> String {
        let status = match self.p.child.try_wait() {
            Ok(Some(s)) => format!("exited with {s}"),
            Ok(None) => "still running".to_string(),
            Err(e) => format!("status unknown: {e}"),
        };
        format!(
            "{} {status}; last stderr lines:\n{}",
            self.name,
            tail(&self.log, 25)
        )
    }

    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        match self.p.wait_line(START, pred) {
            Ok(l) => Ok(l),
            Err(e) => {
                let d = self.diag();
                bail!("{}: waiting for {what}: {e:#}\n{d}", self.name)
            }
        }
    }

    /// Checks that the process is still running (it serves until told to stop).
    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(_)) = self.p.child.try_wait() {
            let d = self.diag();
            bail!("{} stopped early: {d}", self.name);
        }
        Ok(())
    }

    /// SIGTERM, bounded wait, and expect a clean exit.
    fn stop(mut self) -> anyhow::Result<()> {
        let code = self.p.terminate();
        let d = self.diag();
        match code {
            Ok(Some(0)) => Ok(()),
            Ok(c) => bail!("{} exit code {c:?} on SIGTERM\n{d}", self.name),
            Err(e) => bail!("{}: {e:#}\n{d}", self.name),
        }
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command to completion, killing it after `timeout`; returns (exit code, stdout, stderr).
fn run_bounded(
    name: &str,
    mut cmd: Command,
    timeout: Duration,
) -> anyhow::Result<(Option<i32>, String, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
    let mut out = child.stdout.take().context("no stdout")?;
    let mut err = child.stderr.take().context("no stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    match status {
        Some(s) => Ok((s.code(), stdout, stderr)),
        None => bail!(
            "{name} did not finish within {timeout:?} (killed)\nstdout:\n{stdout}\nstderr tail:\n{}",
            last_lines(&stderr, 25)
        ),
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A parsed HTTP response.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET url` over a hand-written HTTP/1.1 request (loopback only), optionally with a `Range`.
fn http_get(url: &str, range: Option<&str>) -> anyhow::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http URL: {url}"))?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = hostport.parse().context("URL host is not IP:PORT")?;
    ensure!(addr.ip().is_loopback(), "refusing a non-loopback URL {url}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n");
    if let Some(r) = range {
        req.push_str(&format!("Range: {r}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let deadline = Instant::now() + TRANSFER;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        ensure!(
            Instant::now() < deadline,
            "GET {url} ({range:?}) not complete within {TRANSFER:?}: {} bytes so far",
            raw.len()
        );
        let n = s
            .read(&mut buf)
            .with_context(|| format!("reading GET {url} ({range:?}) after {} bytes", raw.len()))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        resp.body = dechunk(&resp.body)?;
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().context("bad Content-Length")?;
        ensure!(
            resp.body.len() == len,
            "GET {url} ({range:?}): body has {} bytes, Content-Length says {len} (status {status})",
            resp.body.len()
        );
    }
    Ok(resp)
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size_text = String::from_utf8_lossy(&b[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(b.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
    bail!("too many chunks")
}

/// Asserts a full GET returns exactly `expected`.
fn assert_full_get(url: &str, expected: &[u8], who: &mut Proc) -> anyhow::Result<()> {
    let r = http_get(url, None).with_context(|| who.diag())?;
    ensure!(
        r.status == 200,
        "GET {url}: status {} (expected 200), body {:?}\n{}",
        r.status,
        String::from_utf8_lossy(&r.body[..r.body.len().min(300)]),
        who.diag()
    );
    ensure_same(&r.body, expected, &format!("GET {url}"))
}

/// Asserts `Range: bytes=start-end` (inclusive) returns 206 with exactly those source bytes.
fn assert_range_get(
    url: &str,
    expected: &[u8],
    start: usize,
    end: Option<usize>,
    who: &mut Proc,
) -> anyhow::Result<()> {
    let spec = match end {
        Some(e) => format!("bytes={start}-{e}"),
        None => format!("bytes={start}-"),
    };
    let last = end.unwrap_or(expected.len() - 1);
    assert_range_spec(url, expected, &spec, start, last, who)
}

/// Asserts the `Range: SPEC` response is 206 with exactly source bytes `start..=last`.
fn assert_range_spec(
    url: &str,
    expected: &[u8],
    spec: &str,
    start: usize,
    last: usize,
    who: &mut Proc,
) -> anyhow::Result<()> {
    let r = http_get(url, Some(spec)).with_context(|| who.diag())?;
    ensure!(
        r.status == 206,
        "GET {url} Range {spec}: status {} (expected 206)\n{}",
        r.status,
        who.diag()
    );
    let want_cr = format!("bytes {start}-{last}/{}", expected.len());
    ensure!(
        r.header("content-range") == Some(want_cr.as_str()),
        "Range {spec}: Content-Range {:?}, expected {want_cr:?}",
        r.header("content-range")
    );
    ensure_same(
        &r.body,
        &expected[start..=last],
        &format!("GET {url} Range {spec}"),
    )
}

fn ensure_same(got: &[u8], want: &[u8], what: &str) -> anyhow::Result<()> {
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    bail!(
        "{what}: got {} bytes, expected {}; first difference at byte {first}",
        got.len(),
        want.len()
    )
}

/// Parses the JSON line `lt_peer.py create` prints and returns its `info_hash`.
fn json_str(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\": \"");
    let i = line.find(&pat)? + pat.len();
    let j = line[i..].find('"')? + i;
    Some(line[i..j].to_string())
}

/// `lt_peer.py create` a torrent of `path` into `out`; returns the hex infohash.
fn lt_create(path: &Path, out: &Path) -> anyhow::Result<String> {
    let mut c = lt_peer()?;
    c.arg("create")
        .arg("--path")
        .arg(path)
        .arg("--out")
        .arg(out);
    let (code, stdout, stderr) = run_bounded("lt_peer create", c, TRANSFER)?;
    ensure!(
        code == Some(0),
        "lt_peer create exit {code:?}\n{stdout}\n{stderr}"
    );
    let ih = json_str(&stdout, "info_hash")
        .with_context(|| format!("no info_hash in lt_peer create output {stdout:?}"))?;
    ensure!(ih.len() == 40, "unexpected info_hash {ih:?} (want v1 hex)");
    Ok(ih.to_ascii_lowercase())
}

/// `lt_peer.py seed`; returns the process and its loopback address.
fn lt_seed(torrent: &Path, data: &Path, log: PathBuf) -> anyhow::Result<(Proc, String)> {
    let mut c = lt_peer()?;
    c.arg("seed")
        .arg("--torrent")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--timeout", "300"]);
    let mut p = Proc::spawn("lt_peer seed", c, log)?;
    let line = p.wait_line("LISTENING", |l| l.starts_with("LISTENING "))?;
    let addr = line["LISTENING ".len()..].trim().to_string();
    let sa: SocketAddr = addr.parse()?;
    ensure!(
        sa.ip().is_loopback(),
        "lt_peer listens on {sa}, not loopback"
    );
    Ok((p, addr))
}

/// `lt_peer.py download` from the given peer; expects `"ok": true`.
fn lt_download(source: &[&str], out: &Path, peer: &str, seeder: &mut Proc) -> anyhow::Result<()> {
    let mut c = lt_peer()?;
    c.arg("download").args(source).arg("--out").arg(out).args([
        "--peer",
        peer,
        "--enc",
        "disabled",
        "--timeout",
        "100",
    ]);
    let (code, stdout, stderr) = run_bounded("lt_peer download", c, TRANSFER)?;
    ensure!(
        code == Some(0) && stdout.contains("\"ok\": true"),
        "lt_peer download {source:?} from kino at {peer}: exit {code:?}, stdout {stdout:?}\n\
         lt_peer stderr tail:\n{}\n{}",
        last_lines(&stderr, 20),
        seeder.diag()
    );
    Ok(())
}

/// `kino play SOURCE --player none ...`; returns the process and the stream URL it printed.
fn kino_play(
    data_dir: &Path,
    source: &str,
    peer: &str,
    extra: &[&str],
    log: PathBuf,
) -> anyhow::Result<(Proc, String)> {
    let mut c = kino_with_empty_config(data_dir)?;
    c.args(["play", source, "--player", "none", "--peer", peer])
        .args(extra);
    let mut p = Proc::spawn("kino play", c, log)?;
    let url = p.wait_line("the stream URL", |l| l.starts_with("http://"))?;
    ensure!(
        url.starts_with("http://127.0.0.1:") && url.contains("/stream/"),
        "unexpected stream URL {url:?}"
    );
    Ok((p, url.trim().to_string()))
}

/// `kino seed PATH`; returns the process, its magnet and its loopback peer address.
fn kino_seed(data_dir: &Path, path: &Path, log: PathBuf) -> anyhow::Result<(Proc, String, String)> {
    let mut c = kino_with_empty_config(data_dir)?;
    c.arg("seed").arg(path);
    let mut p = Proc::spawn("kino seed", c, log)?;
    let magnet = p.wait_line("the magnet", |l| l.starts_with("magnet:"))?;
    let listen = p.wait_line("`listening on`", |l| l.starts_with("listening on "))?;
    let addr = parse_listen_line(&listen).with_context(|| format!("parsing {listen:?}"))?;
    Ok((p, magnet.trim().to_string(), addr.to_string()))
}

/// The lowercase hex infohash of a v1 magnet link.
fn magnet_infohash(magnet: &str) -> anyhow::Result<String> {
    let i = magnet
        .find("xt=urn:btih:")
        .with_context(|| format!("no btih in {magnet:?}"))?
        + "xt=urn:btih:".len();
    let ih: String = magnet[i..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    ensure!(
        ih.len() == 40,
        "infohash in {magnet:?} is not 40 hex digits"
    );
    Ok(ih.to_ascii_lowercase())
}

/// libtorrent seeds `name` (a file inside `seed_dir`); Kino streams it by .torrent and by
/// magnet; the full body and ranges from the middle and to the end equal the source.
fn lt_seeds_kino_streams_case(
    tmp: &Path,
    seed_dir: &Path,
    name: &str,
    play_args: &[&str],
) -> anyhow::Result<()> {
    let source = std::fs::read(seed_dir.join(name))?;
    let torrent = tmp.join("lt.torrent");
    let ih = lt_create(&seed_dir.join(name), &torrent)?;
    let (mut lt, lt_addr) = lt_seed(&torrent, seed_dir, tmp.join("lt-seed.log"))?;

    // By .torrent file.
    let (mut play, url) = kino_play(
        &tmp.join("kino-a"),
        torrent.to_str().context("path")?,
        &lt_addr,
        play_args,
        tmp.join("kino-play-torrent.log"),
    )?;
    ensure!(
        url.contains(&ih),
        "stream URL {url} does not name infohash {ih}"
    );
    let mid = source.len() / 2;
    // A range first, before the download got there, then the whole file, then the tail.
    assert_range_get(&url, &source, mid, Some(mid + 1_000_000), &mut play)?;
    assert_full_get(&url, &source, &mut play)?;
    assert_range_get(&url, &source, source.len() - 777, None, &mut play)?;
    play.ensure_running()?;
    play.stop()?;

    // By magnet: Kino gets the info dictionary from libtorrent (BEP 9).
    let magnet = format!("magnet:?xt=urn:btih:{ih}");
    let (mut play, url) = kino_play(
        &tmp.join("kino-b"),
        &magnet,
        &lt_addr,
        play_args,
        tmp.join("kino-play-magnet.log"),
    )?;
    // A suffix range (the last 4321 bytes) before anything else: the tail piece comes first.
    let n = source.len();
    assert_range_spec(&url, &source, "bytes=-4321", n - 4321, n - 1, &mut play)?;
    assert_range_get(&url, &source, mid + 12_345, Some(mid + 654_321), &mut play)?;
    assert_full_get(&url, &source, &mut play)?;
    play.ensure_running()?;
    play.stop()?;
    lt.ensure_running()?;
    Ok(())
}

#[test]
fn libtorrent_seeds_kino_streams() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(&seed)?;
    // Pseudo-random data: 12 MiB plus an odd tail, so the last piece is short.
    common::write_random(&seed.join("noise.bin"), 12 * 1024 * 1024 + 4321, 7)?;
    lt_seeds_kino_streams_case(tmp.path(), &seed, "noise.bin", &["--file", "0"])
        .context("12 MiB pseudo-random file")?;
    Ok(())
}

#[test]
fn libtorrent_seeds_kino_streams_demo_mp4() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(&seed)?;
    std::fs::copy(
        demo_media("kino-testcard.mp4"),
        seed.join("kino-testcard.mp4"),
    )?;
    // No --file: Kino picks the video itself.
    lt_seeds_kino_streams_case(tmp.path(), &seed, "kino-testcard.mp4", &[])
        .context("media/demo/kino-testcard.mp4")?;
    Ok(())
}

#[test]
fn kino_seeds_libtorrent_downloads() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let t = tmp.path();
    let file = t.join("src/noise.bin");
    let data = common::write_random(&file, 12 * 1024 * 1024 + 999, 11)?;

    let (mut seed, magnet, addr) = kino_seed(&t.join("kino-seed"), &file, t.join("seed.log"))?;
    let torrent = t.join("noise.torrent");
    let mut c = kino_with_empty_config(&t.join("kino-create"))?;
    c.arg("create").arg(&file).arg("-o").arg(&torrent);
    let (code, stdout, stderr) = run_bounded("kino create", c, TRANSFER)?;
    ensure!(code == Some(0), "kino create exit {code:?}: {stderr}");
    let created = stdout
        .lines()
        .find(|l| l.starts_with("magnet:"))
        .unwrap_or("");
    ensure!(
        magnet_infohash(created)? == magnet_infohash(&magnet)?,
        "kino create and kino seed of the same file disagree: {created} vs {magnet}"
    );

    let dl = t.join("dl");
    lt_download(
        &["--torrent", torrent.to_str().context("path")?],
        &dl,
        &addr,
        &mut seed,
    )?;
    let got = std::fs::read(dl.join("noise.bin")).context("libtorrent's downloaded file")?;
    ensure_same(&got, &data, "libtorrent's copy of noise.bin")?;
    seed.ensure_running()?;
    seed.stop()?;
    Ok(())
}

#[test]
fn kino_seeds_folder_libtorrent_downloads() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let t = tmp.path();
    let film = t.join("src/film");
    std::fs::create_dir_all(&film)?;
    let names = ["kino-testcard.mp4", "kino-testcard.en.srt"];
    for n in names {
        std::fs::copy(demo_media(n), film.join(n))?;
    }
    let (mut seed, magnet, addr) = kino_seed(&t.join("kino-seed"), &film, t.join("seed.log"))?;
    let torrent = t.join("film.torrent");
    let mut c = kino_with_empty_config(&t.join("kino-create"))?;
    c.arg("create").arg(&film).arg("-o").arg(&torrent);
    let (code, stdout, stderr) = run_bounded("kino create", c, TRANSFER)?;
    ensure!(code == Some(0), "kino create exit {code:?}: {stderr}");
    let created = stdout
        .lines()
        .find(|l| l.starts_with("magnet:"))
        .unwrap_or("");
    ensure!(
        magnet_infohash(created)? == magnet_infohash(&magnet)?,
        "kino create and kino seed of the same folder disagree: {created} vs {magnet}"
    );

    // By .torrent, then by magnet (libtorrent fetches the info dictionary from Kino, BEP 9).
    let by_torrent = t.join("dl-torrent");
    lt_download(
        &["--torrent", torrent.to_str().context("path")?],
        &by_torrent,
        &addr,
        &mut seed,
    )?;
    let by_magnet = t.join("dl-magnet");
    lt_download(&["--magnet", &magnet], &by_magnet, &addr, &mut seed)?;
    for dir in [&by_torrent, &by_magnet] {
        for n in names {
            let got = std::fs::read(dir.join("film").join(n))
                .with_context(|| format!("libtorrent's film/{n} in {}", dir.display()))?;
            ensure_same(
                &got,
                &std::fs::read(film.join(n))?,
                &format!("libtorrent's film/{n}"),
            )?;
        }
    }
    seed.ensure_running()?;
    seed.stop()?;
    Ok(())
}

/// An mpv Lua script that reports load, duration and the last position reached.
const MPV_PROBE: &str = r#"
local last = nil
mp.observe_property("time-pos", "number", function(_, v) if v then last = v end end)
mp.register_event("file-loaded", function()
  io.stdout:write(string.format("KINO-LOADED duration=%s\n", tostring(mp.get_property_number("duration"))))
  io.stdout:flush()
end)
mp.register_event("end-file", function(e)
  io.stdout:write(string.format("KINO-END reason=%s error=%s last=%s\n", tostring(e.reason), tostring(e.error), tostring(last)))
  io.stdout:flush()
end)
"#;

fn probe_value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Kino seeds `name`, another Kino streams it, and mpv plays 3 s from 15 s through HTTP.
fn mpv_case(tmp: &Path, name: &str) -> anyhow::Result<()> {
    let dir = tmp.join(name.replace('.', "_"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(name);
    std::fs::copy(demo_media(name), &file)?;
    let (mut seed, magnet, addr) = kino_seed(&dir.join("kino-seed"), &file, dir.join("seed.log"))?;
    let (mut play, url) = kino_play(
        &dir.join("kino-play"),
        &magnet,
        &addr,
        &[],
        dir.join("play.log"),
    )?;
    let script = dir.join("probe.lua");
    std::fs::write(&script, MPV_PROBE)?;
    let mut mpv = Command::new("mpv");
    mpv.args([
        "--no-config",
        "--vo=null",
        "--ao=null",
        "--really-quiet",
        "--ytdl=no",
        "--network-timeout=60",
        "--start=15",
        "--length=3",
    ])
    .arg(format!("--script={}", script.display()))
    .arg(&url);
    let (code, stdout, stderr) = run_bounded("mpv", mpv, TRANSFER)
        .with_context(|| format!("{}\n{}", play.diag(), seed.diag()))?;
    let report = format!(
        "mpv on {url} ({name}): exit {code:?}\nmpv stdout:\n{stdout}\nmpv stderr:\n{}\n{}\n{}",
        last_lines(&stderr, 20),
        play.diag(),
        seed.diag()
    );
    ensure!(code == Some(0), "{report}");
    let duration: f64 = probe_value(&stdout, "duration")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no duration: {report}"))?;
    ensure!(
        (29.0..31.5).contains(&duration),
        "duration {duration} (the demo clips are 30 s): {report}"
    );
    ensure!(
        probe_value(&stdout, "reason") == Some("eof")
            && probe_value(&stdout, "error") == Some("nil"),
        "playback did not end cleanly: {report}"
    );
    let last: f64 = probe_value(&stdout, "last")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no position: {report}"))?;
    ensure!(
        (17.0..=18.5).contains(&last),
        "mpv stopped at {last} s, expected about 18 s after --start=15 --length=3: {report}"
    );
    play.ensure_running()?;
    play.stop()?;
    seed.stop()?;
    Ok(())
}

#[test]
fn mpv_plays_and_seeks_through_kino() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ok = Command::new("mpv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ensure!(ok, "mpv is not installed: run scripts/install-test-deps");
    // Index first (faststart MP4), index last (moov at the end), and Matroska (Cues at the end).
    for name in [
        "kino-testcard.mp4",
        "kino-moov-at-end.mp4",
        "kino-testcard.mkv",
    ] {
        mpv_case(tmp.path(), name).with_context(|| format!("mpv through kino: {name}"))?;
    }
    Ok(())
}
