//! An idle timeout for stream responses: a reader that stops asking for data gives its stream
//! slot back.
//!
//! hyper polls a response body only while the socket takes data. A player that stops reading
//! (paused with its connection open, or gone without closing it) stops the polls, and the
//! [`kino_engine::KinoStream`] inside the body would hold one of the engine's few stream slots
//! for as long as the connection lives: 40 such connections made the 41st reader wait, then
//! fail. [`with_idle_timeout`] wraps the reader; a watchdog drops it once no read was asked
//! for during the timeout, which frees the slot, and the next read (if one ever comes) fails,
//! which ends the response. Players reconnect with a `Range` request.
//!
//! Idle means "not asked": a read that is waiting for pieces from the swarm (it returned
//! `Pending`) is not idle, however long the swarm takes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{Instrument, debug, debug_span};

/// A reader whose inner reader is dropped after `timeout` without a read.
pub(crate) struct IdleReader<R> {
    shared: Arc<Mutex<Watched<R>>>,
    /// Stops the watchdog when the response ends first.
    _watchdog: DropGuard,
}

struct Watched<R> {
    /// `None` once the watchdog took it.
    reader: Option<R>,
    /// When a read was last asked for.
    last_read: Instant,
    /// The last read is waiting for data (returned `Pending`): not idle.
    waiting: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wraps `reader` so that it is dropped after `timeout` in which no read was asked for.
/// Spawns the watchdog task, which ends when the reader is dropped either way.
pub(crate) fn with_idle_timeout<R: Send + 'static>(reader: R, timeout: Duration) -> IdleReader<R> {
    let shared = Arc::new(Mutex::new(Watched {
        reader: Some(reader),
        last_read: Instant::now(),
        waiting: false,
    }));
    let cancel = CancellationToken::new();
    let watched = Arc::downgrade(&shared);
    let stop = cancel.clone();
    tokio::spawn(
        async move {
            let mut deadline = Instant::now() + timeout;
            // Each turn either ends or moves the deadline forward by up to `timeout`.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => {}
                }
                let Some(shared) = watched.upgrade() else {
                    return;
                };
                let mut w = lock(&shared);
                let idle_until = w.last_read + timeout;
                if w.waiting {
                    deadline = Instant::now() + timeout;
                } else if idle_until > Instant::now() {
                    deadline = idle_until;
                } else {
                    let reader = w.reader.take();
                    drop(w);
                    drop(reader);
                    debug!(
                        idle_secs = timeout.as_secs_f64(),
                        "stream reader idle: slot released"
                    );
                    return;
                }
            }
        }
        .instrument(debug_span!("stream_idle_watchdog")),
    );
    IdleReader {
        shared,
        _watchdog: cancel.drop_guard(),
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for IdleReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut w = lock(&self.shared);
        w.last_read = Instant::now();
        let Some(reader) = w.reader.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the player read nothing for too long; its stream slot was released",
            )));
        };
        let r = Pin::new(reader).poll_read(cx, buf);
        w.waiting = r.is_pending();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Counts live readers, so the test sees when the watchdog dropped one.
    struct Tracked {
        _alive: Arc<()>,
        data: &'static [u8],
    }

    impl AsyncRead for Tracked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.data.len().min(buf.remaining()).min(1);
            buf.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(()))
        }
    }

    /// Never ready: a read waiting for pieces that do not come.
    struct Starved {
        _alive: Arc<()>,
    }

    impl AsyncRead for Starved {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn an_idle_reader_is_dropped_and_then_fails() {
        let alive = Arc::new(());
        let mut r = with_idle_timeout(
            Tracked {
                _alive: alive.clone(),
                data: b"abc",
            },
            Duration::from_millis(50),
        );
        let mut one = [0u8; 1];
        assert_eq!(r.read(&mut one).await.ok(), Some(1));
        // Then no read: the watchdog drops the reader (bounded wait, 10 s).
        for _ in 0..1000 {
            if Arc::strong_count(&alive) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(Arc::strong_count(&alive), 1, "the idle reader was kept");
        let err = r.read(&mut one).await.expect_err("reader is gone");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_reader_waiting_for_data_is_not_idle() {
        let alive = Arc::new(());
        let mut r = with_idle_timeout(
            Starved {
                _alive: alive.clone(),
            },
            Duration::from_millis(20),
        );
        let mut one = [0u8; 1];
        // Waiting for data many timeouts long: the watchdog looks and leaves it.
        let read = tokio::time::timeout(Duration::from_millis(500), r.read(&mut one)).await;
        assert!(read.is_err(), "nothing to read");
        assert_eq!(
            Arc::strong_count(&alive),
            2,
            "dropped while waiting for data"
        );
    }
}
