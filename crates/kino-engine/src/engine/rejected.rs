//! Counting pieces that failed verification, for the "peers sent bad data" status.
//!
//! librqbit 9.1 keeps no count of failed hash checks. What it does on one: it drops the piece,
//! requeues it, and disconnects the peer that sent it with an error (and reconnects later,
//! with a backoff). Its per-peer counters therefore tell the story: a peer that never
//! delivered a verified piece, yet sent at least a piece's worth of data and was disconnected
//! with an error, had its pieces rejected; each such disconnection is one rejected piece (a
//! connection ends at the first one), and there cannot have been more rejected pieces than
//! whole pieces' worth of data fetched.
//!
//! Peers that delivered verified pieces are not counted: a good peer that drops its connection
//! mid-piece also leaves an error and unverified data behind, and must not be blamed. So the
//! count is a lower bound, exact for a peer that sends nothing but corrupt pieces — the case
//! where the user would otherwise read "no peer reachable".

use serde::Deserialize;
use serde::de::value::{Error as ValueError, MapDeserializer};

use super::Entry;

/// Pieces that failed verification, by the counters of peers that never sent a good one.
pub(super) fn rejected_pieces(entry: &Entry) -> u64 {
    let Some(live) = entry.handle.live() else {
        return 0;
    };
    let piece_len = u64::from(entry.info.piece_length.max(1));
    let peers = live.per_peer_stats_snapshot(all_peers());
    peers
        .peers
        .values()
        .map(|p| &p.counters)
        .filter(|c| c.downloaded_and_checked_pieces == 0)
        .map(|c| u64::from(c.errors).min(c.fetched_bytes / piece_len))
        .sum()
}

/// librqbit's per-peer filter for every peer, dead or alive. Its state enum is not exported
/// by name, so the value is made the way its HTTP API makes it: deserialized from
/// `{state: "all"}`. Should that ever fail, live peers only (the default) are counted.
fn all_peers<T: for<'de> Deserialize<'de> + Default>() -> T {
    let fields = std::iter::once(("state", "all"));
    T::deserialize(MapDeserializer::<_, ValueError>::new(fields)).unwrap_or_default()
}
