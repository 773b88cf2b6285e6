//! Sessions exchanging torrents over TCP on loopback: downloads, streaming readers, seeks,
//! hostile and silent peers, shutdown. Every wait is bounded ([`common::WAIT`]); nothing
//! asserts how long anything took.

mod common;

use std::collections::BTreeSet;
use std::io::SeekFrom;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use common::{Film, Scripted, addr, all_pieces, bounded, listening, seeder, shut, wait_status};
use kino_swarm::{
    BlockRef, FailReason, MemoryStorage, Message, ReadError, Role, SchedulerConfig, Session,
    SessionConfig, Storage, TorrentOptions, TorrentSpec, TorrentState,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Reads `len` bytes at the reader's position, bounded.
async fn read_exactly(reader: &mut kino_swarm::Reader, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    bounded("a read", reader.read_exact(&mut buf)).await??;
    Ok(buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_exchange_a_torrent() -> Result<()> {
    let film = Film::new(3 * MIB + 12_345, 64 * KIB as u32, 1);
    let (seeding, _seed) = seeder(&film, None).await?;

    let leeching = listening(None).await?;
    let store = film.empty_storage();
    let leech = leeching.add_torrent(film.spec(
        store.clone(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    leech.add_peers([addr(&seeding)?]).await?;
    let done = wait_status(&leech, "the leecher completes", |s| s.is_complete()).await?;
    ensure!(done.hash_failures == 0);
    ensure!(store.is_full(), "every byte stored");
    ensure!(
        store.contents() == *film.data,
        "the leecher has the film, byte for byte"
    );

    // The leecher now seeds to a third session, which knows only the leecher.
    let third = Session::new(SessionConfig::default()).await?;
    let third_store = film.empty_storage();
    let third_torrent = third.add_torrent(film.spec(
        third_store.clone(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    third_torrent.add_peers([addr(&leeching)?]).await?;
    wait_status(&third_torrent, "the third session completes", |s| {
        s.is_complete()
    })
    .await?;
    ensure!(third_store.contents() == *film.data);
    let uploaded = wait_status(&leech, "the leecher counts its upload", |s| {
        s.uploaded >= film.len()
    })
    .await?;
    ensure!(uploaded.uploaded >= film.len());

    shut(&third).await?;
    shut(&leeching).await?;
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_from_the_middle_gets_the_right_bytes_first() -> Result<()> {
    // 64 pieces; the seed uploads at 1 MiB/s, so the whole film takes seconds and the
    // reader's first piece a fraction of that.
    let film = Film::new(4 * MIB, 64 * KIB as u32, 2);
    let (seeding, _seed) = seeder(&film, Some(MIB as u64)).await?;
    common::logs();
    let leeching = Session::new(SessionConfig::default()).await?;
    let leech = leeching.add_torrent(film.spec(
        film.empty_storage(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    wait_status(&leech, "the check", |s| s.state == TorrentState::Live).await?;

    // The player opens the film and jumps to 60 % before any peer is known.
    let mut reader = leech.reader(0..film.len()).await?;
    let at = film.len() * 6 / 10 + 1000;
    reader.seek(SeekFrom::Start(at)).await?;
    leech.add_peers([addr(&seeding)?]).await?;

    let got = read_exactly(&mut reader, 64 * KIB).await?;
    let status = leech.status();
    let at = at as usize;
    ensure!(
        got == film.data[at..at + 64 * KIB],
        "the right bytes at 60 %"
    );
    ensure!(
        !status.is_complete(),
        "the bytes at 60 % came before the torrent completed: {status:?}"
    );

    // Back to 10 %.
    let back = film.len() / 10;
    reader.seek(SeekFrom::Start(back)).await?;
    let got = read_exactly(&mut reader, 100 * KIB).await?;
    let back = back as usize;
    ensure!(
        got == film.data[back..back + 100 * KIB],
        "the right bytes at 10 %"
    );
    ensure!(reader.position() == (back + 100 * KIB) as u64);

    drop(reader);
    shut(&leeching).await?;
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playhead_piece_comes_from_several_peers() -> Result<()> {
    // Pieces of 16 blocks; three seeds, one capped at 64 KiB/s.
    let piece_len = 256 * KIB;
    let film = Film::new(16 * piece_len, piece_len as u32, 3);
    let (seeding_a, _a) = seeder(&film, None).await?;
    let (seeding_b, _b) = seeder(&film, None).await?;
    let (seeding_slow, _slow) = seeder(&film, Some(64 * KIB as u64)).await?;

    // The viewer downloads only what its reader needs, so the pieces are all fresh when
    // the reader opens.
    let viewing = Session::new(SessionConfig::default()).await?;
    let options = TorrentOptions {
        scheduler: SchedulerConfig {
            background: false,
            ..SchedulerConfig::default()
        },
        ..TorrentOptions::default()
    };
    let viewer = viewing.add_torrent(film.spec(film.empty_storage(), Role::Download, options))?;
    viewer
        .add_peers([addr(&seeding_a)?, addr(&seeding_b)?, addr(&seeding_slow)?])
        .await?;
    let ready = wait_status(&viewer, "three peers unchoke the viewer", |s| {
        s.unchoking_us == 3
    })
    .await?;
    ensure!(ready.verified == 0, "nothing downloaded before the reader");

    let piece = 8u32;
    let start = film.geometry.piece_start(piece);
    let mut reader = viewer.reader(start..film.len()).await?;
    let got = read_exactly(&mut reader, piece_len).await?;
    let start = start as usize;
    ensure!(got == film.data[start..start + piece_len]);
    let sources = bounded("the piece's sources", viewer.piece_sources(piece)).await??;
    ensure!(
        sources.is_some_and(|n| n >= 2),
        "the playhead piece came from several peers: {sources:?}"
    );

    drop(reader);
    shut(&viewing).await?;
    for seeding in [seeding_a, seeding_b, seeding_slow] {
        shut(&seeding).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_sends_cancel_for_stale_requests() -> Result<()> {
    let film = Film::new(8 * MIB, 64 * KIB as u32, 4);
    let pieces = film.geometry.piece_count();
    let script = TcpListener::bind("127.0.0.1:0").await?;
    common::logs();
    let leeching = Session::new(SessionConfig::default()).await?;
    // A long first pipeline, so more requests are out than the few "already on their way"
    // that a seek keeps.
    let options = TorrentOptions {
        scheduler: SchedulerConfig {
            initial_pipeline: 32,
            ..SchedulerConfig::default()
        },
        ..TorrentOptions::default()
    };
    let leech = leeching.add_torrent(film.spec(film.empty_storage(), Role::Download, options))?;
    let mut reader = leech.reader(0..film.len()).await?;
    leech.add_peers([script.local_addr()?]).await?;

    // The scripted peer has everything, unchokes, and never answers a request.
    let mut peer = Scripted::accept(&script, film.info_hash).await?;
    peer.send(&[Message::Bitfield(all_pieces(pieces)), Message::Unchoke])
        .await?;
    let mut requested = BTreeSet::new();
    while requested.len() < 32 {
        match peer.next().await? {
            Some(Message::Request(block)) => {
                requested.insert(block);
            }
            Some(_) => {}
            None => bail!("the leecher closed the connection"),
        }
    }
    ensure!(
        requested.iter().all(|b| b.piece < pieces / 2),
        "the requests serve the playhead at 0"
    );

    // The player seeks to 80 %: the requests near 0 serve nothing now.
    reader.seek(SeekFrom::Start(film.len() * 8 / 10)).await?;
    let mut cancelled: Vec<BlockRef> = Vec::new();
    for _ in 0..10_000 {
        match peer.next().await? {
            Some(Message::Cancel(block)) => {
                cancelled.push(block);
                if cancelled.len() >= 8 {
                    break;
                }
            }
            Some(Message::Request(block)) => {
                requested.insert(block);
            }
            Some(_) => {}
            None => bail!("the leecher closed the connection"),
        }
    }
    ensure!(
        cancelled.len() >= 8,
        "CANCELs after the seek: {cancelled:?}"
    );
    ensure!(
        cancelled
            .iter()
            .all(|b| requested.contains(b) && b.piece < pieces / 2),
        "only stale requests are cancelled: {cancelled:?}"
    );

    drop(reader);
    shut(&leeching).await?;
    Ok(())
}

/// A peer at `ip` that has every piece and answers each request with garbage, until the
/// connection closes. Returns how many blocks it sent.
async fn liar(listener: TcpListener, film: Film) -> Result<usize> {
    let mut peer = Scripted::accept(&listener, film.info_hash).await?;
    peer.send(&[
        Message::Bitfield(all_pieces(film.geometry.piece_count())),
        Message::Unchoke,
    ])
    .await?;
    let mut sent = 0;
    for _ in 0..1_000_000 {
        match peer.next().await? {
            Some(Message::Request(block)) => {
                let garbage = vec![0xA5u8; block.length as usize];
                let answer = Message::Piece {
                    piece: block.piece,
                    begin: block.begin,
                    data: garbage.into(),
                };
                if peer.send(&[answer]).await.is_err() {
                    return Ok(sent);
                }
                sent += 1;
            }
            Some(_) => {}
            None => return Ok(sent),
        }
    }
    bail!("the liar was never disconnected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_data_never_reaches_a_reader_and_the_sender_is_banned() -> Result<()> {
    let film = Film::new(2 * MIB, 64 * KIB as u32, 5);
    // The honest seed at 127.0.0.1, capped so the liar gets its share of blocks; the liar
    // on another loopback address (bans are by address).
    let (seeding, _seed) = seeder(&film, Some(MIB as u64)).await?;
    let liar_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let liar_listener = TcpListener::bind((liar_ip, 0)).await?;
    let liar_addr = liar_listener.local_addr()?;
    let liar_task = tokio::spawn(liar(liar_listener, film.clone()));

    common::logs();
    let leeching = Session::new(SessionConfig::default()).await?;
    let store = film.empty_storage();
    let leech = leeching.add_torrent(film.spec(
        store.clone(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    let mut reader = leech.reader(0..film.len()).await?;
    leech.add_peers([liar_addr]).await?;
    leech.add_peers([addr(&seeding)?]).await?;

    let mut got = Vec::new();
    bounded("reading the film", reader.read_to_end(&mut got)).await??;
    ensure!(
        got == *film.data,
        "the reader got the film, not the garbage"
    );

    let sent = bounded("the liar is disconnected", liar_task).await???;
    ensure!(sent > 0, "the liar was asked for blocks");
    ensure!(leeching.is_banned(liar_ip), "the liar is banned");
    ensure!(
        !leeching.is_banned(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "the honest seed is not"
    );
    let status = wait_status(&leech, "the film completes", |s| s.is_complete()).await?;
    ensure!(
        status.hash_failures >= 2,
        "banned after its second failed piece: {status:?}"
    );
    ensure!(store.contents() == *film.data, "no garbage stored");

    drop(reader);
    shut(&leeching).await?;
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_does_not_stall_the_reader() -> Result<()> {
    let film = Film::new(2 * MIB, 64 * KIB as u32, 6);
    let (seeding, _seed) = seeder(&film, None).await?;
    let script = TcpListener::bind("127.0.0.1:0").await?;
    common::logs();
    let leeching = Session::new(SessionConfig::default()).await?;
    let leech = leeching.add_torrent(film.spec(
        film.empty_storage(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    let mut reader = leech.reader(0..film.len()).await?;
    // The silent peer first, so it takes the first requests.
    leech.add_peers([script.local_addr()?]).await?;
    let mut silent = Scripted::accept(&script, film.info_hash).await?;
    silent
        .send(&[
            Message::Bitfield(all_pieces(film.geometry.piece_count())),
            Message::Unchoke,
        ])
        .await?;
    let mut asked = 0;
    while asked == 0 {
        match silent.next().await? {
            Some(Message::Request(_)) => asked += 1,
            Some(_) => {}
            None => bail!("closed before any request"),
        }
    }
    // It took requests; it will never answer. Now the honest seed.
    leech.add_peers([addr(&seeding)?]).await?;
    let silent_task = tokio::spawn(async move {
        // Swallow everything until the session lets go of us.
        while let Ok(Some(_)) = silent.next().await {}
    });

    let mut got = Vec::new();
    bounded("reading the film", reader.read_to_end(&mut got)).await??;
    ensure!(
        got == *film.data,
        "the reader completes with the right bytes"
    );

    drop(reader);
    shut(&leeching).await?;
    bounded("the silent peer sees the end", silent_task).await??;
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_is_refused_and_memory_stays_bounded() -> Result<()> {
    // 2 MiB: 128 blocks, and a request queue of 64.
    let film = Film::new(2 * MIB, 64 * KIB as u32, 7);
    let queue = 64;
    let seeding = Session::new(SessionConfig {
        listen: Some("127.0.0.1:0".parse()?),
        peer: kino_swarm::PeerConfig {
            max_queued_uploads: queue,
            ..SessionConfig::default().peer
        },
        ..SessionConfig::default()
    })
    .await?;
    let seed = seeding.add_torrent(film.spec(
        film.full_storage(),
        Role::Seed,
        TorrentOptions::default(),
    ))?;
    wait_status(&seed, "the seed is live", |s| s.state == TorrentState::Live).await?;

    let mut flooder = Scripted::connect(addr(&seeding)?, film.info_hash).await?;
    flooder.send(&[Message::Interested]).await?;
    let mut unchoked = false;
    for _ in 0..100 {
        match flooder.next().await? {
            Some(Message::Unchoke) => {
                unchoked = true;
                break;
            }
            Some(_) => {}
            None => bail!("closed before the unchoke"),
        }
    }
    ensure!(unchoked, "the seed unchokes an interested peer");

    // Every block of the film, asked at once: twice the queue.
    let mut flood = Vec::new();
    for piece in 0..film.geometry.piece_count() {
        for index in 0..film.geometry.blocks_in(piece) {
            flood.push(Message::Request(film.geometry.block(piece, index)));
        }
    }
    ensure!(flood.len() == 2 * queue);
    flooder.send(&flood).await?;
    let mut blocks = 0;
    let mut closed = false;
    for _ in 0..10_000 {
        match flooder.next().await? {
            Some(Message::Piece { .. }) => blocks += 1,
            Some(_) => {}
            None => {
                closed = true;
                break;
            }
        }
    }
    ensure!(closed, "the flooder is disconnected");
    ensure!(
        blocks <= queue,
        "no more than the queue was served: {blocks} blocks"
    );
    ensure!(seeding.stats().violations == 1, "{:?}", seeding.stats());
    wait_status(&seed, "the flooder is gone", |s| s.peers == 0).await?;

    // The seed still serves an honest peer.
    common::logs();
    let leeching = Session::new(SessionConfig::default()).await?;
    let store = film.empty_storage();
    let leech = leeching.add_torrent(film.spec(
        store.clone(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    leech.add_peers([addr(&seeding)?]).await?;
    wait_status(&leech, "an honest download after the flood", |s| {
        s.is_complete()
    })
    .await?;
    ensure!(store.contents() == *film.data);

    shut(&leeching).await?;
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_reader_instead_of_hanging() -> Result<()> {
    let film = Film::new(MIB, 64 * KIB as u32, 8);
    let (seeding, _seed) = seeder(&film, None).await?;
    common::logs();
    let leeching = Session::new(SessionConfig::default()).await?;
    let store = film.empty_storage();
    store.set_disk_full(true);
    let leech = leeching.add_torrent(film.spec(
        store.clone(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    let mut reader = leech.reader(0..film.len()).await?;
    leech.add_peers([addr(&seeding)?]).await?;

    let mut buf = vec![0u8; 1000];
    let error = match bounded("the read fails", reader.read_exact(&mut buf)).await? {
        Ok(_) => bail!("a read succeeded on a full disk"),
        Err(error) => error,
    };
    ensure!(error.kind() == std::io::ErrorKind::StorageFull, "{error}");
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<ReadError>());
    ensure!(
        matches!(inner, Some(ReadError::Failed(FailReason::DiskFull))),
        "{inner:?}"
    );
    ensure!(leech.status().state == TorrentState::Failed(FailReason::DiskFull));

    // Space is freed: resuming completes the download, and the reader works again.
    store.set_disk_full(false);
    leech.resume().await?;
    let got = read_exactly(&mut reader, 1000).await?;
    ensure!(got == film.data[..1000]);
    wait_status(&leech, "the download completes", |s| s.is_complete()).await?;
    ensure!(store.contents() == *film.data);

    drop(reader);
    shut(&leeching).await?;
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_task_behind() -> Result<()> {
    // A download in progress from a seed that lacks the last piece, a reader waiting for
    // that piece, a second torrent stopped on its own.
    let film = Film::new(4 * MIB, 64 * KIB as u32, 9);
    let seeding = listening(Some(256 * KIB as u64)).await?;
    let partial = film.empty_storage();
    let last = film.geometry.piece_count() - 1;
    let end = film.geometry.piece_start(last) as usize;
    partial.write_at(0, &film.data[..end])?;
    let seed = seeding.add_torrent(film.spec(partial, Role::Seed, TorrentOptions::default()))?;
    wait_status(&seed, "the partial seed is checked", |s| {
        s.state == TorrentState::Live && s.verified == last
    })
    .await?;
    let leeching = listening(None).await?;
    let leech = leeching.add_torrent(film.spec(
        film.empty_storage(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    leech.add_peers([addr(&seeding)?]).await?;
    wait_status(&leech, "a first piece", |s| s.verified > 0).await?;
    let mut reader = leech.reader(0..film.len()).await?;
    reader.seek(SeekFrom::Start(film.len() - 10)).await?;
    let waiting = tokio::spawn(async move {
        let mut buf = [0u8; 10];
        reader.read_exact(&mut buf).await.map(|_| buf)
    });

    let other = Film::new(MIB, 64 * KIB as u32, 10);
    let stopped = leeching.add_torrent(other.spec(
        other.full_storage(),
        Role::Seed,
        TorrentOptions::default(),
    ))?;
    let mut stopped_reader = stopped.reader(0..other.len()).await?;
    stopped.stop().await?;
    wait_status(&stopped, "the stopped torrent", |s| {
        s.state == TorrentState::Stopped
    })
    .await?;
    let mut buf = [0u8; 10];
    let Err(error) = bounded("a read of a stopped torrent", stopped_reader.read(&mut buf)).await?
    else {
        bail!("a stopped torrent's reader still reads")
    };
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<ReadError>());
    ensure!(matches!(inner, Some(ReadError::Stopped)), "{error}");

    let leecher_addr = addr(&leeching)?;
    ensure!(leeching.task_count() > 0);
    shut(&leeching).await?;
    let read = bounded("the waiting reader", waiting).await??;
    let Err(error) = read else {
        bail!("the reader got bytes of a piece no peer has")
    };
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<ReadError>());
    ensure!(matches!(inner, Some(ReadError::Stopped)), "{error}");
    ensure!(leech.status().state == TorrentState::Stopped);
    ensure!(
        tokio::net::TcpStream::connect(leecher_addr).await.is_err(),
        "the listener is closed"
    );
    ensure!(matches!(
        leech.add_peers([leecher_addr]).await,
        Err(kino_swarm::TorrentError::Stopped)
    ));
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_takes_no_more_peers_than_its_limit() -> Result<()> {
    let film = Film::new(MIB, 64 * KIB as u32, 11);
    common::logs();
    let seeding = Session::new(SessionConfig {
        listen: Some("127.0.0.1:0".parse()?),
        max_peers_per_torrent: 1,
        ..SessionConfig::default()
    })
    .await?;
    let seed = seeding.add_torrent(film.spec(
        film.full_storage(),
        Role::Seed,
        TorrentOptions::default(),
    ))?;
    wait_status(&seed, "the seed is live", |s| s.state == TorrentState::Live).await?;

    let mut first = Scripted::connect(addr(&seeding)?, film.info_hash).await?;
    ensure!(matches!(first.next().await?, Some(Message::Bitfield(_))));
    let second = Scripted::connect(addr(&seeding)?, film.info_hash).await;
    ensure!(
        second.is_err(),
        "the second peer's handshake is not answered: the connection closes"
    );
    ensure!(seed.status().peers == 1);

    // The first leaves: there is room again.
    drop(first);
    wait_status(&seed, "the first peer is gone", |s| s.peers == 0).await?;
    let mut third = Scripted::connect(addr(&seeding)?, film.info_hash).await?;
    ensure!(matches!(third.next().await?, Some(Message::Bitfield(_))));

    drop(third);
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_holds_the_only_half_open_slot() -> Result<()> {
    let film = Film::new(MIB, 64 * KIB as u32, 12);
    common::logs();
    let seeding = Session::new(SessionConfig {
        listen: Some("127.0.0.1:0".parse()?),
        max_half_open: 1,
        ..SessionConfig::default()
    })
    .await?;
    let seed = seeding.add_torrent(film.spec(
        film.full_storage(),
        Role::Seed,
        TorrentOptions::default(),
    ))?;
    wait_status(&seed, "the seed is live", |s| s.state == TorrentState::Live).await?;
    let at = addr(&seeding)?;

    // A connection that sends nothing holds the slot; the next one is closed at once.
    let stalled = tokio::net::TcpStream::connect(at).await?;
    let mut refused = tokio::net::TcpStream::connect(at).await?;
    let mut byte = [0u8; 1];
    let read = bounded("the refused connection", refused.read(&mut byte)).await?;
    ensure!(
        matches!(read, Ok(0) | Err(_)),
        "refused without a byte: {read:?}"
    );

    // The stalled one finishes its handshake: the slot is free again.
    let mut stalled = Scripted {
        stream: stalled,
        decoder: kino_swarm::Decoder::new(),
    };
    stalled.handshake_first(film.info_hash).await?;
    ensure!(matches!(stalled.next().await?, Some(Message::Bitfield(_))));
    let mut next = Scripted::connect(at, film.info_hash).await?;
    ensure!(matches!(next.next().await?, Some(Message::Bitfield(_))));

    drop((stalled, next));
    shut(&seeding).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_torrent_closes_its_peers_and_resumes() -> Result<()> {
    let film = Film::new(2 * MIB, 64 * KIB as u32, 13);
    let (seeding, seed) = seeder(&film, Some(512 * KIB as u64)).await?;
    let leeching = Session::new(SessionConfig::default()).await?;
    let store = film.empty_storage();
    let leech = leeching.add_torrent(film.spec(
        store.clone(),
        Role::Download,
        TorrentOptions::default(),
    ))?;
    leech.add_peers([addr(&seeding)?]).await?;
    wait_status(&leech, "a first piece", |s| s.verified > 0).await?;

    leech.pause().await?;
    let paused = leech.status();
    ensure!(
        paused.state == TorrentState::Paused && paused.peers == 0,
        "{paused:?}"
    );
    wait_status(&seed, "the seed sees the leecher go", |s| s.peers == 0).await?;

    leech.resume().await?;
    wait_status(&leech, "the download completes after the resume", |s| {
        s.is_complete()
    })
    .await?;
    ensure!(store.contents() == *film.data);

    shut(&leeching).await?;
    shut(&seeding).await?;
    Ok(())
}

/// A storage whose writes take 20 ms each: a slow disk, so pieces arrive faster than
/// they can be stored.
struct SlowDisk(MemoryStorage);

impl Storage for SlowDisk {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), kino_swarm::StorageError> {
        self.0.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), kino_swarm::StorageError> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.0.write_at(offset, data)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_blocks_stay_within_their_bound() -> Result<()> {
    // A fast seed, a slow disk, a leecher allowed 256 KiB of unverified blocks and 8
    // requests in flight: new pieces wait while the buffers (and the pieces waiting for
    // their hash and write) are over the bound, so memory stays under the bound plus one
    // piece per request, however far the disk lags.
    let piece_len = 64 * KIB;
    let film = Film::new(4 * MIB, piece_len as u32, 14);
    let (seeding, _seed) = seeder(&film, None).await?;
    let leeching = Session::new(SessionConfig::default()).await?;
    let bound = 256 * KIB;
    let disk = Arc::new(SlowDisk(MemoryStorage::empty(film.data.len())));
    let leech = leeching.add_torrent(TorrentSpec {
        info_hash: film.info_hash,
        geometry: film.geometry,
        piece_hashes: film.hashes.clone(),
        storage: disk.clone(),
        role: Role::Download,
        options: TorrentOptions {
            max_buffered_bytes: bound,
            scheduler: SchedulerConfig {
                max_pipeline: 8,
                initial_pipeline: 8,
                ..SchedulerConfig::default()
            },
            ..TorrentOptions::default()
        },
    })?;
    let mut watch = leech.watch();
    let peak = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            let status = watch.borrow_and_update().clone();
            peak = peak.max(status.buffered);
            if status.is_complete() || watch.changed().await.is_err() {
                return peak;
            }
        }
    });
    leech.add_peers([addr(&seeding)?]).await?;
    let peak = bounded("the download", peak).await??;
    ensure!(disk.0.contents() == *film.data);
    ensure!(
        peak <= bound + 8 * piece_len,
        "at most {} bytes buffered, {peak} seen",
        bound + 8 * piece_len
    );
    ensure!(leech.status().buffered == 0, "nothing left buffered");

    shut(&leeching).await?;
    shut(&seeding).await?;
    Ok(())
}
