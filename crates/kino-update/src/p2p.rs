//! The repository as a torrent, named by a BEP 44 pointer that the trusted metadata binds.
//!
//! Publisher: copy the repository folder to a frozen staging folder `kino-update/`, make a
//! torrent of it, seed it, and put the pointer `{ih}` under the timestamp role's ed25519 key
//! (salt [`crate::POINTER_SALT`]) with `seq` = the timestamp version. With root keys at hand
//! ([`UpdateSync::publish_with_keys`]) it also puts the root pointer `{ih}` under each of them
//! (salt [`crate::ROOT_POINTER_SALT`]) with `seq` = the root version: the torrent's `metadata/`
//! holds the root chain.
//!
//! Client ([`UpdateSync::fetch`]): first the root pointers under the trusted root's root keys
//! (at most [`MAX_POINTER_KEYS`]): one naming a root version above the trusted one is
//! downloaded (size-capped) and tough walks the root chain in it (each root verified by the
//! previous root's threshold and its own); the seq is only a hint. Then the timestamp keys of
//! the (possibly new) trusted root (at most [`MAX_POINTER_KEYS`]): resolve the pointer under
//! each, refuse a seq below the highest seen for that key (replay), download the torrent
//! (size-capped before any piece), verify it with tough, and require the verified timestamp
//! version to equal the pointer seq. A verified repository keeps seeding and its signed pointer
//! is republished unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kino_dht::{PointerDht, SignedPointer};
use kino_engine::{AddOptions, Engine, Id20, Placement, TorrentSource, infohash_hex};
use tracing::{info, warn};

use crate::client::{UpdateClient, VerifiedRelease};
use crate::error::{UpdateError, io};
use crate::keys::KeyFile;
use crate::release::{metadata_dir, root_keys_among, root_pointer_keys, timestamp_pointer_keys};

/// Largest update torrent downloaded (binaries for a few platforms plus metadata).
pub const MAX_UPDATE_TORRENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Most timestamp keys (and most root keys) looked up on the DHT.
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
    /// Root keys the root pointer (seq = [`Published::root_version`]) was put under.
    pub root_pointers: usize,
    /// The repository's newest root version.
    pub root_version: u64,
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

    /// Seeds `repo` as the update torrent and puts the pointer under `timestamp_key` (no root
    /// pointer: see [`UpdateSync::publish_with_keys`]).
    pub async fn publish(
        &self,
        repo: &Path,
        timestamp_key: &KeyFile,
    ) -> Result<Published, UpdateError> {
        self.publish_with_keys(repo, timestamp_key, &[]).await
    }

    /// Seeds `repo` as the update torrent, puts the pointer under `timestamp_key`, and puts the
    /// root pointer under each key among `keys` that the repository's newest root names for the
    /// root role (so that clients on an older root can reach the new root chain).
    pub async fn publish_with_keys(
        &self,
        repo: &Path,
        timestamp_key: &KeyFile,
        keys: &[KeyFile],
    ) -> Result<Published, UpdateError> {
        let (root_version, root_keys) = root_keys_among(repo, keys)?;
        let root_seq = i64::try_from(root_version)
            .map_err(|_| UpdateError::Usage(format!("root version {root_version} is too large")))?;
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
        self.engine.seed_created(&created).await?;
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
        for k in &root_keys {
            let r = self
                .dht
                .publish(
                    &k.dht_signing_key()?,
                    Some(crate::ROOT_POINTER_SALT),
                    ih.0,
                    root_seq,
                    None,
                )
                .await?;
            info!(
                root_version,
                stored_at = r.stored_at,
                "root pointer published"
            );
        }
        self.announce(ih.0).await;
        info!(seq, stored_at = published.stored_at, "update published");
        Ok(Published {
            seq,
            infohash: infohash_hex(&ih),
            stored_at: published.stored_at,
            root_pointers: root_keys.len(),
            root_version,
        })
    }

    /// Follows the root pointers under the trusted root's root keys: when one names a root
    /// version above the trusted one, downloads its torrent and lets tough walk the root chain
    /// in it (tough keeps the newest verified root in the datastore). A missing, replayed or bad
    /// root pointer (or torrent) does not fail the fetch: the trusted root stays as it was (only
    /// reading or writing the client's own state can fail). Returns the
    /// infohash of a torrent it added and kept (the caller drops it unless it is accepted).
    async fn follow_root_pointers(&self) -> Result<Option<String>, UpdateError> {
        let root = self.client.trusted_root_parsed()?;
        let current = root.signed.version.get();
        let mut state = self.client.state()?;
        let mut best: Option<SignedPointer> = None;
        let mut for_current: Option<SignedPointer> = None;
        for k in root_pointer_keys(&root.signed, MAX_POINTER_KEYS) {
            let item = match self.dht.resolve(&k, Some(crate::ROOT_POINTER_SALT)).await {
                Ok(Some(found)) => found.pointer,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "resolving a root pointer");
                    continue;
                }
            };
            if let Some(&h) = state.root_pointer_seq.get(&hex::encode(k))
                && item.seq() < h
            {
                warn!(
                    seq = item.seq(),
                    held = h,
                    "root pointer below the seq already followed (replay); ignored"
                );
                continue;
            }
            let seq = u64::try_from(item.seq()).ok();
            if seq == Some(current) && for_current.is_none() {
                // Names the root this client already trusts: held to be republished.
                for_current = Some(item.clone());
            }
            let newer = seq.is_some_and(|s| s > current);
            if newer && best.as_ref().is_none_or(|b| item.seq() > b.seq()) {
                best = Some(item);
            }
        }
        let Some(item) = best else {
            if let Some(held) = for_current {
                let bytes = hex::encode(held.to_bytes());
                if state.root_pointer.as_deref() != Some(bytes.as_str()) {
                    state.root_pointer = Some(bytes);
                    self.client.save_state(&state)?;
                }
            }
            return Ok(None);
        };
        let ih = item.infohash();
        let ih_hex = hex::encode(ih);
        let folder_root = self.data_dir.join("updates").join("torrents").join(&ih_hex);
        let peers = self.dht.get_peers(ih, PEER_LOOKUP).await;
        let (_, repo_dir) = match self
            .engine
            .download_small(
                Id20::new(ih),
                peers,
                &folder_root,
                MAX_UPDATE_TORRENT_BYTES,
                DOWNLOAD_TIMEOUT,
                "update (root pointer)",
            )
            .await
        {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "downloading the torrent a root pointer names");
                self.drop_torrent(&state, &ih_hex).await;
                return Ok(None);
            }
        };
        // tough verifies each N+1.root.json by N's threshold and its own (at most
        // `max_root_updates` steps) and persists the newest; the rest of the folder's metadata
        // may fail (expired timestamp...) without undoing a verified root.
        if let Err(e) = self.client.check(&repo_dir).await
            && !matches!(e, UpdateError::NoUpdate(_))
        {
            warn!(error = %e, "verifying the torrent a root pointer names");
        }
        let after = self.client.trusted_root_parsed()?.signed.version.get();
        if after <= current {
            warn!(
                seq = item.seq(),
                current, "a root pointer named no verifiable newer root"
            );
            self.drop_torrent(&state, &ih_hex).await;
            return Ok(None);
        }
        info!(
            from = current,
            to = after,
            "trusted root advanced via the root pointer"
        );
        if u64::try_from(item.seq()).is_ok_and(|s| s <= after) {
            state
                .root_pointer_seq
                .insert(hex::encode(item.public_key()), item.seq());
            if u64::try_from(item.seq()).is_ok_and(|s| s == after) {
                state.root_pointer = Some(hex::encode(item.to_bytes()));
            }
            self.client.save_state(&state)?;
        }
        Ok(Some(ih_hex))
    }

    /// Forgets the update torrent `ih_hex` and removes its folder, unless it is the accepted one.
    async fn drop_torrent(&self, state: &crate::client::ClientState, ih_hex: &str) {
        if state.infohash.as_deref() == Some(ih_hex) {
            return;
        }
        if let Some(ih) = kino_engine::parse_infohash(ih_hex) {
            let _ = self.engine.forget(&ih).await;
        }
        let _ =
            std::fs::remove_dir_all(self.data_dir.join("updates").join("torrents").join(ih_hex));
    }

    /// Finds, downloads and verifies the current update repository: the root pointers first
    /// (a newer root chain moves the lookup to the new timestamp keys), then the timestamp
    /// pointers.
    pub async fn fetch(&self) -> Result<Fetched, UpdateError> {
        let root_torrent = self.follow_root_pointers().await?;
        let fetched = self.fetch_timestamp_pointer().await;
        if let Some(ih_hex) = root_torrent
            && let Ok(state) = self.client.state()
        {
            self.drop_torrent(&state, &ih_hex).await;
        }
        fetched
    }

    async fn fetch_timestamp_pointer(&self) -> Result<Fetched, UpdateError> {
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
        // The root pointer too (best effort), so clients on an older root can still reach the
        // current root chain while its publisher is offline.
        if let Some(bytes) = state
            .root_pointer
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
        {
            match SignedPointer::from_bytes(&bytes) {
                Ok(item) => {
                    if let Err(e) = self.dht.publish_signed(&item).await {
                        warn!(error = %e, "republishing the root pointer");
                    }
                }
                Err(e) => warn!(error = %e, "held root pointer is invalid"),
            }
        }
        let Some(bytes) = state.pointer.as_deref().and_then(|h| hex::decode(h).ok()) else {
            return Ok(false);
        };
        let item = SignedPointer::from_bytes(&bytes)?;
        self.dht.publish_signed(&item).await?;
        Ok(true)
    }
}
