//! Signed mutable pointers on the Mainline DHT (BEP 44 / BEP 46) for Kino.
//!
//! A publisher names its current catalog torrent with a small item stored in the DHT under its
//! ed25519 public key (and an optional salt): `{seq, v = pointer to the infohash, signature}`.
//! There is no server: anyone who knows the key can find the newest catalog, and anyone who
//! holds the signed item can keep it alive by putting it again, unchanged.
//!
//! # The flow
//! 1. **Publish** — [`PointerDht::publish`] signs `(salt, seq, v)` with the publisher's key and
//!    puts it on the ~20 DHT nodes closest to `SHA-1(public key ‖ salt)`. `seq` must grow with
//!    every new catalog; `cas` (compare-and-swap) makes storage nodes refuse the put if they hold
//!    another seq than the one the publisher last saw.
//! 2. **Resolve** — [`PointerDht::resolve`] asks those nodes, verifies every answer (mainline
//!    checks the signature when decoding; [`SignedPointer`] checks it again and enforces the
//!    pointer format), keeps the highest seq, and merges it into the [`PointerCache`].
//! 3. **Cache** — the cache holds the last verified item per address. A lower seq never replaces
//!    a higher one, and the same seq with another value never replaces the held one. Items
//!    export to a compact byte form ([`SignedPointer::to_bytes`]) for the caller to persist and
//!    import back ([`PointerCache::import_bytes`], which verifies again).
//! 4. **Republish** — items expire from DHT nodes after about two hours, so a
//!    [`RepublisherHandle`] re-puts every kept item every 50 minutes, signed by its publisher,
//!    unchanged ([`PointerDht::publish_signed`]).
//!
//! # The pointer value
//! BEP 46 stores the dictionary `{ih: <20-byte infohash>}` as `v`. The `mainline` crate only
//! puts `v` as a bencode byte string, so Kino stores the bencoded dictionary *inside* that byte
//! string: `v = "d2:ih20:<20 raw bytes>e"`. [`encode_pointer`] and [`decode_pointer`] are the
//! only code that knows this; see `docs/dht.md`.
//!
//! # Addresses
//! A [`PointerAddress`] (public key + salt) has a magnet form,
//! `magnet:?xs=urn:btpk:<64 hex>&s=<salt hex>`, parsed strictly.
//!
//! # Testing
//! [`LocalTestnet`] starts a private DHT on 127.0.0.1; [`DhtConfig::loopback`] makes a client
//! for it. Nothing in tests leaves the loopback interface.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kino_dht::DhtError> {
//! use kino_dht::{LocalTestnet, PointerDht, SigningKey};
//! let testnet = LocalTestnet::start(30)?;
//! let publisher = PointerDht::new(testnet.client_config())?;
//! let viewer = PointerDht::new(testnet.client_config())?;
//! let key = SigningKey::from_bytes(&[7; 32]);
//! publisher.publish(&key, Some(b"catalog"), [1; 20], 1, None).await?;
//! let found = viewer.resolve(key.verifying_key().as_bytes(), Some(b"catalog")).await?;
//! assert_eq!(found.map(|p| p.infohash()), Some([1; 20]));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod address;
mod cache;
mod error;
mod node;
mod pointer;
mod republish;
mod signed;
mod testnet;

pub use address::{MAX_SALT_LEN, PointerAddress};
pub use cache::{CacheOutcome, DEFAULT_CACHE_CAPACITY, PointerCache};
pub use error::DhtError;
pub use node::{DhtConfig, PointerDht, Published, Resolution, ResolveStats, ResolvedPointer};
pub use pointer::{INFOHASH_LEN, POINTER_LEN, decode_pointer, encode_pointer};
pub use republish::{DEFAULT_REPUBLISH_INTERVAL, RepublishConfig, RepublisherHandle, RoundReport};
pub use signed::{MAX_VALUE_LEN, SignedPointer, UncheckedSignedPointer};
pub use testnet::{LocalTestnet, MAX_TESTNET_NODES};

pub use ed25519_dalek::SigningKey;
pub use mainline::Id;
pub use tokio_util::sync::CancellationToken;
