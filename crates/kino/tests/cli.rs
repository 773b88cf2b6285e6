//! End-to-end tests of the `kino` command line: bad input and hostile torrents are refused
//! with exit code 2, an interrupted download resumes without fetching verified pieces again,
//! and the share policy (`--no-share`, `--ratio-limit`, `--cache-limit`) holds between real
//! `kino` processes on 127.0.0.1.
//!
//! Every process is bounded: commands that should exit run under [`run_bounded`], long-running
//! ones are [`KinoProcess`]es killed on drop, and every poll has a deadline.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::{KinoProcess, kino_with_empty_config, parse_listen_line, write_random};

const MIB: u64 = 1024 * 1024;
/// Piece length of every torrent made here: small pieces make progress fine-grained.
const PIECE: u64 = 256 * 1024;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// What a finished `kino` command left behind.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs a command to its end, failing the test when it does not exit by itself in `limit`
/// (it is then killed).
fn run_bounded(mut cmd: Command, limit: Duration) -> anyhow::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().context("spawning kino")?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out?;
            Ok(Finished {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
        Err(_) => {
            // Our own child, by its id.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            bail!("{cmd:?} did not exit within {limit:?}")
        }
    }
}

/// `kino` with loopback-only flags and an empty config file in `data` (`common::kino` alone
/// names a missing config file, which `kino` rightly refuses as an explicit path).
fn kino(data: &Path) -> Command {
    kino_with_empty_config(data).expect("cannot write the test config")
}

/// [`kino`] with the user's default log filter (what a user sees on stderr).
fn kino_quiet(data: &Path) -> Command {
    let mut c = kino(data);
    c.env_remove("KINO_LOG");
    c
}

/// Asserts a refusal of bad input: exit code 2, no panic, and exactly one `kino: ...` line,
/// the last one. With `only_line`, nothing else is on stderr at all.
fn assert_user_error(out: &Finished, what: &str, only_line: bool) {
    assert_eq!(out.code, Some(2), "{what}: want exit code 2, got {out:?}");
    assert!(!out.stderr.contains("panicked"), "{what}: panic: {out:?}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let errors = lines.iter().filter(|l| l.starts_with("kino:")).count();
    assert_eq!(errors, 1, "{what}: want one `kino:` line: {out:?}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("kino: ")),
        "{what}: the error must be the last line: {out:?}"
    );
    if only_line {
        assert_eq!(lines.len(), 1, "{what}: stderr must be one line: {out:?}");
    }
}

/// A free TCP port on 127.0.0.1 (for a process whose listen address we must know).
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

/// A content file with its torrent.
struct Film {
    /// The folder holding the content.
    dir: PathBuf,
    name: String,
    torrent: PathBuf,
    infohash: String,
    data: Vec<u8>,
}

/// Writes `len` pseudo-random bytes to `root/<name>-src/<name>` and makes
/// `root/<name>.torrent` with `kino create`.
fn make_film(root: &Path, name: &str, len: usize, seed: u64) -> anyhow::Result<Film> {
    let dir = root.join(format!("{name}-src"));
    let data = write_random(&dir.join(name), len, seed)?;
    let torrent = root.join(format!("{name}.torrent"));
    let mut c = kino(&root.join("create-data"));
    c.arg("create")
        .arg(dir.join(name))
        .arg("-o")
        .arg(&torrent)
        .args(["--piece-length", &PIECE.to_string()]);
    let out = run_bounded(c, Duration::from_secs(60))?;
    ensure!(out.code == Some(0), "kino create failed: {out:?}");
    let infohash = out
        .stdout
        .trim()
        .strip_prefix("magnet:?xt=urn:btih:")
        .and_then(|s| s.get(..40))
        .context("create printed no magnet")?
        .to_owned();
    Ok(Film {
        dir,
        name: name.to_owned(),
        torrent,
        infohash,
        data,
    })
}

/// A running `kino seed`.
struct Seeder {
    proc: KinoProcess,
    addr: SocketAddr,
}

fn start_seeder(data: &Path, flags: &[&str], film: &Film) -> anyhow::Result<Seeder> {
    let mut c = kino(data);
    c.args(flags)
        .arg("seed")
        .arg(&film.torrent)
        .arg("--data")
        .arg(&film.dir);
    let mut proc = KinoProcess::spawn(c)?;
    let t = Duration::from_secs(60);
    proc.wait_line(t, |l| l.starts_with("magnet:"))?;
    let line = proc.wait_line(t, |l| l.starts_with("listening on "))?;
    let addr = parse_listen_line(&line)?;
    Ok(Seeder { proc, addr })
}

/// Starts `kino play F.torrent --peer ...` and waits for its stream URL.
fn start_player(
    data: &Path,
    flags: &[&str],
    film: &Film,
    peers: &[SocketAddr],
) -> anyhow::Result<KinoProcess> {
    let mut c = kino(data);
    c.args(flags).arg("play").arg(&film.torrent);
    for p in peers {
        c.arg("--peer").arg(p.to_string());
    }
    let mut proc = KinoProcess::spawn(c)?;
    let url = proc.wait_line(Duration::from_secs(60), |l| l.starts_with("http://"))?;
    assert!(
        url.starts_with("http://127.0.0.1:")
            && url.contains(&format!("/stream/{}/", film.infohash)),
        "unexpected stream URL {url}"
    );
    Ok(proc)
}

/// Where `kino play` caches a single-file film.
fn cache_file(data: &Path, film: &Film) -> PathBuf {
    data.join("media").join(&film.infohash).join(&film.name)
}

/// Polls (bounded) until `path` holds exactly `want`.
fn wait_file_eq(path: &Path, want: &[u8], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(got) = std::fs::read(path)
            && got == want
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} was not complete within {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Bytes of `path` in whole pieces equal to the source (what a hash check accepts).
fn good_piece_bytes(path: &Path, want: &[u8]) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut got = Vec::new();
    if f.read_to_end(&mut got).is_err() {
        return 0;
    }
    want.chunks(PIECE as usize)
        .enumerate()
        .filter(|(i, piece)| {
            let start = i * PIECE as usize;
            got.get(start..start + piece.len()) == Some(*piece)
        })
        .map(|(_, piece)| piece.len() as u64)
        .sum()
}

/// One row of `kino status`.
#[derive(Debug, Clone)]
struct Row {
    size: u64,
    on_disk: u64,
    shared: u64,
    ratio: f64,
    state: String,
    watched: String,
    name: String,
}

fn parse_size(num: &str, unit: &str) -> anyhow::Result<u64> {
    let n: f64 = num.parse().with_context(|| format!("size {num:?}"))?;
    let mult = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => MIB as f64,
        "GiB" => (1u64 << 30) as f64,
        "TiB" => (1u64 << 40) as f64,
        other => bail!("unknown unit {other:?}"),
    };
    Ok((n * mult).round() as u64)
}

/// Runs `kino status` and parses its table, by infohash.
fn status(data: &Path) -> anyhow::Result<BTreeMap<String, Row>> {
    let out = run_bounded(
        {
            let mut c = kino(data);
            c.arg("status");
            c
        },
        Duration::from_secs(30),
    )?;
    ensure!(out.code == Some(0), "kino status failed: {out:?}");
    let mut rows = BTreeMap::new();
    for line in out.stdout.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        let is_row = t
            .first()
            .is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !is_row {
            continue;
        }
        ensure!(t.len() >= 11, "short status line {line:?}");
        let (watched, rest) = if t[9] == "never" {
            ("never".to_owned(), &t[10..])
        } else {
            ensure!(t.len() >= 13 && t[11] == "ago", "status line {line:?}");
            (t[9..12].join(" "), &t[12..])
        };
        rows.insert(
            t[0].to_owned(),
            Row {
                size: parse_size(t[1], t[2])?,
                on_disk: parse_size(t[3], t[4])?,
                shared: parse_size(t[5], t[6])?,
                ratio: t[7].parse()?,
                state: t[8].to_owned(),
                watched,
                name: rest.join(" "),
            },
        );
    }
    Ok(rows)
}

fn row(data: &Path, film: &Film) -> anyhow::Result<Row> {
    status(data)?
        .remove(&film.infohash)
        .with_context(|| format!("{} not in kino status of {}", film.name, data.display()))
}

/// `kino fetch F.torrent -o OUT --peer ... --stall-timeout S`, bounded.
fn fetch(
    data: &Path,
    film: &Film,
    out: &Path,
    peers: &[SocketAddr],
    stall_secs: u64,
) -> anyhow::Result<Finished> {
    let mut c = kino(data);
    c.arg("fetch")
        .arg(&film.torrent)
        .arg("-o")
        .arg(out)
        .args(["--stall-timeout", &stall_secs.to_string()]);
    for p in peers {
        c.arg("--peer").arg(p.to_string());
    }
    run_bounded(c, Duration::from_secs(stall_secs + 90))
}

/// Asserts a fetch gave up because nothing arrived.
fn assert_stalled(out: &Finished, what: &str) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "{what}: fetch must fail: {out:?}"
    );
    assert!(
        out.stderr.contains("swarm is unreachable"),
        "{what}: want a stall message: {out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {out:?}");
}

/// Plays `film` in `data` until its cached file is complete, then stops the player with
/// SIGTERM (exit code 0).
fn play_to_completion(
    data: &Path,
    flags: &[&str],
    film: &Film,
    peers: &[SocketAddr],
) -> anyhow::Result<()> {
    let mut p = start_player(data, flags, film, peers)?;
    wait_file_eq(
        &cache_file(data, film),
        &film.data,
        Duration::from_secs(120),
    )?;
    assert_eq!(p.terminate()?, Some(0), "play must exit cleanly on SIGTERM");
    Ok(())
}

/// Recursive listing (relative paths) of a folder.
fn listing(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let p = e.path();
            out.push(p.strip_prefix(root)?.to_path_buf());
            if e.file_type()?.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// A tiny bencode writer, for hand-made (hostile or broken) torrents
// ---------------------------------------------------------------------------------------

enum B {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<B>),
    /// Keys are sorted on output, as bencode requires.
    Dict(Vec<(&'static str, B)>),
}

fn bs(s: impl AsRef<[u8]>) -> B {
    B::Bytes(s.as_ref().to_vec())
}

impl B {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            B::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            B::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            B::List(l) => {
                out.push(b'l');
                for x in l {
                    x.encode(out);
                }
                out.push(b'e');
            }
            B::Dict(d) => {
                let mut d: Vec<&(&str, B)> = d.iter().collect();
                d.sort_by_key(|(k, _)| k.as_bytes());
                out.push(b'd');
                for (k, v) in d {
                    bs(k).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// A torrent file `{info: info}`.
fn torrent_bytes(info: B) -> Vec<u8> {
    let mut out = Vec::new();
    B::Dict(vec![("info", info)]).encode(&mut out);
    out
}

/// A multi-file info dict with one 10-byte file at `path` (components as given).
fn multi_file_info(path: Vec<Vec<u8>>) -> B {
    B::Dict(vec![
        ("name", bs("film")),
        (
            "files",
            B::List(vec![B::Dict(vec![
                ("length", B::Int(10)),
                ("path", B::List(path.into_iter().map(B::Bytes).collect())),
            ])]),
        ),
        ("piece length", B::Int(16384)),
        ("pieces", B::Bytes(vec![7; 20])),
    ])
}

/// A single-file info dict.
fn single_file_info(name: &[u8], len: i64, piece_length: i64, pieces: usize) -> B {
    B::Dict(vec![
        ("name", bs(name)),
        ("length", B::Int(len)),
        ("piece length", B::Int(piece_length)),
        ("pieces", B::Bytes(vec![7; pieces])),
    ])
}

fn components(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

const QUICK: Duration = Duration::from_secs(30);

/// Every malformed input to `play` and `fetch` is refused before any network or disk work:
/// exit code 2, one `kino: ...` line on stderr, no panic, and the process exits by itself.
#[test]
fn malformed_inputs_exit_2() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film = make_film(root, "valid.mp4", 600 * 1024, 1)?;
    let real = std::fs::read(&film.torrent)?;

    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<String> {
        let p = root.join(name);
        std::fs::write(&p, bytes)?;
        Ok(p.to_string_lossy().into_owned())
    };
    let cases: Vec<(&str, String)> = vec![
        ("magnet without btih", "magnet:?dn=film.mp4".into()),
        ("magnet with a bad hash", "magnet:?xt=urn:btih:zzzz".into()),
        ("40 characters, not hex", "g".repeat(40)),
        (
            "nonexistent path",
            root.join("no-such.torrent").to_string_lossy().into_owned(),
        ),
        (
            "garbage .torrent",
            write("garbage.torrent", b"this is not bencode\n")?,
        ),
        (
            "truncated real .torrent",
            write("truncated.torrent", &real[..real.len() / 2])?,
        ),
        (
            "valid bencode without info",
            write("noinfo.torrent", &{
                let mut v = Vec::new();
                B::Dict(vec![("announce", bs("http://127.0.0.1:1/"))]).encode(&mut v);
                v
            })?,
        ),
        (
            "info is an integer",
            write("infoint.torrent", &torrent_bytes(B::Int(3)))?,
        ),
        (
            "zero-length torrent",
            write(
                "empty.torrent",
                &torrent_bytes(single_file_info(b"a.bin", 0, 16384, 0)),
            )?,
        ),
        (
            "negative length",
            write(
                "negative.torrent",
                &torrent_bytes(single_file_info(b"a.bin", -5, 16384, 20)),
            )?,
        ),
        (
            "both single- and multi-file",
            write(
                "both.torrent",
                &torrent_bytes(B::Dict(vec![
                    ("name", bs("x")),
                    ("length", B::Int(10)),
                    (
                        "files",
                        B::List(vec![B::Dict(vec![
                            ("length", B::Int(10)),
                            ("path", B::List(vec![bs("a")])),
                        ])]),
                    ),
                    ("piece length", B::Int(16384)),
                    ("pieces", B::Bytes(vec![7; 20])),
                ])),
            )?,
        ),
    ];
    let data = root.join("data");
    for (what, arg) in &cases {
        let mut c = kino_quiet(&data);
        c.args(["play", arg]);
        assert_user_error(&run_bounded(c, QUICK)?, &format!("play: {what}"), true);

        let mut c = kino_quiet(&data);
        c.args(["fetch", arg, "-o"]).arg(root.join("out"));
        assert_user_error(&run_bounded(c, QUICK)?, &format!("fetch: {what}"), true);
        assert!(
            !root.join("out").exists(),
            "fetch {what} created its output"
        );
    }

    // A valid torrent with a file index it does not have. The engine starts first here, so
    // a log line may precede the error; the error is still one line, the last.
    let mut c = kino_quiet(&data);
    c.arg("play").arg(&film.torrent).args(["--file", "99"]);
    let out = run_bounded(c, QUICK)?;
    assert_user_error(&out, "play --file 99", false);
    assert!(out.stderr.contains("--file 99"), "{out:?}");
    Ok(())
}

/// Issue 12, D22: a malformed config file exited 1 with a multi-line message. It is one
/// `kino: config file PATH: line N: ...` line and exit code 2, before anything starts.
#[test]
fn malformed_config_is_one_line_and_exit_2() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let data = root.path().join("data");
    let cfg = data.join("config.toml");
    for (text, line) in [
        ("# mine\n[share]\nratio_limit\n", 3),
        ("[share]\nratio_limit = \"two\"\n", 2),
        ("[network]\nlisten_port = 80\nlisten_port = 81\n", 3),
        ("[share\n", 1),
    ] {
        let mut c = kino_quiet(&data);
        std::fs::write(&cfg, text)?;
        c.env("KINO_CONFIG", &cfg).arg("status");
        let out = run_bounded(c, QUICK)?;
        assert_user_error(&out, text, true);
        let want = format!("kino: config file {}: line {line}: ", cfg.display());
        assert!(out.stderr.starts_with(&want), "{text:?}: {out:?}");
        assert!(
            !data.join("kino.sqlite3").exists(),
            "{text:?}: the store was opened"
        );
    }
    Ok(())
}

/// Issue 12, D22: a `--data-dir` that is a regular file exited 1 with a multi-line message.
/// It is one line naming the path, exit code 2, and the file is untouched.
#[test]
fn data_dir_that_is_a_file_is_one_line_and_exit_2() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let data = root.path().join("data");
    let file = root.path().join("not-a-folder");
    std::fs::write(&file, b"mine")?;
    for args in [&["status"][..], &["catalogs"][..], &[][..]] {
        // `kino --data-dir FILE ...` with an empty config and loopback-only flags.
        let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
        c.arg("--data-dir")
            .arg(&file)
            .args([
                "--no-dht",
                "--no-lsd",
                "--bind",
                "127.0.0.1",
                "--http-port",
                "0",
            ])
            .args(args)
            .env("KINO_CONFIG", {
                std::fs::create_dir_all(&data)?;
                let cfg = data.join("config.toml");
                std::fs::write(&cfg, "")?;
                cfg
            })
            .env("XDG_CONFIG_HOME", data.join("config-home"))
            .env_remove("KINO_DATA_DIR")
            .env_remove("KINO_LOG");
        let out = run_bounded(c, QUICK)?;
        let what = format!("kino {args:?} --data-dir FILE");
        assert_user_error(&out, &what, true);
        assert!(
            out.stderr.starts_with(&format!(
                "kino: data folder {} is not a folder",
                file.display()
            )),
            "{what}: {out:?}"
        );
        assert_eq!(std::fs::read(&file)?, b"mine", "{what}");
    }
    Ok(())
}

/// A refused `--file` leaves nothing behind: no database row, no cache folder.
/// `network.request_window` out of range is refused before anything starts (0 would make
/// librqbit request nothing; huge windows defeat the point of the setting).
#[test]
fn request_window_out_of_range_exits_2() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    for bad in ["0", "1025"] {
        let data = root.path().join(format!("data-{bad}"));
        let mut c = kino_quiet(&data);
        let cfg = data.join("config.toml");
        std::fs::write(&cfg, format!("[network]\nrequest_window = {bad}\n"))?;
        c.env("KINO_CONFIG", &cfg).arg("status");
        let out = run_bounded(c, QUICK)?;
        assert_user_error(&out, &format!("request_window = {bad}"), true);
        assert!(
            out.stderr
                .contains("request_window must be between 1 and 1024"),
            "{out:?}"
        );
    }
    // In range, the same command works.
    let data = root.path().join("data-ok");
    let mut c = kino_quiet(&data);
    let cfg = data.join("config.toml");
    std::fs::write(&cfg, "[network]\nrequest_window = 8\n")?;
    c.env("KINO_CONFIG", &cfg).arg("status");
    let out = run_bounded(c, QUICK)?;
    assert_eq!(out.code, Some(0), "{out:?}");
    Ok(())
}

#[test]
fn refused_file_index_leaves_no_trace() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film = make_film(root, "valid.mp4", 600 * 1024, 2)?;
    let data = root.join("data");
    let mut c = kino_quiet(&data);
    c.arg("play").arg(&film.torrent).args(["--file", "99"]);
    assert_user_error(&run_bounded(c, QUICK)?, "play --file 99", false);
    let rows = status(&data)?;
    assert!(rows.is_empty(), "a refused play was recorded: {rows:?}");
    assert!(!data.join("media").join(&film.infohash).exists());
    Ok(())
}

/// Broken piece layouts in an otherwise well-formed info dict.
#[test]
fn invalid_piece_layout_exits_2() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let cases: Vec<(&str, B)> = vec![
        ("piece length 0", single_file_info(b"a.bin", 100, 0, 20)),
        (
            "pieces not a multiple of 20",
            single_file_info(b"a.bin", 100, 16384, 19),
        ),
        (
            "fewer piece hashes than pieces",
            single_file_info(b"a.bin", 100_000, 16384, 20),
        ),
        (
            "more piece hashes than pieces",
            single_file_info(b"a.bin", 100, 16384, 200),
        ),
    ];
    let data = root.join("data");
    let mut failures = Vec::new();
    for (i, (what, info)) in cases.into_iter().enumerate() {
        let path = root.join(format!("bad{i}.torrent"));
        std::fs::write(&path, torrent_bytes(info))?;
        for cmd in ["play", "fetch"] {
            let mut c = kino_quiet(&data);
            c.arg(cmd).arg(&path);
            if cmd == "fetch" {
                c.arg("-o")
                    .arg(root.join("out"))
                    .args(["--stall-timeout", "2"]);
            }
            let out = match run_bounded(c, Duration::from_secs(10)) {
                Ok(out) => out,
                Err(e) => {
                    failures.push(format!("{cmd} ({what}): accepted, still running: {e}"));
                    continue;
                }
            };
            if out.code != Some(2) || out.stderr.contains("panicked") {
                failures.push(format!(
                    "{cmd} ({what}): exit {:?}, stderr: {}",
                    out.code,
                    out.stderr.lines().take(3).collect::<Vec<_>>().join(" | ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// Torrents whose file names would escape the download folder, or are unusable on some
/// system, are refused as a whole before anything is written, inside or outside `-o OUT`.
#[test]
fn hostile_file_names_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let jail = tmp.path().join("jail");
    // OUT sits two levels down, so `../../etc/passwd` from it still lands inside `jail`,
    // where the listing would see it.
    let out_dir = jail.join("a/b/OUT");
    std::fs::create_dir_all(&out_dir)?;
    let torrents = tmp.path().join("torrents");
    std::fs::create_dir_all(&torrents)?;

    let long = vec![b'n'; 300];
    let deep: Vec<&[u8]> = std::iter::repeat_n(&b"d"[..], 40).collect();
    let wide_part = vec![b'w'; 200];
    let wide: Vec<&[u8]> = std::iter::repeat_n(wide_part.as_slice(), 6).collect();
    let cases: Vec<(&str, B)> = vec![
        (
            "../../etc/passwd",
            multi_file_info(components(&[b"..", b"..", b"etc", b"passwd"])),
        ),
        ("..", multi_file_info(components(&[b".."]))),
        (".", multi_file_info(components(&[b".", b"x"]))),
        ("empty component", multi_file_info(components(&[b"", b"x"]))),
        (
            "/etc/passwd as one component",
            multi_file_info(components(&[b"/etc/passwd"])),
        ),
        ("drive letter", multi_file_info(components(&[b"C:"]))),
        (
            "drive-relative",
            multi_file_info(components(&[b"C:evil.exe"])),
        ),
        ("backslash", multi_file_info(components(&[b"a\\b"]))),
        (
            "backslash traversal",
            multi_file_info(components(&[b"..\\..\\x"])),
        ),
        ("newline", multi_file_info(components(&[b"new\nline.mp4"]))),
        ("bell", multi_file_info(components(&[b"bell\x07.mp4"]))),
        ("300-byte component", multi_file_info(vec![long.clone()])),
        ("40 levels deep", multi_file_info(components(&deep))),
        ("1206-byte path", multi_file_info(components(&wide))),
        (
            "single file named ..",
            single_file_info(b"..", 10, 16384, 20),
        ),
        (
            "single file named /etc/passwd",
            single_file_info(b"/etc/passwd", 10, 16384, 20),
        ),
        (
            "single file with a control character",
            single_file_info(b"a\x1b[31m.mp4", 10, 16384, 20),
        ),
        (
            "single file named C:",
            single_file_info(b"C:", 10, 16384, 20),
        ),
    ];
    let before = listing(&jail)?;
    for (i, (what, info)) in cases.into_iter().enumerate() {
        let path = torrents.join(format!("hostile{i}.torrent"));
        std::fs::write(&path, torrent_bytes(info))?;
        let mut c = kino_quiet(&data);
        c.arg("fetch")
            .arg(&path)
            .arg("-o")
            .arg(&out_dir)
            .args(["--stall-timeout", "2"]);
        let out = run_bounded(c, QUICK)?;
        assert_user_error(&out, what, true);
        assert!(
            out.stderr.contains("refused") || out.stderr.contains("invalid torrent"),
            "{what}: the message must say why: {out:?}"
        );
        assert_eq!(listing(&jail)?, before, "{what}: files appeared");
    }
    assert_eq!(listing(&out_dir)?, Vec::<PathBuf>::new());

    // Control: the same writer with a harmless name makes a torrent Kino accepts (it then
    // finds no peer and gives up, exit 1), so the refusals above are about the names.
    let ok = torrents.join("ok.torrent");
    std::fs::write(
        &ok,
        torrent_bytes(multi_file_info(components(&[b"ok", b"film.mp4"]))),
    )?;
    let mut c = kino_quiet(&data);
    c.arg("fetch")
        .arg(&ok)
        .arg("-o")
        .arg(tmp.path().join("control"))
        .args(["--stall-timeout", "1"]);
    let out = run_bounded(c, QUICK)?;
    assert_eq!(out.code, Some(1), "control torrent: {out:?}");
    assert!(out.stderr.contains("swarm is unreachable"), "{out:?}");
    Ok(())
}

/// A `.torrent` whose info dict has these entries, encoded by hand (the `B` writer cannot
/// hold integers beyond `i64`).
fn raw_torrent(info_entries: &str) -> Vec<u8> {
    format!("d4:infod{info_entries}ee").into_bytes()
}

/// `kino play` and `kino fetch` of `torrent` both refuse it: exit 2, one line that contains
/// `want`.
fn assert_refused(root: &Path, name: &str, torrent: &[u8], want: &str) -> anyhow::Result<()> {
    let path = root.join(name);
    std::fs::write(&path, torrent)?;
    let data = root.join("data");
    for cmd in ["play", "fetch"] {
        let mut c = kino_quiet(&data);
        c.arg(cmd).arg(&path);
        if cmd == "fetch" {
            c.arg("-o").arg(root.join("out"));
        }
        let out = run_bounded(c, QUICK)?;
        assert_user_error(&out, &format!("{cmd} {name}"), true);
        assert!(
            out.stderr.contains(want),
            "{cmd} {name}: want {want:?}: {out:?}"
        );
    }
    assert!(
        !root.join("out").exists(),
        "{name}: fetch created its output"
    );
    Ok(())
}

/// Lengths beyond `u64` (librqbit's parser alone reads 2^64 + 5 as 5 bytes) and piece
/// lengths beyond `u32` are refused at parse time, naming the field.
#[test]
fn torrent_lengths_beyond_u64_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let hashes = "h".repeat(20);
    assert_refused(
        tmp.path(),
        "huge.torrent",
        &raw_torrent(&format!(
            "6:lengthi18446744073709551621e4:name5:a.bin12:piece lengthi16384e6:pieces20:{hashes}"
        )),
        "info.length: an integer outside the range of a signed 64-bit number",
    )?;
    // 2^32 + 16384: as a u32 it would be 16384.
    assert_refused(
        tmp.path(),
        "wide-pieces.torrent",
        &raw_torrent(&format!(
            "6:lengthi100e4:name5:a.bin12:piece lengthi4294983680e6:pieces20:{hashes}"
        )),
        "info.piece length 4294983680 is out of range",
    )?;
    // Three files of 2^63 - 1 bytes: each fits, their sum does not.
    let big = i64::MAX;
    let files: String = ["a", "b", "c"]
        .iter()
        .map(|n| format!("d6:lengthi{big}e4:pathl1:{n}ee"))
        .collect();
    assert_refused(
        tmp.path(),
        "sum.torrent",
        &raw_torrent(&format!(
            "5:filesl{files}e4:name4:film12:piece lengthi16384e6:pieces20:{hashes}"
        )),
        "the file lengths add up to more than 2^64 bytes",
    )?;
    // Duplicate keys: which value a parser takes is up to the parser.
    assert_refused(
        tmp.path(),
        "dup.torrent",
        &raw_torrent(&format!(
            "6:lengthi100e6:lengthi5e4:name5:a.bin12:piece lengthi16384e6:pieces20:{hashes}"
        )),
        "info.length: a dictionary key that appears twice",
    )?;
    Ok(())
}

/// A file that is also the folder of another (`a` and `a/b.mp4`) is refused at parse time
/// (it used to fail later with "File exists", exit 1).
#[test]
fn a_file_that_is_also_a_folder_is_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let file = |path: &[&str]| {
        B::Dict(vec![
            ("length", B::Int(10)),
            ("path", B::List(path.iter().map(bs).collect())),
        ])
    };
    let info = B::Dict(vec![
        ("name", bs("film")),
        ("files", B::List(vec![file(&["a"]), file(&["a", "b.mp4"])])),
        ("piece length", B::Int(16384)),
        ("pieces", B::Bytes(vec![7; 20])),
    ]);
    assert_refused(
        tmp.path(),
        "file-and-folder.torrent",
        &torrent_bytes(info),
        r#""a" is a file and also the folder of "a/b.mp4""#,
    )
}

/// Bidirectional-text controls in a torrent name (U+202E shows `film\u{202e}4pm.exe` as
/// `filmexe.mp4`) and C1 controls are refused, and never printed raw.
#[test]
fn bidi_and_c1_controls_in_torrent_names_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    for (i, name) in ["film\u{202e}4pm.exe", "a\u{2067}b.mp4", "a\u{9b}2Jb.mp4"]
        .iter()
        .enumerate()
    {
        let torrent = torrent_bytes(single_file_info(name.as_bytes(), 100, 16384, 20));
        let want = if i < 2 {
            "bidirectional text controls"
        } else {
            "control characters"
        };
        assert_refused(tmp.path(), &format!("name{i}.torrent"), &torrent, want)?;
    }
    // What reached the terminal: no raw control of either kind.
    let path = tmp.path().join("name0.torrent");
    let mut c = kino_quiet(&tmp.path().join("data"));
    c.arg("play").arg(&path);
    let out = run_bounded(c, QUICK)?;
    assert!(
        !out.stderr.contains('\u{202e}') && out.stderr.contains("\\u{202e}"),
        "{out:?}"
    );
    Ok(())
}

/// `kino play /proc/self/pagemap` (size 0 in its metadata, gigabytes when read) is refused
/// after at most the .torrent size limit was read: exit 2.
#[test]
fn unbounded_torrent_files_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut c = kino_quiet(&tmp.path().join("data"));
    c.args(["play", "/proc/self/pagemap"]);
    let out = run_bounded(c, QUICK)?;
    assert_user_error(&out, "play /proc/self/pagemap", true);
    assert!(
        out.stderr
            .contains("is larger than the 16777216 bytes a .torrent file may have"),
        "{out:?}"
    );
    Ok(())
}

/// A player killed with SIGKILL mid-download resumes from what it verified.
///
/// Method: the first seeder is capped at 2 MiB/s so the 40 MiB download takes a while; once
/// at least 8 MiB of whole pieces equal to the source are on disk the player is killed -9,
/// and we count the bytes of whole, correct pieces it left (`kept`). The first seeder is then
/// stopped and a second one, with a fresh data folder (so its SHARED total counts this run
/// only) and no cap, is the only peer of the restarted player. If the restart re-downloaded
/// verified pieces, the second seeder would upload the whole 40 MiB; we require it uploaded
/// at most `size - kept` plus one MiB of slack (status rounding), and more than zero.
#[test]
fn restart_resumes_after_kill_9() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film = make_film(root, "long.mp4", 40 * MIB as usize, 3)?;
    let size = film.data.len() as u64;
    let viewer = root.join("viewer");

    let mut s1 = start_seeder(&root.join("seed1"), &["--upload-limit", "2048"], &film)?;
    let mut p1 = start_player(&viewer, &[], &film, &[s1.addr])?;
    let file = cache_file(&viewer, &film);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if good_piece_bytes(&file, &film.data) >= 8 * MIB {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the player made no progress: {:?}",
            status(&viewer)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // `kino status` already lists the partial film.
    let partial = row(&viewer, &film)?;
    assert!(partial.on_disk > 0, "{partial:?}");
    p1.kill9()?;
    let kept = good_piece_bytes(&file, &film.data);
    ensure!(
        kept < size,
        "the download finished before the kill; slow the seeder down"
    );
    s1.proc.terminate()?;

    let seed2 = root.join("seed2");
    let mut s2 = start_seeder(&seed2, &[], &film)?;
    let mut p2 = start_player(&viewer, &[], &film, &[s2.addr])?;
    wait_file_eq(&file, &film.data, Duration::from_secs(180))?;
    assert_eq!(p2.terminate()?, Some(0));
    assert_eq!(s2.proc.terminate()?, Some(0));
    let uploaded = row(&seed2, &film)?.shared;
    eprintln!("kept {kept} of {size} bytes; second seeder uploaded {uploaded}");
    assert!(uploaded > 0, "the second seeder sent nothing?");
    assert!(
        uploaded <= size - kept + MIB,
        "verified pieces were fetched again: {kept} bytes were kept, but {uploaded} of \
         {size} were uploaded after the restart"
    );
    assert_eq!(std::fs::read(&file)?, film.data);
    Ok(())
}

/// `--no-share` uploads nothing: not as a seeder, and not as a viewer who has the film.
#[test]
fn no_share_uploads_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();

    // A seeder with --no-share serves nothing.
    let film = make_film(root, "a.mp4", 3 * MIB as usize, 4)?;
    let a_data = root.join("A");
    let mut a = start_seeder(&a_data, &["--no-share"], &film)?;
    let out = fetch(&root.join("B"), &film, &root.join("outB"), &[a.addr], 5)?;
    assert_stalled(&out, "fetch from a --no-share seeder");
    assert_eq!(a.proc.terminate()?, Some(0));
    let r = row(&a_data, &film)?;
    assert_eq!(r.shared, 0, "{r:?}");
    // Control: the same seeder with sharing on serves the same downloader.
    let mut a = start_seeder(&a_data, &[], &film)?;
    let out = fetch(&root.join("B"), &film, &root.join("outB"), &[a.addr], 30)?;
    assert_eq!(out.code, Some(0), "control fetch: {out:?}");
    assert_eq!(std::fs::read(root.join("outB/a.mp4"))?, film.data);
    a.proc.terminate()?;

    // A viewer with --no-share that has the whole film does not pass it on.
    let film = make_film(root, "b.mp4", 3 * MIB as usize, 5)?;
    let mut s = start_seeder(&root.join("S"), &[], &film)?;
    let v_data = root.join("V");
    let port = free_port()?;
    let mut v = start_player(
        &v_data,
        &["--no-share", "--listen-port", &port.to_string()],
        &film,
        &[s.addr],
    )?;
    wait_file_eq(
        &cache_file(&v_data, &film),
        &film.data,
        Duration::from_secs(120),
    )?;
    // Only the viewer has the film now (no PEX route to the seeder).
    s.proc.terminate()?;
    let out = fetch(
        &root.join("C"),
        &film,
        &root.join("outC"),
        &[loopback(port)],
        5,
    )?;
    assert_stalled(&out, "fetch from a --no-share viewer");
    assert_eq!(v.terminate()?, Some(0));
    assert_eq!(row(&v_data, &film)?.shared, 0);
    // Control: the same viewer with sharing on serves it.
    let port = free_port()?;
    let mut v = start_player(&v_data, &["--listen-port", &port.to_string()], &film, &[])?;
    let out = fetch(
        &root.join("C"),
        &film,
        &root.join("outC"),
        &[loopback(port)],
        30,
    )?;
    assert_eq!(out.code, Some(0), "control fetch: {out:?}");
    assert_eq!(std::fs::read(root.join("outC/b.mp4"))?, film.data);
    v.terminate()?;
    Ok(())
}

/// A seeder with `--ratio-limit 1` stops sharing once it uploaded the film's size.
#[test]
fn ratio_limit_stops_sharing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film = make_film(root, "r.mp4", 4 * MIB as usize, 6)?;
    let a_data = root.join("A");
    let mut a = start_seeder(&a_data, &["--ratio-limit", "1"], &film)?;
    let out = fetch(&root.join("B"), &film, &root.join("outB"), &[a.addr], 30)?;
    assert_eq!(out.code, Some(0), "first fetch: {out:?}");
    assert_eq!(std::fs::read(root.join("outB/r.mp4"))?, film.data);

    // The policy runs every 2 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = row(&a_data, &film)?;
        if r.state == "stopped" {
            break r;
        }
        ensure!(Instant::now() < deadline, "sharing never stopped: {r:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(r.ratio >= 1.0, "{r:?}");
    assert!(r.shared >= film.data.len() as u64, "{r:?}");

    let out = fetch(&root.join("C"), &film, &root.join("outC"), &[a.addr], 5)?;
    assert_stalled(&out, "fetch after the ratio limit");
    assert_eq!(a.proc.terminate()?, Some(0));
    assert_eq!(row(&a_data, &film)?.state, "stopped");
    Ok(())
}

/// With room for two films, playing a third evicts the least recently watched one.
#[test]
fn cache_eviction_is_least_recently_watched() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let films: Vec<Film> = (1..=3)
        .map(|i| make_film(root, &format!("film{i}.mp4"), 3 * MIB as usize, 10 + i))
        .collect::<anyhow::Result<_>>()?;
    let seeders: Vec<Seeder> = films
        .iter()
        .enumerate()
        .map(|(i, f)| start_seeder(&root.join(format!("seed{i}")), &[], f))
        .collect::<anyhow::Result<_>>()?;
    let v = root.join("viewer");
    // 7 MiB holds two 3 MiB films, not three.
    let flags = ["--cache-limit", "7"];
    // Watch times have a resolution of one second: let a second pass between plays.
    let pause = || std::thread::sleep(Duration::from_millis(1100));
    for i in [0, 1, 0, 2] {
        pause();
        play_to_completion(&v, &flags, &films[i], &[seeders[i].addr])?;
    }
    let rows = status(&v)?;
    assert!(
        rows.contains_key(&films[0].infohash),
        "film 1 evicted: {rows:?}"
    );
    assert!(
        rows.contains_key(&films[2].infohash),
        "film 3 evicted: {rows:?}"
    );
    assert!(
        !rows.contains_key(&films[1].infohash),
        "film 2 (least recently watched) kept: {rows:?}"
    );
    assert!(!v.join("media").join(&films[1].infohash).exists());
    assert_eq!(std::fs::read(cache_file(&v, &films[0]))?, films[0].data);
    assert_eq!(std::fs::read(cache_file(&v, &films[2]))?, films[2].data);
    Ok(())
}

/// In process: a torrent with a live play guard is never evicted, even when it is the least
/// recently watched; once the guard is gone it is the first to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_never_evicts_what_is_playing() -> anyhow::Result<()> {
    use kino_engine::{AddOptions, Placement, TorrentSource};
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let seeder = common::engine(&root.join("seed"), |_| {}).await?;
    let mut films = Vec::new();
    for i in 0..4u64 {
        let path = root.join(format!("src{i}/film{i}.mp4"));
        write_random(&path, 3 * MIB as usize, 20 + i)?;
        let c = kino_engine::create::create_torrent(&path, Some(PIECE as u32), |_, _| {})?;
        tokio::time::timeout(Duration::from_secs(60), seeder.seed_created(&c)).await??;
        films.push(c.info);
    }
    let addr = common::engine_addr(&seeder)?;
    let viewer = common::engine(&root.join("viewer"), |c| {
        c.share.cache_limit_bytes = Some(7 * MIB);
    })
    .await?;
    let add = |i: usize| {
        let viewer = viewer.clone();
        let info = films[i].clone();
        async move {
            let t = viewer
                .add(
                    &TorrentSource::Metainfo(info),
                    AddOptions {
                        peers: vec![addr],
                        placement: Placement::Cache,
                    },
                )
                .await?;
            tokio::time::timeout(Duration::from_secs(60), t.wait_until_completed()).await??;
            anyhow::Ok(t.infohash())
        }
    };
    let present = |ih: &kino_engine::Id20| {
        let hex = kino_engine::infohash_hex(ih);
        anyhow::Ok((
            viewer.torrent(ih).is_some(),
            viewer.store().torrent(&hex)?.is_some(),
            viewer.media_dir().join(&hex).exists(),
        ))
    };
    let pause = || tokio::time::sleep(Duration::from_millis(1100));

    let ih0 = add(0).await?;
    let guard = viewer.play_guard(&ih0)?; // film 0 is watched first: the oldest
    pause().await;
    let ih1 = add(1).await?;
    pause().await;
    let ih2 = add(2).await?; // 9 MiB > 7 MiB: one must go, and film 0 is playing
    viewer.enforce_cache_limit().await?;
    assert_eq!(
        present(&ih0)?,
        (true, true, true),
        "the playing film was evicted"
    );
    assert_eq!(
        present(&ih1)?,
        (false, false, false),
        "film 1 should be evicted"
    );
    assert_eq!(present(&ih2)?, (true, true, true));

    // Control: without the guard, film 0 is the least recently watched and goes first.
    drop(guard);
    pause().await;
    let ih3 = add(3).await?;
    viewer.enforce_cache_limit().await?;
    assert_eq!(
        present(&ih0)?,
        (false, false, false),
        "film 0 should go now"
    );
    assert_eq!(present(&ih2)?, (true, true, true));
    assert_eq!(present(&ih3)?, (true, true, true));

    common::shutdown_checked(viewer).await?;
    common::shutdown_checked(seeder).await?;
    Ok(())
}

/// A film larger than the whole cache limit plays: `kino play` says so, the film downloads
/// whole and stays cached after the player exits (it is the film watched last), and it is
/// the first to go once another film is watched. (It used to be evicted on arrival: "torrent
/// not managed", exit 1.)
#[test]
fn a_film_larger_than_the_cache_plays() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let big = make_film(root, "big.mp4", 3 * MIB as usize, 41)?;
    let small = make_film(root, "small.mp4", 512 * 1024, 42)?;
    let s_big = start_seeder(&root.join("seed-big"), &[], &big)?;
    let s_small = start_seeder(&root.join("seed-small"), &[], &small)?;
    let v = root.join("viewer");
    let flags = ["--cache-limit", "1"]; // 1 MiB, less than the 3 MiB film

    let stderr_path = root.join("play-big.stderr");
    let mut c = kino(&v);
    c.args(flags)
        .arg("play")
        .arg(&big.torrent)
        .arg("--peer")
        .arg(s_big.addr.to_string())
        .stderr(std::fs::File::create(&stderr_path)?);
    let mut p = KinoProcess::spawn(c)?;
    p.wait_line(Duration::from_secs(60), |l| l.starts_with("http://"))?;
    wait_file_eq(&cache_file(&v, &big), &big.data, Duration::from_secs(120))?;
    assert_eq!(p.terminate()?, Some(0), "play must exit cleanly on SIGTERM");
    let stderr = std::fs::read_to_string(&stderr_path)?;
    assert!(
        stderr.contains(
            "warning: this film (3.0 MiB) is larger than the cache limit (1.0 MiB): it plays, \
             and is evicted first when you watch something else"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("not managed"), "{stderr}");
    // Kept after the player exits: it is the film watched last.
    assert_eq!(row(&v, &big)?.size, 3 * MIB);
    assert_eq!(std::fs::read(cache_file(&v, &big))?, big.data);

    std::thread::sleep(Duration::from_millis(1100)); // watch times have 1 s resolution
    play_to_completion(&v, &flags, &small, &[s_small.addr])?;
    let rows = status(&v)?;
    assert!(
        !rows.contains_key(&big.infohash),
        "the big film should go first: {rows:?}"
    );
    assert!(!v.join("media").join(&big.infohash).exists());
    assert!(rows.contains_key(&small.infohash), "{rows:?}");
    assert_eq!(std::fs::read(cache_file(&v, &small))?, small.data);
    Ok(())
}

/// In process: `add_for_playing` returns the film already pinned, so the cache limit it
/// enforces cannot evict it, whatever its size; the guard says it is over the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_for_playing_pins_a_film_larger_than_the_cache() -> anyhow::Result<()> {
    use kino_engine::{AddOptions, CacheOverflow, Placement, TorrentSource};
    use tokio::io::AsyncReadExt;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let seeder = common::engine(&root.join("seed"), |_| {}).await?;
    let mut films = Vec::new();
    for i in 0..2u64 {
        let path = root.join(format!("src{i}/film{i}.mp4"));
        let data = write_random(&path, 3 * MIB as usize, 50 + i)?;
        let c = kino_engine::create::create_torrent(&path, Some(PIECE as u32), |_, _| {})?;
        tokio::time::timeout(Duration::from_secs(60), seeder.seed_created(&c)).await??;
        films.push((c.info, data));
    }
    let addr = common::engine_addr(&seeder)?;
    let viewer = common::engine(&root.join("viewer"), |c| {
        c.share.cache_limit_bytes = Some(MIB);
    })
    .await?;
    let play = |i: usize| {
        let viewer = viewer.clone();
        let source = TorrentSource::Metainfo(films[i].0.clone());
        async move {
            let opts = AddOptions {
                peers: vec![addr],
                placement: Placement::Cache,
            };
            viewer.add_for_playing(&source, opts).await
        }
    };

    let (t0, guard) = play(0).await?;
    let ih0 = t0.infohash();
    assert_eq!(
        guard.over_cache_limit(),
        Some(CacheOverflow {
            film_bytes: 3 * MIB,
            limit_bytes: MIB
        })
    );
    assert!(viewer.torrent(&ih0).is_some(), "evicted on arrival");
    let mut reader = viewer.open_stream(&ih0, 0).await?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), reader.read_to_end(&mut got)).await??;
    assert!(got == films[0].1, "the film did not play whole");
    drop(reader);
    viewer.enforce_cache_limit().await?;
    assert!(viewer.torrent(&ih0).is_some(), "evicted while playing");
    // Without the guard it stays too: it is the film watched last.
    drop(guard);
    viewer.enforce_cache_limit().await?;
    assert!(
        viewer.torrent(&ih0).is_some(),
        "evicted while nothing else was watched"
    );

    // Watching another film evicts it first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (t1, guard1) = play(1).await?;
    assert!(viewer.torrent(&ih0).is_none(), "the first film should go");
    assert!(
        !viewer
            .media_dir()
            .join(kino_engine::infohash_hex(&ih0))
            .exists()
    );
    assert!(viewer.torrent(&t1.infohash()).is_some());

    drop(guard1);
    common::shutdown_checked(viewer).await?;
    common::shutdown_checked(seeder).await?;
    Ok(())
}

/// `kino status` shows what was played (size, bytes on disk, when watched) and what a seeder
/// shared.
#[test]
fn status_shows_cache_and_sharing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film = make_film(root, "s.mp4", 3 * MIB as usize, 7)?;
    let v = root.join("viewer");
    let s_data = root.join("seed");

    let mut c = kino(&v);
    c.arg("status");
    let out = run_bounded(c, QUICK)?;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("nothing cached or shared yet"),
        "{out:?}"
    );

    let mut s = start_seeder(&s_data, &[], &film)?;
    play_to_completion(&v, &[], &film, &[s.addr])?;
    let r = row(&v, &film)?;
    assert_eq!(r.size, 3 * MIB, "{r:?}");
    assert!(r.on_disk > 0 && r.on_disk <= 3 * MIB, "{r:?}");
    assert_eq!(r.state, "cached", "{r:?}");
    assert!(r.watched.ends_with(" ago"), "watched time missing: {r:?}");
    assert_eq!(r.name, "s.mp4");

    assert_eq!(s.proc.terminate()?, Some(0));
    let r = row(&s_data, &film)?;
    assert_eq!(r.state, "seed", "{r:?}");
    assert_eq!(r.watched, "never", "{r:?}");
    assert!(r.shared > 0, "the seeder shared nothing: {r:?}");
    assert!(r.ratio > 0.0, "{r:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Data safety: Kino never writes to the user's data unless told to (issue 12: D1, D6, D7)
// ---------------------------------------------------------------------------------------

/// Everything under `root`: each entry's relative path, and for files their bytes and
/// modification time (to prove that nothing was written, resized or touched).
type Snapshot = BTreeMap<PathBuf, Option<(Vec<u8>, std::time::SystemTime)>>;

fn snapshot(root: &Path) -> anyhow::Result<Snapshot> {
    let mut out = BTreeMap::new();
    for rel in listing(root)? {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p)?;
        let content = if m.is_file() {
            Some((std::fs::read(&p)?, m.modified()?))
        } else {
            None
        };
        out.insert(rel, content);
    }
    Ok(out)
}

/// `kino create DIR -o OUT --piece-length N`; returns the infohash.
fn create_torrent(data: &Path, dir: &Path, out: &Path, piece: u64) -> anyhow::Result<String> {
    let mut c = kino(data);
    c.arg("create")
        .arg(dir)
        .arg("-o")
        .arg(out)
        .args(["--piece-length", &piece.to_string()]);
    let out = run_bounded(c, Duration::from_secs(120))?;
    ensure!(out.code == Some(0), "kino create failed: {out:?}");
    Ok(out
        .stdout
        .trim()
        .strip_prefix("magnet:?xt=urn:btih:")
        .and_then(|s| s.get(..40))
        .context("create printed no magnet")?
        .to_owned())
}

/// D1: `kino seed X.torrent --data DIR` with the wrong DIR. DIR holds files with the
/// torrent's names but other content (a 4000-byte catalog.json as in the report; one file
/// identical, so some pieces match). The seed is refused (exit 2, one line saying how many
/// pieces match, no "listening on"), every file in DIR is byte-identical with the same mtime,
/// and nothing is created there. The right folder then seeds.
#[test]
fn seed_never_writes_to_the_data_it_seeds() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    // The torrent: catalog.json (4000 B) + posters/a.jpg (30000 B) + subs/a.srt (2000 B),
    // in pieces of 16 KiB: piece 0 = catalog.json + the start of a.jpg, piece 1 = a.jpg
    // only, piece 2 = the end of a.jpg + a.srt.
    let src = root.join("src/cat");
    write_random(&src.join("catalog.json"), 4000, 31)?;
    let poster = write_random(&src.join("posters/a.jpg"), 30000, 32)?;
    write_random(&src.join("subs/a.srt"), 2000, 33)?;
    let torrent = root.join("cat.torrent");
    create_torrent(&root.join("create-data"), &src, &torrent, 16384)?;

    // The wrong folder: the same names, other bytes (the poster alone is identical).
    let wrong = root.join("wrong");
    write_random(&wrong.join("catalog.json"), 4000, 41)?;
    std::fs::create_dir_all(wrong.join("posters"))?;
    std::fs::write(wrong.join("posters/a.jpg"), &poster)?;
    write_random(&wrong.join("subs/a.srt"), 1000, 43)?;
    write_random(&wrong.join("notes.txt"), 10, 44)?;
    let before = snapshot(&wrong)?;

    let data = root.join("data");
    let mut c = kino_quiet(&data);
    c.arg("seed").arg(&torrent).arg("--data").arg(&wrong);
    let out = run_bounded(c, Duration::from_secs(60))?;
    assert_user_error(&out, "seed from the wrong folder", false);
    let line = out.stderr.lines().last().unwrap_or_default();
    assert!(
        line.contains(&format!("the data in {} does not match", wrong.display()))
            && line.contains("cat.torrent")
            && line.contains("1 of 3 pieces match")
            && line.contains("nothing was written")
            && line.contains("--data"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("listening on"), "{out:?}");
    assert_eq!(snapshot(&wrong)?, before, "the wrong folder was changed");

    // A folder that does not hold the content at all: 0 pieces, and it is not created.
    let missing = root.join("missing");
    let mut c = kino_quiet(&data);
    c.arg("seed").arg(&torrent).arg("--data").arg(&missing);
    let out = run_bounded(c, Duration::from_secs(60))?;
    assert_user_error(&out, "seed from a missing folder", false);
    assert!(out.stderr.contains("0 of 3 pieces match"), "{out:?}");
    assert!(!missing.exists(), "seeding created {}", missing.display());

    // Control: the right folder seeds, and is not changed either.
    let src_before = snapshot(&src)?;
    let mut c = kino(&data);
    c.arg("seed").arg(&torrent).arg("--data").arg(&src);
    let mut p = KinoProcess::spawn(c)?;
    p.wait_line(Duration::from_secs(60), |l| l.starts_with("listening on "))?;
    assert_eq!(p.terminate()?, Some(0));
    assert_eq!(snapshot(&src)?, src_before, "seeding changed its own data");
    Ok(())
}

/// D7: `kino fetch X -o DIR` where DIR holds an unrelated file with the torrent's name: refused
/// (exit 2, the file named, `--overwrite` suggested) and the file is untouched; with
/// `--overwrite` the download replaces it. Data that already is the torrent's is used as is.
#[test]
fn fetch_never_overwrites_an_unrelated_file() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film = make_film(root, "f.mp4", 2 * MIB as usize, 51)?;
    let mut s = start_seeder(&root.join("seed"), &[], &film)?;

    let out_dir = root.join("out");
    write_random(&out_dir.join("f.mp4"), 4000, 52)?;
    let before = snapshot(&out_dir)?;
    let data = root.join("viewer");
    let out = fetch(&data, &film, &out_dir, &[s.addr], 30)?;
    assert_user_error(&out, "fetch over an unrelated file", false);
    let line = out.stderr.lines().last().unwrap_or_default();
    assert!(
        line.contains(&out_dir.join("f.mp4").canonicalize()?.display().to_string())
            && line.contains("already exists")
            && line.contains("--overwrite"),
        "{out:?}"
    );
    assert_eq!(
        snapshot(&out_dir)?,
        before,
        "the unrelated file was changed"
    );

    // With --overwrite, the same command replaces it.
    let mut c = kino(&data);
    c.arg("fetch")
        .arg(&film.torrent)
        .arg("-o")
        .arg(&out_dir)
        .arg("--overwrite")
        .args(["--peer", &s.addr.to_string()]);
    let out = run_bounded(c, Duration::from_secs(120))?;
    assert_eq!(out.code, Some(0), "fetch --overwrite: {out:?}");
    assert_eq!(std::fs::read(out_dir.join("f.mp4"))?, film.data);
    assert_eq!(s.proc.terminate()?, Some(0));

    // A folder already holding the torrent's data, unknown to this Kino: used as is, finished
    // at once with no peer at all.
    let have = root.join("have");
    std::fs::create_dir_all(&have)?;
    std::fs::write(have.join("f.mp4"), &film.data)?;
    let before = snapshot(&have)?;
    let out = fetch(&root.join("other"), &film, &have, &[], 5)?;
    assert_eq!(out.code, Some(0), "fetch into complete data: {out:?}");
    assert_eq!(snapshot(&have)?, before);
    Ok(())
}

/// D7's other half: an interrupted `kino fetch` resumes into the same folder (the engine's
/// record says it was downloading there), without `--overwrite`.
#[test]
fn fetch_resumes_its_own_download() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let film = make_film(root, "r.mp4", 16 * MIB as usize, 61)?;
    let data = root.join("viewer");
    let out_dir = root.join("out");
    let file = out_dir.join("r.mp4");
    {
        // A slow seeder, so the first fetch is stopped halfway.
        let s = start_seeder(&root.join("seed1"), &["--upload-limit", "2048"], &film)?;
        let mut c = kino(&data);
        c.arg("fetch")
            .arg(&film.torrent)
            .arg("-o")
            .arg(&out_dir)
            .args(["--peer", &s.addr.to_string()]);
        let mut p = KinoProcess::spawn(c)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while good_piece_bytes(&file, &film.data) < 2 * MIB {
            ensure!(
                Instant::now() < deadline,
                "the first fetch made no progress"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p.kill9()?;
    }
    let kept = good_piece_bytes(&file, &film.data);
    ensure!(kept < film.data.len() as u64, "finished before the kill");

    let s = start_seeder(&root.join("seed2"), &[], &film)?;
    let out = fetch(&data, &film, &out_dir, &[s.addr], 60)?;
    assert_eq!(out.code, Some(0), "the resumed fetch was refused: {out:?}");
    assert_eq!(std::fs::read(&file)?, film.data);
    Ok(())
}

/// A folder of `n` small files (100 to 1100 bytes each) in 10 sub-folders.
fn many_files(dir: &Path, n: usize) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    (0..n)
        .map(|i| {
            let rel = PathBuf::from(format!("d{}/f{i:04}.bin", i % 10));
            let data = write_random(&dir.join(&rel), 100 + (i * 37) % 1000, 1000 + i as u64)?;
            Ok((rel, data))
        })
        .collect()
}

/// `kino ARGS` under `ulimit -n LIMIT` (soft and hard: `kino` cannot raise it back).
fn kino_with_nofile(data: &Path, limit: u32) -> Command {
    let inner = kino(data);
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// D6: a torrent with 3000 files downloads in a process whose open-file limit is 256 (soft
/// and hard): librqbit's own storage opened every file at once and failed with "Too many open
/// files", leaving about a thousand empty files behind.
#[test]
fn torrents_with_more_files_than_the_open_file_limit_download() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let src = root.join("many");
    let files = many_files(&src, 3000)?;
    let torrent = root.join("many.torrent");
    create_torrent(&root.join("create-data"), &src, &torrent, 64 * 1024)?;
    let mut c = kino(&root.join("seed"));
    c.arg("seed").arg(&torrent).arg("--data").arg(&src);
    let mut seeder = KinoProcess::spawn(c)?;
    let addr = parse_listen_line(
        &seeder.wait_line(Duration::from_secs(120), |l| l.starts_with("listening on "))?,
    )?;

    // The limit really applies in the child.
    let probe = Command::new("sh")
        .args(["-c", "ulimit -n 256 && ulimit -Hn"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "256");

    let out_dir = root.join("out");
    let mut c = kino_with_nofile(&root.join("viewer"), 256);
    c.arg("fetch").arg(&torrent).arg("-o").arg(&out_dir).args([
        "--peer",
        &addr.to_string(),
        "--stall-timeout",
        "60",
    ]);
    let out = run_bounded(c, Duration::from_secs(300))?;
    assert_eq!(out.code, Some(0), "fetch under ulimit -n 256: {out:?}");
    for (rel, data) in &files {
        let got = std::fs::read(out_dir.join("many").join(rel))
            .with_context(|| format!("{} missing", rel.display()))?;
        assert!(&got == data, "{} differs", rel.display());
    }
    assert_eq!(seeder.terminate()?, Some(0));
    Ok(())
}

/// D6: an add that fails leaves nothing behind. A 3000-file download refused because one of
/// its files already exists (unrelated) in the output folder, under the same low open-file
/// limit, creates no file and no folder at all.
#[test]
fn a_failed_add_leaves_no_files_behind() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let src = root.join("many");
    many_files(&src, 3000)?;
    let torrent = root.join("many.torrent");
    create_torrent(&root.join("create-data"), &src, &torrent, 64 * 1024)?;

    let out_dir = root.join("out");
    write_random(&out_dir.join("many/d9/f2999.bin"), 77, 9)?;
    let before = snapshot(&out_dir)?;
    let mut c = kino_with_nofile(&root.join("viewer"), 256);
    c.env_remove("KINO_LOG")
        .arg("fetch")
        .arg(&torrent)
        .arg("-o")
        .arg(&out_dir)
        .args(["--stall-timeout", "5"]);
    let out = run_bounded(c, Duration::from_secs(120))?;
    assert_user_error(&out, "fetch over an unrelated file", false);
    assert!(out.stderr.contains("f2999.bin"), "{out:?}");
    assert_eq!(
        snapshot(&out_dir)?,
        before,
        "the failed add left files behind"
    );
    Ok(())
}
