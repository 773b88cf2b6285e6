//! One origin, viewers joining staggered (BENCHMARKS.md's scenario 4).

use super::{Config, SEED, make_film, start_seeder};
use crate::clients::{self, Kind, Tools, ViewSpec};
use crate::metrics;
use crate::net::{Caps, Topology};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// A swarm run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmFigures {
    /// Client.
    pub client: Kind,
    /// Viewers upload to each other.
    pub share: bool,
    /// Origin bytes sent on the wire / file size.
    pub egress_ratio: f64,
    /// Startup of every viewer that started, s.
    pub startup: Vec<f64>,
    /// Viewers that read the whole file.
    pub completed: usize,
    /// Viewers.
    pub viewers: usize,
    /// Errors.
    pub errors: Vec<String>,
}

/// Runs the swarm for each of `cfg.swarm_clients`, sharing on then off, on a film of
/// `cfg.swarm_film_secs`; returns (film size, the runs). A client that is not installed gets one
/// run with no viewers and the reason as its error.
pub(super) async fn run(cfg: &Config, tools: &Tools) -> anyhow::Result<(u64, Vec<SwarmFigures>)> {
    let bitrate = cfg.bitrate_bps as f64 / 8.0;
    let startup_bytes = (cfg.startup_secs * bitrate) as u64;
    let swarm_size = (cfg.swarm_film_secs * bitrate) as u64;
    let (storrent, _) = make_film(
        tools,
        &cfg.work.join("swarmfilm"),
        swarm_size,
        cfg.piece_length,
    )?;
    let mut out = Vec::new();
    for &k in &cfg.swarm_clients {
        if let Some(why) = tools.missing(k) {
            out.push(SwarmFigures {
                client: k,
                share: true,
                egress_ratio: f64::NAN,
                startup: vec![],
                completed: 0,
                viewers: 0,
                errors: vec![why],
            });
            continue;
        }
        for share in [true, false] {
            let f = one_run(
                cfg,
                tools,
                k,
                share,
                &storrent,
                swarm_size,
                bitrate,
                startup_bytes,
            )
            .await?;
            eprintln!(
                "  swarm {:10} share {:5} origin egress {:.2}x file, startup p50 {:?} p95 {:?}, {}/{} complete",
                k.name(),
                share,
                f.egress_ratio,
                metrics::percentile(&f.startup, 50.0),
                metrics::percentile(&f.startup, 95.0),
                f.completed,
                f.viewers
            );
            out.push(f);
        }
    }
    Ok((swarm_size, out))
}

/// One swarm run: an origin seeder (capped at `cfg.swarm_origin_bps`) and
/// `cfg.swarm_viewers` viewers of client `k` joining `cfg.swarm_stagger` s apart, each given the
/// origin and, when `share`, the viewers before it.
#[allow(clippy::too_many_arguments)]
async fn one_run(
    cfg: &Config,
    tools: &Tools,
    k: Kind,
    share: bool,
    torrent: &Path,
    size: u64,
    bitrate: f64,
    startup_bytes: u64,
) -> anyhow::Result<SwarmFigures> {
    let mut caps = vec![Caps {
        up_bps: Some(cfg.swarm_origin_bps),
        down_bps: None,
    }];
    caps.extend((0..cfg.swarm_viewers).map(|_| Caps {
        up_bps: Some(cfg.swarm_viewer_bps),
        down_bps: None,
    }));
    let topo = Topology::new(&caps)?;
    let logs = cfg.work.join(format!("swarm-{}-{share}", k.name()));
    std::fs::create_dir_all(&logs)?;
    let seeder = start_seeder(
        tools,
        &topo,
        0,
        torrent,
        &torrent.with_extension(""),
        0,
        &logs,
    )
    .await?;
    let before = topo.tx_bytes(0)?;
    let mut tasks = Vec::new();
    let mut peers: Vec<String> = Vec::new();
    for i in 0..cfg.swarm_viewers {
        let node = topo.nodes[i + 1].clone();
        let mut dial = vec![seeder.addr.clone()];
        if share {
            dial.extend(peers.iter().cloned());
        }
        let spec = ViewSpec {
            torrent: torrent.to_path_buf(),
            peers: dial,
            size,
            seed: SEED,
            bitrate,
            startup_bytes,
            seeks: Vec::new(),
            seek_bytes: 0,
            share,
            deadline: cfg.deadline,
            player_watch: None,
        };
        peers.push(format!("{}:6881", node.ip));
        let tools = tools.clone();
        let dir = logs.join(format!("v{i}"));
        tasks.push(tokio::spawn(async move {
            clients::view_keep(k, &tools, &node, &spec, &dir).await
        }));
        tokio::time::sleep(Duration::from_secs_f64(cfg.swarm_stagger)).await;
    }
    let mut fig = SwarmFigures {
        client: k,
        share,
        egress_ratio: 0.0,
        startup: vec![],
        completed: 0,
        viewers: cfg.swarm_viewers,
        errors: vec![],
    };
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await);
    }
    let after = topo.tx_bytes(0)?;
    let mut keep = Vec::new();
    for d in done {
        match d {
            Ok(Ok((run, procs))) => {
                keep.push(procs);
                if let Some(t) = metrics::time_to_bytes(&run, startup_bytes) {
                    fig.startup.push(t);
                }
                if run.report.ok {
                    fig.completed += 1;
                } else {
                    fig.errors.push(run.report.error.unwrap_or_default());
                }
            }
            Ok(Err(e)) => fig.errors.push(format!("{e:#}")),
            Err(e) => fig.errors.push(format!("{e}")),
        }
    }
    fig.egress_ratio = (after - before) as f64 / size as f64;
    drop(keep);
    drop(seeder);
    drop(topo);
    Ok(fig)
}
