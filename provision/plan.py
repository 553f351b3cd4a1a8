"""The plan: a pure function of (facts, settings, data) to pre-flight problems and steps.

No I/O, so the whole decision table is unit-tested without SSH and `--check` prints
exactly what apply would run. A converged host yields no steps at all.
"""

from __future__ import annotations

from provision import matrix
from provision.model import Facts, Install, Plan, Settings, Step
from provision.preflight import model_fit, preflight, usable_gpus
from provision.steps.hosts import hosts_problems, hosts_steps
from provision.steps.packages import packages_step
from provision.steps.release import release_steps
from provision.steps.service import service_steps


def decide_install(facts: Facts, settings: Settings) -> Install:
    """Versions, indexes and the release name; callers ran pre-flight (no errors) first."""
    rel = matrix.release(settings.fastdeploy_version)
    cuda = matrix.choose_cuda(rel, facts.driver_version, settings.cuda)
    gpu = usable_gpus(facts, settings)[0]
    assert cuda is not None, "pre-flight lets no host without a CUDA build through"
    fd_index = matrix.fastdeploy_index(rel, gpu.sm, cuda.index)
    assert fd_index is not None, "pre-flight lets no unsupported SM through"
    base = settings.package_index_url.rstrip("/")
    return Install(
        fastdeploy_version=rel.version, paddle_version=rel.paddle, cuda=cuda.cuda,
        paddle_index_url=f"{base}/{cuda.index}/",
        fastdeploy_index_url=f"{base}/{fd_index}/",
        extra_index_url=settings.pip_extra_index_url,
        release=matrix.release_name(rel, cuda, fd_index),
    )


def server_args(settings: Settings, rel: matrix.Release, model: matrix.ModelInfo | None,
                fit: matrix.Fit | None) -> tuple[str, ...]:
    """Every server flag, all four ports explicit (defaults differ between releases).

    --served-model-name always: after a hub download the server would otherwise list the
    cache directory as the model id (reference §5.3), and clients ask for the hub name.
    """
    source = settings.model_dir or settings.model
    args = ["--model", source, "--served-model-name", settings.model]
    args += ["--host", settings.server_host, "--port", str(settings.api_port),
             "--metrics-port", str(settings.metrics_port),
             "--engine-worker-queue-port", str(settings.engine_worker_queue_port),
             "--cache-queue-port", str(settings.cache_queue_port),
             "--max-model-len", str(settings.max_model_len),
             "--max-num-seqs", str(settings.max_num_seqs)]
    tp = settings.tensor_parallel_size or (fit.tp if fit else 1)
    if tp > 1:
        args += ["--tensor-parallel-size", str(tp)]
    quant = settings.quantization or (fit.quantization if fit else None)
    if quant and quant != "bf16":  # bf16 is the server's default: no flag
        args += ["--quantization", quant]
    if settings.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
    parser = settings.reasoning_parser or (model.reasoning_parser if model else None)
    if parser and parser != "none":
        args += ["--reasoning-parser", parser]
    if model and model.multimodal and rel.enable_mm == "required":
        args.append("--enable-mm")
    if model and model.load_choices:
        args += ["--load-choices", model.load_choices]
    return (*args, *settings.extra_server_args)


def make_plan(host: str, facts: Facts, settings: Settings) -> Plan:
    """Problems, and when none is an error, the steps that close the gap (maybe none)."""
    problems = (*preflight(host, facts, settings), *hosts_problems(host, facts))
    if any(p.severity == "error" for p in problems):
        return Plan(host, problems, (), None, (), settings.model, False)
    rel = matrix.release(settings.fastdeploy_version)
    install = decide_install(facts, settings)
    argv = server_args(settings, rel, matrix.model_info(settings.model),
                       model_fit(facts, settings))
    steps: list[Step] = []
    packages = packages_step(facts)
    if packages:
        steps.append(packages)
    steps += release_steps(facts, settings, install, rel.python)
    steps += hosts_steps(facts)
    steps += service_steps(facts, settings, argv)
    restart = (any(s.notifies_restart for s in steps)
               or facts.installed.service_active != "active")
    return Plan(host, problems, tuple(steps), install, argv, settings.model, restart)


def describe_plan(plan: Plan) -> list[str]:
    """--check: each step that would change and why, then the restart decision."""
    lines = [f"  problem: {p}" for p in plan.problems]
    if plan.errors:
        return lines + ["  nothing will be done until the errors above are fixed"]
    if plan.install:
        i = plan.install
        lines.append(f"  release: {i.release} (paddlepaddle-gpu {i.paddle_version} from "
                     f"{i.paddle_index_url}, fastdeploy-gpu {i.fastdeploy_version} from "
                     f"{i.fastdeploy_index_url})")
    lines += [f"  would change: {s.name}: {s.reason}" for s in plan.steps]
    if not plan.steps:
        lines.append("  nothing to change")
    lines.append("  would restart the service" if plan.restart else "  no restart needed")
    lines.append("  server: " + " ".join(plan.server_argv))
    return lines


def plan_diffs(plan: Plan) -> str:
    """--diff: the file changes (unit, /etc/hosts, env file with secrets masked)."""
    return "".join(s.diff for s in plan.steps if s.diff) or "(no file changes)\n"
