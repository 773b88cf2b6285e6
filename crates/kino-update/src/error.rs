//! Errors of releasing, verifying, fetching and installing.

use std::path::PathBuf;

/// Everything that can go wrong. Refusals say why, so a user knows nothing was installed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The TUF metadata failed verification (signature, threshold, expiry, version, hash,
    /// length, root chain...). Nothing was installed.
    #[error("refused: {context}")]
    Tuf {
        /// What was being verified.
        context: String,
        /// tough's verdict.
        #[source]
        source: Box<tough::error::Error>,
    },
    /// A verified release was refused by Kino's own rules. Nothing was installed.
    #[error("refused: {0}")]
    Refused(String),
    /// No release newer than the running version exists for this platform.
    #[error("no update: {0}")]
    NoUpdate(String),
    /// No trusted root: this build embeds none and none was given.
    #[error(
        "updates are disabled: this build embeds no trusted root (set KINO_UPDATE_ROOT to a root.json for testing)"
    )]
    NoTrustedRoot,
    /// A key file could not be read or is not a PKCS#8 ed25519 key.
    #[error("key {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The release tool was used wrongly.
    #[error("{0}")]
    Usage(String),
    /// The DHT failed.
    #[error(transparent)]
    Dht(#[from] kino_dht::DhtError),
    /// The swarm engine failed.
    #[error(transparent)]
    Engine(#[from] kino_engine::EngineError),
    /// A file operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<kino_pointer::PointerError> for UpdateError {
    fn from(e: kino_pointer::PointerError) -> Self {
        use kino_pointer::PointerError as P;
        match e {
            P::Dht(e) => UpdateError::Dht(e),
            P::Engine(e) => UpdateError::Engine(e),
            P::Io { context, source } => UpdateError::Io { context, source },
            P::Replay {
                public_key,
                offered,
                floor,
            } => UpdateError::Refused(format!(
                "the DHT offers pointer seq {offered} under key {public_key} but seq {floor} was \
                 already accepted (replay of an old pointer)"
            )),
            P::Stage { path, reason } => {
                UpdateError::Usage(format!("cannot stage {}: {reason}", path.display()))
            }
        }
    }
}

impl From<kino_pointer::FetchError<UpdateError>> for UpdateError {
    fn from(e: kino_pointer::FetchError<UpdateError>) -> Self {
        match e {
            kino_pointer::FetchError::Pointer(e) => e.into(),
            kino_pointer::FetchError::Refused(e) => e,
        }
    }
}

impl UpdateError {
    /// What the caller should do about it: a wrong use of the release tool, a bad key file or
    /// no trusted root is the user's to fix.
    pub fn kind(&self) -> kino_core::ErrorKind {
        use kino_core::ErrorKind;
        match self {
            UpdateError::Usage(_) | UpdateError::Key { .. } | UpdateError::NoTrustedRoot => {
                ErrorKind::UserInput
            }
            UpdateError::NoUpdate(_) => ErrorKind::NotFound,
            UpdateError::Tuf { .. } | UpdateError::Refused(_) => ErrorKind::Internal,
            UpdateError::Dht(e) => e.kind(),
            UpdateError::Engine(e) => e.kind(),
            UpdateError::Io { .. } => ErrorKind::Storage,
        }
    }

    /// True when the update was refused for a security reason (as opposed to an I/O failure).
    pub fn is_refusal(&self) -> bool {
        matches!(self, UpdateError::Tuf { .. } | UpdateError::Refused(_))
    }
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpdateError {
    let context = context.into();
    move |source| UpdateError::Io { context, source }
}

pub(crate) fn tuf(context: impl Into<String>) -> impl FnOnce(tough::error::Error) -> UpdateError {
    let context = context.into();
    move |source| UpdateError::Tuf {
        context,
        source: Box::new(source),
    }
}

pub(crate) fn schema(
    context: impl Into<String>,
) -> impl FnOnce(tough::schema::Error) -> UpdateError {
    let context = context.into();
    move |e| UpdateError::Usage(format!("{context}: {e}"))
}
