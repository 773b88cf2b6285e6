//! Interop with a real libtorrent 2.0.8 DHT node (python3-libtorrent) on 127.0.0.1:
//! libtorrent reads the pointer Kino put (exact bytes), and Kino resolves the one libtorrent put.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{client, key, resolve_until, testnet};
use kino_dht::encode_pointer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const PYTHON: &str = "/usr/bin/python3";
/// libtorrent DHT nodes the script starts.
const LT_NODES: usize = 8;
/// Upper bound on each step of the script.
const STEP: Duration = Duration::from_secs(90);

async fn require_libtorrent() -> Result<()> {
    let out = Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "{PYTHON} cannot import libtorrent: run scripts/install-test-deps \
             (installs the Debian package python3-libtorrent) and run the tests again"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_reads_kino_items_and_kino_reads_libtorrent_items() -> Result<()> {
    require_libtorrent().await?;
    let net = testnet();

    // Kino publishes; infohash bytes include non-UTF-8 and bencode-looking bytes on purpose.
    let kino_key = key(20);
    let kino_salt = b"kino-catalog";
    let mut ih = [0u8; 20];
    ih.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = 0xf0 ^ (i as u8 * 13));
    ih[3] = b'e';
    ih[4] = b':';

    // libtorrent will publish this (seq = 1: it increments from the 0 it finds).
    let lt_seed = [21u8; 32];
    let lt_key = kino_dht::SigningKey::from_bytes(&lt_seed);
    let lt_salt = b"lt-catalog";
    let lt_ih = [0x5au8; 20];

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/libtorrent_interop.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .arg(net.bootstrap()[..8].join(","))
        .arg(LT_NODES.to_string())
        .arg(hex::encode(kino_key.verifying_key().as_bytes()))
        .arg(hex::encode(kino_salt))
        .arg(hex::encode(encode_pointer(&ih)))
        .arg(hex::encode(lt_seed))
        .arg(hex::encode(lt_salt))
        .arg(hex::encode(encode_pointer(&lt_ih)))
        .arg(hex::encode(lt_key.verifying_key().as_bytes()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawn /usr/bin/python3")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut next_line = async || -> Result<String> {
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .context("libtorrent script silent for too long")??
            .context("libtorrent script ended early")?;
        ensure!(!line.starts_with("FAIL"), "libtorrent script: {line}");
        Ok(line)
    };

    // 1. libtorrent nodes are up; Kino's client joins through them (see the script's doc:
    //    libtorrent cannot query mainline 8 nodes, so the items must live on libtorrent nodes).
    let ready = next_line().await?;
    let lt_addrs: Vec<String> = ready
        .strip_prefix("ready ")
        .context("expected `ready <addrs>`")?
        .split(',')
        .map(str::to_string)
        .collect();
    ensure!(lt_addrs.iter().all(|a| a.starts_with("127.0.0.1:")));
    let kino = client(&lt_addrs);
    let published = kino
        .publish(&kino_key, Some(kino_salt), ih, 1, None)
        .await?;
    ensure!(published.stored_at > 0);
    stdin.write_all(b"published\n").await?;
    stdin.flush().await?;

    // 2. (a) libtorrent read Kino's exact pointer bytes; (b) libtorrent put its own item.
    let get = next_line().await?;
    ensure!(get.starts_with("get ok: seq=1 "), "{get}");
    ensure!(get.ends_with(&hex::encode(encode_pointer(&ih))), "{get}");
    let put = next_line().await?;
    ensure!(put.starts_with("put ok: seq=1 "), "{put}");

    // 3. Kino resolves libtorrent's item.
    let got = resolve_until(&kino, &lt_key, Some(lt_salt), 5, |r| r.is_some())
        .await
        .context("Kino never resolved libtorrent's item")?;
    ensure!(got.seq() == 1 && got.infohash() == lt_ih);
    ensure!(got.pointer.value() == encode_pointer(&lt_ih).as_slice());

    stdin.write_all(b"done\n").await?;
    stdin.flush().await?;
    let status = tokio::time::timeout(STEP, child.wait()).await??;
    ensure!(status.success(), "libtorrent script exited with {status}");
    Ok(())
}
