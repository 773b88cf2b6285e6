//! The catalog folder: `catalog.json`, `catalog.sig`, and the posters and subtitles that
//! catalog.json names by relative path.
//!
//! Every file is checked for type (a regular file, reached through no symlink) and size cap
//! from its metadata before it is read, and reading stops at the cap in case it grew.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::caps;
use crate::catalog::{CatalogSignature, UnverifiedCatalog, VerifiedCatalog};
use crate::error::CatalogError;
use crate::key::PublisherSecretKey;
use crate::schema::Catalog;
use crate::validate::{AssetKind, relative_path};

/// File name of the catalog document in a catalog folder.
pub const CATALOG_JSON: &str = "catalog.json";

/// File name of the detached signature in a catalog folder.
pub const CATALOG_SIG: &str = "catalog.sig";

/// A file that a catalog references: a poster or a subtitle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRef<'a> {
    /// Field path of the reference, e.g. `titles[2].poster`.
    pub field: String,
    /// The relative path as written in catalog.json.
    pub path: &'a str,
    /// Poster or subtitle.
    pub kind: AssetKind,
}

/// Every poster and subtitle the catalog references, in document order.
pub fn asset_refs(catalog: &Catalog) -> Vec<AssetRef<'_>> {
    let mut out = Vec::new();
    for (i, t) in catalog.titles.iter().enumerate() {
        if let Some(p) = &t.poster {
            out.push(AssetRef {
                field: format!("titles[{i}].poster"),
                path: p,
                kind: AssetKind::Poster,
            });
        }
        for (s, sub) in t.subtitles.iter().enumerate() {
            out.push(AssetRef {
                field: format!("titles[{i}].subtitles[{s}].path"),
                path: &sub.path,
                kind: AssetKind::Subtitle,
            });
        }
    }
    out
}

/// What [`sign_catalog_dir`] made.
#[derive(Debug, Clone)]
pub struct SignedCatalog {
    /// The catalog, verified against the signature just written.
    pub catalog: VerifiedCatalog,
    /// The signature written to `catalog.sig`.
    pub signature: CatalogSignature,
    /// Where the signature was written.
    pub sig_path: PathBuf,
}

/// Checks a catalog folder as its publisher has it, before signing, writing nothing:
/// `catalog.json` is read (size checked first), parsed and validated, and every referenced
/// poster and subtitle must exist as a regular file within its cap. [`sign_catalog_dir`]
/// does this first; call it alone to refuse a bad folder before any other work.
pub fn check_catalog_dir(dir: &Path) -> Result<UnverifiedCatalog, CatalogError> {
    let json_path = dir.join(CATALOG_JSON);
    let bytes = read_capped(
        &json_path,
        caps::MAX_CATALOG_JSON_BYTES,
        CATALOG_JSON,
        |size| CatalogError::TooLarge {
            what: CATALOG_JSON.into(),
            size,
            cap: caps::MAX_CATALOG_JSON_BYTES,
        },
    )?;
    let unverified = UnverifiedCatalog::parse(bytes)?;
    check_assets(dir, unverified.catalog_unchecked())?;
    Ok(unverified)
}

/// Signs a catalog folder: reads and validates `catalog.json`, checks that every referenced
/// poster and subtitle exists as a regular file within its cap, then writes `catalog.sig`
/// (replacing an older one atomically).
pub fn sign_catalog_dir(
    dir: &Path,
    key: &PublisherSecretKey,
) -> Result<SignedCatalog, CatalogError> {
    let unverified = check_catalog_dir(dir)?;
    let signature = CatalogSignature::sign(unverified.bytes(), key);
    let sig_path = dir.join(CATALOG_SIG);
    let tmp_path = dir.join(format!("{CATALOG_SIG}.tmp"));
    fs::write(&tmp_path, signature.to_file_contents())
        .map_err(|e| CatalogError::io(&tmp_path, e))?;
    fs::rename(&tmp_path, &sig_path).map_err(|e| CatalogError::io(&sig_path, e))?;
    let catalog = unverified.verify(&key.public_key(), &signature, None)?;
    Ok(SignedCatalog {
        catalog,
        signature,
        sig_path,
    })
}

/// Loads a catalog folder as received: `catalog.json` (size checked before reading, then
/// parsed and validated) and `catalog.sig` (missing: [`CatalogError::Unsigned`]). Posters and subtitles are not read here (they may
/// be fetched later); use [`check_assets`] or [`read_asset`] for them.
pub fn load_catalog_dir(dir: &Path) -> Result<(UnverifiedCatalog, CatalogSignature), CatalogError> {
    let json_path = dir.join(CATALOG_JSON);
    let bytes = read_capped(
        &json_path,
        caps::MAX_CATALOG_JSON_BYTES,
        CATALOG_JSON,
        |size| CatalogError::TooLarge {
            what: CATALOG_JSON.into(),
            size,
            cap: caps::MAX_CATALOG_JSON_BYTES,
        },
    )?;
    let sig_path = dir.join(CATALOG_SIG);
    match fs::symlink_metadata(&sig_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CatalogError::Unsigned { path: sig_path });
        }
        // Any other problem is reported by reading it.
        _ => {}
    }
    let sig_bytes = read_capped(&sig_path, caps::MAX_SIG_FILE_BYTES, CATALOG_SIG, |_| {
        CatalogError::MalformedSignature {
            path: sig_path.clone(),
            reason: format!("larger than {} bytes", caps::MAX_SIG_FILE_BYTES),
        }
    })?;
    let signature = CatalogSignature::from_file_contents(&sig_bytes).map_err(|reason| {
        CatalogError::MalformedSignature {
            path: sig_path.clone(),
            reason,
        }
    })?;
    let catalog = UnverifiedCatalog::parse(bytes)?;
    Ok((catalog, signature))
}

/// Checks that every poster and subtitle the catalog names is a regular file inside `dir`,
/// reached through no symlink, and within its cap (from metadata; nothing is read).
pub fn check_assets(dir: &Path, catalog: &Catalog) -> Result<(), CatalogError> {
    for asset in asset_refs(catalog) {
        let path = resolve(dir, &asset.field, asset.path, asset.kind)?;
        let meta = fs::metadata(&path).map_err(|e| CatalogError::io(&path, e))?;
        if meta.len() > asset.kind.cap() {
            return Err(too_large_asset(
                &asset.field,
                asset.path,
                meta.len(),
                asset.kind,
            ));
        }
    }
    Ok(())
}

/// Reads one poster or subtitle of a catalog folder, enforcing the path rules (the path is
/// checked again here, whoever passes it), the no-symlink rule and the size cap.
/// `field` names the reference in errors (e.g. `titles[2].poster`).
pub fn read_asset(
    dir: &Path,
    field: &str,
    relative: &str,
    kind: AssetKind,
) -> Result<Vec<u8>, CatalogError> {
    let path = resolve(dir, field, relative, kind)?;
    read_capped(&path, kind.cap(), field, |size| {
        too_large_asset(field, relative, size, kind)
    })
}

fn too_large_asset(field: &str, relative: &str, size: u64, kind: AssetKind) -> CatalogError {
    CatalogError::TooLarge {
        what: format!("{field} ({relative})"),
        size,
        cap: kind.cap(),
    }
}

/// Validates `relative` and walks it from `dir`, refusing symlinks and non-regular files.
fn resolve(
    dir: &Path,
    field: &str,
    relative: &str,
    kind: AssetKind,
) -> Result<PathBuf, CatalogError> {
    relative_path(field, relative, kind)?;
    let bad = |reason: &str| CatalogError::BadAsset {
        field: field.to_owned(),
        path: relative.to_owned(),
        reason: reason.to_owned(),
    };
    let mut path = dir.to_path_buf();
    let components: Vec<&str> = relative.split('/').collect();
    let last = components.len().saturating_sub(1);
    for (i, c) in components.iter().enumerate() {
        path.push(c);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad("missing from the catalog folder"));
            }
            Err(e) => return Err(CatalogError::io(&path, e)),
        };
        if meta.file_type().is_symlink() {
            return Err(bad("is or passes through a symlink, which is not allowed"));
        }
        if i < last && !meta.is_dir() {
            return Err(bad("a component of the path is not a folder"));
        }
        if i == last && !meta.is_file() {
            return Err(bad("not a regular file"));
        }
    }
    Ok(path)
}

/// Reads a regular file of at most `cap` bytes, checking its length before reading and
/// stopping at `cap + 1` bytes.
fn read_capped(
    path: &Path,
    cap: u64,
    what: &str,
    too_large: impl Fn(u64) -> CatalogError,
) -> Result<Vec<u8>, CatalogError> {
    let meta = fs::symlink_metadata(path).map_err(|e| CatalogError::io(path, e))?;
    if !meta.is_file() {
        return Err(CatalogError::io(
            path,
            std::io::Error::other(format!(
                "{what} is not a regular file (symlinks are refused)"
            )),
        ));
    }
    if meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    let file = fs::File::open(path).map_err(|e| CatalogError::io(path, e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CatalogError::io(path, e))?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > cap {
        return Err(too_large(read));
    }
    Ok(bytes)
}
