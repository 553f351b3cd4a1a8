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

from provision import hostlock, pipfail, shell
from provision.acceptance import run_acceptance
from provision.connection import Remote, RemoteCancelled, RemoteTimeout, Result, Tunnel
from provision.facts import gather_command, model_paths, parse_facts
from provision.fleet_copy import FleetCopy
from provision.guard import (
    FOUND,
    SERVING_STEPS,
    Guard,
    armed,
    confirm_script,
    guard_for,
    pending_dir,
    recover_prefix,
    recovered,
)
from provision.guard import rollback_script as guard_rollback_script
from provision.matrix import model_info
from provision.matrix import release as release_line
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
from provision.progress import PREFIX, BuildProgress
from provision.report import Reporter
from provision.sandbox import host_sandbox
from provision.share import FleetShare
from provision.steps.release import explain as explain_build
from provision.steps.service import exec_argv, model_cache_env
from provision.verify import (
    DIAG_MARK,
    Check,
    Endpoint,
    diagnostics_script,
    parse_poll,
    poll_script,
    verify,
    wait_healthy,
)
from provision.webui.check import WebRoute, verify_web
from provision.webui.check import parse_state as parse_web_state
from provision.webui.steps import restart_script as web_restart_script
from provision.webui.steps import state_script as web_state_script

FACTS_TIMEOUT = 120.0
RESTART_TIMEOUT = 180.0
ROLLBACK_TIMEOUT = 180.0  # a rollback runs even when the per-host time is spent
ROLLBACK_HEALTH_S = 600.0  # how long the restored release may take to answer again


@dataclass(frozen=True)
class Options:
    """How `up` runs, shared by every host (decided once, before any connection)."""

    check: bool = False
    diff: bool = False
    accept_new_host_key: bool = False
    host_timeout: float = 4 * 3600.0
    connect_timeout: float = 15.0
    ssh_config_path: str | None = None
    rollback: bool = True  # a new state that fails its gate is switched back to the old
    acceptance: bool = False  # after verify, the acceptance prompts (smoke deploys)
    roles: tuple[str, ...] | None = None  # a playbook's built-in roles in order (None: all)
    lock_wait: float = hostlock.LOCK_WAIT_S  # how long to wait for another run's host lock
    # Several hosts in one run: what one fetches from upstream, the others copy from it
    share: FleetShare | None = field(default=None, compare=False)
    copy_between_hosts: bool = True  # False: every host fetches from upstream itself


@dataclass
class Deadline:
    """A per-host time budget: every remote call and the health wait are capped by it."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.start + self.seconds - time.monotonic()

    def cap(self, limit: float) -> float:
        return self.limit(limit)[0]

    def limit(self, limit: float, what: str = "its own limit") -> tuple[float, str]:
        """(seconds, which limit that is): the smaller of `limit` and the time left."""
        left = self.left()
        if left <= 0:
            raise ProvisionError(f"the per-host time limit (--host-timeout {self.seconds:.0f}s)"
                                 " ran out")
        if left < limit:
            return left, f"the per-host limit --host-timeout {self.seconds:.0f}s"
        return limit, f"{what} of {limit:.0f}s"


class HostAborted(ProvisionError):
    """The run is stopping (Ctrl-C, SIGTERM, or another host failed with --any-errors-fatal)."""


class StepFailed(ProvisionError):
    """A step failed; already recorded, the message is the host's error."""


def explain_failure(step: Step, output: str, facts: Facts, settings: Settings) -> str:
    """Turn known remote failures into an error naming the cause and the fix: the index
    probe's verdict (pipfail) when pip failed on a GPU package, else the cause lines the
    build printed."""
    wanted = re.search(r"(?:satisfies the requirement|distribution found for) (\S+==\S+)",
                       output)
    if pipfail.read_probe(output):
        requirement = wanted.group(1) if wanted else "the package"
        cause = pipfail.classify(output, requirement, facts.python_version)
        return f"step {step.name}: {cause.message}"
    cause = explain_build(output)
    return f"step {step.name} failed: {cause}" if cause else f"step {step.name} failed"


def download_dirs(settings: Settings, facts: Facts | None) -> tuple[str, ...]:
    """Where the server's first start downloads the weights, whose growth the health wait
    reports: nothing with model_dir or weights already there; FD_MODEL_CACHE itself for a
    release that downloads into it directly (2.0.x, C8), else the model's
    <cache>/<org>/<name>."""
    if settings.model_dir or facts is None or facts.model_present:
        return ()
    try:
        flat = release_line(settings.fastdeploy_version).model_cache == "flat"
    except ProvisionError:
        return ()
    return (model_cache_env(settings, flat_cache=True),) if flat else model_paths(settings)


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
        self.guard: Guard | None = None
        self.guard_started = False  # the step that arms the guard has been sent
        self.fleet = (FleetCopy(self) if options.share is not None and not options.check
                      and spec.connection != "local" else None)
        self.facts: Facts | None = None  # for the health wait's download size
        self.locked = False  # the host lock is held (for the life of the connection)
        reporter.add_secret(settings.api_key)
        reporter.add_secret(settings.web_password)

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
            why = getattr(self.abort, "reason", "") or "another host failed and " \
                "--any-errors-fatal is set"
            raise HostAborted(f"stopped: {why}")

    # ---------------------------------------------------------------- the job

    def converge(self) -> HostResult:
        try:
            self._check_abort()
            return self._converge()
        except UnreachableError as exc:
            self.result.status, self.result.error = "unreachable", self._lost(str(exc))
            self.result.failed_at = "connect" if not self.result.touched else "apply"
            self.reporter.line(self.spec.name, "connect", "unreachable", None, self.result.error)
            return self.result
        except ProvisionError as exc:
            text = str(exc)
            if not text.startswith(self.spec.name):
                text = f"{self.spec.name}: {text}"
            if not isinstance(exc, StepFailed):
                self.reporter.line(self.spec.name, "error", "failed", None, text)
            return self._fail(text, self.result.failed_at or "apply")
        finally:
            if self.fleet is not None:
                self.fleet.close()
            self.result.exec_requests = self.remote.exec_requests
            self.remote.close()

    def _lost(self, error: str) -> str:
        """An unreachable host's message says whether it was changed, and what happens next."""
        if not self.result.touched:
            return f"{error} (the host was not changed)"
        if self.guard_started and self.guard is not None:
            return (f"{error}. The host WAS changed: the switch is not verified; the way back "
                    f"is recorded in {self.guard.pending} and the next run on this host rolls "
                    "it back before anything else")
        return f"{error}. The host WAS changed (nothing that served was replaced yet)"

    def gather(self) -> Facts:
        """The facts trip. Outside check mode it runs under the host lock, taken in the same
        exec (hostlock.take's `then`): the rollback of an earlier run's unverified switch
        that leads the trip must never run beside another run."""
        start = time.monotonic()
        command = recover_prefix(self.settings, self.options.check) + gather_command(
            self.settings)
        got = self.facts_exec(command, self.deadline.cap(FACTS_TIMEOUT + ROLLBACK_TIMEOUT))
        back = recovered(got.stdout)
        if back is not None:
            self.result.touched = True
            self._record("recover", "changed", got.seconds,
                         f"an earlier run's switch was never verified: rolled back to "
                         f"{back or 'the previous unit and env file'} first")
            self.result.status = "changed"
        elif FOUND in got.stdout:
            self.reporter.block(f"--- {self.spec.name}: an earlier run left an unverified switch",
                                [f"  would first roll it back ({pending_dir(self.settings)})"])
        if not got.ok:
            self.result.failed_at = "facts"
            raise ProvisionError(f"{self.spec.name}: gathering facts failed (exit {got.rc}): "
                                 f"{got.tail(10)}")
        facts = parse_facts(self.spec.name, got.stdout)
        self.facts = facts
        self._record("facts", "ok", time.monotonic() - start)
        return facts

    def facts_exec(self, command: str, limit: float) -> Result:
        """Run a facts trip; the first outside check mode takes the host lock in the same
        exec (one run at a time on a host: it waits, saying so, or fails naming the holder)."""
        if self.options.check or self.locked:
            return self.remote.run(command, limit)
        got = hostlock.take(self.remote, self.settings, self.options.lock_wait,
                            self.options.host_timeout, say=self._lock_waiting,
                            then=command, then_s=limit)
        self.locked = True
        return got

    def _lock_waiting(self, text: str) -> None:
        self.reporter.line(self.spec.name, "lock", "waiting", None, text)

    def _converge(self) -> HostResult:
        facts = self.gather()
        plan = make_plan(self.spec.name, facts, self.settings, self.options.roles)
        self.result.problems = list(plan.problems)
        for problem in plan.problems:
            self.reporter.problem(problem)
        if plan.errors:
            return self._fail(f"pre-flight refused {self.spec.name}: "
                              f"{len(plan.errors)} problem(s); nothing was changed", "preflight")
        guard = guard_for(facts, self.settings, plan) if self.options.rollback else None
        if self.options.diff:
            self.reporter.block(f"--- {self.spec.name}: diff", [plan_diffs(plan)])
        if self.options.check:
            return self._check_only(plan, guard)
        self.result.old_release = facts.installed.current_release
        self.result.new_release = plan.install.release if plan.install else None
        self.guard = guard
        restarted: list[float] = []
        try:
            self._apply_steps(armed(plan, guard), facts)
            if plan.restart:
                if self.fleet is not None:
                    self.fleet.weights_before_restart(plan, facts)
                restarted.append(time.monotonic())
                self._restart()
            self._verify(plan)
            if self.fleet is not None:
                self.fleet.weights_verified()
            if plan.steps or plan.restart:
                self._confirm(plan)
        except ProvisionError as exc:
            if isinstance(exc, UnreachableError) or not (guard and self.guard_started):
                raise
            self._roll_back(str(exc), restarted[0] if restarted else None)
        if restarted:
            self.result.out_of_service_s = round(time.monotonic() - restarted[0], 3)
        if self.settings.web_ui:
            self._web(plan)
        if self.options.acceptance:
            self._acceptance(plan)
        return self.result

    def _web(self, plan: Plan) -> None:
        """The chat page: restarted only after the API is verified, then proven to answer."""
        if plan.web_restart:
            got = self.remote.run(web_restart_script(self.settings),
                                  self.deadline.cap(RESTART_TIMEOUT))
            self._record("web restart", "changed" if got.ok else "failed", got.seconds,
                         "the chat page changed or was not running", got.tail(30))
            if not got.ok:
                self.result.failed_at = "apply"
                raise ProvisionError(f"{self.spec.name}: restarting the chat page failed "
                                     f"(exit {got.rc}): {got.tail(10)}")
            self.result.status = "changed"
        def unit() -> tuple:
            got = self.remote.run(web_state_script(self.settings), self.deadline.cap(30))
            return parse_web_state(got.stdout)

        with WebRoute(self.remote, self.settings) as route:
            checks = verify_web(route.url, self.settings, self.deadline.cap(240), unit)
        for check in checks:
            self._record(f"verify {check.name}", "ok" if check.ok else "failed", check.seconds,
                         check.detail if not check.ok else "")
        failed = [c for c in checks if not c.ok]
        if failed:
            self.result.failed_at = "verify"
            raise ProvisionError(f"{self.spec.name}: the chat page failed: "
                                 + "; ".join(f"{c.name}: {c.detail}" for c in failed))

    # ---------------------------------------------------------------- rollback

    def _confirm(self, plan: Plan) -> None:
        """What answered is what this run deployed (release link and the server's flags);
        then the way back is forgotten. Another run or a hand edit fails the host."""
        release = plan.install.release if plan.install else None
        argv = exec_argv(self.settings, plan.server_argv, plan.checks.metrics_local_only)
        got = self.remote.run(confirm_script(self.settings, release, argv), self.deadline.cap(60))
        self._record("verify serving", "ok" if got.ok else "failed", got.seconds,
                     "" if got.ok else got.tail(10))
        if got.rc == 3:
            self.result.failed_at = "verify"
            raise ProvisionError(f"{self.spec.name}: a server answered, but not the one this "
                                 f"run deployed: {got.tail(10)}")
        if not got.ok:
            raise ProvisionError(f"{self.spec.name}: checking what serves failed "
                                 f"(exit {got.rc}): {got.tail(5)}")

    def _roll_back(self, error: str, restarted: float | None) -> None:
        """Restore what served (link, unit, env), restart, prove it answers; still a failure."""
        assert self.guard is not None
        previous = self.guard.previous_release or "the previous unit and env file"
        self.reporter.line(self.spec.name, "rollback", "running", None, f"back to {previous}")
        got = self.remote.run(guard_rollback_script(self.settings), ROLLBACK_TIMEOUT)
        if not got.ok:
            self._record("rollback", "failed", got.seconds, f"back to {previous}", got.tail(30))
            raise ProvisionError(f"{error}\nrollback to {previous} failed: {got.tail(10)}")
        if recovered(got.stdout) is None:  # stopped before the guard was armed
            self._record("rollback", "ok", got.seconds, "nothing had been switched yet")
            raise ProvisionError(f"{error}\nnothing that served had been replaced")
        self._record("rollback", "changed", got.seconds, f"back to {previous}")
        self.result.rolled_back = True
        with Route(self.remote, self.settings) as route:
            endpoint = Endpoint(route.api, route.metrics, "", self.settings.api_key)
            health = wait_healthy(endpoint, min(ROLLBACK_HEALTH_S, self.settings.health_timeout),
                                  unit_state=self._unit_state)
        self._record("rollback verify health", "ok" if health.ok else "failed", health.seconds,
                     "" if health.ok else health.detail)
        if restarted is not None:
            self.result.out_of_service_s = round(time.monotonic() - restarted, 3)
        self.result.failed_at = self.result.failed_at or "verify"
        if not health.ok:
            raise ProvisionError(f"{error}\nrolled back to {previous}, which does not serve "
                                 f"either: {health.detail}")
        raise ProvisionError(f"{error}\nrolled back to {previous}, which serves again")

    def _acceptance(self, plan: Plan) -> None:
        """The acceptance prompts, each recorded as a check; any failure fails the host."""
        info = model_info(self.settings.model)
        # Outside the catalogue (a local path, a fine-tune), ERNIE's naming says it: "-VL-".
        vision = info.multimodal if info else "-VL-" in f"{self.settings.model} {plan.served_model}"
        with Route(self.remote, self.settings, plan.checks.metrics_local_only) as route:
            endpoint = route.endpoint(plan, self.settings)
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

    def _check_only(self, plan: Plan, guard: Guard | None) -> HostResult:
        lines = describe_plan(plan)
        lines += [f"  {step.name}: {step.upload.describe()}" for step in plan.steps
                  if step.upload is not None]
        lines += guard.describe() if guard else (
            ["  guard: none needed (nothing serves now, or nothing that serves changes)"])
        self.reporter.block(f"--- {self.spec.name}: plan (check mode, nothing changed)", lines)
        for step in plan.steps:
            self.result.steps.append(StepResult(step.name, "changed", step.reason))
        self.result.status = "changed" if plan.steps else "ok"
        return self.result

    def _apply_steps(self, plan: Plan, facts: Facts) -> None:
        for step in plan.steps:
            self._check_abort()
            if step.name == "release" and self.fleet is not None:
                self.fleet.release(plan, facts, lambda step=step: self._run_step(step, facts))
            else:
                self._run_step(step, facts)

    def _run_step(self, step: Step, facts: Facts) -> None:
        self.reporter.line(self.spec.name, step.name, "running", None, step.reason)
        start = time.monotonic()
        limit, which = self.deadline.limit(step.timeout_s, f"step {step.name}'s own limit")
        self.result.touched = True
        if self.guard is not None and step.name in SERVING_STEPS:
            self.guard_started = True
        live = ({"progress": self._step_progress(step.name)} if PREFIX.strip() in step.script
                else {})
        try:
            got = self.remote.run(step.script, limit,
                                  stdin=step.upload.data if step.upload else None,
                                  cancel=self.abort, limit_name=which, **live)
        except (RemoteTimeout, RemoteCancelled) as exc:
            self._record(step.name, "failed", time.monotonic() - start, str(exc))
            self.result.failed_at = "apply"
            raise StepFailed(f"{self.spec.name}: step {step.name}: "
                             f"{str(exc).removeprefix(self.spec.name + ': ')}") from None
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
            self.result.failed_at = "apply"
            raise StepFailed(f"{self.spec.name}: {why} (exit {got.rc}); nothing after it ran")
        self._record(step.name, "changed", got.seconds, step.reason)
        self.result.status = "changed"

    def _step_progress(self, name: str) -> Callable[[str], None]:
        """Shows a step's own progress lines (the release build's) live, with their rate."""
        meter = BuildProgress()

        def show(line: str) -> None:
            text = meter.text(line, time.monotonic())
            if text:
                self.reporter.progress(self.spec.name, name, text)

        return show

    def _restart(self) -> None:
        self._check_abort()
        self.result.touched = True
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
        with Route(self.remote, self.settings, plan.checks.metrics_local_only) as route:
            endpoint = route.endpoint(plan, self.settings)
            checks = verify(
                endpoint,
                self.deadline.cap(self.settings.health_timeout),
                unit_state=self._unit_state_or_abort,
                progress=self._health_progress,
                sleep=self._sleep_or_abort,
                weights_gb=self._weights_gb(),
            )
        for check in checks:
            self._record(f"{prefix} {check.name}", "ok" if check.ok else "failed",
                         check.seconds, check.detail if not check.ok else "")
        failed = [c for c in checks if not c.ok]
        if failed:
            self.result.failed_at = "verify"
            raise ProvisionError(self._verify_error(failed))

    def _health_progress(self, text: str) -> None:
        self._check_abort()
        self.reporter.progress(self.spec.name, "health", text)

    def _weights_gb(self) -> float | None:
        """The catalogue's size of the weights, for the download's ETA (None: not listed)."""
        info = model_info(self.settings.model)
        return info.weights_gb if info else None

    def _sleep_or_abort(self, seconds: float) -> None:
        """The health wait's pause, cut short by an interruption (it then stops at once)."""
        self.abort.wait(seconds)
        self._check_abort()

    def _unit_state_or_abort(self):
        self._check_abort()
        return self._unit_state()

    def _verify_error(self, failed: list[Check]) -> str:
        details = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return f"{self.spec.name}: verification failed: {details}\n{self._diagnose()}"

    def _unit_state(self):
        """The health wait's one poll: unit state, download size, loading line."""
        got = self.remote.run(poll_script(self.settings,
                                          download_dirs(self.settings, self.facts)), 30)
        return parse_poll(got.stdout)

    def _diagnose(self) -> str:
        """The unit's journal and workerlog.0, fetched in one exec (best effort)."""
        try:
            got = self.remote.run(diagnostics_script(self.settings), 60)
        except ProvisionError as exc:
            return f"(could not fetch the logs: {exc})"
        journal, _, worker = got.stdout.partition(DIAG_MARK)
        return (f"--- journalctl -u {self.settings.service_name} (last lines)\n"
                f"{journal.strip()}\n--- {self.settings.log_dir}/workerlog.0 (last lines)\n"
                f"{worker.strip() or '(empty or missing)'}")


def _direct(host: str, port: int, timeout: float = 3.0) -> bool:
    """Can this machine open TCP to host:port? Only a real connection counts: "refused"
    from an address that may not be this host's server proves nothing."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class Route:
    """The HTTP base URLs of a host's server, reached through the SSH connection.

    A port forward to the host's own loopback can only reach this host's server, so what
    answers there is what this run verifies, and "refused" there really means the server
    has not opened its port yet (loading). The address the SSH connection uses may be a
    mapped port, a bastion, or another machine entirely; asking it directly could verify
    some other server. Only when the host's sshd forbids forwarding is the server asked
    directly, and then only a port that accepts a connection counts.

    A metrics port kept on the host's loopback (local_metrics: it would expose the API key)
    is always reached through a tunnel; `outside_metrics` is its address as the network
    sees it, for verify to prove nothing answers there with the key.
    """

    def __init__(self, remote: Remote, settings: Settings, local_metrics: bool = False,
                 probe: Callable[[str, int], bool] = _direct) -> None:
        self._tunnels: list[Tunnel] = []
        host = remote.hostname
        name = f"[{host}]" if ":" in host else host
        self.outside_metrics = f"http://{name}:{settings.metrics_port}" if local_metrics else None
        target = settings.server_host
        if target in ("0.0.0.0", "::", ""):
            target = "127.0.0.1"
        if remote.can_forward(target, settings.api_port):
            self._tunnels = [remote.forward(settings.api_port, target),
                             remote.forward(settings.metrics_port,
                                            "127.0.0.1" if local_metrics else target)]
            self.api, self.metrics = (f"http://127.0.0.1:{t.local_port}" for t in self._tunnels)
            self.tunnelled = True
            return
        if local_metrics:
            raise ProvisionError(
                f"{remote.spec.name}: the metrics port listens on the host's loopback only (it "
                "would reveal the API key), and the host's sshd refuses port forwarding, so it "
                "cannot be verified. Fix: allow forwarding for this user (AllowTcpForwarding)")
        if not probe(host, settings.api_port):
            raise ProvisionError(
                f"{remote.spec.name}: the host's sshd refuses port forwarding and "
                f"{host}:{settings.api_port} does not accept connections from here, so the "
                "server cannot be verified. Fix: allow forwarding for this user "
                "(AllowTcpForwarding in sshd_config) or open the API port to this machine")
        self.api = f"http://{name}:{settings.api_port}"
        self.metrics = f"http://{name}:{settings.metrics_port}"
        self.tunnelled = False

    def __enter__(self) -> Route:
        return self

    def endpoint(self, plan: Plan, settings: Settings) -> Endpoint:
        """What verify and acceptance talk to, with what the release lets them expect."""
        return Endpoint(self.api, self.metrics, plan.served_model, settings.api_key,
                        plan.checks, self.outside_metrics)

    def __exit__(self, *exc: object) -> None:
        for tunnel in self._tunnels:
            tunnel.close()


def converge_host(spec: HostSpec, settings: Settings, options: Options, reporter: Reporter,
                  abort: threading.Event | None = None) -> HostResult:
    """The whole job for one host; never raises for a ProvisionError, it records it."""
    return HostRun(spec, settings, options, reporter, abort).converge()
