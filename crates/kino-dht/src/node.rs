//! [`PointerDht`]: publish and resolve signed pointers over a `mainline` DHT node.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::errors::{ConcurrencyError, PutMutableError};
use mainline::{Dht, Id};
use tokio::time::Instant;

mod peers;

use crate::DhtError;
use crate::address::{PointerAddress, normalize_salt};
use crate::cache::{CacheOutcome, DEFAULT_CACHE_CAPACITY, PointerCache, judge};
use crate::error::key_hex;
use crate::pointer::INFOHASH_LEN;
use crate::signed::SignedPointer;

/// Upper bound on the values read from one GET query (a query visits a few dozen nodes).
const MAX_VALUES_PER_RESOLVE: u32 = 4096;

/// Configuration of a [`PointerDht`]. `Default` is a client for the public Mainline DHT.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Bootstrap nodes as `host:port`. Default: mainline's `DEFAULT_BOOTSTRAP_NODES`.
    /// An empty list starts a node with no bootstrap (the first node of a new network).
    pub bootstrap: Vec<String>,
    /// IPv4 address to bind. `None` lets mainline choose (all interfaces, needed on the public
    /// DHT). Tests and the demo set `Some(Ipv4Addr::LOCALHOST)`.
    pub bind_address: Option<Ipv4Addr>,
    /// UDP port. `None`: any free port.
    pub port: Option<u16>,
    /// Answer other nodes' queries and store items from the start. Default `false`: mainline's
    /// adaptive mode switches to server mode once it finds it is reachable.
    pub server_mode: bool,
    /// Per-request UDP timeout. `None`: mainline's default (2 s).
    pub request_timeout: Option<Duration>,
    /// Upper bound on one [`PointerDht::resolve`]. Default 15 s.
    pub resolve_timeout: Duration,
    /// Upper bound on one publish. Default 30 s.
    pub publish_timeout: Duration,
    /// Maximum number of addresses in the [`PointerCache`]. Default 4096.
    pub cache_capacity: usize,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            bootstrap: mainline::DEFAULT_BOOTSTRAP_NODES
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            bind_address: None,
            port: None,
            server_mode: false,
            request_timeout: None,
            resolve_timeout: Duration::from_secs(15),
            publish_timeout: Duration::from_secs(30),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

impl DhtConfig {
    /// A client on 127.0.0.1 bootstrapped from `bootstrap` (for tests, the demo, benchmarks).
    pub fn loopback(bootstrap: &[String]) -> Self {
        Self {
            bootstrap: bootstrap.to_vec(),
            bind_address: Some(Ipv4Addr::LOCALHOST),
            ..Self::default()
        }
    }
}

/// The result of a successful put.
#[derive(Clone, Debug)]
pub struct Published {
    /// The DHT target the item was stored under.
    pub target: Id,
    /// How many nodes acknowledged storing it.
    pub stored_at: u32,
    /// The item that was put.
    pub pointer: SignedPointer,
}

/// What a resolve found.
#[derive(Clone, Debug)]
pub struct ResolvedPointer {
    /// The newest verified item known after this resolve: the network's best, unless the
    /// cache already held a higher seq (a lower seq on the network is never followed).
    pub pointer: SignedPointer,
    /// The highest valid seq found on the network in this query, `None` if none was found
    /// (then `pointer` comes from the cache).
    pub network_seq: Option<i64>,
}

impl ResolvedPointer {
    /// The infohash of the catalog torrent.
    pub fn infohash(&self) -> [u8; INFOHASH_LEN] {
        self.pointer.infohash()
    }
    /// The seq of [`Self::pointer`].
    pub fn seq(&self) -> i64 {
        self.pointer.seq()
    }
}

/// Counters of one resolve, for diagnostics and the benchmark.
#[derive(Clone, Debug, Default)]
pub struct ResolveStats {
    /// Nodes sent a GET request (mainline sends one request per node, no retries): this is
    /// the number of GET packets this resolve sent. `None` if the query did not finish.
    pub nodes_queried: Option<u32>,
    /// Items received that passed mainline's signature check.
    pub values: u32,
    /// Items mainline refused (bad signature or target), from its counters.
    pub invalid_values: Option<u32>,
    /// Items with a valid signature that were refused by our second check or pointer format.
    pub refused_values: u32,
    /// Time until the first valid item arrived.
    pub first_value_after: Option<Duration>,
    /// Time until the query finished (or the timeout).
    pub elapsed: Duration,
    /// Whether the timeout ended the query.
    pub timed_out: bool,
}

/// A resolve's result plus its counters.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// What was found, if anything (network or cache).
    pub resolved: Option<ResolvedPointer>,
    /// What the query did.
    pub stats: ResolveStats,
}

/// A Mainline DHT node that publishes and resolves Kino pointers, with a cache of the last
/// verified item per address. Cheap to clone; the node stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct PointerDht {
    dht: AsyncDht,
    cache: Arc<PointerCache>,
    config: Arc<DhtConfig>,
}

impl PointerDht {
    /// Start a DHT node (binds its UDP socket now; bootstrapping continues in the background).
    ///
    /// This briefly blocks the calling thread while mainline's actor thread binds the socket.
    pub fn new(config: DhtConfig) -> Result<Self, DhtError> {
        let mut builder = Dht::builder();
        if config.bootstrap.is_empty() {
            builder.no_bootstrap();
        } else {
            for addr in &config.bootstrap {
                check_host_port(addr)?;
            }
            builder.bootstrap(&config.bootstrap);
        }
        if let Some(ip) = config.bind_address {
            builder.bind_address(ip);
        }
        if let Some(port) = config.port {
            builder.port(port);
        }
        if config.server_mode {
            builder.server_mode();
        }
        if let Some(timeout) = config.request_timeout {
            builder.request_timeout(timeout);
        }
        let dht = builder.build().map_err(|source| DhtError::Bind {
            bind: format!(
                "{}:{}",
                config
                    .bind_address
                    .map_or_else(|| "all interfaces".to_string(), |ip| ip.to_string()),
                config
                    .port
                    .map_or_else(|| "any".to_string(), |p| p.to_string())
            ),
            source,
        })?;
        Ok(Self {
            dht: dht.as_async(),
            cache: Arc::new(PointerCache::new(config.cache_capacity)),
            config: Arc::new(config),
        })
    }

    /// The local UDP address of this node.
    pub async fn local_addr(&self) -> SocketAddrV4 {
        self.dht.info().await.local_addr()
    }

    /// Whether the node found other nodes (runs a `find_node` query on its own id).
    pub async fn bootstrapped(&self) -> bool {
        self.dht.bootstrapped().await
    }

    /// The cache of verified items (export/import for persistence).
    pub fn cache(&self) -> &PointerCache {
        &self.cache
    }

    /// The configuration this node was started with.
    pub fn config(&self) -> &DhtConfig {
        &self.config
    }

    /// Sign and put a pointer to `infohash` under `signing_key` and `salt` with sequence `seq`.
    ///
    /// `cas`: the seq the caller last saw; storage nodes holding another seq refuse the put
    /// ([`DhtError::CasMismatch`]). Refused locally, before any packet, when the cache holds a
    /// higher seq ([`DhtError::NotMostRecent`]) or another value with the same seq
    /// ([`DhtError::SeqConflict`]). On success the item becomes the cache's held item.
    pub async fn publish(
        &self,
        signing_key: &SigningKey,
        salt: Option<&[u8]>,
        infohash: [u8; INFOHASH_LEN],
        seq: i64,
        cas: Option<i64>,
    ) -> Result<Published, DhtError> {
        let pointer = SignedPointer::sign(signing_key, normalize_salt(salt)?, infohash, seq)?;
        self.put(pointer, cas).await
    }

    /// Put an item signed by someone else, unchanged (subscribers keep a publisher's catalog
    /// alive this way). The item was verified when the [`SignedPointer`] was built.
    pub async fn publish_signed(&self, pointer: &SignedPointer) -> Result<Published, DhtError> {
        self.put(pointer.clone(), None).await
    }

    async fn put(&self, pointer: SignedPointer, cas: Option<i64>) -> Result<Published, DhtError> {
        let public_key = key_hex(pointer.public_key());
        if let Some(held) = self.cache.get(pointer.address()) {
            match judge(&held, &pointer) {
                CacheOutcome::Stale { held_seq } => {
                    return Err(DhtError::NotMostRecent {
                        public_key,
                        seq: pointer.seq(),
                        held: Some(held_seq),
                    });
                }
                CacheOutcome::Conflict { seq } => {
                    return Err(DhtError::SeqConflict { public_key, seq });
                }
                _ => {}
            }
        }
        let timeout = self.config.publish_timeout;
        let put = self.dht.put_mutable(pointer.to_mutable_item(), cas);
        let outcome = tokio::time::timeout(timeout, put)
            .await
            .map_err(|_| DhtError::Timeout {
                operation: "publish",
                public_key: public_key.clone(),
                after: timeout,
            })?
            .map_err(|error| match error {
                PutMutableError::Query(source) => DhtError::Put {
                    public_key: public_key.clone(),
                    source,
                },
                PutMutableError::Concurrency(ConcurrencyError::CasFailed) => {
                    DhtError::CasMismatch {
                        public_key: public_key.clone(),
                        cas: cas.unwrap_or_default(),
                    }
                }
                PutMutableError::Concurrency(ConcurrencyError::NotMostRecent) => {
                    DhtError::NotMostRecent {
                        public_key: public_key.clone(),
                        seq: pointer.seq(),
                        held: None,
                    }
                }
                PutMutableError::Concurrency(ConcurrencyError::ConflictRisk) => {
                    DhtError::SeqConflict {
                        public_key: public_key.clone(),
                        seq: pointer.seq(),
                    }
                }
            })?;
        tracing::debug!(key = %public_key, seq = pointer.seq(), stored_at = outcome.stored_at, "put pointer");
        self.cache.offer(pointer.clone())?;
        Ok(Published {
            target: outcome.target,
            stored_at: outcome.stored_at,
            pointer,
        })
    }

    /// Find the newest valid pointer for `public_key` and `salt`; see [`Self::resolve_detailed`].
    pub async fn resolve(
        &self,
        public_key: &[u8; 32],
        salt: Option<&[u8]>,
    ) -> Result<Option<ResolvedPointer>, DhtError> {
        let address = PointerAddress::new(*public_key, salt)?;
        Ok(self.resolve_detailed(&address).await?.resolved)
    }

    /// Query the DHT for `address`, keep the highest valid seq among all responses (each item
    /// is verified by mainline when decoded and again here, including the pointer format),
    /// merge it into the cache by the cache rules, and return the held item.
    ///
    /// Waits for the query to finish, at most `resolve_timeout`; on timeout the best item seen
    /// so far is used. Returns `resolved: None` only if neither the network nor the cache has
    /// an item. Cancel-safe: dropping the future loses nothing but this query's results.
    pub async fn resolve_detailed(&self, address: &PointerAddress) -> Result<Resolution, DhtError> {
        let started = Instant::now();
        let deadline = started + self.config.resolve_timeout;
        let query = self
            .dht
            .get_mutable_detailed(address.public_key(), address.salt(), None);
        let mut items = query.items;
        let mut stats = ResolveStats::default();
        let mut best: Option<SignedPointer> = None;
        while stats.values + stats.refused_values < MAX_VALUES_PER_RESOLVE {
            match tokio::time::timeout_at(deadline, items.next()).await {
                Ok(Some(item)) => match SignedPointer::from_mutable_item(&item) {
                    Ok(pointer) if pointer.address() == address => {
                        stats.values += 1;
                        stats
                            .first_value_after
                            .get_or_insert_with(|| started.elapsed());
                        best = Some(match best {
                            Some(b) if (b.seq(), b.value()) >= (pointer.seq(), pointer.value()) => {
                                b
                            }
                            _ => pointer,
                        });
                    }
                    Ok(_) | Err(_) => stats.refused_values += 1,
                },
                Ok(None) => break,
                Err(_) => {
                    stats.timed_out = true;
                    break;
                }
            }
        }
        if !stats.timed_out {
            // The values stream ends when the query is done; its outcome follows immediately.
            if let Ok(outcome) = tokio::time::timeout_at(deadline, query.outcome.recv()).await {
                stats.nodes_queried = Some(outcome.queried);
                stats.invalid_values = Some(outcome.invalid_values);
            }
        }
        stats.elapsed = started.elapsed();

        let network_seq = best.as_ref().map(SignedPointer::seq);
        if let Some(best) = best {
            match self.cache.offer(best) {
                Ok(outcome) => tracing::debug!(?outcome, "resolved pointer"),
                Err(error) => {
                    tracing::warn!(error = %kino_core::Report(&error), "resolved pointer not cached")
                }
            }
        }
        let resolved = self.cache.get(address).map(|pointer| ResolvedPointer {
            pointer,
            network_seq,
        });
        Ok(Resolution { resolved, stats })
    }
}

/// Syntax check of `host:port` without any DNS lookup.
fn check_host_port(addr: &str) -> Result<(), DhtError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(DhtError::BadBootstrap {
            addr: addr.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_syntax() {
        assert!(check_host_port("127.0.0.1:6881").is_ok());
        assert!(check_host_port("router.bittorrent.com:6881").is_ok());
        for bad in ["127.0.0.1", ":6881", "host:0", "host:port", "host:70000"] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_config_uses_mainline_bootstrap() {
        let config = DhtConfig::default();
        assert_eq!(
            config.bootstrap.len(),
            mainline::DEFAULT_BOOTSTRAP_NODES.len()
        );
        assert!(config.bind_address.is_none());
    }
}
