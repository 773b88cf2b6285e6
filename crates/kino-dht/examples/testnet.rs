//! Start a loopback DHT testnet and print its bootstrap addresses (for manual interop checks).
//!
//! `cargo run -p kino-dht --example testnet -- [NODES] [SECONDS]` (defaults 30 nodes, 120 s).

use std::time::Duration;

use kino_dht::LocalTestnet;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let seconds: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(120)
        .min(3600);
    let net = LocalTestnet::start(nodes)?;
    println!("{}", net.bootstrap().join(","));
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    net.stop();
    Ok(())
}
