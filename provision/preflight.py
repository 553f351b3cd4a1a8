"""Pre-flight: every reason a host cannot (or should not) be provisioned, found from facts.

All problems are reported at once, each naming the fact, its value and the fix, before
the first change (design: "fail before touching"). Pure: facts + settings + data in.
"""

from __future__ import annotations

from provision import matrix, versions
from provision.model import Facts, Gpu, Problem, ProvisionError, Settings

RELEASE_MIB = 8 * 1024  # one release venv: paddle + CUDA runtime wheels + FD (UNCERTAIN, ~6 GB)
OK_SYSTEMD = ("running", "degraded")  # degraded: some unit failed, systemd itself works


def usable_gpus(facts: Facts, settings: Settings) -> tuple[Gpu, ...]:
    """The GPUs the server may use: CUDA_VISIBLE_DEVICES' selection (index or UUID), or all."""
    if not settings.cuda_visible_devices:
        return facts.gpus
    wanted = [w.strip() for w in settings.cuda_visible_devices.split(",") if w.strip()]
    return tuple(g for w in wanted for g in facts.gpus if w in (str(g.index), g.uuid))


def model_fit(facts: Facts, settings: Settings) -> matrix.Fit | None:
    """How the configured model fits the usable GPUs (None: not in the catalogue or no GPU)."""
    model = matrix.model_info(settings.model)
    gpus = usable_gpus(facts, settings)
    if model is None or not gpus:
        return None
    return matrix.fit_model(model, gpus, settings.quantization, settings.tensor_parallel_size)


def _p(host: str, key: str, value: object, message: str, fix: str,
       severity: str = "error") -> Problem:
    return Problem(host, key, str(value), message, fix, severity)  # type: ignore[arg-type]


def check_os(host: str, facts: Facts, settings: Settings) -> list[Problem]:
    out = []
    if facts.python_version is None:
        return [_p(host, "python3", "missing", f"{settings.python} is not installed, so "
                   "nothing else could be checked",
                   "install it (apt-get install -y python3) or set `python` to an interpreter")]
    if facts.kernel != "Linux":
        out.append(_p(host, "kernel", facts.kernel, "FastDeploy runs on Linux only",
                      "use a Linux host (Ubuntu 22.04)"))
    if facts.arch != "x86_64":
        out.append(_p(host, "arch", facts.arch, "Paddle publishes GPU wheels for x86_64 only",
                      "use an x86_64 host"))
    like = f"{facts.os_id} {facts.os_id_like}".split()
    if not ("ubuntu" in like and facts.os_version_id.startswith("22.04")):
        out.append(_p(host, "os", f"{facts.os_pretty or facts.os_id} {facts.os_version_id}",
                      "not the Ubuntu 22.04 family this tool is tested for",
                      "use Ubuntu 22.04 if anything below misbehaves", "warning"))
    if facts.systemd_state not in OK_SYSTEMD:
        out.append(_p(host, "systemd_state", facts.systemd_state,
                      "systemd is not running as the service manager",
                      "boot the host with systemd as PID 1 (`systemctl is-system-running` "
                      "must say running or degraded)"))
    return out


def check_python(host: str, facts: Facts, rel: matrix.Release) -> list[Problem]:
    """A Python upstream does not document for the line: a warning (the wheel tags decide)."""
    if facts.python_version is None:
        return []
    minor = ".".join(facts.python_version.split(".")[:2])
    if minor in rel.python:
        return []
    return [_p(host, "python_version", facts.python_version,
               f"FastDeploy {rel.version} documents Python {', '.join(rel.python)}",
               "use Ubuntu 22.04 (Python 3.10) if the server misbehaves", "warning")]


def check_doubts(host: str, facts: Facts, settings: Settings,
                 rel: matrix.Release) -> list[Problem]:
    """Open points (C13) that touch this host: the reading the data takes, as a warning."""
    sms = {g.sm for g in usable_gpus(facts, settings)}
    return [_p(host, f"doubt {d.key}", rel.version, f"{d.doubt}; the data reads: {d.reading}",
               f"if this host proves otherwise, change the entry in "
               f"provision/data/releases.yaml ({d.source})", "warning")
            for d in matrix.doubts()
            if rel.version in d.lines and (not d.sms or sms & set(d.sms))]


def target(facts: Facts, settings: Settings,
           rel: matrix.Release) -> tuple[matrix.CudaBuild, str] | None:
    """The CUDA build and fastdeploy-gpu index this host's GPUs and driver call for."""
    gpus = usable_gpus(facts, settings)
    cuda = matrix.choose_cuda(rel, facts.driver_version, settings.cuda)
    if not gpus or cuda is None:
        return None
    fd_index = matrix.fastdeploy_index(rel, gpus[0].sm, cuda.index)
    return (cuda, fd_index) if fd_index else None


def choose_versions(host: str, facts: Facts, settings: Settings,
                    rel: matrix.Release) -> versions.Choice:
    """Exact versions from the index (callers ran check_gpu without errors first)."""
    found = target(facts, settings, rel)
    assert found is not None, "check_gpu lets no host without a CUDA build or wheel through"
    return versions.choose(host, facts, settings, rel, found[0].index, found[1])


def check_gpu(host: str, facts: Facts, settings: Settings,
              rel: matrix.Release) -> list[Problem]:
    gpus = usable_gpus(facts, settings)
    if not gpus:
        detail = facts.nvidia_smi_error or "nvidia-smi lists no GPU"
        if facts.gpus and settings.cuda_visible_devices:
            detail = f"cuda_visible_devices={settings.cuda_visible_devices} matches none"
        return [_p(host, "gpus", "none", f"no usable NVIDIA GPU ({detail})",
                   "install and load the NVIDIA driver so `nvidia-smi` lists the GPU, "
                   "or use a GPU host")]
    out = []
    supported = matrix.supported_sms(rel)
    names = ", ".join(f"{s // 10}.{s % 10}" for s in supported)
    for gpu in {g.compute_cap: g for g in gpus}.values():
        if gpu.sm not in supported:
            out.append(_p(host, "gpu.compute_cap", f"{gpu.compute_cap} ({gpu.name})",
                          f"FastDeploy {rel.version}'s prebuilt wheels support SM {names} only",
                          "use an A100/A10/L40S/RTX 4090/H100-class GPU (SM 8.0-9.0)"))
    cuda = matrix.choose_cuda(rel, facts.driver_version, settings.cuda)
    offered = [matrix.cuda_builds()[i] for i in rel.cuda]
    if settings.cuda and not any(settings.cuda in (b.cuda, b.index) for b in offered):
        out.append(_p(host, "cuda", settings.cuda, f"FastDeploy {rel.version} is paired with "
                      f"CUDA {', '.join(b.cuda for b in offered)} only",
                      "unset `cuda` or choose one of those"))
    elif cuda is None:
        need = min(offered, key=lambda b: matrix.version_key(b.min_driver))
        if settings.cuda:
            need = next(b for b in offered if settings.cuda in (b.cuda, b.index))
        out.append(_p(host, "driver_version", facts.driver_version or "unknown",
                      f"the NVIDIA driver is too old for every CUDA build of FastDeploy "
                      f"{rel.version} (CUDA {need.cuda} needs driver >= {need.min_driver})",
                      f"upgrade the NVIDIA driver to {need.min_driver} or newer"))
    elif rel.layout == "sm_split" and not out:
        indexes = {matrix.fastdeploy_index(rel, g.sm, cuda.index) for g in gpus}
        if len(indexes) > 1:
            out.append(_p(host, "gpus", ", ".join(sorted({g.name for g in gpus})),
                          "the GPUs need different fastdeploy-gpu wheels (80_90 and 86_89)",
                          "set cuda_visible_devices to GPUs of one kind"))
    return out


def check_model(host: str, facts: Facts, settings: Settings,
                rel: matrix.Release) -> list[Problem]:
    model = matrix.model_info(settings.model)
    gpus = usable_gpus(facts, settings)
    if model is None:
        return [_p(host, "model", settings.model, "not in the ERNIE-4.5 catalogue "
                   "(provision/data/models.yaml): GPU memory, disk and flags are not checked",
                   "use a catalogue name, or pass flags with extra_server_args", "warning")]
    out = []
    if matrix.version_key(rel.version) < matrix.version_key(matrix.line_of(model.min_fastdeploy)):
        out.append(_p(host, "fastdeploy_version", rel.version,
                      f"{model.name} needs FastDeploy >= {model.min_fastdeploy}",
                      f"set fastdeploy_version to {model.min_fastdeploy} or newer, or use the "
                      "-Paddle weights"))
    tp = settings.tensor_parallel_size
    if tp and tp > len(gpus):
        out.append(_p(host, "tensor_parallel_size", tp,
                      f"tensor parallelism over {tp} GPUs, but the host has {len(gpus)} usable",
                      f"set tensor_parallel_size to at most {len(gpus)}"))
    elif gpus:
        fit = matrix.fit_model(model, gpus, settings.quantization, tp)
        if not fit.ok:
            out.append(_p(host, "gpu.memory", f"{fit.have_gib:.0f} GiB on {fit.tp} GPU(s)",
                          f"{model.name} with {fit.quantization} needs about "
                          f"{fit.need_gib:.0f} GiB of GPU memory", fit.suggestion))
        elif fit.auto and fit.quantization != matrix.quantizations()[0]:
            out.append(_p(host, "quantization", fit.quantization,
                          f"{model.name} does not fit in "
                          f"{matrix.quantizations()[0]} on these GPUs; serving it with "
                          f"--quantization {fit.quantization} (TP {fit.tp})",
                          "set quantization (or more GPUs with tensor_parallel_size) to "
                          "choose otherwise", "warning"))
    if not settings.model_dir and not facts.model_present:
        free = facts.disk_free_mib.get(settings.model_cache_dir)
        need = int(model.weights_gb * 1024)
        if free is not None and free < need:
            out.append(_p(host, "disk_free_mib", f"{settings.model_cache_dir}: {free} MiB",
                          f"the weights of {model.name} need about {need} MiB (estimate)",
                          "free disk space, point model_cache_dir at a larger disk, or set "
                          "model_dir to weights already on the host"))
    return out


def check_disk_release(host: str, facts: Facts, settings: Settings) -> list[Problem]:
    free = facts.disk_free_mib.get(settings.releases_dir)
    if free is None or free >= RELEASE_MIB:
        return []
    return [_p(host, "disk_free_mib", f"{settings.releases_dir}: {free} MiB",
               f"a release (Paddle with its CUDA libraries and FastDeploy) needs about "
               f"{RELEASE_MIB} MiB", "free disk space or point releases_dir at a larger disk")]


def check_ports(host: str, facts: Facts, settings: Settings) -> list[Problem]:
    ours = f"{settings.service_name}.service"
    ports = {"api_port": settings.api_port, "metrics_port": settings.metrics_port,
             "engine_worker_queue_port": settings.engine_worker_queue_port,
             "cache_queue_port": settings.cache_queue_port}
    out = []
    for key, port in ports.items():
        for lst in facts.listeners:
            if lst.port == port and lst.unit != ours:
                who = (f"pid {lst.pid} ({lst.command})" if lst.pid else "an unknown process")
                out.append(_p(host, key, port, f"port {port} is already in use by {who}"
                              + (f" of {lst.unit}" if lst.unit else ""),
                              f"stop that process or set {key} to a free port"))
                break
    return out


def preflight(host: str, facts: Facts, settings: Settings) -> list[Problem]:
    """Every problem at once (errors stop the host; warnings are shown and ignored)."""
    out = check_os(host, facts, settings)
    if facts.python_version is None:
        return out
    try:
        rel = matrix.release(settings.fastdeploy_version)
    except ProvisionError as exc:
        return out + [_p(host, "fastdeploy_version", settings.fastdeploy_version, str(exc),
                         "choose a release listed in provision/data/releases.yaml")]
    out += check_python(host, facts, rel)
    gpu = check_gpu(host, facts, settings, rel)
    out += gpu
    version = None
    if not any(p.severity == "error" for p in gpu):
        choice = choose_versions(host, facts, settings, rel)
        out += choice.problems
        version = choice.fastdeploy
        out += check_doubts(host, facts, settings, rel)
    out += check_model(host, facts, settings, rel)
    if not _release_present(facts, version):
        out += check_disk_release(host, facts, settings)
    out += check_ports(host, facts, settings)
    return out


def _release_present(facts: Facts, version: str | None) -> bool:
    """A complete release of this exact version is on the host already: no new disk needed."""
    prefix = f"fastdeploy-{version}_"
    return version is not None and any(r.startswith(prefix) for r in facts.installed.releases)
