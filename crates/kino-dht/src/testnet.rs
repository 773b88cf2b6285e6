//! A private DHT on 127.0.0.1 for tests, benchmarks and the demo.
//!
//! Every node binds the loopback interface only. [`LocalTestnet::start`] builds a network whose
//! routing tables are filled up front (mainline's seeded testnet); [`LocalTestnet::join`] adds
//! nodes that bootstrap from an existing network the normal way. Dropping a `LocalTestnet`
//! stops its nodes (each node's thread exits once its last handle is gone), which is how tests
//! replace the nodes holding an item.

use std::net::Ipv4Addr;
use std::time::Duration;

use mainline::async_dht::AsyncDht;
use mainline::{Dht, Testnet};
use tokio::time::Instant;

use crate::DhtError;
use crate::node::DhtConfig;

/// Upper bound on nodes in one local testnet (each node is one OS thread and one socket).
pub const MAX_TESTNET_NODES: usize = 2000;

/// Nodes of a private DHT bound to 127.0.0.1.
#[derive(Debug)]
pub struct LocalTestnet {
    nodes: Vec<AsyncDht>,
    bootstrap: Vec<String>,
}

impl LocalTestnet {
    /// Start `n` server-mode nodes on 127.0.0.1 with seeded routing tables.
    ///
    /// Blocks the calling thread while the nodes bind (a few ms per node).
    pub fn start(n: usize) -> Result<Self, DhtError> {
        let n = n.clamp(1, MAX_TESTNET_NODES);
        let testnet = Testnet::builder(n)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
            .map_err(|source| DhtError::Bind {
                bind: format!("{} ({n} testnet nodes)", Ipv4Addr::LOCALHOST),
                source,
            })?;
        let Testnet { bootstrap, nodes } = testnet;
        Ok(Self {
            nodes: nodes.into_iter().map(Dht::as_async).collect(),
            bootstrap,
        })
    }

    /// Start `n` more server-mode nodes on 127.0.0.1 that bootstrap from `bootstrap` (usually
    /// another testnet's [`Self::bootstrap`]) and wait, at most `wait`, until each has found
    /// other nodes. The new nodes keep working when the network they joined through is gone.
    pub async fn join(n: usize, bootstrap: &[String], wait: Duration) -> Result<Self, DhtError> {
        let n = n.clamp(1, MAX_TESTNET_NODES);
        let mut nodes = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let node = Dht::builder()
                .server_mode()
                .bootstrap(bootstrap)
                .bind_address(Ipv4Addr::LOCALHOST)
                .build()
                .map_err(|source| DhtError::Bind {
                    bind: Ipv4Addr::LOCALHOST.to_string(),
                    source,
                })?
                .as_async();
            addrs.push(node.info().await.local_addr().to_string());
            nodes.push(node);
        }
        let deadline = Instant::now() + wait;
        for node in &nodes {
            // `bootstrapped` runs one find_node query; bounded by the deadline.
            let _ = tokio::time::timeout_at(deadline, node.bootstrapped()).await;
        }
        Ok(Self {
            nodes,
            bootstrap: addrs,
        })
    }

    /// The nodes' addresses, `127.0.0.1:PORT`, to bootstrap from.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the testnet has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A [`DhtConfig`] for a client on 127.0.0.1 bootstrapped from this testnet.
    pub fn client_config(&self) -> DhtConfig {
        DhtConfig::loopback(&self.bootstrap)
    }

    /// Stop all nodes (same as dropping). Their threads exit shortly after; use
    /// [`Self::shutdown`] to wait until every socket is closed.
    pub fn stop(self) {
        drop(self);
    }

    /// Stop all nodes and wait, at most `wait`, until every node's UDP port is free again
    /// (checked by binding it; polled every 20 ms). Returns how many ports were still busy.
    pub async fn shutdown(self, wait: Duration) -> usize {
        let addrs = self.bootstrap.clone();
        drop(self);
        let deadline = Instant::now() + wait;
        let mut busy = addrs;
        loop {
            busy.retain(|addr| std::net::UdpSocket::bind(addr.as_str()).is_err());
            if busy.is_empty() || Instant::now() >= deadline {
                return busy.len();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
