//! A reader on one file of a torrent: `AsyncRead + AsyncSeek`, waiting only for the piece
//! under its position.
//!
//! It wraps librqbit's `FileStream`, whose open position makes librqbit fetch the pieces
//! ahead of it first (a seek re-aims that window at once), and adds what Kino needs: a stream
//! slot from the engine's bounded pool (so streams cannot take every blocking-I/O permit and
//! stop the download), and a registration that tells the engine where readers are (for the
//! buffered-ahead figure) and that the torrent is in use (never evicted or paused).
//!
//! A reader waiting for a piece that cannot be stored (the torrent's disk is full) does not
//! wait forever: it is woken when the storage reports the full disk and ends with an
//! `ErrorKind::StorageFull` error, so an HTTP response ends with an error instead of
//! stalling. What is already on disk still reads.

use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::engine::{Entry, lock};

/// librqbit's stream type is public but not exported by name; Kino holds it as this.
pub(crate) trait ReadSeek: AsyncRead + AsyncSeek + Send + Unpin {}
impl<T: AsyncRead + AsyncSeek + Send + Unpin> ReadSeek for T {}

/// Marks a torrent in use while a stream is open, and publishes the reader's position.
pub(crate) struct StreamRegistration {
    entry: Arc<Entry>,
    id: u64,
    file: usize,
    background: bool,
}

impl StreamRegistration {
    pub(crate) fn new(entry: Arc<Entry>, file: usize) -> Self {
        entry.open_streams.fetch_add(1, Ordering::SeqCst);
        let id = entry.next_stream_id.fetch_add(1, Ordering::Relaxed);
        lock(&entry.positions).insert(id, (file, 0));
        StreamRegistration {
            entry,
            id,
            file,
            background: false,
        }
    }

    fn set_position(&self, pos: u64) {
        if !self.background {
            lock(&self.entry.positions).insert(self.id, (self.file, pos));
        }
    }
}

impl Drop for StreamRegistration {
    fn drop(&mut self) {
        lock(&self.entry.positions).remove(&self.id);
        self.entry.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A reader on one file of a torrent. Dropping it frees its stream slot.
pub struct KinoStream {
    inner: Box<dyn ReadSeek>,
    len: u64,
    position: u64,
    reg: StreamRegistration,
    /// Wakes a pending read when the disk becomes full.
    disk_full: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    _slot: OwnedSemaphorePermit,
}

impl KinoStream {
    pub(crate) fn new(
        inner: Box<dyn ReadSeek>,
        len: u64,
        reg: StreamRegistration,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        KinoStream {
            inner,
            len,
            position: 0,
            reg,
            disk_full: None,
            _slot: slot,
        }
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The current position.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The error a read gets when the piece it waits for cannot be stored, if the disk is
    /// full now; otherwise registers the task to be woken when it becomes full.
    fn poll_disk_full(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        let files = &self.reg.entry.files;
        // Turn 1 may find the signal of a full disk that was cleared since; turn 2 waits on
        // the fresh one.
        for _ in 0..2 {
            if files.is_disk_full() {
                return Some(disk_full_error(files.root()));
            }
            let wait = self
                .disk_full
                .get_or_insert_with(|| Box::pin(files.disk_full_signal().cancelled_owned()));
            match wait.as_mut().poll(cx) {
                Poll::Pending => return None,
                Poll::Ready(()) => self.disk_full = None,
            }
        }
        // Signals flipped under us twice: look again soon rather than sleep unwoken.
        cx.waker().wake_by_ref();
        None
    }

    /// A background stream (index prefetch) does not count as a player's position.
    pub(crate) fn set_background(&mut self, background: bool) {
        self.reg.background = background;
        if background {
            lock(&self.reg.entry.positions).remove(&self.reg.id);
        }
    }
}

impl AsyncRead for KinoStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.position += (buf.filled().len() - before) as u64;
                this.reg.set_position(this.position);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.poll_disk_full(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            // A torrent stopped by a full disk makes librqbit's reads fail: say why.
            Poll::Ready(Err(_)) if this.reg.entry.files.is_disk_full() => {
                Poll::Ready(Err(disk_full_error(this.reg.entry.files.root())))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncSeek for KinoStream {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let this = &mut *self;
        Pin::new(&mut this.inner).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_complete(cx);
        if let Poll::Ready(Ok(pos)) = r {
            this.position = pos;
            this.reg.set_position(pos);
        }
        r
    }
}

fn disk_full_error(dir: &std::path::Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        format!(
            "disk full: the piece cannot be stored in {} (free some space; the download resumes by itself)",
            dir.display()
        ),
    )
}
