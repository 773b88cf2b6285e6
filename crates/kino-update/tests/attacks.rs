//! Each TUF attack against the client, with tough's checks and Kino's own. Every refusal must
//! leave the "running binary" and the version floor untouched.

use std::path::PathBuf;

use kino_update::keys::{KeyFile, keygen};
use kino_update::release::{
    self, Artifact, PublishOptions, RoleSpec, RootSpec, metadata_dir, targets_dir,
};
use kino_update::{ClientConfig, UpdateClient, UpdateError};

mod common;
use common::{RUNNING, copy_dir, msg, v};

struct Fx {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    repo: PathBuf,
    root_keys: Vec<KeyFile>,
    targets_keys: Vec<KeyFile>,
    online: KeyFile,
    binary: PathBuf,
}

fn spec(root: &[KeyFile], targets: &[KeyFile], online: &KeyFile, m: u64) -> RootSpec {
    RootSpec {
        root: RoleSpec {
            keys: root.to_vec(),
            threshold: m,
        },
        targets: RoleSpec {
            keys: targets.to_vec(),
            threshold: m,
        },
        snapshot: RoleSpec {
            keys: vec![online.clone()],
            threshold: 1,
        },
        timestamp: RoleSpec {
            keys: vec![online.clone()],
            threshold: 1,
        },
        expires: jiff::Timestamp::now() + release::ROOT_LIFETIME,
    }
}

impl Fx {
    /// A repository with 2 root keys and 2 targets keys (threshold 2) and one online key.
    async fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let key = |n: &str| keygen(&base.join(n)).unwrap();
        let root_keys = vec![key("root1.der"), key("root2.der")];
        let targets_keys = vec![key("targets1.der"), key("targets2.der")];
        let online = key("online.der");
        let repo = base.join("repo");
        release::init_root(&repo, &spec(&root_keys, &targets_keys, &online, 2))
            .await
            .unwrap();
        let bin_dir = base.join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let binary = bin_dir.join("kino");
        std::fs::write(&binary, RUNNING).unwrap();
        Fx {
            _tmp: tmp,
            base,
            repo,
            root_keys,
            targets_keys,
            online,
            binary,
        }
    }

    fn all_keys(&self) -> Vec<KeyFile> {
        let mut k = self.targets_keys.clone();
        k.push(self.online.clone());
        k
    }

    fn artifact(&self, version: &str, body: &str) -> Artifact {
        let p = self.base.join(format!("art-{version}-{}", body.len()));
        std::fs::write(&p, format!("#!/bin/sh\necho kino {version} {body}\n")).unwrap();
        Artifact {
            path: p,
            version: v(version),
            platform: kino_update::current_platform(),
        }
    }

    async fn publish(&self, version: &str) -> u64 {
        self.publish_with(version, &PublishOptions::default()).await
    }

    async fn publish_with(&self, version: &str, opts: &PublishOptions) -> u64 {
        release::publish(
            &self.repo,
            &[self.artifact(version, "")],
            &self.all_keys(),
            opts,
        )
        .await
        .unwrap()
        .version
    }

    fn root1(&self) -> Vec<u8> {
        std::fs::read(metadata_dir(&self.repo).join("1.root.json")).unwrap()
    }

    fn client(&self) -> UpdateClient {
        UpdateClient::new(ClientConfig::new(
            self.root1(),
            self.base.join("state"),
            v("0.1.0"),
        ))
    }

    fn target_file(&self, version: &str) -> PathBuf {
        targets_dir(&self.repo).join(release::target_name(
            v(version),
            &kino_update::current_platform(),
        ))
    }

    /// Applies and expects a refusal; checks nothing changed.
    async fn refused(&self, client: &UpdateClient) -> UpdateError {
        let floor = client.floor().unwrap();
        let err = client.apply(&self.repo, &self.binary).await.unwrap_err();
        assert_eq!(
            std::fs::read(&self.binary).unwrap(),
            RUNNING,
            "binary changed"
        );
        assert_eq!(client.floor().unwrap(), floor, "floor changed");
        let leftovers: Vec<_> = std::fs::read_dir(self.binary.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("kino")],
            "files left beside the binary"
        );
        err
    }
}

#[tokio::test]
async fn valid_update_installs_and_rolls_back() {
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let client = fx.client();
    let rel = client.check(&fx.repo).await.unwrap();
    assert_eq!(rel.version, v("0.2.0"));
    assert!(
        rel.explain().contains("signed by 2 of its 2 keys"),
        "{}",
        rel.explain()
    );
    let installed = client.apply(&fx.repo, &fx.binary).await.unwrap();
    assert_eq!(installed.version, v("0.2.0"));
    let now = std::fs::read_to_string(&fx.binary).unwrap();
    assert!(now.contains("kino 0.2.0"));
    assert_eq!(std::fs::read(&installed.previous).unwrap(), RUNNING);
    assert_eq!(client.floor().unwrap(), v("0.2.0"));
    let out = std::process::Command::new(&fx.binary).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kino 0.2.0"));
    // Rollback restores the kept binary; the floor stays.
    kino_update::client::rollback(&fx.binary).unwrap();
    assert_eq!(std::fs::read(&fx.binary).unwrap(), RUNNING);
    assert_eq!(client.floor().unwrap(), v("0.2.0"));
}

#[tokio::test]
async fn tampered_artifact() {
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let f = fx.target_file("0.2.0");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[12] ^= 1; // same length, different content
    std::fs::write(&f, bytes).unwrap();
    let err = fx.refused(&fx.client()).await;
    assert!(err.is_refusal(), "{}", msg(&err));
    assert!(msg(&err).contains("failed verification"), "{}", msg(&err));
}

#[tokio::test]
async fn failed_staging_leaves_running_binary_intact() {
    // Staging fails midway (the binary in the swarm is corrupt at its end): the partial file
    // is removed and the running binary was never touched.
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let f = fx.target_file("0.2.0");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    std::fs::write(&f, bytes).unwrap();
    let client = fx.client();
    let rel = client.check(&fx.repo).await.unwrap();
    assert!(client.stage(&rel, &fx.binary).await.is_err());
    fx.refused(&client).await;
}

#[tokio::test]
async fn endless_data_artifact_larger_than_declared() {
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let f = fx.target_file("0.2.0");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend(std::iter::repeat_n(b'A', 4 * 1024 * 1024));
    std::fs::write(&f, bytes).unwrap();
    let err = fx.refused(&fx.client()).await;
    assert!(err.is_refusal(), "{}", msg(&err));
    assert!(msg(&err).to_lowercase().contains("max"), "{}", msg(&err));
}

#[tokio::test]
async fn wrong_key() {
    // An attacker signs a publication with keys of its own root, then serves it beside the
    // real root.
    let fx = Fx::new().await;
    let evil = Fx::new().await;
    evil.publish("0.9.0").await;
    for f in ["targets.json", "snapshot.json", "timestamp.json"] {
        std::fs::copy(
            metadata_dir(&evil.repo).join(f),
            metadata_dir(&fx.repo).join(f),
        )
        .unwrap();
    }
    copy_dir(&targets_dir(&evil.repo), &targets_dir(&fx.repo));
    let err = fx.refused(&fx.client()).await;
    assert!(err.is_refusal(), "{}", msg(&err));
    assert!(msg(&err).contains("threshold"), "{}", msg(&err));
}

#[tokio::test]
async fn signatures_below_threshold() {
    // targets needs 2 of 2 signatures: one is removed; snapshot and timestamp are re-signed
    // over it properly, so only the threshold is wrong.
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let p = metadata_dir(&fx.repo).join("targets.json");
    let mut t: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    t["signatures"].as_array_mut().unwrap().truncate(1);
    std::fs::write(&p, serde_json::to_vec_pretty(&t).unwrap()).unwrap();
    let exp = jiff::Timestamp::now() + release::SNAPSHOT_LIFETIME;
    release::sign_snapshot(&fx.repo, &fx.online, exp)
        .await
        .unwrap();
    release::sign_timestamp(&fx.repo, &fx.online, exp)
        .await
        .unwrap();
    let err = fx.refused(&fx.client()).await;
    assert!(msg(&err).contains("threshold"), "{}", msg(&err));
    // Adding the second holder's signature (release sign --role targets) makes it valid.
    for k in &fx.targets_keys {
        release::sign_targets(&fx.repo, k).await.unwrap();
    }
    release::sign_snapshot(&fx.repo, &fx.online, exp)
        .await
        .unwrap();
    release::sign_timestamp(&fx.repo, &fx.online, exp)
        .await
        .unwrap();
    assert_eq!(
        fx.client().check(&fx.repo).await.unwrap().version,
        v("0.2.0")
    );
}

#[tokio::test]
async fn root_rotation_below_threshold() {
    // A new root signed by only one of the two old root keys is refused.
    let fx = Fx::new().await;
    let new_key = keygen(&fx.base.join("root3.der")).unwrap();
    let rk = vec![fx.root_keys[0].clone(), new_key];
    release::init_root(&fx.repo, &spec(&rk, &fx.targets_keys, &fx.online, 2))
        .await
        .unwrap();
    release::sign_root(&fx.repo, &fx.root_keys[0])
        .await
        .unwrap();
    fx.publish("0.2.0").await;
    let err = fx.refused(&fx.client()).await;
    assert!(msg(&err).contains("root"), "{}", msg(&err));
    assert!(msg(&err).contains("threshold"), "{}", msg(&err));
}

#[tokio::test]
async fn lower_version_rollback() {
    let fx = Fx::new().await;
    fx.publish("0.0.9").await;
    let err = fx.refused(&fx.client()).await;
    assert!(msg(&err).contains("older"), "{}", msg(&err));
    // And after installing 0.3.0, a later 0.2.0 is refused even after a binary rollback.
    fx.publish("0.3.0").await;
    let client = fx.client();
    client.apply(&fx.repo, &fx.binary).await.unwrap();
    kino_update::client::rollback(&fx.binary).unwrap();
    fx.publish("0.2.0").await;
    let err = fx.refused(&client).await;
    assert!(msg(&err).contains("older than 0.3.0"), "{}", msg(&err));
}

#[tokio::test]
async fn metadata_rollback_old_publication() {
    // Once publication 2 was seen, serving publication 1 again is refused by tough's datastore.
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let old = fx.base.join("old");
    copy_dir(&fx.repo, &old);
    fx.publish("0.3.0").await;
    let client = fx.client();
    assert_eq!(client.check(&fx.repo).await.unwrap().version, v("0.3.0"));
    let floor = client.floor().unwrap();
    let err = client.apply(&old, &fx.binary).await.unwrap_err();
    assert!(
        msg(&err).contains("older") || msg(&err).contains("version"),
        "{}",
        msg(&err)
    );
    assert_eq!(std::fs::read(&fx.binary).unwrap(), RUNNING);
    assert_eq!(client.floor().unwrap(), floor);
}

#[tokio::test]
async fn expired_timestamp_freeze() {
    let fx = Fx::new().await;
    let opts = PublishOptions {
        timestamp_expires: jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60),
        ..PublishOptions::default()
    };
    fx.publish_with("0.2.0", &opts).await;
    let err = fx.refused(&fx.client()).await;
    assert!(msg(&err).contains("xpired"), "{}", msg(&err));
}

#[tokio::test]
async fn mix_and_match_snapshot_targets_from_different_publications() {
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let old = fx.base.join("old");
    copy_dir(&fx.repo, &old);
    fx.publish("0.3.0").await;
    // Current timestamp and snapshot, but the targets.json (and binary) of publication 1.
    std::fs::copy(
        metadata_dir(&old).join("targets.json"),
        metadata_dir(&fx.repo).join("targets.json"),
    )
    .unwrap();
    copy_dir(&targets_dir(&old), &targets_dir(&fx.repo));
    let err = fx.refused(&fx.client()).await;
    assert!(err.is_refusal(), "{}", msg(&err));
    // And the old snapshot with the new timestamp.
    let fx2 = Fx::new().await;
    fx2.publish("0.2.0").await;
    let old2 = fx2.base.join("old");
    copy_dir(&fx2.repo, &old2);
    fx2.publish("0.3.0").await;
    std::fs::copy(
        metadata_dir(&old2).join("snapshot.json"),
        metadata_dir(&fx2.repo).join("snapshot.json"),
    )
    .unwrap();
    let err = fx2.refused(&fx2.client()).await;
    assert!(err.is_refusal(), "{}", msg(&err));
}

#[tokio::test]
async fn key_revoked_by_root_rotation() {
    // Root 2 replaces targets key 2 (compromised) with a new one, cross-signed by old and new
    // root keys. A client that saw root 2 refuses targets signed by the revoked key, even when
    // the repository withholds 2.root.json.
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let new_targets = keygen(&fx.base.join("targets3.der")).unwrap();
    let tk = vec![fx.targets_keys[0].clone(), new_targets.clone()];
    release::init_root(&fx.repo, &spec(&fx.root_keys, &tk, &fx.online, 2))
        .await
        .unwrap();
    for k in &fx.root_keys {
        release::sign_root(&fx.repo, k).await.unwrap();
    }
    let keys = vec![tk[0].clone(), tk[1].clone(), fx.online.clone()];
    release::publish(
        &fx.repo,
        &[fx.artifact("0.3.0", "")],
        &keys,
        &PublishOptions::default(),
    )
    .await
    .unwrap();
    let client = fx.client();
    let rel = client.check(&fx.repo).await.unwrap();
    assert_eq!(rel.root_version, 2);
    // The attacker holds the revoked key and the online key, and serves root 1 only.
    let evil = fx.base.join("evil");
    copy_dir(&fx.repo, &evil);
    std::fs::remove_file(metadata_dir(&evil).join("2.root.json")).unwrap();
    let evil_keys = vec![
        fx.targets_keys[0].clone(),
        fx.targets_keys[1].clone(),
        fx.online.clone(),
    ];
    let evil_art = fx.artifact("0.9.0", "evil");
    release::publish(&evil, &[evil_art], &evil_keys, &PublishOptions::default())
        .await
        .unwrap();
    let err = client.apply(&evil, &fx.binary).await.unwrap_err();
    assert!(msg(&err).contains("threshold"), "{}", msg(&err));
    assert_eq!(std::fs::read(&fx.binary).unwrap(), RUNNING);
}

#[tokio::test]
async fn malformed_metadata() {
    let fx = Fx::new().await;
    fx.publish("0.2.0").await;
    let p = metadata_dir(&fx.repo).join("timestamp.json");
    std::fs::write(
        &p,
        b"{\"signed\": {\"_type\": \"timestamp\", \"version\": \"x\"",
    )
    .unwrap();
    let err = fx.refused(&fx.client()).await;
    assert!(err.is_refusal(), "{}", msg(&err));
    // An oversized timestamp is refused by the cap before being parsed.
    std::fs::write(&p, vec![b' '; 1024 * 1024]).unwrap();
    let err = fx.refused(&fx.client()).await;
    assert!(msg(&err).to_lowercase().contains("max"), "{}", msg(&err));
}

#[tokio::test]
async fn artifact_path_climbing_out_of_staging_folder() {
    let fx = Fx::new().await;
    let name = format!(
        "../../{}",
        release::target_name(v("0.2.0"), &kino_update::current_platform())
    );
    let opts = PublishOptions {
        dangerously_target_name: Some(name),
        ..PublishOptions::default()
    };
    fx.publish_with("0.2.0", &opts).await;
    let err = fx.refused(&fx.client()).await;
    assert!(msg(&err).contains("climb"), "{}", msg(&err));
}

#[tokio::test]
async fn release_tool_refuses_bad_thresholds_and_foreign_root_keys() {
    let fx = Fx::new().await;
    let err = release::init_root(
        &fx.repo,
        &spec(&fx.root_keys, &fx.targets_keys, &fx.online, 3),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("threshold 3"), "{err}");
    let stranger = keygen(&fx.base.join("stranger.der")).unwrap();
    assert!(release::sign_root(&fx.repo, &stranger).await.is_err());
    assert!(KeyFile::load(&fx.repo.join("metadata/1.root.json")).is_err());
}
