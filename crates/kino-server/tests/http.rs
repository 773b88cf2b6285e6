//! The server's defences over real HTTP on 127.0.0.1, replaying issue 12: the Host and Origin
//! checks compare the port with the bound one, every route (streams and `/health` included)
//! carries the security headers, unknown paths and wrong methods answer JSON errors, and a
//! data folder is saved only if it is a writable folder of the user's own.
//!
//! Each test serves a web app (and the plain stream router of `kino play`) over an engine
//! with no network of its own; every request has a read timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kino_engine::{Engine, EngineConfig};
use kino_server::security::Token;
use kino_server::{AppOptions, DataDirSaving, Server, WebApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A well-formed infohash no engine holds.
const UNKNOWN_IH: &str = "0000000000000000000000000000000000000001";

struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> R<serde_json::Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("not JSON ({e}): {}", self.body).into())
    }

    /// Asserts the `{error, message}` shape with this status and code.
    fn assert_error(&self, status: u16, code: &str, what: &str) -> R<()> {
        assert_eq!(self.status, status, "{what}: {}{}", self.head, self.body);
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: {}",
            self.head
        );
        let j = self.json()?;
        assert_eq!(j["error"], code, "{what}: {j}");
        assert!(
            j["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {j}"
        );
        Ok(())
    }
}

/// One HTTP/1.1 request with `Connection: close`; `host` is sent as given.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> R<Resp> {
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
    req.push_str(body.unwrap_or(""));
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(1024 * 1024).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            let Some(chunk) = tail.get(..n).filter(|_| n > 0) else {
                break;
            };
            out.push_str(chunk);
            rest = tail.get(n..).unwrap_or("").trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    Ok(Resp {
        status,
        head: head.to_owned(),
        body,
    })
}

/// A web app and the plain stream router (`kino play`'s), each bound on 127.0.0.1, over one
/// engine with no peers, DHT or LSD.
struct Fixture {
    dir: tempfile::TempDir,
    engine: Engine,
    app: WebApp,
    web: Server,
    streams: Server,
    /// Data folders the app handed to its setter.
    saved: Arc<Mutex<Vec<PathBuf>>>,
}

impl Fixture {
    async fn start() -> R<Fixture> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let mut cfg = EngineConfig::new(data.clone());
        cfg.dht = false;
        cfg.local_discovery = false;
        let store = Arc::new(kino_store::Store::open(&data.join("kino.sqlite3"))?);
        let engine = Engine::start(cfg, store).await?;
        let saved = Arc::new(Mutex::new(Vec::new()));
        let record = saved.clone();
        let app = WebApp::new(
            engine.clone(),
            AppOptions {
                token: Some(Token::from_string(TOKEN)),
                data_dir: DataDirSaving::Setter(Arc::new(move |p: &Path| {
                    record
                        .lock()
                        .map_err(|e| e.to_string())?
                        .push(p.to_path_buf());
                    Ok("saved".into())
                })),
                ..AppOptions::default()
            },
        )?;
        let loopback: SocketAddr = "127.0.0.1:0".parse()?;
        let web = Server::bind(loopback, app.router()).await?;
        let streams = Server::bind(loopback, kino_server::router(engine.clone())).await?;
        Ok(Fixture {
            dir,
            engine,
            app,
            web,
            streams,
            saved,
        })
    }

    async fn stop(self) {
        self.web.shutdown().await;
        self.streams.shutdown().await;
        self.app.shutdown().await;
        self.engine.shutdown().await;
    }
}

/// Issue 12, D9: a Host with another port (or none) was served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_port_in_host_is_refused() -> R<()> {
    let f = Fixture::start().await?;
    for server in [&f.web, &f.streams] {
        let addr = server.addr();
        let port = addr.port();
        let other = port.wrapping_add(1).max(1);
        let stream = format!("/stream/{UNKNOWN_IH}/0");
        for host in [
            format!("127.0.0.1:{other}"),
            format!("localhost:{other}"),
            format!("[::1]:{other}"),
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            format!("127.0.0.1:{port}x"),
            format!("127.0.0.1:{port}:{port}"),
            format!("evil.example:{port}"),
        ] {
            for path in ["/health", "/", "/api/info", stream.as_str()] {
                let r = http(addr, "GET", path, &host, &[], None).await?;
                r.assert_error(403, "forbidden_host", &format!("{host} {path}"))?;
            }
        }
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ] {
            let r = http(addr, "GET", "/health", &host, &[], None).await?;
            assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{host}");
        }
    }
    f.stop().await;
    Ok(())
}

/// Issue 12, D16: a write from another local origin (same host, another port) passed the
/// Origin check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_with_another_port_is_refused() -> R<()> {
    let f = Fixture::start().await?;
    let addr = f.web.addr();
    let port = addr.port();
    let host = addr.to_string();
    let other = port.wrapping_add(1).max(1);
    let settings =
        r#"{"share_enabled":true,"upload_limit_kib":64,"ratio_limit":2,"cache_limit_mib":0}"#;
    for origin in [
        format!("http://127.0.0.1:{other}"),
        format!("http://localhost:{other}"),
        format!("http://[::1]:{other}"),
        "http://127.0.0.1".to_owned(),
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
        "null".to_owned(),
    ] {
        let r = http(
            addr,
            "PUT",
            "/api/settings",
            &host,
            &[("x-kino-token", TOKEN), ("Origin", &origin)],
            Some(settings),
        )
        .await?;
        r.assert_error(403, "csrf", &origin)?;
    }
    assert!(
        kino_server::settings::load(f.engine.store())?.is_none(),
        "a refused write changed the settings"
    );
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let r = http(
            addr,
            "PUT",
            "/api/settings",
            &host,
            &[("x-kino-token", TOKEN), ("Origin", &origin)],
            Some(settings),
        )
        .await?;
        assert_eq!(r.status, 200, "{origin}: {}", r.body);
    }
    f.stop().await;
    Ok(())
}

/// Issue 12, D17: `/stream` and `/health` lacked the security headers of the app's pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_has_security_headers() -> R<()> {
    let f = Fixture::start().await?;
    let stream = format!("/stream/{UNKNOWN_IH}/0");
    let mut cases: Vec<(SocketAddr, &str, &str, String)> = Vec::new();
    for server in [&f.web, &f.streams] {
        let a = server.addr();
        cases.push((a, "GET", "/health", a.to_string()));
        cases.push((a, "HEAD", "/health", a.to_string()));
        cases.push((a, "GET", &stream, a.to_string()));
        cases.push((a, "HEAD", &stream, a.to_string()));
        cases.push((a, "GET", "/no/such/page", a.to_string()));
        cases.push((a, "DELETE", "/health", a.to_string()));
        cases.push((a, "GET", "/health", "evil.example".to_owned()));
    }
    let a = f.web.addr();
    for path in ["/", "/api/info", "/assets/app.js", "/api/nope"] {
        cases.push((a, "GET", path, a.to_string()));
    }
    cases.push((a, "POST", "/api/play", a.to_string()));
    for (addr, method, path, host) in &cases {
        let r = http(*addr, method, path, host, &[], None).await?;
        let what = format!("{method} {path} (Host {host}): {}", r.head);
        let csp = r.header("content-security-policy").ok_or(what.clone())?;
        assert_eq!(
            csp,
            kino_server::security::CONTENT_SECURITY_POLICY,
            "{what}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(
            r.header("cross-origin-resource-policy"),
            Some("same-origin"),
            "{what}"
        );
        assert!(r.header("cache-control").is_some(), "{what}");
        assert!(r.header("access-control-allow-origin").is_none(), "{what}");
    }
    f.stop().await;
    Ok(())
}

/// Issue 12, D17: a wrong method (405) and an unknown non-API path (404) answered with an
/// empty body instead of `{error, message}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_answer_json_errors() -> R<()> {
    let f = Fixture::start().await?;
    let stream = format!("/stream/{UNKNOWN_IH}/0");
    for server in [&f.web, &f.streams] {
        let a = server.addr();
        let host = a.to_string();
        for path in ["/nope", "/stream", "/assets", "/healthz", "/stream/x/y/z"] {
            let r = http(a, "GET", path, &host, &[], None).await?;
            r.assert_error(404, "not_found", path)?;
        }
        for (method, path) in [
            ("POST", "/health"),
            ("DELETE", "/health"),
            ("PUT", stream.as_str()),
            ("POST", stream.as_str()),
        ] {
            let r = http(a, method, path, &host, &[], None).await?;
            let what = format!("{method} {path}");
            r.assert_error(405, "method_not_allowed", &what)?;
            assert!(
                r.header("allow").is_some_and(|v| v.contains("GET")),
                "{what}: {}",
                r.head
            );
        }
    }
    // The app's own routes: a wrong method is 405 with or without the token.
    let a = f.web.addr();
    let host = a.to_string();
    for (method, path, headers) in [
        ("DELETE", "/api/info", &[][..]),
        ("PUT", "/api/titles", &[("x-kino-token", TOKEN)][..]),
        ("GET", "/api/open", &[][..]),
        ("POST", "/", &[("x-kino-token", TOKEN)][..]),
    ] {
        let r = http(a, method, path, &host, headers, None).await?;
        r.assert_error(405, "method_not_allowed", &format!("{method} {path}"))?;
    }
    let r = http(a, "GET", "/api/nope", &host, &[], None).await?;
    r.assert_error(404, "not_found", "/api/nope")?;
    f.stop().await;
    Ok(())
}

/// Issue 12, D21: `PUT /api/settings/data-dir` accepted `/etc` and folders it cannot write to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_must_be_a_writable_folder() -> R<()> {
    let f = Fixture::start().await?;
    let a = f.web.addr();
    let host = a.to_string();
    let put = |path: String| {
        let host = host.clone();
        async move {
            let body = serde_json::json!({ "path": path }).to_string();
            http(
                a,
                "PUT",
                "/api/settings/data-dir",
                &host,
                &[("x-kino-token", TOKEN)],
                Some(&body),
            )
            .await
        }
    };
    let root = f.dir.path();
    let file = root.join("a-file");
    std::fs::write(&file, b"not a folder")?;
    for (path, want) in [
        ("/etc".to_owned(), "system folder"),
        ("/etc/kino".to_owned(), "system folder"),
        ("/".to_owned(), "system folder"),
        ("/usr/share/kino".to_owned(), "system folder"),
        (file.to_string_lossy().into_owned(), "not a folder"),
        (
            file.join("films").to_string_lossy().into_owned(),
            "not a folder",
        ),
        ("films".to_owned(), "absolute"),
    ] {
        let r = put(path.clone()).await?;
        r.assert_error(400, "invalid_input", &path)?;
        let message = r.json()?["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(want), "{path}: {message}");
    }
    assert!(!Path::new("/etc/kino").exists());
    assert_eq!(std::fs::read(&file)?, b"not a folder");
    assert!(
        f.saved.lock().map_err(|e| e.to_string())?.is_empty(),
        "a refused folder was saved"
    );

    // A folder that can be made is saved, and the check leaves nothing behind.
    let next = root.join("films").join("kino");
    let r = put(next.to_string_lossy().into_owned()).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()?["data_dir_next"], next.to_string_lossy().as_ref());
    assert!(!root.join("films").exists(), "the check left its folders");
    assert_eq!(
        *f.saved.lock().map_err(|e| e.to_string())?,
        vec![next.clone()]
    );
    let r = put(root.to_string_lossy().into_owned()).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut left: Vec<_> = std::fs::read_dir(root)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    left.sort();
    assert_eq!(left, ["a-file", "data"], "the probe file is removed");
    f.stop().await;
    Ok(())
}
