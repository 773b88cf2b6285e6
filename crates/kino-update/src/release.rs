//! The release side: the root (N keys, threshold M), publications and signatures.
//!
//! Layout of a repository folder: `metadata/N.root.json` (the whole root chain, kept forever),
//! `metadata/{targets,snapshot,timestamp}.json`, and `targets/kino-<version>-<platform>`.
//! Targets, snapshot and timestamp are built and signed by tough's `RepositoryEditor`; the root
//! is built from tough's schema types and signed with tough's signers.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tough::TargetName;
use tough::editor::RepositoryEditor;
use tough::editor::signed::{PathExists, SignedRole};
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{
    Hashes, KeyHolder, Metafile, Role, RoleKeys, RoleType, Root, Signature, Signed, Snapshot,
    Target, Targets, Timestamp,
};
use tough::sign::Sign;

use crate::error::{UpdateError, io, schema, tuf};
use crate::keys::KeyFile;
use crate::version::Version;

/// TUF specification version written in metadata.
pub const SPEC_VERSION: &str = "1.0.0";
/// Default lifetime of a root document.
pub const ROOT_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(365 * 24);
/// Default lifetime of targets metadata.
pub const TARGETS_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(90 * 24);
/// Default lifetime of snapshot metadata.
pub const SNAPSHOT_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(14 * 24);
/// Default lifetime of timestamp metadata: a feed not re-signed within it is reported frozen.
pub const TIMESTAMP_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// Keys and threshold of one role.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// The role's keys.
    pub keys: Vec<KeyFile>,
    /// How many of them must sign.
    pub threshold: u64,
}

/// What a root document names.
#[derive(Debug, Clone)]
pub struct RootSpec {
    /// The root role (signs root documents).
    pub root: RoleSpec,
    /// The targets role (signs the list of binaries).
    pub targets: RoleSpec,
    /// The snapshot role.
    pub snapshot: RoleSpec,
    /// The timestamp role; its key also signs the DHT pointer.
    pub timestamp: RoleSpec,
    /// When the root expires.
    pub expires: jiff::Timestamp,
}

/// The metadata folder of a repository.
pub fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

/// The targets folder of a repository.
pub fn targets_dir(repo: &Path) -> PathBuf {
    repo.join("targets")
}

/// The name of a target: `kino-<version>-<platform>`.
pub fn target_name(version: Version, platform: &str) -> String {
    format!("kino-{version}-{platform}")
}

/// The newest `N.root.json` in `metadata/` and its version.
pub fn latest_root(repo: &Path) -> Result<Option<(u64, PathBuf)>, UpdateError> {
    let dir = metadata_dir(repo);
    if !dir.exists() {
        return Ok(None);
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(&dir).map_err(io(format!("cannot list {}", dir.display())))? {
        let e = e.map_err(io("cannot list the metadata folder"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_suffix(".root.json")
            .and_then(|n| n.parse::<u64>().ok())
            && best.as_ref().is_none_or(|(b, _)| n > *b)
        {
            best = Some((n, e.path()));
        }
    }
    Ok(best)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, UpdateError> {
    let bytes = std::fs::read(path).map_err(io(format!("cannot read {}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| UpdateError::Usage(format!("{} is not valid metadata: {e}", path.display())))
}

/// Writes a signed role as tough does (pretty JSON and a newline), atomically.
fn write_signed<T: Serialize>(path: &Path, signed: &Signed<T>) -> Result<Vec<u8>, UpdateError> {
    let mut buf = serde_json::to_vec_pretty(signed)
        .map_err(|e| UpdateError::Usage(format!("cannot serialize metadata: {e}")))?;
    buf.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, &buf).map_err(io(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("cannot write {}", path.display())))?;
    Ok(buf)
}

fn role_keys(
    spec: &RoleSpec,
    keys: &mut HashMap<Decoded<Hex>, tough::schema::key::Key>,
) -> Result<RoleKeys, UpdateError> {
    let threshold = NonZeroU64::new(spec.threshold)
        .ok_or_else(|| UpdateError::Usage("a threshold must be at least 1".into()))?;
    if spec.threshold > spec.keys.len() as u64 {
        return Err(UpdateError::Usage(format!(
            "threshold {} is more than the {} keys given",
            spec.threshold,
            spec.keys.len()
        )));
    }
    let mut keyids = Vec::new();
    for k in &spec.keys {
        let key = k.tuf_key()?;
        let id = key.key_id().map_err(schema("computing a key id"))?;
        if keyids.contains(&id) {
            return Err(UpdateError::Usage(format!(
                "key {} is given twice for one role",
                k.path().display()
            )));
        }
        keyids.push(id.clone());
        keys.insert(id, key);
    }
    Ok(RoleKeys {
        keyids,
        threshold,
        _extra: HashMap::new(),
    })
}

/// Adds `key`'s signature over the canonical form of `signed` (replacing an older one by the
/// same key).
pub async fn add_signature<T: Role + Serialize>(
    signed: &mut Signed<T>,
    key: &KeyFile,
) -> Result<(), UpdateError> {
    let data = signed
        .signed
        .canonical_form()
        .map_err(|e| UpdateError::Usage(format!("cannot serialize metadata: {e}")))?;
    let signer = key.signer()?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig = signer
        .sign(&data, &rng)
        .await
        .map_err(|e| UpdateError::Key {
            path: key.path().to_path_buf(),
            message: format!("signing failed: {e}"),
        })?;
    let keyid = key
        .tuf_key()?
        .key_id()
        .map_err(schema("computing a key id"))?;
    signed.signatures.retain(|s| s.keyid != keyid);
    signed.signatures.push(Signature {
        keyid,
        sig: sig.into(),
    });
    Ok(())
}

/// Creates the next root document: version 1 in an empty repository, or N+1 after the newest
/// `N.root.json` (a key rotation). It is signed by every given key of its own root role; a
/// rotation must then also be signed by a threshold of the previous root's keys
/// ([`sign_root`]). Returns the new version.
pub async fn init_root(repo: &Path, spec: &RootSpec) -> Result<u64, UpdateError> {
    let dir = metadata_dir(repo);
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    std::fs::create_dir_all(targets_dir(repo)).map_err(io("cannot create the targets folder"))?;
    let version = latest_root(repo)?.map_or(1, |(n, _)| n + 1);
    let mut keys = HashMap::new();
    let mut roles = HashMap::new();
    roles.insert(RoleType::Root, role_keys(&spec.root, &mut keys)?);
    roles.insert(RoleType::Targets, role_keys(&spec.targets, &mut keys)?);
    roles.insert(RoleType::Snapshot, role_keys(&spec.snapshot, &mut keys)?);
    roles.insert(RoleType::Timestamp, role_keys(&spec.timestamp, &mut keys)?);
    let root = Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: false,
        version: NonZeroU64::new(version).unwrap_or(NonZeroU64::MIN),
        expires: spec.expires,
        keys,
        roles,
        _extra: HashMap::new(),
    };
    let sources: Vec<Box<dyn KeySource>> = spec.root.keys.iter().map(|k| k.source()).collect();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = SignedRole::new(root.clone(), &KeyHolder::Root(root), &sources, &rng)
        .await
        .map_err(tuf("signing the root"))?;
    write_signed(&dir.join(format!("{version}.root.json")), signed.signed())?;
    Ok(version)
}

/// Adds `key`'s signature to the newest root document (a threshold signature, or the old keys'
/// half of a rotation). The key must be a root key of that document or of the one before.
pub async fn sign_root(repo: &Path, key: &KeyFile) -> Result<u64, UpdateError> {
    let (n, path) = latest_root(repo)?
        .ok_or_else(|| UpdateError::Usage("no root in this repository: run init".into()))?;
    let mut root: Signed<Root> = read_json(&path)?;
    let id = key
        .tuf_key()?
        .key_id()
        .map_err(schema("computing a key id"))?;
    let mut allowed = root
        .signed
        .roles
        .get(&RoleType::Root)
        .is_some_and(|r| r.keyids.contains(&id));
    if n > 1 {
        let prev: Signed<Root> =
            read_json(&metadata_dir(repo).join(format!("{}.root.json", n - 1)))?;
        allowed |= prev
            .signed
            .roles
            .get(&RoleType::Root)
            .is_some_and(|r| r.keyids.contains(&id));
    }
    if !allowed {
        return Err(UpdateError::Usage(format!(
            "{} is not a root key of root {n} or of the root before it",
            key.path().display()
        )));
    }
    add_signature(&mut root, key).await?;
    write_signed(&path, &root)?;
    Ok(n)
}

/// A binary to publish.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The file.
    pub path: PathBuf,
    /// Its version.
    pub version: Version,
    /// Its platform (`x86_64-linux`...).
    pub platform: String,
}

/// Lifetimes and versions of a publication.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Expiry of targets.json.
    pub targets_expires: jiff::Timestamp,
    /// Expiry of snapshot.json.
    pub snapshot_expires: jiff::Timestamp,
    /// Expiry of timestamp.json.
    pub timestamp_expires: jiff::Timestamp,
    /// The version given to targets, snapshot and timestamp; by default one more than the
    /// highest in the repository.
    pub version: Option<u64>,
    /// Use this exact target name instead of `kino-<version>-<platform>` (tests of hostile
    /// names only).
    pub dangerously_target_name: Option<String>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        let now = jiff::Timestamp::now();
        PublishOptions {
            targets_expires: now + TARGETS_LIFETIME,
            snapshot_expires: now + SNAPSHOT_LIFETIME,
            timestamp_expires: now + TIMESTAMP_LIFETIME,
            version: None,
            dangerously_target_name: None,
        }
    }
}

/// What a publication produced.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Version of targets, snapshot and timestamp (the DHT pointer's seq).
    pub version: u64,
    /// Target names listed.
    pub targets: Vec<String>,
}

fn current_version(repo: &Path) -> u64 {
    let meta = metadata_dir(repo);
    let mut v = 0;
    if let Ok(t) = read_json::<Signed<Timestamp>>(&meta.join("timestamp.json")) {
        v = v.max(t.signed.version.get());
    }
    if let Ok(t) = read_json::<Signed<Snapshot>>(&meta.join("snapshot.json")) {
        v = v.max(t.signed.version.get());
    }
    if let Ok(t) = read_json::<Signed<Targets>>(&meta.join("targets.json")) {
        v = v.max(t.signed.version.get());
    }
    v
}

/// Publishes `artifacts` as the repository's new target list, signing targets, snapshot and
/// timestamp with `keys` (a threshold of each role's keys must be among them). The targets
/// folder keeps only the listed binaries.
pub async fn publish(
    repo: &Path,
    artifacts: &[Artifact],
    keys: &[KeyFile],
    opts: &PublishOptions,
) -> Result<Publication, UpdateError> {
    let (_, root_path) = latest_root(repo)?
        .ok_or_else(|| UpdateError::Usage("no root in this repository: run init".into()))?;
    if artifacts.is_empty() {
        return Err(UpdateError::Usage("nothing to publish".into()));
    }
    let version = opts.version.unwrap_or_else(|| current_version(repo) + 1);
    let version =
        NonZeroU64::new(version).ok_or_else(|| UpdateError::Usage("versions start at 1".into()))?;
    let mut editor = RepositoryEditor::new(&root_path)
        .await
        .map_err(tuf("loading the root"))?;
    let mut names = Vec::new();
    for a in artifacts {
        let name = opts
            .dangerously_target_name
            .clone()
            .unwrap_or_else(|| target_name(a.version, &a.platform));
        let mut target = Target::from_path(&a.path)
            .await
            .map_err(schema(format!("reading {}", a.path.display())))?;
        target.custom.insert(
            "kino".into(),
            serde_json::json!({"version": a.version.to_string(), "platform": a.platform}),
        );
        let tn = TargetName::new(name.clone()).map_err(tuf(format!("target name {name}")))?;
        editor
            .add_target(tn, target)
            .map_err(tuf(format!("adding {name}")))?;
        names.push((name, a.path.clone()));
    }
    editor
        .targets_version(version)
        .map_err(tuf("setting the targets version"))?
        .targets_expires(opts.targets_expires)
        .map_err(tuf("setting the targets expiry"))?
        .snapshot_version(version)
        .snapshot_expires(opts.snapshot_expires)
        .timestamp_version(version)
        .timestamp_expires(opts.timestamp_expires);
    let sources: Vec<Box<dyn KeySource>> = keys.iter().map(|k| k.source()).collect();
    let signed = editor.sign(&sources).await.map_err(tuf(
        "signing the publication (are a threshold of each role's keys given?)",
    ))?;
    let tdir = targets_dir(repo);
    std::fs::create_dir_all(&tdir).map_err(io("cannot create the targets folder"))?;
    for (name, path) in &names {
        let tn = TargetName::new(name.clone()).map_err(tuf(format!("target name {name}")))?;
        signed
            .copy_target(path, &tdir, PathExists::Replace, Some(&tn))
            .await
            .map_err(tuf(format!("copying {}", path.display())))?;
    }
    signed
        .write(metadata_dir(repo))
        .await
        .map_err(tuf("writing the metadata"))?;
    // Keep only the listed binaries in the torrent.
    let keep: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    for e in std::fs::read_dir(&tdir).map_err(io("cannot list the targets folder"))? {
        let e = e.map_err(io("cannot list the targets folder"))?;
        if !keep.contains(&e.file_name().to_string_lossy().as_ref()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(Publication {
        version: version.get(),
        targets: names.into_iter().map(|(n, _)| n).collect(),
    })
}

fn metafile(bytes: &[u8], version: NonZeroU64) -> Metafile {
    use sha2::Digest;
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: sha2::Sha256::digest(bytes).to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// Adds `key`'s signature to targets.json (for a targets threshold held by several people).
/// Snapshot and timestamp must be signed again after it.
pub async fn sign_targets(repo: &Path, key: &KeyFile) -> Result<u64, UpdateError> {
    let path = metadata_dir(repo).join("targets.json");
    let mut t: Signed<Targets> = read_json(&path)?;
    add_signature(&mut t, key).await?;
    write_signed(&path, &t)?;
    Ok(t.signed.version.get())
}

/// Signs a new snapshot (version + 1) over the current targets.json. The timestamp must be
/// signed again after it.
pub async fn sign_snapshot(
    repo: &Path,
    key: &KeyFile,
    expires: jiff::Timestamp,
) -> Result<u64, UpdateError> {
    let meta = metadata_dir(repo);
    let targets_bytes =
        std::fs::read(meta.join("targets.json")).map_err(io("cannot read targets.json"))?;
    let targets: Signed<Targets> = read_json(&meta.join("targets.json"))?;
    let old: Option<Signed<Snapshot>> = read_json(&meta.join("snapshot.json")).ok();
    let v = old.map_or(1, |s| s.signed.version.get() + 1);
    let mut snap = Snapshot::new(
        SPEC_VERSION.into(),
        NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN),
        expires,
    );
    snap.meta.insert(
        "targets.json".into(),
        metafile(&targets_bytes, targets.signed.version),
    );
    let mut signed = Signed {
        signed: snap,
        signatures: Vec::new(),
    };
    add_signature(&mut signed, key).await?;
    write_signed(&meta.join("snapshot.json"), &signed)?;
    Ok(v)
}

/// Signs a new timestamp (version + 1) over the current snapshot.json: run it well within
/// [`TIMESTAMP_LIFETIME`] so that clients do not report a frozen feed. Returns the version,
/// which is the next pointer seq.
pub async fn sign_timestamp(
    repo: &Path,
    key: &KeyFile,
    expires: jiff::Timestamp,
) -> Result<u64, UpdateError> {
    let meta = metadata_dir(repo);
    let snap_bytes =
        std::fs::read(meta.join("snapshot.json")).map_err(io("cannot read snapshot.json"))?;
    let snap: Signed<Snapshot> = read_json(&meta.join("snapshot.json"))?;
    let old: Option<Signed<Timestamp>> = read_json(&meta.join("timestamp.json")).ok();
    let v = old.map_or(1, |t| t.signed.version.get() + 1);
    let mut ts = Timestamp::new(
        SPEC_VERSION.into(),
        NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN),
        expires,
    );
    ts.meta.insert(
        "snapshot.json".into(),
        metafile(&snap_bytes, snap.signed.version),
    );
    let mut signed = Signed {
        signed: ts,
        signatures: Vec::new(),
    };
    add_signature(&mut signed, key).await?;
    write_signed(&meta.join("timestamp.json"), &signed)?;
    Ok(v)
}

/// The ed25519 public keys of `role` in a root document (the keys a DHT pointer may be published
/// under), at most `max`.
pub fn role_pointer_keys(root: &Root, role: RoleType, max: usize) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for key in root.keys(role) {
        if out.len() >= max {
            break;
        }
        if let tough::schema::key::Key::Ed25519 { keyval, .. } = key
            && let Ok(k) = <[u8; 32]>::try_from(&*keyval.public)
        {
            out.push(k);
        }
    }
    out.sort();
    out
}

/// The timestamp role's ed25519 public keys in a root document (the keys the update pointer
/// may be published under), at most `max`.
pub fn timestamp_pointer_keys(root: &Root, max: usize) -> Vec<[u8; 32]> {
    role_pointer_keys(root, RoleType::Timestamp, max)
}

/// The root role's ed25519 public keys in a root document (the keys the root pointer may be
/// published under), at most `max`.
pub fn root_pointer_keys(root: &Root, max: usize) -> Vec<[u8; 32]> {
    role_pointer_keys(root, RoleType::Root, max)
}

fn newest_root(repo: &Path) -> Result<Signed<Root>, UpdateError> {
    let (_, path) = latest_root(repo)?
        .ok_or_else(|| UpdateError::Usage("no root in this repository: run init".into()))?;
    read_json(&path)
}

/// The key among `keys` that the newest root names for the timestamp role (it signs the DHT
/// pointer), if any.
pub fn timestamp_key_among(repo: &Path, keys: &[KeyFile]) -> Result<Option<KeyFile>, UpdateError> {
    let root = newest_root(repo)?;
    let ts = timestamp_pointer_keys(&root.signed, usize::MAX);
    for k in keys {
        if ts.contains(&k.public_key()?) {
            return Ok(Some(k.clone()));
        }
    }
    Ok(None)
}

/// The newest root's version and the keys among `keys` that it names for the root role (each
/// signs a root pointer).
pub fn root_keys_among(repo: &Path, keys: &[KeyFile]) -> Result<(u64, Vec<KeyFile>), UpdateError> {
    let root = newest_root(repo)?;
    let named = root_pointer_keys(&root.signed, usize::MAX);
    let mut out = Vec::new();
    for k in keys {
        if named.contains(&k.public_key()?) {
            out.push(k.clone());
        }
    }
    Ok((root.signed.version.get(), out))
}

/// Now plus `lifetime`.
pub fn expires_in(lifetime: jiff::SignedDuration) -> jiff::Timestamp {
    jiff::Timestamp::now() + lifetime
}
