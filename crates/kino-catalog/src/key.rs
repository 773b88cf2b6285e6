//! Publisher identities: ed25519 keys, `kino:` addresses and key files.
//!
//! * A publisher is its ed25519 public key ([`PublisherKey`]). Its address is
//!   `kino:` followed by the z-base-32 encoding of the 32 key bytes (52 characters).
//! * The private key ([`PublisherSecretKey`]) lives in a key file, mode 0600, made by
//!   [`generate_key_file`] and read by [`load_key_file`]. The file is text:
//!   `kino-publisher-key v1\n` then the 32-byte seed as 64 lower-case hex characters and `\n`.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{AddressError, KeyError};
use crate::zbase32;

/// The prefix of a publisher address.
pub const ADDRESS_PREFIX: &str = "kino:";

/// The first line of a key file, with its newline.
pub const KEY_FILE_HEADER: &str = "kino-publisher-key v1\n";

/// Largest key file [`load_key_file`] reads.
pub const MAX_KEY_FILE_BYTES: u64 = 256;

/// Longest salt (bytes) a subscribe magnet may carry (BEP 44 limit).
pub const MAX_SALT_BYTES: usize = 64;

/// A publisher's public key: who signs a catalog.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublisherKey(VerifyingKey);

impl PublisherKey {
    /// Builds a key from its 32 bytes, refusing bytes that are not a point of the curve and
    /// weak (small-order) keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, AddressError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| AddressError::InvalidKey)?;
        if key.is_weak() {
            return Err(AddressError::InvalidKey);
        }
        Ok(PublisherKey(key))
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key as ed25519-dalek's type (for the DHT, which signs with the same key).
    pub fn as_verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// The address `kino:<z-base-32>`.
    pub fn address(&self) -> String {
        address(self)
    }

    /// The key as 64 lower-case hex characters (the form used in `urn:btpk:` magnets).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }
}

impl From<VerifyingKey> for PublisherKey {
    fn from(key: VerifyingKey) -> Self {
        PublisherKey(key)
    }
}

impl fmt::Display for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())
    }
}

impl fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublisherKey({})", self.address())
    }
}

impl PublisherKey {
    /// Parses the 64-hex form of [`PublisherKey::to_hex`] (how the database stores keys).
    pub fn from_hex(s: &str) -> Result<Self, AddressError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| AddressError::NotAnAddress(s.into()))?;
        Self::from_bytes(&bytes)
    }
}

impl FromStr for PublisherKey {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_address(s)
    }
}

/// A publisher's private key. Its `Debug` output never shows the key; it is wiped on drop.
#[derive(Clone)]
pub struct PublisherSecretKey(SigningKey);

impl PublisherSecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key made from a 32-byte seed (the ed25519 "secret key").
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        PublisherSecretKey(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public_key(&self) -> PublisherKey {
        PublisherKey(self.0.verifying_key())
    }

    /// The key as ed25519-dalek's type (for signing DHT items with the same identity).
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for PublisherSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublisherSecretKey(public: {})", self.public_key())
    }
}

/// The address of a publisher: `kino:` + z-base-32 of the 32 public key bytes.
pub fn address(public_key: &PublisherKey) -> String {
    format!(
        "{ADDRESS_PREFIX}{}",
        zbase32::encode(public_key.0.as_bytes())
    )
}

/// Parses `kino:<52 z-base-32 characters>` (surrounding whitespace ignored, case folded).
pub fn parse_address(text: &str) -> Result<PublisherKey, AddressError> {
    let text = text.trim();
    let rest = text
        .get(..ADDRESS_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(ADDRESS_PREFIX))
        .and_then(|_| text.get(ADDRESS_PREFIX.len()..))
        .ok_or_else(|| AddressError::NotAnAddress(shorten(text)))?;
    let bytes = zbase32::decode(rest)?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| AddressError::KeyLength(bytes.len()))?;
    PublisherKey::from_bytes(&bytes)
}

/// What `kino subscribe` was given: a publisher key and an optional DHT salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeTarget {
    /// The publisher.
    pub key: PublisherKey,
    /// The BEP 44 salt of the pointer, if the link names one (`kino:` addresses never do).
    pub salt: Option<Vec<u8>>,
}

/// Parses what `kino subscribe` accepts: a `kino:` address, or a BEP 46 link
/// `magnet:?xs=urn:btpk:<64 hex public key>[&s=<hex salt>]`.
pub fn parse_subscribe_target(text: &str) -> Result<SubscribeTarget, AddressError> {
    let text = text.trim();
    let Some(query) = text.strip_prefix("magnet:?") else {
        return Ok(SubscribeTarget {
            key: parse_address(text)?,
            salt: None,
        });
    };
    let mut key = None;
    let mut salt = None;
    for param in query.split('&') {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        match name {
            "xs" => {
                let hex_key = value
                    .strip_prefix("urn:btpk:")
                    .ok_or_else(|| AddressError::Magnet("xs must be urn:btpk:<hex key>".into()))?;
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(hex_key, &mut bytes).map_err(|_| {
                    AddressError::Magnet("urn:btpk: must be followed by 64 hex characters".into())
                })?;
                if key.replace(PublisherKey::from_bytes(&bytes)?).is_some() {
                    return Err(AddressError::Magnet("more than one xs parameter".into()));
                }
            }
            "s" => {
                let bytes = hex::decode(value)
                    .map_err(|_| AddressError::Magnet("s (salt) must be hex".into()))?;
                if bytes.is_empty() || bytes.len() > MAX_SALT_BYTES {
                    return Err(AddressError::Magnet(format!(
                        "salt must be 1 to {MAX_SALT_BYTES} bytes"
                    )));
                }
                if salt.replace(bytes).is_some() {
                    return Err(AddressError::Magnet("more than one s parameter".into()));
                }
            }
            // Other parameters (dn, tr, ...) are hints that subscribing does not need.
            _ => {}
        }
    }
    let key = key.ok_or_else(|| AddressError::Magnet("no xs=urn:btpk: parameter".into()))?;
    Ok(SubscribeTarget { key, salt })
}

fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Makes a new key and writes it to `path` with mode 0600. Refuses to overwrite any existing
/// file ([`KeyError::AlreadyExists`]). The folder must exist.
pub fn generate_key_file(path: &Path) -> Result<PublisherSecretKey, KeyError> {
    let key = PublisherSecretKey::generate()?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            KeyError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        // The umask can only remove bits; set 0600 explicitly in case it was odd.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    let mut seed_hex = Zeroizing::new(hex::encode(key.0.as_bytes()));
    let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_HEADER.len() + 65));
    text.push_str(KEY_FILE_HEADER);
    text.push_str(&seed_hex);
    text.push('\n');
    seed_hex.zeroize();
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(key)
}

/// Reads a key file written by [`generate_key_file`]. On Unix, refuses a file that group or
/// others may read or write ([`KeyError::InsecurePermissions`]).
pub fn load_key_file(path: &Path) -> Result<PublisherSecretKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let format = |reason: &str| KeyError::Format {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut file = fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(format("not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format("file is too large to be a key file"));
    }
    let mut text = Zeroizing::new(Vec::new());
    (&mut file)
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io)?;
    let body = text
        .strip_prefix(KEY_FILE_HEADER.as_bytes())
        .ok_or_else(|| format("the first line is not `kino-publisher-key v1`"))?;
    let hex_seed = body.strip_suffix(b"\n").unwrap_or(body);
    let mut seed = Zeroizing::new([0u8; 32]);
    if hex_seed.len() != 64 {
        return Err(format(
            "the second line must be the 32-byte seed as 64 hex characters",
        ));
    }
    hex::decode_to_slice(hex_seed, seed.as_mut())
        .map_err(|_| format("the second line must be the 32-byte seed as 64 hex characters"))?;
    Ok(PublisherSecretKey::from_seed(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trip() {
        let key = PublisherSecretKey::from_seed(&[9u8; 32]).public_key();
        let addr = address(&key);
        assert!(addr.starts_with("kino:"));
        assert_eq!(addr.len(), 5 + 52);
        assert_eq!(parse_address(&addr).expect("parses"), key);
        assert_eq!(
            parse_address(&addr.to_uppercase()).expect("case folds"),
            key
        );
        assert_eq!(addr.parse::<PublisherKey>().expect("FromStr"), key);
        assert_eq!(key.to_string(), addr);
    }

    #[test]
    fn address_refusals() {
        let key = PublisherSecretKey::from_seed(&[9u8; 32]).public_key();
        let addr = address(&key);
        assert!(matches!(
            parse_address(&addr[5..]),
            Err(AddressError::NotAnAddress(_))
        ));
        assert!(matches!(
            parse_address(&addr[..addr.len() - 1]),
            Err(AddressError::Encoding(_))
        ));
        let short = format!("kino:{}", zbase32::encode(&[1u8; 31]));
        assert_eq!(parse_address(&short), Err(AddressError::KeyLength(31)));
        // The identity point is a weak (small-order) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = format!("kino:{}", zbase32::encode(&identity));
        assert_eq!(parse_address(&weak), Err(AddressError::InvalidKey));
    }

    #[test]
    fn subscribe_targets() {
        let key = PublisherSecretKey::from_seed(&[3u8; 32]).public_key();
        let t = parse_subscribe_target(&key.address()).expect("address");
        assert_eq!(t, SubscribeTarget { key, salt: None });
        let link = format!("magnet:?xs=urn:btpk:{}&s=6b696e6f", key.to_hex());
        let t = parse_subscribe_target(&link).expect("magnet");
        assert_eq!(t.key, key);
        assert_eq!(t.salt.as_deref(), Some(&b"kino"[..]));
        let no_salt = format!("magnet:?xs=urn:btpk:{}", key.to_hex());
        assert_eq!(
            parse_subscribe_target(&no_salt).expect("no salt").salt,
            None
        );
        assert!(matches!(
            parse_subscribe_target("magnet:?xt=urn:btih:0000"),
            Err(AddressError::Magnet(_))
        ));
        assert!(matches!(
            parse_subscribe_target("magnet:?xs=urn:btpk:abcd"),
            Err(AddressError::Magnet(_))
        ));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = PublisherSecretKey::from_seed(&[0x42; 32]);
        let shown = format!("{secret:?}");
        assert!(!shown.contains(&hex::encode([0x42u8; 32])));
        assert!(shown.contains("kino:"));
    }
}
