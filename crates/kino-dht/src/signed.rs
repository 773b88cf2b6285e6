//! Signed pointers: the BEP 44 item (key, salt, seq, v, signature) once its signature is checked.
//!
//! Bytes from the network or from storage are an [`UncheckedSignedPointer`]; the only way to a
//! [`SignedPointer`] is [`UncheckedSignedPointer::verify`] (or signing with the secret key).
//! A `SignedPointer` therefore always carries a valid signature and a well-formed pointer value.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use mainline::{Id, MutableItem};

use crate::DhtError;
use crate::address::{PointerAddress, normalize_salt};
use crate::error::key_hex;
use crate::pointer::{INFOHASH_LEN, decode_pointer, encode_pointer};

/// Magic and version of the compact byte form.
const MAGIC: &[u8; 4] = b"KDP1";
/// BEP 44's limit on `v` (storage nodes refuse larger values).
pub const MAX_VALUE_LEN: usize = 1000;

/// The exact bytes an ed25519 signature covers in BEP 44:
/// `[4:salt<len>:<salt>]3:seqi<seq>e1:v<len>:<v>`, where `v` is the bencoded value.
/// mainline and libtorrent both encode `v` as a byte string, so `<len>:<v>` here is the
/// bencoding of our pointer bytes.
pub(crate) fn signable(salt: Option<&[u8]>, seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 96);
    if let Some(salt) = salt {
        out.extend_from_slice(format!("4:salt{}:", salt.len()).as_bytes());
        out.extend_from_slice(salt);
    }
    out.extend_from_slice(format!("3:seqi{seq}e1:v{}:", value.len()).as_bytes());
    out.extend_from_slice(value);
    out
}

/// A signed pointer whose signature has **not** been checked: read from storage or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UncheckedSignedPointer {
    /// ed25519 public key of the publisher.
    pub public_key: [u8; 32],
    /// Optional salt (at most 64 bytes).
    pub salt: Option<Vec<u8>>,
    /// Sequence number.
    pub seq: i64,
    /// The value as signed (`d2:ih20:<infohash>e`).
    pub value: Vec<u8>,
    /// ed25519 signature over [`signable`] bytes.
    pub signature: [u8; 64],
}

impl UncheckedSignedPointer {
    /// Read the compact byte form written by [`SignedPointer::to_bytes`]. Strict: every length
    /// must match exactly. This does not check the signature; call [`Self::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DhtError> {
        let bad = |reason| DhtError::MalformedSignedPointer { reason };
        let mut r = Reader(bytes);
        if r.take(4).ok_or(bad("too short"))? != MAGIC {
            return Err(bad("unknown magic or version (expected KDP1)"));
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(r.take(32).ok_or(bad("truncated public key"))?);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(r.take(64).ok_or(bad("truncated signature"))?);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(r.take(8).ok_or(bad("truncated seq"))?);
        let salt_len = usize::from(r.take(1).ok_or(bad("truncated salt length"))?[0]);
        if salt_len > crate::address::MAX_SALT_LEN {
            return Err(bad("salt longer than 64 bytes"));
        }
        let salt = r.take(salt_len).ok_or(bad("truncated salt"))?;
        let mut value_len = [0u8; 2];
        value_len.copy_from_slice(r.take(2).ok_or(bad("truncated value length"))?);
        let value_len = usize::from(u16::from_be_bytes(value_len));
        if value_len > MAX_VALUE_LEN {
            return Err(bad("value longer than 1000 bytes"));
        }
        let value = r.take(value_len).ok_or(bad("truncated value"))?;
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self {
            public_key,
            salt: (salt_len > 0).then(|| salt.to_vec()),
            seq: i64::from_be_bytes(seq),
            value: value.to_vec(),
            signature,
        })
    }

    /// Check the key, the salt length, the signature (strict ed25519) and the pointer format.
    pub fn verify(self) -> Result<SignedPointer, DhtError> {
        let salt = normalize_salt(self.salt.as_deref())?.map(<[u8]>::to_vec);
        if self.value.len() > MAX_VALUE_LEN {
            return Err(DhtError::InvalidPointer {
                reason: "value longer than BEP 44 allows",
                len: self.value.len(),
            });
        }
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| DhtError::BadPublicKey {
                public_key: key_hex(&self.public_key),
            })?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(
            &signable(salt.as_deref(), self.seq, &self.value),
            &signature,
        )
        .map_err(|_| DhtError::BadSignature {
            public_key: key_hex(&self.public_key),
            seq: self.seq,
        })?;
        let infohash = decode_pointer(&self.value)?;
        Ok(SignedPointer {
            address: PointerAddress::new(self.public_key, salt.as_deref())?,
            seq: self.seq,
            value: self.value,
            signature: self.signature,
            infohash,
        })
    }
}

impl From<&MutableItem> for UncheckedSignedPointer {
    fn from(item: &MutableItem) -> Self {
        Self {
            public_key: *item.key(),
            salt: item.salt().map(<[u8]>::to_vec),
            seq: item.seq(),
            value: item.value().to_vec(),
            signature: *item.signature(),
        }
    }
}

/// A pointer item whose signature and value format have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPointer {
    address: PointerAddress,
    seq: i64,
    value: Vec<u8>,
    signature: [u8; 64],
    infohash: [u8; INFOHASH_LEN],
}

impl SignedPointer {
    /// Sign a pointer to `infohash` with sequence number `seq` under `signing_key` and `salt`.
    pub fn sign(
        signing_key: &SigningKey,
        salt: Option<&[u8]>,
        infohash: [u8; INFOHASH_LEN],
        seq: i64,
    ) -> Result<Self, DhtError> {
        let salt = normalize_salt(salt)?;
        let value = encode_pointer(&infohash);
        let signature = signing_key.sign(&signable(salt, seq, &value)).to_bytes();
        Ok(Self {
            address: PointerAddress::new(signing_key.verifying_key().to_bytes(), salt)?,
            seq,
            value,
            signature,
            infohash,
        })
    }

    /// Check an item received from mainline again (mainline verifies when decoding; this is
    /// the second check, and it also enforces the pointer format).
    pub fn from_mutable_item(item: &MutableItem) -> Result<Self, DhtError> {
        UncheckedSignedPointer::from(item).verify()
    }

    /// Read and verify the compact byte form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DhtError> {
        UncheckedSignedPointer::from_bytes(bytes)?.verify()
    }

    /// The compact byte form, for storage (e.g. a SQLite BLOB):
    /// `KDP1 | key(32) | sig(64) | seq(i64 BE) | salt_len(u8) | salt | v_len(u16 BE) | v`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let salt = self.address.salt().unwrap_or_default();
        let mut out = Vec::with_capacity(4 + 32 + 64 + 8 + 1 + salt.len() + 2 + self.value.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.address.public_key());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.seq.to_be_bytes());
        // Both lengths are bounded by construction (salt <= 64, value <= 1000).
        out.push(u8::try_from(salt.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(salt);
        out.extend_from_slice(
            &u16::try_from(self.value.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.value);
        out
    }

    /// Back to the unchecked form (e.g. to tamper with it in tests, or to store field by field).
    pub fn to_unchecked(&self) -> UncheckedSignedPointer {
        UncheckedSignedPointer {
            public_key: *self.address.public_key(),
            salt: self.address.salt().map(<[u8]>::to_vec),
            seq: self.seq,
            value: self.value.clone(),
            signature: self.signature,
        }
    }

    /// The mainline item to put. The signature was checked when `self` was built.
    pub(crate) fn to_mutable_item(&self) -> MutableItem {
        MutableItem::new_signed_unchecked(
            *self.address.public_key(),
            self.signature,
            &self.value,
            self.seq,
            self.address.salt(),
        )
    }

    /// Public key and salt.
    pub fn address(&self) -> &PointerAddress {
        &self.address
    }
    /// The publisher's public key.
    pub fn public_key(&self) -> &[u8; 32] {
        self.address.public_key()
    }
    /// The salt, if any.
    pub fn salt(&self) -> Option<&[u8]> {
        self.address.salt()
    }
    /// Sequence number.
    pub fn seq(&self) -> i64 {
        self.seq
    }
    /// The signed value bytes (`d2:ih20:<infohash>e`).
    pub fn value(&self) -> &[u8] {
        &self.value
    }
    /// The ed25519 signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
    /// The catalog torrent's infohash this pointer names.
    pub fn infohash(&self) -> [u8; INFOHASH_LEN] {
        self.infohash
    }
    /// The DHT target (SHA-1 of key and salt).
    pub fn target(&self) -> Id {
        self.address.target()
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> SigningKey {
        SigningKey::from_bytes(&[5u8; 32])
    }

    #[test]
    fn signature_matches_mainline_signing() {
        for salt in [None, Some(b"salt".as_slice())] {
            let ours = SignedPointer::sign(&signer(), salt, [1u8; 20], 42).unwrap();
            let theirs = MutableItem::new(signer(), &encode_pointer(&[1u8; 20]), 42, salt);
            assert_eq!(ours.signature(), theirs.signature());
            assert_eq!(ours.target(), *theirs.target());
            assert_eq!(SignedPointer::from_mutable_item(&theirs).unwrap(), ours);
        }
    }

    #[test]
    fn bytes_round_trip() {
        for salt in [None, Some(b"x".as_slice()), Some([7u8; 64].as_slice())] {
            let p = SignedPointer::sign(&signer(), salt, [3u8; 20], -1).unwrap();
            let bytes = p.to_bytes();
            assert_eq!(SignedPointer::from_bytes(&bytes).unwrap(), p);
            // Every truncation and any extension is refused.
            for n in 0..bytes.len() {
                assert!(UncheckedSignedPointer::from_bytes(&bytes[..n]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(UncheckedSignedPointer::from_bytes(&longer).is_err());
        }
    }

    #[test]
    fn tampering_is_detected() {
        let p = SignedPointer::sign(&signer(), Some(b"s"), [3u8; 20], 7).unwrap();
        let mut seq = p.to_unchecked();
        seq.seq = 8;
        let mut value = p.to_unchecked();
        value.value[10] ^= 1;
        let mut sig = p.to_unchecked();
        sig.signature[0] ^= 1;
        let mut salt = p.to_unchecked();
        salt.salt = Some(b"t".to_vec());
        let mut key = p.to_unchecked();
        key.public_key = SigningKey::from_bytes(&[6u8; 32])
            .verifying_key()
            .to_bytes();
        for forged in [seq, value, sig, salt, key] {
            assert!(matches!(
                forged.verify(),
                Err(DhtError::BadSignature { .. })
            ));
        }
    }

    #[test]
    fn signed_garbage_value_is_refused() {
        let value = b"not a pointer".to_vec();
        let signature = signer().sign(&signable(None, 1, &value)).to_bytes();
        let item = UncheckedSignedPointer {
            public_key: signer().verifying_key().to_bytes(),
            salt: None,
            seq: 1,
            value,
            signature,
        };
        assert!(matches!(
            item.verify(),
            Err(DhtError::InvalidPointer { .. })
        ));
    }
}
