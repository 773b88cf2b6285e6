//! Network namespaces for one scenario: a hub namespace holding a bridge, and one namespace per
//! node joined to it by a veth pair. Addresses are 10.77.0.(i+1)/24 on the veths the bench made,
//! nothing else; there is no default route, so no packet can leave these namespaces.
//! Rates are capped with `tc tbf` on both ends of a node's veth (uplink on the node side,
//! downlink on the hub side). Everything is deleted when the [`Topology`] is dropped, after
//! every process still running inside is killed.

use anyhow::{Context, bail};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Prefix of every namespace the bench creates (`kb<pid>h`, `kb<pid>n<i>`).
const PREFIX: &str = "kb";

/// Link caps of one node, in bits per second (`None`: unthrottled).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// Node -> hub.
    pub up_bps: Option<u64>,
    /// Hub -> node.
    pub down_bps: Option<u64>,
}

/// One node: a namespace with `eth0` at `ip`.
#[derive(Debug, Clone)]
pub struct Node {
    /// Namespace name.
    pub ns: String,
    /// Address on its veth.
    pub ip: Ipv4Addr,
}

/// The namespaces of one scenario. Dropping it tears everything down.
#[derive(Debug)]
pub struct Topology {
    hub: String,
    /// Nodes in creation order; node 0 is 10.77.0.1.
    pub nodes: Vec<Node>,
    created: Vec<String>,
}

/// Runs `ip`/`tc` and fails with its stderr.
pub fn sh(prog: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {prog}"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails with a clear message when namespaces cannot be made here.
pub fn preflight() -> anyhow::Result<()> {
    sh("ip", &["-V"]).context("the `ip` command (iproute2) is needed")?;
    sh("tc", &["-V"]).context("the `tc` command (iproute2) is needed")?;
    let uid = sh("id", &["-u"]).unwrap_or_default();
    if uid.trim() != "0" {
        bail!("kino-bench needs root (network namespaces, veth, tc); run it as root");
    }
    Ok(())
}

/// Deletes namespaces left behind by a bench process that no longer exists (killed with -9).
pub fn remove_stale() {
    let Ok(list) = sh("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if pid.is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(name);
        let _ = sh("ip", &["netns", "del", name]);
    }
}

fn kill_all_in(ns: &str) {
    if let Ok(pids) = sh("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The tbf bucket size for a rate: large enough for GSO segments on veth.
pub fn tbf_burst(bps: u64) -> u64 {
    (bps / 8 / 50).max(64 * 1024)
}

/// tbf with a burst of [`tbf_burst`].
fn tbf(dev: &str, ns: &str, bps: u64) -> anyhow::Result<()> {
    let burst = tbf_burst(bps);
    sh(
        "tc",
        &[
            "-n",
            ns,
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            &format!("{bps}bit"),
            "burst",
            &burst.to_string(),
            "latency",
            "200ms",
        ],
    )?;
    Ok(())
}

impl Topology {
    /// Creates a hub and one node per entry of `caps`.
    pub fn new(caps: &[Caps]) -> anyhow::Result<Self> {
        if caps.len() > 200 {
            bail!("at most 200 nodes");
        }
        let pid = std::process::id();
        let hub = format!("{PREFIX}{pid}h");
        let mut t = Topology {
            hub: hub.clone(),
            nodes: Vec::new(),
            created: Vec::new(),
        };
        sh("ip", &["netns", "add", &hub])?;
        t.created.push(hub.clone());
        sh("ip", &["-n", &hub, "link", "set", "lo", "up"])?;
        sh("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        sh("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        for (i, c) in caps.iter().enumerate() {
            let ns = format!("{PREFIX}{pid}n{i}");
            sh("ip", &["netns", "add", &ns])?;
            t.created.push(ns.clone());
            let port = format!("v{i}");
            sh(
                "ip",
                &[
                    "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                    "netns", &hub,
                ],
            )?;
            let ip = Ipv4Addr::new(10, 77, 0, (i + 1) as u8);
            sh("ip", &["-n", &hub, "link", "set", &port, "master", "br0"])?;
            sh("ip", &["-n", &hub, "link", "set", &port, "up"])?;
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            sh(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )?;
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            if let Some(bps) = c.up_bps {
                tbf("eth0", &ns, bps)?;
            }
            if let Some(bps) = c.down_bps {
                tbf(&port, &hub, bps)?;
            }
            t.nodes.push(Node { ns, ip });
        }
        Ok(t)
    }

    /// Bytes sent by node `i` on its veth so far.
    pub fn tx_bytes(&self, i: usize) -> anyhow::Result<u64> {
        let out = sh(
            "ip",
            &[
                "-n",
                &self.nodes[i].ns,
                "-s",
                "-j",
                "link",
                "show",
                "dev",
                "eth0",
            ],
        )?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        v[0]["stats64"]["tx"]["bytes"]
            .as_u64()
            .context("no tx bytes in `ip -s -j link` output")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            kill_all_in(ns);
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = sh("ip", &["netns", "del", ns]) {
                eprintln!("kino-bench: cannot delete namespace {ns}: {e:#}");
            }
        }
        let _ = &self.hub;
    }
}
