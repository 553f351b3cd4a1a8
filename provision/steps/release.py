"""Steps: build a release beside the serving one, then switch venv_dir to it (Kamal's shape).

A release is <releases_dir>/<name>, a venv whose name says what it holds. It is built in
<name>.partial: paddlepaddle-gpu and fastdeploy-gpu from the Paddle index only, without
dependencies; then their declared dependencies from the general index (C1). It is
verified (Paddle sees the GPU, FastDeploy's compiled ops import at the pinned version),
marked complete, then renamed: a failed build leaves the old release serving untouched.
Scripts run `<venv>/bin/python -m pip`, never the console scripts, because a venv renamed
after creation keeps its old path in script shebangs (bin/python itself is a symlink).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from provision import pipfail, shell
from provision.model import Facts, Install, Settings, Step
from provision.progress import PREFIX

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
    "import fastdeploy.model_executor.ops.gpu  # the compiled ops: wrong SM/Python fails here\n"
    "got = md.version('fastdeploy-gpu')\n"
    "if got != sys.argv[1]:\n"
    "    sys.exit('fastdeploy-gpu ' + got + ' installed, expected ' + sys.argv[1])\n"
    "print('fastdeploy-gpu', got, 'with its compiled ops')\n"
)
GPU_PACKAGES = ("paddlepaddle-gpu", "fastdeploy-gpu")
# The two GPU packages' own requirements, minus themselves and extras: what the general
# index must provide. Read from the installed metadata, so nothing is guessed.
DEPENDENCIES = (
    "import importlib.metadata as md, re\n"
    "skip = {'paddlepaddle-gpu', 'fastdeploy-gpu'}\n"
    "seen = []\n"
    "for dist in sorted(skip):\n"
    "    for req in md.requires(dist) or []:\n"
    "        name = re.match(r'[A-Za-z0-9._-]+', req).group(0)\n"
    "        if re.sub(r'[-_.]+', '-', name).lower() in skip or 'extra' in req.partition(';')[2]:\n"
    "            continue\n"
    "        if req not in seen:\n"
    "            seen.append(req)\n"
    "print('\\n'.join(seen))\n"
)
CAUSE = "provision: cause:"
PROGRESS_EVERY_S = 10
# A sh function printing one progress line: KiB in the partial venv ($1) and in pip's cache,
# and pip's latest Collecting/Downloading/Installing line from its log ($2). The tool parses
# the numbers strictly (provision.progress) and cleans the text before showing it.
_PROGRESS_LINE = (
    'provision_progress() { v=$(du -sk "$1" 2>/dev/null | cut -f1); '
    'c=$(du -sk "${PIP_CACHE_DIR:-${HOME:-/root}/.cache/pip}" 2>/dev/null | cut -f1); '
    "p=$(grep -E '^ *(Collecting|Downloading|Installing|Building|Using cached) ' \"$2\" "
    "2>/dev/null | tail -n 1 | cut -c1-160); "
    "printf '%s venv_kb=%s cache_kb=%s pip=%s\\n' " + shell.cmd(PREFIX.strip())
    + ' "${v:-0}" "${c:-0}" "$p"; }'
)


def _trusted(urls: list[str]) -> list[str]:
    args = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname:
            args += ["--trusted-host", parts.hostname]
    return args


def pip_args(package: str, index_url: str) -> list[str]:
    """A GPU package: from the Paddle index only (-i replaces every other index), no deps.

    --no-deps: its dependencies come from the general index in a separate step, so no
    index but the Paddle one is ever consulted for this name (dependency confusion, C1).
    """
    return ["install", "--disable-pip-version-check", "--no-input", "--no-deps", package,
            "-i", index_url, *_trusted([index_url])]


def dependency_args(install: Install, requirements: str, constraints: str) -> list[str]:
    """The ordinary dependencies: the general index, plus the Paddle index for Paddle's own.

    General index: pip_extra_index_url when set; otherwise no -i at all, so the host's pip
    configuration (a site mirror in pip.conf / PIP_INDEX_URL) applies, else pypi.org.
    The constraints pin both GPU packages to what is installed: even a higher version of
    the same name on the general index cannot replace them.
    """
    general = [install.extra_index_url] if install.extra_index_url else []
    args = ["install", "--disable-pip-version-check", "--no-input", "-r", requirements,
            "-c", constraints]
    if general:
        args += ["-i", general[0]]
    return args + ["--extra-index-url", install.paddle_index_url,
                   *_trusted([*general, install.paddle_index_url])]


def general_index(install: Install) -> str:
    return (install.extra_index_url or "the host's pip configuration (pip.conf or "
            "PIP_INDEX_URL), else pypi.org")


def _pip(python: str, log: str, args: list[str], cause: str) -> str:
    """pip with its output kept; on failure the output, one line naming the cause, and for a
    GPU package the index probe (pipfail), so the cause can be named precisely."""
    probe = ""
    if "-i" in args and "--no-deps" in args:
        index_url = args[args.index("-i") + 1]
        project = next(a for a in args if "==" in a).split("==")[0]
        probe = "; " + pipfail.probe_line(python, index_url, project)
    return (
        shell.fmt("if ! %s -m pip ", python) + shell.cmd(*args)
        + shell.fmt(" > %s 2>&1; then cat %s; printf '%%s %%s\\n' %s %s", log, log, CAUSE, cause)
        + shell.fmt("; missing=$(sed -n 's/.*No matching distribution found for //p' %s"
                    " | head -n 1); if [ -n \"$missing\" ]; then printf '%%s %%s\\n' %s "
                    "\"pip found no distribution for $missing there\"; fi", log, CAUSE)
        + probe + shell.fmt("; exit 1; fi; cat %s", log)
    )


def explain(output: str) -> str | None:
    """The cause lines a failed build printed (see _pip), joined; None when there are none."""
    causes = [line.split(CAUSE, 1)[1].strip() for line in output.splitlines() if CAUSE in line]
    return "; ".join(dict.fromkeys(causes)) or None


def progress_lines(partial: str, log: str, every: int = PROGRESS_EVERY_S) -> list[str]:
    """A background loop printing a progress line every `every` s while the build runs.

    It ends with the script: an EXIT trap kills it when the script ends (done or failed),
    and a timeout or an interruption kills the command's whole process group, loop
    included. Its sleep keeps no hold on the output, so the command's output closes as
    soon as the script and the loop are gone.
    """
    return [
        _PROGRESS_LINE,
        shell.fmt("( while sleep %s >/dev/null 2>&1; do provision_progress %s %s; done ) "
                  "</dev/null &", every, partial, log),
        "progress_pid=$!",
        "trap 'kill \"$progress_pid\" 2>/dev/null || true' EXIT",
    ]


def partial_dir(settings: Settings, install: Install) -> str:
    return f"{settings.releases_dir}/{install.release}.partial"


def finish_lines(settings: Settings, install: Install) -> list[str]:
    """A release in <name>.partial, built here or copied from another host of the fleet
    (provision/share.py), checked on this host (Paddle sees its GPU, the compiled ops
    import), marked complete, then put in place in one rename."""
    final = f"{settings.releases_dir}/{install.release}"
    partial = partial_dir(settings, install)
    python = f"{partial}/bin/python"
    return [
        shell.cmd("rm", "-f", f"{partial}/{MARKER}"),
        shell.cmd(python, "-c", PADDLE_CHECK),
        shell.cmd(python, "-c", FASTDEPLOY_CHECK, install.fastdeploy_version),
        shell.cmd("touch", f"{partial}/{MARKER}"),
        shell.cmd("rm", "-rf", final),
        shell.cmd("mv", "-T", partial, final),
    ]


def build_step(settings: Settings, install: Install) -> Step:
    partial = partial_dir(settings, install)
    python = f"{partial}/bin/python"
    log = f"{partial}/provision-pip.log"
    requirements, constraints = f"{partial}/provision-deps.txt", f"{partial}/provision-pins.txt"
    pins = (f"paddlepaddle-gpu=={install.paddle_version}\n"
            f"fastdeploy-gpu=={install.fastdeploy_version}\n")
    general = general_index(install)
    lines = [
        shell.cmd("rm", "-rf", partial),
        shell.cmd("mkdir", "-p", settings.releases_dir),
        *progress_lines(partial, log),
        shell.cmd(settings.python, "-m", "venv", partial),
        _pip(python, log, pip_args(f"paddlepaddle-gpu=={install.paddle_version}",
                                   install.paddle_index_url),
             f"paddlepaddle-gpu=={install.paddle_version} could not be installed from the "
             f"Paddle index {install.paddle_index_url} (the only index used for it)"),
        _pip(python, log, pip_args(f"fastdeploy-gpu=={install.fastdeploy_version}",
                                   install.fastdeploy_index_url),
             f"fastdeploy-gpu=={install.fastdeploy_version} could not be installed from the "
             f"Paddle index {install.fastdeploy_index_url} (the only index used for it)"),
        shell.cmd(python, "-c", DEPENDENCIES) + shell.fmt(" > %s", requirements),
        shell.fmt("printf '%%s' %s > %s", pins, constraints),
        shell.fmt("if [ -s %s ]; then ", requirements)
        + _pip(python, log, dependency_args(install, requirements, constraints),
               f"the dependencies of paddlepaddle-gpu/fastdeploy-gpu did not install from the "
               f"general index ({general}) with {install.paddle_index_url} for Paddle's own; "
               "set pip_extra_index_url to an index that carries them (a PyPI mirror)")
        + "; fi",
        shell.cmd("rm", "-f", log, requirements, constraints),
        *finish_lines(settings, install),
    ]
    return Step(
        name="release",
        reason=(f"build {install.release}: paddlepaddle-gpu {install.paddle_version} from "
                f"{install.paddle_index_url}, fastdeploy-gpu {install.fastdeploy_version} from "
                f"{install.fastdeploy_index_url} (both without dependencies); their "
                f"dependencies from {general}"),
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


def release_steps(facts: Facts, settings: Settings, install: Install) -> list[Step]:
    """Build when the release is not complete on the host; switch when the link is not right."""
    steps = []
    if install.release not in facts.installed.releases:
        steps.append(build_step(settings, install))
    linked = (facts.installed.venv_kind == "link"
              and facts.installed.current_release == install.release)
    if not linked:
        steps.append(switch_step(facts, settings, install))
    return steps
