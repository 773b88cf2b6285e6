//! BEP 5 peer lookup on the same DHT node: a catalog or update torrent is found through its
//! pointer, and its seeders through `get_peers` on the pointer's own network, so a subscriber
//! needs nothing but the DHT to reach the swarm.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use mainline::Id;

use super::PointerDht;
use crate::DhtError;
use crate::pointer::INFOHASH_LEN;

/// Most peers one lookup collects.
pub const MAX_PEERS_PER_LOOKUP: usize = 200;

impl PointerDht {
    /// Announces this machine as a peer of `infohash` on `port` (the BitTorrent listen port).
    pub async fn announce_peer(
        &self,
        infohash: [u8; INFOHASH_LEN],
        port: u16,
    ) -> Result<(), DhtError> {
        let id = Id::from_bytes(infohash).map_err(|e| DhtError::Announce {
            infohash: hex::encode(infohash),
            reason: e.to_string(),
        })?;
        let limit = self.config().publish_timeout;
        match tokio::time::timeout(limit, self.dht.announce_peer(id, Some(port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(DhtError::Announce {
                infohash: hex::encode(infohash),
                reason: e.to_string(),
            }),
            Err(_) => Err(DhtError::Announce {
                infohash: hex::encode(infohash),
                reason: format!("no answer within {limit:?}"),
            }),
        }
    }

    /// Peers announced for `infohash`, collected for at most `wait` (or until
    /// [`MAX_PEERS_PER_LOOKUP`]); deduplicated.
    pub async fn get_peers(&self, infohash: [u8; INFOHASH_LEN], wait: Duration) -> Vec<SocketAddr> {
        let Ok(id) = Id::from_bytes(infohash) else {
            return Vec::new();
        };
        let mut stream = self.dht.get_peers(id);
        let mut out: Vec<SocketAddr> = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < MAX_PEERS_PER_LOOKUP {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(batch)) => {
                    for p in batch {
                        let p = SocketAddr::V4(p);
                        if !out.contains(&p) {
                            out.push(p);
                        }
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        out.truncate(MAX_PEERS_PER_LOOKUP);
        out
    }
}
