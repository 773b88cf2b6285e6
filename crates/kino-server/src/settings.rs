//! The sharing settings a user changes in the web app, saved in the database's `settings`
//! table so they survive restarts. The binary applies them over the config file when it
//! starts the engine ([`AppSettings::apply`]); a change made while running takes effect at the
//! next start (the page says so). A data folder chosen on the page is checked here
//! ([`check_data_dir`]) before the binary saves it in its config file.

use std::path::{Component, Path, PathBuf};

use kino_engine::SharePolicy;
use kino_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

const KEY: &str = "web.share";

/// Sharing settings. `0` means "no limit" for the caps and the ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Share (seed) at all.
    pub share_enabled: bool,
    /// Upload cap in KiB/s (0: none).
    pub upload_limit_kib: u32,
    /// Stop seeding a film at this ratio (0: never).
    pub ratio_limit: f64,
    /// Media cache cap in MiB (0: none).
    pub cache_limit_mib: u64,
}

impl AppSettings {
    /// The settings a policy stands for.
    pub fn from_policy(p: &SharePolicy) -> Self {
        AppSettings {
            share_enabled: p.enabled,
            upload_limit_kib: p.upload_limit_bps.map_or(0, |b| b / 1024),
            ratio_limit: p.ratio_limit.unwrap_or(0.0),
            cache_limit_mib: p.cache_limit_bytes.map_or(0, |b| b / (1024 * 1024)),
        }
    }

    /// Writes these settings into a policy.
    pub fn apply(&self, p: &mut SharePolicy) {
        p.enabled = self.share_enabled;
        p.upload_limit_bps =
            (self.upload_limit_kib > 0).then(|| self.upload_limit_kib.saturating_mul(1024));
        p.ratio_limit = (self.ratio_limit > 0.0).then_some(self.ratio_limit);
        p.cache_limit_bytes =
            (self.cache_limit_mib > 0).then(|| self.cache_limit_mib.saturating_mul(1024 * 1024));
    }

    /// Refuses values out of range, saying which.
    pub fn validate(&self) -> Result<(), String> {
        if !self.ratio_limit.is_finite() || !(0.0..=1000.0).contains(&self.ratio_limit) {
            return Err("ratio_limit must be between 0 (never stop) and 1000".into());
        }
        if self.upload_limit_kib > 4 * 1024 * 1024 {
            return Err("upload_limit_kib must be at most 4194304 (4 GiB/s)".into());
        }
        if self.cache_limit_mib > 1 << 30 {
            return Err("cache_limit_mib is too large".into());
        }
        Ok(())
    }
}

/// Why a folder cannot be the data folder.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A relative path.
    #[error("the data folder must be an absolute path")]
    NotAbsolute,
    /// A path with `..` in it.
    #[error("the data folder {0} contains \"..\": name the folder itself")]
    Traversal(PathBuf),
    /// The system's own folders (or one of the shared top folders such as `/home`).
    #[error("{0} is a system folder: choose a folder of your own, e.g. in your home folder")]
    SystemFolder(PathBuf),
    /// Something that is not a folder.
    #[error("{0} is not a folder: choose a folder")]
    NotAFolder(PathBuf),
    /// The folder does not exist and cannot be made.
    #[error("cannot create the folder {path}")]
    CannotCreate {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No file can be written in the folder.
    #[error("cannot write in {path} (choose a folder you can write to)")]
    NotWritable {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl DataDirError {
    /// What the caller should do about it: choose another folder
    /// ([`kino_core::ErrorKind::UserInput`]).
    pub fn kind(&self) -> kino_core::ErrorKind {
        kino_core::ErrorKind::UserInput
    }
}

/// Folders that are never a data folder, nor is anything inside them.
const SYSTEM_TREES: &[&str] = &[
    "/etc",
    "/bin",
    "/sbin",
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/System",
    "/Library",
    "/private/etc",
];
/// Inside these, removable drives are mounted: a data folder there is fine.
const MOUNT_TREES: &[&str] = &["/run/media"];
/// Shared top folders: folders inside them are fine, the folder itself is not.
const SHARED_TOPS: &[&str] = &[
    "/",
    "/home",
    "/root",
    "/var",
    "/tmp",
    "/var/tmp",
    "/mnt",
    "/media",
    "/opt",
    "/srv",
    "/Users",
    "/Volumes",
    "/private",
    "/private/var",
    "/private/tmp",
];

/// Whether `path` (absolute, without `..`) is a system folder or in one.
fn is_system_folder(path: &Path) -> bool {
    let inside = |roots: &[&str]| roots.iter().any(|r| path.starts_with(r));
    (inside(SYSTEM_TREES) && !inside(MOUNT_TREES))
        || SHARED_TOPS.iter().any(|t| path == Path::new(t))
}

/// Checks that `path` can be Kino's data folder: an absolute path, not a system folder (also
/// after following symbolic links), and a folder that exists or can be created, in which a
/// file can be created. The check writes and removes a probe file, and removes the folders
/// it had to create, so it leaves nothing behind.
pub fn check_data_dir(path: &Path) -> Result<(), DataDirError> {
    if !path.is_absolute() {
        return Err(DataDirError::NotAbsolute);
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(DataDirError::Traversal(path.to_path_buf()));
    }
    if is_system_folder(path) {
        return Err(DataDirError::SystemFolder(path.to_path_buf()));
    }
    // The nearest folder that exists, with symbolic links resolved, and the rest.
    let existing = path
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    let resolved = existing
        .canonicalize()
        .map_err(|source| DataDirError::CannotCreate {
            path: path.to_path_buf(),
            source,
        })?;
    let rest = path.strip_prefix(existing).unwrap_or(Path::new(""));
    let real = resolved.join(rest);
    if is_system_folder(&real) {
        return Err(DataDirError::SystemFolder(real));
    }
    if !resolved.is_dir() {
        return Err(DataDirError::NotAFolder(existing.to_path_buf()));
    }
    // Folders this check creates, deepest last; removed again at the end.
    let created: Vec<&Path> = path
        .ancestors()
        .take_while(|a| !a.exists())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let result = std::fs::create_dir_all(path)
        .map_err(|source| DataDirError::CannotCreate {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|()| probe(path));
    for dir in created.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

/// Creates, writes and removes a file in `dir`.
fn probe(dir: &Path) -> Result<(), DataDirError> {
    use std::io::Write as _;
    let file = dir.join(format!(".kino-write-probe-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .and_then(|mut f| f.write_all(b"kino").and_then(|()| f.sync_all()));
    let removed = std::fs::remove_file(&file);
    written
        .and(removed)
        .map_err(|source| DataDirError::NotWritable {
            path: dir.to_path_buf(),
            source,
        })
}

/// The saved settings, if the user ever saved any.
pub fn load(store: &Store) -> Result<Option<AppSettings>, StoreError> {
    Ok(store
        .setting(KEY)?
        .and_then(|s| serde_json::from_str::<AppSettings>(&s).ok())
        .filter(|s| s.validate().is_ok()))
}

/// Saves settings.
pub fn save(store: &Store, s: &AppSettings) -> Result<(), StoreError> {
    let json = serde_json::to_string(s).unwrap_or_default();
    store.set_setting(KEY, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> Result<(), StoreError> {
        let store = Store::open_in_memory()?;
        assert_eq!(load(&store)?, None);
        let s = AppSettings {
            share_enabled: false,
            upload_limit_kib: 100,
            ratio_limit: 2.5,
            cache_limit_mib: 2048,
        };
        save(&store, &s)?;
        assert_eq!(load(&store)?, Some(s));
        let mut p = SharePolicy::default();
        s.apply(&mut p);
        assert_eq!(AppSettings::from_policy(&p), s);
        assert!(
            AppSettings {
                ratio_limit: f64::NAN,
                ..s
            }
            .validate()
            .is_err()
        );
        Ok(())
    }

    /// Issue 12, D21: `/etc` was accepted as the data folder without any check.
    #[test]
    fn data_dir_check_refuses_system_folders_and_files() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x")?;
        let to_etc = tmp.path().join("to-etc");
        std::os::unix::fs::symlink("/etc", &to_etc)?;
        let system = |e: &DataDirError| matches!(e, DataDirError::SystemFolder(_));
        let not_absolute = |e: &DataDirError| matches!(e, DataDirError::NotAbsolute);
        let traversal = |e: &DataDirError| matches!(e, DataDirError::Traversal(_));
        let not_a_folder = |e: &DataDirError| matches!(e, DataDirError::NotAFolder(_));
        type Want = fn(&DataDirError) -> bool;
        let cases: Vec<(PathBuf, Want)> = vec![
            ("/etc".into(), system),
            ("/etc/kino".into(), system),
            ("/".into(), system),
            ("/home".into(), system),
            ("/usr/local/kino".into(), system),
            ("/proc/self".into(), system),
            ("relative/films".into(), not_absolute),
            (tmp.path().join("x/../../etc"), traversal),
            (to_etc.clone(), system),
            (to_etc.join("kino"), system),
            (file.clone(), not_a_folder),
            (file.join("below"), not_a_folder),
        ];
        for (path, want) in cases {
            let e = check_data_dir(&path).expect_err(&path.to_string_lossy());
            assert!(want(&e), "{}: {e}", path.display());
        }
        assert!(!Path::new("/etc/kino").exists());
        assert_eq!(std::fs::read(&file)?, b"x");

        // An existing folder and one that can be made are accepted; nothing is left behind.
        check_data_dir(tmp.path())?;
        let new = tmp.path().join("films").join("kino");
        check_data_dir(&new)?;
        assert!(
            !tmp.path().join("films").exists(),
            "created folders are removed"
        );
        let mut left: Vec<_> = std::fs::read_dir(tmp.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(left, ["a-file", "to-etc"], "the probe file is removed");
        Ok(())
    }
}
