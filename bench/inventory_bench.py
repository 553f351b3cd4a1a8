#!/usr/bin/env python3
"""Start-up cost of reading an inventory: before this branch, now, and with ansible-core.

    .venv/bin/python bench/inventory_bench.py [--runs 9] [--base REV]

Each figure is the median CPU time (user + system) of a fresh Python process that
imports provision's CLI and loads the inventory (what every command does
before it connects anywhere), plus the median time of one load inside a warm
process. Side by side:

  before   the YAML-only loader at REV (default: the merge base with main),
           on the lab's plain YAML inventory;
  now      today's loader on the same plain YAML inventory: it must stay
           within 10% of `before` (exit status 1 otherwise);
  jinja    today's loader on an inventory with a Jinja value, which imports
           ansible-core: what every run would pay if ansible-core were used
           for all inventories instead of only for those that need it;
  ansible  importing ansible-core's inventory and templating modules alone.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT / "tests" / "fixtures" / "inventories" / "lab" / "inventory.yml"
JINJA = ROOT / "tests" / "fixtures" / "inventories" / "corpus" / "29-jinja-groups" / "inventory"
LIMIT = 1.10

LOAD = """
import sys, time
sys.path[:0] = {paths!r}
import provision.cli
from {module} import load_inventory
start = time.perf_counter()
for _ in range({loops}):
    load_inventory({source!r})
print((time.perf_counter() - start) / {loops})
"""


def _old_loader(rev: str, into: Path) -> None:
    """The inventory module as it was at `rev`, importable as `old_inventory`."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:provision/inventory.py"],
                          capture_output=True, text=True, check=True).stdout
    (into / "old_inventory.py").write_text(text)


def _run(code: str) -> tuple[float, float]:
    """(CPU seconds the child process used, the number it printed).

    CPU time, not wall time: the machine is shared, and a busy neighbour
    stretches wall time without saying anything about this code.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--base", default=None, help="git revision of `before`")
    args = parser.parse_args()
    base = args.base or subprocess.run(
        ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
        capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        _old_loader(base, Path(tmp))
        paths = [str(ROOT), tmp]
        cases = {"before": ("old_inventory", PLAIN), "now": ("provision.inventory", PLAIN),
                 "jinja": ("provision.inventory", JINJA)}
        walls: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):  # interleaved, so load on the machine hits every case alike
            for name, (module, source) in cases.items():
                walls[name].append(_run(LOAD.format(paths=paths, module=module, loops=1,
                                                    source=str(source)))[0])
        rows = {name: (statistics.median(walls[name]),
                       _run(LOAD.format(paths=paths, module=module, loops=20,
                                        source=str(source)))[1])
                for name, (module, source) in cases.items()}
        imports = [_run("import time; s = time.perf_counter(); import ansible.inventory.manager, "
                        "ansible.template, ansible.vars.manager; "
                        "print(time.perf_counter() - s)")[1] for _ in range(args.runs)]
        only = (statistics.median(imports), 0.0)
    print(f"start-up with an inventory, median of {args.runs} fresh processes "
          f"(before = {base[:10]}):")
    print(f"  {'case':<8} {'process cpu s':>14} {'one load ms':>12}")
    for name, (wall, load) in rows.items():
        print(f"  {name:<8} {wall:>14.3f} {load * 1000:>12.2f}")
    print(f"  {'ansible':<8} {only[0]:>14.3f} {'(import only, wall)':>12}")
    ratio = rows["now"][0] / rows["before"][0]
    print(f"now / before: {ratio:.3f} (limit {LIMIT}); "
          f"jinja / before: {rows['jinja'][0] / rows['before'][0]:.2f}")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
