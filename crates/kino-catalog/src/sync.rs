//! Publishing and subscribing over the DHT and the swarm, on the pointer path of
//! [`kino_pointer`] (written once for catalogs and updates); this module keeps only the
//! catalog's own rules.
//!
//! Publisher: sign the catalog folder and publish exactly the files it references (a frozen
//! staged copy, seeded as a torrent) under a signed BEP 44 pointer `{ih: infohash}` with `seq`
//! = the catalog's seq under the publisher's key ([`kino_pointer::Pointers::publish`]).
//!
//! Subscriber ([`CatalogSync::refresh`]): resolve the pointer (highest valid seq among the
//! answers) and refuse a seq below the highest ever accepted (kept in SQLite); a pointer naming
//! the held torrent downloads nothing. Otherwise [`kino_pointer::Pointers::fetch`] downloads
//! the torrent (size-capped before any piece is fetched) and runs the catalog's check: verify
//! the detached signature with the subscribed key, check that the catalog's seq is the
//! pointer's, apply the same-seq rule, check every asset, and index it (its magnets' trackers
//! filtered by the [`TrackerPolicy`]) with the publisher's signed item, to be republished
//! unchanged. The catalog torrent keeps seeding (the share policy applies) and replaces the
//! previous version, so the catalog stays reachable while its publisher is offline.
//!
//! A refresh that fails or refuses never touches the catalog held: not its folder, not its
//! torrent, not its database rows (only the subscription's last error). It removes only what
//! it created itself (the torrent and folder of a new infohash).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kino_dht::{DhtError, PointerDht, SignedPointer};
use kino_engine::{Engine, EngineError, infohash_hex, parse_infohash};
use kino_pointer::{Caps, FetchError, PointerError, Pointers, Shelf, Stage};
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
/// The bounds of a catalog torrent on the pointer path.
const CAPS: Caps = Caps {
    max_bytes: MAX_CATALOG_TORRENT_BYTES,
    timeout: CATALOG_DOWNLOAD_TIMEOUT,
    what: "catalog",
    // A catalog that does not arrive in time leaves nothing behind (issue 12, D18).
    resume: false,
};

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
    /// The pointer path refused something else (a file that cannot be staged).
    #[error(transparent)]
    Pointer(PointerError),
}

impl From<PointerError> for SyncError {
    fn from(e: PointerError) -> Self {
        match e {
            PointerError::Dht(e) => SyncError::Dht(e),
            PointerError::Engine(e) => SyncError::Engine(e),
            PointerError::Io { context, source } => SyncError::Io { context, source },
            other => SyncError::Pointer(other),
        }
    }
}

impl From<FetchError<SyncError>> for SyncError {
    fn from(e: FetchError<SyncError>) -> Self {
        match e {
            FetchError::Pointer(e) => e.into(),
            FetchError::Refused(e) => e,
        }
    }
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
    pointers: Pointers,
    store: Arc<Store>,
    data_dir: PathBuf,
    trackers: TrackerPolicy,
}

impl CatalogSync {
    /// Uses `engine` for the swarm, `dht` for pointers and peers, and keeps catalog folders
    /// under `data_dir/catalogs` and staged publications under `data_dir/publish`.
    pub fn new(engine: Engine, dht: PointerDht, store: Arc<Store>, data_dir: &Path) -> Self {
        CatalogSync {
            pointers: Pointers::new(engine, dht),
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
        self.pointers.dht()
    }

    /// Where one publisher's catalog torrents are kept: `catalogs/<key hex>/<infohash>`.
    fn shelf(&self, publisher_hex: &str) -> Shelf {
        Shelf::new(self.data_dir.join("catalogs").join(publisher_hex))
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
        let pointer_seq = i64::try_from(seq).map_err(|_| {
            SyncError::Mismatch(format!(
                "catalog seq {seq} is above {}, the largest seq a DHT pointer carries",
                i64::MAX
            ))
        })?;
        // Stage exactly the catalog's files, so nothing else in the folder is shared.
        let mut files: Vec<PathBuf> = vec![crate::CATALOG_JSON.into(), crate::CATALOG_SIG.into()];
        files.extend(
            asset_refs(cat.catalog())
                .into_iter()
                .map(|a| PathBuf::from(a.path)),
        );
        files.sort();
        files.dedup();
        let stage = Stage {
            source: dir,
            files: &files,
            root: self
                .data_dir
                .join("publish")
                .join(key.public_key().to_hex())
                .join(format!("seq-{seq}")),
            name: "catalog",
        };
        let published = self
            .pointers
            .publish(&stage, key.signing_key(), None, pointer_seq)
            .await?;
        info!(seq, stored_at = published.stored_at, "catalog published");
        Ok(Published {
            seq,
            infohash: infohash_hex(&published.infohash),
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
        let negative = |seq: i64| SyncError::Mismatch(format!("negative seq {seq} on the DHT"));
        let floor = held
            .as_ref()
            .map(|h| i64::try_from(h.highest_seq_seen).unwrap_or(i64::MAX));
        let offer = match self.pointers.resolve(&key.to_bytes(), salt, floor).await {
            Ok(Some(offer)) => offer,
            Ok(None) => return Err(SyncError::NotFound(address)),
            Err(PointerError::Replay { offered, floor, .. }) => {
                return Err(match u64::try_from(offered) {
                    Ok(offered) => SyncError::Rollback {
                        address,
                        offered,
                        held: u64::try_from(floor).unwrap_or_default(),
                    },
                    Err(_) => negative(offered),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let offered = u64::try_from(offer.seq()).map_err(|_| negative(offer.seq()))?;
        let ih = offer.infohash();
        let ih_hex = infohash_hex(&ih);
        let shelf = self.shelf(&key.to_hex());
        let held_ih = held.as_ref().and_then(|h| parse_infohash(&h.infohash));
        if let Some(h) = &held
            && ih_hex == h.infohash
        {
            // The pointer names the torrent already held, whose verified catalog says
            // h.seq: nothing to download. Whatever the outcome, the held catalog stays as
            // it is, and seeding.
            self.pointers.keep_seeding(&shelf, ih, &CAPS).await;
            if offered == h.seq {
                library::set_signed_pointer(&self.store, key, &offer.pointer().to_bytes())?;
                return Ok(Refreshed::Unchanged { seq: offered });
            }
            return Err(SyncError::Mismatch(format!(
                "the catalog says seq {} but its DHT pointer says seq {offered} (the pointer \
                 names the catalog already held, which is kept)",
                h.seq
            )));
        }
        // The catalog's own rules: its signature under the subscribed key, its seq (the
        // pointer's, no rollback, no reuse with other content), its assets; then it is indexed.
        // Anything else (a refusal, a failed download) leaves the held catalog as it is.
        let held = held.as_ref();
        let fetched = self
            .pointers
            .fetch(offer, &shelf, &CAPS, held_ih, |c| async move {
                let verified = verify_folder(key, c.content(), offered, held)?;
                library::index(
                    &self.store,
                    &verified,
                    Provenance {
                        infohash: &ih_hex,
                        folder: &c.content().to_string_lossy(),
                        seeders_seen: c.peers_seen(),
                        signed_pointer: Some(&c.pointer().to_bytes()),
                    },
                    self.trackers,
                )?;
                Ok::<_, SyncError>(verified)
            })
            .await?;
        let c = fetched.value.catalog();
        Ok(Refreshed::Updated {
            seq: offered,
            titles: c.titles.len(),
            publisher: c.publisher.name.clone(),
        })
    }

    /// Republishes every held catalog's signed DHT item unchanged, announces this node as a
    /// peer of each catalog torrent, and makes sure each is seeding. Returns how many items
    /// were put.
    pub async fn republish(&self) -> Result<usize, SyncError> {
        let mut n = 0;
        for h in library::held_catalogs(&self.store)? {
            match parse_infohash(&h.infohash) {
                Some(ih) => {
                    self.pointers
                        .keep_seeding(&self.shelf(&h.public_key), ih, &CAPS)
                        .await;
                }
                None => warn!(
                    publisher = %h.publisher_name,
                    "the held catalog's infohash is malformed in the database; not seeded"
                ),
            }
            let Some(bytes) = &h.signed_pointer else {
                continue;
            };
            match SignedPointer::from_bytes(bytes) {
                Ok(item) => match self.pointers.republish(&item).await {
                    Ok(_) => n += 1,
                    Err(e) => warn!(error = %e, publisher = %h.publisher_name, "republish"),
                },
                Err(e) => {
                    warn!(error = %e, publisher = %h.publisher_name, "stored item is invalid")
                }
            }
        }
        Ok(n)
    }
}

/// Checks a downloaded catalog folder by the catalog's rules: the detached signature under the
/// subscribed key with no rollback below what was accepted, the pointer's seq, the same-seq
/// rule against the held catalog, every asset.
fn verify_folder(
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
