//! Publishing and subscribing over the DHT and the swarm.
//!
//! Publisher: sign the catalog folder, stage exactly the files it references, make a torrent of
//! them, seed it, and put a signed BEP 44 pointer `{ih: infohash}` with `seq` = the catalog's
//! seq under the publisher's key; announce as a peer of the torrent on the same DHT.
//!
//! Subscriber ([`CatalogSync::refresh`]): resolve the pointer (highest valid seq among the
//! answers), refuse a seq below the highest ever accepted (kept in SQLite), find the torrent's
//! peers through the DHT, download it (size-capped before any piece is fetched), verify the
//! detached signature with the subscribed key, check that the catalog's seq is the pointer's,
//! apply the same-seq rule, check every asset, and index it (its magnets' trackers filtered by
//! the [`TrackerPolicy`]). The catalog torrent keeps seeding
//! (the share policy applies) and the publisher's signed item is stored to be republished
//! unchanged, so the catalog stays reachable while its publisher is offline.
//!
//! A refresh that fails or refuses never touches the catalog held: not its folder, not its
//! torrent, not its database rows (only the subscription's last error). It removes only what it created itself (the torrent and folder of a
//! new infohash); a pointer naming the held torrent downloads nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kino_dht::{DhtError, PointerDht, SignedPointer};
use kino_engine::{AddOptions, Engine, EngineError, Placement, TorrentSource, infohash_hex};
use kino_store::{Store, StoreError};
use tracing::{info, warn};

use crate::library::{self, Provenance};
use crate::trackers::TrackerPolicy;
use crate::{
    CatalogError, PublisherKey, PublisherSecretKey, VerifiedCatalog, asset_refs, check_assets,
    check_successor, load_catalog_dir, sign_catalog_dir,
};

/// Largest catalog torrent a subscriber downloads (catalog.json cap plus posters/subtitles).
pub const MAX_CATALOG_TORRENT_BYTES: u64 = 256 * 1024 * 1024;
/// How long a refresh waits for the catalog torrent to download.
pub const CATALOG_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a peer lookup collects answers.
const PEER_LOOKUP: Duration = Duration::from_secs(5);

/// Errors of publishing and refreshing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The catalog itself is invalid, forged, or a rollback.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The DHT failed.
    #[error(transparent)]
    Dht(#[from] DhtError),
    /// The swarm engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing was found on the DHT for this publisher.
    #[error(
        "no catalog found on the DHT for {0}: the publisher may never have published, or no node holds the item"
    )]
    NotFound(String),
    /// The DHT offers an older catalog than one already accepted.
    #[error(
        "refused: the DHT offers seq {offered} for {address}, below seq {held} already accepted (rollback)"
    )]
    Rollback {
        /// Publisher address.
        address: String,
        /// Offered seq.
        offered: u64,
        /// Highest seq accepted before.
        held: u64,
    },
    /// The catalog does not match the pointer that named it.
    #[error("refused: {0}")]
    Mismatch(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SyncError {
    let context = context.into();
    move |source| SyncError::Io { context, source }
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The catalog's seq (also the pointer's).
    pub seq: u64,
    /// Infohash of the catalog torrent.
    pub infohash: String,
    /// Nodes that stored the pointer.
    pub stored_at: u32,
    /// Number of titles.
    pub titles: usize,
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// The held catalog is current.
    Unchanged {
        /// Its seq.
        seq: u64,
    },
    /// A newer catalog was verified and indexed.
    Updated {
        /// The new seq.
        seq: u64,
        /// Titles in it.
        titles: usize,
        /// Publisher name.
        publisher: String,
    },
}

/// Publisher and subscriber operations over one engine and one DHT node.
#[derive(Clone)]
pub struct CatalogSync {
    engine: Engine,
    dht: PointerDht,
    store: Arc<Store>,
    data_dir: PathBuf,
    trackers: TrackerPolicy,
}

impl CatalogSync {
    /// Uses `engine` for the swarm, `dht` for pointers and peers, and keeps catalog folders
    /// under `data_dir/catalogs` and staged publications under `data_dir/publish`.
    pub fn new(engine: Engine, dht: PointerDht, store: Arc<Store>, data_dir: &Path) -> Self {
        CatalogSync {
            engine,
            dht,
            store,
            data_dir: data_dir.to_path_buf(),
            trackers: TrackerPolicy::default(),
        }
    }

    /// Which trackers of the catalogs' magnets are indexed (and so played): by default
    /// ([`TrackerPolicy::PublicOnly`]) none on loopback, private or link-local addresses.
    pub fn with_tracker_policy(mut self, trackers: TrackerPolicy) -> Self {
        self.trackers = trackers;
        self
    }

    /// The DHT node.
    pub fn dht(&self) -> &PointerDht {
        &self.dht
    }

    fn listen_port(&self) -> Option<u16> {
        self.engine.listen_addr().map(|a| a.port())
    }

    async fn announce(&self, infohash: [u8; 20]) {
        if let Some(port) = self.listen_port()
            && let Err(e) = self.dht.announce_peer(infohash, port).await
        {
            warn!(error = %e, "announce");
        }
    }

    /// Signs `dir`, seeds it as a torrent and puts the pointer. Keep the process running (and
    /// call [`CatalogSync::republish`] periodically) so that the catalog stays reachable.
    pub async fn publish(
        &self,
        key: &PublisherSecretKey,
        dir: &Path,
    ) -> Result<Published, SyncError> {
        let signed = sign_catalog_dir(dir, key)?;
        let cat = &signed.catalog;
        let seq = cat.seq();
        // Stage exactly the catalog's files, so nothing else in the folder is shared.
        let stage_root = self
            .data_dir
            .join("publish")
            .join(key.public_key().to_hex())
            .join(format!("seq-{seq}"));
        let stage = stage_root.join("catalog");
        if stage_root.exists() {
            std::fs::remove_dir_all(&stage_root).map_err(io("cannot clear the staging folder"))?;
        }
        std::fs::create_dir_all(&stage).map_err(io("cannot create the staging folder"))?;
        let mut files: Vec<String> = vec![crate::CATALOG_JSON.into(), crate::CATALOG_SIG.into()];
        files.extend(
            asset_refs(cat.catalog())
                .into_iter()
                .map(|a| a.path.to_owned()),
        );
        files.sort();
        files.dedup();
        for rel in &files {
            let to = stage.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io("cannot stage the catalog"))?;
            }
            std::fs::copy(dir.join(rel), &to).map_err(io(format!("cannot stage {rel}")))?;
        }
        let created = kino_engine::create::create_torrent(&stage, None, |_, _| {})?;
        let ih = created.info.infohash;
        self.engine.seed_created(&created).await?;
        let seq_i64 =
            i64::try_from(seq).map_err(|_| SyncError::Mismatch("seq too large".into()))?;
        let published = self
            .dht
            .publish(key.signing_key(), None, ih.0, seq_i64, None)
            .await?;
        self.announce(ih.0).await;
        info!(seq, stored_at = published.stored_at, "catalog published");
        Ok(Published {
            seq,
            infohash: infohash_hex(&ih),
            stored_at: published.stored_at,
            titles: cat.catalog().titles.len(),
        })
    }

    /// Resolves, downloads, verifies and indexes the newest catalog of a subscribed publisher.
    pub async fn refresh(
        &self,
        key: &PublisherKey,
        salt: Option<&[u8]>,
    ) -> Result<Refreshed, SyncError> {
        let result = self.refresh_inner(key, salt).await;
        let err = result.as_ref().err().map(|e| e.to_string());
        library::record_refresh(&self.store, key, err.as_deref())?;
        result
    }

    async fn refresh_inner(
        &self,
        key: &PublisherKey,
        salt: Option<&[u8]>,
    ) -> Result<Refreshed, SyncError> {
        let address = key.address();
        let held = library::held(&self.store, key)?;
        let pointer = self
            .dht
            .resolve(&key.to_bytes(), salt)
            .await?
            .ok_or_else(|| SyncError::NotFound(address.clone()))?;
        let item = pointer.pointer.clone();
        let offered = u64::try_from(pointer.seq()).map_err(|_| {
            SyncError::Mismatch(format!("negative seq {} on the DHT", pointer.seq()))
        })?;
        let ih = pointer.infohash();
        let ih_hex = hex_of(&ih);
        if let Some(h) = &held {
            if offered < h.highest_seq_seen {
                return Err(SyncError::Rollback {
                    address,
                    offered,
                    held: h.highest_seq_seen,
                });
            }
            if ih_hex == h.infohash {
                // The pointer names the torrent already held, whose verified catalog says
                // h.seq: nothing to download. Whatever the outcome, the held catalog stays as
                // it is, and seeding.
                self.keep_seeding(h).await;
                if offered == h.seq {
                    library::set_signed_pointer(&self.store, key, &item.to_bytes())?;
                    return Ok(Refreshed::Unchanged { seq: offered });
                }
                return Err(SyncError::Mismatch(format!(
                    "the catalog says seq {} but its DHT pointer says seq {offered} (the pointer \
                     names the catalog already held, which is kept)",
                    h.seq
                )));
            }
        }
        let peers = self.dht.get_peers(ih, PEER_LOOKUP).await;
        let publisher_root = self.data_dir.join("catalogs").join(key.to_hex());
        let folder_root = publisher_root.join(&ih_hex);
        // What this refresh creates, and only that, goes again if the catalog is refused. The
        // held catalog has another infohash (checked above), so neither its torrent nor its
        // folder is ever among it.
        let id = kino_engine::Id20::new(ih);
        let created = Created {
            torrent: !self.torrent_known(&id)?,
            folder: !exists(&folder_root)?,
            publisher_folder: !exists(&publisher_root)?,
        };
        let downloaded = self
            .engine
            .download_small(
                id,
                peers.clone(),
                &folder_root,
                MAX_CATALOG_TORRENT_BYTES,
                CATALOG_DOWNLOAD_TIMEOUT,
                "catalog",
            )
            .await;
        let verified = downloaded
            .map_err(SyncError::from)
            .and_then(|(torrent, folder)| {
                let v = self.verify_folder(key, &folder, offered, held.as_ref())?;
                Ok((torrent, folder, v))
            });
        let (torrent, folder, verified) = match verified {
            Ok(v) => v,
            Err(e) => {
                // Nothing of a refused or unreachable catalog is kept: not indexed, not seeded,
                // no folder left behind.
                self.discard(id, &publisher_root, &folder_root, created)
                    .await;
                return Err(e);
            }
        };
        let seeders = self
            .engine
            .transfer_status(&torrent.infohash())
            .map_or(peers.len() as u32, |t| t.peers.max(peers.len() as u32));
        library::index(
            &self.store,
            &verified,
            Provenance {
                infohash: &ih_hex,
                folder: &folder.to_string_lossy(),
                seeders_seen: seeders,
                signed_pointer: Some(&item.to_bytes()),
            },
            self.trackers,
        )?;
        // The previous version is no longer needed (the new one is indexed: failing to remove
        // the old one leaves files behind, nothing worse).
        if let Some(h) = held
            && h.infohash != ih_hex
        {
            if let Some(old) = kino_engine::parse_infohash(&h.infohash)
                && let Err(e) = self.engine.forget(&old).await
            {
                warn!(
                    error = %e,
                    publisher = %address,
                    "cannot stop seeding the previous version of a catalog"
                );
            }
            remove_folder(
                &publisher_root.join(&h.infohash),
                "the previous version of a catalog",
            );
        }
        self.announce(ih).await;
        if let Err(e) = self.dht.publish_signed(&item).await {
            warn!(error = %e, "republishing the publisher's item");
        }
        let c = verified.catalog();
        Ok(Refreshed::Updated {
            seq: offered,
            titles: c.titles.len(),
            publisher: c.publisher.name.clone(),
        })
    }

    /// Whether the engine manages or has a record of this torrent (a catalog's, or anything
    /// else the user has, such as a cached film a hostile pointer names).
    fn torrent_known(&self, ih: &kino_engine::Id20) -> Result<bool, SyncError> {
        Ok(self.engine.torrent(ih).is_some()
            || self.engine.store().torrent(&infohash_hex(ih))?.is_some())
    }

    /// Undoes what a failed refresh created ([`Created`]), logging what cannot be undone.
    async fn discard(
        &self,
        ih: kino_engine::Id20,
        publisher_root: &Path,
        folder_root: &Path,
        created: Created,
    ) {
        if created.torrent
            && let Err(e) = self.engine.forget(&ih).await
        {
            warn!(error = %e, "cannot forget the torrent of a refused catalog");
        }
        if created.folder {
            remove_folder(folder_root, "the folder of a refused catalog");
        }
        if created.publisher_folder {
            // Only if empty: remove_dir refuses a folder with anything in it.
            match std::fs::remove_dir(publisher_root) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => warn!(
                    error = %e,
                    folder = %publisher_root.display(),
                    "cannot remove the empty catalog folder of a publisher"
                ),
            }
        }
    }

    fn verify_folder(
        &self,
        key: &PublisherKey,
        folder: &Path,
        pointer_seq: u64,
        held: Option<&library::HeldCatalog>,
    ) -> Result<VerifiedCatalog, SyncError> {
        let (unverified, sig) = load_catalog_dir(folder)?;
        let verified = unverified.verify(key, &sig, held.map(|h| h.highest_seq_seen))?;
        if verified.seq() != pointer_seq {
            return Err(SyncError::Mismatch(format!(
                "the catalog says seq {} but its DHT pointer says seq {pointer_seq}",
                verified.seq()
            )));
        }
        if let Some(h) = held {
            // Refuses the same seq with other content; a lower seq was refused above.
            check_successor(h.version(), verified.version())?;
        }
        check_assets(folder, verified.catalog())?;
        Ok(verified)
    }

    /// Makes sure a held catalog's torrent is seeding in this engine.
    async fn keep_seeding(&self, h: &library::HeldCatalog) {
        let Some(ih) = kino_engine::parse_infohash(&h.infohash) else {
            return;
        };
        if self.engine.torrent(&ih).is_none() {
            let root = self
                .data_dir
                .join("catalogs")
                .join(&h.public_key)
                .join(&h.infohash);
            let r = self
                .engine
                .add_capped(
                    &TorrentSource::InfoHash(ih),
                    AddOptions {
                        peers: Vec::new(),
                        placement: Placement::Download(root),
                    },
                    Some(MAX_CATALOG_TORRENT_BYTES),
                )
                .await;
            if let Err(e) = r {
                warn!(error = %e, "seeding a held catalog");
            }
        }
        self.announce(ih.0).await;
    }

    /// Republishes every held catalog's signed DHT item unchanged, announces this node as a
    /// peer of each catalog torrent, and makes sure each is seeding. Returns how many items
    /// were put.
    pub async fn republish(&self) -> Result<usize, SyncError> {
        let mut n = 0;
        for h in library::held_catalogs(&self.store)? {
            self.keep_seeding(&h).await;
            let Some(bytes) = &h.signed_pointer else {
                continue;
            };
            match SignedPointer::from_bytes(bytes) {
                Ok(item) => match self.dht.publish_signed(&item).await {
                    Ok(_) => n += 1,
                    Err(e) => warn!(error = %e, publisher = %h.publisher_name, "republish"),
                },
                Err(e) => warn!(error = %e, "stored item is invalid"),
            }
        }
        Ok(n)
    }
}

/// What one refresh created before it knew whether the catalog would be accepted.
#[derive(Debug, Clone, Copy)]
struct Created {
    /// The engine neither managed nor had a record of the torrent.
    torrent: bool,
    /// `catalogs/<publisher>/<infohash>` did not exist.
    folder: bool,
    /// `catalogs/<publisher>` did not exist.
    publisher_folder: bool,
}

/// Whether `path` exists (a symlink counts, and is not followed).
fn exists(path: &Path) -> Result<bool, SyncError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SyncError::Io {
            context: format!("cannot check {}", path.display()),
            source: e,
        }),
    }
}

/// Removes a folder Kino made, logging (not failing) when it cannot.
fn remove_folder(path: &Path, what: &str) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(error = %e, folder = %path.display(), "cannot remove {what}"),
    }
}

fn hex_of(ih: &[u8; 20]) -> String {
    infohash_hex(&kino_engine::Id20::new(*ih))
}
