//! The one way this crate starts a task: [`Tasks::spawn`], with a name, a tracing span and
//! a cancellation token from the task's owner; blocking work goes through
//! [`Tasks::spawn_blocking`].
//!
//! Every task and blocking job is tracked, so the session can cancel its tasks and await
//! them all at shutdown, and tests can assert that none is left ([`Tasks::len`], with the
//! names of those still running in [`Tasks::running`] to say which one leaked).
//!
//! # Invariants
//! - `names` holds exactly the tasks and blocking jobs started and not finished (a guard
//!   inside each removes its entry when it ends, however it ends).
//! - A task never outlives its owner's token by more than its own clean-up: every task
//!   selects on the token it was given.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The tracked tasks of a session.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    names: Arc<Mutex<BTreeMap<u64, &'static str>>>,
    next: Arc<AtomicU64>,
}

/// Removes a task's name when the task ends (or is dropped before it ran).
struct NameGuard {
    names: Arc<Mutex<BTreeMap<u64, &'static str>>>,
    id: u64,
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Tasks {
    fn guard(&self, name: &'static str) -> NameGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, name);
        NameGuard {
            names: self.names.clone(),
            id,
        }
    }

    /// Starts `task(token)` as a tracked task named `name`, inside `span` (the caller's
    /// context: which torrent, which peer). `token` comes from the owner (a child of its own
    /// token): cancelling it must make the task end.
    pub(crate) fn spawn<F, Fut>(
        &self,
        name: &'static str,
        span: tracing::Span,
        token: CancellationToken,
        task: F,
    ) -> JoinHandle<()>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let guard = self.guard(name);
        let span = tracing::debug_span!(parent: &span, "task", name);
        let future = task(token);
        self.tracker.spawn(
            async move {
                let _guard = guard;
                future.await;
            }
            .instrument(span),
        )
    }

    /// Runs `job` on tokio's blocking pool, tracked like a task.
    pub(crate) fn spawn_blocking<F, R>(&self, name: &'static str, job: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let guard = self.guard(name);
        let span = tracing::Span::current();
        self.tracker.spawn_blocking(move || {
            let _guard = guard;
            span.in_scope(job)
        })
    }

    /// How many tasks and blocking jobs are running.
    pub(crate) fn len(&self) -> usize {
        self.tracker.len()
    }

    /// The names of the tasks and blocking jobs running, for diagnostics.
    pub(crate) fn running(&self) -> Vec<&'static str> {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .copied()
            .collect()
    }

    /// Waits until every tracked task has ended (the caller cancelled their tokens).
    pub(crate) async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}
