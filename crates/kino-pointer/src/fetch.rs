//! The subscriber's side: resolve a pointer, refuse a replay, download the torrent it names
//! with caps, let the caller check it, then keep it or discard exactly what this fetch made.
//!
//! Invariants (the rule catalogs established in issue 12, D2/D18, now the rule for all):
//! - A fetch that fails or is refused never touches what the caller holds: not its torrent,
//!   not its folder. It removes only what it created itself: the torrent if the engine neither
//!   managed nor had a record of it, `shelf/<ih>` if it did not exist, `shelf` if it did not
//!   exist and is empty again.
//! - An [`Offer`] (a resolved item not below the replay floor) is the only thing that can be
//!   fetched, and a [`Candidate`] (an unverified download) is only seen by the caller's check:
//!   nothing is kept, announced or republished unless the check returned `Ok`.
//! - Every cleanup that cannot be done is logged with what it was for; none fails the fetch.
//! - The one exception to "a failed fetch is undone": with [`Caps::resume`], a download that
//!   ran out of time once the torrent is in the engine goes on, to be resumed by the next fetch
//!   (it is still checked before anything uses it).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kino_dht::{DhtError, SignedPointer};
use kino_engine::{AddOptions, EngineError, Id20, Placement, TorrentSource, infohash_hex};
use tracing::{info, warn};

use crate::Pointers;
use crate::error::{FetchError, PointerError};

/// How long a peer lookup collects answers.
const PEER_LOOKUP: Duration = Duration::from_secs(5);

/// The folder a feed keeps its torrents in: one subfolder per infohash, `root/<ih hex>`
/// (a catalog publisher's `catalogs/<key>`, the updates' `updates/torrents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shelf {
    root: PathBuf,
}

impl Shelf {
    /// Torrents go under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Shelf { root: root.into() }
    }

    /// The shelf's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one torrent on this shelf.
    pub fn folder(&self, infohash: &Id20) -> PathBuf {
        self.root.join(infohash_hex(infohash))
    }
}

/// Bounds of one kind of pointer-named torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Largest torrent accepted, checked on the metainfo before any piece is fetched.
    pub max_bytes: u64,
    /// How long the download may take.
    pub timeout: Duration,
    /// What the torrent is ("catalog", "update"), in errors and logs.
    pub what: &'static str,
    /// A download that runs out of `timeout` once the torrent is in the engine is kept (the
    /// engine goes on downloading it, and the next fetch of the same torrent resumes it)
    /// instead of undone: for torrents that may be too large to finish in one `timeout` on a
    /// slow link (updates). Otherwise every failed download is undone (catalogs).
    pub resume: bool,
}

/// A pointer found on the DHT (its signature checked by kino-dht) whose seq is not below the
/// caller's replay floor: the only thing [`Pointers::fetch`] takes.
#[derive(Debug, Clone)]
pub struct Offer {
    pointer: SignedPointer,
}

impl Offer {
    /// The signed item.
    pub fn pointer(&self) -> &SignedPointer {
        &self.pointer
    }

    /// Its seq.
    pub fn seq(&self) -> i64 {
        self.pointer.seq()
    }

    /// The torrent it names.
    pub fn infohash(&self) -> Id20 {
        Id20::new(self.pointer.infohash())
    }
}

/// A downloaded torrent nobody has checked yet, handed to the caller's check.
#[derive(Debug)]
pub struct Candidate {
    infohash: Id20,
    content: PathBuf,
    pointer: SignedPointer,
    peers_seen: u32,
}

impl Candidate {
    /// The torrent's infohash.
    pub fn infohash(&self) -> Id20 {
        self.infohash
    }

    /// The folder holding its content (`shelf/<ih>`, or `shelf/<ih>/<name>` for a multi-file
    /// torrent). Unverified: read it with the caller's caps.
    pub fn content(&self) -> &Path {
        &self.content
    }

    /// The signed item that named it.
    pub fn pointer(&self) -> &SignedPointer {
        &self.pointer
    }

    /// Peers seen for it: the more of those the DHT returned and those the engine is connected to.
    pub fn peers_seen(&self) -> u32 {
        self.peers_seen
    }
}

/// A torrent the caller's check accepted: kept seeding, what it replaced swapped out, this node
/// announced and the item republished.
#[derive(Debug)]
pub struct Fetched<T> {
    /// What the check returned.
    pub value: T,
    /// The torrent's infohash.
    pub infohash: Id20,
    /// The folder holding its content.
    pub content: PathBuf,
    /// The signed item that named it.
    pub pointer: SignedPointer,
    trail: Trail,
}

/// What one fetch created before it knew whether the torrent would be accepted.
#[derive(Debug, Clone)]
struct Trail {
    infohash: Id20,
    shelf: Shelf,
    what: &'static str,
    /// The engine neither managed nor had a record of the torrent.
    torrent: bool,
    /// `shelf/<ih>` did not exist.
    folder: bool,
    /// The shelf did not exist.
    shelf_folder: bool,
}

impl Pointers {
    /// Resolves the item under `public_key` and `salt` (the highest valid seq among the DHT's
    /// answers and this node's cache) and refuses it when its seq is below `floor`, the highest
    /// seq the caller accepted before ([`PointerError::Replay`]). `None`: nothing found.
    pub async fn resolve(
        &self,
        public_key: &[u8; 32],
        salt: Option<&[u8]>,
        floor: Option<i64>,
    ) -> Result<Option<Offer>, PointerError> {
        let Some(found) = self.dht.resolve(public_key, salt).await? else {
            return Ok(None);
        };
        let pointer = found.pointer;
        if let Some(floor) = floor
            && pointer.seq() < floor
        {
            return Err(PointerError::Replay {
                public_key: hex_key(public_key),
                offered: pointer.seq(),
                floor,
            });
        }
        Ok(Some(Offer { pointer }))
    }

    /// Fetches the torrent `offer` names onto `shelf` and hands it to `check`.
    ///
    /// Finds peers on the DHT, downloads within `caps` (size checked on the metainfo first),
    /// then awaits `check(candidate)`. The check verifies the content by the caller's rules and
    /// records its acceptance in the caller's own store (the item too, to republish it), and
    /// returns `Ok` only once that is done.
    ///
    /// - Refused (`Err` from the check) or failed (download, time-out): removes exactly what
    ///   this fetch created; `replacing` and everything else held is untouched.
    /// - Accepted: `replacing` (the torrent this one takes the place of, if another) is
    ///   forgotten and its folder on `shelf` removed (logged when impossible); the torrent keeps
    ///   seeding, this node announces itself as its peer and republishes the item unchanged.
    pub async fn fetch<T, E, V, F>(
        &self,
        offer: Offer,
        shelf: &Shelf,
        caps: &Caps,
        replacing: Option<Id20>,
        check: V,
    ) -> Result<Fetched<T>, FetchError<E>>
    where
        V: FnOnce(Candidate) -> F,
        F: Future<Output = Result<T, E>>,
    {
        let pointer = offer.pointer;
        let infohash = Id20::new(pointer.infohash());
        let peers = self.dht.get_peers(infohash.0, PEER_LOOKUP).await;
        let folder = shelf.folder(&infohash);
        let trail = Trail {
            infohash,
            shelf: shelf.clone(),
            what: caps.what,
            torrent: !self.torrent_known(&infohash)?,
            folder: !exists(&folder)?,
            shelf_folder: !exists(shelf.root())?,
        };
        let downloaded = self
            .engine
            .download_small(
                infohash,
                peers.clone(),
                &folder,
                caps.max_bytes,
                caps.timeout,
                caps.what,
            )
            .await;
        let content = match downloaded {
            Ok((_, content)) => content,
            Err(e) => {
                if caps.resume
                    && matches!(e, EngineError::Timeout(_))
                    && self.engine.torrent(&infohash).is_some()
                {
                    info!(
                        what = caps.what,
                        "the download ran out of time; it goes on, and the next fetch resumes it"
                    );
                } else {
                    // Nothing of an unreachable torrent is kept: not seeded, no folder left.
                    self.undo(&trail).await;
                }
                return Err(PointerError::from(e).into());
            }
        };
        let dht_peers = u32::try_from(peers.len()).unwrap_or(u32::MAX);
        let peers_seen = self
            .engine
            .transfer_status(&infohash)
            .map_or(dht_peers, |t| t.peers.max(dht_peers));
        let candidate = Candidate {
            infohash,
            content: content.clone(),
            pointer: pointer.clone(),
            peers_seen,
        };
        let value = match check(candidate).await {
            Ok(value) => value,
            Err(e) => {
                self.undo(&trail).await;
                return Err(FetchError::Refused(e));
            }
        };
        if let Some(old) = replacing
            && old != infohash
        {
            self.swap_out(shelf, &old, caps.what).await;
        }
        self.announce(infohash, caps.what).await;
        if let Err(e) = self.republish(&pointer).await {
            warn!(error = %e, what = caps.what, "cannot republish the item of a fetched torrent");
        }
        Ok(Fetched {
            value,
            infohash,
            content,
            pointer,
            trail,
        })
    }

    /// Undoes what the fetch of `fetched` created: for a torrent needed only for a while (the
    /// update's root chain), once the caller is done with it. What the fetch found already
    /// there stays.
    pub async fn discard<T>(&self, fetched: Fetched<T>) {
        self.undo(&fetched.trail).await;
    }

    /// Makes sure a held torrent (found before on `shelf`) is seeding in this engine, and
    /// announces this node as its peer. Failures are logged: the torrent may come back later.
    pub async fn keep_seeding(&self, shelf: &Shelf, infohash: Id20, caps: &Caps) {
        if self.engine.torrent(&infohash).is_none() {
            let added = self
                .engine
                .add_capped(
                    &TorrentSource::InfoHash(infohash),
                    AddOptions {
                        peers: Vec::new(),
                        placement: Placement::Download(shelf.folder(&infohash)),
                    },
                    Some(caps.max_bytes),
                )
                .await;
            if let Err(e) = added {
                warn!(error = %e, what = caps.what, "cannot seed a held torrent");
            }
        }
        self.announce(infohash, caps.what).await;
    }

    /// Puts a held item again, unchanged (items expire from DHT nodes after about two hours),
    /// so that what it names stays reachable while its publisher is offline.
    pub async fn republish(
        &self,
        pointer: &SignedPointer,
    ) -> Result<kino_dht::Published, DhtError> {
        self.dht.publish_signed(pointer).await
    }

    /// Whether the engine manages or has a record of this torrent (a feed's, or anything else
    /// the user has, such as a cached film a hostile pointer names).
    fn torrent_known(&self, infohash: &Id20) -> Result<bool, PointerError> {
        if self.engine.torrent(infohash).is_some() {
            return Ok(true);
        }
        let record = self
            .engine
            .store()
            .torrent(&infohash_hex(infohash))
            .map_err(EngineError::from)?;
        Ok(record.is_some())
    }

    /// Stops seeding a replaced torrent and removes its folder on `shelf`, logging what fails.
    async fn swap_out(&self, shelf: &Shelf, old: &Id20, what: &'static str) {
        if let Err(e) = self.engine.forget(old).await {
            warn!(error = %e, what, "cannot stop seeding the replaced version");
        }
        remove_folder(&shelf.folder(old), what, "the replaced version's folder");
    }

    /// Undoes what a fetch created ([`Trail`]), logging what cannot be undone.
    async fn undo(&self, trail: &Trail) {
        let what = trail.what;
        if trail.torrent
            && let Err(e) = self.engine.forget(&trail.infohash).await
        {
            warn!(error = %e, what, "cannot forget the torrent of a refused or failed fetch");
        }
        if trail.folder {
            remove_folder(
                &trail.shelf.folder(&trail.infohash),
                what,
                "the folder of a refused or failed fetch",
            );
        }
        if trail.shelf_folder {
            // Only if empty: remove_dir refuses a folder with anything in it.
            match std::fs::remove_dir(trail.shelf.root()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => warn!(
                    error = %e,
                    what,
                    folder = %trail.shelf.root().display(),
                    "cannot remove an empty shelf folder a fetch created"
                ),
            }
        }
    }
}

/// Whether `path` exists (a symlink counts, and is not followed).
fn exists(path: &Path) -> Result<bool, PointerError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(PointerError::Io {
            context: format!("cannot check {}", path.display()),
            source: e,
        }),
    }
}

/// Removes a folder Kino made, logging (not failing) when it cannot.
fn remove_folder(path: &Path, what: &'static str, which: &'static str) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(error = %e, what, folder = %path.display(), "cannot remove {which}"),
    }
}

fn hex_key(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
