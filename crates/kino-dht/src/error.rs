//! Errors of this crate.

use std::time::Duration;

/// Everything that can go wrong while publishing, resolving, caching or parsing pointers.
///
/// Public keys are shown in hex (they are public identifiers); infohashes are not included.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The DHT node could not be started (usually the UDP port is taken).
    #[error(
        "could not start the DHT node on {bind} (choose another port or stop the other program)"
    )]
    Bind {
        /// The address that was asked for.
        bind: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A bootstrap address did not parse or resolve to an IPv4 `host:port`.
    #[error("bootstrap node `{addr}` is not a resolvable IPv4 host:port")]
    BadBootstrap {
        /// The address as configured.
        addr: String,
    },

    /// A pointer value was not exactly `d2:ih20:<20 bytes>e`.
    #[error("invalid pointer value ({len} bytes): {reason}")]
    InvalidPointer {
        /// What was wrong.
        reason: &'static str,
        /// Length of the rejected value.
        len: usize,
    },

    /// The ed25519 signature over (salt, seq, v) does not verify under the item's public key.
    #[error("signature of the item for key {public_key} (seq {seq}) does not verify")]
    BadSignature {
        /// Hex public key.
        public_key: String,
        /// Claimed sequence number.
        seq: i64,
    },

    /// The bytes are not a valid ed25519 public key.
    #[error("{public_key} is not a valid ed25519 public key")]
    BadPublicKey {
        /// Hex public key.
        public_key: String,
    },

    /// A salt longer than BEP 44 allows.
    #[error("salt is {len} bytes; BEP 44 allows at most 64")]
    SaltTooLong {
        /// Length of the salt.
        len: usize,
    },

    /// The exported byte form of a signed pointer could not be read.
    #[error("stored signed pointer is malformed: {reason}")]
    MalformedSignedPointer {
        /// What was wrong.
        reason: &'static str,
    },

    /// A magnet link for a pointer could not be parsed.
    #[error("invalid pointer magnet `{input}`: {reason}")]
    BadMagnet {
        /// The input, truncated to 200 characters.
        input: String,
        /// What was wrong.
        reason: String,
    },

    /// Storage nodes refused the put because the compare-and-swap `seq` did not match.
    #[error(
        "CAS mismatch publishing key {public_key}: the DHT holds a seq other than {cas}; resolve again, then publish seq+1 with cas = that seq"
    )]
    CasMismatch {
        /// Hex public key.
        public_key: String,
        /// The CAS value that was sent.
        cas: i64,
    },

    /// The item's seq is older than one already seen (on the DHT or in the local cache).
    #[error(
        "seq {seq} for key {public_key} is not the most recent (held: {held:?}); resolve again and publish a higher seq"
    )]
    NotMostRecent {
        /// Hex public key.
        public_key: String,
        /// The seq that was refused.
        seq: i64,
        /// The seq held locally, when the refusal came from the cache.
        held: Option<i64>,
    },

    /// A different item with the same seq is already held or being put.
    #[error(
        "another value with seq {seq} for key {public_key} is already held; publish seq+1 instead"
    )]
    SeqConflict {
        /// Hex public key.
        public_key: String,
        /// The conflicting seq.
        seq: i64,
    },

    /// The put reached no storage node or all of them failed.
    #[error("putting the item for key {public_key} failed")]
    Put {
        /// Hex public key.
        public_key: String,
        /// mainline's error.
        #[source]
        source: mainline::errors::PutQueryError,
    },

    /// The operation did not finish in time.
    #[error("{operation} for key {public_key} did not finish within {after:?}")]
    Timeout {
        /// What timed out.
        operation: &'static str,
        /// Hex public key.
        public_key: String,
        /// The limit.
        after: Duration,
    },

    /// Announcing this node as a peer of a torrent failed.
    #[error("announcing as a peer of {infohash} failed: {reason}")]
    Announce {
        /// Hex infohash.
        infohash: String,
        /// What went wrong.
        reason: String,
    },

    /// The local cache holds its maximum number of entries.
    #[error("the pointer cache is full ({capacity} entries); forget unused publishers first")]
    CacheFull {
        /// Configured capacity.
        capacity: usize,
    },
}

impl DhtError {
    /// What the caller should do about it.
    pub fn kind(&self) -> kino_core::ErrorKind {
        use kino_core::ErrorKind;
        match self {
            DhtError::BadBootstrap { .. }
            | DhtError::BadPublicKey { .. }
            | DhtError::SaltTooLong { .. }
            | DhtError::BadMagnet { .. } => ErrorKind::UserInput,
            DhtError::Bind { .. }
            | DhtError::InvalidPointer { .. }
            | DhtError::BadSignature { .. }
            | DhtError::CasMismatch { .. }
            | DhtError::NotMostRecent { .. }
            | DhtError::SeqConflict { .. }
            | DhtError::Put { .. }
            | DhtError::Timeout { .. }
            | DhtError::Announce { .. } => ErrorKind::Network,
            DhtError::MalformedSignedPointer { .. } | DhtError::CacheFull { .. } => {
                ErrorKind::Storage
            }
        }
    }
}

pub(crate) fn key_hex(public_key: &[u8; 32]) -> String {
    hex::encode(public_key)
}
