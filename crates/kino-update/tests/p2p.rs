//! Attacks and failures on the P2P path ([`UpdateSync`]): the pointer on a loopback DHT
//! testnet, the repository torrent between two engines on 127.0.0.1. Each test is named after
//! what it survives; every refusal leaves the binary, the version floor and the accepted state
//! untouched.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kino_dht::{DhtConfig, LocalTestnet, PointerAddress, PointerDht, SignedPointer};
use kino_engine::{Engine, EngineConfig, Id20, parse_infohash};
use kino_update::keys::{KeyFile, keygen};
use kino_update::p2p::{Published, UpdateSync};
use kino_update::release::{self, Artifact, PublishOptions, RoleSpec, RootSpec, metadata_dir};
use kino_update::{ClientConfig, POINTER_SALT, UpdateClient, UpdateError};

mod common;
use common::{RUNNING, copy_dir, msg, v};

/// Upper bound on any single network step (hang guard, not a performance assertion).
const LIMIT: Duration = Duration::from_secs(120);
/// Polling period of the bounded waits below (each loop runs at most `LIMIT / POLL` times).
const POLL: Duration = Duration::from_millis(50);

/// A release repository: one root key (threshold 1, also the targets key) and one online key
/// (snapshot and timestamp, which signs the DHT pointer).
struct Repo {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    repo: PathBuf,
    root_key: KeyFile,
    online: KeyFile,
}

fn spec(root: &KeyFile, online: &KeyFile) -> RootSpec {
    let role = |k: &KeyFile| RoleSpec {
        keys: vec![k.clone()],
        threshold: 1,
    };
    RootSpec {
        root: role(root),
        targets: role(root),
        snapshot: role(online),
        timestamp: role(online),
        expires: jiff::Timestamp::now() + release::ROOT_LIFETIME,
    }
}

impl Repo {
    async fn new() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let root_key = keygen(&base.join("root.der")).unwrap();
        let online = keygen(&base.join("online.der")).unwrap();
        let repo = base.join("repo");
        release::init_root(&repo, &spec(&root_key, &online))
            .await
            .unwrap();
        Repo {
            _tmp: tmp,
            base,
            repo,
            root_key,
            online,
        }
    }

    /// Signs a publication of `body` as `version`; returns the timestamp version (pointer seq).
    async fn publish_bytes(&self, version: &str, body: &[u8], keys: &[KeyFile]) -> u64 {
        let p = self.base.join(format!("art-{version}"));
        std::fs::write(&p, body).unwrap();
        let art = Artifact {
            path: p,
            version: v(version),
            platform: kino_update::current_platform(),
        };
        release::publish(&self.repo, &[art], keys, &PublishOptions::default())
            .await
            .unwrap()
            .version
    }

    async fn publish(&self, version: &str) -> u64 {
        let body = format!("#!/bin/sh\necho kino {version}\n");
        let keys = [self.root_key.clone(), self.online.clone()];
        self.publish_bytes(version, body.as_bytes(), &keys).await
    }

    fn root1(&self) -> Vec<u8> {
        std::fs::read(metadata_dir(&self.repo).join("1.root.json")).unwrap()
    }
}

/// One Kino: an engine listening on 127.0.0.1 (no librqbit DHT, no LSD), a pointer DHT node on
/// the testnet, and an update client trusting `root`.
struct Node {
    data: PathBuf,
    engine: Engine,
    dht: PointerDht,
    sync: UpdateSync,
}

async fn dht_node(bootstrap: &[String]) -> PointerDht {
    let dht = PointerDht::new(DhtConfig::loopback(bootstrap)).unwrap();
    let _ = tokio::time::timeout(LIMIT, dht.bootstrapped()).await;
    dht
}

async fn node(data: &Path, bootstrap: &[String], root: Vec<u8>, upload: Option<u32>) -> Node {
    std::fs::create_dir_all(data).unwrap();
    let mut cfg = EngineConfig::new(data.to_path_buf());
    cfg.listen = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0));
    cfg.dht = false;
    cfg.local_discovery = false;
    cfg.share.upload_limit_bps = upload;
    let store = Arc::new(kino_store::Store::open(&data.join("kino.sqlite3")).unwrap());
    let engine = Engine::start(cfg, store).await.unwrap();
    let dht = dht_node(bootstrap).await;
    let client = UpdateClient::new(ClientConfig::new(
        root,
        data.join("updates").join("client"),
        v("0.1.0"),
    ));
    let sync = UpdateSync::new(engine.clone(), dht.clone(), client, data);
    Node {
        data: data.to_path_buf(),
        engine,
        dht,
        sync,
    }
}

impl Node {
    /// One fetch of the update feed, bounded by [`LIMIT`]; it must succeed.
    async fn fetch(&self) -> kino_update::p2p::Fetched {
        tokio::time::timeout(LIMIT, self.sync.fetch())
            .await
            .unwrap()
            .unwrap()
    }

    fn client(&self) -> &UpdateClient {
        self.sync.client()
    }

    fn state_bytes(&self) -> Vec<u8> {
        std::fs::read(self.data.join("updates/client/state.json")).unwrap_or_default()
    }

    fn torrent_folders(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.data.join("updates/torrents"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Awaits a fetch (bounded by [`LIMIT`]) that must be refused; returns what it says.
async fn refusal(
    fetch: impl std::future::Future<Output = Result<kino_update::p2p::Fetched, UpdateError>>,
) -> String {
    let err = tokio::time::timeout(LIMIT, fetch)
        .await
        .unwrap()
        .expect_err("the fetch was accepted");
    let m = msg(&err);
    assert!(err.is_refusal(), "not a refusal: {m}");
    m
}

fn ih(hex: &str) -> Id20 {
    parse_infohash(hex).unwrap()
}

/// A client accepted pointer seq 2 (and installed its release); a replaying node then offers the
/// older, validly signed seq 1 item (pointing at the older, still seeded update torrent).
///
/// On the live DHT the storage nodes keep seq 2 (a resolve still finds 2). On a DHT that only
/// holds the old item (a fresh testnet: the replayer controls every node the restarted client
/// reaches, and the client's in-memory pointer cache is gone), Kino's own check refuses it:
/// the error names both seqs, nothing is downloaded, installed or recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pointer_replay_old_seq() {
    let fx = Repo::new().await;
    let net = LocalTestnet::start(12).unwrap();
    let publisher = node(
        &fx.base.join("publisher"),
        net.bootstrap(),
        fx.root1(),
        None,
    )
    .await;

    // Publication 1 (0.2.0, seq 1); the replayer keeps its signed item.
    assert_eq!(fx.publish("0.2.0").await, 1);
    let p1 = publisher.sync.publish(&fx.repo, &fx.online).await.unwrap();
    assert_eq!(p1.seq, 1);
    let address = PointerAddress::new(fx.online.public_key().unwrap(), Some(POINTER_SALT)).unwrap();
    let old: SignedPointer = publisher.dht.cache().get(&address).unwrap();
    assert_eq!(old.seq(), 1);
    assert_eq!(hex::encode(old.infohash()), p1.infohash);

    // Publication 2 (0.3.0, seq 2), fetched and installed by the client.
    assert_eq!(fx.publish("0.3.0").await, 2);
    let p2 = publisher.sync.publish(&fx.repo, &fx.online).await.unwrap();
    assert_eq!(p2.seq, 2);
    assert_ne!(p1.infohash, p2.infohash);

    let user = fx.base.join("user");
    let client = node(&user, net.bootstrap(), fx.root1(), None).await;
    let bin_dir = fx.base.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let binary = bin_dir.join("kino");
    std::fs::write(&binary, RUNNING).unwrap();
    let fetched = client.fetch().await;
    assert_eq!(fetched.seq, 2);
    let rel = fetched.release.unwrap();
    assert_eq!(rel.version, v("0.3.0"));
    let staged = client.client().stage(&rel, &binary).await.unwrap();
    client.client().install(staged, &binary).unwrap();
    let installed = std::fs::read(&binary).unwrap();
    assert!(String::from_utf8_lossy(&installed).contains("kino 0.3.0"));
    let floor = client.client().floor().unwrap();
    assert_eq!(floor, v("0.3.0"));
    let state = client.state_bytes();
    let st = client.client().state().unwrap();
    assert_eq!(
        st.pointer_seq
            .get(&hex::encode(fx.online.public_key().unwrap())),
        Some(&2)
    );
    let folders = client.torrent_folders();
    assert_eq!(folders, vec![p2.infohash.clone()]);

    // Replay on the live DHT: the storage nodes hold seq 2 and keep it.
    let replayer = dht_node(net.bootstrap()).await;
    let _ = replayer.publish_signed(&old).await; // refused or ignored by nodes holding seq 2
    let observer = dht_node(net.bootstrap()).await;
    let seen = observer
        .resolve(address.public_key(), Some(POINTER_SALT))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.seq(), 2, "the live DHT followed the replayed seq 1");

    // Replay on a DHT that holds only the old item; the client restarts into it.
    let net2 = LocalTestnet::start(8).unwrap();
    let replayer2 = dht_node(net2.bootstrap()).await;
    let put = replayer2.publish_signed(&old).await.unwrap();
    assert!(put.stored_at > 0);
    let dht2 = dht_node(net2.bootstrap()).await;
    let restarted = UpdateSync::new(
        client.engine.clone(),
        dht2,
        UpdateClient::new(client.client().config().clone()),
        &user,
    );
    let m = refusal(restarted.fetch()).await;
    assert!(
        m.contains("seq 1") && m.contains("seq 2") && m.contains("replay"),
        "{m}"
    );

    // Nothing changed: binary, floor, accepted state, torrents.
    assert_eq!(std::fs::read(&binary).unwrap(), installed, "binary changed");
    assert_eq!(client.client().floor().unwrap(), floor, "floor changed");
    assert_eq!(client.state_bytes(), state, "state changed");
    assert_eq!(client.torrent_folders(), folders, "a torrent was added");
    assert!(
        client.engine.torrent(&ih(&p1.infohash)).is_none(),
        "the old update torrent was fetched"
    );
    let mut leftovers: Vec<_> = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    leftovers.sort();
    assert_eq!(leftovers, vec!["kino", "kino.previous"]);

    client.engine.shutdown().await;
    publisher.engine.shutdown().await;
}

/// Pseudo-random bytes (xorshift): a zero-filled artifact would match the zero-filled files a
/// download preallocates, and "resume" would prove nothing.
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Polls `f` every [`POLL`], at most `LIMIT / POLL` times, until it returns `Some`.
async fn poll_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..(LIMIT.as_millis() / POLL.as_millis()) {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("gave up waiting for {what}");
}

/// A 6 MiB update, served by a publisher throttled to 1 MiB/s: the client is shut down once a
/// quarter of the torrent is verified, then restarted on the same data folder. The second run
/// completes, tough and Kino verify it, and the publisher uploads only what was missing (less
/// than the torrent minus what the first run had verified, plus two pieces of slack for blocks
/// in flight at the cut): verified pieces are not fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_download_resumes() {
    const ARTIFACT: usize = 6 * 1024 * 1024;
    const RATE: u32 = 1024 * 1024;
    let fx = Repo::new().await;
    let net = LocalTestnet::start(12).unwrap();
    let publisher = node(
        &fx.base.join("publisher"),
        net.bootstrap(),
        fx.root1(),
        Some(RATE),
    )
    .await;
    let mut body = b"#!/bin/sh\necho kino 0.2.0\nexit 0\n".to_vec();
    body.extend(noise(ARTIFACT, 0x9e37_79b9_7f4a_7c15));
    let keys = [fx.root_key.clone(), fx.online.clone()];
    assert_eq!(fx.publish_bytes("0.2.0", &body, &keys).await, 1);
    let published = publisher.sync.publish(&fx.repo, &fx.online).await.unwrap();
    let hash = ih(&published.infohash);
    let piece = publisher.engine.torrent(&hash).unwrap().info().piece_length as u64;

    // First run: stop after a quarter of the torrent is verified.
    let user = fx.base.join("user");
    let first = node(&user, net.bootstrap(), fx.root1(), None).await;
    let sync = first.sync.clone();
    let fetch = tokio::spawn(async move { sync.fetch().await });
    let (have_first, total) = poll_until("a quarter of the update torrent", || {
        let st = first.engine.transfer_status(&hash)?;
        assert!(
            !st.finished,
            "the download finished before it could be interrupted"
        );
        (st.total_bytes > 0 && st.have_bytes >= st.total_bytes / 4)
            .then_some((st.have_bytes, st.total_bytes))
    })
    .await;
    assert!(total > ARTIFACT as u64);
    fetch.abort();
    assert!(fetch.await.unwrap_err().is_cancelled());
    let have_first = first
        .engine
        .transfer_status(&hash)
        .map_or(have_first, |s| s.have_bytes.max(have_first));
    assert!(have_first < total, "nothing left to resume");
    first.engine.shutdown().await;
    drop(first);
    // The publisher sees the peer gone; what it uploaded so far belongs to the first run.
    let uploaded_first = poll_until("the publisher to drop the stopped client", || {
        let st = publisher.engine.transfer_status(&hash)?;
        (st.peers == 0).then_some(st.uploaded_total)
    })
    .await;
    assert!(
        uploaded_first >= have_first,
        "{uploaded_first} < {have_first}"
    );

    // Second run, same data folder: completes and verifies.
    let second = node(&user, net.bootstrap(), fx.root1(), None).await;
    let fetched = second.fetch().await;
    assert_eq!(fetched.seq, 1);
    let rel = fetched.release.unwrap();
    assert_eq!(rel.version, v("0.2.0"));
    assert_eq!(rel.length, body.len() as u64);
    let st = second.engine.transfer_status(&hash).unwrap();
    assert!(st.finished && st.have_bytes == total);
    let uploaded_second = publisher
        .engine
        .transfer_status(&hash)
        .unwrap()
        .uploaded_total
        - uploaded_first;
    assert!(
        uploaded_second <= total - have_first + 2 * piece,
        "second run fetched {uploaded_second} bytes; {have_first} of {total} were verified before \
         the interruption (piece {piece})"
    );
    eprintln!(
        "total {total} piece {piece} have_first {have_first} uploaded_first {uploaded_first} uploaded_second {uploaded_second}"
    );
    assert!(uploaded_second < total);

    // The resumed bytes are the signed ones: staging checks length and SHA-256 again.
    let bin_dir = fx.base.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let binary = bin_dir.join("kino");
    std::fs::write(&binary, RUNNING).unwrap();
    let staged = second.client().stage(&rel, &binary).await.unwrap();
    assert_eq!(std::fs::read(&staged.path).unwrap(), body);
    let done = second.client().install(staged, &binary).unwrap();
    assert_eq!(done.version, v("0.2.0"));
    assert_eq!(std::fs::read(&binary).unwrap(), body);

    second.engine.shutdown().await;
    publisher.engine.shutdown().await;
}

/// A publisher that published 0.2.0 (seq 1) and a client (data folder `user`) that fetched
/// and accepted it, on a fresh testnet.
async fn client_holding_publication_1() -> (Repo, LocalTestnet, Node, Node, Published) {
    let fx = Repo::new().await;
    let net = LocalTestnet::start(12).unwrap();
    let publisher = node(
        &fx.base.join("publisher"),
        net.bootstrap(),
        fx.root1(),
        None,
    )
    .await;
    assert_eq!(fx.publish("0.2.0").await, 1);
    let p1 = publisher.sync.publish(&fx.repo, &fx.online).await.unwrap();
    assert_eq!(p1.seq, 1);
    let client = node(&fx.base.join("user"), net.bootstrap(), fx.root1(), None).await;
    let f = client.fetch().await;
    assert_eq!(f.seq, 1);
    (fx, net, publisher, client, p1)
}

/// The online key (snapshot + timestamp, which signs the pointer) leaks. The attacker signs a
/// timestamp at version 2^63-1 over publication 1 and puts it under the old key at seq
/// 2^63-1: a client on root 1 verifies it (every signature is valid) and is pinned there. The
/// release managers rotate root (root 2: new online key) and publish 0.3.0 under the new key.
///
/// Under root 1's timestamp key seq 2^63-1 can never be outbid, so a publication under the new
/// key alone leaves a root-1 client pinned (asserted below). The release managers then publish
/// with the root key too: the root pointer (salt `kino-update-root`, seq 2, under root 1's
/// root key) names the torrent holding `2.root.json`. The client, with no out-of-band root,
/// follows it, tough walks the chain (root 2 signed by root 1's threshold and its own) and
/// drops the fast-forwarded timestamp (keys rotated), the client looks up the new timestamp
/// key, and it installs 0.3.0 over the DHT and the swarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compromised_pointer_max_seq_replaced_by_rotation() {
    let (fx, net, publisher, client, _) = client_holding_publication_1().await;

    // The attacker: publication 1 with a timestamp at 2^63-1, signed by the leaked online key.
    let evil = fx.base.join("evil");
    for sub in ["metadata", "targets"] {
        copy_dir(&fx.repo.join(sub), &evil.join(sub));
    }
    let ts_path = metadata_dir(&evil).join("timestamp.json");
    let mut ts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ts_path).unwrap()).unwrap();
    ts["signed"]["version"] = serde_json::json!(i64::MAX as u64 - 1);
    std::fs::write(&ts_path, serde_json::to_vec(&ts).unwrap()).unwrap();
    let max = release::sign_timestamp(
        &evil,
        &fx.online,
        release::expires_in(release::TIMESTAMP_LIFETIME),
    )
    .await
    .unwrap();
    assert_eq!(max, i64::MAX as u64);
    let attacker = node(&fx.base.join("attacker"), net.bootstrap(), fx.root1(), None).await;
    let pe = attacker.sync.publish(&evil, &fx.online).await.unwrap();
    assert_eq!(pe.seq, i64::MAX);

    // A client on root 1 follows it: every signature checks out.
    let f = client.fetch().await;
    assert_eq!(f.seq, i64::MAX);
    assert_eq!(f.release.unwrap().version, v("0.2.0"));

    // Rotation: root 2 names a new online key (signed by root 1's and root 2's thresholds), and
    // 0.3.0 is published under it.
    let online2 = keygen(&fx.base.join("online2.der")).unwrap();
    assert_eq!(
        release::init_root(&fx.repo, &spec(&fx.root_key, &online2))
            .await
            .unwrap(),
        2
    );
    release::sign_root(&fx.repo, &fx.root_key).await.unwrap();
    let keys = [fx.root_key.clone(), online2.clone()];
    let seq2 = fx
        .publish_bytes("0.3.0", b"#!/bin/sh\necho kino 0.3.0\n", &keys)
        .await;
    let p2 = publisher.sync.publish(&fx.repo, &online2).await.unwrap();
    assert_eq!(p2.seq as u64, seq2);
    assert_eq!((p2.root_pointers, p2.root_version), (0, 2));
    // The old address cannot be reclaimed: no seq is above 2^63-1 (an equal seq with another
    // value is a tie that resolvers break by the value's bytes, which the attacker can grind).
    // Without a root pointer the root-1 client still looks up only the old timestamp key and
    // stays pinned on the attacker's publication; it never sees root 2 or 0.3.0.
    let f = client.fetch().await;
    assert_eq!(f.seq, i64::MAX);
    assert_eq!(f.release.unwrap().version, v("0.2.0"));
    assert_eq!(
        client
            .client()
            .trusted_root_parsed()
            .unwrap()
            .signed
            .version
            .get(),
        1
    );

    assert!(client.client().state().unwrap().root_pointer_seq.is_empty());

    // The same publication, now also under the root key (root pointer, seq = root version 2).
    let keys = [fx.root_key.clone(), online2.clone()];
    let p2r = publisher
        .sync
        .publish_with_keys(&fx.repo, &online2, &keys)
        .await
        .unwrap();
    assert_eq!(
        (p2r.seq, p2r.root_pointers, p2r.root_version),
        (p2.seq, 1, 2)
    );
    assert_eq!(p2r.infohash, p2.infohash);

    // The root-1 client, given nothing out of band, follows the root pointer to root 2, then
    // looks up the new timestamp key and installs 0.3.0 over the DHT and the swarm.
    let f = client.fetch().await;
    assert_eq!(f.seq as u64, seq2);
    let rel = f.release.unwrap();
    assert_eq!(rel.version, v("0.3.0"));
    assert_eq!(rel.root_version, 2);
    assert_eq!(
        client
            .client()
            .trusted_root_parsed()
            .unwrap()
            .signed
            .version
            .get(),
        2
    );
    let st = client.client().state().unwrap();
    assert_eq!(st.infohash.as_deref(), Some(p2.infohash.as_str()));
    assert_eq!(
        st.root_pointer_seq
            .get(&hex::encode(fx.root_key.public_key().unwrap())),
        Some(&2)
    );
    // The followed root pointer is held and republished unchanged, like the timestamp pointer.
    let held = kino_dht::SignedPointer::from_bytes(
        &hex::decode(st.root_pointer.as_deref().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(held.seq(), 2);
    assert_eq!(hex::encode(held.infohash()), p2.infohash);
    assert!(
        tokio::time::timeout(LIMIT, client.sync.republish())
            .await
            .unwrap()
            .unwrap()
    );
    assert_eq!(client.torrent_folders(), vec![p2.infohash.clone()]);
    assert_eq!(
        st.pointer_seq
            .get(&hex::encode(online2.public_key().unwrap())),
        Some(&(seq2 as i64))
    );
    let bin_dir = fx.base.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let binary = bin_dir.join("kino");
    std::fs::write(&binary, RUNNING).unwrap();
    let staged = client.client().stage(&rel, &binary).await.unwrap();
    client.client().install(staged, &binary).unwrap();
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        b"#!/bin/sh\necho kino 0.3.0\n"
    );

    client.engine.shutdown().await;
    attacker.engine.shutdown().await;
    publisher.engine.shutdown().await;
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Issue 13 (the update copy of catalogs' D2): the timestamp key's genuinely signed pointer
/// says seq 2 but names the accepted torrent, whose verified timestamp is version 1. The fetch
/// is refused with that reason, and the refusal touches nothing held: before, it forgot the
/// accepted torrent and deleted its folder while `state.json` still named it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_pointer_naming_the_accepted_torrent_keeps_it() {
    let (fx, _net, publisher, client, p1) = client_holding_publication_1().await;
    let user = client.data.clone();
    let accepted = ih(&p1.infohash);
    let folder = user.join("updates/torrents").join(&p1.infohash);
    let files = tree(&folder);
    assert!(
        files.keys().any(|p| p.ends_with("timestamp.json")),
        "{files:?}"
    );
    let state = client.state_bytes();

    // Seq 2 under the timestamp key, naming the torrent of seq 1.
    let key = fx.online.dht_signing_key().unwrap();
    tokio::time::timeout(
        LIMIT,
        publisher
            .dht
            .publish(&key, Some(POINTER_SALT), accepted.0, 2, None),
    )
    .await
    .unwrap()
    .unwrap();
    let m = refusal(client.sync.fetch()).await;
    assert!(
        m.contains("the pointer says seq 2 but the verified timestamp is version 1"),
        "{m}"
    );

    assert!(
        client.engine.torrent(&accepted).is_some(),
        "the accepted update torrent was forgotten"
    );
    assert_eq!(
        tree(&folder),
        files,
        "the accepted torrent's folder changed"
    );
    assert_eq!(client.torrent_folders(), vec![p1.infohash.clone()]);
    assert_eq!(client.state_bytes(), state, "state changed");

    client.engine.shutdown().await;
    publisher.engine.shutdown().await;
}
