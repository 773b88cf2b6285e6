//! Catalog subcommands (`keygen`, `key show`, `publish`, `subscribe`, `unsubscribe`,
//! `catalogs`, `refresh`, `search`, `dht testnet`) and the long-running app (`kino` with no
//! subcommand): thin wiring of kino-catalog and kino-dht.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use kino_catalog::library;
use kino_catalog::sync::{CatalogSync, Refreshed};
use kino_dht::{DhtConfig, LocalTestnet, PointerDht};
use kino_engine::Engine;

use kino_core::Report;

use crate::cli::{Settings, shutdown_signal};
use crate::error::{user_error, user_error_from};
use crate::format;

/// `kino dht ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DhtCommand {
    /// Run a local DHT testnet on 127.0.0.1 in the foreground (tests, demos) and print its
    /// bootstrap address; other Kino processes take it with --dht-bootstrap.
    Testnet {
        /// Number of nodes.
        #[arg(long, default_value_t = 30)]
        nodes: usize,
        /// UDP port of the bootstrap node (default: any free port).
        #[arg(long)]
        port: Option<u16>,
    },
}

/// `kino key ...`.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Print the publisher address (`kino:...`) of a key file.
    Show {
        /// The private key file.
        file: PathBuf,
    },
}

/// Arguments of `kino publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The publisher's private key file (from `kino keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// The catalog folder (catalog.json, posters, subtitles).
    pub dir: PathBuf,
}

/// Arguments of `kino search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Words to look for in titles, synopses and genres.
    pub words: Vec<String>,
    /// Only titles of this genre.
    #[arg(long)]
    pub genre: Option<String>,
    /// Most results.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// The DHT node for pointers, bound like the peer listener.
pub fn start_dht(s: &Settings) -> anyhow::Result<PointerDht> {
    if !s.engine.dht {
        bail!(user_error(
            "catalogs are found through the DHT: remove --no-dht"
        ));
    }
    let mut cfg = if s.engine.dht_bootstrap.is_empty() {
        DhtConfig::default()
    } else {
        DhtConfig {
            bootstrap: s.engine.dht_bootstrap.clone(),
            ..DhtConfig::default()
        }
    };
    if let Some(IpAddr::V4(ip)) = s.engine.listen.map(|a| a.ip())
        && !ip.is_unspecified()
    {
        cfg.bind_address = Some(ip);
    }
    Ok(PointerDht::new(cfg)?)
}

async fn start_sync(s: &Settings) -> anyhow::Result<(Engine, CatalogSync)> {
    let dht = start_dht(s)?;
    let engine = s.start_engine().await?;
    let sync = CatalogSync::new(
        engine.clone(),
        dht,
        engine.store().clone(),
        &s.engine.data_dir,
    )
    .with_tracker_policy(s.catalog_trackers);
    Ok((engine, sync))
}

/// `kino keygen -o FILE`.
pub fn keygen(output: PathBuf) -> anyhow::Result<()> {
    let key = kino_catalog::generate_key_file(&output).map_err(user_error_from)?;
    eprintln!("wrote {} (keep it secret; mode 0600)", output.display());
    println!("{}", key.public_key().address());
    Ok(())
}

/// `kino key show FILE`.
pub fn key_show(file: PathBuf) -> anyhow::Result<()> {
    let key = kino_catalog::load_key_file(&file).map_err(user_error_from)?;
    println!("{}", key.public_key().address());
    Ok(())
}

/// `kino publish --key FILE DIR`: publishes, then keeps seeding and republishing until Ctrl-C.
pub async fn publish(s: Settings, a: PublishArgs) -> anyhow::Result<()> {
    let key = kino_catalog::load_key_file(&a.key).map_err(user_error_from)?;
    // A folder that cannot be signed (a seq the DHT cannot carry, a byte-order mark, a bad
    // field) is refused before anything is signed, started or sent.
    kino_catalog::check_catalog_dir(&a.dir).map_err(user_error_from)?;
    let (engine, sync) = start_sync(&s).await?;
    let result = async {
        let p = sync.publish(&key, &a.dir).await.map_err(|e| match e {
            kino_catalog::sync::SyncError::Catalog(c) => user_error_from(c),
            other => other.into(),
        })?;
        println!("{}", key.public_key().address());
        println!(
            "published seq {} ({} titles), catalog torrent {}",
            p.seq, p.titles, p.infohash
        );
        let _ = std::io::stdout().flush();
        eprintln!(
            "stored on {} DHT nodes; seeding and republishing (Ctrl-C to stop)",
            p.stored_at
        );
        let mut tick = tokio::time::interval(REPUBLISH_INTERVAL);
        tick.tick().await;
        // One signal listener for the whole loop, raced against the work too: a SIGTERM that
        // arrives while a republish runs is neither lost nor made to wait for it.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    tokio::select! {
                        _ = &mut shutdown => break,
                        r = sync.publish(&key, &a.dir) => if let Err(e) = r {
                            eprintln!("republish failed: {}", Report(&e));
                        }
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    engine.shutdown().await;
    result
}

/// How often the running app looks for a verified update (and reseeds/republishes it).
const UPDATE_CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// How often held DHT items are put again (they expire after about two hours).
const REPUBLISH_INTERVAL: Duration = Duration::from_secs(50 * 60);

fn print_refresh(address: &str, r: &Refreshed) {
    match r {
        Refreshed::Unchanged { seq } => println!("{address}: up to date (seq {seq})"),
        Refreshed::Updated {
            seq,
            titles,
            publisher,
        } => {
            println!("{address}: {publisher}: {titles} titles (seq {seq})")
        }
    }
}

/// `kino subscribe ADDRESS|MAGNET`.
pub async fn subscribe(s: Settings, target: String) -> anyhow::Result<()> {
    let t = kino_catalog::parse_subscribe_target(&target).map_err(user_error_from)?;
    let (engine, sync) = start_sync(&s).await?;
    let result = async {
        library::subscribe(engine.store(), &t.key, t.salt.as_deref())?;
        let address = t.key.address();
        eprintln!("subscribed to {address}; fetching its catalog");
        let r = sync.refresh(&t.key, t.salt.as_deref()).await?;
        print_refresh(&address, &r);
        Ok(())
    }
    .await;
    engine.shutdown().await;
    result
}

/// `kino unsubscribe ADDRESS`.
pub fn unsubscribe(s: Settings, address: String) -> anyhow::Result<()> {
    let t = kino_catalog::parse_subscribe_target(&address).map_err(user_error_from)?;
    let store = s.open_store()?;
    if library::unsubscribe(&store, &t.key)? {
        println!("unsubscribed from {}", t.key.address());
        Ok(())
    } else {
        bail!(user_error(format!("not subscribed to {}", t.key.address())))
    }
}

/// `kino catalogs`.
pub fn catalogs(s: Settings) -> anyhow::Result<()> {
    let store = s.open_store()?;
    let subs = library::subscriptions(&store)?;
    if subs.is_empty() {
        println!("no subscriptions; add one with `kino subscribe kino:...`");
        return Ok(());
    }
    let held = library::held_catalogs(&store)?;
    let now = kino_store::now_unix();
    println!(
        "{:<60}  {:<24}  {:>6}  {:>5}  {:<14}  {:>7}  LAST ERROR",
        "PUBLISHER", "NAME", "TITLES", "SEQ", "UPDATED", "SEEDERS"
    );
    for sub in subs {
        let address = kino_catalog::PublisherKey::from_hex(&sub.public_key)
            .map(|k| k.address())
            .unwrap_or_else(|_| sub.public_key.clone());
        let h = held.iter().find(|h| h.public_key == sub.public_key);
        println!(
            "{:<60}  {:<24}  {:>6}  {:>5}  {:<14}  {:>7}  {}",
            address,
            h.map_or("(not fetched yet)".into(), |h| h.publisher_name.clone()),
            h.map_or(0, |h| h.titles),
            h.map_or("-".into(), |h| h.seq.to_string()),
            format::ago(h.map(|h| h.updated_at), now),
            h.map_or(0, |h| h.seeders_seen),
            sub.last_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// Refreshes every subscription; returns how many failed.
async fn refresh_all(sync: &CatalogSync, store: &kino_store::Store) -> anyhow::Result<usize> {
    let mut failed = 0;
    for sub in library::subscriptions(store)? {
        let Ok(key) = kino_catalog::PublisherKey::from_hex(&sub.public_key) else {
            continue;
        };
        let address = key.address();
        match sync.refresh(&key, sub.salt.as_deref()).await {
            Ok(r) => print_refresh(&address, &r),
            Err(e) => {
                failed += 1;
                eprintln!("{address}: {}", Report(&e));
            }
        }
    }
    Ok(failed)
}

/// `kino refresh`.
pub async fn refresh(s: Settings) -> anyhow::Result<()> {
    let (engine, sync) = start_sync(&s).await?;
    let result = refresh_all(&sync, engine.store()).await;
    engine.shutdown().await;
    match result? {
        0 => Ok(()),
        n => bail!("{n} catalogs could not be refreshed"),
    }
}

/// `kino search WORDS [--genre G]`.
pub fn search(s: Settings, a: SearchArgs) -> anyhow::Result<()> {
    let store = s.open_store()?;
    let words = a.words.join(" ");
    let hits = library::search(&store, &words, a.genre.as_deref(), a.limit)?;
    if hits.is_empty() {
        println!("no titles found");
        return Ok(());
    }
    for h in hits {
        let year = h.year.map(|y| format!(" ({y})")).unwrap_or_default();
        println!(
            "{}{}  [{}]  {}  — {}  licence {}",
            h.title,
            year,
            h.genres.join(", "),
            h.id,
            h.publisher_name,
            h.licence
        );
    }
    Ok(())
}

/// `kino dht testnet`.
pub async fn dht_testnet(
    nodes: usize,
    port: Option<u16>,
    bootstrap: Vec<String>,
) -> anyhow::Result<()> {
    let nodes = nodes.max(1);
    // A fixed-port first node when asked for, then the rest joined to it (or to --dht-bootstrap).
    let (first, join_to) = match port {
        Some(p) => {
            let first = PointerDht::new(DhtConfig {
                bootstrap: bootstrap.clone(),
                bind_address: Some(Ipv4Addr::LOCALHOST),
                port: Some(p),
                server_mode: true,
                ..DhtConfig::default()
            })
            .with_context(|| format!("cannot bind 127.0.0.1:{p}"))?;
            (Some(first), vec![format!("127.0.0.1:{p}")])
        }
        None => (None, bootstrap),
    };
    let rest = nodes - usize::from(first.is_some());
    let testnet = if join_to.is_empty() {
        LocalTestnet::start(rest.max(1))?
    } else {
        LocalTestnet::join(rest, &join_to, Duration::from_secs(10)).await?
    };
    let addr = match &first {
        Some(_) => join_to[0].clone(),
        None => testnet
            .bootstrap()
            .first()
            .cloned()
            .context("testnet has no node")?,
    };
    println!("{addr}");
    let _ = std::io::stdout().flush();
    eprintln!("DHT testnet of {nodes} nodes on 127.0.0.1; bootstrap {addr} (Ctrl-C to stop)");
    shutdown_signal().await;
    drop(first);
    testnet.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// `kino` with no subcommand: the long-running app. Seeds what the share policy keeps,
/// refreshes subscriptions, republishes their DHT items, until Ctrl-C.
/// Serves the web app on 127.0.0.1 (and opens the browser with `open`).
pub async fn run_app(s: Settings, refresh_every: Duration, open: bool) -> anyhow::Result<()> {
    let engine = s.start_engine().await?;
    let result = async {
        let resumed = engine.resume_shared().await?;
        let sync = match start_dht(&s) {
            Ok(dht) => Some(
                CatalogSync::new(
                    engine.clone(),
                    dht,
                    engine.store().clone(),
                    &s.engine.data_dir,
                )
                .with_tracker_policy(s.catalog_trackers),
            ),
            Err(e) => {
                eprintln!("catalogs are off: {e:#}");
                None
            }
        };
        println!(
            "Kino is running: sharing {resumed} torrents{}",
            if s.engine.share.enabled {
                ""
            } else {
                " (sharing is off)"
            }
        );
        let _ = std::io::stdout().flush();
        let web = crate::app::start(&s, &engine, sync.clone(), Vec::new(), open).await?;
        let updater = match start_dht(&s) {
            Ok(dht) => crate::update::app_updater(&s, &engine, dht),
            Err(_) => None,
        };
        let mut refresh = tokio::time::interval(refresh_every);
        let mut update_check = tokio::time::interval(UPDATE_CHECK_INTERVAL);
        let mut republish = tokio::time::interval(REPUBLISH_INTERVAL);
        // One signal listener for the whole loop, raced against the work too: a SIGTERM that
        // arrives during a refresh or republish is neither lost nor made to wait for it.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = refresh.tick() => {
                    if let Some(sync) = &sync {
                        tokio::select! {
                            _ = &mut shutdown => break,
                            r = refresh_all(sync, engine.store()) => { r?; }
                        }
                    }
                }
                _ = update_check.tick() => {
                    if let Some(updater) = &updater {
                        tokio::select! {
                            _ = &mut shutdown => break,
                            _ = crate::update::app_check(updater, engine.store()) => {}
                        }
                    }
                }
                _ = republish.tick() => {
                    if let Some(sync) = &sync {
                        tokio::select! {
                            _ = &mut shutdown => break,
                            r = sync.republish() => if let Err(e) = r {
                                eprintln!("republish: {}", Report(&e));
                            }
                        }
                    }
                }
            }
        }
        web.shutdown().await;
        Ok(())
    }
    .await;
    engine.shutdown().await;
    result
}
