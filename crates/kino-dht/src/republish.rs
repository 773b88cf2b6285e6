//! The republisher: keeps a set of pointers alive on the DHT.
//!
//! DHT nodes drop items after about two hours. Every `interval` (default 50 minutes, so an
//! item survives one failed round) the task, for each address it keeps alive, in order:
//! 1. resolves it (this learns a newer seq if the publisher moved on, and refreshes the list
//!    of closest live nodes mainline puts to);
//! 2. re-puts the cache's held item unchanged with [`PointerDht::publish_signed`].
//!
//! Work is sequential and bounded: at most `max_items` addresses per round, each step bounded
//! by the node's resolve/publish timeouts, and the round stops at cancellation.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::address::PointerAddress;
use crate::node::PointerDht;

/// Default time between rounds: 50 minutes (items expire after about 2 hours).
pub const DEFAULT_REPUBLISH_INTERVAL: Duration = Duration::from_secs(50 * 60);

/// Republisher settings.
#[derive(Clone, Debug)]
pub struct RepublishConfig {
    /// Time from the end of one round to the start of the next. Default 50 minutes.
    /// The first round starts at once.
    pub interval: Duration,
    /// At most this many addresses are republished per round (the rest wait). Default 1024.
    pub max_items: usize,
}

impl Default for RepublishConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_REPUBLISH_INTERVAL,
            max_items: 1024,
        }
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Round number, from 1. 0 means no round has finished yet.
    pub round: u64,
    /// Items re-put successfully.
    pub republished: usize,
    /// Items whose put failed.
    pub failed: usize,
    /// Addresses with no held item (never resolved, nothing to republish).
    pub missing: usize,
    /// Addresses left for the next round because of `max_items` or cancellation.
    pub skipped: usize,
}

/// Owner of the republisher task. Dropping it cancels the task; [`Self::shutdown`] also waits.
#[must_use = "dropping the handle stops the republisher"]
#[derive(Debug)]
pub struct RepublisherHandle {
    addresses: Arc<Mutex<BTreeSet<PointerAddress>>>,
    now: Arc<Notify>,
    reports: watch::Receiver<RoundReport>,
    cancel: CancellationToken,
    _guard: DropGuard,
    task: Option<JoinHandle<()>>,
}

impl RepublisherHandle {
    /// Spawn the task (named `kino_dht::republisher` in its tracing span) on the current
    /// tokio runtime. `cancel` is the owner's token; the task stops when it is cancelled or
    /// when this handle is dropped.
    pub fn spawn(dht: PointerDht, config: RepublishConfig, cancel: CancellationToken) -> Self {
        let cancel = cancel.child_token();
        let addresses = Arc::new(Mutex::new(BTreeSet::new()));
        let now = Arc::new(Notify::new());
        let (tx, reports) = watch::channel(RoundReport::default());
        let task = Task {
            dht,
            config,
            addresses: Arc::clone(&addresses),
            now: Arc::clone(&now),
            reports: tx,
            cancel: cancel.clone(),
        };
        let span = tracing::info_span!("kino_dht::republisher");
        let task = tokio::spawn(task.run().instrument(span));
        Self {
            addresses,
            now,
            reports,
            _guard: cancel.clone().drop_guard(),
            cancel,
            task: Some(task),
        }
    }

    /// Keep `address` alive from the next round on.
    pub fn keep(&self, address: PointerAddress) {
        lock(&self.addresses).insert(address);
    }

    /// Stop keeping `address` alive.
    pub fn release(&self, address: &PointerAddress) {
        lock(&self.addresses).remove(address);
    }

    /// The addresses kept alive.
    pub fn addresses(&self) -> Vec<PointerAddress> {
        lock(&self.addresses).iter().cloned().collect()
    }

    /// Start a round now instead of at the next interval.
    pub fn republish_now(&self) {
        self.now.notify_one();
    }

    /// A receiver of the last finished round's report (for tests and status pages).
    pub fn reports(&self) -> watch::Receiver<RoundReport> {
        self.reports.clone()
    }

    /// Cancel the task and wait for it to end (at most the current put/resolve in flight).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "republisher task ended abnormally");
        }
    }
}

fn lock(
    set: &Mutex<BTreeSet<PointerAddress>>,
) -> std::sync::MutexGuard<'_, BTreeSet<PointerAddress>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Task {
    dht: PointerDht,
    config: RepublishConfig,
    addresses: Arc<Mutex<BTreeSet<PointerAddress>>>,
    now: Arc<Notify>,
    reports: watch::Sender<RoundReport>,
    cancel: CancellationToken,
}

impl Task {
    async fn run(self) {
        let mut round = 0u64;
        loop {
            round += 1;
            let report = tokio::select! {
                report = self.round(round) => report,
                () = self.cancel.cancelled() => break,
            };
            tracing::debug!(?report, "republish round done");
            self.reports.send_replace(report);
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = self.now.notified() => {}
                () = self.cancel.cancelled() => break,
            }
        }
        tracing::debug!("republisher stopped");
    }

    async fn round(&self, round: u64) -> RoundReport {
        let addresses: Vec<PointerAddress> = lock(&self.addresses).iter().cloned().collect();
        let mut report = RoundReport {
            round,
            skipped: addresses.len().saturating_sub(self.config.max_items),
            ..RoundReport::default()
        };
        for address in addresses.iter().take(self.config.max_items) {
            if let Err(error) = self.dht.resolve_detailed(address).await {
                tracing::debug!(error = %kino_core::Report(&error), "resolve before republish failed");
            }
            let Some(pointer) = self.dht.cache().get(address) else {
                report.missing += 1;
                continue;
            };
            match self.dht.publish_signed(&pointer).await {
                Ok(_) => report.republished += 1,
                Err(error) => {
                    tracing::info!(error = %kino_core::Report(&error), "republish failed");
                    report.failed += 1;
                }
            }
        }
        report
    }
}
