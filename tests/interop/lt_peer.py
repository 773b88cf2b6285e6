#!/usr/bin/python3
"""libtorrent (rasterbar) peer for Kino interop tests, loopback only.

Needs Debian's python3-libtorrent, which imports only under /usr/bin/python3.

Modes:
  seed      --torrent F --data DIR [--port P] [--timeout S] [--utp] [--enc E]
            Checks the data, then prints `LISTENING 127.0.0.1:<port>` and seeds
            until killed (SIGTERM/SIGINT) or the timeout passes; then prints a
            JSON line with the uploaded byte count.
  download  (--torrent F | --magnet URI) --out DIR --peer IP:PORT [--peer ...]
            [--timeout S] [--sequential] [--utp] [--enc E]
            Downloads from the given peers only, re-hashes everything and prints
            {"ok": true, "bytes": N, "seconds": T}; exit 1 on timeout/failure.
  create    --path FILE_OR_DIR --out F.torrent [--piece-length N]
            Makes a v1-only torrent without trackers.

Network: listens on 127.0.0.1 only; DHT, LSD, UPnP, NAT-PMP are off and no
trackers are contacted. uTP is off unless --utp is given (plain TCP makes the
wire traffic easy to reason about for a peer that does not speak uTP).
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
    sys.stderr.write(
        "lt_peer.py: cannot import libtorrent (%s); run with /usr/bin/python3 "
        "and install python3-libtorrent\n" % e
    )
    sys.exit(2)

STEP = 0.1  # seconds between polls

_stop = False


def _on_signal(signum, _frame):
    global _stop
    _stop = True


def log(msg):
    sys.stderr.write("lt_peer: %s\n" % msg)
    sys.stderr.flush()


def emit(obj_or_line):
    if isinstance(obj_or_line, str):
        sys.stdout.write(obj_or_line + "\n")
    else:
        sys.stdout.write(json.dumps(obj_or_line, sort_keys=True) + "\n")
    sys.stdout.flush()


ENC = {"disabled": "pe_disabled", "enabled": "pe_enabled", "forced": "pe_forced"}


def make_session(port, utp, enc="enabled"):
    cat = lt.alert.category_t
    mask = cat.error_notification | cat.status_notification | cat.peer_notification
    if hasattr(cat, "connect_notification"):
        mask |= cat.connect_notification
    pe = int(getattr(lt.enc_policy, ENC[enc]))
    settings = {
        "listen_interfaces": "127.0.0.1:%d" % port,
        "outgoing_interfaces": "",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": bool(utp),
        "enable_outgoing_utp": bool(utp),
        "enable_incoming_tcp": True,
        "enable_outgoing_tcp": True,
        "allow_multiple_connections_per_ip": True,
        "out_enc_policy": pe,
        "in_enc_policy": pe,
        "allowed_enc_level": int(lt.enc_level.both),
        "prefer_rc4": False,
        "alert_mask": int(mask),
        "user_agent": "kino-interop-lt/%s" % lt.__version__,
        # Fail instead of silently moving to port+1 when a port was requested.
        "max_retry_port_bind": 0,
        # Loopback tests: no limits, quick reconnects.
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "min_reconnect_time": 1,
        "peer_connect_timeout": 5,
        "smooth_connects": False,
    }
    ses = lt.session(settings)
    return ses


def drain_alerts(ses, verbose=True):
    """Pops alerts, logs errors; returns the list."""
    alerts = ses.pop_alerts()
    for a in alerts:
        cat = a.category()
        if verbose and (cat & lt.alert.category_t.error_notification):
            log("alert %s: %s" % (type(a).__name__, a.message()))
    return alerts


def wait_listen(ses, deadline, want_port=0):
    """Returns the bound port or raises SystemExit on failure/timeout.

    libtorrent falls back to an ephemeral port when the requested one is
    taken; with want_port != 0 that is treated as a failure."""
    while time.monotonic() < deadline and not _stop:
        for a in drain_alerts(ses):
            if isinstance(a, lt.listen_failed_alert):
                log("listen failed: %s" % a.message())
                sys.exit(1)
        port = ses.listen_port()
        if ses.is_listening() and port > 0:
            if want_port and port != want_port:
                log("could not listen on 127.0.0.1:%d (in use?); libtorrent bound %d instead"
                    % (want_port, port))
                sys.exit(1)
            return port
        time.sleep(STEP)
    log("timed out waiting for the listen socket")
    sys.exit(1)


def parse_peer(s):
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError("peer must be IP:PORT, got %r" % s)
    host = host.strip("[]")
    return (host, int(port))


def state_name(st):
    return str(st.state).split(".")[-1]


def all_pieces_have(st):
    pieces = st.pieces
    return len(pieces) > 0 and all(pieces)


# --------------------------------------------------------------------------- seed
def cmd_seed(args):
    start = time.monotonic()
    deadline = start + args.timeout
    ti = lt.torrent_info(args.torrent)
    ses = make_session(args.port, args.utp, args.enc)
    port = wait_listen(ses, deadline, args.port)

    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = os.path.abspath(args.data)
    # Not auto-managed: never queued or paused by the session.
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    h = ses.add_torrent(atp)

    # Wait for the initial hash check to finish and the torrent to seed.
    seeding = False
    while time.monotonic() < deadline and not _stop:
        drain_alerts(ses)
        st = h.status()
        if st.errc.value() != 0:
            log("torrent error: %s" % st.errc.message())
            sys.exit(1)
        checking = st.state in (lt.torrent_status.checking_files,
                                lt.torrent_status.checking_resume_data)
        if not checking and st.is_seeding:
            seeding = True
            break
        if not checking and st.state in (lt.torrent_status.downloading,
                                         lt.torrent_status.downloading_metadata) \
                and time.monotonic() - start > 2.0 and st.progress < 1.0:
            have = sum(1 for p in st.pieces if p)
            log("data in %s is incomplete: %d/%d pieces verified"
                % (args.data, have, ti.num_pieces()))
            sys.exit(1)
        time.sleep(STEP)
    if not seeding:
        log("timed out checking data")
        sys.exit(1)

    log("seeding %s (%d bytes, %d pieces) info_hash=%s"
        % (ti.name(), ti.total_size(), ti.num_pieces(), ti.info_hash()))
    emit("LISTENING 127.0.0.1:%d" % port)

    last_peers = -1
    while time.monotonic() < deadline and not _stop:
        drain_alerts(ses)
        st = h.status()
        if st.num_peers != last_peers:
            log("peers: %d, uploaded: %d" % (st.num_peers, st.total_payload_upload))
            last_peers = st.num_peers
        time.sleep(0.2)

    st = h.status()
    emit({
        "uploaded": int(st.total_upload),
        "payload_uploaded": int(st.total_payload_upload),
        "seconds": round(time.monotonic() - start, 3),
        "reason": "signal" if _stop else "timeout",
    })
    return 0


# ----------------------------------------------------------------------- download
def cmd_download(args):
    start = time.monotonic()
    deadline = start + args.timeout
    os.makedirs(args.out, exist_ok=True)
    ses = make_session(0, args.utp, args.enc)
    wait_listen(ses, deadline)

    if args.magnet:
        atp = lt.parse_magnet_uri(args.magnet)
        atp.trackers = []
    else:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = os.path.abspath(args.out)
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    if args.sequential:
        atp.flags |= lt.torrent_flags.sequential_download
    h = ses.add_torrent(atp)

    def connect_all():
        for ip, port in args.peer:
            try:
                h.connect_peer((ip, port), 0)
            except Exception as e:  # noqa: BLE001
                log("connect_peer %s:%d failed: %s" % (ip, port, e))

    connect_all()
    last_connect = time.monotonic()
    last_report = 0.0
    done = False
    while time.monotonic() < deadline and not _stop:
        drain_alerts(ses)
        st = h.status()
        if st.errc.value() != 0:
            log("torrent error: %s" % st.errc.message())
            sys.exit(1)
        if st.is_seeding and st.state == lt.torrent_status.seeding:
            done = True
            break
        now = time.monotonic()
        if st.num_peers == 0 and now - last_connect > 2.0:
            connect_all()
            last_connect = now
        if now - last_report > 2.0:
            log("%s %.1f%% peers=%d down=%d B/s"
                % (state_name(st), st.progress * 100, st.num_peers, st.download_payload_rate))
            last_report = now
        time.sleep(STEP)
    if not done:
        st = h.status()
        log("TIMEOUT after %.1fs: state=%s progress=%.1f%% peers=%d"
            % (time.monotonic() - start, state_name(st), st.progress * 100, st.num_peers))
        emit({"ok": False, "error": "timeout", "progress": st.progress})
        sys.exit(1)
    seconds = time.monotonic() - start

    # Confirm: re-hash every piece from disk and require all of them to pass.
    h.force_recheck()
    checked = False
    t0 = time.monotonic()
    while time.monotonic() < deadline and not _stop:
        for a in drain_alerts(ses):
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
        st = h.status()
        busy = st.state in (lt.torrent_status.checking_files,
                            lt.torrent_status.checking_resume_data)
        if checked and not busy:
            break
        if not checked and time.monotonic() - t0 > 1.0 and not busy and st.is_seeding:
            # Fallback in case the alert was missed.
            checked = True
            break
        time.sleep(STEP)
    st = h.status()
    ti = h.torrent_file()
    if not checked or not st.is_seeding or not all_pieces_have(st):
        have = sum(1 for p in st.pieces if p)
        log("recheck failed: state=%s %d/%d pieces"
            % (state_name(st), have, ti.num_pieces() if ti else -1))
        emit({"ok": False, "error": "recheck failed"})
        sys.exit(1)

    emit({"ok": True, "bytes": int(ti.total_size()), "seconds": round(seconds, 3),
          "pieces": ti.num_pieces(), "info_hash": str(ti.info_hash())})
    return 0


# ------------------------------------------------------------------------- create
def cmd_create(args):
    path = os.path.abspath(args.path.rstrip("/"))
    if not os.path.exists(path):
        log("no such file or directory: %s" % path)
        sys.exit(1)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    if fs.num_files() == 0:
        log("nothing to add under %s" % path)
        sys.exit(1)
    flags = 0
    if hasattr(lt.create_torrent, "v1_only"):
        flags |= lt.create_torrent.v1_only
    ct = lt.create_torrent(fs, args.piece_length, flags=flags)
    ct.set_creator("kino interop lt_peer.py (libtorrent %s)" % lt.__version__)
    lt.set_piece_hashes(ct, os.path.dirname(path))
    data = lt.bencode(ct.generate())
    with open(args.out, "wb") as f:
        f.write(data)
    ti = lt.torrent_info(args.out)
    emit({"ok": True, "torrent": args.out, "name": ti.name(), "bytes": ti.total_size(),
          "piece_length": ti.piece_length(), "pieces": ti.num_pieces(),
          "info_hash": str(ti.info_hash())})
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="libtorrent peer for Kino interop tests (127.0.0.1 only)")
    sub = p.add_subparsers(dest="mode", required=True)

    s = sub.add_parser("seed", help="seed existing data")
    s.add_argument("--torrent", required=True)
    s.add_argument("--data", required=True, help="save_path holding the data")
    s.add_argument("--port", type=int, default=0, help="listen port (0 = any)")
    s.add_argument("--timeout", type=float, default=600.0)
    s.add_argument("--utp", action="store_true", help="also enable uTP")
    s.add_argument("--enc", choices=sorted(ENC), default="enabled",
                   help="MSE/PE policy in and out (enabled: plaintext accepted; "
                        "outgoing tries encrypted first, then plaintext)")

    d = sub.add_parser("download", help="download from given peers")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--torrent")
    src.add_argument("--magnet")
    d.add_argument("--out", required=True)
    d.add_argument("--peer", type=parse_peer, action="append", required=True,
                   help="IP:PORT, repeatable")
    d.add_argument("--timeout", type=float, default=120.0)
    d.add_argument("--sequential", action="store_true")
    d.add_argument("--utp", action="store_true", help="also enable uTP")
    d.add_argument("--enc", choices=sorted(ENC), default="enabled",
                   help="MSE/PE policy in and out (enabled: plaintext accepted; "
                        "outgoing tries encrypted first, then plaintext)")

    c = sub.add_parser("create", help="create a v1-only torrent")
    c.add_argument("--path", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--piece-length", type=int, default=0,
                   help="bytes, power of two >= 16384 (0 = libtorrent picks)")

    args = p.parse_args(argv)
    if getattr(args, "timeout", 1) <= 0:
        p.error("--timeout must be > 0")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return {"seed": cmd_seed, "download": cmd_download, "create": cmd_create}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
