#!/usr/bin/python3
"""libtorrent (rasterbar) for Kino's benchmark: the neutral seeder, and a measured viewer.

Needs Debian's python3-libtorrent (imports under /usr/bin/python3 only).

  seed  --torrent F --data DIR --bind IP --port P
        Seeds from DIR on IP:P (TCP only, no DHT/LSD/UPnP/NAT-PMP, unlimited unchoke slots),
        prints `LISTENING IP:P`, runs until SIGTERM/SIGINT.
  create --path FILE --out F.torrent --piece-length N
        Makes a v1 torrent without trackers.
  view  --torrent F --out DIR --bind IP --peer IP:PORT[,IP:PORT...] --bitrate BYTES_PER_S
        [--startup-bytes N] [--seeks 0.3,0.6,0.9] [--seek-bytes N] [--deadline S]
        Plays the file as a player would: sequential download, piece deadlines set from the
        play position at the bitrate, the position advancing through completed pieces (which
        are read from disk). Prints the same JSON report as `kino-bench reader`
        (timestamps in microseconds since the Unix epoch).
"""

import argparse
import json
import os
import signal
import sys
import time

try:
    import libtorrent as lt
except ImportError as e:  # pragma: no cover
    sys.stderr.write("lt_bench.py: cannot import libtorrent (%s); use /usr/bin/python3\n" % e)
    sys.exit(2)

POLL = 0.005  # seconds between checks of the piece bitmap
MAX_SAMPLES = 50000
_stop = False


def _on_signal(_s, _f):
    global _stop
    _stop = True


def now_us():
    return int(time.time() * 1e6)


def session(bind, port):
    s = lt.session(
        {
            "listen_interfaces": "%s:%d" % (bind, port),
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_incoming_utp": False,
            "enable_outgoing_utp": False,
            "allow_multiple_connections_per_ip": True,
            "unchoke_slots_limit": -1,
            "in_enc_policy": int(lt.enc_policy.pe_enabled),
            "out_enc_policy": int(lt.enc_policy.pe_enabled),
            "alert_mask": 0,
        }
    )
    return s


def seed(a):
    s = session(a.bind, a.port)
    ti = lt.torrent_info(a.torrent)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = a.data
    h = s.add_torrent(atp)
    t_end = time.time() + 120
    while not h.status().is_seeding:
        if time.time() > t_end or _stop:
            sys.stderr.write("lt_bench: data check did not finish\n")
            sys.exit(1)
        time.sleep(0.02)
    print("LISTENING %s:%d" % (a.bind, s.listen_port()), flush=True)
    while not _stop:
        time.sleep(0.1)


def view(a):
    rep = {"ok": False, "error": None, "first_byte_us": None, "samples": [], "seeks": []}
    # 6881 like every viewer, so the other viewers of the swarm scenario can dial it.
    s = session(a.bind, 6881)
    ti = lt.torrent_info(a.torrent)
    size = ti.total_size()
    plen = ti.piece_length()
    npieces = ti.num_pieces()
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = a.out
    atp.flags |= lt.torrent_flags.sequential_download
    h = s.add_torrent(atp)
    for peer in filter(None, a.peer.split(",")):
        ip, port = peer.rsplit(":", 1)
        h.connect_peer((ip, int(port)))
    path = os.path.join(a.out, ti.files().file_path(0))
    deadline = time.time() + a.deadline
    window = max(4, int(a.window_bytes // plen))
    t_start = time.time()
    seen_peer = [False]
    fd = [None]

    def read_piece(p):
        # Read the piece as a player would (page cache, usually).
        if fd[0] is None:
            fd[0] = os.open(path, os.O_RDONLY)
        os.pread(fd[0], min(plen, size - p * plen), p * plen)

    def play(offset, want, on_progress):
        """Advances from offset until want bytes are readable in order; deadlines ahead."""
        end = min(size, offset + want)
        p = offset // plen
        last_set = -1
        while True:
            if p != last_set:
                # Deadlines for the next window of pieces, when the player will need them.
                for i in range(p, min(npieces, p + window)):
                    ms = max(0, int(((i * plen) - offset) * 1000 / a.bitrate))
                    h.set_piece_deadline(i, ms)
                last_set = p
            while p < npieces and h.have_piece(p):
                read_piece(p)
                p += 1
                got = min(end, p * plen) - offset
                on_progress(got)
                if p * plen >= end:
                    return
            if not seen_peer[0] and h.status().num_peers > 0:
                seen_peer[0] = True
                sys.stderr.write("lt_bench: first peer after %.2f s\n" % (time.time() - t_start))
            if time.time() > deadline or _stop:
                raise RuntimeError("deadline: %d of %d bytes at offset %d" % (p * plen - offset, want, offset))
            time.sleep(POLL)

    try:
        first_read = size if not a.seeks else a.startup_bytes
        last = [0, 0]

        def lin(got):
            t = now_us()
            if rep["first_byte_us"] is None:
                rep["first_byte_us"] = t
            if got >= first_read or (
                len(rep["samples"]) < MAX_SAMPLES and (got >= last[1] + 65536 or t >= last[0] + 20000)
            ):
                rep["samples"].append([t, got])
                last[0], last[1] = t, got

        play(0, first_read, lin)
        for frac in a.seeks:
            off = min(size - 1, int(size * frac))
            sk = {"frac": frac, "offset": off, "start_us": now_us(), "first_byte_us": None, "done_us": None}
            rep["seeks"].append(sk)
            h.clear_piece_deadlines()
            want = min(a.seek_bytes, size - off)

            def prog(got, sk=sk, want=want):
                t = now_us()
                if sk["first_byte_us"] is None:
                    sk["first_byte_us"] = t
                if got >= want:
                    sk["done_us"] = t

            play(off, want, prog)
        rep["ok"] = True
    except Exception as e:  # reported, not raised
        rep["error"] = str(e)
    print(json.dumps(rep), flush=True)
    # Stay until killed, like the other clients (the bench reads RSS/CPU, then stops us).
    if a.linger:
        while not _stop:
            time.sleep(0.1)


def create(a):
    fs = lt.file_storage()
    lt.add_files(fs, a.path)
    t = lt.create_torrent(fs, a.piece_length, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(a.path)))
    with open(a.out, "wb") as f:
        f.write(lt.bencode(t.generate()))


def main():
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--torrent", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, default=0)
    v = sub.add_parser("view")
    v.add_argument("--torrent", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("--bind", required=True)
    v.add_argument("--peer", required=True, help="IP:PORT[,IP:PORT...]")
    v.add_argument("--bitrate", type=float, required=True, help="bytes per second")
    v.add_argument("--startup-bytes", type=int, default=0)
    v.add_argument("--seeks", default="")
    v.add_argument("--seek-bytes", type=int, default=0)
    # Deadlines on a short window ahead of the play position: with 30 s of media under
    # deadlines, libtorrent fetched the window's pieces in parallel and startup took 18-25 s
    # instead of 8 s (measured at 8 Mbit/s, 50 ms RTT); 1 MiB was its best of 1, 4 and 21 MiB.
    v.add_argument("--window-bytes", type=int, default=1 << 20)
    v.add_argument("--deadline", type=float, default=120)
    v.add_argument("--linger", action="store_true")
    c = sub.add_parser("create")
    c.add_argument("--path", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--piece-length", type=int, required=True)
    a = ap.parse_args()
    if a.mode == "create":
        create(a)
    elif a.mode == "seed":
        seed(a)
    else:
        a.seeks = [float(x) for x in a.seeks.split(",") if x]
        view(a)


if __name__ == "__main__":
    main()
