//! Kino's base crate: ids and rules that do no I/O.
//!
//! What lives here:
//! - [`InfoHash`] ([`infohash`]): a BitTorrent v1 infohash as a type, parsed strictly from 40 hex
//!   or 32 base32 characters, shown as 40 lower-case hex, stored (serde, and SQLite behind the
//!   `sqlite` feature) as that hex string.
//! - [`base32`]: the RFC 4648 base32 decoder (and encoder) magnet links need, written once.
//! - [`ErrorKind`] ([`error`]): what the caller should do about an error, which every library
//!   error of Kino reports through its `kind()`; [`Report`] prints an error with its causes.
//! - [`piece`]: the piece length Kino gives a torrent it makes, so that streaming starts and
//!   seeks fast.
//! - [`size`]: sizes as people read them (`1.5 GiB`), one format for the CLI and the engine's
//!   messages.
//!
//! Why no I/O: these are the values and rules every other crate agrees on. Keeping them free of
//! sockets, files, runtimes and heavy dependencies (only `thiserror` and `serde`;
//! `rusqlite` only with `sqlite`) lets any crate use them, including the benchmark and tools
//! that must not pull in the engine, and lets them be tested as plain functions (as rqbit's
//! `librqbit_core` and iroh's `iroh-base` do for their ids).
//!
//! Who uses it: `kino-engine` (the piece-length rule, re-exported from
//! `kino_engine::create`) and `kino-bench` (the same rule for the torrents it makes). The other
//! crates still pass infohashes as `Id20` or hex strings; they move to [`InfoHash`] next.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod base32;
pub mod error;
pub mod infohash;
pub mod piece;
pub mod size;

pub use error::{ErrorKind, Report};
pub use infohash::{InfoHash, InfoHashError};
