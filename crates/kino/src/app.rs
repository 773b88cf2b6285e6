//! The local web app inside the running Kino (`kino`, `kino app`, `kino demo`): applies the
//! settings saved from the app's Settings page, serves the app on 127.0.0.1, prints its URL,
//! and opens the default browser when asked.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use kino_catalog::sync::CatalogSync;
use kino_engine::Engine;
use kino_server::{AppOptions, DataDirSaving, Server, WebApp};

use crate::cli::Settings;

/// The web app and its server.
pub struct RunningApp {
    server: Server,
    app: WebApp,
}

impl RunningApp {
    /// The app's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.server.addr())
    }

    /// Stops the server, then the app's background tasks.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        self.app.shutdown().await;
    }
}

/// Applies the sharing settings saved from the app's Settings page over the config file
/// (they are the user's latest choice); `--no-share` on the command line still wins.
pub fn apply_saved_settings(s: &mut Settings, no_share_flag: bool) -> anyhow::Result<()> {
    let store = s.open_store()?;
    if let Some(saved) = kino_server::settings::load(&store)? {
        saved.apply(&mut s.engine.share);
    }
    if no_share_flag {
        s.engine.share.enabled = false;
    }
    Ok(())
}

/// Serves the web app on 127.0.0.1 (`--http-port`, default any free port) and prints its
/// URL; with `open`, starts the default browser on it. A data folder chosen in the app is
/// saved in the config file in use.
pub async fn start(
    s: &Settings,
    engine: &Engine,
    sync: Option<CatalogSync>,
    peers: Vec<SocketAddr>,
    open: bool,
) -> anyhow::Result<RunningApp> {
    let data_dir = match s.config_path.clone() {
        Some(path) => DataDirSaving::Setter(std::sync::Arc::new(move |dir| {
            crate::config::write_data_dir(&path, dir)
                .map(|()| format!("saved in {}; restart Kino to use it", path.display()))
                .map_err(|e| format!("{e:#}"))
        })),
        None => DataDirSaving::Nowhere,
    };
    start_with(s, engine, sync, peers, open, data_dir).await
}

/// [`start`], saving a data folder chosen in the app as `data_dir` says (`kino demo` refuses
/// to: it never changes the user's settings).
pub async fn start_with(
    s: &Settings,
    engine: &Engine,
    sync: Option<CatalogSync>,
    peers: Vec<SocketAddr>,
    open: bool,
    data_dir: DataDirSaving,
) -> anyhow::Result<RunningApp> {
    let app = WebApp::new(
        engine.clone(),
        AppOptions {
            token: None,
            peers,
            sync,
            data_dir,
        },
    )?;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), s.http_port);
    let server = Server::bind(addr, app.router())
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let running = RunningApp { server, app };
    let url = running.url();
    println!("Kino app: {url}");
    let _ = std::io::stdout().flush();
    if open {
        open_browser(&url);
    }
    Ok(running)
}

/// Starts the desktop's default browser (detached; failures are reported, not fatal).
fn open_browser(url: &str) {
    let (program, args): (&str, Vec<&str>) = if cfg!(target_os = "macos") {
        ("open", vec![url])
    } else if cfg!(windows) {
        ("cmd", vec!["/C", "start", "", url])
    } else {
        ("xdg-open", vec![url])
    };
    match std::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        // The opener exits by itself once it has handed the URL over; reap it off-thread.
        Ok(mut child) => {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => eprintln!("cannot open a browser ({program}: {e}); open {url} yourself"),
    }
}
