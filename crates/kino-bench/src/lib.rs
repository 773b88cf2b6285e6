//! Kino's benchmark: Kino against libtorrent, peerflix, WebTorrent and rqbit, in one run, on
//! the same scenario, as ratios.
//!
//! Every scenario is built in network namespaces the bench creates ([`net`]): a neutral
//! libtorrent seeder with a capped uplink (`tc tbf`), latency from a delaying TCP relay of the
//! bench's own ([`relay`]), and viewers whose HTTP streams are read by one reader
//! ([`reader`]) that checks every byte against the generated film ([`data`]), or played by mpv
//! driven over its IPC socket ([`player`], the real-film scenario). [`scenario`] runs startup,
//! playback, seek, swarm, throughput, several slow seeders and the real film; [`metrics`] turns arrival curves into
//! figures; [`report`] prints the table. Everything created is torn down on drop, also on
//! Ctrl-C (the binary drops the running scenario when a signal arrives).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod clients;
pub mod data;
pub mod metrics;
pub mod net;
pub mod player;
pub mod reader;
pub mod relay;
pub mod report;
pub mod scenario;
