#!/usr/bin/python3
"""Interop check between Kino's DHT pointers and libtorrent 2.0.8 on a loopback DHT.

Run by tests/interop_libtorrent.rs with /usr/bin/python3 (python3-libtorrent imports only there).
mainline 8 drops KRPC messages whose transaction id is not exactly 4 bytes, and libtorrent
uses 2-byte ids, so libtorrent cannot query mainline nodes (mainline can query libtorrent).
The script therefore starts N libtorrent DHT nodes that join the Kino testnet and each other,
prints `ready <addrs>`, and Kino's client bootstraps from them.

Arguments (all hex except the first two):
  testnet        comma-separated 127.0.0.1:PORT list of the Kino testnet
  n_nodes        number of libtorrent nodes to start (at most 16)
  get_pubkey     public key of the item Kino put
  get_salt       its salt
  get_value      the exact pointer bytes Kino put (d2:ih20:...e)
  put_seed       32-byte ed25519 seed of the key libtorrent puts with
  put_salt       salt for libtorrent's put
  put_value      pointer bytes libtorrent puts
  put_pubkey     public key of put_seed
Protocol: prints `ready <addrs>`; reads `published`; prints `get ok ...` and `put ok ...`;
reads one more line (Kino resolved) and exits 0. Any failure prints `FAIL: ...` and exits 1.
Prints one line per step and exits 0 on success; every wait is bounded.
"""

import hashlib
import sys
import time

import libtorrent as lt

DEADLINE_S = 60.0
RETRY_EVERY_S = 3.0


def expanded_secret(seed: bytes) -> bytes:
    """libtorrent's 64-byte secret: SHA-512(seed) with the first half clamped (ref10 form)."""
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 63
    h[31] |= 64
    return bytes(h)


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def make_session(bootstrap: str):
    return lt.session({
        "enable_dht": True,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        # 127.0.0.0/8 counts as "dark internet" for libtorrent; a loopback DHT needs it off.
        "dht_ignore_dark_internet": False,
        "listen_interfaces": "127.0.0.1:0",
        "dht_bootstrap_nodes": bootstrap,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.dht_notification | lt.alert.category_t.error_notification,
    })


class Node:
    """One libtorrent session with its DHT; alerts are drained into `pending`."""

    def __init__(self, bootstrap: str):
        self.ses = make_session(bootstrap)
        self.nodes = 0

    def addr(self) -> str:
        return f"127.0.0.1:{self.ses.listen_port()}"

    def alerts(self, timeout_ms: int = 50):
        self.ses.wait_for_alert(timeout_ms)
        popped = self.ses.pop_alerts()
        for a in popped:
            if isinstance(a, lt.dht_stats_alert):
                self.nodes = sum(b["num_nodes"] for b in a.routing_table)
        return popped


def main() -> None:
    testnet, n_nodes = sys.argv[1], int(sys.argv[2])
    get_pk, get_salt, get_value = (bytes.fromhex(x) for x in sys.argv[3:6])
    put_seed, put_salt, put_value, put_pk = (bytes.fromhex(x) for x in sys.argv[6:10])
    for addr in testnet.split(","):
        if not addr.startswith("127.0.0.1:"):
            fail(f"bootstrap {addr} is not loopback")
    start = time.monotonic()

    # Every node joins the Kino testnet, and is told about the other libtorrent nodes with
    # add_dht_node (libtorrent keeps bootstrap "routers" out of its routing table).
    nodes = [Node(testnet) for _ in range(min(n_nodes, 16))]
    for n in nodes:
        for other in nodes:
            if other is not n:
                n.ses.add_dht_node(("127.0.0.1", other.ses.listen_port()))
    while any(n.nodes == 0 for n in nodes):
        if time.monotonic() - start > DEADLINE_S:
            fail("libtorrent nodes did not find each other")
        for n in nodes:
            n.ses.post_dht_stats()
            n.alerts(10)
    print("ready " + ",".join(n.addr() for n in nodes), flush=True)

    # Kino publishes, then tells us on stdin (the Rust test bounds this wait).
    line = sys.stdin.readline().strip()
    if line != "published":
        fail(f"unexpected command {line!r}")

    # (a) Read the item Kino put, from the last node.
    reader = nodes[-1]
    found = None
    last_ask = 0.0
    while found is None:
        now = time.monotonic()
        if now - start > DEADLINE_S:
            fail("libtorrent never got Kino's item")
        if now - last_ask > RETRY_EVERY_S:
            reader.ses.dht_get_mutable_item(get_pk, get_salt)
            last_ask = now
        for n in nodes:
            for a in n.alerts(10):
                if n is reader and isinstance(a, lt.dht_mutable_item_alert) and bytes(a.key) == get_pk:
                    # 2.0.8's binding gives a dict {key, value, signature, seq, salt,
                    # authoritative}; `value` is the bdecoded v.
                    it = a.item
                    value = it.get("value") if isinstance(it, dict) else it
                    if value not in (b"", "", None):
                        salt = it.get("salt", a.salt) if isinstance(it, dict) else a.salt
                        found = (value, a.seq, salt)
    item, seq, salt = found
    if not isinstance(item, bytes):
        fail(f"value is {type(item).__name__} {item!r}, expected the byte string d2:ih20:...e")
    if item != get_value:
        fail(f"value {item.hex()} != expected {get_value.hex()}")
    salt = salt if isinstance(salt, bytes) else salt.encode()
    if salt != get_salt:
        fail(f"salt {salt!r} != {get_salt!r}")
    print(f"get ok: seq={seq} value={item.hex()}", flush=True)

    # (b) Put an item Kino will resolve, from the first node.
    writer = nodes[0]
    writer.ses.dht_put_mutable_item(expanded_secret(put_seed), put_pk, put_value, put_salt)
    while True:
        if time.monotonic() - start > DEADLINE_S:
            fail("libtorrent put did not complete")
        done = False
        for n in nodes:
            for a in n.alerts(10):
                if n is writer and isinstance(a, lt.dht_put_alert) and bytes(a.public_key) == put_pk:
                    if a.num_success <= 0:
                        fail(f"put stored on no node: {a.message()}")
                    print(f"put ok: seq={a.seq} stored_at={a.num_success}", flush=True)
                    done = True
        if done:
            break

    # Keep the nodes up until Kino has resolved (bounded).
    sys.stdin.readline()
    sys.exit(0)


if __name__ == "__main__":
    main()
