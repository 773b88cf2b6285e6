//! The client side: verify a repository folder with tough, pick the binary for this platform,
//! stage it beside the running binary, swap it in atomically, and roll back.
//!
//! Invariants (see `docs/updates.md`):
//! - Nothing is staged before tough has verified the whole metadata chain from the trusted root.
//! - The trusted root is the embedded one, or the newest root that tough verified and persisted
//!   in the datastore (`tuf/root.json`), whichever has the higher version: a key revoked by a
//!   rotation stays revoked even if a repository later withholds the new root.
//! - The version floor (`state.json`) only goes up: it is raised on install, never lowered by a
//!   rollback; no release below it, or below the running version, is accepted.
//! - The running binary is replaced only by `rename(2)` of a fully written, fsynced, verified
//!   file in the same folder; the previous binary is kept as `<name>.previous`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tough::schema::{RoleType, Root, Signed};
use tough::{FilesystemTransport, Limits, Repository, RepositoryLoader, TargetName};

use crate::error::{UpdateError, io, tuf};
use crate::release::{metadata_dir, target_name, targets_dir};
use crate::version::Version;

/// Caps on metadata read before verification (endless-data attacks). Every metadata file is
/// small: these are generous for a handful of keys and targets.
pub const METADATA_LIMITS: Limits = Limits {
    max_root_size: 64 * 1024,
    max_targets_size: 1024 * 1024,
    max_timestamp_size: 16 * 1024,
    max_snapshot_size: 64 * 1024,
    max_root_updates: 32,
};

/// Largest binary a client accepts.
pub const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;

/// Configuration of an [`UpdateClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The root shipped with the binary (or given for tests).
    pub trusted_root: Vec<u8>,
    /// Where the client keeps tough's datastore (`tuf/`) and `state.json`.
    pub state_dir: PathBuf,
    /// The version of the running binary.
    pub current_version: Version,
    /// This platform (`x86_64-linux`...).
    pub platform: String,
    /// Metadata caps.
    pub limits: Limits,
    /// Largest binary accepted.
    pub max_artifact_bytes: u64,
}

impl ClientConfig {
    /// Defaults for everything but the root, the folder and the running version.
    pub fn new(trusted_root: Vec<u8>, state_dir: PathBuf, current_version: Version) -> Self {
        ClientConfig {
            trusted_root,
            state_dir,
            current_version,
            platform: crate::current_platform(),
            limits: METADATA_LIMITS,
            max_artifact_bytes: MAX_ARTIFACT_BYTES,
        }
    }
}

/// Persistent client state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientState {
    /// The highest version ever installed: nothing older is accepted.
    #[serde(default)]
    pub floor: Option<String>,
    /// Highest pointer seq accepted per pointer key (hex).
    #[serde(default)]
    pub pointer_seq: BTreeMap<String, i64>,
    /// Highest root pointer seq (root version) followed per root key (hex).
    #[serde(default)]
    pub root_pointer_seq: BTreeMap<String, i64>,
    /// The root pointer held for the trusted root (kino-dht bytes, hex), republished unchanged
    /// so it outlives its publisher like the timestamp pointer.
    #[serde(default)]
    pub root_pointer: Option<String>,
    /// The signed pointer last accepted (kino-dht bytes, hex), republished unchanged.
    #[serde(default)]
    pub pointer: Option<String>,
    /// Infohash (hex) of the update torrent last verified.
    #[serde(default)]
    pub infohash: Option<String>,
}

/// A release that tough verified and that Kino's rules accept.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    /// Its version.
    pub version: Version,
    /// The target name.
    pub target: String,
    /// Declared length.
    pub length: u64,
    /// Declared SHA-256 (hex).
    pub sha256: String,
    /// Version of the root it was verified with.
    pub root_version: u64,
    /// Version of the timestamp (the pointer seq).
    pub timestamp_version: u64,
    /// When the timestamp expires.
    pub timestamp_expires: String,
    /// Targets role: signatures required and keys named in root.
    pub targets_threshold: (u64, usize),
    /// Root role: signatures required and keys named in root.
    pub root_threshold: (u64, usize),
    repo: Repository,
}

impl VerifiedRelease {
    /// Why this release is trusted, for `kino update check`.
    pub fn explain(&self) -> String {
        format!(
            "kino {v} ({t}, {len} bytes, sha256 {sha})\n\
             trusted because: root v{rv} (root role {rm}-of-{rn}) chains to the root this binary trusts; \
             targets.json is signed by {tm} of its {tn} keys; snapshot and timestamp (v{tv}, expires {exp}) \
             are signed by their role keys, unexpired, not older than seen before, and consistent \
             (same publication); the binary's length and SHA-256 are checked while downloading",
            v = self.version,
            t = self.target,
            len = self.length,
            sha = self.sha256,
            rv = self.root_version,
            rm = self.root_threshold.0,
            rn = self.root_threshold.1,
            tm = self.targets_threshold.0,
            tn = self.targets_threshold.1,
            tv = self.timestamp_version,
            exp = self.timestamp_expires,
        )
    }

    /// The verified root document (names the pointer keys).
    pub fn root(&self) -> &Signed<Root> {
        self.repo.root()
    }
}

/// A verified binary written beside the running one, not yet swapped in.
#[derive(Debug)]
pub struct StagedBinary {
    /// The staged file.
    pub path: PathBuf,
    /// Its version.
    pub version: Version,
}

/// What an install did.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The new version.
    pub version: Version,
    /// The binary replaced.
    pub binary: PathBuf,
    /// Where the previous binary was kept.
    pub previous: PathBuf,
}

/// Verifies and installs updates.
#[derive(Debug, Clone)]
pub struct UpdateClient {
    cfg: ClientConfig,
}

fn dir_url(p: &Path) -> Result<url::Url, UpdateError> {
    let abs = std::fs::canonicalize(p).map_err(io(format!("cannot open {}", p.display())))?;
    url::Url::from_directory_path(&abs)
        .map_err(|_| UpdateError::Usage(format!("{} is not an absolute folder", abs.display())))
}

/// `<binary>.previous`.
pub fn previous_path(binary: &Path) -> PathBuf {
    let mut name = binary.file_name().unwrap_or_default().to_os_string();
    name.push(".previous");
    binary.with_file_name(name)
}

fn fsync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl UpdateClient {
    /// A client with `cfg`.
    pub fn new(cfg: ClientConfig) -> Self {
        UpdateClient { cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn datastore(&self) -> PathBuf {
        self.cfg.state_dir.join("tuf")
    }

    fn state_path(&self) -> PathBuf {
        self.cfg.state_dir.join("state.json")
    }

    /// Reads the persistent state (empty if none).
    pub fn state(&self) -> Result<ClientState, UpdateError> {
        match std::fs::read(self.state_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                UpdateError::Usage(format!(
                    "{} is corrupt ({e}); remove it to start over",
                    self.state_path().display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientState::default()),
            Err(e) => Err(io("cannot read the update state")(e)),
        }
    }

    /// Writes the persistent state atomically.
    pub fn save_state(&self, state: &ClientState) -> Result<(), UpdateError> {
        std::fs::create_dir_all(&self.cfg.state_dir)
            .map_err(io("cannot create the state folder"))?;
        let tmp = self.state_path().with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| UpdateError::Usage(format!("cannot serialize the state: {e}")))?;
        let mut f = std::fs::File::create(&tmp).map_err(io("cannot write the update state"))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(io("cannot write the update state"))?;
        std::fs::rename(&tmp, self.state_path()).map_err(io("cannot write the update state"))?;
        Ok(())
    }

    /// The lowest version this client accepts: the running version or the highest installed.
    pub fn floor(&self) -> Result<Version, UpdateError> {
        let st = self.state()?;
        let stored = st.floor.as_deref().and_then(|f| f.parse::<Version>().ok());
        Ok(stored.map_or(self.cfg.current_version, |f| {
            f.max(self.cfg.current_version)
        }))
    }

    /// The root this client trusts now: the embedded one, or the newer one tough verified and
    /// kept in the datastore.
    pub fn trusted_root(&self) -> Result<Vec<u8>, UpdateError> {
        if self.cfg.trusted_root.iter().all(u8::is_ascii_whitespace) {
            return Err(UpdateError::NoTrustedRoot);
        }
        let parse = |b: &[u8]| serde_json::from_slice::<Signed<Root>>(b).ok();
        let embedded = parse(&self.cfg.trusted_root).ok_or_else(|| {
            UpdateError::Usage("the trusted root is not a valid root.json".into())
        })?;
        if let Ok(kept) = std::fs::read(self.datastore().join("root.json"))
            && let Some(k) = parse(&kept)
            && k.signed.version > embedded.signed.version
        {
            return Ok(kept);
        }
        Ok(self.cfg.trusted_root.clone())
    }

    /// The trusted root, parsed.
    pub fn trusted_root_parsed(&self) -> Result<Signed<Root>, UpdateError> {
        let b = self.trusted_root()?;
        serde_json::from_slice(&b)
            .map_err(|e| UpdateError::Usage(format!("the trusted root is invalid: {e}")))
    }

    /// Verifies the repository in `repo_dir` (metadata and targets folders, as the update torrent
    /// holds them) and returns the newest binary for this platform, if it is newer than the
    /// running one. Nothing is written outside the state folder.
    pub async fn check(&self, repo_dir: &Path) -> Result<VerifiedRelease, UpdateError> {
        let root = self.trusted_root()?;
        let ds = self.datastore();
        std::fs::create_dir_all(&ds).map_err(io("cannot create the update datastore"))?;
        let repo = RepositoryLoader::new(
            &root,
            dir_url(&metadata_dir(repo_dir))?,
            dir_url(&targets_dir(repo_dir))?,
        )
        .transport(FilesystemTransport)
        .limits(self.cfg.limits)
        .datastore(&ds)
        .load()
        .await
        .map_err(tuf("the update metadata failed verification"))?;
        self.select(repo)
    }

    fn select(&self, repo: Repository) -> Result<VerifiedRelease, UpdateError> {
        let mut best: Option<(Version, String, u64, String)> = None;
        for (name, target) in repo.all_targets() {
            let raw = name.raw();
            let kino = target.custom.get("kino");
            let field = |f: &str| kino.and_then(|k| k.get(f)).and_then(|v| v.as_str());
            let (Some(v), Some(platform)) = (field("version"), field("platform")) else {
                continue;
            };
            if platform != self.cfg.platform {
                continue;
            }
            let version: Version = v.parse().map_err(|e| {
                UpdateError::Refused(format!("target {raw:?} has a bad version: {e}"))
            })?;
            // Names are signed, but a name is still never trusted as a path.
            if raw != target_name(version, platform) || name.resolved() != raw {
                return Err(UpdateError::Refused(format!(
                    "target name {raw:?} is not the plain file name {:?}: a path that could climb out of the staging folder",
                    target_name(version, platform)
                )));
            }
            if target.length > self.cfg.max_artifact_bytes {
                return Err(UpdateError::Refused(format!(
                    "target {raw} declares {} bytes, more than the {} accepted",
                    target.length, self.cfg.max_artifact_bytes
                )));
            }
            if best.as_ref().is_none_or(|b| version > b.0) {
                best = Some((
                    version,
                    raw.to_owned(),
                    target.length,
                    hex::encode(&*target.hashes.sha256),
                ));
            }
        }
        let (version, target, length, sha256) = best.ok_or_else(|| {
            UpdateError::NoUpdate(format!(
                "no binary for {} in the release",
                self.cfg.platform
            ))
        })?;
        let floor = self.floor()?;
        if version < floor {
            return Err(UpdateError::Refused(format!(
                "the release offers {version}, older than {floor} (rollback to an older version)"
            )));
        }
        if version == self.cfg.current_version {
            return Err(UpdateError::NoUpdate(format!(
                "kino {version} is the newest release and is running"
            )));
        }
        let root = repo.root();
        let role = |r: RoleType| {
            root.signed
                .roles
                .get(&r)
                .map_or((0, 0), |k| (k.threshold.get(), k.keyids.len()))
        };
        let ts = repo.timestamp();
        Ok(VerifiedRelease {
            version,
            target,
            length,
            sha256,
            root_version: root.signed.version.get(),
            timestamp_version: ts.signed.version.get(),
            timestamp_expires: ts.signed.expires.to_string(),
            targets_threshold: role(RoleType::Targets),
            root_threshold: role(RoleType::Root),
            repo,
        })
    }

    /// Writes the release's binary beside `binary` (same folder, so the swap is a rename),
    /// verifying length and SHA-256 as it streams (tough stops reading at the declared length).
    /// On any failure the partial file is removed and `binary` is untouched.
    pub async fn stage(
        &self,
        release: &VerifiedRelease,
        binary: &Path,
    ) -> Result<StagedBinary, UpdateError> {
        let dir = binary
            .parent()
            .ok_or_else(|| UpdateError::Usage(format!("{} has no folder", binary.display())))?;
        let staged = dir.join(format!(".kino-update-{}.partial", release.version));
        let result = self.stage_into(release, &staged).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&staged);
        }
        result?;
        Ok(StagedBinary {
            path: staged,
            version: release.version,
        })
    }

    async fn stage_into(
        &self,
        release: &VerifiedRelease,
        staged: &Path,
    ) -> Result<(), UpdateError> {
        let _ = std::fs::remove_file(staged);
        let name = TargetName::new(release.target.clone())
            .map_err(tuf(format!("target name {}", release.target)))?;
        let mut stream = release
            .repo
            .read_target(&name)
            .await
            .map_err(tuf("the update metadata expired before download"))?
            .ok_or_else(|| UpdateError::Refused(format!("{} is not listed", release.target)))?;
        let mut f = std::fs::File::create(staged)
            .map_err(io(format!("cannot create {}", staged.display())))?;
        let mut hasher = sha2::Sha256::new();
        let mut len: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(tuf(format!(
                "the binary {} failed verification",
                release.target
            )))?;
            len += chunk.len() as u64;
            if len > release.length {
                return Err(UpdateError::Refused(format!(
                    "{} is longer than the {} bytes declared (endless data)",
                    release.target, release.length
                )));
            }
            hasher.update(&chunk);
            f.write_all(&chunk)
                .map_err(io(format!("cannot write {}", staged.display())))?;
        }
        if len != release.length || hex::encode(hasher.finalize()) != release.sha256 {
            return Err(UpdateError::Refused(format!(
                "{} does not match its signed length and SHA-256",
                release.target
            )));
        }
        f.sync_all()
            .map_err(io(format!("cannot sync {}", staged.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o755))
                .map_err(io(format!("cannot make {} executable", staged.display())))?;
        }
        Ok(())
    }

    /// Swaps `staged` in for `binary` atomically, keeping the current one as
    /// `<binary>.previous`, and raises the version floor.
    pub fn install(&self, staged: StagedBinary, binary: &Path) -> Result<Installed, UpdateError> {
        let previous = previous_path(binary);
        let tmp_prev = previous.with_extension("previous.tmp");
        let _ = std::fs::remove_file(&tmp_prev);
        // Keep the running binary: a hard link (same inode), or a copy across odd filesystems.
        if std::fs::hard_link(binary, &tmp_prev).is_err() {
            std::fs::copy(binary, &tmp_prev)
                .map_err(io(format!("cannot keep a copy of {}", binary.display())))?;
        }
        std::fs::rename(&tmp_prev, &previous)
            .map_err(io(format!("cannot keep {}", previous.display())))?;
        std::fs::rename(&staged.path, binary)
            .map_err(io(format!("cannot replace {}", binary.display())))?;
        if let Some(dir) = binary.parent() {
            fsync_dir(dir);
        }
        let mut st = self.state()?;
        let floor = self.floor()?.max(staged.version);
        st.floor = Some(floor.to_string());
        self.save_state(&st)?;
        Ok(Installed {
            version: staged.version,
            binary: binary.to_path_buf(),
            previous,
        })
    }

    /// Verifies, stages and installs in one go.
    pub async fn apply(&self, repo_dir: &Path, binary: &Path) -> Result<Installed, UpdateError> {
        let release = self.check(repo_dir).await?;
        let staged = self.stage(&release, binary).await?;
        self.install(staged, binary)
    }
}

/// Puts `<binary>.previous` back in place of `binary` (atomic rename). The version floor is not
/// lowered: the newer release stays acceptable, nothing older than it is offered.
pub fn rollback(binary: &Path) -> Result<PathBuf, UpdateError> {
    let previous = previous_path(binary);
    if !previous.exists() {
        return Err(UpdateError::Usage(format!(
            "no previous binary to go back to ({} does not exist)",
            previous.display()
        )));
    }
    std::fs::rename(&previous, binary)
        .map_err(io(format!("cannot restore {}", binary.display())))?;
    if let Some(dir) = binary.parent() {
        fsync_dir(dir);
    }
    Ok(binary.to_path_buf())
}
