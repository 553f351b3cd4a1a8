"""The plan: a pure function of (facts, settings, data) to pre-flight problems and steps.

No I/O, so the whole decision table is unit-tested without SSH and `--check` prints
exactly what apply would run. A converged host yields no steps at all.
"""

from __future__ import annotations

from provision import matrix
from provision.model import Facts, Install, Plan, ServerChecks, Settings, Step
from provision.preflight import choose_versions, model_fit, preflight, target, usable_gpus
from provision.steps.hosts import hosts_problems, hosts_steps
from provision.steps.packages import packages_step
from provision.steps.release import general_index, release_steps
from provision.steps.service import service_steps
from provision.webui.steps import web_problems, web_restart, web_steps


def decide_install(host: str, facts: Facts, settings: Settings) -> Install:
    """Versions, indexes and the release name; callers ran pre-flight (no errors) first."""
    rel = matrix.release(settings.fastdeploy_version)
    found = target(facts, settings, rel)
    assert found is not None, "pre-flight lets no host without a CUDA build or wheel through"
    cuda, fd_index = found
    version = choose_versions(host, facts, settings, rel).fastdeploy
    assert version is not None, "pre-flight lets no host without a version through"
    base = settings.package_index_url.rstrip("/")
    return Install(
        fastdeploy_version=version, paddle_version=rel.paddle, cuda=cuda.cuda,
        paddle_index_url=f"{base}/{cuda.index}/",
        fastdeploy_index_url=f"{base}/{fd_index}/",
        extra_index_url=settings.pip_extra_index_url,
        release=matrix.release_name(version, rel, cuda, fd_index),
    )


def _flagged(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def server_args(settings: Settings, rel: matrix.Release, model: matrix.ModelInfo | None,
                fit: matrix.Fit | None, card_mib: int = 0) -> tuple[str, ...]:
    """Every server flag the release accepts, all four ports explicit (defaults differ).

    --served-model-name where the release has it (not 2.0/2.1, C2): after a hub download the
    server would otherwise list the cache directory as the model id (reference §5.3). A flag
    the release lacks is never passed: its argparse would exit 2 and the unit loop (C2).
    """
    source = settings.model_dir or settings.model
    pairs: list[tuple[str, ...]] = [
        ("--model", source), ("--served-model-name", settings.model),
        ("--host", settings.server_host), ("--port", str(settings.api_port)),
        ("--metrics-port", str(settings.metrics_port)),
        ("--engine-worker-queue-port", str(settings.engine_worker_queue_port)),
        ("--cache-queue-port", str(settings.cache_queue_port)),
        ("--max-model-len", str(settings.max_model_len)),
        ("--max-num-seqs", str(settings.max_num_seqs))]
    tp = settings.tensor_parallel_size or (fit.tp if fit else 1)
    if tp > 1:
        pairs.append(("--tensor-parallel-size", str(tp)))
    quant = settings.quantization or (fit.quantization if fit else None)
    if quant and quant != "bf16":  # bf16 is the server's default: no flag
        pairs.append(("--quantization", quant))
    if settings.gpu_memory_utilization is not None:
        pairs.append(("--gpu-memory-utilization", str(settings.gpu_memory_utilization)))
    parser = settings.reasoning_parser or (model.reasoning_parser if model else None)
    if parser and parser != "none":
        pairs.append(("--reasoning-parser", rel.parser(parser)))
    if model and model.multimodal and rel.enable_mm == "required":
        pairs.append(("--enable-mm",))
    if model and model.load_choices:
        pairs.append(("--load-choices", model.load_choices))
    if (model and model.small_card_flags and tp == 1 and 0 < card_mib <= model.small_card_mib
            and not _flagged(list(settings.extra_server_args), model.small_card_flags[0])):
        pairs.append(model.small_card_flags)  # one 24 GB card (C12)
    args = [word for pair in pairs if pair[0] in rel.flags for word in pair]
    return (*args, *settings.extra_server_args)


def server_checks(settings: Settings, rel: matrix.Release,
                  model: matrix.ModelInfo | None) -> ServerChecks:
    """What verify may expect of this release and model."""
    kwargs = {"enable_thinking": False} if model is None else model.chat_template_kwargs
    return ServerChecks(
        models_endpoint=rel.models_endpoint,
        api_key=bool(settings.api_key) and rel.api_key,
        metrics_local_only=bool(settings.api_key) and rel.config_info,
        chat_template_kwargs=kwargs,
        max_tokens=model.check_max_tokens if model else 32)


# The deployment's roles in `provision up`'s order; playbooks/fastdeploy.yml names them.
ROLES = ("host_preparation", "release", "hosts_file", "service", "web_page")


def role_steps(role: str, facts: Facts, settings: Settings, install: Install,
               rel: matrix.Release, argv: tuple[str, ...], checks: ServerChecks) -> list[Step]:
    """The steps of one built-in role (a playbook's role whose logic is this Python)."""
    if role == "host_preparation":
        return [s for s in (packages_step(facts),) if s]
    if role == "release":
        return release_steps(facts, settings, install)
    if role == "hosts_file":
        return hosts_steps(facts)
    if role == "service":
        return service_steps(facts, settings, argv, local_metrics=checks.metrics_local_only,
                             flat_cache=rel.model_cache == "flat")
    if role == "web_page":
        return web_steps(facts, settings)
    raise ValueError(f"unknown built-in role {role!r}; known: {', '.join(ROLES)}")


def make_plan(host: str, facts: Facts, settings: Settings,
              roles: tuple[str, ...] | None = None) -> Plan:
    """Problems, and when none is an error, the steps that close the gap (maybe none).

    `roles` (a playbook's built-in roles, in its order) picks and orders the steps;
    None is `provision up`'s full deployment.
    """
    problems = (*preflight(host, facts, settings), *hosts_problems(host, facts),
                *web_problems(host, facts, settings))
    if any(p.severity == "error" for p in problems):
        return Plan(host, problems, (), None, (), settings.model, False)
    rel = matrix.release(settings.fastdeploy_version)
    install = decide_install(host, facts, settings)
    model = matrix.model_info(settings.model)
    gpus = usable_gpus(facts, settings)
    argv = server_args(settings, rel, model, model_fit(facts, settings),
                       min((g.memory_total_mib for g in gpus), default=0))
    checks = server_checks(settings, rel, model)
    steps: list[Step] = []
    web: list[Step] = []  # the chat page restarts on its own, after the API is verified
    for role in ROLES if roles is None else roles:
        if role == "web_page":
            web += role_steps(role, facts, settings, install, rel, argv, checks)
        else:
            steps += role_steps(role, facts, settings, install, rel, argv, checks)
    restart = (any(s.notifies_restart for s in steps)
               or facts.installed.service_active != "active")
    return Plan(host, problems, (*steps, *web), install, argv, settings.model, restart, checks,
                web_restart(facts, settings, web))


def describe_plan(plan: Plan) -> list[str]:
    """--check: each step that would change and why, then the restart decision."""
    lines = [f"  problem: {p}" for p in plan.problems]
    if plan.errors:
        return lines + ["  nothing will be done until the errors above are fixed"]
    if plan.install:
        i = plan.install
        lines.append(f"  release: {i.release} (paddlepaddle-gpu {i.paddle_version} from "
                     f"{i.paddle_index_url}, fastdeploy-gpu {i.fastdeploy_version} from "
                     f"{i.fastdeploy_index_url}, both without dependencies; dependencies from "
                     f"{general_index(i)})")
    lines += [f"  would change: {s.name}: {s.reason}" for s in plan.steps]
    if not plan.steps:
        lines.append("  nothing to change")
    lines.append("  would restart the service" if plan.restart else "  no restart needed")
    if plan.web_restart:
        lines.append("  would restart the chat page (after the API is verified)")
    lines.append("  server: " + " ".join(plan.server_argv))
    return lines


def plan_diffs(plan: Plan) -> str:
    """--diff: the file changes (unit, /etc/hosts, env file with secrets masked)."""
    return "".join(s.diff for s in plan.steps if s.diff) or "(no file changes)\n"
