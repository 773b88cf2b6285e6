//! The `kino` command: parses arguments, loads the config, runs a subcommand, and maps errors
//! to exit codes (2 for bad input: any error of the chain whose kind is
//! [`kino_core::ErrorKind::UserInput`], see [`error`]; 1 for everything else), printed as one
//! `kino: ...` line. The work lives in the library
//! crates; the subcommands in [`cli`] only wire them together.

mod app;
mod catalogs;
mod cli;
mod config;
mod demo;
mod error;
mod format;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kino: video on demand over BitTorrent, with no server.
#[derive(Debug, Parser)]
#[command(name = "kino", version, about, propagate_version = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// How often the running app (no subcommand) refreshes subscriptions, in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECS")]
    refresh_interval: u64,
    /// Open the app in the default browser (no subcommand).
    #[arg(long)]
    open: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options every subcommand takes.
#[derive(Debug, clap::Args, Clone)]
pub struct GlobalArgs {
    /// Data folder (database and media cache). Default: $XDG_DATA_HOME/kino.
    #[arg(long, global = true, env = "KINO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file. Default: $XDG_CONFIG_HOME/kino/config.toml.
    #[arg(long, global = true, env = "KINO_CONFIG")]
    pub config: Option<PathBuf>,
    /// TCP port to accept peers on.
    #[arg(long, global = true)]
    pub listen_port: Option<u16>,
    /// Address to accept peers on (default "::", all addresses).
    #[arg(long, global = true)]
    pub bind: Option<std::net::IpAddr>,
    /// DHT bootstrap node, HOST:PORT (repeatable).
    #[arg(long, global = true)]
    pub dht_bootstrap: Vec<String>,
    /// Do not use the DHT.
    #[arg(long, global = true)]
    pub no_dht: bool,
    /// Do not use local service discovery (LAN multicast).
    #[arg(long, global = true)]
    pub no_lsd: bool,
    /// Upload nothing at all.
    #[arg(long, global = true)]
    pub no_share: bool,
    /// Upload cap in KiB/s (0: none).
    #[arg(long, global = true, value_name = "KIB_PER_S")]
    pub upload_limit: Option<u32>,
    /// Stop seeding a film at this upload ratio (0: never).
    #[arg(long, global = true)]
    pub ratio_limit: Option<f64>,
    /// Media cache cap in MiB (0: none).
    #[arg(long, global = true, value_name = "MIB")]
    pub cache_limit: Option<u64>,
    /// Port of the local HTTP server on 127.0.0.1 (0: any).
    #[arg(long, global = true)]
    pub http_port: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Kino with its web app on 127.0.0.1 (what `kino` alone does); prints the URL.
    App {
        /// Open the app in the default browser.
        #[arg(long)]
        open: bool,
    },
    /// Make a torrent of a file or folder (piece length chosen for streaming).
    Create(cli::CreateArgs),
    /// Seed a file, folder or .torrent until Ctrl-C.
    Seed(cli::SeedArgs),
    /// Stream a magnet, .torrent or infohash and serve it over HTTP.
    Play(cli::PlayArgs),
    /// Download a torrent whole into a folder, verify it, and exit.
    Fetch(cli::FetchArgs),
    /// What is cached and shared.
    Status,
    /// Seed the built-in demo films in one engine and stream them from another, offline.
    Demo(demo::DemoArgs),
    /// Make a publisher key file (mode 0600; never overwrites).
    Keygen {
        /// Where to write the key.
        #[arg(short, long)]
        output: std::path::PathBuf,
    },
    /// Publisher keys.
    #[command(subcommand)]
    Key(catalogs::KeyCommand),
    /// Sign and publish a catalog folder; keeps seeding and republishing until Ctrl-C.
    Publish(catalogs::PublishArgs),
    /// Subscribe to a publisher (kino:... address or magnet:?xs=urn:btpk:...) and fetch its catalog.
    Subscribe {
        /// The publisher address or magnet link.
        target: String,
    },
    /// Forget a publisher and its titles.
    Unsubscribe {
        /// The publisher address.
        address: String,
    },
    /// List subscribed catalogs.
    Catalogs,
    /// Fetch the newest version of every subscribed catalog.
    Refresh,
    /// Search the titles of subscribed catalogs.
    Search(catalogs::SearchArgs),
    /// DHT tools.
    #[command(subcommand)]
    Dht(catalogs::DhtCommand),
    /// Find, verify, install or roll back a release (TUF metadata over the DHT and the swarm).
    #[command(subcommand)]
    Update(update::UpdateCommand),
    /// Release tools: keys, root, signatures, publication.
    #[command(subcommand)]
    Release(update::ReleaseCommand),
}

/// Threads tokio may run blocking work on. librqbit reads and writes pieces inside
/// `block_in_place`, which hands the worker's queue to a blocking thread each time; with
/// tokio's default pool (512) those hand-offs spread over many short-lived threads. A small pool
/// keeps them on a few warm ones: on a 1 GiB loopback transfer (kino-bench scenario 5) Kino
/// went from 240 to 290-330 MB/s and from 4.4 to 3.2-3.6 CPU s/GiB (rqbit, which caps its
/// pool at 8 too, measured 255-285 MB/s in the same runs). Kino's own blocking work
/// (thumbnails, `spawn_blocking`) is short.
const MAX_BLOCKING_THREADS: usize = 8;

/// Raises the soft limit on open files to the hard limit, where the system allows it. The
/// engine opens a torrent's files lazily and keeps few open, but peers' sockets, the database
/// and every torrent Kino seeds add up, and the usual soft limit (1024) is low for that.
/// Best effort: on failure the limit stays as it was.
#[cfg(unix)]
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through the pointer, which is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` through the pointer, which is valid for reads.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}

fn main() -> ExitCode {
    raise_open_file_limit();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KINO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kino=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kino")
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kino: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut settings = cli::Settings::load(&cli.global)?;
        let command = cli.command.unwrap_or(Command::App { open: false });
        match command {
            Command::App { open } => {
                app::apply_saved_settings(&mut settings, cli.global.no_share)?;
                let every = std::time::Duration::from_secs(cli.refresh_interval.max(1));
                catalogs::run_app(settings, every, open || cli.open).await
            }
            Command::Create(a) => cli::create(a),
            Command::Seed(a) => cli::seed(settings, a).await,
            Command::Play(a) => cli::play(settings, a).await,
            Command::Fetch(a) => cli::fetch(settings, a).await,
            Command::Status => cli::status(settings),
            Command::Demo(a) => demo::run(settings, a).await,
            Command::Keygen { output } => catalogs::keygen(output),
            Command::Key(catalogs::KeyCommand::Show { file }) => catalogs::key_show(file),
            Command::Publish(a) => catalogs::publish(settings, a).await,
            Command::Subscribe { target } => catalogs::subscribe(settings, target).await,
            Command::Unsubscribe { address } => catalogs::unsubscribe(settings, address),
            Command::Catalogs => catalogs::catalogs(settings),
            Command::Refresh => catalogs::refresh(settings).await,
            Command::Search(a) => catalogs::search(settings, a),
            Command::Update(c) => update::update(settings, c).await,
            Command::Release(c) => update::release_cmd(settings, c).await,
            Command::Dht(catalogs::DhtCommand::Testnet { nodes, port }) => {
                catalogs::dht_testnet(nodes, port, settings.engine.dht_bootstrap.clone()).await
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error::report_line(&e));
            error::exit_code(&e)
        }
    }
}
