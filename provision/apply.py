"""One host, start to finish: connect, facts, plan, steps, restart, verify.

The decisions are all in plan (pure); this module only carries them out, in
order, and records what happened as StepResults. A converged host costs one
exec request (the facts) plus HTTP: no step runs, nothing restarts, and the
health check answers at once.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from provision import pipfail, shell
from provision.acceptance import run_acceptance
from provision.connection import Remote, RemoteTimeout, Tunnel
from provision.facts import gather_command, parse_facts
from provision.matrix import model_info
from provision.model import (
    Facts,
    HostResult,
    HostSpec,
    Plan,
    ProvisionError,
    Settings,
    Step,
    StepResult,
    UnreachableError,
)
from provision.plan import describe_plan, make_plan, plan_diffs
from provision.report import Reporter
from provision.sandbox import host_sandbox
from provision.steps.release import rollback_script
from provision.verify import (
    DIAG_MARK,
    Check,
    Endpoint,
    diagnostics_script,
    parse_unit_state,
    unit_state_script,
    verify,
)

FACTS_TIMEOUT = 120.0
RESTART_TIMEOUT = 180.0


@dataclass(frozen=True)
class Options:
    """How `up` runs, shared by every host (decided once, before any connection)."""

    check: bool = False
    diff: bool = False
    accept_new_host_key: bool = False
    host_timeout: float = 4 * 3600.0
    connect_timeout: float = 15.0
    ssh_config_path: str | None = None
    rollback: bool = True  # a new release that fails its gate is switched back to the old
    acceptance: bool = False  # after verify, the acceptance prompts (smoke deploys)


@dataclass
class Deadline:
    """A per-host time budget: every remote call and the health wait are capped by it."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.start + self.seconds - time.monotonic()

    def cap(self, limit: float) -> float:
        left = self.left()
        if left <= 0:
            raise ProvisionError(f"the per-host time limit ({self.seconds:.0f}s) ran out")
        return min(limit, left)


class HostAborted(ProvisionError):
    """Another host failed and --any-errors-fatal asked everyone to stop."""


def explain_failure(step: Step, output: str, facts: Facts, settings: Settings) -> str:
    """Turn known remote failures into an error naming the cause and the fix."""
    wanted = re.search(r"(?:satisfies the requirement|distribution found for) (\S+==\S+)",
                       output)
    if wanted or pipfail.read_probe(output):
        requirement = wanted.group(1) if wanted else "the package"
        cause = pipfail.classify(output, requirement, facts.python_version)
        return f"step {step.name}: {cause.message}"
    return f"step {step.name} failed"


def restart_script(settings: Settings) -> str:
    """The one restart that every notifying step shares (a handler)."""
    return shell.script([
        shell.cmd("systemctl", "daemon-reload"),
        shell.cmd("systemctl", "reset-failed", settings.service_name) + " || true",
        shell.cmd("systemctl", "restart", settings.service_name),
    ])


class HostRun:
    """The state of one host's run; `converge` is the whole job for that host."""

    def __init__(self, spec: HostSpec, settings: Settings, options: Options,
                 reporter: Reporter, abort: threading.Event | None = None) -> None:
        self.spec, self.settings, self.options = spec, settings, options
        self.reporter = reporter
        self.abort = abort or threading.Event()
        self.deadline = Deadline(options.host_timeout)
        self.result = HostResult(spec.name)
        self.remote = Remote(spec, settings, accept_new_host_key=options.accept_new_host_key,
                             connect_timeout=options.connect_timeout,
                             ssh_config_path=options.ssh_config_path)
        reporter.add_secret(settings.api_key)

    # ---------------------------------------------------------------- bookkeeping

    def _record(self, name: str, status: str, seconds: float, reason: str = "",
                output: str = "") -> StepResult:
        step = StepResult(name, status, reason, round(seconds, 3), output)
        self.result.steps.append(step)
        self.reporter.line(self.spec.name, name, status, seconds, reason if status != "ok" else "")
        return step

    def _fail(self, error: str, stage: str) -> HostResult:
        self.result.status, self.result.error, self.result.failed_at = "failed", error, stage
        return self.result

    def _check_abort(self) -> None:
        if self.abort.is_set():
            raise HostAborted("stopped: another host failed and --any-errors-fatal is set")

    # ---------------------------------------------------------------- the job

    def converge(self) -> HostResult:
        try:
            self._check_abort()
            return self._converge()
        except UnreachableError as exc:
            self.result.status, self.result.error = "unreachable", str(exc)
            self.result.failed_at = "connect"
            self.reporter.line(self.spec.name, "connect", "unreachable", None, str(exc))
            return self.result
        except ProvisionError as exc:
            text = str(exc)
            if not text.startswith(self.spec.name):
                text = f"{self.spec.name}: {text}"
            self.reporter.line(self.spec.name, "error", "failed", None, text)
            return self._fail(text, self.result.failed_at or "apply")
        finally:
            self.result.exec_requests = self.remote.exec_requests
            self.remote.close()

    def gather(self) -> Facts:
        start = time.monotonic()
        got = self.remote.run(gather_command(self.settings),
                              self.deadline.cap(FACTS_TIMEOUT))
        if not got.ok:
            self.result.failed_at = "facts"
            raise ProvisionError(f"{self.spec.name}: gathering facts failed (exit {got.rc}): "
                                 f"{got.tail(10)}")
        facts = parse_facts(self.spec.name, got.stdout)
        self._record("facts", "ok", time.monotonic() - start)
        return facts

    def _converge(self) -> HostResult:
        facts = self.gather()
        plan = make_plan(self.spec.name, facts, self.settings)
        self.result.problems = list(plan.problems)
        for problem in plan.problems:
            self.reporter.problem(problem)
        if plan.errors:
            return self._fail(f"pre-flight refused {self.spec.name}: "
                              f"{len(plan.errors)} problem(s); nothing was changed", "preflight")
        if self.options.diff:
            self.reporter.block(f"--- {self.spec.name}: diff", [plan_diffs(plan)])
        if self.options.check:
            return self._check_only(plan)
        self.result.old_release = facts.installed.current_release
        self.result.new_release = plan.install.release if plan.install else None
        if not self._apply_steps(plan, facts):
            return self.result
        restarted = time.monotonic() if plan.restart else None
        if plan.restart:
            self._restart()
        try:
            self._verify(plan)
        except ProvisionError as exc:
            previous = self._rollback_target(plan, facts)
            if previous is None:
                raise
            self._roll_back(plan, previous, str(exc), restarted)
        if restarted is not None:
            self.result.out_of_service_s = round(time.monotonic() - restarted, 3)
        if self.options.acceptance:
            self._acceptance(plan)
        return self.result

    # ---------------------------------------------------------------- rollback

    def _rollback_target(self, plan: Plan, facts: Facts) -> str | None:
        """The release that served before this run, when going back to it makes sense."""
        old = facts.installed.current_release
        new = plan.install.release if plan.install else None
        if not self.options.rollback or not old or old == new:
            return None
        if facts.installed.service_active != "active" or old not in facts.installed.releases:
            return None
        return old

    def _roll_back(self, plan: Plan, previous: str, error: str,
                   restarted: float | None) -> None:
        """Switch back, restart, prove the old release serves; the host still counts failed."""
        self.reporter.line(self.spec.name, "rollback", "running", None, f"back to {previous}")
        got = self.remote.run(rollback_script(self.settings, previous),
                              self.deadline.cap(RESTART_TIMEOUT))
        if not got.ok:
            self._record("rollback", "failed", got.seconds, f"back to {previous}", got.tail(30))
            raise ProvisionError(f"{error}\nrollback to {previous} failed: {got.tail(10)}")
        self._record("rollback", "changed", got.seconds, f"back to {previous}")
        self.result.rolled_back = True
        try:
            self._verify(plan, prefix="rollback verify")
        except ProvisionError as again:
            raise ProvisionError(f"{error}\nrolled back to {previous}, which does not serve "
                                 f"either: {again}") from again
        if restarted is not None:
            self.result.out_of_service_s = round(time.monotonic() - restarted, 3)
        self.result.failed_at = "verify"
        raise ProvisionError(f"{error}\nrolled back to {previous}, which serves again")

    def _acceptance(self, plan: Plan) -> None:
        """The acceptance prompts, each recorded as a check; any failure fails the host."""
        info = model_info(self.settings.model)
        # Outside the catalogue (a local path, a fine-tune), ERNIE's naming says it: "-VL-".
        vision = info.multimodal if info else "-VL-" in f"{self.settings.model} {plan.served_model}"
        with Route(self.remote, self.settings) as route:
            endpoint = Endpoint(route.api, route.metrics, plan.served_model, self.settings.api_key)
            checks = run_acceptance(endpoint, vision=vision,
                                    sandbox=host_sandbox(self._run_raw, self.settings.python))
        for check in checks:
            self._record(check.name, "ok" if check.ok else "failed", check.seconds,
                         check.detail if not check.ok else "")
        failed = [c for c in checks if not c.ok]
        if failed:
            self.result.failed_at = "verify"
            raise ProvisionError(f"{self.spec.name}: acceptance failed: "
                                 + "; ".join(f"{c.name}: {c.detail}" for c in failed))

    def _run_raw(self, script: str, timeout: float, stdin: bytes) -> tuple[int, str, str]:
        got = self.remote.run(script, self.deadline.cap(timeout), stdin=stdin)
        return got.rc, got.stdout, got.stderr

    def _check_only(self, plan: Plan) -> HostResult:
        self.reporter.block(f"--- {self.spec.name}: plan (check mode, nothing changed)",
                            describe_plan(plan))
        for step in plan.steps:
            self.result.steps.append(StepResult(step.name, "changed", step.reason))
        self.result.status = "changed" if plan.steps else "ok"
        return self.result

    def _apply_steps(self, plan: Plan, facts: Facts) -> bool:
        for step in plan.steps:
            self._check_abort()
            self.reporter.line(self.spec.name, step.name, "running", None, step.reason)
            start = time.monotonic()
            try:
                got = self.remote.run(step.script, self.deadline.cap(step.timeout_s),
                                      stdin=step.upload.data if step.upload else None)
            except RemoteTimeout as exc:
                self._record(step.name, "failed", time.monotonic() - start, str(exc))
                self._fail(f"{self.spec.name}: step {step.name} timed out after "
                           f"{step.timeout_s}s: {exc}", "apply")
                return False
            self.reporter.output(self.spec.name, got.stdout + got.stderr)
            notes = [ln for ln in (got.stdout + got.stderr).splitlines()
                     if ln.startswith("provision: ")]
            if notes and not self.reporter.verbose:  # what the step itself wants said
                self.reporter.output(self.spec.name, "\n".join(notes), always=True)
            if not got.ok:
                tail = got.tail(30)
                self._record(step.name, "failed", got.seconds, step.reason, tail)
                self.reporter.output(self.spec.name, tail, always=not self.reporter.verbose)
                why = explain_failure(step, got.stdout + got.stderr, facts, self.settings)
                self._fail(f"{self.spec.name}: {why} (exit {got.rc}); nothing after it ran",
                           "apply")
                return False
            self._record(step.name, "changed", got.seconds, step.reason)
            self.result.status = "changed"
        return True

    def _restart(self) -> None:
        self._check_abort()
        got = self.remote.run(restart_script(self.settings), self.deadline.cap(RESTART_TIMEOUT))
        if not got.ok:
            self._record("restart", "failed", got.seconds, "systemctl restart", got.tail(30))
            self.result.failed_at = "apply"
            raise ProvisionError(f"{self.spec.name}: restarting {self.settings.service_name} "
                                 f"failed (exit {got.rc}): {got.tail(10)}\n{self._diagnose()}")
        self._record("restart", "changed", got.seconds, "the unit or the packages changed")
        self.result.status = "changed"

    # ---------------------------------------------------------------- verify

    def _verify(self, plan: Plan, prefix: str = "verify") -> None:
        with Route(self.remote, self.settings) as route:
            endpoint = Endpoint(route.api, route.metrics, plan.served_model, self.settings.api_key)
            checks = verify(
                endpoint,
                self.deadline.cap(self.settings.health_timeout),
                unit_state=self._unit_state,
                progress=lambda text: self.reporter.line(self.spec.name, "health", "waiting",
                                                         None, text),
            )
        for check in checks:
            self._record(f"{prefix} {check.name}", "ok" if check.ok else "failed",
                         check.seconds, check.detail if not check.ok else "")
        failed = [c for c in checks if not c.ok]
        if failed:
            self.result.failed_at = "verify"
            raise ProvisionError(self._verify_error(failed))

    def _verify_error(self, failed: list[Check]) -> str:
        details = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return f"{self.spec.name}: verification failed: {details}\n{self._diagnose()}"

    def _unit_state(self):
        got = self.remote.run(unit_state_script(self.settings), self.deadline.cap(30))
        return parse_unit_state(got.stdout)

    def _diagnose(self) -> str:
        """The unit's journal and workerlog.0, fetched in one exec (best effort)."""
        try:
            got = self.remote.run(diagnostics_script(self.settings), self.deadline.cap(60))
        except ProvisionError as exc:
            return f"(could not fetch the logs: {exc})"
        journal, _, worker = got.stdout.partition(DIAG_MARK)
        return (f"--- journalctl -u {self.settings.service_name} (last lines)\n"
                f"{journal.strip()}\n--- {self.settings.log_dir}/workerlog.0 (last lines)\n"
                f"{worker.strip() or '(empty or missing)'}")


def _direct(host: str, port: int, timeout: float = 3.0) -> bool:
    """Can this machine open TCP to host:port? Refused counts as yes: the server is loading."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


class Route:
    """The HTTP base URLs of a host's server: direct when reachable, else SSH tunnels."""

    def __init__(self, remote: Remote, settings: Settings,
                 probe: Callable[[str, int], bool] = _direct) -> None:
        self._tunnels: list[Tunnel] = []
        host = remote.hostname
        if not remote.via_gateway and probe(host, settings.api_port):
            name = f"[{host}]" if ":" in host else host
            self.api = f"http://{name}:{settings.api_port}"
            self.metrics = f"http://{name}:{settings.metrics_port}"
            self.tunnelled = False
        else:
            ports = (settings.api_port, settings.metrics_port)
            self._tunnels = [remote.forward(port) for port in ports]
            self.api, self.metrics = (f"http://127.0.0.1:{t.local_port}" for t in self._tunnels)
            self.tunnelled = True

    def __enter__(self) -> Route:
        return self

    def __exit__(self, *exc: object) -> None:
        for tunnel in self._tunnels:
            tunnel.close()


def converge_host(spec: HostSpec, settings: Settings, options: Options, reporter: Reporter,
                  abort: threading.Event | None = None) -> HostResult:
    """The whole job for one host; never raises for a ProvisionError, it records it."""
    return HostRun(spec, settings, options, reporter, abort).converge()
