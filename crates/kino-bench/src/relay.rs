//! A delaying TCP relay: the kernel here has no netem, so latency is added by forwarding every
//! chunk `delay` after it was read, in each direction (RTT grows by twice `delay`). Runs as
//! `kino-bench relay` inside the seeder's namespace, so the seeder's uplink cap still applies.
//! In-flight data is bounded per direction by a bounded channel of 64 KiB chunks.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most connections relayed at once.
const MAX_CONNS: usize = 512;
/// Chunks queued per direction.
const QUEUE: usize = 256;

/// Relays every connection accepted on `listen` to `to`, delaying each direction by `delay`,
/// until the process is killed.
pub async fn run(listen: SocketAddr, to: SocketAddr, delay: Duration) -> anyhow::Result<()> {
    let l = TcpListener::bind(listen).await?;
    println!("relay listening on {}", l.local_addr()?);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    loop {
        let (a, _) = l.accept().await?;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(b) = TcpStream::connect(to).await {
                let _ = a.set_nodelay(true);
                let _ = b.set_nodelay(true);
                let (ar, aw) = a.into_split();
                let (br, bw) = b.into_split();
                let _ = tokio::join!(pump(ar, bw, delay), pump(br, aw, delay));
            }
        });
    }
}

async fn pump<R, W>(mut r: R, mut w: W, delay: Duration)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reading = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writing = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at + delay).await;
            if w.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reading, writing);
}
