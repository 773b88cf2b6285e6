//! A streaming reader of a byte range of a torrent: tokio's `AsyncRead + AsyncSeek`, driven
//! by the scheduler.
//!
//! The reader is registered as a scheduler stream; its position is the stream's playhead.
//! A read waits for the piece under its position to be verified, then reads the storage
//! on the blocking pool (at most to the end of that piece, and at most [`READ_CHUNK`]) and
//! hands out those bytes. A seek moves the playhead at once: the torrent task sees it,
//! and the scheduler cancels the requests that serve no deadline any more.
//!
//! # Invariants
//! - Only bytes of verified pieces are returned (read from the storage after the piece's bit
//!   is seen in the verified set, which is set only after the write).
//! - A wait ends with the piece, or with an error: the torrent stopped (then every read
//!   fails, verified pieces included), its writes failed ([`ReadError::Failed`], for a
//!   piece not verified), or, for a seed, the piece is not in its data. It never hangs on
//!   a torrent that cannot deliver.
//! - The playhead the task sees is the reader's position (updated on each seek and each
//!   time a read enters a new piece); dropping the reader ends its stream.
//! - At most [`READ_CHUNK`] bytes are buffered per reader.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use super::{FailReason, Role, Shared, StreamSlot, TorrentState};
use crate::storage::StorageError;

/// The most bytes one storage read fetches for a reader.
pub const READ_CHUNK: usize = 256 * 1024;

/// Why a read failed. It reaches the caller inside an [`io::Error`] (kind `StorageFull` for
/// a full disk, `Other` otherwise); `get_ref` and `downcast` give it back.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The torrent was stopped (or its session shut down).
    #[error("the torrent is stopped")]
    Stopped,
    /// The torrent cannot store the piece: the disk is full, or another write error.
    #[error("{0}")]
    Failed(FailReason),
    /// A seed does not have this piece in its data and never downloads.
    #[error("piece {piece} is not in the data this torrent seeds")]
    NotAvailable {
        /// The piece.
        piece: u32,
    },
    /// The storage could not read a verified piece.
    #[error("the torrent's data cannot be read: {0}")]
    Storage(#[from] StorageError),
}

impl From<ReadError> for io::Error {
    fn from(error: ReadError) -> Self {
        let kind = match &error {
            ReadError::Failed(FailReason::DiskFull) => io::ErrorKind::StorageFull,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

type ReadFuture = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// A reader of a byte range of a torrent. See the module docs.
pub struct Reader {
    shared: Arc<Shared>,
    slot: Arc<StreamSlot>,
    /// The torrent bytes it reads; positions are relative to `range.start`.
    range: Range<u64>,
    pos: u64,
    /// Bytes read from the storage at `pos`, not handed out yet.
    buffered: Bytes,
    /// The read in progress, of the bytes at `pos`.
    pending: Option<ReadFuture>,
    /// The piece the task last heard the playhead in.
    reported: Option<u32>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("range", &self.range)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, slot: Arc<StreamSlot>, range: Range<u64>) -> Self {
        let reported = shared.geo.piece_at(range.start);
        Reader {
            shared,
            slot,
            range,
            pos: 0,
            buffered: Bytes::new(),
            pending: None,
            reported,
        }
    }

    /// The length of the range it reads.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position (relative to the start of the range).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The media's bitrate in bytes/s, once the player knows it (`None`: unknown, the
    /// scheduler assumes its default). It sets how far ahead deadlines reach.
    pub fn set_bitrate(&self, bitrate: Option<u64>) {
        self.slot
            .bitrate
            .store(bitrate.unwrap_or(0), Ordering::Relaxed);
        self.shared.streams_changed.notify_one();
    }

    /// Moves to `pos` (relative), telling the task when the piece changes or `force`.
    fn move_to(&mut self, pos: u64, force: bool) {
        self.pos = pos;
        let absolute = self.range.start.saturating_add(pos).min(self.range.end);
        self.slot.playhead.store(absolute, Ordering::Release);
        let piece = self.shared.geo.piece_at(absolute);
        if force || piece != self.reported {
            self.reported = piece;
            self.shared.streams_changed.notify_one();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // The task holds a Weak to the slot: it removes the stream when it next looks.
        self.shared.streams_changed.notify_one();
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.buffered.is_empty() {
                let n = buf.remaining().min(this.buffered.len());
                buf.put_slice(&this.buffered.split_to(n));
                this.move_to(this.pos + n as u64, false);
                return Poll::Ready(Ok(()));
            }
            let left = this.len().saturating_sub(this.pos);
            if left == 0 || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let offset = this.range.start + this.pos;
            let shared = this.shared.clone();
            let pending = this
                .pending
                .get_or_insert_with(|| Box::pin(read_at(shared, offset, left)));
            match pending.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.pending = None;
                    this.buffered = result?;
                    if this.buffered.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl AsyncSeek for Reader {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let target = match position {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(delta) => this.len().checked_add_signed(delta),
            io::SeekFrom::Current(delta) => this.pos.checked_add_signed(delta),
        };
        let Some(target) = target else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            ));
        };
        if target != this.pos {
            this.pending = None;
            this.buffered = Bytes::new();
            this.move_to(target, true);
            this.slot.seeks.fetch_add(1, Ordering::Release);
            this.shared.streams_changed.notify_one();
        }
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

/// Waits for the piece holding torrent byte `offset` to be verified, then reads from
/// `offset` to the end of that piece (at most `left` and [`READ_CHUNK`] bytes).
async fn read_at(shared: Arc<Shared>, offset: u64, left: u64) -> io::Result<Bytes> {
    let geo = shared.geo;
    let Some(piece) = geo.piece_at(offset) else {
        return Ok(Bytes::new());
    };
    wait_verified(&shared, piece).await?;
    let piece_end = geo.piece_start(piece) + u64::from(geo.piece_size(piece));
    let len = (piece_end - offset).min(left).min(READ_CHUNK as u64) as usize;
    let storage = shared.storage.clone();
    let job = shared.tasks.spawn_blocking("reader read", move || {
        let mut data = vec![0u8; len];
        storage.read_at(offset, &mut data).map(|()| data)
    });
    let data = job
        .await
        .map_err(io::Error::other)?
        .map_err(ReadError::Storage)?;
    Ok(Bytes::from(data))
}

/// Waits until `piece` is verified, or fails when it cannot come.
async fn wait_verified(shared: &Shared, piece: u32) -> Result<(), ReadError> {
    // Subscribe before looking: a verification after the look wakes the wait below.
    let mut status = shared.status.subscribe();
    loop {
        {
            let now = status.borrow_and_update();
            let verified = shared.verified.contains(piece);
            match &now.state {
                TorrentState::Stopped => return Err(ReadError::Stopped),
                _ if verified => return Ok(()),
                TorrentState::Failed(reason) => return Err(ReadError::Failed(reason.clone())),
                TorrentState::Checking { .. } => {}
                _ if shared.role == Role::Seed => return Err(ReadError::NotAvailable { piece }),
                _ => {}
            }
        }
        if status.changed().await.is_err() {
            return Err(ReadError::Stopped);
        }
    }
}
