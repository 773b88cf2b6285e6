//! Kino updates on The Update Framework (TUF), through the `tough` crate.
//!
//! A release repository is a folder `metadata/` (`N.root.json`, `timestamp.json`,
//! `snapshot.json`, `targets.json`) plus `targets/` (one binary per platform, named
//! `kino-<version>-<platform>`, with `{"kino": {"version", "platform"}}` in its `custom` field).
//! The folder travels as a torrent; a BEP 44 pointer signed by the timestamp role's ed25519 key
//! names its infohash, with `seq` = the timestamp version ([`p2p`]).
//!
//! - [`release`]: key generation, the root (N keys, threshold M), publication and signing, with
//!   tough's `editor`.
//! - [`client`]: verification of a repository folder with tough's `RepositoryLoader` over a
//!   `FilesystemTransport`, the version floor, staging, atomic install and rollback.
//! - [`p2p`]: publishing the repository as a torrent under a pointer, and fetching it.
//!
//! Security rests on tough's checks (signatures, thresholds, expiry, versions, hashes, lengths,
//! the root chain) plus Kino's own: target names are plain file names, versions only go up, the
//! pointer seq never goes down and must equal the timestamp version. See `docs/updates.md`.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod client;
mod error;
pub mod keys;
pub mod p2p;
pub mod release;
mod version;

pub use client::{ClientConfig, Installed, StagedBinary, UpdateClient, VerifiedRelease};
pub use error::UpdateError;
pub use version::Version;

/// The trusted root shipped in the binary (`crates/kino-update/trusted/root.json`). Empty until
/// the release managers hold a key ceremony with `kino release init`: then updates are disabled
/// unless a root is given with [`ROOT_OVERRIDE_ENV`].
pub const EMBEDDED_ROOT: &[u8] = include_bytes!("../trusted/root.json");

/// Environment variable naming a root.json file to trust instead of [`EMBEDDED_ROOT`]. For tests
/// and private builds only: whoever sets it chooses which release keys this client trusts.
pub const ROOT_OVERRIDE_ENV: &str = "KINO_UPDATE_ROOT";

/// The platform name used in target names: `<arch>-<os>`, e.g. `x86_64-linux`.
pub fn current_platform() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Salt of the update pointer on the DHT (BEP 44), under the timestamp key.
pub const POINTER_SALT: &[u8] = b"kino-update";

/// Salt of the root pointer on the DHT (BEP 44), under each root key: `seq` = the root version,
/// naming an update torrent whose `metadata/` holds the root chain. A client on an older root
/// follows it to walk the chain (see `docs/updates.md`).
pub const ROOT_POINTER_SALT: &[u8] = b"kino-update-root";
