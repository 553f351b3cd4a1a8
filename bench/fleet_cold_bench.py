#!/usr/bin/env python3
"""A cold `provision up` of N lab hosts against a cold `up` of one, behind a far upstream.

Run as root, with the lab's id exported (the bench takes the lab down and up again):
    PROVISION_LAB_ID=n .venv/bin/python bench/fleet_cold_bench.py [--hosts 4] [--pad-mb 300]
        [--weights-mb 400] [--rate 40]

The lab's upstream is made large and far first (`Lab.set_upstream`: the stand-in
paddlepaddle-gpu wheel padded to --pad-mb MB, fastdeploy-gpu to a quarter of it, --weights-mb
MB of weights on the lab's model hub, everything its index server sends limited to --rate
MB/s in total) while hosts reach each other at full speed over the lab bridge. Hosts boot
without seeded weights, so each server's first start downloads them, as on a real host.

Rows, side by side in one run:
  1 host          a cold `up --host` of one fresh host;
  N hosts, copy   a cold `up --limit all` of N fresh hosts (the default: one host fetches, the
                  others copy from it);
  N hosts, alone  the same with --no-copy-between-hosts (every host fetches for itself: the
                  tool before the fleet share).
A copy goes host to host where the hosts reach each other (the lab bridge: they do), else
through this machine; the output says how each went. Each row gives the wall time and the
bytes the lab's index server sent (its access log: Paddle index, general index, hub), and
the goals' ratios against the 1-host row: bytes within 1.2x, time within 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BYTES_GOAL, TIME_GOAL = 1.2, 1.5
# The hub serves --weights-mb for any model; a small one in the catalogue keeps pre-flight's
# disk check (the catalogue's weights size) from refusing hosts on this machine's disk.
MODEL = "baidu/ERNIE-4.5-0.3B-Paddle"


def cold_up(lab, count: int, *extra: str) -> dict:
    """Fresh hosts (no release, no weights), one cold `up` of them all: seconds and bytes."""
    lab.up(count, ["a100"], seed_weights=False)
    inventory = str(lab.inventory())
    names = ":".join(sorted(lab.hosts))
    mark = lab.index_mark()
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "provision.cli", "up", "-i", inventory,
                           "--limit", names, "-e", f"model={MODEL}", "--json", *extra], cwd=ROOT,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"cold up of {count} host(s) failed ({done.returncode}):\n"
                 f"{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    time.sleep(1)  # the index server logs a request when its response ends
    sent = lab.index_bytes(mark)
    return {"seconds": seconds, "bytes": sent, "copies": copies(done.stdout)}


def copies(report: str) -> str:
    """How the run's copies went, from its JSON report: 'N host to host, M relayed'."""
    reasons = [step["reason"] for host in json.loads(report)["hosts"]
               for step in host["steps"] if step["reason"].startswith("copied ")]
    direct = sum("host to host" in why for why in reasons)
    return f"{direct} host to host, {len(reasons) - direct} relayed" if reasons else "none"


def mb(n: float) -> str:
    return f"{n / 1e6:9.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--pad-mb", type=float, default=300)
    parser.add_argument("--weights-mb", type=float, default=400)
    parser.add_argument("--rate", type=float, default=40, help="MB/s, the index server's total")
    args = parser.parse_args()
    if not os.environ.get("PROVISION_LAB_ID"):
        sys.exit("export PROVISION_LAB_ID=n first: the bench takes that lab down and up again")
    from provision_lab.lab import Lab

    lab = Lab()
    try:
        lab.set_upstream(pad_mb=args.pad_mb, weights_mb=args.weights_mb, rate_mbps=args.rate)
        rows = [("1 host", cold_up(lab, 1)),
                (f"{args.hosts} hosts, copy", cold_up(lab, args.hosts)),
                (f"{args.hosts} hosts, alone", cold_up(lab, args.hosts,
                                                       "--no-copy-between-hosts"))]
    finally:
        lab.down()
        lab.set_upstream()
    base = rows[0][1]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"upstream: paddlepaddle-gpu padded to {args.pad_mb:.0f} MB, weights "
          f"{args.weights_mb:.0f} MB, {args.rate:.0f} MB/s in total; hosts a100, no seeded "
          "weights")
    print(f"{'run':22} {'time s':>8} {'paddle MB':>10} {'general MB':>10} {'hub MB':>9} "
          f"{'total MB':>9} {'bytes/1':>8} {'time/1':>7}")
    for name, row in rows:
        sent = row["bytes"]
        print(f"{name:22} {row['seconds']:8.1f} {mb(sent['paddle']):>10} "
              f"{mb(sent['general']):>10} {mb(sent['hub']):>9} {mb(sent['total']):>9} "
              f"{sent['total'] / base['bytes']['total']:8.2f} "
              f"{row['seconds'] / base['seconds']:7.2f}")
    print("copies (release and weights): "
          + "; ".join(f"{name}: {row['copies']}" for name, row in rows))
    copy = rows[1][1]
    ratio_b = copy["bytes"]["total"] / base["bytes"]["total"]
    ratio_t = copy["seconds"] / base["seconds"]
    print(f"goal: {args.hosts} hosts within {BYTES_GOAL}x the bytes of 1 host: {ratio_b:.2f} "
          f"({'met' if ratio_b <= BYTES_GOAL else 'NOT met'}); within {TIME_GOAL}x the time: "
          f"{ratio_t:.2f} ({'met' if ratio_t <= TIME_GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
