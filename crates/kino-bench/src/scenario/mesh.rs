//! Several slow seeders far away (BENCHMARKS.md's scenario 6).

use super::{ClientFigures, Config, Run, SEED, make_film, start_seeder, view_recorded};
use crate::clients::{Kind, Tools, ViewSpec};
use crate::metrics;
use crate::net::{Caps, Topology};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Several slow seeders far away: one viewer, several seeders, each slow and far away. The
/// aggregate uplink is what a viewer of a real swarm sees; which seeder gets the urgent piece,
/// and how many requests wait at a slow one, decide startup and seek here.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MeshConfig {
    /// Seeders (0: skip the scenario).
    pub seeders: usize,
    /// Each seeder's uplink cap, bit/s.
    pub uplink_bps: u64,
    /// Added RTT to each seeder, ms.
    pub rtt_ms: u64,
    /// Declared bitrate, bit/s.
    pub bitrate_bps: u64,
    /// Film length, s.
    pub film_secs: f64,
}

/// The figures of the several-slow-seeders scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshResults {
    /// What ran.
    pub config: MeshConfig,
    /// Film size, bytes.
    pub size: u64,
    /// Piece length.
    pub piece: u64,
    /// Physical limit of startup over the seeders' aggregate uplink, s.
    pub startup_limit: f64,
    /// Physical limit of a seek over the aggregate uplink (idle links), s.
    pub seek_limit: f64,
    /// Per client (startup, time to first byte and seeks; no playback run).
    pub clients: BTreeMap<Kind, ClientFigures>,
}

impl MeshResults {
    /// The physical limits over the seeders' aggregate uplink, from the recorded parameters.
    pub(super) fn compute_limits(&mut self, startup_secs: f64, seek_secs: f64) {
        let c = &self.config;
        let bitrate = c.bitrate_bps as f64 / 8.0;
        let rtt = c.rtt_ms as f64 / 1000.0;
        let up = c.uplink_bps as f64;
        self.startup_limit = metrics::startup_limit_links(
            (startup_secs * bitrate) as u64,
            self.piece,
            up,
            c.seeders,
            rtt,
        );
        self.seek_limit = metrics::seek_limit(
            self.size / 2,
            (seek_secs * bitrate) as u64,
            self.piece,
            up * c.seeders as f64,
            rtt,
        );
    }
}

/// `cfg.mesh.seeders` libtorrent seeders, each capped and behind its own delaying relay; one
/// viewer given all of them reads the first 10 s, then seeks to 30/60/90 %.
pub(super) async fn run(
    cfg: &Config,
    tools: &Tools,
    clients: &BTreeMap<Kind, ClientFigures>,
    active: &[Kind],
) -> anyhow::Result<MeshResults> {
    let m = &cfg.mesh;
    let bitrate = m.bitrate_bps as f64 / 8.0;
    let size = (m.film_secs * bitrate) as u64;
    let startup_bytes = (cfg.startup_secs * bitrate) as u64;
    let seek_bytes = (cfg.seek_secs * bitrate) as u64;
    let (torrent, piece) = make_film(tools, &cfg.work.join("meshfilm"), size, cfg.piece_length)?;
    let links = m.seeders;
    let mut out = MeshResults {
        config: m.clone(),
        size,
        piece,
        startup_limit: 0.0,
        seek_limit: 0.0,
        clients: clients.iter().map(|(k, f)| (*k, f.fresh())).collect(),
    };
    out.compute_limits(cfg.startup_secs, cfg.seek_secs);
    eprintln!(
        "mesh: film {size} bytes at {:.2} Mbit/s, {links} seeders of {:.1} Mbit/s each, RTT +{} ms; startup limit {:.2} s, seek limit {:.2} s",
        m.bitrate_bps as f64 / 1e6,
        m.uplink_bps as f64 / 1e6,
        m.rtt_ms,
        out.startup_limit,
        out.seek_limit
    );
    let mut caps: Vec<Caps> = (0..links)
        .map(|_| Caps {
            up_bps: Some(m.uplink_bps),
            down_bps: None,
        })
        .collect();
    caps.push(Caps::default());
    let topo = Topology::new(&caps)?;
    let logs = cfg.work.join("mesh-logs");
    std::fs::create_dir_all(&logs)?;
    let mut seeders = Vec::new();
    for i in 0..links {
        seeders.push(
            start_seeder(
                tools,
                &topo,
                i,
                &torrent,
                &torrent.with_extension(""),
                m.rtt_ms,
                &logs,
            )
            .await?,
        );
    }
    let viewer = &topo.nodes[links];
    for rep in 0..cfg.reps {
        let mut order = active.to_vec();
        order.rotate_left(rep % active.len());
        for &k in &order {
            let spec = ViewSpec {
                torrent: torrent.clone(),
                peers: seeders.iter().map(|s| s.addr.clone()).collect(),
                size,
                seed: SEED,
                bitrate,
                startup_bytes,
                seeks: cfg.seeks.clone(),
                seek_bytes,
                share: true,
                deadline: cfg.deadline,
                player_watch: None,
            };
            let dir = cfg.work.join(format!("mesh-{rep}-{}", k.name()));
            let f = out.clients.get_mut(&k).context("client")?;
            let run = Run {
                k,
                rep,
                phase: "mesh",
            };
            view_recorded(run, tools, viewer, &spec, &dir, f, None).await;
        }
    }
    drop(seeders);
    drop(topo);
    Ok(out)
}
