"""Steps: pure renderers, quoting, and the generated scripts run for real in a temp dir."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from provision.model import ProvisionError, Settings
from provision.steps.hosts import BEGIN, END, render_hosts
from provision.steps.release import pip_args, prune_list
from provision.steps.service import (
    ENV_MODE,
    env_step,
    render_env,
    render_unit,
    systemd_quote,
)
from tests.unit.lab_facts import facts_from_profile

# --------------------------------------------------------------------------- /etc/hosts


@pytest.mark.parametrize("current, want", [
    (None, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           f"{BEGIN}\n127.0.0.1\tgpu1\n{END}\n"),
    ("", f"{BEGIN}\n127.0.0.1\tgpu1\n{END}\n"),
    ("127.0.0.1 localhost\n10.1.2.3   db.internal db  # keep me\n",
     "127.0.0.1 localhost\n10.1.2.3   db.internal db  # keep me\n"
     f"{BEGIN}\n127.0.0.1\tgpu1\n{END}\n"),
    ("10.0.0.1 a", f"10.0.0.1 a\n{BEGIN}\n127.0.0.1\tgpu1\n{END}\n"),  # no final newline
    (f"# top\n{BEGIN}\n127.0.0.1\told-name\n{END}\n10.0.0.9 after\n",
     f"# top\n{BEGIN}\n127.0.0.1\tgpu1\n{END}\n10.0.0.9 after\n"),  # block replaced in place
    ("127.0.1.1 gpu1\r\n::1 ip6\r\n", f"127.0.1.1 gpu1\r\n::1 ip6\r\n{BEGIN}\n127.0.0.1\tgpu1\n"
                                     f"{END}\n"),  # CRLF lines kept as they were
])
def test_render_hosts(current: str | None, want: str) -> None:
    assert render_hosts(current, "gpu1") == want
    assert render_hosts(want, "gpu1") == want  # idempotent


def test_render_hosts_fqdn_adds_short_name() -> None:
    assert "127.0.0.1\tgpu1.lab.example gpu1\n" in render_hosts("", "gpu1.lab.example")


def _run_step(step, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A step's script under sh, its upload's bytes on stdin, as apply sends them."""
    data = step.upload.data if step.upload else b""
    return subprocess.run(["sh", "-c", step.script], input=data, capture_output=True,
                          cwd=cwd, check=False)


def _hosts_step(path: Path, current: str | None, hostname: str = "gpu1"):
    from provision.steps.hosts import _write_step

    return _write_step("hosts", str(path), current, render_hosts(current, hostname), "test")


def test_hosts_step_writes_the_file_for_real(tmp_path: Path) -> None:
    """The generated script, run by sh against a copy: every other byte kept."""
    path = tmp_path / "hosts"
    original = "127.0.0.1 localhost\n# a comment with 'quotes' and $dollars\n10.0.0.7 x\n"
    path.write_text(original)
    path.chmod(0o640)
    step = _hosts_step(path, original)
    assert _run_step(step).returncode == 0
    assert path.read_text() == render_hosts(original, "gpu1")
    assert path.read_text().startswith(original)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # its mode kept


def test_hosts_non_utf8_bytes_kept_and_symlink_followed(tmp_path: Path) -> None:
    """Finding H: a Latin-1 byte and CRLF survive byte for byte; a link stays a link."""
    real = tmp_path / "real-hosts"
    original = b"127.0.0.1 localhost\r\n10.0.0.7 caf\xe9 # Latin-1\n\xff\xfe odd\n"
    real.write_bytes(original)
    link = tmp_path / "hosts"
    link.symlink_to(real)
    facts_text = original.decode("utf-8", "surrogateescape")  # as the facts JSON carries it
    step = _hosts_step(link, facts_text)
    assert "caf" not in step.script  # the content travels on stdin, not in the script
    done = _run_step(step)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes().startswith(original)
    assert real.read_bytes()[len(original):] == f"{BEGIN}\n127.0.0.1\tgpu1\n{END}\n".encode()
    assert "\ufffd" in (step.diff or "")  # the diff is printable


def test_truncated_upload_changes_nothing(tmp_path: Path) -> None:
    """A connection lost mid-transfer (fewer bytes on stdin) must not install half a file."""
    path = tmp_path / "hosts"
    path.write_text("10.0.0.7 x\n")
    step = _hosts_step(path, "10.0.0.7 x\n")
    done = subprocess.run(["sh", "-c", step.script], input=step.upload.data[:5],
                          capture_output=True, check=False)
    assert done.returncode == 1 and b"incomplete" in done.stderr
    assert path.read_text() == "10.0.0.7 x\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hosts"]


@pytest.mark.parametrize("text, where", [
    (f"10.0.0.1 a\n{BEGIN}\n127.0.0.1 old\n10.0.0.2 user-line\n", "line 2"),
    (f"{END}\n10.0.0.2 b\n", "line 1"),
    (f"{BEGIN}\n{BEGIN}\n{END}\n", "line 1"),
])
def test_unpaired_markers_refused_before_any_change(text: str, where: str) -> None:
    """Finding H: a BEGIN without its END is a pre-flight error naming the line."""
    from provision.plan import make_plan

    facts = facts_from_profile("a100", etc_hosts=text)
    plan = make_plan("gpu1", facts, Settings())
    errors = [p for p in plan.errors if p.key == "/etc/hosts"]
    assert errors and where in errors[0].value and plan.steps == ()
    assert "nothing was changed" in str(errors[0])


@pytest.mark.parametrize("name", ["gpu1\n10.6.6.6 evil", "a b", "-x", "", "x" * 300])
def test_hostname_validated(name: str) -> None:
    """Finding H: a hostname with a newline cannot write lines of its own."""
    from provision.steps.hosts import hosts_problems

    facts = facts_from_profile("a100", hostname=name or "\n")
    assert [p.key for p in hosts_problems("gpu1", facts)] == ["hostname"]


def test_good_hostnames_pass() -> None:
    from provision.steps.hosts import hosts_problems

    for name in ("gpu1", "gpu-1.lab.example", "ip-10-0-0-1", "host_1"):
        assert hosts_problems("h", facts_from_profile("a100", hostname=name)) == []


def test_no_hosts_step_when_the_block_is_right() -> None:
    from provision.steps.hosts import hosts_steps

    facts = facts_from_profile("a100", etc_hosts=render_hosts("127.0.0.1 localhost\n", "gpu1"))
    assert hosts_steps(facts) == []
    cloud = facts_from_profile("a100", etc_hosts=facts.etc_hosts,
                               cloud_hosts_template="## template:jinja\n127.0.0.1 {{fqdn}}\n",
                               cloud_hosts_template_path="/etc/cloud/templates/hosts.debian.tmpl")
    [step] = hosts_steps(cloud)
    assert step.name == "hosts-cloud-init" and b"## template:jinja" in step.upload.data


# --------------------------------------------------------------------------- systemd quoting


@pytest.mark.parametrize("word, want", [
    ("--port", "--port"),
    ("/opt/fastdeploy/venv/bin/python", "/opt/fastdeploy/venv/bin/python"),
    ("0.0.0.0", "0.0.0.0"),
    ("a b", '"a b"'),
    ("", '""'),
    ('{"image": 100}', '"{\\"image\\": 100}"'),
    ("50%", "50%%"),
    ("$HOME", '"$$HOME"'),
    ("back\\slash", '"back\\\\slash"'),
    (";", '";"'),
    ("it's", '"it\'s"'),
])
def test_systemd_quote(word: str, want: str) -> None:
    assert systemd_quote(word) == want


def test_systemd_quote_refuses_line_breaks() -> None:
    with pytest.raises(ProvisionError, match="line break"):
        systemd_quote("a\nExecStartPre=/bin/evil")


def test_environment_lines_keep_dollars() -> None:
    assert systemd_quote("A=$x y", exec_line=False) == '"A=$x y"'


# --------------------------------------------------------------------------- the unit


def _settings(tmp_path: Path, **changes) -> Settings:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return Settings(venv_dir=str(venv), data_dir=str(tmp_path), log_dir=str(tmp_path / "log"),
                    model_cache_dir=str(tmp_path / "models"), env_file=str(tmp_path / "env"),
                    **changes)


def _verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    unit = tmp_path / "fastdeploy.service"
    unit.write_text(text)
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)


def test_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    settings = _settings(tmp_path, cuda_visible_devices="0,1")
    argv = ("--model", "baidu/ERNIE-4.5-VL-28B-A3B-Paddle", "--port", "8180",
            "--limit-mm-per-prompt", '{"image": 100}', "--gpu-memory-utilization", "0.9")
    text = render_unit(settings, argv)
    got = _verify(tmp_path, text)
    assert got.returncode == 0, got.stdout + got.stderr
    assert got.stderr.strip() == "", got.stderr
    for line in ("Type=simple", "KillMode=control-group", "Restart=always",
                 "StartLimitIntervalSec=0", f"WorkingDirectory={tmp_path}",
                 f"Environment=HOME={tmp_path}", f"Environment=FD_MODEL_CACHE={tmp_path}/models",
                 f"Environment=FD_LOG_DIR={tmp_path}/log", "Environment=CUDA_VISIBLE_DEVICES=0,1",
                 "Environment=ENABLE_V1_KVCACHE_SCHEDULER=1", f"EnvironmentFile=-{tmp_path}/env"):
        assert line + "\n" in text
    assert (f"ExecStart={tmp_path}/venv/bin/python -m fastdeploy.entrypoints.openai.api_server "
            '--model baidu/ERNIE-4.5-VL-28B-A3B-Paddle --port 8180 --limit-mm-per-prompt '
            '"{\\"image\\": 100}" --gpu-memory-utilization 0.9\n') in text


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit whose ExecStart binary is missing is refused."""
    text = render_unit(_settings(tmp_path), ("--port", "8180"))
    (tmp_path / "venv" / "bin" / "python").unlink()
    assert _verify(tmp_path, text).returncode != 0


def test_unit_is_deterministic_and_reflects_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert render_unit(settings, ("a",)) == render_unit(settings, ("a",))
    assert render_unit(settings, ("a",)) != render_unit(settings, ("b",))
    assert "CUDA_VISIBLE_DEVICES" not in render_unit(settings, ("a",))


# --------------------------------------------------------------------------- the env file


def test_env_file(tmp_path: Path) -> None:
    assert "FD_API_KEY" not in render_env(Settings())
    text = render_env(Settings(api_key="k-123$x"))
    assert "FD_API_KEY='k-123$x'\n" in text
    with pytest.raises(ProvisionError):
        render_env(Settings(api_key="a'b"))
    step = env_step(facts_from_profile("a100"), Settings(api_key="k-123$x",
                                                         env_file=str(tmp_path / "e" / "env")))
    assert step is not None and "k-123" not in step.reason and "k-123" not in (step.diff or "")
    assert "k-123" not in step.script  # finding G: never in argv (/proc/*/cmdline)
    assert step.upload is not None and step.upload.secret and step.upload.mode == "0600"
    assert "k-123" not in step.upload.describe()
    assert _run_step(step).returncode == 0
    written = tmp_path / "e" / "env"
    assert written.read_text() == text
    assert stat.S_IMODE(written.stat().st_mode) == ENV_MODE
    # systemd's own parser reads the value back unchanged (checked through a real sh here:
    # single quotes are literal in both)
    assert shlex.split(written.read_text().splitlines()[1].split("=", 1)[1]) == ["k-123$x"]


# --------------------------------------------------------------------------- release


def test_pip_args_use_only_the_paddle_index() -> None:
    """C1: a GPU package comes from the Paddle index alone (-i), without dependencies."""
    args = pip_args("fastdeploy-gpu==2.5.0", "https://idx.example/cu126/")
    assert args == ["install", "--disable-pip-version-check", "--no-input", "--no-deps",
                    "fastdeploy-gpu==2.5.0", "-i", "https://idx.example/cu126/"]
    http = pip_args("x==1", "http://10.9.0.1:8000/cu126/")
    assert http[-2:] == ["--trusted-host", "10.9.0.1"] and "--extra-index-url" not in http


@pytest.mark.parametrize("releases, current, new, keep, want", [
    ((), None, "n", 3, []),
    (("a", "b", "c"), "c", "n", 3, ["a"]),
    (("a", "b", "c", "d"), "d", "n", 3, ["a", "b"]),
    (("a", "b"), "a", "n", 1, ["b"]),           # never the current one, even over the limit
    (("a", "n"), "a", "n", 2, []),              # rebuilding a present release
    (("a", "b", "c"), None, "n", 0, ["a", "b", "c"]),  # keep 0 still keeps the new one
])
def test_prune_list(releases: tuple, current: str | None, new: str, keep: int,
                    want: list[str]) -> None:
    assert prune_list(releases, current, new, keep) == want


def test_switch_script_for_real(tmp_path: Path) -> None:
    """The switch step against real directories: an existing venv dir is moved aside."""
    import dataclasses

    from provision.model import Install
    from provision.steps.release import switch_step

    releases = tmp_path / "releases"
    for name in ("old1", "old2", "new"):
        (releases / name).mkdir(parents=True)
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "precious").write_text("keep")
    facts = facts_from_profile("a100")
    facts = dataclasses.replace(facts, installed=dataclasses.replace(
        facts.installed, releases=("old1", "old2"), venv_kind="dir"))
    settings = Settings(venv_dir=str(venv), releases_dir=str(releases), releases_keep=2)
    install = Install("2.5.0", "3.3.1", "12.6", "u", "u", None, "new")
    step = switch_step(facts, settings, install)
    subprocess.run(["sh", "-c", step.script], check=True)
    assert os.readlink(venv) == str(releases / "new")
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("venv.moved-by-provision-")]
    assert len(moved) == 1 and (moved[0] / "precious").read_text() == "keep"
    assert sorted(p.name for p in releases.iterdir()) == ["new", "old2"]
    assert step.notifies_restart


def test_env_diff_masks_the_value_not_its_letters() -> None:
    """Finding G: a short key ("A") must not turn every "A" in the diff into the mask."""
    step = env_step(facts_from_profile("a100"), Settings(api_key="A"))
    assert step is not None
    assert "FD_API_KEY=********" in (step.diff or "")
    assert "Managed by provision" in (step.diff or "")


# --------------------------------------------------------------------------- dpkg lock


def test_held_dpkg_lock_is_waited_for_bounded_with_a_line(tmp_path: Path) -> None:
    """Finding I: the lock wait says who holds it, waits, and gives up with a fix.

    The wait is run for real against a lock file held (fcntl, as apt holds it) by a
    process of this test, first released in time, then never.
    """
    import sys

    from provision.steps.packages import WAIT_LOCKS

    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    holder = ("import fcntl, sys, time\nf = open(sys.argv[1], 'w')\n"
              "fcntl.lockf(f, fcntl.LOCK_EX)\nprint('held', flush=True)\n"
              "time.sleep(float(sys.argv[2]))\n")
    for hold_s, limit, rc in (("3", "30", 0), ("60", "2", 1)):
        proc = subprocess.Popen([sys.executable, "-c", holder, str(lock), hold_s],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "held\n"
            done = subprocess.run([sys.executable, "-c", WAIT_LOCKS, limit, str(lock)],
                                  capture_output=True, text=True, timeout=60)
        finally:
            proc.kill()
            proc.wait()
        assert done.returncode == rc, done.stderr
        assert "is held by python" in done.stdout and f"(pid {proc.pid})" in done.stdout
        assert f"waiting up to {limit}s" in done.stdout
        if rc:
            assert "still held" in done.stderr and "Fix:" in done.stderr


def test_packages_step_waits_for_the_lock_before_apt() -> None:
    from provision.steps.packages import packages_step

    step = packages_step(facts_from_profile("a100", has_venv=False))
    assert step is not None
    script = step.script
    assert script.index("lock-frontend") < script.index("apt-get") < script.index("update")
    assert script.count("DPkg::Lock::Timeout=") == 2
