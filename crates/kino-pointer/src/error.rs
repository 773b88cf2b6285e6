//! Errors of the pointer path: the mechanism's own ([`PointerError`]) and a fetch's, which adds
//! the caller's refusal ([`FetchError`]).

use std::path::PathBuf;

use kino_dht::DhtError;
use kino_engine::EngineError;

/// What can go wrong on the pointer path itself (not in the caller's check).
#[derive(Debug, thiserror::Error)]
pub enum PointerError {
    /// The DHT failed (resolve, put).
    #[error(transparent)]
    Dht(#[from] DhtError),
    /// The swarm engine failed: the torrent could not be made, seeded or downloaded (too large,
    /// no peer in time, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The DHT's newest valid item under the key has a lower seq than one the caller already
    /// accepted: an old, genuinely signed item served again. Nothing was downloaded.
    #[error(
        "refused: the DHT offers seq {offered} under key {public_key}, below seq {floor} already \
         accepted (replay of an old pointer)"
    )]
    Replay {
        /// The key the item is under (hex).
        public_key: String,
        /// The seq offered.
        offered: i64,
        /// The lowest seq the caller accepts (the highest it accepted before).
        floor: i64,
    },
    /// A file to publish is not a plain relative path inside the folder it is staged from.
    #[error("cannot stage {path}: {reason}")]
    Stage {
        /// The path as given.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PointerError {
    let context = context.into();
    move |source| PointerError::Io { context, source }
}

/// Why a fetch kept nothing: the path failed, or the caller's check refused what it found.
/// Either way, what the fetch created is gone and what was held is untouched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError<E> {
    /// The pointer path failed before the check ran (peers, download, file system).
    #[error(transparent)]
    Pointer(#[from] PointerError),
    /// The caller's check refused the downloaded torrent (or could not record it).
    #[error(transparent)]
    Refused(E),
}
