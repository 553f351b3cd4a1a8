"""Running untrusted code (a model's answer) on the GPU host in a throwaway systemd sandbox.

The acceptance prompts ask the model for a program and run it to check the answer. That
program is untrusted input: it must never run on this machine (a CI runner, often root).
It runs on the host being tested, as a transient unit (`systemd-run --pipe --wait`) with a
dynamic user, no network, a read-only system, private /tmp, no devices or capabilities,
and memory, task, file-size and time limits; systemd removes the unit and its user when
it ends. The program arrives on stdin (`python3 -I -`), so it is never part of a command
line either. One SSH exec per program.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from provision import shell
from provision.connection import RemoteTimeout
from provision.model import ProvisionError

MEMORY_MAX = "256M"
TASKS_MAX = 16
SANDBOX = (
    "DynamicUser=yes", "PrivateNetwork=yes", "ProtectSystem=strict", "ProtectHome=yes",
    "PrivateTmp=yes", "PrivateDevices=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_UNIX", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
    "ProtectControlGroups=yes", "RestrictNamespaces=yes", "LockPersonality=yes",
    f"MemoryMax={MEMORY_MAX}", "MemorySwapMax=0", f"TasksMax={TASKS_MAX}", "LimitFSIZE=1M",
    "LimitNOFILE=64", "LimitCORE=0",
)


@dataclass(frozen=True)
class SandboxRun:
    """What the sandboxed program did; `timed_out` when its time limit stopped it."""

    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False


# (program text, arguments, seconds) -> SandboxRun
Sandbox = Callable[[str, list[str], float], SandboxRun]


def sandbox_command(python: str, args: list[str], timeout_s: float) -> str:
    """The one remote command: a transient sandboxed unit running `python -I -` on stdin."""
    props = [f"--property={p}" for p in (*SANDBOX, f"RuntimeMaxSec={max(1, int(timeout_s))}")]
    return shell.cmd("systemd-run", "--quiet", "--pipe", "--wait", "--collect",
                     "--service-type=exec", *props, python, "-I", "-", *args)


def host_sandbox(run: Callable[[str, float, bytes], tuple[int, str, str]],
                 python: str = "/usr/bin/python3") -> Sandbox:
    """A Sandbox that runs each program on the host through `run(script, timeout, stdin)`."""

    def sandboxed(program: str, args: list[str], timeout_s: float) -> SandboxRun:
        start = time.monotonic()
        try:
            rc, out, err = run(sandbox_command(python, args, timeout_s), timeout_s + 30,
                               program.encode())
        except RemoteTimeout as exc:
            return SandboxRun(124, "", str(exc), timed_out=True)
        except ProvisionError as exc:
            return SandboxRun(255, "", f"the sandbox on the host did not run: {exc}")
        # systemd-run --wait exits with the unit's status; RuntimeMaxSec kills it silently
        return SandboxRun(rc, out, err, rc != 0 and time.monotonic() - start >= timeout_s)

    return sandboxed
