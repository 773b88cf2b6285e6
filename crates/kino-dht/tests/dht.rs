//! End-to-end tests on a private DHT bound to 127.0.0.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Bencode, NODES, client, dict, key, resolve_until, testnet};
use kino_dht::{
    CacheOutcome, CancellationToken, DhtError, LocalTestnet, PointerAddress, RepublishConfig,
    RepublisherHandle, SignedPointer, encode_pointer,
};
use mainline::{Dht, MutableItem};
use tokio::net::UdpSocket;

const SALT: &[u8] = b"catalog";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_resolve_on_other_nodes_and_seq_rules() -> Result<()> {
    let net = testnet();
    ensure!(net.len() >= 30);
    let publisher = client(net.bootstrap());
    // The reader bootstraps from the other end of the testnet, so the two clients meet
    // only through the DHT.
    let reader = client(&net.bootstrap()[NODES / 2..]);
    let k = key(1);
    let pk = k.verifying_key().to_bytes();

    let published = publisher.publish(&k, Some(SALT), [1; 20], 1, None).await?;
    ensure!(published.stored_at > 0, "stored nowhere");
    let got = resolve_until(&reader, &k, Some(SALT), 5, |r| r.is_some())
        .await
        .context("reader never found seq 1")?;
    ensure!(got.infohash() == [1; 20] && got.seq() == 1 && got.network_seq == Some(1));
    ensure!(got.pointer.value() == encode_pointer(&[1; 20]).as_slice());

    // seq + 1 (with CAS on the seq we saw) replaces it.
    publisher
        .publish(&k, Some(SALT), [2; 20], 2, Some(1))
        .await?;
    let got = resolve_until(&reader, &k, Some(SALT), 5, |r| {
        r.as_ref().is_some_and(|p| p.seq() == 2)
    })
    .await
    .context("reader never saw seq 2")?;
    ensure!(got.seq() == 2 && got.infohash() == [2; 20]);

    // A lower seq is refused by the publisher's own cache before any packet is sent...
    let err = publisher.publish(&k, Some(SALT), [9; 20], 1, None).await;
    ensure!(
        matches!(err, Err(DhtError::NotMostRecent { held: Some(2), .. })),
        "{err:?}"
    );
    // ...by a node that never saw seq 2 but puts an old signed item: the DHT refuses it...
    let old = SignedPointer::sign(&k, Some(SALT), [9; 20], 1)?;
    let stranger = client(net.bootstrap());
    let err = stranger.publish_signed(&old).await;
    ensure!(
        matches!(err, Err(DhtError::NotMostRecent { held: None, .. })),
        "{err:?}"
    );
    // ...and by the reader's cache when offered directly.
    ensure!(reader.cache().offer(old)? == CacheOutcome::Stale { held_seq: 2 });
    // Same seq, different value: the held one stays.
    let twin = SignedPointer::sign(&k, Some(SALT), [7; 20], 2)?;
    ensure!(reader.cache().offer(twin)? == CacheOutcome::Conflict { seq: 2 });
    let held = reader.cache().get(&PointerAddress::new(pk, Some(SALT))?);
    ensure!(held.map(|p| p.infohash()) == Some([2; 20]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_mismatch_is_reported() -> Result<()> {
    let net = testnet();
    let publisher = client(net.bootstrap());
    let k = key(2);
    publisher.publish(&k, None, [1; 20], 1, None).await?;
    let err = publisher.publish(&k, None, [3; 20], 3, Some(2)).await;
    ensure!(
        matches!(err, Err(DhtError::CasMismatch { cas: 2, .. })),
        "{err:?}"
    );
    // The right CAS succeeds.
    publisher.publish(&k, None, [3; 20], 3, Some(1)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_beats_a_network_that_rolled_back() -> Result<()> {
    let net = testnet();
    let publisher = client(net.bootstrap());
    let reader = client(net.bootstrap());
    let k = key(3);
    publisher.publish(&k, Some(SALT), [1; 20], 1, None).await?;
    // The reader persisted seq 5 earlier (e.g. from SQLite); the network only has seq 1.
    let newer = SignedPointer::sign(&k, Some(SALT), [5; 20], 5)?;
    reader.cache().import_bytes(&newer.to_bytes())?;
    let got = resolve_until(&reader, &k, Some(SALT), 5, |r| {
        r.as_ref().is_some_and(|p| p.network_seq.is_some())
    })
    .await
    .context("nothing resolved")?;
    ensure!(got.network_seq == Some(1), "{:?}", got.network_seq);
    ensure!(got.seq() == 5 && got.infohash() == [5; 20]);
    Ok(())
}

/// A subscriber keeps a catalog alive after its publisher is gone: the nodes that stored the
/// item are replaced by new ones, and only the subscriber's republish makes it findable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_republish_keeps_item_alive() -> Result<()> {
    let first = testnet();
    let publisher = client(first.bootstrap());
    let k = key(4);
    publisher.publish(&k, Some(SALT), [4; 20], 7, None).await?;

    // New nodes join through the first network; they never received the item.
    let second = LocalTestnet::join(NODES, first.bootstrap(), Duration::from_secs(20)).await?;
    let all: Vec<String> = first
        .bootstrap()
        .iter()
        .chain(second.bootstrap())
        .cloned()
        .collect();
    let subscriber = client(&all);
    let held = resolve_until(&subscriber, &k, Some(SALT), 5, |r| r.is_some())
        .await
        .context("subscriber never resolved the item")?;
    ensure!(held.seq() == 7);

    // The publisher and every node that stored the item go away.
    drop(publisher);
    // Wait (bounded) until every stopped node's socket is closed, so none answers late.
    ensure!(
        first.shutdown(Duration::from_secs(5)).await == 0,
        "first testnet did not stop"
    );

    let late_reader = client(second.bootstrap());
    let before = late_reader.resolve_detailed(held.pointer.address()).await?;
    ensure!(
        before.resolved.is_none(),
        "item survived without republish, so this test would prove nothing: {:?}",
        before.stats
    );

    // The subscriber's republisher (resolve, then re-put the publisher's signed item).
    let cancel = CancellationToken::new();
    let republisher = RepublisherHandle::spawn(
        subscriber.clone(),
        RepublishConfig {
            interval: Duration::from_secs(3600),
            max_items: 16,
        },
        cancel.clone(),
    );
    republisher.keep(held.pointer.address().clone());
    let mut reports = republisher.reports();
    // The first round may have started before `keep`; ask for one more and wait (bounded).
    let mut report = reports.borrow().clone();
    for _ in 0..3 {
        if report.republished > 0 {
            break;
        }
        republisher.republish_now();
        tokio::time::timeout(Duration::from_secs(60), reports.changed())
            .await
            .context("no republish round within 60 s")??;
        report = reports.borrow_and_update().clone();
    }
    ensure!(report.republished == 1 && report.failed == 0, "{report:?}");

    let after = resolve_until(&late_reader, &k, Some(SALT), 5, |r| {
        r.as_ref().is_some_and(|p| p.network_seq == Some(7))
    })
    .await
    .context("item not resolvable after republish")?;
    ensure!(after.infohash() == [4; 20] && after.pointer == held.pointer);

    cancel.cancel();
    republisher.shutdown().await;
    Ok(())
}

/// Items with a bad signature are refused by storage nodes, by the resolver when a rogue node
/// serves them, by import, and cannot even be built as a `SignedPointer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_items_are_never_accepted() -> Result<()> {
    let net = testnet();
    let k = key(5);
    let pk = k.verifying_key().to_bytes();
    let genuine = SignedPointer::sign(&k, Some(SALT), [1; 20], 1)?;
    let mut forged = genuine.to_unchecked();
    forged.seq = 99;
    forged.value = encode_pointer(&[0xee; 20]);

    // 1. Local checks.
    ensure!(matches!(
        forged.clone().verify(),
        Err(DhtError::BadSignature { .. })
    ));
    let reader = client(net.bootstrap());
    ensure!(reader.cache().import(forged.clone()).is_err());

    // 2. Storage nodes refuse a forged put sent through a raw mainline node.
    let raw = Dht::builder()
        .bootstrap(net.bootstrap())
        .bind_address(std::net::Ipv4Addr::LOCALHOST)
        .build()?
        .as_async();
    let forged_item = MutableItem::new_signed_unchecked(
        pk,
        forged.signature,
        &forged.value,
        forged.seq,
        Some(SALT),
    );
    ensure!(
        raw.put_mutable(forged_item, None).await.is_err(),
        "forged put accepted"
    );
    ensure!(reader.resolve(&pk, Some(SALT)).await?.is_none());

    // 3. A rogue node answers every query with the forged item.
    let rogue = UdpSocket::bind("127.0.0.1:0").await?;
    let rogue_addr = rogue.local_addr()?.to_string();
    let served = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let rogue_task = tokio::spawn(rogue_node(
        rogue,
        forged.clone(),
        Arc::clone(&served),
        stop.clone(),
    ));

    let victim = client(std::slice::from_ref(&rogue_addr));
    let res = victim
        .resolve_detailed(&PointerAddress::new(pk, Some(SALT))?)
        .await?;
    ensure!(served.load(Ordering::SeqCst) > 0, "rogue node never asked");
    ensure!(
        res.resolved.is_none(),
        "forged item accepted: {:?}",
        res.resolved
    );
    ensure!(res.stats.values == 0, "{:?}", res.stats);

    // 4. With the genuine item on the network and the rogue in the bootstrap list, only the
    //    genuine item (seq 1) is ever returned, never the forged seq 99.
    let publisher = client(net.bootstrap());
    publisher.publish_signed(&genuine).await?;
    let mut mixed_bootstrap = vec![rogue_addr];
    mixed_bootstrap.extend_from_slice(net.bootstrap());
    let mixed = client(&mixed_bootstrap);
    let got = resolve_until(&mixed, &k, Some(SALT), 5, |r| r.is_some())
        .await
        .context("genuine item not found")?;
    ensure!(got.seq() == 1 && got.infohash() == [1; 20]);

    stop.cancel();
    rogue_task.await??;
    Ok(())
}

/// Answers find_node with no nodes and get with a forged mutable item. Bounded by a packet
/// count and a cancellation token.
async fn rogue_node(
    socket: UdpSocket,
    forged: kino_dht::UncheckedSignedPointer,
    served: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Result<()> {
    let id = vec![0x42u8; 20];
    let mut buf = vec![0u8; 2048];
    for _ in 0..10_000 {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => r?,
            () = stop.cancelled() => return Ok(()),
        };
        let Some((msg, _)) = Bencode::decode(&buf[..n], 0) else {
            continue;
        };
        let (Some(t), Some(q)) = (msg.get("t"), msg.get("q").and_then(Bencode::bytes)) else {
            continue;
        };
        let r = if q == b"get" {
            served.fetch_add(1, Ordering::SeqCst);
            dict(vec![
                ("id", Bencode::Bytes(id.clone())),
                ("k", Bencode::Bytes(forged.public_key.to_vec())),
                ("seq", Bencode::Int(forged.seq)),
                ("sig", Bencode::Bytes(forged.signature.to_vec())),
                ("token", Bencode::Bytes(b"tokn".to_vec())),
                ("v", Bencode::Bytes(forged.value.clone())),
            ])
        } else {
            dict(vec![
                ("id", Bencode::Bytes(id.clone())),
                ("nodes", Bencode::Bytes(Vec::new())),
            ])
        };
        let reply = dict(vec![
            ("r", r),
            ("t", t.clone()),
            ("y", Bencode::Bytes(b"r".to_vec())),
        ]);
        let mut out = Vec::new();
        reply.encode(&mut out);
        socket.send_to(&out, from).await?;
    }
    Ok(())
}
