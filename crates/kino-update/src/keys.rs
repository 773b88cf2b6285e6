//! Release keys: ed25519, stored as PKCS#8 DER (what tough reads).

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::key::Key;
use tough::sign::{Sign, parse_keypair};

use crate::error::{UpdateError, io};

/// A release key file (PKCS#8 DER ed25519).
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
    der: Vec<u8>,
}

impl KeyFile {
    /// Reads and checks a key file.
    pub fn load(path: &Path) -> Result<KeyFile, UpdateError> {
        let der = std::fs::read(path).map_err(io(format!("cannot read {}", path.display())))?;
        Ed25519KeyPair::from_pkcs8(&der).map_err(|e| UpdateError::Key {
            path: path.to_path_buf(),
            message: format!("not a PKCS#8 DER ed25519 key ({e})"),
        })?;
        Ok(KeyFile {
            path: path.to_path_buf(),
            der,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key as tough's key source.
    pub fn source(&self) -> Box<dyn KeySource> {
        Box::new(LocalKeySource {
            path: self.path.clone(),
        })
    }

    /// The key as tough's signer.
    pub fn signer(&self) -> Result<impl Sign + use<>, UpdateError> {
        parse_keypair(&self.der).map_err(|e| UpdateError::Key {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// The public key in TUF form.
    pub fn tuf_key(&self) -> Result<Key, UpdateError> {
        Ok(self.signer()?.tuf_key())
    }

    /// The TUF key id (hex).
    pub fn key_id(&self) -> Result<String, UpdateError> {
        let id = self.tuf_key()?.key_id().map_err(|e| UpdateError::Key {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        Ok(hex::encode(&*id))
    }

    /// The 32-byte ed25519 public key.
    pub fn public_key(&self) -> Result<[u8; 32], UpdateError> {
        let kp = self.keypair()?;
        let mut out = [0u8; 32];
        out.copy_from_slice(kp.public_key().as_ref());
        Ok(out)
    }

    fn keypair(&self) -> Result<Ed25519KeyPair, UpdateError> {
        Ed25519KeyPair::from_pkcs8(&self.der).map_err(|e| UpdateError::Key {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// The same key as a DHT signing key (for the update pointer).
    pub fn dht_signing_key(&self) -> Result<kino_dht::SigningKey, UpdateError> {
        let bad = |m: String| UpdateError::Key {
            path: self.path.clone(),
            message: m,
        };
        let kp = self.keypair()?;
        let seed = kp.seed().map_err(|e| bad(e.to_string()))?;
        let bytes = seed.as_be_bytes().map_err(|e| bad(e.to_string()))?;
        let seed: [u8; 32] = bytes
            .as_ref()
            .try_into()
            .map_err(|_| bad("seed is not 32 bytes".into()))?;
        Ok(kino_dht::SigningKey::from_bytes(&seed))
    }
}

/// Generates a new ed25519 key and writes it as PKCS#8 DER to `path` (mode 0600, never over an
/// existing file).
pub fn keygen(path: &Path) -> Result<KeyFile, UpdateError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| UpdateError::Key {
        path: path.to_path_buf(),
        message: format!("key generation failed: {e}"),
    })?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    std::io::Write::write_all(&mut f, doc.as_ref())
        .and_then(|_| f.sync_all())
        .map_err(io(format!("cannot write {}", path.display())))?;
    KeyFile::load(path)
}

/// Hex of a key's TUF key id, for display.
pub fn key_id_of(key: &Key) -> Option<String> {
    key.key_id().ok().map(|id| hex::encode(&*id))
}
