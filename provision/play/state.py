"""The tasks' state: which probes to send, in the facts trip or (after a change) alone.

The probes ride in the deployment's facts exec (facts.gather_command's hook); a task
whose arguments need facts to be known, or whose state an earlier change made stale,
is probed again in one exec of its own. Output is framed JSON parsed as data.
"""

from __future__ import annotations

import json
from pathlib import Path

from provision import shell
from provision.facts import BEGIN, END, unframe
from provision.model import Facts
from provision.play.gpu_facts import gpu_host_vars
from provision.play.model import Probe

SCRIPT = Path(__file__).with_name("state_script.py")
# Run alone (not inside the facts script), the state script prints its own frame.
_ALONE = ("\nimport json as _j, sys as _s\n_s.stdout.write('\\n" + BEGIN + "\\n' + _j.dumps("
          "tasks_state(_j.loads(_s.argv[1]))) + '\\n" + END + "\\n')\n")


def spec(probes: list[Probe]) -> list[list]:
    """[[kind, key, content], ...], one per distinct probe (content if any asks for it)."""
    merged: dict[str, Probe] = {}
    for probe in probes:
        old = merged.get(probe.id)
        merged[probe.id] = Probe(probe.kind, probe.key, probe.content or bool(old and old.content))
    return [[p.kind, p.key, p.content] for p in merged.values()]


def script_text() -> str:
    return SCRIPT.read_text()


def probe_command(python: str, probes: list[Probe]) -> str:
    """One exec that answers only these probes (a re-probe after a change)."""
    return shell.cmd(python, "-c", script_text() + _ALONE, json.dumps(spec(probes)))


def parse_probe_output(host: str, stdout: str) -> dict:
    data = unframe(host, stdout)
    if not isinstance(data, dict):
        return {}
    return {str(k): v if isinstance(v, dict) else {"error": "not a mapping"}
            for k, v in data.items()}


def fact_vars(facts: Facts) -> dict:
    """Facts under Ansible's names (ansible_distribution, ...) plus the GPUs, for `when:`."""
    family = "Debian" if "debian" in f"{facts.os_id} {facts.os_id_like}".split() else \
        facts.os_id.capitalize()
    gpus = [{"index": g.index, "name": g.name, "sm": g.sm,
             "compute_cap": g.compute_cap, "memory_mib": g.memory_total_mib}
            for g in facts.gpus]
    found = {
        "distribution": {"ubuntu": "Ubuntu", "debian": "Debian"}.get(
            facts.os_id, facts.os_id.capitalize()),
        "distribution_version": facts.os_version_id,
        "distribution_major_version": facts.os_version_id.split(".")[0],
        "os_family": family, "hostname": facts.hostname.split(".")[0],
        "fqdn": facts.hostname, "architecture": facts.arch, "system": facts.kernel,
        "memtotal_mb": facts.mem_total_mib, "python_version": facts.python_version,
        "gpus": gpus, "gpu_count": len(gpus), "nvidia_driver_version": facts.driver_version,
        "cuda_version": facts.cuda_version,
    }
    found.update(gpu_host_vars(facts))
    return {"ansible_facts": found, **{f"ansible_{k}": v for k, v in found.items()},
            "gpus": gpus, "gpu_count": len(gpus), **gpu_host_vars(facts)}
