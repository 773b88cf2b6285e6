//! Startup, playback and seek on one seeder's link (BENCHMARKS.md's scenarios 1-3).
//!
//! One libtorrent seeder with a capped uplink (and the added RTT), one viewer node. Each
//! repetition runs every client twice, in the rotated order of that repetition: a linear
//! session (phase `play`: the whole file in order, so startup, time to first byte and the
//! player simulation's stalls), then a seek session (phase `seek`: the first seconds, then
//! each seek point). The two kinds of session are interleaved on the same link rather than run
//! as two scenarios, so drift over the run hits both alike.

use super::{BufferRuns, ClientFigures, Config, Run, SEED, single_link, view_recorded};
use crate::clients::{Kind, Tools, ViewSpec};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;

/// Runs `cfg.reps` repetitions of the linear and the seek session of every client in `active`
/// against the film `torrent` of `size` bytes, recording into `clients` (which holds a
/// [`ClientFigures`] for each of them), and keeps each client's buffer curve of the linear run
/// with the median startup, for the charts.
pub(super) async fn run(
    cfg: &Config,
    tools: &Tools,
    torrent: &Path,
    size: u64,
    active: &[Kind],
    clients: &mut BTreeMap<Kind, ClientFigures>,
) -> anyhow::Result<()> {
    let bitrate = cfg.bitrate_bps as f64 / 8.0;
    let startup_bytes = (cfg.startup_secs * bitrate) as u64;
    let seek_bytes = (cfg.seek_secs * bitrate) as u64;
    let link = single_link(
        tools,
        Some(cfg.uplink_bps),
        torrent,
        cfg.rtt_ms,
        &cfg.work.join("logs"),
    )
    .await?;
    let mut buffers: BufferRuns = BTreeMap::new();
    for rep in 0..cfg.reps {
        let mut order = active.to_vec();
        order.rotate_left(rep % active.len().max(1));
        for (phase, seeks) in [("play", Vec::new()), ("seek", cfg.seeks.clone())] {
            for &k in &order {
                let spec = ViewSpec {
                    torrent: torrent.to_path_buf(),
                    peers: vec![link.seeder.addr.clone()],
                    size,
                    seed: SEED,
                    bitrate,
                    startup_bytes,
                    seeks: seeks.clone(),
                    seek_bytes,
                    share: true,
                    deadline: cfg.deadline,
                    player_watch: None,
                };
                let dir = cfg.work.join(format!("run-{rep}-{phase}-{}", k.name()));
                let f = clients.get_mut(&k).context("client")?;
                let run = Run { k, rep, phase };
                view_recorded(
                    run,
                    tools,
                    link.viewer(),
                    &spec,
                    &dir,
                    f,
                    Some(&mut buffers),
                )
                .await;
            }
        }
    }
    // Chart the run with the median startup of each client.
    for (k, mut runs) in buffers {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(f) = clients.get_mut(&k)
            && !runs.is_empty()
        {
            f.buffer = runs.swap_remove(runs.len() / 2).1;
        }
    }
    drop(link);
    Ok(())
}
