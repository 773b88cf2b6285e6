//! Engine errors, by what the caller should do about them.

use std::path::PathBuf;

/// What went wrong in the engine. [`EngineError::InvalidInput`] is the user's to fix (the CLI
/// exits with code 2); [`EngineError::Timeout`] means the swarm could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A malformed magnet, infohash, torrent, file index or path; or a refused file name.
    #[error("{0}")]
    InvalidInput(String),
    /// Nothing arrived from the swarm in time.
    #[error("{0}")]
    Timeout(String),
    /// The torrent or file is not known to this engine.
    #[error("{0}")]
    NotFound(String),
    /// All stream slots stayed busy for too long.
    #[error("all {0} stream slots are busy; close a player and try again")]
    Busy(usize),
    /// The data folder is used by another running Kino.
    #[error("the data folder {0} is in use by another running Kino (stop it or pass --data-dir)")]
    DataDirLocked(PathBuf),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What Kino was doing.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] kino_store::StoreError),
    /// The torrent session reported an error.
    #[error("{0}")]
    Session(String),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

impl EngineError {
    /// An [`EngineError::InvalidInput`] with a message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        EngineError::InvalidInput(msg.into())
    }

    /// A librqbit error, with context.
    pub(crate) fn session(context: &str, e: anyhow::Error) -> Self {
        EngineError::Session(format!("{context}: {e:#}"))
    }

    /// An I/O error, with context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}
