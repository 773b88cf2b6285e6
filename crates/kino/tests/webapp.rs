//! The web app end to end: `kino demo` (local DHT testnet, demo publisher, viewer subscribed)
//! serving the app, then
//! - API tests over raw HTTP: foreign Host refused, writes without the page's token refused,
//!   no CORS, security headers, stable `{error, message}` errors, hostile catalog text returned
//!   as data and never put in HTML by the server, subtitles as WebVTT; the demo never writes
//!   the user's config file; external players get the bound address (a stand-in `mpv`);
//! - the browser test: tests/browser/run.mjs drives Debian's headless Chromium through
//!   playwright-core (home, search, title pages, play WebM and MP4, subtitles, seek, resume,
//!   settings kept across a restart). Screenshots go to target/test-artifacts/browser/.
//!
//! Everything stays on 127.0.0.1. Waits are bounded; nothing asserts on elapsed time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use common::{KinoProcess, kino_with_empty_config, repo_root};

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`; `host` is sent as given.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.take(8 * 1024 * 1024).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status")?;
    // Chunked bodies (JSON answers of unknown length) are decoded simply.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    Ok(Resp {
        status,
        headers: head.to_owned(),
        body,
    })
}

struct Demo {
    process: KinoProcess,
    addr: SocketAddr,
    url: String,
}

fn start_demo(data_dir: &Path) -> anyhow::Result<Demo> {
    spawn_demo(kino_with_empty_config(data_dir)?)
}

/// Starts `kino demo` from `cmd` (a [`kino_with_empty_config`] command, maybe changed).
fn spawn_demo(mut cmd: Command) -> anyhow::Result<Demo> {
    cmd.args(["demo", "--with-hostile-title"]);
    let mut process = KinoProcess::spawn(cmd)?;
    let line = process.wait_line(Duration::from_secs(120), |l| l.starts_with("Kino app: "))?;
    let url = line.trim_start_matches("Kino app: ").trim().to_owned();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("bad URL {url}"))?;
    Ok(Demo { process, addr, url })
}

fn token_of(demo: &Demo) -> anyhow::Result<String> {
    let page = http(demo.addr, "GET", "/", &demo.addr.to_string(), &[], None)?;
    let marker = "name=\"kino-token\" content=\"";
    let start = page.body.find(marker).context("no token meta")? + marker.len();
    Ok(page.body[start..start + 64].to_owned())
}

#[test]
fn api_security_and_catalog_text() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let demo = start_demo(dir.path())?;
    let a = demo.addr;
    let host = a.to_string();

    // Foreign Host: refused on pages, API and streams alike.
    for path in ["/", "/api/titles", "/assets/app.js"] {
        let r = http(a, "GET", path, "evil.example", &[], None)?;
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.json()?["error"], "forbidden_host");
    }
    let r = http(
        a,
        "GET",
        "/api/titles",
        "localhost.evil.example:80",
        &[],
        None,
    )?;
    assert_eq!(r.status, 403);

    // The page: CSP, no framing, the token in a meta tag, no catalog text.
    let page = http(a, "GET", "/", &host, &[], None)?;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").context("CSP")?;
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("http"));
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(
        !page.body.contains("Hostile"),
        "the server never renders catalog text"
    );
    let token = token_of(&demo)?;
    assert_eq!(token.len(), 64);

    // Catalog text with <script> is returned as data, verbatim (JSON-escaped only).
    let titles = http(a, "GET", "/api/titles?q=hostile", &host, &[], None)?;
    assert_eq!(titles.status, 200);
    assert_eq!(
        titles.header("content-type").as_deref(),
        Some("application/json")
    );
    let t = titles.json()?;
    let hostile = &t["titles"][0];
    assert_eq!(hostile["id"], "hostile-title");
    assert!(
        hostile["title"]
            .as_str()
            .is_some_and(|s| s.starts_with("<script>"))
    );

    // Writes need the token; cross-site and foreign origins are refused even with it.
    let settings =
        r#"{"share_enabled":true,"upload_limit_kib":64,"ratio_limit":2,"cache_limit_mib":0}"#;
    let r = http(a, "PUT", "/api/settings", &host, &[], Some(settings))?;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()?["error"], "csrf");
    assert!(r.json()?["message"].as_str().is_some_and(|m| !m.is_empty()));
    let wrong = "0".repeat(64);
    let r = http(
        a,
        "PUT",
        "/api/settings",
        &host,
        &[("x-kino-token", &wrong)],
        Some(settings),
    )?;
    assert_eq!(r.status, 403);
    let r = http(
        a,
        "PUT",
        "/api/settings",
        &host,
        &[("x-kino-token", &token), ("Origin", "http://evil.example")],
        Some(settings),
    )?;
    assert_eq!(r.status, 403);
    let r = http(
        a,
        "POST",
        "/api/publishers",
        &host,
        &[],
        Some(r#"{"address":"kino:x"}"#),
    )?;
    assert_eq!(r.status, 403, "subscribe without the token");
    let r = http(
        a,
        "PUT",
        "/api/settings",
        &host,
        &[
            ("x-kino-token", &token),
            ("Origin", &format!("http://{host}")),
        ],
        Some(settings),
    )?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()?["settings"]["upload_limit_kib"], 64);

    // A relative data folder is refused (the demo never saves one at all:
    // demo_never_writes_the_users_config; saving is tested in kino-server's tests/http.rs
    // and config.rs).
    let r = http(
        a,
        "PUT",
        "/api/settings/data-dir",
        &host,
        &[("x-kino-token", &token)],
        Some(r#"{"path":"relative/films"}"#),
    )?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()?["error"], "invalid_input");

    // No CORS, whatever the Origin.
    let r = http(
        a,
        "GET",
        "/api/titles",
        &host,
        &[("Origin", "http://evil.example")],
        None,
    )?;
    assert!(r.header("access-control-allow-origin").is_none());
    let r = http(
        a,
        "OPTIONS",
        "/api/settings",
        &host,
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        None,
    )?;
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(r.header("access-control-allow-methods").is_none());

    // Stable errors.
    let r = http(a, "GET", "/api/nope", &host, &[], None)?;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()?["error"], "not_found");
    let r = http(a, "GET", "/api/titles/zz/zz", &host, &[], None)?;
    assert_eq!(r.status, 404);
    let r = http(
        a,
        "POST",
        "/api/history",
        &host,
        &[("x-kino-token", &token)],
        Some(&format!(
            r#"{{"key":"{}","id":"test-card","position":-5}}"#,
            hostile["key"].as_str().unwrap_or_default()
        )),
    )?;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()?["error"], "invalid_input");

    // Subtitles as strict WebVTT; the title page data names codecs and verdicts.
    let key = hostile["key"].as_str().context("key")?;
    let r = http(
        a,
        "GET",
        &format!("/api/subtitles/{key}/test-card/0"),
        &host,
        &[],
        None,
    )?;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/vtt"))
    );
    assert!(r.body.starts_with("WEBVTT\n\n00:00:00.000 --> "));
    let r = http(
        a,
        "GET",
        &format!("/api/titles/{key}/test-card"),
        &host,
        &[],
        None,
    )?;
    let t = r.json()?;
    assert_eq!(t["streams"][0]["browser"]["verdict"], "yes");
    assert_eq!(t["streams"][0]["video_codecs"][0], "vp9");
    let poster = http(
        a,
        "GET",
        &format!("/api/poster/{key}/test-card"),
        &host,
        &[],
        None,
    )?;
    assert_eq!(poster.status, 200);
    assert_eq!(poster.header("content-type").as_deref(), Some("image/png"));
    Ok(())
}

fn browser_ready() -> Option<String> {
    let chromium = Path::new("/usr/bin/chromium");
    let module = repo_root().join("tests/browser/node_modules/playwright-core");
    if !chromium.exists() {
        return Some("/usr/bin/chromium is missing (run scripts/install-test-deps)".into());
    }
    if !module.exists() {
        return Some(
            "tests/browser/node_modules is missing (run scripts/install-test-deps)".into(),
        );
    }
    None
}

fn run_browser(demo: &Demo, phase: &str, artifacts: &Path) -> anyhow::Result<()> {
    let status = Command::new("node")
        .arg("run.mjs")
        .current_dir(repo_root().join("tests/browser"))
        .env("KINO_URL", &demo.url)
        .env("KINO_PHASE", phase)
        .env("KINO_ARTIFACTS", artifacts)
        .status()
        .context("running node (install Node.js)")?;
    if !status.success() {
        bail!(
            "the browser test ({phase}) failed; screenshots in {}",
            artifacts.display()
        );
    }
    Ok(())
}

#[test]
fn browser_end_to_end() -> anyhow::Result<()> {
    if let Some(why) = browser_ready() {
        if std::env::var_os("KINO_REQUIRE_BROWSER").is_some() {
            bail!("{why}");
        }
        eprintln!("skipping the browser test: {why}");
        return Ok(());
    }
    let artifacts: PathBuf = repo_root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&artifacts)?;
    let dir = tempfile::tempdir()?;
    let mut demo = start_demo(dir.path())?;
    run_browser(&demo, "main", &artifacts)?;
    demo.process.terminate()?;
    drop(demo);
    // Same data folder: settings and positions must have survived.
    let demo = start_demo(dir.path())?;
    run_browser(&demo, "restart", &artifacts)?;
    Ok(())
}

/// Issue 12, D21: inside `kino demo`, saving a data folder rewrote the user's own config file.
/// The demo refuses with 409 and leaves the file byte for byte as it was.
#[test]
fn demo_never_writes_the_users_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cmd = kino_with_empty_config(dir.path())?;
    let config = dir.path().join("config.toml");
    let mine = b"# my settings\n[share]\nratio_limit = 2.0 # my note\n";
    std::fs::write(&config, mine)?;
    let demo = spawn_demo(cmd)?;
    let a = demo.addr;
    let host = a.to_string();
    let token = token_of(&demo)?;
    let next = dir.path().join("films-elsewhere");
    let r = http(
        a,
        "PUT",
        "/api/settings/data-dir",
        &host,
        &[("x-kino-token", &token)],
        Some(&serde_json::json!({ "path": next }).to_string()),
    )?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()?["error"], "demo");
    let message = r.json()?["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("the demo does not change your settings"),
        "{message}"
    );
    assert_eq!(std::fs::read(&config)?, mine, "the user's config changed");
    assert!(!dir.path().join("config.toml.tmp").exists());
    assert!(
        !dir.path().join("config-home").exists(),
        "a default config was written"
    );
    assert!(!next.exists());
    // The demo's own sharing settings still save (in the demo's own database).
    let settings =
        r#"{"share_enabled":true,"upload_limit_kib":64,"ratio_limit":2,"cache_limit_mib":0}"#;
    let r = http(
        a,
        "PUT",
        "/api/settings",
        &host,
        &[("x-kino-token", &token)],
        Some(settings),
    )?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(std::fs::read(&config)?, mine, "the user's config changed");
    Ok(())
}

/// Issue 12, D9: `/api/open` put the request's Host into the URL handed to mpv, so a request
/// for 127.0.0.2 sent mpv to 127.0.0.2. The URL is built from Kino's bound address. A stand-in
/// `mpv` first on PATH writes down the arguments it was started with.
#[test]
fn player_urls_use_the_bound_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let args_file = dir.path().join("mpv-args");
    let mpv = bin.join("mpv");
    std::fs::write(
        &mpv,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$KINO_TEST_PLAYER_ARGS.tmp\"\nmv \"$KINO_TEST_PLAYER_ARGS.tmp\" \"$KINO_TEST_PLAYER_ARGS\"\n",
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&mpv, std::fs::Permissions::from_mode(0o755))?;
    }
    let mut cmd = kino_with_empty_config(&dir.path().join("data"))?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.clone()];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths)?)
        .env("KINO_TEST_PLAYER_ARGS", &args_file);
    let demo = spawn_demo(cmd)?;
    let a = demo.addr;
    let host = a.to_string();
    let token = token_of(&demo)?;
    let titles = http(a, "GET", "/api/titles", &host, &[], None)?.json()?;
    let key = titles["titles"][0]["key"]
        .as_str()
        .context("no title")?
        .to_owned();
    let play = http(
        a,
        "POST",
        "/api/play",
        &host,
        &[("x-kino-token", &token)],
        Some(&serde_json::json!({ "key": key, "id": "test-card" }).to_string()),
    )?;
    assert_eq!(play.status, 200, "{}", play.body);
    let play = play.json()?;
    let ih = play["infohash"].as_str().context("infohash")?;
    let file = play["file"].as_u64().context("file")?;
    let want = format!("http://{a}/stream/{ih}/{file}");
    let open = serde_json::json!({ "player": "mpv", "infohash": ih, "file": file }).to_string();
    for asked in [
        format!("127.0.0.2:{}", a.port()),
        format!("localhost:{}", a.port()),
    ] {
        let r = http(
            a,
            "POST",
            "/api/open",
            &asked,
            &[("x-kino-token", &token)],
            Some(&open),
        )?;
        assert_eq!(r.status, 200, "Host {asked}: {}", r.body);
        assert_eq!(r.json()?["url"], want.as_str(), "Host {asked}");
        // What the player was started with.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let args = loop {
            if let Ok(args) = std::fs::read_to_string(&args_file) {
                break args;
            }
            if std::time::Instant::now() > deadline {
                bail!("the stand-in mpv was not started within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(args, format!("{want}\n"), "Host {asked}");
        std::fs::remove_file(&args_file)?;
    }
    Ok(())
}
