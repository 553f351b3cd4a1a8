"""`provision facts`: connect, run the one facts trip, show what was learnt."""

from __future__ import annotations

import dataclasses
import json
import sys

from provision import pkgindex
from provision.commands.targets import ConfigErrors, resolve_targets
from provision.connection import Remote
from provision.facts import gather_command, parse_facts
from provision.model import Facts, ProvisionError, UnreachableError
from provision.runner import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE


def describe_facts(name: str, address: str, facts: Facts) -> list[str]:
    """Human lines, one topic each, in the order a person checks a GPU host."""
    gpus = [f"{g.index}: {g.name} (SM {g.compute_cap}, {g.memory_total_mib} MiB)"
            for g in facts.gpus] or [f"none (nvidia-smi {facts.nvidia_smi}"
                                     + (f": {facts.nvidia_smi_error})" if facts.nvidia_smi_error
                                        else ")")]
    inst = facts.installed
    hosts_line = "missing" if facts.etc_hosts is None else (
        f"{len(facts.etc_hosts.splitlines())} lines")
    disk = ", ".join(f"{path}: {mib} MiB" for path, mib in facts.disk_free_mib.items())
    listeners = ", ".join(f"{lst.port}" + (f" ({lst.unit or lst.command})"
                                            if lst.unit or lst.command else "")
                          for lst in facts.listeners)
    return [
        f"{name} ({address})",
        f"  os:         {facts.os_pretty} [{facts.os_id} {facts.os_version_id}], "
        f"{facts.kernel} {facts.arch}",
        f"  hostname:   {facts.hostname} (/etc/hosts: {hosts_line})",
        f"  python:     {facts.python_version or 'missing'} (venv: "
        f"{'yes' if facts.has_venv else 'no'}, pip: {'yes' if facts.has_pip else 'no'})",
        "  gpus:       " + "\n              ".join(gpus),
        f"  driver:     {facts.driver_version or '-'} (CUDA {facts.cuda_version or '-'})",
        f"  disk free:  {disk or '-'}",
        f"  memory:     {facts.mem_total_mib} MiB",
        f"  systemd:    {facts.systemd_state}",
        f"  listening:  {listeners or '-'}",
        f"  installed:  release {inst.current_release or '-'}, paddle "
        f"{inst.paddle_version or '-'}, fastdeploy {inst.fastdeploy_version or '-'}, "
        f"service {inst.service_active or '-'}/{inst.service_enabled or '-'}",
        "  index:      " + ("skipped (the pinned version is installed)" if facts.index_skipped
                            else "\n              ".join(index_lines(facts)) or "-"),
    ]


def index_lines(facts: Facts) -> list[str]:
    """Per project page the host fetched: the stable versions it lists, or why none."""
    out = []
    for url, page in facts.index_pages.items():
        if not page.ok:
            out.append(f"{url}: {page.error}")
            continue
        project = url.rstrip("/").rsplit("/", 1)[-1]
        found = pkgindex.versions(page.wheels, project)
        out.append(f"{url}: {', '.join(found) or 'no versions'}")
    return out


def run_facts(inventory: str | None, host: str, extra: tuple[str, ...], as_json: bool,
              accept_new_host_key: bool = False) -> int:
    try:
        [(spec, settings)] = resolve_targets(inventory, host, None, extra)
    except ConfigErrors as exc:
        for error in exc.errors:
            print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with Remote(spec, settings, accept_new_host_key=accept_new_host_key) as remote:
            got = remote.run(gather_command(settings), timeout=120)
            if not got.ok:
                raise ProvisionError(f"{spec.name}: gathering facts failed (exit {got.rc}): "
                                     f"{got.tail(10)}")
            facts = parse_facts(spec.name, got.stdout)
    except UnreachableError as exc:
        print(f"UNREACHABLE: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ProvisionError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print(json.dumps({"host": spec.name, "address": spec.address,
                          "facts": dataclasses.asdict(facts)}, indent=2))
    else:
        print("\n".join(describe_facts(spec.name, spec.address, facts)))
    return EXIT_OK
