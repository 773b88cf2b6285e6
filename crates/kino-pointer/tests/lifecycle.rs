//! The pointer path end to end on 127.0.0.1: a publisher and a subscriber engine, a loopback
//! DHT testnet. Each test is named after the rule it protects: a refusal keeps nothing and
//! leaves what is held as it was; an acceptance swaps the old version out; a replay is refused
//! before any download; a torrent nobody seeds leaves nothing behind.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kino_dht::{DhtConfig, LocalTestnet, PointerDht, SigningKey};
use kino_engine::{Engine, EngineConfig, EngineError, Id20, infohash_hex};
use kino_pointer::{Caps, FetchError, Offer, PointerError, Pointers, Published, Shelf, Stage};

/// Upper bound on any single network step (a hang guard, not a performance assertion).
const LIMIT: Duration = Duration::from_secs(120);
const SALT: &[u8] = b"kino-pointer-test";
const CAPS: Caps = Caps {
    max_bytes: 1024 * 1024,
    timeout: Duration::from_secs(60),
    what: "test feed",
    resume: false,
};

struct Node {
    data: PathBuf,
    engine: Engine,
    pointers: Pointers,
}

async fn node(data: &Path, testnet: &LocalTestnet, tune: impl FnOnce(&mut EngineConfig)) -> Node {
    std::fs::create_dir_all(data).unwrap();
    let mut cfg = EngineConfig::new(data.to_path_buf());
    cfg.listen = Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0));
    cfg.dht = false;
    cfg.local_discovery = false;
    tune(&mut cfg);
    let store = Arc::new(kino_store::Store::open(&data.join("kino.sqlite3")).unwrap());
    let engine = Engine::start(cfg, store).await.unwrap();
    let dht = PointerDht::new(DhtConfig::loopback(testnet.bootstrap())).unwrap();
    let _ = tokio::time::timeout(LIMIT, dht.bootstrapped()).await;
    Node {
        data: data.to_path_buf(),
        pointers: Pointers::new(engine.clone(), dht),
        engine,
    }
}

/// A publisher and a subscriber on a fresh loopback testnet.
struct Pair {
    _tmp: tempfile::TempDir,
    _net: LocalTestnet,
    publisher: Node,
    subscriber: Node,
}

impl Pair {
    async fn start(
        publisher: impl FnOnce(&mut EngineConfig),
        subscriber: impl FnOnce(&mut EngineConfig),
    ) -> Pair {
        let tmp = tempfile::tempdir().unwrap();
        let net = LocalTestnet::start(12).unwrap();
        let publisher = node(&tmp.path().join("publisher"), &net, publisher).await;
        let subscriber = node(&tmp.path().join("subscriber"), &net, subscriber).await;
        Pair {
            _tmp: tmp,
            _net: net,
            publisher,
            subscriber,
        }
    }

    async fn shutdown(self) {
        self.subscriber.engine.shutdown().await;
        self.publisher.engine.shutdown().await;
    }
}

impl Node {
    fn shelf(&self) -> Shelf {
        Shelf::new(self.data.join("feed"))
    }

    /// Publishes a folder whose file `body` holds `body`, at `seq`.
    async fn publish(&self, key: &SigningKey, body: &[u8], seq: i64) -> Published {
        let source = self.data.join(format!("source-{seq}"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("body"), body).unwrap();
        std::fs::write(source.join("unlisted"), b"never published").unwrap();
        let files = [PathBuf::from("body")];
        let stage = Stage {
            source: &source,
            files: &files,
            root: self.data.join("stage").join(seq.to_string()),
            name: "feed",
        };
        tokio::time::timeout(LIMIT, self.pointers.publish(&stage, key, Some(SALT), seq))
            .await
            .unwrap()
            .unwrap()
    }

    async fn resolve(&self, key: &SigningKey, floor: Option<i64>) -> Result<Offer, PointerError> {
        let public = key.verifying_key().to_bytes();
        tokio::time::timeout(LIMIT, self.pointers.resolve(&public, Some(SALT), floor))
            .await
            .unwrap()
            .map(|o| o.expect("no item found on the testnet"))
    }

    /// What this node holds of torrent `ih`: the engine manages it, the engine's database
    /// has a record of it, and its folder on the shelf byte for byte.
    fn holding(&self, ih: &Id20) -> (bool, bool, BTreeMap<PathBuf, Vec<u8>>) {
        let managed = self.engine.torrent(ih).is_some();
        let recorded = self
            .engine
            .store()
            .torrent(&infohash_hex(ih))
            .unwrap()
            .is_some();
        (managed, recorded, tree(&self.shelf().folder(ih)))
    }

    fn shelf_folders(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.shelf().root()) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

/// Every file under `dir` with its bytes (empty when `dir` does not exist).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The check of these tests: accept when the body is what the test expects, and say why not.
async fn check_body(content: &Path, want: &[u8]) -> Result<Vec<u8>, String> {
    let body = std::fs::read(content.join("body")).map_err(|e| e.to_string())?;
    if body == want {
        Ok(body)
    } else {
        Err(format!("body is {body:?}, not {want:?}"))
    }
}

/// A subscriber holds version 1. Version 2 is downloaded and refused by the check: nothing of
/// it is kept (not seeded, no record, no folder) and version 1 is untouched, byte for byte.
/// Fetched again and accepted, version 2 replaces version 1: the old torrent is forgotten and
/// its folder removed. A refusal of the pointer naming the held torrent then removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_fetch_keeps_nothing_and_an_accepted_one_swaps_the_old_version_out() {
    let pair = Pair::start(|_| {}, |_| {}).await;
    let (publisher, subscriber) = (&pair.publisher, &pair.subscriber);
    let key = SigningKey::from_bytes(&[7; 32]);

    // Version 1, accepted.
    let v1 = publisher.publish(&key, b"one", 1).await;
    let offer = subscriber.resolve(&key, None).await.unwrap();
    assert_eq!((offer.seq(), offer.infohash()), (1, v1.infohash));
    let fetched = tokio::time::timeout(
        LIMIT,
        subscriber
            .pointers
            .fetch(offer, &subscriber.shelf(), &CAPS, None, |c| async move {
                assert_eq!(c.pointer().seq(), 1);
                check_body(c.content(), b"one").await
            }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(fetched.value, b"one");
    assert_eq!(fetched.infohash, v1.infohash);
    let held = subscriber.holding(&v1.infohash);
    assert!(held.0 && held.1, "version 1 is not seeding");
    assert_eq!(
        held.2.keys().collect::<Vec<_>>(),
        [Path::new("feed/body")],
        "only the listed file is published"
    );

    // Version 2, refused by the check.
    let v2 = publisher.publish(&key, b"two", 2).await;
    assert_ne!(v1.infohash, v2.infohash);
    let offer = subscriber.resolve(&key, Some(1)).await.unwrap();
    assert_eq!((offer.seq(), offer.infohash()), (2, v2.infohash));
    let refused = tokio::time::timeout(
        LIMIT,
        subscriber.pointers.fetch(
            offer.clone(),
            &subscriber.shelf(),
            &CAPS,
            Some(v1.infohash),
            |c| async move { check_body(c.content(), b"one").await },
        ),
    )
    .await
    .unwrap();
    match refused {
        Err(FetchError::Refused(why)) => {
            assert_eq!(why, r#"body is [116, 119, 111], not [111, 110, 101]"#)
        }
        other => panic!("not refused by the check: {other:?}"),
    }
    assert_eq!(
        subscriber.holding(&v2.infohash),
        (false, false, BTreeMap::new()),
        "something of the refused version was kept"
    );
    assert_eq!(
        subscriber.holding(&v1.infohash),
        held,
        "what is held changed"
    );
    assert_eq!(subscriber.shelf_folders(), [infohash_hex(&v1.infohash)]);

    // Version 2 again, accepted: version 1 is swapped out.
    let fetched = tokio::time::timeout(
        LIMIT,
        subscriber.pointers.fetch(
            offer,
            &subscriber.shelf(),
            &CAPS,
            Some(v1.infohash),
            |c| async move { check_body(c.content(), b"two").await },
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(fetched.value, b"two");
    assert_eq!(
        subscriber.holding(&v1.infohash),
        (false, false, BTreeMap::new()),
        "the replaced version is still held"
    );
    let held2 = subscriber.holding(&v2.infohash);
    assert!(held2.0 && held2.1, "version 2 is not seeding");
    assert_eq!(subscriber.shelf_folders(), [infohash_hex(&v2.infohash)]);

    // The pointer names the torrent now held; the check refuses it: nothing was created by
    // this fetch, so nothing is removed.
    let offer = subscriber.resolve(&key, Some(2)).await.unwrap();
    assert_eq!(offer.infohash(), v2.infohash);
    let refused = tokio::time::timeout(
        LIMIT,
        subscriber.pointers.fetch(
            offer,
            &subscriber.shelf(),
            &CAPS,
            Some(v2.infohash),
            |_| async { Err::<(), _>("refused by the test") },
        ),
    )
    .await
    .unwrap();
    assert!(matches!(
        refused,
        Err(FetchError::Refused("refused by the test"))
    ));
    assert_eq!(
        subscriber.holding(&v2.infohash),
        held2,
        "the held torrent changed"
    );

    pair.shutdown().await;
}

/// The DHT serves an item below the seq already accepted: refused with both seqs named, and
/// nothing is downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_pointer_is_refused_before_any_download() {
    let pair = Pair::start(|_| {}, |_| {}).await;
    let (publisher, subscriber) = (&pair.publisher, &pair.subscriber);
    let key = SigningKey::from_bytes(&[8; 32]);
    let v3 = publisher.publish(&key, b"three", 3).await;

    let err = subscriber.resolve(&key, Some(4)).await.unwrap_err();
    match &err {
        PointerError::Replay { offered, floor, .. } => assert_eq!((*offered, *floor), (3, 4)),
        other => panic!("not a replay refusal: {other}"),
    }
    let m = err.to_string();
    assert!(
        m.contains("seq 3") && m.contains("seq 4") && m.contains("replay"),
        "{m}"
    );
    assert!(subscriber.engine.torrent(&v3.infohash).is_none());
    assert!(subscriber.shelf_folders().is_empty());
    // The same seq as the floor is not a replay (a republished item).
    assert_eq!(subscriber.resolve(&key, Some(3)).await.unwrap().seq(), 3);

    pair.shutdown().await;
}

/// The pointer names a torrent nobody seeds (its one peer has none of it): the fetch fails with
/// the engine's reason and leaves no torrent, no folder and no shelf behind; the check never
/// runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_torrent_leaves_nothing_behind() {
    let pair = Pair::start(|_| {}, |cfg| cfg.metadata_timeout = Duration::from_secs(3)).await;
    let (publisher, subscriber) = (&pair.publisher, &pair.subscriber);
    let key = SigningKey::from_bytes(&[9; 32]);
    let nobody = Id20::new([0x5a; 20]);
    tokio::time::timeout(LIMIT, publisher.pointers.put(&key, Some(SALT), nobody, 1))
        .await
        .unwrap()
        .unwrap();
    // The publisher's engine says it is a peer of the torrent, but has none of it.
    let port = publisher.engine.listen_addr().unwrap().port();
    tokio::time::timeout(
        LIMIT,
        publisher.pointers.dht().announce_peer(nobody.0, port),
    )
    .await
    .unwrap()
    .unwrap();

    let offer = subscriber.resolve(&key, None).await.unwrap();
    assert_eq!(offer.infohash(), nobody);
    let failed = tokio::time::timeout(
        LIMIT,
        subscriber
            .pointers
            .fetch(offer, &subscriber.shelf(), &CAPS, None, |_| async {
                Err::<(), _>("the check ran on a torrent that never downloaded")
            }),
    )
    .await
    .unwrap();
    match failed {
        // librqbit gives up once its only peer has no metadata to send (or the engine's
        // metadata time-out, bounded to 3 s here, runs out first).
        Err(FetchError::Pointer(PointerError::Engine(
            EngineError::Session(_) | EngineError::Timeout(_),
        ))) => {}
        other => panic!("not a failed download: {other:?}"),
    }
    assert_eq!(subscriber.holding(&nobody), (false, false, BTreeMap::new()));
    assert!(
        !subscriber.shelf().root().exists(),
        "the shelf this fetch created is left behind"
    );

    pair.shutdown().await;
}

/// A download that runs out of time: undone without [`Caps::resume`] (nothing left, as for a
/// catalog); kept downloading with it, and the next fetch of the same pointer resumes it to the
/// end and runs the check (as for an update on a slow link).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_out_of_time_is_undone_or_resumed_as_the_caps_say() {
    // 2 MiB served at 128 KiB/s: about 16 s, far more than the 1 s allowed below.
    let pair = Pair::start(|cfg| cfg.share.upload_limit_bps = Some(128 * 1024), |_| {}).await;
    let (publisher, subscriber) = (&pair.publisher, &pair.subscriber);
    let key = SigningKey::from_bytes(&[10; 32]);
    let body: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let v1 = publisher.publish(&key, &body, 1).await;
    let short = Caps {
        max_bytes: 4 * 1024 * 1024,
        timeout: Duration::from_secs(1),
        ..CAPS
    };
    let expect_timeout = |r: Result<kino_pointer::Fetched<Vec<u8>>, FetchError<String>>| match r {
        Err(FetchError::Pointer(PointerError::Engine(EngineError::Timeout(m)))) => m,
        other => panic!("not a download time-out: {other:?}"),
    };

    let offer = subscriber.resolve(&key, None).await.unwrap();
    let r = subscriber
        .pointers
        .fetch(
            offer.clone(),
            &subscriber.shelf(),
            &short,
            None,
            |_| async { Err::<Vec<u8>, _>("the check ran on an incomplete download".to_owned()) },
        )
        .await;
    let m = expect_timeout(r);
    assert!(
        m.contains("test feed torrent did not download within 1 s"),
        "{m}"
    );
    assert_eq!(
        subscriber.holding(&v1.infohash),
        (false, false, BTreeMap::new())
    );
    assert!(!subscriber.shelf().root().exists());

    let resume = Caps {
        resume: true,
        ..short
    };
    let r = subscriber
        .pointers
        .fetch(
            offer.clone(),
            &subscriber.shelf(),
            &resume,
            None,
            |_| async { Err::<Vec<u8>, _>("the check ran on an incomplete download".to_owned()) },
        )
        .await;
    expect_timeout(r);
    let (managed, recorded, _) = subscriber.holding(&v1.infohash);
    assert!(managed && recorded, "the timed-out download was not kept");
    assert_eq!(subscriber.shelf_folders(), [infohash_hex(&v1.infohash)]);

    let resume_long = Caps {
        timeout: LIMIT,
        ..resume
    };
    let want = body.clone();
    let fetched = subscriber
        .pointers
        .fetch(
            offer,
            &subscriber.shelf(),
            &resume_long,
            None,
            |c| async move { check_body(c.content(), &want).await },
        )
        .await
        .unwrap();
    assert_eq!(fetched.value, body);

    pair.shutdown().await;
}
