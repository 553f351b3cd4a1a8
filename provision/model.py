"""The shared vocabulary of provision: what flows between its stages.

inventory -> HostSpec + Settings -> (connect) -> Facts -> plan -> Plan(steps)
    -> apply -> verify -> report

Everything here is an immutable value, so each stage is a function of the
previous stage's output and can be tested without SSH. Nothing in this module
does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from provision.upload import Upload

Severity = Literal["error", "warning"]
StepStatus = Literal["ok", "changed", "failed", "skipped"]
HostStatus = Literal["ok", "changed", "failed", "unreachable"]


class ProvisionError(Exception):
    """An error the user can act on; its text names the host or file, the value and the fix."""


class ConfigError(ProvisionError):
    """Bad inventory or variable, found before any connection is made."""

    def __init__(self, where: str, key: str, value: object, fix: str) -> None:
        self.where, self.key, self.value, self.fix = where, key, value, fix
        super().__init__(f"{where}: {key}={value!r}: {fix}")


class UnreachableError(ProvisionError):
    """The transport failed (connect, auth, host key): the host was not touched."""


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class HostSpec:
    """One host as the inventory (or the command line) describes it.

    `vars` is the merged variable dict for this host (all < groups < host_vars < host < -e),
    still raw; `sources` maps each variable name to where its value came from, so a
    validation error can name the file.
    """

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    groups: tuple[str, ...] = ()
    vars: dict = field(default_factory=dict, hash=False, compare=False)
    sources: dict = field(default_factory=dict, hash=False, compare=False)
    # how to reach it (provision/connection_vars.py resolves these from the variables)
    connection: str = "ssh"  # "ssh", or "local": run on this machine without SSH
    jump: tuple[Hop, ...] = ()  # ProxyJump / translated ProxyCommand hops, first hop first
    password: str | None = field(default=None, repr=False, compare=False)  # SSH password
    become_password: str | None = field(default=None, repr=False, compare=False)  # sudo's


@dataclass(frozen=True)
class Hop:
    """One jump host on the way to a host (ssh -J user@host:port), verified like the host."""

    address: str
    port: int | None = None  # None: ssh_config's Port, else 22
    user: str | None = None  # None: ssh_config's User, else the host's login
    key_file: str | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        address = f"[{self.address}]" if ":" in self.address and self.port else self.address
        return f"{user}{address}" + (f":{self.port}" if self.port else "")


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str
    compute_cap: str  # "8.0", "9.0", ... exactly as nvidia-smi prints it
    memory_total_mib: int
    memory_used_mib: int = 0

    @property
    def sm(self) -> int:
        """Compute capability as FastDeploy's index names use it: "8.6" -> 86."""
        major, _, minor = self.compute_cap.partition(".")
        return int(major) * 10 + int(minor or 0)


@dataclass(frozen=True)
class Listener:
    """A listening TCP port on the host and who holds it (unit is the systemd unit, if any)."""

    port: int
    pid: int | None = None
    command: str | None = None
    unit: str | None = None


@dataclass(frozen=True)
class WebInstalled:
    """The chat page's files and unit as the facts trip saw them (provision/webui/)."""

    unit_sha256: str | None = None
    unit_text: str | None = None
    app_sha256: str | None = None
    config_sha256: str | None = None
    env_sha256: str | None = None
    env_mode: int | None = None
    gradio_version: str | None = None  # in the page's venv
    active: str | None = None  # `systemctl is-active`, only when the unit file exists
    enabled: str | None = None


@dataclass(frozen=True)
class Installed:
    """What provision (or anyone) already put on the host, as seen by the facts trip."""

    current_release: str | None = None  # name of the release `venv_dir` points at
    releases: tuple[str, ...] = ()  # complete releases present under releases_dir, oldest first
    paddle_version: str | None = None  # in the current release
    fastdeploy_version: str | None = None
    unit_sha256: str | None = None
    unit_text: str | None = None
    env_sha256: str | None = None
    env_mode: int | None = None
    service_active: str | None = None  # `systemctl is-active` word
    service_enabled: str | None = None  # `systemctl is-enabled` word
    service_restarts: int | None = None  # NRestarts
    venv_kind: str = "missing"  # what venv_dir is: "link", "dir" (not ours: moved aside), "missing"
    web: WebInstalled = field(default_factory=WebInstalled)


@dataclass(frozen=True)
class IndexPage:
    """One package-index project page as the host fetched it (wheels parsed here)."""

    ok: bool
    error: str = ""
    wheels: tuple = ()  # provision.pkgindex.Wheel


@dataclass(frozen=True)
class Facts:
    """Everything the plan needs, gathered in one remote round trip."""

    hostname: str
    kernel: str  # `uname -s`: "Linux"
    arch: str  # `uname -m`
    os_id: str  # /etc/os-release ID
    os_version_id: str
    os_id_like: str
    os_pretty: str
    etc_hosts: str | None  # None when /etc/hosts does not exist
    cloud_hosts_template: str | None  # cloud-init's hosts template, when cloud-init manages it
    python_version: str | None  # "3.10.12"; None when python3 is missing
    has_venv: bool  # `python3 -m venv` works (ensurepip present)
    has_pip: bool
    nvidia_smi: Literal["ok", "missing", "error"]
    nvidia_smi_error: str | None
    gpus: tuple[Gpu, ...]
    driver_version: str | None
    cuda_version: str | None  # highest CUDA the driver supports, from nvidia-smi
    disk_free_mib: dict = field(default_factory=dict, hash=False)  # path -> MiB free
    mem_total_mib: int = 0
    systemd_state: str = "unknown"  # `systemctl is-system-running`
    listeners: tuple[Listener, ...] = ()
    installed: Installed = field(default_factory=Installed)
    cloud_hosts_template_path: str | None = None  # where cloud_hosts_template was read from
    model_present: bool = False  # the weights' directory exists (model_dir, or the cache's copy)
    index_pages: dict = field(default_factory=dict, hash=False)  # url -> IndexPage
    index_skipped: bool = False  # the exact pin is installed: the index was not asked


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Problem:
    """A pre-flight finding; errors stop the host before any change."""

    host: str
    key: str  # the fact or variable at fault, e.g. "gpu.compute_cap"
    value: str
    message: str
    fix: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.host}: {self.message} ({self.key}={self.value}). Fix: {self.fix}"


@dataclass(frozen=True)
class Step:
    """One idempotent change; present in a plan only when something must change.

    `script` is a POSIX shell script built exclusively with provision.shell helpers
    (every value quoted there); apply runs it as one SSH exec request.
    `diff` is a unified diff for --diff, when the step rewrites a file.
    `upload` is a file whose bytes travel on the exec's stdin (never in argv); `script`
    already holds the lines that put it in place.
    """

    name: str
    reason: str
    script: str
    diff: str | None = None
    notifies_restart: bool = False
    timeout_s: int = 1800
    notifies_web: bool = False  # restart the chat page (after the API is verified)
    upload: Upload | None = None


@dataclass(frozen=True)
class Install:
    """Which packages from which indexes, as the compatibility matrix decides."""

    fastdeploy_version: str
    paddle_version: str
    cuda: str  # "12.6"
    paddle_index_url: str
    fastdeploy_index_url: str
    extra_index_url: str | None
    release: str  # release directory name, e.g. "fastdeploy-2.5.0_paddle-3.3.1_cu126"


@dataclass(frozen=True)
class ServerChecks:
    """What verify may expect of this release and model (releases.yaml, models.yaml).

    models_endpoint: GET /v1/models exists (not on 2.0/2.1, C2). api_key: the server enforces
    the key, so verify proves a request without it gets 401 (C3). metrics_local_only: the
    metrics port answers on the host's loopback only (its /config-info dumps FD_API_KEY).
    chat_template_kwargs / max_tokens: the model's real switch for its reasoning and enough
    tokens for `content` to arrive when it cannot be switched off (C6).
    """

    models_endpoint: bool = True
    api_key: bool = False
    metrics_local_only: bool = False
    chat_template_kwargs: dict | None = field(default_factory=lambda: {"enable_thinking": False},
                                              hash=False)
    max_tokens: int = 32


@dataclass(frozen=True)
class Plan:
    host: str
    problems: tuple[Problem, ...]
    steps: tuple[Step, ...]
    install: Install | None
    server_argv: tuple[str, ...]
    served_model: str
    restart: bool  # one restart at the end (a handler), however many steps notified
    checks: ServerChecks = field(default_factory=ServerChecks)
    web_restart: bool = False  # the chat page's restart, after the API is verified

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")


# --------------------------------------------------------------------------- results


@dataclass
class StepResult:
    name: str
    status: StepStatus
    reason: str = ""
    seconds: float = 0.0
    output: str = ""  # tail of the remote output, for failures


@dataclass
class HostResult:
    host: str
    status: HostStatus = "ok"
    steps: list[StepResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    exec_requests: int = 0  # SSH exec requests this run made on the host
    old_release: str | None = None  # what served before this run (from the facts)
    new_release: str | None = None  # what the plan installs
    out_of_service_s: float | None = None  # from the restart until healthy again
    rolled_back: bool = False  # the new release failed its gate; the old one serves again
    failed_at: str | None = None  # connect, facts, preflight, apply or verify: picks the exit code
    touched: bool = False  # a change to the host began (a step, restart or recovery was sent)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Validated variables for one host. Defaults and docs live in provision/variables.py.

    The first block's names are fixed (users, the lab and CI scripts rely on them).
    """

    package_index_url: str = "https://www.paddlepaddle.org.cn/packages/stable"
    pip_extra_index_url: str | None = None
    fastdeploy_version: str = "2.5"  # a line (its newest patch on the index) or "2.5.0"
    venv_dir: str = "/opt/fastdeploy/venv"  # a link to the current release; the unit runs from it
    model: str = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"
    api_port: int = 8180
    metrics_port: int = 8181
    engine_worker_queue_port: int = 8182
    cache_queue_port: int = 8183
    health_timeout: int = 1800  # seconds: model download + load
    known_hosts_file: str | None = None
    # --- ours
    model_dir: str | None = None  # weights already on the host -> --model DIR --served-model-name
    releases_dir: str = "/opt/fastdeploy/releases"
    releases_keep: int = 3
    data_dir: str = "/var/lib/fastdeploy"  # HOME and working directory of the service
    model_cache_dir: str = "/var/lib/fastdeploy/models"  # FD_MODEL_CACHE
    log_dir: str = "/var/log/fastdeploy"  # FD_LOG_DIR
    service_name: str = "fastdeploy"
    env_file: str = "/etc/fastdeploy/env"
    api_key: str | None = None  # secret: goes to env_file as FD_API_KEY, never logged
    cuda: str | None = None  # force a CUDA build ("12.6"); default: newest the driver allows
    server_host: str = "0.0.0.0"
    max_model_len: int = 32768
    max_num_seqs: int = 32
    quantization: str | None = None  # None: the catalogue's choice for the GPU memory
    tensor_parallel_size: int | None = None  # None: the catalogue's choice
    gpu_memory_utilization: float | None = None
    reasoning_parser: str | None = None  # None: the catalogue's choice for the model
    extra_server_args: tuple[str, ...] = ()
    cuda_visible_devices: str | None = None
    python: str = "python3"
    web_ui: bool = False  # the Gradio chat page as its own unit (provision/webui/)
    web_port: int = 7860
    web_password: str | None = None  # secret: the page's login; goes to its root-only env file
