//! Unverified and verified catalogs, the catalog signature, and the seq rules.
//!
//! Bytes from the network become an [`UnverifiedCatalog`] by [`UnverifiedCatalog::parse`]
//! (size cap, JSON shape, validation). The only way to a [`VerifiedCatalog`] is
//! [`UnverifiedCatalog::verify`], which checks the signature under the expected publisher key
//! and refuses a rollback.

use std::fmt;

use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::caps;
use crate::error::CatalogError;
use crate::key::{PublisherKey, PublisherSecretKey};
use crate::schema::{Catalog, SCHEMA_VERSION, SchemaProbe};
use crate::validate::validate;

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// SHA-256 of some bytes (of catalog.json, for the signature).
pub fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256::digest(bytes).into()
}

/// The detached signature of a catalog: ed25519 over SHA-256 of the exact catalog.json bytes.
///
/// In a catalog folder it is the file `catalog.sig`: 128 lower-case hex characters and `\n`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CatalogSignature(Signature);

impl CatalogSignature {
    /// From the 64 raw signature bytes.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        CatalogSignature(Signature::from_bytes(bytes))
    }

    /// The 64 raw signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }

    /// The catalog.sig file contents: 128 lower-case hex characters and a newline.
    pub fn to_file_contents(&self) -> String {
        let mut s = hex::encode(self.0.to_bytes());
        s.push('\n');
        s
    }

    /// Parses catalog.sig contents: 128 hex characters (either case), optionally followed by
    /// one `\n` or `\r\n`. The error is a reason, without the file name.
    pub fn from_file_contents(bytes: &[u8]) -> Result<Self, String> {
        let body = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(bytes);
        let mut raw = [0u8; 64];
        if body.len() != 128 || hex::decode_to_slice(body, &mut raw).is_err() {
            return Err("expected 128 hex characters (a 64-byte ed25519 signature)".into());
        }
        Ok(Self::from_bytes(&raw))
    }

    /// Signs catalog.json bytes with a publisher's private key.
    pub fn sign(catalog_json: &[u8], key: &PublisherSecretKey) -> Self {
        use ed25519_dalek::Signer;
        CatalogSignature(key.signing_key().sign(&sha256(catalog_json)))
    }
}

impl fmt::Debug for CatalogSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CatalogSignature({})", hex::encode(self.0.to_bytes()))
    }
}

/// A catalog's version as the seq rules see it: its `seq` and the SHA-256 of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CatalogVersion {
    /// The catalog's `seq`.
    pub seq: u64,
    /// SHA-256 of the exact catalog.json bytes.
    pub sha256: Sha256Digest,
}

/// How a new catalog relates to the one held, when [`check_successor`] accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succession {
    /// Same seq, same bytes: nothing changed.
    Unchanged,
    /// Higher seq: replace the held catalog.
    Newer,
}

/// The seq rules between the catalog held and a new one from the same publisher:
/// a lower seq is a rollback ([`CatalogError::Rollback`]); the same seq with different bytes is
/// a reused seq ([`CatalogError::SeqReuse`]), and the held catalog is kept.
pub fn check_successor(
    held: CatalogVersion,
    new: CatalogVersion,
) -> Result<Succession, CatalogError> {
    if new.seq < held.seq {
        return Err(CatalogError::Rollback {
            seq: new.seq,
            highest_seen: held.seq,
        });
    }
    if new.seq == held.seq {
        if new.sha256 != held.sha256 {
            return Err(CatalogError::SeqReuse {
                seq: new.seq,
                held: hex::encode(held.sha256),
                new: hex::encode(new.sha256),
            });
        }
        return Ok(Succession::Unchanged);
    }
    Ok(Succession::Newer)
}

/// A catalog that parsed and is structurally valid, but whose signature has not been checked.
///
/// Its contents are reachable only through [`catalog_unchecked`](Self::catalog_unchecked);
/// use [`verify`](Self::verify) to get a [`VerifiedCatalog`].
#[derive(Debug, Clone)]
pub struct UnverifiedCatalog {
    catalog: Catalog,
    bytes: Vec<u8>,
    sha256: Sha256Digest,
}

impl UnverifiedCatalog {
    /// Parses and validates catalog.json bytes. The size cap
    /// ([`caps::MAX_CATALOG_JSON_BYTES`]) is checked before parsing, then that the bytes do not
    /// start with a UTF-8 byte-order mark ([`CatalogError::ByteOrderMark`]), then the schema
    /// version, then the shape (serde) and every field rule.
    pub fn parse(bytes: impl Into<Vec<u8>>) -> Result<Self, CatalogError> {
        let bytes = bytes.into();
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if size > caps::MAX_CATALOG_JSON_BYTES {
            return Err(CatalogError::TooLarge {
                what: crate::CATALOG_JSON.into(),
                size,
                cap: caps::MAX_CATALOG_JSON_BYTES,
            });
        }
        // Before parsing, whose error for it would be "expected value at line 1 column 1".
        if bytes.starts_with(b"\xEF\xBB\xBF") {
            return Err(CatalogError::ByteOrderMark);
        }
        let probe: SchemaProbe = parse_json(&bytes)?;
        match probe.schema {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {
            }
            Some(other) => {
                return Err(CatalogError::UnsupportedSchema {
                    found: truncate(other.to_string()),
                    supported: SCHEMA_VERSION,
                });
            }
            None => {
                return Err(CatalogError::UnsupportedSchema {
                    found: "missing".into(),
                    supported: SCHEMA_VERSION,
                });
            }
        }
        let catalog: Catalog = parse_json(&bytes)?;
        validate(&catalog)?;
        let sha256 = sha256(&bytes);
        Ok(UnverifiedCatalog {
            catalog,
            bytes,
            sha256,
        })
    }

    /// Checks that `signature` is the signature of these exact bytes by `key` (strict ed25519
    /// verification), and that `seq` is not below `min_seq`, the highest seq already seen from
    /// this publisher (`None` when none was seen).
    pub fn verify(
        self,
        key: &PublisherKey,
        signature: &CatalogSignature,
        min_seq: Option<u64>,
    ) -> Result<VerifiedCatalog, CatalogError> {
        key.as_verifying_key()
            .verify_strict(&self.sha256, &signature.0)
            .map_err(|_| CatalogError::BadSignature { key: key.address() })?;
        if let Some(highest_seen) = min_seq
            && self.catalog.seq < highest_seen
        {
            return Err(CatalogError::Rollback {
                seq: self.catalog.seq,
                highest_seen,
            });
        }
        Ok(VerifiedCatalog {
            catalog: self.catalog,
            bytes: self.bytes,
            sha256: self.sha256,
            key: *key,
            signature: *signature,
        })
    }

    /// The parsed catalog, NOT checked against any signature: only for showing what failed,
    /// never for trusting its contents.
    pub fn catalog_unchecked(&self) -> &Catalog {
        &self.catalog
    }

    /// SHA-256 of the catalog.json bytes (computed here, so trustworthy as a digest).
    pub fn sha256(&self) -> Sha256Digest {
        self.sha256
    }

    /// The exact catalog.json bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A catalog whose signature verified under the expected publisher key, and whose seq was
/// not a rollback.
#[derive(Debug, Clone)]
pub struct VerifiedCatalog {
    catalog: Catalog,
    bytes: Vec<u8>,
    sha256: Sha256Digest,
    key: PublisherKey,
    signature: CatalogSignature,
}

impl VerifiedCatalog {
    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The catalog, by value.
    pub fn into_catalog(self) -> Catalog {
        self.catalog
    }

    /// The publisher whose key verified the signature.
    pub fn publisher_key(&self) -> &PublisherKey {
        &self.key
    }

    /// The signature that verified.
    pub fn signature(&self) -> &CatalogSignature {
        &self.signature
    }

    /// The catalog's seq.
    pub fn seq(&self) -> u64 {
        self.catalog.seq
    }

    /// SHA-256 of the catalog.json bytes.
    pub fn sha256(&self) -> Sha256Digest {
        self.sha256
    }

    /// The exact catalog.json bytes that were signed (to store, or to serve to others).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Seq and digest, for [`check_successor`].
    pub fn version(&self) -> CatalogVersion {
        CatalogVersion {
            seq: self.catalog.seq,
            sha256: self.sha256,
        }
    }
}

fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CatalogError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        CatalogError::Parse {
            field: if path == "." || path == "?" {
                crate::CATALOG_JSON.into()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        }
    })?;
    de.end().map_err(|e| CatalogError::Parse {
        field: crate::CATALOG_JSON.into(),
        message: e.to_string(),
    })?;
    Ok(value)
}

fn truncate(mut s: String) -> String {
    if s.len() > 64 {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
