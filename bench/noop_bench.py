#!/usr/bin/env python3
"""No-op `provision up` on converged lab hosts against the floor, one bare `ssh host true`.

Run as root, with the lab's id exported, on a lab whose hosts `provision up` converged:
    PROVISION_LAB_ID=n .venv/bin/python bench/noop_bench.py [--runs 9] [--fleet 16]

Rows, each timed from outside as a whole process, A and B in turn (A B A B ...) so the
ratio is taken pair by pair and a drift of the machine's speed hits both sides:

  direct   `provision up --host gpu1` against `ssh ... gpu1 true` (no connection sharing:
           ControlMaster=no, ControlPath=none; the tool never shares either);
  25 ms    the same through bench/delay_proxy.py, which puts 25 ms one way in front of every
           port the tool uses (SSH, the API port, the metrics port), against ssh through the
           same proxy;
  fleet    (with --fleet N) `up --limit all` on N converged hosts against `up --host gpu1`:
           what the lab boots is added first, converged once, its memory cost reported,
           and one more run of each with its CPU: the tool's, the hosts', the machine's.

Then where the time goes (bench/noop_phases.py in fresh processes, medians), the modules
that cost most to import (`python -X importtime`), and the exec requests of one no-op.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PROXY_ADDR = "127.0.8.1"  # a loopback address of its own: no port clash with anything local
PROXY_SSH_PORT = 2222
GOAL = 1.5


def timed(argv: list[str], env: dict | None = None) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def paired(a: list[str], b: list[str], runs: int) -> dict:
    """A and B in turn after one warm-up each; min/median/max of each and of A/B pair by pair."""
    timed(a), timed(b)
    pairs = [(timed(a), timed(b)) for _ in range(runs)]
    ratios = [x / y for x, y in pairs]
    return {"a": [x for x, _ in pairs], "b": [y for _, y in pairs], "ratio": ratios}


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def ssh_argv(inventory: dict, host: str) -> list[str]:
    """The floor: one exec on a fresh connection, with the tool's own key and known hosts."""
    top = inventory["all"]
    spec = top["hosts"][host]
    return ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-o", f"UserKnownHostsFile={top['vars']['known_hosts_file']}",
            "-o", "StrictHostKeyChecking=yes", "-i", spec["ansible_ssh_private_key_file"],
            "-p", str(spec.get("ansible_port", 22)),
            f"{spec['ansible_user']}@{spec['ansible_host']}", "true"]


def up_argv(inventory: Path, *select: str) -> list[str]:
    return [PY, "-m", "provision.cli", "up", "-i", str(inventory), *select]


def proxied_inventory(inventory: dict, host: str, work: Path) -> tuple[Path, dict, list[str]]:
    """The host reached through the delay proxy: its address, SSH port and known_hosts entry."""
    top = inventory["all"]
    spec = dict(top["hosts"][host])
    address = spec["ansible_host"]
    keys = [line.split(None, 1)[1] for line in
            Path(top["vars"]["known_hosts_file"]).read_text().splitlines()
            if line.split(None, 1)[0] == address]
    known = work / "known_hosts"
    known.write_text("".join(f"[{PROXY_ADDR}]:{PROXY_SSH_PORT} {k}\n" for k in keys))
    spec.update(ansible_host=PROXY_ADDR, ansible_port=PROXY_SSH_PORT)
    data = {"all": {"vars": dict(top["vars"], known_hosts_file=str(known)),
                    "hosts": {host: spec}}}
    path = work / "inventory.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ports = [(PROXY_SSH_PORT, 22), (8180, 8180), (8181, 8181)]
    routes = [f"{PROXY_ADDR}:{mine}={address}:{theirs}" for mine, theirs in ports]
    return path, data, routes


def start_proxy(routes: list[str], delay_ms: float) -> subprocess.Popen:
    proxy = subprocess.Popen([PY, str(ROOT / "bench/delay_proxy.py"), "--delay-ms",
                              str(delay_ms), *routes], stdout=subprocess.PIPE, text=True)
    if proxy.stdout.readline().strip() != "ready":
        proxy.kill()
        sys.exit("the delay proxy did not start")
    return proxy


def phases(inventory: Path, host: str, runs: int) -> dict[str, float]:
    """Median seconds of each phase over `runs` fresh processes, interpreter start included."""
    seen: dict[str, list[float]] = {"interpreter": []}
    for _ in range(runs):
        seen["interpreter"].append(timed([PY, "-c", "pass"]))
        done = subprocess.run([PY, str(ROOT / "bench/noop_phases.py"), str(inventory), host],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        for name, value in json.loads(done.stdout).items():
            seen.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in seen.items()}


def top_imports(count: int = 10) -> list[tuple[str, float]]:
    """The costliest top-level packages `up` loads, wherever imported (cumulative seconds of
    their first import, one run: `python -X importtime`)."""
    done = subprocess.run([PY, "-X", "importtime", "-c",
                           "import provision.cli, provision.commands.up"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        name = parts[-1].strip()
        if len(parts) == 3 and parts[1].strip().isdigit() and "." not in name:
            rows.append((name, int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:count]


def fleet(size: int, runs: int) -> tuple[dict, float, list[tuple[str, dict]]]:
    """Grow the lab to `size` hosts, converge the new ones, time N against 1 (no-op both),
    then one more run of each with where its CPU went."""
    from provision_lab.lab import Lab

    lab = Lab()
    missing = size - len(lab.status())
    if missing > 0:
        lab.add_hosts(["a100"] * missing)
    inventory = lab.inventory()
    many = up_argv(inventory, "--limit", "all", "--forks", str(size))
    one = up_argv(inventory, "--host", "gpu1")
    timed(many)  # converge the new ones
    roots = [h.pid for h in lab.status()]
    memory = lab_memory_mib(roots)
    result = paired(many, one, runs)
    profiles = [(f"up --limit all on {size}", cpu_profile(many, roots)),
                ("up --host gpu1", cpu_profile(one, roots))]
    return result, memory, profiles


def cpu_profile(argv: list[str], roots: list[int]) -> dict:
    """One run's wall time beside the CPU seconds of the tool (this process's children),
    of the lab hosts (every process in their trees, the reaped ones through their parents'
    cumulative times) and of the whole machine (/proc/stat): when the machine's busy time
    nears wall x CPUs, the run waits for CPU, not for the network or the hosts."""
    def machine_busy() -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

    def tool_cpu() -> float:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime

    before = (tool_cpu(), lab_cpu_s(roots), machine_busy())
    wall = timed(argv)
    after = (tool_cpu(), lab_cpu_s(roots), machine_busy())
    tool, hosts, busy = (b - a for a, b in zip(before, after, strict=True))
    return {"wall": wall, "tool": tool, "hosts": hosts, "busy": busy,
            "capacity": wall * (os.cpu_count() or 1)}


def lab_processes(roots: list[int]) -> list[int]:
    """The hosts' nspawn processes and all they started (systemd, sshd, the stand-in
    server, ...)."""
    parent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1]
                                             .split()[1])
            except (OSError, IndexError, ValueError):
                continue
    ours, found = set(roots), []
    for pid in parent:
        seen, up = set(), pid
        while up not in ours and up in parent and up not in seen:
            seen.add(up)
            up = parent[up]
        if up in ours:
            found.append(pid)
    return found


def lab_cpu_s(roots: list[int]) -> float:
    """CPU seconds the hosts' processes used so far, with their reaped children's."""
    ticks = 0
    for pid in lab_processes(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def lab_memory_mib(roots: list[int]) -> float:
    """Proportional set size of the hosts' processes: what the running hosts cost in
    memory, shared pages split among their users."""
    total_kib = 0
    for pid in lab_processes(roots):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--delay-ms", type=float, default=25.0)
    parser.add_argument("--host", default="gpu1")
    parser.add_argument("--fleet", type=int, default=0, metavar="N",
                        help="also time `up --limit all` on N hosts against 1 (boots them)")
    args = parser.parse_args()
    from provision_lab import paths

    inv_path = paths.INVENTORY
    if not inv_path.exists():
        sys.exit(f"no lab inventory at {inv_path}: `provision lab up 1` and `provision up` first")
    inventory = yaml.safe_load(inv_path.read_text())
    # An installed tool has its bytecode (pip compiles it at install); an editable checkout
    # run with PYTHONDONTWRITEBYTECODE set would compile every module it imports each run.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "provision")], check=True,
                   stdout=subprocess.DEVNULL)
    rows: list[tuple[str, dict]] = []
    rows.append(("direct: up --host / ssh true",
                 paired(up_argv(inv_path, "--host", args.host),
                        ssh_argv(inventory, args.host), args.runs)))
    with tempfile.TemporaryDirectory(prefix="noop-bench-") as tmp:
        path, data, routes = proxied_inventory(inventory, args.host, Path(tmp))
        proxy = start_proxy(routes, args.delay_ms)
        try:
            rows.append((f"{args.delay_ms:g} ms one way: up / ssh true",
                         paired(up_argv(path, "--host", args.host), ssh_argv(data, args.host),
                                args.runs)))
            delayed = phases(path, args.host, max(3, args.runs // 2))
        finally:
            proxy.terminate()
            proxy.wait()
    direct = phases(inv_path, args.host, max(3, args.runs // 2))
    memory, profiles = None, []
    if args.fleet:
        result, memory, profiles = fleet(args.fleet, args.runs)
        rows.append((f"fleet: up --limit all on {args.fleet} / up on 1", result))
    report(rows, direct, delayed, args, memory, profiles)


def report(rows: list[tuple[str, dict]], direct: dict, delayed: dict, args, memory,
           profiles: list[tuple[str, dict]]) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {load}; {args.runs} pairs each, seconds min / median / max")
    print(f"{'run':38} {'A (tool) s':>24} {'B (floor) s':>24} {'A/B median':>10} goal")
    for label, got in rows:
        ratio = statistics.median(got["ratio"])
        print(f"{label:38} {spread(got['a']):>24} {spread(got['b']):>24} {ratio:10.2f} "
              f"{'met' if ratio <= GOAL else f'NOT met (<= {GOAL})'}")
    if memory is not None:
        print(f"fleet of {args.fleet}: the converged lab hosts' processes hold {memory:.0f} MiB "
              f"(PSS), {memory / args.fleet:.0f} MiB a host")
    if profiles:
        print(f"\nwhere the fleet's time goes (one more run each; seconds) {'wall':>7} "
              f"{'tool CPU':>9} {'hosts CPU':>9} {'machine busy / wall x CPUs':>27}")
        for label, got in profiles:
            print(f"  {label:53} {got['wall']:7.2f} {got['tool']:9.2f} {got['hosts']:9.2f} "
                  f"{got['busy']:13.2f} / {got['capacity']:.2f}")
    print(f"\nwhere a no-op goes (median of fresh processes; seconds) {'direct':>8} "
          f"{f'{args.delay_ms:g} ms':>8}")
    for name in direct:
        if name != "exec_requests":
            print(f"  {name:54} {direct[name]:8.3f} {delayed.get(name, 0.0):8.3f}")
    print(f"  {'exec requests':54} {direct['exec_requests']:8.0f} "
          f"{delayed.get('exec_requests', 0):8.0f}")
    print("\ncostliest packages `provision up` imports (python -X importtime, cumulative s):")
    for name, seconds in top_imports():
        print(f"  {name:54} {seconds:8.3f}")


if __name__ == "__main__":
    main()
