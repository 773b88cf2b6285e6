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
//!
//! The pointer path itself (staging, seeding, putting; resolving, the replay floor, the capped
//! download, keeping or discarding exactly what a fetch created) is [`kino_pointer`]'s, shared
//! with catalogs; this module keeps only the update's rules (TUF through tough, the seq equal
//! to the verified timestamp version, the root chain).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kino_dht::{PointerDht, SignedPointer};
use kino_engine::{Engine, infohash_hex, parse_infohash};
use kino_pointer::{Caps, FetchError, Offer, PointerError, Pointers, Shelf, Stage};
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
const TORRENT_NAME: &str = "kino-update";
/// The bounds of the update torrent named by the timestamp pointer.
const CAPS: Caps = Caps {
    max_bytes: MAX_UPDATE_TORRENT_BYTES,
    timeout: DOWNLOAD_TIMEOUT,
    what: "update",
    // Up to 1 GiB: on a slow link it may take more than one fetch's time; it goes on
    // downloading and the next fetch resumes it.
    resume: true,
};
/// The bounds of the update torrent named by a root pointer.
const ROOT_CAPS: Caps = Caps {
    what: "update (root pointer)",
    ..CAPS
};

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
    /// The release to install, or why there is none (already current: tough verified the
    /// metadata, and it names no binary newer than the running one for this platform).
    pub release: Result<VerifiedRelease, UpdateError>,
}

/// Publishing and fetching updates over one engine and one DHT node.
#[derive(Clone)]
pub struct UpdateSync {
    pointers: Pointers,
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

/// The files a repository publishes: every regular file in `metadata/` and `targets/`.
fn repository_files(repo: &Path) -> Result<Vec<PathBuf>, UpdateError> {
    let mut files = Vec::new();
    for sub in ["metadata", "targets"] {
        let from = repo.join(sub);
        for e in std::fs::read_dir(&from).map_err(io(format!("cannot list {}", from.display())))? {
            let e = e.map_err(io(format!("cannot list {}", from.display())))?;
            let kind = e
                .file_type()
                .map_err(io(format!("cannot stat {}", e.path().display())))?;
            if kind.is_file() {
                files.push(Path::new(sub).join(e.file_name()));
            }
        }
    }
    files.sort();
    Ok(files)
}

impl UpdateSync {
    /// Uses `engine` and `dht`; keeps update torrents under `data_dir/updates/`.
    pub fn new(engine: Engine, dht: PointerDht, client: UpdateClient, data_dir: &Path) -> Self {
        UpdateSync {
            pointers: Pointers::new(engine, dht),
            client,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The client.
    pub fn client(&self) -> &UpdateClient {
        &self.client
    }

    /// Where fetched update torrents are kept: `updates/torrents/<infohash>`.
    fn shelf(&self) -> Shelf {
        Shelf::new(self.data_dir.join("updates").join("torrents"))
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
        // Every key is read before anything is staged, seeded or put.
        let signer = timestamp_key.dht_signing_key()?;
        let root_signers = root_keys
            .iter()
            .map(KeyFile::dht_signing_key)
            .collect::<Result<Vec<_>, _>>()?;
        let files = repository_files(repo)?;
        let stage = Stage {
            source: repo,
            files: &files,
            root: self
                .data_dir
                .join("updates")
                .join("publish")
                .join(format!("v{seq}")),
            name: TORRENT_NAME,
        };
        let published = self
            .pointers
            .publish(&stage, &signer, Some(crate::POINTER_SALT), seq)
            .await?;
        for k in &root_signers {
            let r = self
                .pointers
                .put(
                    k,
                    Some(crate::ROOT_POINTER_SALT),
                    published.infohash,
                    root_seq,
                )
                .await?;
            info!(
                root_version,
                stored_at = r.stored_at,
                "root pointer published"
            );
        }
        info!(seq, stored_at = published.stored_at, "update published");
        Ok(Published {
            seq,
            infohash: infohash_hex(&published.infohash),
            stored_at: published.stored_at,
            root_pointers: root_signers.len(),
            root_version,
        })
    }

    /// Follows the root pointers under the trusted root's root keys: when one names a root
    /// version above the trusted one, downloads its torrent and lets tough walk the root chain
    /// in it (tough keeps the newest verified root in the datastore). A missing, replayed or bad
    /// root pointer (or torrent) does not fail the fetch: the trusted root stays as it was (only
    /// reading or writing the client's own state can fail). Returns the torrent it fetched and
    /// kept, for the caller to discard unless the timestamp pointer's fetch accepts it too.
    async fn follow_root_pointers(
        &self,
    ) -> Result<Option<kino_pointer::Fetched<u64>>, UpdateError> {
        let root = self.client.trusted_root_parsed()?;
        let current = root.signed.version.get();
        let mut state = self.client.state()?;
        let mut best: Option<Offer> = None;
        let mut for_current: Option<SignedPointer> = None;
        for k in root_pointer_keys(&root.signed, MAX_POINTER_KEYS) {
            let floor = state.root_pointer_seq.get(&hex::encode(k)).copied();
            let offer = match self
                .pointers
                .resolve(&k, Some(crate::ROOT_POINTER_SALT), floor)
                .await
            {
                Ok(Some(offer)) => offer,
                Ok(None) => continue,
                Err(e @ PointerError::Replay { .. }) => {
                    warn!(error = %e, "root pointer below the seq already followed; ignored");
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "resolving a root pointer");
                    continue;
                }
            };
            let seq = u64::try_from(offer.seq()).ok();
            if seq == Some(current) && for_current.is_none() {
                // Names the root this client already trusts: held to be republished.
                for_current = Some(offer.pointer().clone());
            }
            let newer = seq.is_some_and(|s| s > current);
            if newer && best.as_ref().is_none_or(|b| offer.seq() > b.seq()) {
                best = Some(offer);
            }
        }
        let Some(offer) = best else {
            if let Some(held) = for_current {
                let bytes = hex::encode(held.to_bytes());
                if state.root_pointer.as_deref() != Some(bytes.as_str()) {
                    state.root_pointer = Some(bytes);
                    self.client.save_state(&state)?;
                }
            }
            return Ok(None);
        };
        let item_seq = offer.seq();
        let state = &mut state;
        let fetched = self
            .pointers
            .fetch(offer, &self.shelf(), &ROOT_CAPS, None, |c| async move {
                // tough verifies each N+1.root.json by N's threshold and its own (at most
                // `max_root_updates` steps) and persists the newest; the rest of the folder's
                // metadata may fail (expired timestamp...) without undoing a verified root.
                if let Err(e) = self.client.check(c.content()).await
                    && !matches!(e, UpdateError::NoUpdate(_))
                {
                    warn!(error = %e, "verifying the torrent a root pointer names");
                }
                let after = self.client.trusted_root_parsed()?.signed.version.get();
                if after <= current {
                    return Err(UpdateError::Refused(format!(
                        "the root pointer with seq {item_seq} names no verifiable root above \
                         version {current}"
                    )));
                }
                info!(
                    from = current,
                    to = after,
                    "trusted root advanced via the root pointer"
                );
                if u64::try_from(item_seq).is_ok_and(|s| s <= after) {
                    let item = c.pointer();
                    state
                        .root_pointer_seq
                        .insert(hex::encode(item.public_key()), item_seq);
                    if u64::try_from(item_seq).is_ok_and(|s| s == after) {
                        state.root_pointer = Some(hex::encode(item.to_bytes()));
                    }
                    self.client.save_state(state)?;
                }
                Ok(after)
            })
            .await;
        match fetched {
            Ok(fetched) => Ok(Some(fetched)),
            Err(FetchError::Pointer(e)) => {
                warn!(error = %e, "downloading the torrent a root pointer names");
                Ok(None)
            }
            Err(FetchError::Refused(e @ UpdateError::Refused(_))) => {
                warn!(error = %e, "a root pointer was not followed");
                Ok(None)
            }
            Err(FetchError::Refused(e)) => Err(e),
        }
    }

    /// Finds, downloads and verifies the current update repository: the root pointers first
    /// (a newer root chain moves the lookup to the new timestamp keys), then the timestamp
    /// pointers.
    pub async fn fetch(&self) -> Result<Fetched, UpdateError> {
        let root_torrent = self.follow_root_pointers().await?;
        let fetched = self.fetch_timestamp_pointer().await;
        if let Some(root_torrent) = root_torrent {
            // The root chain's torrent was needed for the walk only, unless the timestamp
            // pointer names it too and it was accepted.
            match self.client.state() {
                Ok(state)
                    if state.infohash.as_deref()
                        == Some(infohash_hex(&root_torrent.infohash).as_str()) => {}
                Ok(_) => self.pointers.discard(root_torrent).await,
                Err(e) => warn!(
                    error = %e,
                    "cannot read the update state: the torrent a root pointer named stays"
                ),
            }
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
        let mut best: Option<Offer> = None;
        let mut replay: Option<String> = None;
        for k in &keys {
            let floor = state.pointer_seq.get(&hex::encode(k)).copied();
            match self
                .pointers
                .resolve(k, Some(crate::POINTER_SALT), floor)
                .await
            {
                Ok(Some(offer)) => {
                    if best.as_ref().is_none_or(|b| offer.seq() > b.seq()) {
                        best = Some(offer);
                    }
                }
                Ok(None) => {}
                Err(PointerError::Replay { offered, floor, .. }) => {
                    replay = Some(format!(
                        "the DHT offers update pointer seq {offered} but seq {floor} was already \
                         accepted (replay of an old pointer)"
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some(offer) = best else {
            return Err(match replay {
                Some(r) => UpdateError::Refused(r),
                None => UpdateError::NoUpdate(
                    "no update pointer found on the DHT under the trusted timestamp keys".into(),
                ),
            });
        };
        let seq = offer.seq();
        let held = state.infohash.as_deref().and_then(parse_infohash);
        let state = &mut state;
        let fetched = self
            .pointers
            .fetch(offer, &self.shelf(), &CAPS, held, |c| async move {
                // tough verifies the whole chain from the trusted root; a refusal is its reason
                // (or Kino's rule that refused the release it verified).
                let release = match self.client.check(c.content()).await {
                    Err(e) if !matches!(e, UpdateError::NoUpdate(_)) => return Err(e),
                    release => release,
                };
                // tough verified the metadata; its datastore holds the verified timestamp.
                let v = read_timestamp_version(&self.client.config().state_dir.join("tuf"))?;
                if v != seq {
                    return Err(UpdateError::Refused(format!(
                        "the pointer says seq {seq} but the verified timestamp is version {v}"
                    )));
                }
                // Accepted: remember the seq, the torrent and the item (republished unchanged).
                let item = c.pointer();
                state
                    .pointer_seq
                    .insert(hex::encode(item.public_key()), seq);
                state.infohash = Some(infohash_hex(&c.infohash()));
                state.pointer = Some(hex::encode(item.to_bytes()));
                self.client.save_state(state)?;
                Ok(release)
            })
            .await?;
        Ok(Fetched {
            repo_dir: fetched.content,
            seq,
            release: fetched.value,
        })
    }

    /// Keeps the accepted update torrent seeding and republishes its pointer unchanged.
    pub async fn republish(&self) -> Result<bool, UpdateError> {
        let state = self.client.state()?;
        if let Some(ih_hex) = &state.infohash {
            match parse_infohash(ih_hex) {
                Some(ih) => self.pointers.keep_seeding(&self.shelf(), ih, &CAPS).await,
                None => warn!("the accepted update torrent's infohash is malformed in the state"),
            }
        }
        // The root pointer too (best effort), so clients on an older root can still reach the
        // current root chain while its publisher is offline.
        if let Some(held) = &state.root_pointer {
            match held_item(held) {
                Ok(item) => {
                    if let Err(e) = self.pointers.republish(&item).await {
                        warn!(error = %e, "republishing the root pointer");
                    }
                }
                Err(e) => warn!(error = %e, "held root pointer is invalid"),
            }
        }
        let Some(held) = &state.pointer else {
            return Ok(false);
        };
        let item = held_item(held)?;
        self.pointers.republish(&item).await?;
        Ok(true)
    }
}

/// A signed item kept in the client state (kino-dht bytes, hex), verified again.
fn held_item(hex_bytes: &str) -> Result<SignedPointer, UpdateError> {
    let bytes = hex::decode(hex_bytes).map_err(|e| {
        UpdateError::Refused(format!(
            "the update state holds a signed pointer that is not hex: {e}"
        ))
    })?;
    Ok(SignedPointer::from_bytes(&bytes)?)
}
