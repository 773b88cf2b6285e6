//! A reader on one file of a torrent: `AsyncRead + AsyncSeek`, waiting only for the piece
//! under its position.
//!
//! It wraps librqbit's `FileStream`, whose open position makes librqbit fetch the pieces
//! ahead of it first (a seek re-aims that window at once), and adds what Kino needs: a stream
//! slot from the engine's bounded pool (so streams cannot take every blocking-I/O permit and
//! stop the download), and a registration that tells the engine where readers are (for the
//! buffered-ahead figure) and that the torrent is in use (never evicted or paused).

use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

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
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.position += (buf.filled().len() - before) as u64;
            this.reg.set_position(this.position);
        }
        r
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
