//! Where a pointer lives: a publisher's public key and an optional salt, and its magnet form.
//!
//! Magnet form (BEP 46): `magnet:?xs=urn:btpk:<64 hex public key>[&s=<salt in hex>]`.
//! The salt is always hex in the magnet, as BEP 46 says; a text salt such as `catalog` is
//! written as its UTF-8 bytes in hex (`636174616c6f67`). Parsing is strict: only the `xs` and
//! `s` parameters, each at most once, lowercase or uppercase hex, a valid ed25519 point.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use mainline::{Id, MutableItem};

use crate::DhtError;
use crate::error::key_hex;

/// BEP 44's limit on the salt length.
pub const MAX_SALT_LEN: usize = 64;

const MAGNET_PREFIX: &str = "magnet:?";
const XS_PREFIX: &str = "urn:btpk:";

/// A publisher's public key plus optional salt: the name of one pointer on the DHT.
///
/// An empty salt is the same as no salt (libtorrent and mainline sign it that way).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PointerAddress {
    public_key: [u8; 32],
    salt: Option<Vec<u8>>,
}

impl PointerAddress {
    /// Build an address, checking that the key is an ed25519 point and the salt fits BEP 44.
    pub fn new(public_key: [u8; 32], salt: Option<&[u8]>) -> Result<Self, DhtError> {
        VerifyingKey::from_bytes(&public_key).map_err(|_| DhtError::BadPublicKey {
            public_key: key_hex(&public_key),
        })?;
        let salt = normalize_salt(salt)?;
        Ok(Self {
            public_key,
            salt: salt.map(<[u8]>::to_vec),
        })
    }

    /// The 32-byte ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The salt, `None` when there is none (never `Some` of an empty slice).
    pub fn salt(&self) -> Option<&[u8]> {
        self.salt.as_deref()
    }

    /// The DHT target: SHA-1 of public key followed by salt (BEP 44).
    pub fn target(&self) -> Id {
        MutableItem::target_from_key(&self.public_key, self.salt())
    }

    /// Format as `magnet:?xs=urn:btpk:<hex key>[&s=<hex salt>]`.
    pub fn to_magnet(&self) -> String {
        let mut out = format!(
            "{MAGNET_PREFIX}xs={XS_PREFIX}{}",
            hex::encode(self.public_key)
        );
        if let Some(salt) = &self.salt {
            out.push_str("&s=");
            out.push_str(&hex::encode(salt));
        }
        out
    }

    /// Parse the magnet form strictly. See the module documentation for the rules.
    pub fn from_magnet(input: &str) -> Result<Self, DhtError> {
        let bad = |reason: &str| DhtError::BadMagnet {
            input: input.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        let query = input
            .strip_prefix(MAGNET_PREFIX)
            .ok_or_else(|| bad("must start with `magnet:?`"))?;
        let mut xs: Option<&str> = None;
        let mut s: Option<&str> = None;
        // At most two parameters are valid; a third is refused before more is read.
        for (index, param) in query.split('&').enumerate() {
            if index >= 2 {
                return Err(bad("only the `xs` and `s` parameters are allowed"));
            }
            let (name, value) = param
                .split_once('=')
                .ok_or_else(|| bad("every parameter must be name=value"))?;
            let slot = match name {
                "xs" => &mut xs,
                "s" => &mut s,
                _ => return Err(bad(&format!("unknown parameter `{name}`"))),
            };
            if slot.replace(value).is_some() {
                return Err(bad(&format!("parameter `{name}` appears twice")));
            }
        }
        let xs = xs.ok_or_else(|| bad("missing `xs=urn:btpk:<public key>`"))?;
        let key_hex = xs
            .strip_prefix(XS_PREFIX)
            .ok_or_else(|| bad("`xs` must be `urn:btpk:` followed by 64 hex digits"))?;
        if key_hex.len() != 64 {
            return Err(bad("the public key must be exactly 64 hex digits"));
        }
        let mut public_key = [0u8; 32];
        hex::decode_to_slice(key_hex, &mut public_key)
            .map_err(|_| bad("the public key is not valid hex"))?;
        let salt = match s {
            None => None,
            Some("") => return Err(bad("`s=` is empty; omit it for no salt")),
            Some(salt_hex) => {
                Some(hex::decode(salt_hex).map_err(|_| bad("the salt `s` must be hex"))?)
            }
        };
        Self::new(public_key, salt.as_deref()).map_err(|error| bad(&error.to_string()))
    }
}

impl fmt::Display for PointerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_magnet())
    }
}

impl FromStr for PointerAddress {
    type Err = DhtError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_magnet(s)
    }
}

/// Turn `Some(&[])` into `None` and refuse salts over 64 bytes.
pub(crate) fn normalize_salt(salt: Option<&[u8]>) -> Result<Option<&[u8]>, DhtError> {
    match salt {
        Some(s) if s.len() > MAX_SALT_LEN => Err(DhtError::SaltTooLong { len: s.len() }),
        Some([]) | None => Ok(None),
        Some(s) => Ok(Some(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key() -> [u8; 32] {
        SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes()
    }

    #[test]
    fn round_trip_with_and_without_salt() {
        let a = PointerAddress::new(key(), Some(b"catalog")).unwrap();
        let m = a.to_magnet();
        assert_eq!(
            m,
            format!(
                "magnet:?xs=urn:btpk:{}&s=636174616c6f67",
                hex::encode(key())
            )
        );
        assert_eq!(m.parse::<PointerAddress>().unwrap(), a);

        let b = PointerAddress::new(key(), None).unwrap();
        assert_eq!(PointerAddress::from_magnet(&b.to_magnet()).unwrap(), b);
        assert_eq!(PointerAddress::new(key(), Some(b"")).unwrap(), b);
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let a = PointerAddress::new(key(), Some(b"\xAB")).unwrap();
        let m = format!("magnet:?xs=urn:btpk:{}&s=AB", hex::encode_upper(key()));
        assert_eq!(PointerAddress::from_magnet(&m).unwrap(), a);
    }

    #[test]
    fn strict_errors() {
        let k = hex::encode(key());
        let cases = [
            format!("magnet:xs=urn:btpk:{k}"),
            format!("magnet:?xs=urn:btih:{k}"),
            format!("magnet:?xs=urn:btpk:{}", &k[..62]),
            format!("magnet:?xs=urn:btpk:{k}00"),
            format!("magnet:?xs=urn:btpk:{}zz", &k[..62]),
            format!("magnet:?xs=urn:btpk:{k}&s=xyz"),
            format!("magnet:?xs=urn:btpk:{k}&s="),
            format!("magnet:?xs=urn:btpk:{k}&s=00&s=01"),
            format!("magnet:?xs=urn:btpk:{k}&xs=urn:btpk:{k}"),
            format!("magnet:?xs=urn:btpk:{k}&dn=name"),
            format!("magnet:?xs=urn:btpk:{k}&s=00&dn=x"),
            format!("magnet:?xs=urn:btpk:{k}&s={}", "00".repeat(65)),
            "magnet:?s=00".to_string(),
            "magnet:?".to_string(),
            format!("magnet:?xs=urn:btpk:{k}&"),
        ];
        for case in cases {
            let err = PointerAddress::from_magnet(&case).expect_err(&case);
            assert!(matches!(err, DhtError::BadMagnet { .. }), "{case}: {err}");
        }
    }

    #[test]
    fn off_curve_key_is_refused() {
        // Compressed Edwards y = 2 (little endian) is not on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert!(VerifyingKey::from_bytes(&bad).is_err());
        assert!(matches!(
            PointerAddress::new(bad, None),
            Err(DhtError::BadPublicKey { .. })
        ));
    }
}
