//! A torrent named by a signed DHT pointer: Kino's one security path for everything it finds
//! that way, written once, with the check passed in.
//!
//! Catalogs (`kino-catalog`) and updates (`kino-update`) travel the same way: a publisher seeds
//! a folder as a torrent and puts a BEP 44 item `{ih: infohash}` under its key; a subscriber
//! resolves the item, downloads the torrent and verifies it before anything uses it. This crate
//! is that path; each caller keeps only its own rules (a catalog's signature and seq, TUF for
//! updates) in the check it passes to [`Pointers::fetch`]. It sits above the engine and the DHT
//! and below catalogs and updates: `kino-catalog`/`kino-update` → `kino-pointer` →
//! `kino-dht`/`kino-engine`.
//!
//! # Publishing
//! [`Pointers::publish`] copies the files of a [`Stage`] into a frozen staging folder (later
//! edits of the source never change what is seeded, and nothing unlisted is shared), makes a
//! torrent of it, seeds it, puts the signed pointer under the key and salt with the given seq,
//! and announces this node as a peer of the torrent. [`Pointers::put`] puts more pointers to
//! the same torrent.
//!
//! # Fetching: unchecked until checked
//! 1. [`Pointers::resolve`] gives an [`Offer`]: the highest valid seq on the DHT (signatures
//!    checked by kino-dht) that is not below the caller's replay floor
//!    ([`PointerError::Replay`] otherwise, before anything is downloaded).
//! 2. [`Pointers::fetch`] finds the torrent's peers and downloads it onto a [`Shelf`] within
//!    [`Caps`] (size checked on the metainfo before any piece, bounded in time), and hands the
//!    unverified [`Candidate`] to the caller's check.
//! 3. Refused or failed: exactly what this fetch created goes again; what is held stays as it
//!    is ([`FetchError`]). (With [`Caps::resume`], a download that ran out of time goes on
//!    instead, for the next fetch to resume.)
//! 4. Accepted ([`Fetched`]): the torrent it replaces is forgotten and its folder removed
//!    (logged when impossible), the torrent keeps seeding, this node announces itself and
//!    republishes the publisher's item unchanged.
//! 5. Later, [`Pointers::keep_seeding`] and [`Pointers::republish`] keep what is held reachable
//!    while its publisher is offline.
//!
//! ```no_run
//! # async fn demo(pointers: kino_pointer::Pointers, key: [u8; 32]) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use kino_pointer::{Caps, Shelf};
//!
//! let caps = Caps {
//!     max_bytes: 1 << 20,
//!     timeout: Duration::from_secs(60),
//!     what: "example",
//!     resume: false,
//! };
//! let shelf = Shelf::new("/var/lib/kino/example");
//! if let Some(offer) = pointers.resolve(&key, Some(b"example"), Some(3)).await? {
//!     let fetched = pointers
//!         .fetch(offer, &shelf, &caps, None, |c| async move {
//!             // The caller's rules: verify c.content() against c.pointer(), record it.
//!             std::fs::read(c.content().join("README")).map(|b| b.len())
//!         })
//!         .await?;
//!     println!("kept {} bytes of README", fetched.value);
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod error;
mod fetch;
mod publish;

pub use error::{FetchError, PointerError};
pub use fetch::{Candidate, Caps, Fetched, Offer, Shelf};
pub use publish::{Published, Stage};

use kino_dht::PointerDht;
use kino_engine::{Engine, Id20};
use tracing::warn;

/// The pointer path over one engine (the swarm) and one DHT node (pointers and peers).
#[derive(Clone)]
pub struct Pointers {
    engine: Engine,
    dht: PointerDht,
}

impl Pointers {
    /// Uses `engine` for torrents and `dht` for pointers and peer lookups.
    pub fn new(engine: Engine, dht: PointerDht) -> Self {
        Pointers { engine, dht }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The DHT node.
    pub fn dht(&self) -> &PointerDht {
        &self.dht
    }

    /// Announces this node on the DHT as a peer of `infohash` (when the engine listens).
    async fn announce(&self, infohash: Id20, what: &'static str) {
        if let Some(port) = self.engine.listen_addr().map(|a| a.port())
            && let Err(e) = self.dht.announce_peer(infohash.0, port).await
        {
            warn!(error = %e, what, "cannot announce this node as a peer");
        }
    }
}
