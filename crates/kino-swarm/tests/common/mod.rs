//! Helpers of the swarm tests: films, sessions on loopback, bounded waits, and a scripted
//! raw-TCP peer that speaks the wire protocol through the crate's own codec.

#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use kino_swarm::{
    Decoder, Geometry, Handshake, MemoryStorage, Message, Reserved, Role, Session, SessionConfig,
    Torrent, TorrentOptions, TorrentSpec, TorrentStatus,
};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Logs to the test's output, filtered by `RUST_LOG` (nothing by default).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Every wait of these tests is bounded by this (generous: the machine is shared).
pub const WAIT: Duration = Duration::from_secs(90);

/// Deterministic pseudo-random bytes.
pub fn film(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A film's shape and hashes.
#[derive(Clone)]
pub struct Film {
    pub data: Arc<Vec<u8>>,
    pub geometry: Geometry,
    pub hashes: Vec<[u8; 20]>,
    pub info_hash: [u8; 20],
}

impl Film {
    pub fn new(len: usize, piece_len: u32, seed: u64) -> Film {
        let data = film(len, seed);
        let geometry = Geometry::new(len as u64, piece_len).expect("a film is not empty");
        let hashes: Vec<[u8; 20]> = data
            .chunks(piece_len as usize)
            .map(|piece| Sha1::digest(piece).into())
            .collect();
        let info_hash = Sha1::digest(hashes.concat()).into();
        Film {
            data: Arc::new(data),
            geometry,
            hashes,
            info_hash,
        }
    }

    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn spec(
        &self,
        storage: Arc<MemoryStorage>,
        role: Role,
        options: TorrentOptions,
    ) -> TorrentSpec {
        TorrentSpec {
            info_hash: self.info_hash,
            geometry: self.geometry,
            piece_hashes: self.hashes.clone(),
            storage,
            role,
            options,
        }
    }

    /// A seed's storage: every byte.
    pub fn full_storage(&self) -> Arc<MemoryStorage> {
        Arc::new(MemoryStorage::with_data(self.data.to_vec()))
    }

    /// A leecher's storage: nothing.
    pub fn empty_storage(&self) -> Arc<MemoryStorage> {
        Arc::new(MemoryStorage::empty(self.data.len()))
    }
}

/// A session on 127.0.0.1 with an ephemeral port.
pub async fn listening(upload_rate: Option<u64>) -> Result<Session> {
    logs();
    Ok(Session::new(SessionConfig {
        listen: Some("127.0.0.1:0".parse()?),
        upload_rate,
        ..SessionConfig::default()
    })
    .await?)
}

/// The address a listening session is reached at.
pub fn addr(session: &Session) -> Result<SocketAddr> {
    session.local_addr().context("the session does not listen")
}

/// A seeding session with the whole film, checked and live.
pub async fn seeder(film: &Film, upload_rate: Option<u64>) -> Result<(Session, Torrent)> {
    let session = listening(upload_rate).await?;
    let torrent = session.add_torrent(film.spec(
        film.full_storage(),
        Role::Seed,
        TorrentOptions::default(),
    ))?;
    wait_status(&torrent, "the seed is checked", |s| {
        s.is_complete() && s.state == kino_swarm::TorrentState::Live
    })
    .await?;
    Ok((session, torrent))
}

/// Waits (bounded) until the torrent's status satisfies `done`.
pub async fn wait_status(
    torrent: &Torrent,
    what: &str,
    done: impl FnMut(&TorrentStatus) -> bool,
) -> Result<TorrentStatus> {
    let mut watch = torrent.watch();
    let waited = tokio::time::timeout(WAIT, watch.wait_for(done)).await;
    match waited {
        Ok(Ok(status)) => Ok(status.clone()),
        Ok(Err(_)) => bail!("waiting for {what}: the torrent is gone"),
        Err(_) => bail!("timed out waiting for {what}: {:?}", torrent.status()),
    }
}

/// Runs `future` under the test's bound.
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(WAIT, future)
        .await
        .with_context(|| format!("timed out: {what}"))
}

/// Shuts a session down and checks that no task is left.
pub async fn shut(session: &Session) -> Result<()> {
    bounded("session shutdown", session.shutdown()).await?;
    let left = session.running_tasks();
    if session.task_count() != 0 {
        bail!(
            "tasks left after shutdown: {} {left:?}",
            session.task_count()
        );
    }
    Ok(())
}

/// A raw-TCP peer driven by the test, speaking through the crate's codec.
pub struct Scripted {
    pub stream: TcpStream,
    pub decoder: Decoder,
}

impl Scripted {
    /// Accepts one connection on `listener` and answers its handshake for `info_hash`.
    pub async fn accept(listener: &TcpListener, info_hash: [u8; 20]) -> Result<Scripted> {
        let (stream, _) = bounded("a connection to the scripted peer", listener.accept()).await??;
        let mut peer = Scripted {
            stream,
            decoder: Decoder::new(),
        };
        let theirs = peer.read_handshake().await?;
        if theirs.info_hash != info_hash {
            bail!("handshake for another torrent");
        }
        peer.send_handshake(info_hash).await?;
        Ok(peer)
    }

    /// Connects to a session and handshakes for `info_hash`.
    pub async fn connect(addr: SocketAddr, info_hash: [u8; 20]) -> Result<Scripted> {
        let stream = bounded("connect", TcpStream::connect(addr)).await??;
        let mut peer = Scripted {
            stream,
            decoder: Decoder::new(),
        };
        peer.send_handshake(info_hash).await?;
        let theirs = peer.read_handshake().await?;
        if theirs.info_hash != info_hash {
            bail!("handshake for another torrent");
        }
        Ok(peer)
    }

    /// On a connection already open: sends our handshake and reads the session's.
    pub async fn handshake_first(&mut self, info_hash: [u8; 20]) -> Result<()> {
        self.send_handshake(info_hash).await?;
        let theirs = self.read_handshake().await?;
        if theirs.info_hash != info_hash {
            bail!("handshake for another torrent");
        }
        Ok(())
    }

    async fn send_handshake(&mut self, info_hash: [u8; 20]) -> Result<()> {
        // Each scripted peer its own id (a session refuses a second connection of one id).
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut peer_id = *b"-TEST00-scripted0000";
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        peer_id[16..].copy_from_slice(format!("{:04}", n % 10_000).as_bytes());
        let ours = Handshake {
            reserved: Reserved::NONE,
            info_hash,
            peer_id,
        };
        self.stream.write_all(&ours.to_bytes()).await?;
        Ok(())
    }

    async fn read_handshake(&mut self) -> Result<Handshake> {
        loop {
            if let Some(handshake) = self.decoder.next_handshake()? {
                return Ok(handshake);
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes; an error at end of stream.
    async fn fill(&mut self) -> Result<()> {
        let mut buf = [0u8; 16 * 1024];
        let n = bounded("bytes from the session", self.stream.read(&mut buf)).await??;
        if n == 0 {
            bail!("end of stream");
        }
        self.decoder.feed(&buf[..n]);
        Ok(())
    }

    /// The next message; `None` once the session closed the connection.
    pub async fn next(&mut self) -> Result<Option<Message>> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            let mut buf = [0u8; 16 * 1024];
            let read = bounded("a message from the session", self.stream.read(&mut buf)).await?;
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.decoder.feed(&buf[..n]),
            }
        }
    }

    /// Sends messages in one write.
    pub async fn send(&mut self, messages: &[Message]) -> Result<()> {
        let mut out = BytesMut::new();
        for message in messages {
            message.encode(&mut out)?;
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }
}

/// A bitfield with every one of `pieces` set.
pub fn all_pieces(pieces: u32) -> bytes::Bytes {
    let mut bits = vec![0u8; pieces.div_ceil(8) as usize];
    for piece in 0..pieces {
        bits[(piece / 8) as usize] |= 0x80 >> (piece % 8);
    }
    bits.into()
}
