//! Kino catalogs: the signed list of titles a publisher offers.
//!
//! This crate is the format part of Kino's catalog layer, with no network, engine or
//! database. The full specification is `docs/catalog.md`; in short:
//!
//! * A **publisher** is an ed25519 key ([`PublisherKey`]), written as an address
//!   `kino:<z-base-32 key>` ([`address`], [`parse_address`]). Its private key lives in a key
//!   file ([`generate_key_file`], [`load_key_file`]).
//! * A **catalog folder** holds `catalog.json` (schema [`SCHEMA_VERSION`], see [`Catalog`]),
//!   the posters and subtitle files it names by relative path, and `catalog.sig`: an ed25519
//!   signature over SHA-256 of the exact catalog.json bytes, as 128 hex characters.
//! * Data from outside is an [`UnverifiedCatalog`] (parsed, size-capped and validated; every
//!   error names the field path, such as `titles[3].streams[0].infohash`). The only way to a
//!   [`VerifiedCatalog`] is [`UnverifiedCatalog::verify`], which checks the signature under the
//!   expected key and refuses a seq below the highest already seen. [`check_successor`]
//!   refuses a reused seq with other content.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kino_catalog::{CatalogSignature, PublisherSecretKey, UnverifiedCatalog};
//!
//! let json = br#"{"schema": 1, "publisher": {"name": "Example"}, "seq": 1, "titles": []}"#;
//! let key = PublisherSecretKey::from_seed(&[7; 32]);
//! let signature = CatalogSignature::sign(json, &key);
//!
//! // What a subscriber does with bytes fetched from the swarm:
//! let unverified = UnverifiedCatalog::parse(json.to_vec())?;
//! let verified = unverified.verify(&key.public_key(), &signature, Some(1))?;
//! assert_eq!(verified.catalog().publisher.name, "Example");
//! # Ok(())
//! # }
//! ```
//!
//! On disk, [`sign_catalog_dir`] signs a folder and [`load_catalog_dir`] reads one.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod catalog;
mod dir;
mod error;
mod key;
pub mod library;
mod schema;
pub mod sync;
pub mod trackers;
mod validate;
pub mod zbase32;

pub use catalog::{
    CatalogSignature, CatalogVersion, Sha256Digest, Succession, UnverifiedCatalog, VerifiedCatalog,
    check_successor, sha256,
};
pub use dir::{
    AssetRef, CATALOG_JSON, CATALOG_SIG, SignedCatalog, asset_refs, check_assets,
    check_catalog_dir, load_catalog_dir, read_asset, sign_catalog_dir,
};
pub use ed25519_dalek;
pub use error::{AddressError, CatalogError, KeyError};
pub use key::{
    ADDRESS_PREFIX, KEY_FILE_HEADER, MAX_KEY_FILE_BYTES, MAX_SALT_BYTES, PublisherKey,
    PublisherSecretKey, SubscribeTarget, address, generate_key_file, load_key_file, parse_address,
    parse_subscribe_target,
};
pub use schema::{Catalog, Publisher, SCHEMA_VERSION, Stream, Subtitle, Title};
pub use validate::AssetKind;

/// Size and count caps. Sizes are in bytes; string lengths are UTF-8 bytes.
pub mod caps {
    /// catalog.json, checked before it is read or parsed.
    pub const MAX_CATALOG_JSON_BYTES: u64 = 4 * 1024 * 1024;
    /// Each poster file.
    pub const MAX_POSTER_BYTES: u64 = 1024 * 1024;
    /// Each subtitle file.
    pub const MAX_SUBTITLE_BYTES: u64 = 512 * 1024;
    /// catalog.sig (128 hex characters and a line ending fit well within).
    pub const MAX_SIG_FILE_BYTES: u64 = 256;
    /// Titles per catalog.
    pub const MAX_TITLES: usize = 10_000;
    /// Streams per title (at least one is required).
    pub const MAX_STREAMS_PER_TITLE: usize = 16;
    /// Subtitles per title.
    pub const MAX_SUBTITLES_PER_TITLE: usize = 32;
    /// Genres per title.
    pub const MAX_GENRES: usize = 16;
    /// `publisher.name` (at least 1).
    pub const MAX_PUBLISHER_NAME: usize = 128;
    /// `publisher.description`.
    pub const MAX_PUBLISHER_DESCRIPTION: usize = 4096;
    /// `titles[].id` (at least 1).
    pub const MAX_ID: usize = 64;
    /// `titles[].title` (at least 1).
    pub const MAX_TITLE: usize = 256;
    /// `titles[].synopsis`.
    pub const MAX_SYNOPSIS: usize = 8192;
    /// Each genre (at least 1).
    pub const MAX_GENRE: usize = 64;
    /// Earliest `titles[].year`.
    pub const MIN_YEAR: u16 = 1850;
    /// Latest `titles[].year`.
    pub const MAX_YEAR: u16 = 2200;
    /// Largest `titles[].runtime_minutes` (at least 1).
    pub const MAX_RUNTIME_MINUTES: u32 = 6000;
    /// A relative path (poster, subtitle).
    pub const MAX_PATH: usize = 255;
    /// Components of a relative path.
    pub const MAX_PATH_DEPTH: usize = 8;
    /// An SPDX licence identifier.
    pub const MAX_LICENCE_ID: usize = 64;
    /// A licence URL.
    pub const MAX_LICENCE_URL: usize = 2048;
    /// `streams[].quality` (at least 1).
    pub const MAX_QUALITY: usize = 32;
    /// `streams[].mime`.
    pub const MAX_MIME: usize = 127;
    /// `streams[].video_codec`, `streams[].audio_codec`.
    pub const MAX_CODEC: usize = 64;
    /// `streams[].magnet`.
    pub const MAX_MAGNET: usize = 4096;
    /// `subtitles[].language`.
    pub const MAX_LANGUAGE: usize = 35;
}
