//! Throughput: a big file, unthrottled (BENCHMARKS.md's scenario 5).

use super::{Config, SEED, make_film, single_link};
use crate::clients::{self, Kind, Tools, ViewSpec};
use crate::metrics;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A throughput run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputFigures {
    /// Client.
    pub client: Kind,
    /// MB/s from spawn to the last byte.
    pub mb_s: Option<f64>,
    /// CPU seconds per GiB.
    pub cpu_s_per_gib: Option<f64>,
    /// Peak RSS, MiB.
    pub rss_mib: Option<f64>,
    /// Error or why skipped.
    pub error: Option<String>,
}

/// Each of `cfg.clients` in turn reads a film of `cfg.throughput_bytes` from one unthrottled
/// seeder: MB/s from spawn to the last byte, CPU seconds per GiB, peak RSS.
pub(super) async fn run(
    cfg: &Config,
    tools: &Tools,
    bitrate: f64,
) -> anyhow::Result<Vec<ThroughputFigures>> {
    let size = cfg.throughput_bytes;
    let (torrent, _) = make_film(tools, &cfg.work.join("bigfilm"), size, cfg.piece_length)?;
    let logs = cfg.work.join("throughput");
    let link = single_link(tools, None, &torrent, 0, &logs).await?;
    let mut out = Vec::new();
    for &k in &cfg.clients {
        if let Some(why) = tools.missing(k) {
            out.push(ThroughputFigures {
                client: k,
                mb_s: None,
                cpu_s_per_gib: None,
                rss_mib: None,
                error: Some(why),
            });
            continue;
        }
        let spec = ViewSpec {
            torrent: torrent.clone(),
            peers: vec![link.seeder.addr.clone()],
            size,
            seed: SEED,
            bitrate,
            startup_bytes: 0,
            seeks: Vec::new(),
            seek_bytes: 0,
            share: true,
            deadline: cfg.deadline.max(Duration::from_secs(300)),
            player_watch: None,
        };
        let dir = logs.join(k.name());
        let r = clients::view(k, tools, link.viewer(), &spec, &dir).await;
        let _ = std::fs::remove_dir_all(dir.join("data"));
        let gib = size as f64 / (1u64 << 30) as f64;
        let f = match r {
            Ok(run) if run.report.ok => {
                let secs = metrics::time_to_bytes(&run, size).unwrap_or(f64::NAN);
                ThroughputFigures {
                    client: k,
                    mb_s: Some(size as f64 / 1e6 / secs),
                    cpu_s_per_gib: run.cpu_s.map(|c| c / gib),
                    rss_mib: run.peak_rss_kib.map(|r| r as f64 / 1024.0),
                    error: None,
                }
            }
            Ok(run) => ThroughputFigures {
                client: k,
                mb_s: None,
                cpu_s_per_gib: None,
                rss_mib: None,
                error: run.report.error,
            },
            Err(e) => ThroughputFigures {
                client: k,
                mb_s: None,
                cpu_s_per_gib: None,
                rss_mib: None,
                error: Some(format!("{e:#}")),
            },
        };
        eprintln!(
            "  throughput {:10} {:?} MB/s, {:?} CPU s/GiB, {:?} MiB peak RSS {}",
            k.name(),
            f.mb_s,
            f.cpu_s_per_gib,
            f.rss_mib,
            f.error.clone().unwrap_or_default()
        );
        out.push(f);
    }
    drop(link);
    Ok(out)
}
