//! Trackers named by catalog magnets (`tr=`), and which of them a viewer may contact.
//!
//! A catalog is written by a publisher, not by the viewer: a `tr=` tracker in one of its
//! magnets makes every viewer who plays the title send announces to that URL. A tracker on
//! `127.0.0.1`, `localhost`, a private or link-local address would make viewers send requests
//! into their own machine or network (a blind SSRF). So, unless the user allows it
//! ([`TrackerPolicy::AllowLocal`], the config key `catalog.allow_local_trackers`), such
//! trackers are dropped from the magnets Kino stores and plays ([`sanitize_magnet`]). The
//! title still plays: its peers are found through the DHT.
//!
//! What is dropped: a tracker whose host is an IP literal in a loopback, private, link-local,
//! unspecified, multicast, shared (CGNAT) or reserved range (IPv4 and IPv6, including
//! IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 addresses), in any numeric form a
//! resolver accepts (`127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`); the names
//! `localhost` and `*.localhost`; and any tracker URL whose host cannot be read plainly
//! (credentials before the host, percent signs or non-ASCII characters in it, no host), since
//! what such a host resolves to cannot be checked here. A host name that resolves to a private
//! address through DNS is not caught: that needs the resolver's answer.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Which trackers of a catalog's magnets are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrackerPolicy {
    /// Drop trackers on loopback, private, link-local and other local addresses (the default).
    #[default]
    PublicOnly,
    /// Keep every tracker as written (`catalog.allow_local_trackers = true`).
    AllowLocal,
}

impl TrackerPolicy {
    /// The policy for the `catalog.allow_local_trackers` setting.
    pub fn from_allow_local(allow_local_trackers: bool) -> Self {
        if allow_local_trackers {
            TrackerPolicy::AllowLocal
        } else {
            TrackerPolicy::PublicOnly
        }
    }
}

/// A tracker that [`sanitize_magnet`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedTracker {
    /// The tracker URL, percent-decoded as a BitTorrent client reads it.
    pub url: String,
    /// Why: `"a loopback address"`, `"a private address"`, `"a local host name"`, ...
    pub reason: &'static str,
}

/// A magnet link with the trackers its policy refuses removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanitizedMagnet {
    /// The magnet: the original text when nothing was dropped, else the original parameters
    /// in their order, minus the dropped `tr=` ones.
    pub magnet: String,
    /// The trackers removed.
    pub dropped: Vec<DroppedTracker>,
}

/// Removes from `magnet` every `tr=` tracker that `policy` does not allow (see the module
/// documentation). Every other parameter is kept byte for byte.
pub fn sanitize_magnet(magnet: &str, policy: TrackerPolicy) -> SanitizedMagnet {
    let unchanged = || SanitizedMagnet {
        magnet: magnet.to_owned(),
        dropped: Vec::new(),
    };
    if policy == TrackerPolicy::AllowLocal {
        return unchanged();
    }
    let Some(query) = magnet.strip_prefix("magnet:?") else {
        return unchanged();
    };
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        // Keys are decoded too, as BitTorrent clients do: `t%72=` is `tr=`.
        if form_decode(key) == "tr" {
            let url = form_decode(value);
            if let Some(reason) = local_tracker(&url) {
                dropped.push(DroppedTracker { url, reason });
                continue;
            }
        }
        kept.push(param);
    }
    if dropped.is_empty() {
        return unchanged();
    }
    SanitizedMagnet {
        magnet: format!("magnet:?{}", kept.join("&")),
        dropped,
    }
}

/// Why a tracker URL must not be contacted without the user's consent, or `None` when its
/// host is a public IP address or a host name other than `localhost`.
pub fn local_tracker(url: &str) -> Option<&'static str> {
    const UNREADABLE: &str = "a tracker URL whose host cannot be checked";
    let Some((_scheme, rest)) = url.split_once("://") else {
        return Some(UNREADABLE);
    };
    // Where the authority ends for the URL parsers of BitTorrent clients (`\` for http).
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    if authority.contains('@') {
        return Some(UNREADABLE);
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Some(UNREADABLE);
        };
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return Some(UNREADABLE);
        }
        // A zone (`fe80::1%eth0`) is for link-local addresses only.
        let address = inside.split('%').next().unwrap_or("");
        return match address.parse::<Ipv6Addr>() {
            Ok(ip) => local_ipv6(ip),
            Err(_) => Some(UNREADABLE),
        };
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return Some(UNREADABLE),
        None => authority,
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Some(UNREADABLE);
    }
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if let Some(ip) = parse_ipv4_numeric(host) {
        return local_ipv4(ip);
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Some("a local host name");
    }
    None
}

fn is_port(s: &str) -> bool {
    s.is_empty() || (s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Why an IPv4 address is local, or `None` for a public one.
fn local_ipv4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    match (a, b) {
        (0, _) => Some("an unspecified address"),
        (127, _) => Some("a loopback address"),
        (10, _) | (192, 168) => Some("a private address"),
        (172, b) if (16..32).contains(&b) => Some("a private address"),
        (169, 254) => Some("a link-local address"),
        (100, b) if (64..128).contains(&b) => Some("a shared (CGNAT) address"),
        (224..=239, _) => Some("a multicast address"),
        (240..=255, _) => Some("a reserved or broadcast address"),
        _ => None,
    }
}

/// Why an IPv6 address is local, or `None` for a public one. Addresses that embed an IPv4
/// address (mapped, compatible, NAT64, 6to4) are judged by it.
fn local_ipv6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => {
            local_ipv4(embedded(hi, lo))
        }
        // NAT64 64:ff9b::a.b.c.d.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => local_ipv4(embedded(hi, lo)),
        // Local-use NAT64 64:ff9b:1::/48.
        [0x64, 0xff9b, 1, ..] => Some("a private address"),
        // 6to4 2002:a.b.c.d::/48.
        [0x2002, hi, lo, ..] => local_ipv4(embedded(hi, lo)),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("a private (unique local) address"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("a link-local address"),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some("a site-local address"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("a multicast address"),
        _ => None,
    }
}

/// Reads an IPv4 address in every form `inet_aton` and URL parsers accept: 1 to 4 parts
/// separated by dots, each decimal, octal (leading `0`) or hex (`0x`), the last part filling
/// the remaining bytes (`127.1`, `2130706433`, `0x7f.0.0.1`). `None` when `host` is not one.
fn parse_ipv4_numeric(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) =
            if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (h, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (&part[1..], 8)
            } else {
                (*part, 10)
            };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        // "0x" alone is 0 for URL parsers.
        let value = if digits.is_empty() {
            0
        } else if digits.len() > 32 {
            return None;
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        values.push(value);
    }
    let (last, head) = values.split_last()?;
    if head.iter().any(|&v| v > 255) {
        return None;
    }
    let last_bytes = 4 - head.len() as u32;
    if *last >= 1u64 << (8 * last_bytes) {
        return None;
    }
    let mut n: u64 = 0;
    for (i, &v) in head.iter().enumerate() {
        n |= v << (8 * (3 - i as u32));
    }
    n |= last;
    Some(Ipv4Addr::from(u32::try_from(n).ok()?))
}

/// Decodes `application/x-www-form-urlencoded` text as BitTorrent clients read magnet
/// parameters: `+` is a space, `%XX` a byte, invalid UTF-8 replaced.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_tracker_hosts_in_every_spelling_are_recognised() {
        for (url, reason) in [
            ("udp://127.0.0.1:6969/announce", "loopback"),
            ("http://127.0.0.1/announce", "loopback"),
            ("http://127.1:8080/", "loopback"),
            ("http://2130706433/", "loopback"),
            ("http://0x7f.0.0.1/", "loopback"),
            ("http://0177.0.0.1/", "loopback"),
            ("http://127.0.0.1.:80/", "loopback"),
            ("http://[::1]:6969/announce", "loopback"),
            ("udp://[::ffff:127.0.0.1]:6969", "loopback"),
            ("udp://[::ffff:7f00:1]:6969", "loopback"),
            ("udp://[::127.0.0.1]:6969", "loopback"),
            ("udp://[64:ff9b::a00:1]:6969", "private"),
            ("udp://[2002:c0a8:101::1]:6969", "private"),
            ("http://10.0.0.1/", "private"),
            ("http://172.16.5.4/", "private"),
            ("http://172.31.255.255/", "private"),
            ("http://192.168.1.1:8000/announce", "private"),
            ("http://[fd00::1]/", "unique local"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[fe80::1%25eth0]/", "link-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://100.64.0.1/", "CGNAT"),
            ("http://0.0.0.0/", "unspecified"),
            ("http://0/", "unspecified"),
            ("http://[::]/", "unspecified"),
            ("udp://224.0.0.1:6969", "multicast"),
            ("udp://[ff02::1]:6969", "multicast"),
            ("udp://255.255.255.255:6969", "broadcast"),
            ("http://localhost:8080/announce", "local host name"),
            ("http://LOCALHOST./", "local host name"),
            ("http://tracker.localhost/", "local host name"),
            ("http://user@example.org/", "cannot be checked"),
            ("http://example.org@127.0.0.1/", "cannot be checked"),
            ("http://127%2E0%2E0%2E1/", "cannot be checked"),
            ("http://ｌocalhost/", "cannot be checked"),
            ("http:///announce", "cannot be checked"),
            ("not a url", "cannot be checked"),
            ("http://[::1/", "cannot be checked"),
            ("http://example.org:port/", "cannot be checked"),
        ] {
            let got = local_tracker(url);
            assert!(
                got.is_some_and(|r| r.contains(reason)),
                "{url}: expected {reason:?}, got {got:?}"
            );
        }
        for url in [
            "udp://tracker.opentrackr.org:1337/announce",
            "https://tracker.example.org/announce",
            "http://93.184.216.34/announce",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://192.169.0.1/",
            "udp://[2001:db8::1]:6969",
            "udp://[2606:4700::1111]:6969",
            "udp://[::ffff:93.184.216.34]:6969",
            "http://localhost.example.org/",
            "wss://tracker.webtorrent.dev",
        ] {
            assert_eq!(local_tracker(url), None, "{url}");
        }
    }

    #[test]
    fn numeric_ipv4_forms() {
        let ip = |s| parse_ipv4_numeric(s);
        assert_eq!(ip("127.0.0.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(ip("127.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(ip("10.1.2"), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(ip("0xa000001"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(ip("4294967295"), Some(Ipv4Addr::BROADCAST));
        assert_eq!(ip("4294967296"), None);
        assert_eq!(ip("256.0.0.1"), None);
        assert_eq!(ip("1.2.3.4.5"), None);
        assert_eq!(ip("08.0.0.1"), None);
        assert_eq!(ip("example"), None);
        assert_eq!(ip("1..2"), None);
    }

    #[test]
    fn only_refused_trackers_leave_the_magnet() {
        let ih = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567";
        let magnet = format!(
            "{ih}&dn=Film+One&tr=udp%3A%2F%2F127.0.0.1%3A6969&tr=udp://tracker.example.org:1337\
             &t%72=http%3A%2F%2F%5B%3A%3A1%5D%2Fannounce&tr=http://localhost/a&x.pe=10.0.0.2:6881"
        );
        let s = sanitize_magnet(&magnet, TrackerPolicy::PublicOnly);
        assert_eq!(
            s.magnet,
            format!("{ih}&dn=Film+One&tr=udp://tracker.example.org:1337&x.pe=10.0.0.2:6881")
        );
        let dropped: Vec<&str> = s.dropped.iter().map(|d| d.url.as_str()).collect();
        assert_eq!(
            dropped,
            [
                "udp://127.0.0.1:6969",
                "http://[::1]/announce",
                "http://localhost/a"
            ]
        );
        // Allowed by the user: kept as written.
        let s = sanitize_magnet(&magnet, TrackerPolicy::AllowLocal);
        assert_eq!((s.magnet.as_str(), s.dropped.len()), (magnet.as_str(), 0));
        // Nothing to drop: the very same text.
        let public = format!("{ih}&tr=udp://tracker.example.org:1337");
        let s = sanitize_magnet(&public, TrackerPolicy::PublicOnly);
        assert_eq!((s.magnet, s.dropped.len()), (public, 0));
    }
}
