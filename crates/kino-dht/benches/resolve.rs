//! Resolve latency and GET packets per resolve on a loopback DHT testnet, by network size.
//!
//! `cargo bench -p kino-dht --bench resolve -- [SIZES...] [--keys K]`
//! (defaults: sizes 50 100 300, 20 keys each). Prints a Markdown table. Not a test: nothing
//! is asserted about time. Loopback only.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kino_dht::{DhtConfig, LocalTestnet, PointerAddress, PointerDht, SigningKey};

struct Row {
    nodes: usize,
    keys: usize,
    found: usize,
    done_p50: Duration,
    done_p95: Duration,
    first_p50: Duration,
    first_p95: Duration,
    queried_p50: u32,
    queried_p95: u32,
    publish_p50: Duration,
}

fn pct<T: Copy + Ord>(v: &mut [T], p: f64) -> Option<T> {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied()
}

async fn run(nodes: usize, keys: usize) -> Result<Row> {
    let net = LocalTestnet::start(nodes)?;
    let config = DhtConfig {
        resolve_timeout: Duration::from_secs(15),
        ..net.client_config()
    };
    let publisher = PointerDht::new(config.clone())?;
    // The reader bootstraps from one node only, like a real client from one router.
    let reader = PointerDht::new(DhtConfig {
        bootstrap: net.bootstrap()[nodes / 2..nodes / 2 + 1].to_vec(),
        ..config
    })?;
    if !reader.bootstrapped().await || !publisher.bootstrapped().await {
        bail!("clients did not bootstrap on the {nodes}-node testnet");
    }

    let mut publish = Vec::with_capacity(keys);
    let mut addresses = Vec::with_capacity(keys);
    for i in 0..keys {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        seed[8..16].copy_from_slice(&(nodes as u64).to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let started = std::time::Instant::now();
        publisher
            .publish(&key, Some(b"bench"), [i as u8; 20], 1, None)
            .await
            .with_context(|| format!("publish key {i}"))?;
        publish.push(started.elapsed());
        addresses.push(PointerAddress::new(
            key.verifying_key().to_bytes(),
            Some(b"bench"),
        )?);
    }

    let (mut done, mut first, mut queried) = (Vec::new(), Vec::new(), Vec::new());
    let mut found = 0;
    for address in &addresses {
        let res = reader.resolve_detailed(address).await?;
        if res.resolved.is_some() {
            found += 1;
        }
        done.push(res.stats.elapsed);
        if let Some(f) = res.stats.first_value_after {
            first.push(f);
        }
        if let Some(q) = res.stats.nodes_queried {
            queried.push(q);
        }
    }
    let zero = Duration::ZERO;
    Ok(Row {
        nodes,
        keys,
        found,
        done_p50: pct(&mut done, 0.5).unwrap_or(zero),
        done_p95: pct(&mut done, 0.95).unwrap_or(zero),
        first_p50: pct(&mut first, 0.5).unwrap_or(zero),
        first_p95: pct(&mut first, 0.95).unwrap_or(zero),
        queried_p50: pct(&mut queried, 0.5).unwrap_or(0),
        queried_p95: pct(&mut queried, 0.95).unwrap_or(0),
        publish_p50: pct(&mut publish, 0.5).unwrap_or(zero),
    })
}

fn main() -> Result<()> {
    let mut sizes = Vec::new();
    let mut keys = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keys" => keys = args.next().context("--keys N")?.parse()?,
            "--bench" => {}
            other => sizes.push(
                other
                    .parse::<usize>()
                    .with_context(|| format!("size {other}"))?,
            ),
        }
    }
    if sizes.is_empty() {
        sizes = vec![50, 100, 300];
    }
    let keys = keys.clamp(1, 200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "| nodes | resolves | found | complete p50 | complete p95 | first value p50 | first value p95 | GET packets p50 | GET packets p95 | publish p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let n = n.clamp(2, kino_dht::MAX_TESTNET_NODES);
        let r = rt.block_on(run(n, keys))?;
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.nodes,
            r.keys,
            r.found,
            ms(r.done_p50),
            ms(r.done_p95),
            ms(r.first_p50),
            ms(r.first_p95),
            r.queried_p50,
            r.queried_p95,
            ms(r.publish_p50)
        );
    }
    Ok(())
}
