//! `kino update ...` and `kino release ...`: thin wiring of kino-update.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kino_engine::Engine;
use kino_update::keys::KeyFile;
use kino_update::p2p::UpdateSync;
use kino_update::release::{self, Artifact, PublishOptions, RoleSpec, RootSpec};
use kino_update::{ClientConfig, UpdateClient, UpdateError, Version};

use kino_core::Report;

use crate::cli::{Settings, shutdown_signal};
use crate::error::user_error;

/// The setting under which the running app records a verified update (shown by the web app).
pub const UPDATE_AVAILABLE_SETTING: &str = "update.available";

/// The running app's updater: `None` when this build has no trusted root (updates are off).
pub fn app_updater(s: &Settings, engine: &Engine, dht: kino_dht::PointerDht) -> Option<UpdateSync> {
    let client = client(s).ok()?;
    client.trusted_root().ok()?;
    Some(UpdateSync::new(
        engine.clone(),
        dht,
        client,
        &s.engine.data_dir,
    ))
}

/// One periodic check: finds and fully verifies the current release, seeds the update
/// torrent and republishes its pointer; records (or clears) "verified update available".
pub async fn app_check(sync: &UpdateSync, store: &kino_store::Store) {
    match sync.fetch().await {
        Ok(f) => {
            let msg = match f.release {
                Ok(rel) => Some(format!("verified update available: {}", rel.explain())),
                Err(_) => None,
            };
            if let Some(m) = &msg {
                println!("{m} (run `kino update apply`)");
            }
            let _ = store.set_setting(UPDATE_AVAILABLE_SETTING, msg.as_deref().unwrap_or(""));
            if let Err(e) = sync.republish().await {
                eprintln!("update pointer republish: {}", Report(&e));
            }
        }
        Err(e) => eprintln!("update check: {}", Report(&e)),
    }
}

/// `kino update ...`.
#[derive(Debug, clap::Subcommand)]
pub enum UpdateCommand {
    /// Find the current release on the DHT, fetch it from the swarm and verify it fully; say
    /// what would be installed and why it is trusted. Installs nothing.
    Check,
    /// Check, then download, verify, stage and atomically replace the binary (the previous one
    /// is kept as `<binary>.previous`).
    Apply {
        /// The binary to replace (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Put the previous binary back (the version floor is not lowered).
    Rollback {
        /// The binary to restore (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

/// `kino release ...` (for release managers).
#[derive(Debug, clap::Subcommand)]
pub enum ReleaseCommand {
    /// Make a release key (ed25519, PKCS#8 DER, mode 0600; never overwrites).
    Keygen {
        /// Where to write the key.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Create the repository's root (or the next root, to rotate keys): N keys, threshold M
    /// for the root and targets roles; one online key for snapshot and timestamp.
    Init(InitArgs),
    /// Add a signature: `root` (threshold or rotation cross-signature), `targets` (another
    /// holder's signature), or re-sign `snapshot` / `timestamp` with a fresh expiry.
    Sign {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// root, targets, snapshot or timestamp.
        #[arg(long)]
        role: String,
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign a publication of binaries, then seed it and put its DHT pointer (until Ctrl-C).
    Publish(PublishArgs),
}

/// Arguments of `kino release init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The repository folder.
    #[arg(long)]
    pub repo: PathBuf,
    /// Root and targets keys (repeat: N keys).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Signatures required of the root and targets roles (M of N).
    #[arg(long, default_value_t = 1)]
    pub threshold: u64,
    /// The online key of the snapshot and timestamp roles (it also signs the DHT pointer).
    #[arg(long)]
    pub online_key: PathBuf,
}

/// Arguments of `kino release publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The repository folder.
    #[arg(long)]
    pub repo: PathBuf,
    /// Signing keys: a threshold of targets keys and the online key (repeat).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Version of the binaries.
    #[arg(long = "release-version", value_name = "VERSION")]
    pub release_version: String,
    /// Platform of the binaries (default: this one).
    #[arg(long)]
    pub platform: Option<String>,
    /// Only sign; do not seed or put the pointer.
    #[arg(long)]
    pub offline: bool,
    /// The binaries.
    #[arg(required = true)]
    pub artifacts: Vec<PathBuf>,
}

/// An update error as an [`anyhow::Error`]; its [`UpdateError::kind`] decides the exit code.
fn update_error(e: UpdateError) -> anyhow::Error {
    anyhow::Error::new(e)
}

fn client(s: &Settings) -> anyhow::Result<UpdateClient> {
    let root = match std::env::var_os(kino_update::ROOT_OVERRIDE_ENV) {
        Some(p) => {
            std::fs::read(&p).with_context(|| format!("cannot read {}", Path::new(&p).display()))?
        }
        None => kino_update::EMBEDDED_ROOT.to_vec(),
    };
    let current: Version = env!("CARGO_PKG_VERSION")
        .parse()
        .map_err(anyhow::Error::msg)?;
    Ok(UpdateClient::new(ClientConfig::new(
        root,
        s.engine.data_dir.join("updates").join("client"),
        current,
    )))
}

async fn start(s: &Settings) -> anyhow::Result<(Engine, UpdateSync)> {
    let client = client(s)?;
    client.trusted_root().map_err(update_error)?;
    let dht = crate::catalogs::start_dht(s)?;
    let engine = s.start_engine().await?;
    let sync = UpdateSync::new(engine.clone(), dht, client, &s.engine.data_dir);
    Ok((engine, sync))
}

/// `kino update ...`.
pub async fn update(s: Settings, cmd: UpdateCommand) -> anyhow::Result<()> {
    let binary = |b: Option<PathBuf>| -> anyhow::Result<PathBuf> {
        match b {
            Some(b) => Ok(b),
            None => std::env::current_exe().context("cannot find the running binary"),
        }
    };
    match cmd {
        UpdateCommand::Rollback { binary: b } => {
            let b = binary(b)?;
            kino_update::client::rollback(&b).map_err(update_error)?;
            println!("restored the previous binary at {}", b.display());
            Ok(())
        }
        UpdateCommand::Check => {
            let (engine, sync) = start(&s).await?;
            let r = async {
                let f = sync.fetch().await.map_err(update_error)?;
                match f.release {
                    Ok(rel) => println!("verified update available: {}", rel.explain()),
                    Err(UpdateError::NoUpdate(m)) => println!("up to date: {m}"),
                    Err(e) => return Err(update_error(e)),
                }
                Ok(())
            }
            .await;
            engine.shutdown().await;
            r
        }
        UpdateCommand::Apply { binary: b } => {
            let b = binary(b)?;
            let (engine, sync) = start(&s).await?;
            let r = async {
                let f = sync.fetch().await.map_err(update_error)?;
                let rel = match f.release {
                    Ok(rel) => rel,
                    Err(UpdateError::NoUpdate(m)) => {
                        println!("up to date: {m}");
                        return Ok(());
                    }
                    Err(e) => return Err(update_error(e)),
                };
                println!("verified: {}", rel.explain());
                let staged = sync.client().stage(&rel, &b).await.map_err(update_error)?;
                let done = sync.client().install(staged, &b).map_err(update_error)?;
                println!(
                    "installed kino {} at {} (previous kept at {})",
                    done.version,
                    done.binary.display(),
                    done.previous.display()
                );
                Ok(())
            }
            .await;
            engine.shutdown().await;
            r
        }
    }
}

fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<KeyFile>> {
    paths
        .iter()
        .map(|p| KeyFile::load(p).map_err(update_error))
        .collect()
}

/// `kino release ...`.
pub async fn release_cmd(s: Settings, cmd: ReleaseCommand) -> anyhow::Result<()> {
    match cmd {
        ReleaseCommand::Keygen { output } => {
            let k = kino_update::keys::keygen(&output).map_err(update_error)?;
            eprintln!("wrote {} (keep it secret; mode 0600)", output.display());
            println!("{}", k.key_id().map_err(update_error)?);
            Ok(())
        }
        ReleaseCommand::Init(a) => {
            let keys = load_keys(&a.keys)?;
            let online = KeyFile::load(&a.online_key).map_err(update_error)?;
            let role = |keys: Vec<KeyFile>, threshold| RoleSpec { keys, threshold };
            let spec = RootSpec {
                root: role(keys.clone(), a.threshold),
                targets: role(keys, a.threshold),
                snapshot: role(vec![online.clone()], 1),
                timestamp: role(vec![online], 1),
                expires: release::expires_in(release::ROOT_LIFETIME),
            };
            let v = release::init_root(&a.repo, &spec)
                .await
                .map_err(update_error)?;
            println!(
                "wrote {}",
                a.repo.join(format!("metadata/{v}.root.json")).display()
            );
            if v > 1 {
                eprintln!(
                    "root {v} rotates keys: sign it with a threshold of root {}'s keys (kino release sign --role root)",
                    v - 1
                );
            }
            Ok(())
        }
        ReleaseCommand::Sign { repo, role, key } => {
            let key = KeyFile::load(&key).map_err(update_error)?;
            let r = match role.as_str() {
                "root" => release::sign_root(&repo, &key).await,
                "targets" => release::sign_targets(&repo, &key).await,
                "snapshot" => {
                    release::sign_snapshot(
                        &repo,
                        &key,
                        release::expires_in(release::SNAPSHOT_LIFETIME),
                    )
                    .await
                }
                "timestamp" => {
                    release::sign_timestamp(
                        &repo,
                        &key,
                        release::expires_in(release::TIMESTAMP_LIFETIME),
                    )
                    .await
                }
                other => bail!(user_error(format!(
                    "unknown role {other:?}: root, targets, snapshot or timestamp"
                ))),
            }
            .map_err(update_error)?;
            println!("signed {role} version {r}");
            Ok(())
        }
        ReleaseCommand::Publish(a) => {
            let keys = load_keys(&a.keys)?;
            let version: Version = a.release_version.parse().map_err(user_error)?;
            let platform = a.platform.unwrap_or_else(kino_update::current_platform);
            let artifacts: Vec<Artifact> = a
                .artifacts
                .iter()
                .map(|p| Artifact {
                    path: p.clone(),
                    version,
                    platform: platform.clone(),
                })
                .collect();
            let p = release::publish(&a.repo, &artifacts, &keys, &PublishOptions::default())
                .await
                .map_err(update_error)?;
            println!(
                "signed publication {} ({})",
                p.version,
                p.targets.join(", ")
            );
            if a.offline {
                return Ok(());
            }
            let ts_key = release::timestamp_key_among(&a.repo, &keys).map_err(update_error)?;
            let ts_key =
                ts_key.context("none of the keys is the timestamp key, which signs the pointer")?;
            let dht = crate::catalogs::start_dht(&s)?;
            let engine = s.start_engine().await?;
            let sync = UpdateSync::new(engine.clone(), dht, client(&s)?, &s.engine.data_dir);
            let r = async {
                // Root keys among --key also put the root pointer, so clients still on an
                // older root can reach the new root chain through the DHT.
                let p = sync
                    .publish_with_keys(&a.repo, &ts_key, &keys)
                    .await
                    .map_err(update_error)?;
                println!(
                    "published update torrent {} under pointer seq {}",
                    p.infohash, p.seq
                );
                if p.root_pointers > 0 {
                    println!(
                        "root pointer for root version {} put under {} root key(s)",
                        p.root_version, p.root_pointers
                    );
                }
                let _ = std::io::stdout().flush();
                eprintln!(
                    "stored on {} DHT nodes; seeding (Ctrl-C to stop)",
                    p.stored_at
                );
                shutdown_signal().await;
                Ok(())
            }
            .await;
            engine.shutdown().await;
            r
        }
    }
}
