#!/usr/bin/python3
"""Charts for Kino's benchmark: buffer ahead over time per client, startup CDF.

Usage: /usr/bin/python3 bench/plot.py CHARTS.json OUT_DIR
Reads the chart data kino-bench writes; writes buffer.png and startup_cdf.png.
Needs python3-matplotlib (scripts/install-bench-peers).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    data = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for name, series in sorted(data["buffer"].items()):
        if series:
            ax.plot([p[0] for p in series], [p[1] for p in series], label=name, lw=1.4)
    ax.set_xlabel("time since the client was started (s)")
    ax.set_ylabel("media buffered ahead of the playhead (s)")
    ax.set_title("Buffer ahead, run with the median startup\n" + data["title"])
    ax.grid(alpha=0.3)
    if data["buffer"]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "buffer.png"))

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for name, xs in sorted(data["startup"].items()):
        xs = sorted(xs)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label="%s (n=%d)" % (name, len(xs)), lw=1.4)
    ax.axvline(data["startup_limit"], color="grey", ls="--", label="physical limit")
    ax.set_xlabel("startup: first 10 s of media readable (s)")
    ax.set_ylabel("fraction of runs")
    ax.set_ylim(0, 1.02)
    ax.set_title("Startup CDF over repetitions\n" + data["title"])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "startup_cdf.png"))


if __name__ == "__main__":
    main()
