"""Steps: build a release beside the serving one, then switch venv_dir to it (Kamal's shape).

A release is <releases_dir>/<name>, a venv whose name says what it holds. It is built in
<name>.partial, verified (Paddle sees the GPU, FastDeploy imports at the pinned version),
marked complete, then renamed: a failed build leaves the old release serving untouched.
Scripts run `<venv>/bin/python -m pip`, never the console scripts, because a venv renamed
after creation keeps its old path in script shebangs (bin/python itself is a symlink).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from provision import pipfail, shell
from provision.model import Facts, Install, Settings, Step

MARKER = ".provision-complete"

PADDLE_CHECK = (
    "import sys, paddle\n"
    "paddle.utils.run_check()\n"
    "if not paddle.is_compiled_with_cuda():\n"
    "    sys.exit('paddlepaddle-gpu is not compiled with CUDA: a CPU wheel came from the index')\n"
    "device = paddle.device.get_device()\n"
    "if device != 'gpu:0':\n"
    "    sys.exit('paddle runs on ' + device + ', not gpu:0: GPU or driver not usable')\n"
    "print('paddle', paddle.__version__, 'on', device)\n"
)
FASTDEPLOY_CHECK = (
    "import sys, importlib.metadata as md\n"
    "import fastdeploy\n"
    "got = md.version('fastdeploy-gpu')\n"
    "if got != sys.argv[1]:\n"
    "    sys.exit('fastdeploy-gpu ' + got + ' installed, expected ' + sys.argv[1])\n"
    "print('fastdeploy-gpu', got)\n"
)


def pip_args(package: str, index_url: str, extra_index_url: str | None) -> list[str]:
    """pip install arguments: only the Paddle index as -i (never PyPI for fastdeploy-gpu)."""
    args = ["install", "--disable-pip-version-check", "--no-input", package, "-i", index_url]
    hosts = [index_url]
    if extra_index_url:
        args += ["--extra-index-url", extra_index_url]
        hosts.append(extra_index_url)
    for url in hosts:
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname:
            args += ["--trusted-host", parts.hostname]
    return args


def _pip(python: str, log: str, args: list[str], hint: str) -> str:
    """pip with its output kept; on "No matching distribution" a line naming the Python;
    on any failure the index probe (pipfail), so the cause can be named."""
    probe = pipfail.probe_line(python, args[args.index("-i") + 1], args[3].split("==")[0])
    return (
        shell.fmt("if ! %s -m pip ", python) + shell.cmd(*args)
        + shell.fmt(" > %s 2>&1; then cat %s", log, log)
        + shell.fmt("; if grep -q 'No matching distribution found' %s; then "
                    "printf '%%s\\n' \"provision: this host has $(%s -V 2>&1);\" %s; fi",
                    log, python, hint)
        + f"; {probe}" + shell.fmt("; exit 1; fi; cat %s", log)
    )


def build_step(settings: Settings, install: Install, pythons: tuple[str, ...]) -> Step:
    final = f"{settings.releases_dir}/{install.release}"
    partial = f"{final}.partial"
    python = f"{partial}/bin/python"
    log = f"{partial}/provision-pip.log"
    hint = (f"FastDeploy {install.fastdeploy_version} wheels are published for Python "
            f"{', '.join(pythons)} (provision/data/releases.yaml)")
    lines = [
        shell.cmd("rm", "-rf", partial),
        shell.cmd("mkdir", "-p", settings.releases_dir),
        shell.cmd(settings.python, "-m", "venv", partial),
        _pip(python, log, pip_args(f"paddlepaddle-gpu=={install.paddle_version}",
                                   install.paddle_index_url, None), hint),
        shell.cmd(python, "-c", PADDLE_CHECK),
        _pip(python, log, pip_args(f"fastdeploy-gpu=={install.fastdeploy_version}",
                                   install.fastdeploy_index_url, install.extra_index_url), hint),
        shell.cmd(python, "-c", FASTDEPLOY_CHECK, install.fastdeploy_version),
        shell.cmd("rm", "-f", log),
        shell.cmd("touch", f"{partial}/{MARKER}"),
        shell.cmd("rm", "-rf", final),
        shell.cmd("mv", "-T", partial, final),
    ]
    return Step(
        name="release",
        reason=(f"build {install.release}: paddlepaddle-gpu {install.paddle_version} from "
                f"{install.paddle_index_url}, fastdeploy-gpu {install.fastdeploy_version} from "
                f"{install.fastdeploy_index_url}"),
        script=shell.script(lines),
        timeout_s=3600,
    )


def prune_list(releases: tuple[str, ...], current: str | None, new: str, keep: int) -> list[str]:
    """Complete releases to delete, oldest first, so `keep` remain; never current or new."""
    ordered = [r for r in releases if r != new] + [new]
    extra = len(ordered) - max(keep, 1)
    return [r for r in ordered if r not in (current, new)][:max(extra, 0)]


def link_lines(venv: str, target: str) -> list[str]:
    """Repoint the venv link in one rename: a reader sees the old or the new, never none."""
    tmp = f"{venv}.provision-tmp"
    return [shell.cmd("ln", "-sfn", target, tmp), shell.cmd("mv", "-T", tmp, venv)]


def switch_step(facts: Facts, settings: Settings, install: Install) -> Step:
    venv, target = settings.venv_dir, f"{settings.releases_dir}/{install.release}"
    lines = [shell.cmd("mkdir", "-p", venv.rsplit("/", 1)[0] or "/")]
    if facts.installed.venv_kind in ("dir", "file"):
        # Not ours: keep it, renamed, rather than delete someone's venv.
        lines.append(shell.fmt("mv -T %s %s\"$(date +%%Y%%m%%d%%H%%M%%S)\"", venv,
                               f"{venv}.moved-by-provision-"))
    lines += link_lines(venv, target)
    old = prune_list(facts.installed.releases, facts.installed.current_release,
                     install.release, settings.releases_keep)
    lines += [shell.cmd("rm", "-rf", f"{settings.releases_dir}/{name}") for name in old]
    was = facts.installed.current_release or facts.installed.venv_kind
    reason = f"point {venv} at {install.release} (was {was})"
    if old:
        reason += f"; prune {', '.join(old)}"
    return Step(name="switch", reason=reason, script=shell.script(lines),
                notifies_restart=True, timeout_s=300)


def release_steps(facts: Facts, settings: Settings, install: Install,
                  pythons: tuple[str, ...]) -> list[Step]:
    """Build when the release is not complete on the host; switch when the link is not right."""
    steps = []
    if install.release not in facts.installed.releases:
        steps.append(build_step(settings, install, pythons))
    linked = (facts.installed.venv_kind == "link"
              and facts.installed.current_release == install.release)
    if not linked:
        steps.append(switch_step(facts, settings, install))
    return steps
