//! Errors of this crate: one enum per kind of operation.
//!
//! Every error that concerns a part of a catalog names it by its field path, such as
//! `titles[3].streams[0].infohash`, so a publisher can find and fix it.

use std::path::PathBuf;

use thiserror::Error;

use crate::zbase32::Zbase32Error;

/// Why a catalog (or its folder) was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A file of the catalog folder could not be read or written.
    #[error("cannot read or write {}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is over its size cap. Checked from its length before it is read.
    #[error("{what} is {size} bytes, over the cap of {cap} bytes: make it smaller")]
    TooLarge {
        /// What is too large: `catalog.json`, or a field path and file such as
        /// `titles[2].poster (posters/big.jpg)`.
        what: String,
        /// Its size in bytes (at least; reading stops at cap + 1).
        size: u64,
        /// The cap in bytes.
        cap: u64,
    },
    /// catalog.json is not JSON, or does not have the shape of a catalog.
    #[error("{field}: {message}")]
    Parse {
        /// Field path of the error, or `catalog.json` for a syntax error at the top level.
        field: String,
        /// What serde found wrong.
        message: String,
    },
    /// The catalog's `schema` is missing or not one this version of Kino reads.
    #[error(
        "schema: unsupported catalog schema {found}; this version of Kino reads schema {supported} \
         (update Kino to read newer catalogs)"
    )]
    UnsupportedSchema {
        /// The value found (as JSON text), or `missing`.
        found: String,
        /// The schema version this crate reads.
        supported: u32,
    },
    /// A field has a value outside what the format allows.
    #[error("{field}: {reason}")]
    Invalid {
        /// Field path, e.g. `titles[3].streams[0].infohash`.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// Two titles share an id.
    #[error("{field}: duplicate title id {id:?} (already used by titles[{first}].id)")]
    DuplicateId {
        /// Field path of the second use, e.g. `titles[7].id`.
        field: String,
        /// The repeated id.
        id: String,
        /// Index of the first title with this id.
        first: usize,
    },
    /// A file referenced by the catalog is missing or is not a regular file.
    #[error("{field}: {path}: {reason}")]
    BadAsset {
        /// Field path of the reference, e.g. `titles[0].subtitles[1].path`.
        field: String,
        /// The relative path as written in the catalog.
        path: String,
        /// What is wrong (missing, a symlink, a folder).
        reason: String,
    },
    /// catalog.json starts with a UTF-8 byte-order mark. It is refused rather than skipped:
    /// the signature covers the exact bytes, and one catalog must not have two encodings.
    #[error("catalog.json starts with a UTF-8 byte-order mark; save it without BOM")]
    ByteOrderMark,
    /// The catalog folder has no catalog.sig.
    #[error("unsigned catalog: catalog.sig is missing (sign it with kino publish)")]
    Unsigned {
        /// Where catalog.sig was looked for.
        path: PathBuf,
    },
    /// catalog.sig is not a well-formed signature file.
    #[error("{}: malformed signature file: {reason}", path.display())]
    MalformedSignature {
        /// The signature file (or `catalog.sig`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify: the catalog was altered, or signed by another key.
    #[error(
        "catalog signature does not verify under publisher key {key}: the catalog was altered \
         or signed by another key; do not use it"
    )]
    BadSignature {
        /// The expected publisher's address (`kino:...`).
        key: String,
    },
    /// The catalog's seq is below the highest seq already seen from this publisher.
    #[error(
        "seq: catalog seq {seq} is lower than seq {highest_seen} already seen from this \
         publisher: refusing a rollback to an older catalog"
    )]
    Rollback {
        /// The seq of the refused catalog.
        seq: u64,
        /// The highest seq seen before.
        highest_seen: u64,
    },
    /// The same seq was seen before with other content: the publisher reused a seq number.
    #[error(
        "seq: catalog seq {seq} was already seen with other content (held sha256 {held}, new \
         sha256 {new}): a publisher must raise seq for every change; keeping the held catalog"
    )]
    SeqReuse {
        /// The seq shared by both catalogs.
        seq: u64,
        /// Hex SHA-256 of the catalog held.
        held: String,
        /// Hex SHA-256 of the new catalog.
        new: String,
    },
}

impl CatalogError {
    /// The field path this error is about, if it concerns one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            CatalogError::Parse { field, .. }
            | CatalogError::Invalid { field, .. }
            | CatalogError::DuplicateId { field, .. }
            | CatalogError::BadAsset { field, .. } => Some(field),
            CatalogError::UnsupportedSchema { .. } => Some("schema"),
            CatalogError::Rollback { .. } | CatalogError::SeqReuse { .. } => Some("seq"),
            _ => None,
        }
    }

    /// What the caller should do about it: a catalog folder that cannot be read is the
    /// disk's; every other refusal is the catalog's content, the publisher's to fix.
    pub fn kind(&self) -> kino_core::ErrorKind {
        match self {
            CatalogError::Io { .. } => kino_core::ErrorKind::Storage,
            _ => kino_core::ErrorKind::UserInput,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CatalogError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CatalogError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why a publisher key file could not be written or loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file exists already; keygen never overwrites a key.
    #[error(
        "{}: a file already exists there; refusing to overwrite a key (move it away or choose \
         another path)",
        path.display()
    )]
    AlreadyExists {
        /// The path given.
        path: PathBuf,
    },
    /// Reading or writing the key file failed.
    #[error("cannot read or write {}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Others than the owner can read or write the key file.
    #[error(
        "{}: permissions {mode:04o} let others read or change this private key; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a Kino publisher key file.
    #[error("{}: not a Kino publisher key file: {reason}", path.display())]
    Format {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}

impl KeyError {
    /// What the caller should do about it.
    pub fn kind(&self) -> kino_core::ErrorKind {
        match self {
            KeyError::Io { .. } => kino_core::ErrorKind::Storage,
            KeyError::Random(_) => kino_core::ErrorKind::Internal,
            _ => kino_core::ErrorKind::UserInput,
        }
    }
}

/// Why a publisher address (or subscribe link) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The text is neither `kino:<key>` nor a `magnet:?xs=urn:btpk:` link.
    #[error("{0:?} is not a publisher address: expected kino:<52 z-base-32 characters>")]
    NotAnAddress(String),
    /// The key part is not valid z-base-32.
    #[error("bad publisher key in address")]
    Encoding(#[from] Zbase32Error),
    /// The key part has the wrong length.
    #[error("publisher key is {0} bytes; expected 32")]
    KeyLength(usize),
    /// The 32 bytes are not a usable ed25519 public key.
    #[error("publisher key is not a valid ed25519 public key")]
    InvalidKey,
    /// A magnet link is malformed.
    #[error("bad subscribe magnet: {0}")]
    Magnet(String),
}

impl AddressError {
    /// What the caller should do about it: every address error is the user's to fix.
    pub fn kind(&self) -> kino_core::ErrorKind {
        kino_core::ErrorKind::UserInput
    }
}
