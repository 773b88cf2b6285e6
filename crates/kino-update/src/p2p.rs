//! The repository as a torrent, named by a BEP 44 pointer that the trusted metadata binds.
//!
//! Publisher: copy the repository folder to a frozen staging folder `kino-update/`, make a
//! torrent of it, seed it, and put the pointer `{ih}` under the timestamp role's ed25519 key
//! (salt [`crate::POINTER_SALT`]) with `seq` = the timestamp version.
//!
//! Client ([`UpdateSync::fetch`]): read the timestamp keys from the trusted root (at most
//! [`MAX_POINTER_KEYS`]), resolve the pointer under each, refuse a seq below the highest seen
//! for that key (replay), download the torrent (size-capped before any piece), verify it with
//! tough, and require the verified timestamp version to equal the pointer seq. A verified
//! repository keeps seeding and its signed pointer is republished unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kino_dht::{PointerDht, SignedPointer};
use kino_engine::{AddOptions, Engine, Id20, Placement, TorrentSource, infohash_hex};
use tracing::{info, warn};

use crate::client::{UpdateClient, VerifiedRelease};
use crate::error::{UpdateError, io};
use crate::keys::KeyFile;
use crate::release::{metadata_dir, timestamp_pointer_keys};

/// Largest update torrent downloaded (binaries for a few platforms plus metadata).
pub const MAX_UPDATE_TORRENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Most timestamp keys looked up on the DHT.
pub const MAX_POINTER_KEYS: usize = 4;
/// How long a fetch waits for the update torrent.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
const PEER_LOOKUP: Duration = Duration::from_secs(5);
const TORRENT_NAME: &str = "kino-update";

/// What a publish did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The pointer seq (= timestamp version).
    pub seq: i64,
    /// The update torrent's infohash (hex).
    pub infohash: String,
    /// DHT nodes that stored the pointer.
    pub stored_at: u32,
}

/// What a fetch found.
#[derive(Debug)]
pub struct Fetched {
    /// The verified repository folder (seeding).
    pub repo_dir: PathBuf,
    /// The pointer seq accepted.
    pub seq: i64,
    /// The release to install, or why there is none (already current, or refused by Kino's
    /// rules after tough verified the metadata).
    pub release: Result<VerifiedRelease, UpdateError>,
}

/// Publishing and fetching updates over one engine and one DHT node.
#[derive(Clone)]
pub struct UpdateSync {
    engine: Engine,
    dht: PointerDht,
    client: UpdateClient,
    data_dir: PathBuf,
}

fn read_timestamp_version(meta: &Path) -> Result<i64, UpdateError> {
    let p = meta.join("timestamp.json");
    let bytes = std::fs::read(&p).map_err(io(format!("cannot read {}", p.display())))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| UpdateError::Refused(format!("{} is malformed: {e}", p.display())))?;
    v["signed"]["version"]
        .as_i64()
        .ok_or_else(|| UpdateError::Refused(format!("{} has no version", p.display())))
}

impl UpdateSync {
    /// Uses `engine` and `dht`; keeps update torrents under `data_dir/updates/`.
    pub fn new(engine: Engine, dht: PointerDht, client: UpdateClient, data_dir: &Path) -> Self {
        UpdateSync {
            engine,
            dht,
            client,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The client.
    pub fn client(&self) -> &UpdateClient {
        &self.client
    }

    async fn announce(&self, ih: [u8; 20]) {
        if let Some(port) = self.engine.listen_addr().map(|a| a.port())
            && let Err(e) = self.dht.announce_peer(ih, port).await
        {
            warn!(error = %e, "announce");
        }
    }

    /// Seeds `repo` as the update torrent and puts the pointer under `timestamp_key`.
    pub async fn publish(
        &self,
        repo: &Path,
        timestamp_key: &KeyFile,
    ) -> Result<Published, UpdateError> {
        let seq = read_timestamp_version(&metadata_dir(repo))?;
        let stage_root = self
            .data_dir
            .join("updates")
            .join("publish")
            .join(format!("v{seq}"));
        let stage = stage_root.join(TORRENT_NAME);
        if stage_root.exists() {
            std::fs::remove_dir_all(&stage_root).map_err(io("cannot clear the staging folder"))?;
        }
        for sub in ["metadata", "targets"] {
            let to = stage.join(sub);
            std::fs::create_dir_all(&to).map_err(io("cannot create the staging folder"))?;
            let from = repo.join(sub);
            for e in
                std::fs::read_dir(&from).map_err(io(format!("cannot list {}", from.display())))?
            {
                let e = e.map_err(io("cannot list the repository"))?;
                if e.file_type().map_err(io("cannot stat"))?.is_file() {
                    std::fs::copy(e.path(), to.join(e.file_name()))
                        .map_err(io(format!("cannot stage {}", e.path().display())))?;
                }
            }
        }
        let created = kino_engine::create::create_torrent(&stage, None, |_, _| {})?;
        let ih = created.info.infohash;
        let torrent = self
            .engine
            .add(
                &TorrentSource::Metainfo(created.info.clone()),
                AddOptions {
                    peers: Vec::new(),
                    placement: Placement::SeedFrom(created.content_root.clone()),
                },
            )
            .await?;
        torrent.wait_until_completed().await?;
        let published = self
            .dht
            .publish(
                &timestamp_key.dht_signing_key()?,
                Some(crate::POINTER_SALT),
                ih.0,
                seq,
                None,
            )
            .await?;
        self.announce(ih.0).await;
        info!(seq, stored_at = published.stored_at, "update published");
        Ok(Published {
            seq,
            infohash: infohash_hex(&ih),
            stored_at: published.stored_at,
        })
    }

    /// Finds, downloads and verifies the current update repository.
    pub async fn fetch(&self) -> Result<Fetched, UpdateError> {
        let root = self.client.trusted_root_parsed()?;
        let keys = timestamp_pointer_keys(&root.signed, MAX_POINTER_KEYS);
        if keys.is_empty() {
            return Err(UpdateError::Refused(
                "the trusted root names no ed25519 timestamp key to look the pointer up under"
                    .into(),
            ));
        }
        let mut state = self.client.state()?;
        let mut best: Option<SignedPointer> = None;
        let mut replay: Option<String> = None;
        for k in &keys {
            let Some(found) = self.dht.resolve(k, Some(crate::POINTER_SALT)).await? else {
                continue;
            };
            let item = found.pointer.clone();
            let held = state.pointer_seq.get(&hex::encode(k)).copied();
            if let Some(h) = held
                && item.seq() < h
            {
                replay = Some(format!(
                    "the DHT offers update pointer seq {} but seq {h} was already accepted (replay of an old pointer)",
                    item.seq()
                ));
                continue;
            }
            if best.as_ref().is_none_or(|b| item.seq() > b.seq()) {
                best = Some(item);
            }
        }
        let Some(item) = best else {
            return Err(match replay {
                Some(r) => UpdateError::Refused(r),
                None => UpdateError::NoUpdate(
                    "no update pointer found on the DHT under the trusted timestamp keys".into(),
                ),
            });
        };
        let ih = item.infohash();
        let ih_hex = hex::encode(ih);
        let folder_root = self.data_dir.join("updates").join("torrents").join(&ih_hex);
        let peers = self.dht.get_peers(ih, PEER_LOOKUP).await;
        let (torrent, repo_dir) = self
            .engine
            .download_small(
                Id20::new(ih),
                peers,
                &folder_root,
                MAX_UPDATE_TORRENT_BYTES,
                DOWNLOAD_TIMEOUT,
                "update",
            )
            .await?;
        let release = self.client.check(&repo_dir).await;
        let verified = match &release {
            Ok(_) | Err(UpdateError::NoUpdate(_)) => {
                // tough verified the metadata; its datastore holds the verified timestamp.
                let v = read_timestamp_version(&self.client.config().state_dir.join("tuf"))?;
                if v != item.seq() {
                    Err(UpdateError::Refused(format!(
                        "the pointer says seq {} but the verified timestamp is version {v}",
                        item.seq()
                    )))
                } else {
                    Ok(())
                }
            }
            Err(_) => Err(UpdateError::Refused(String::new())),
        };
        if let Err(e) = verified {
            let _ = self.engine.forget(&torrent.infohash()).await;
            let _ = std::fs::remove_dir_all(&folder_root);
            return Err(match release {
                Err(r) if !matches!(r, UpdateError::NoUpdate(_)) => r,
                _ => e,
            });
        }
        // Accepted: remember the seq, keep seeding, republish the item unchanged.
        let key_hex = hex::encode(item.public_key());
        state.pointer_seq.insert(key_hex, item.seq());
        if let Some(old) = state.infohash.replace(ih_hex.clone())
            && old != ih_hex
        {
            if let Some(old_ih) = kino_engine::parse_infohash(&old) {
                let _ = self.engine.forget(&old_ih).await;
            }
            let _ =
                std::fs::remove_dir_all(self.data_dir.join("updates").join("torrents").join(&old));
        }
        state.pointer = Some(hex::encode(item.to_bytes()));
        self.client.save_state(&state)?;
        self.announce(ih).await;
        if let Err(e) = self.dht.publish_signed(&item).await {
            warn!(error = %e, "republishing the update pointer");
        }
        Ok(Fetched {
            repo_dir,
            seq: item.seq(),
            release,
        })
    }

    /// Keeps the accepted update torrent seeding and republishes its pointer unchanged.
    pub async fn republish(&self) -> Result<bool, UpdateError> {
        let state = self.client.state()?;
        if let Some(ih_hex) = &state.infohash
            && let Some(ih) = kino_engine::parse_infohash(ih_hex)
        {
            if self.engine.torrent(&ih).is_none() {
                let root = self.data_dir.join("updates").join("torrents").join(ih_hex);
                if let Err(e) = self
                    .engine
                    .add_capped(
                        &TorrentSource::InfoHash(ih),
                        AddOptions {
                            peers: Vec::new(),
                            placement: Placement::Download(root),
                        },
                        Some(MAX_UPDATE_TORRENT_BYTES),
                    )
                    .await
                {
                    warn!(error = %e, "seeding the update torrent");
                }
            }
            self.announce(ih.0).await;
        }
        let Some(bytes) = state.pointer.as_deref().and_then(|h| hex::decode(h).ok()) else {
            return Ok(false);
        };
        let item = SignedPointer::from_bytes(&bytes)?;
        self.dht.publish_signed(&item).await?;
        Ok(true)
    }
}
