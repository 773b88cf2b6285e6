//! Shared helpers for the integration tests (loopback only, bounded loops).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use kino_dht::{DhtConfig, LocalTestnet, PointerDht, ResolvedPointer, SigningKey};

/// Testnet size used by the tests (the brief asks for at least 30).
pub const NODES: usize = 32;

/// A loopback client with test-friendly timeouts.
pub fn client(bootstrap: &[String]) -> PointerDht {
    let config = DhtConfig {
        request_timeout: Some(Duration::from_millis(800)),
        resolve_timeout: Duration::from_secs(10),
        publish_timeout: Duration::from_secs(20),
        ..DhtConfig::loopback(bootstrap)
    };
    PointerDht::new(config).expect("start a loopback DHT client")
}

/// A fresh testnet of `NODES` nodes on 127.0.0.1.
pub fn testnet() -> LocalTestnet {
    LocalTestnet::start(NODES).expect("start the loopback testnet")
}

/// A deterministic signing key per test.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// Resolve until `want` holds, at most `attempts` times (each resolve is itself bounded).
pub async fn resolve_until(
    dht: &PointerDht,
    key: &SigningKey,
    salt: Option<&[u8]>,
    attempts: usize,
    want: impl Fn(&Option<ResolvedPointer>) -> bool,
) -> Option<ResolvedPointer> {
    let public_key = key.verifying_key().to_bytes();
    let mut last = None;
    for _ in 0..attempts {
        last = dht.resolve(&public_key, salt).await.expect("resolve");
        if want(&last) {
            return last;
        }
    }
    last
}

/// A bencode value, for the rogue node in the forgery test.
#[derive(Debug, Clone, PartialEq)]
pub enum Bencode {
    /// Integer.
    Int(i64),
    /// Byte string.
    Bytes(Vec<u8>),
    /// List.
    List(Vec<Bencode>),
    /// Dictionary.
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl Bencode {
    /// Decode one value from the front of `input`; returns it and the rest. Depth-bounded.
    pub fn decode(input: &[u8], depth: usize) -> Option<(Bencode, &[u8])> {
        if depth > 16 {
            return None;
        }
        match *input.first()? {
            b'i' => {
                let end = input.iter().position(|&b| b == b'e')?;
                let n = std::str::from_utf8(&input[1..end]).ok()?.parse().ok()?;
                Some((Bencode::Int(n), &input[end + 1..]))
            }
            b'l' | b'd' => {
                let is_dict = input[0] == b'd';
                let mut rest = &input[1..];
                let mut list = Vec::new();
                while *rest.first()? != b'e' {
                    let (v, r) = Bencode::decode(rest, depth + 1)?;
                    list.push(v);
                    rest = r;
                }
                rest = &rest[1..];
                if !is_dict {
                    return Some((Bencode::List(list), rest));
                }
                if list.len() % 2 != 0 {
                    return None;
                }
                let mut map = BTreeMap::new();
                let mut it = list.into_iter();
                while let (Some(Bencode::Bytes(k)), Some(v)) = (it.next(), it.next()) {
                    map.insert(k, v);
                }
                Some((Bencode::Dict(map), rest))
            }
            b'0'..=b'9' => {
                let colon = input.iter().position(|&b| b == b':')?;
                let len: usize = std::str::from_utf8(&input[..colon]).ok()?.parse().ok()?;
                let start = colon + 1;
                let bytes = input.get(start..start + len)?.to_vec();
                Some((Bencode::Bytes(bytes), &input[start + len..]))
            }
            _ => None,
        }
    }

    /// Encode (dictionary keys come out sorted, as bencode requires).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode(out));
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Look up a key in a dictionary.
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The bytes of a byte string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Bencode::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Build a dictionary from pairs.
pub fn dict(pairs: Vec<(&str, Bencode)>) -> Bencode {
    Bencode::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}
