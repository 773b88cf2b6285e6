//! Engine errors, by what the caller should do about them.

use std::path::PathBuf;

use kino_core::ErrorKind;

/// What went wrong in the engine. [`EngineError::InvalidInput`], [`EngineError::DataMismatch`]
/// and [`EngineError::WouldOverwrite`] are the user's to fix (the CLI exits with code 2, see
/// [`EngineError::is_user_error`]); [`EngineError::Timeout`] means the swarm could not be
/// reached; [`EngineError::DiskFull`] that the disk has no room.
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
    #[error("{context}")]
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
    /// The files to seed from are not the torrent's data (the user's to fix: another folder).
    /// Nothing was written.
    #[error(
        "the data in {} does not match the torrent {torrent}: {matching} of {pieces} pieces \
         match; nothing was written",
        dir.display()
    )]
    DataMismatch {
        /// The folder the data was looked for in.
        dir: PathBuf,
        /// The torrent's name.
        torrent: String,
        /// Pieces whose SHA-1 matched.
        matching: u64,
        /// Pieces in the torrent.
        pieces: u64,
    },
    /// A download would overwrite a file that is not this torrent's data (the user's to fix:
    /// another folder, or consent to replace it). Nothing was written.
    #[error(
        "{} already exists and is not this torrent's data ({matching} of {pieces} pieces \
         match); nothing was written",
        path.display()
    )]
    WouldOverwrite {
        /// The first existing file the torrent would write.
        path: PathBuf,
        /// Pieces of the torrent the existing data already holds.
        matching: u64,
        /// Pieces in the torrent.
        pieces: u64,
    },
    /// The disk has no room for the torrent's data; the download waits for space.
    #[error("the disk holding {} is full: free some space", dir.display())]
    DiskFull {
        /// The torrent's folder.
        dir: PathBuf,
    },
}

impl EngineError {
    /// An [`EngineError::InvalidInput`] with a message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        EngineError::InvalidInput(msg.into())
    }

    /// What the caller should do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::InvalidInput(_)
            | EngineError::DataMismatch { .. }
            | EngineError::WouldOverwrite { .. } => ErrorKind::UserInput,
            EngineError::Timeout(_) => ErrorKind::Network,
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::DataDirLocked(_)
            | EngineError::Io { .. }
            | EngineError::DiskFull { .. } => ErrorKind::Storage,
            EngineError::Store(e) => e.kind(),
            EngineError::Busy(_) | EngineError::Session(_) | EngineError::ShuttingDown => {
                ErrorKind::Internal
            }
        }
    }

    /// Whether the user's input caused it (a command-line tool exits with code 2).
    pub fn is_user_error(&self) -> bool {
        self.kind() == ErrorKind::UserInput
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
