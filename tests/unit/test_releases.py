"""Per-release decisions (issue 7): every line and patch in the data, planned without SSH.

The index the plans read is the recorded upstream listing in tests/fixtures/index (not the
tool's data), so a patch or tag the data gets wrong shows up here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import provision
from provision import matrix, pkgindex
from provision.facts import gather_command
from provision.model import HostSpec, IndexPage, Settings
from provision.plan import describe_plan, make_plan
from provision.steps.release import build_step, dependency_args
from provision.steps.service import LOCAL_METRICS_LAUNCHER, render_unit
from provision.variables import ConfigError, settings_for
from tests.unit.lab_facts import converged, facts_from_profile, recorded_index

UBUNTU = dict(os_id="ubuntu", os_version_id="22.04", python_version="3.10.12")
PATCHES = [(line, patch) for line, rel in matrix.releases().items() for patch in rel.patches]


def ubuntu(profile: str = "a100", **changes):
    return facts_from_profile(profile, **{**UBUNTU, **changes})


# --------------------------------------------------------------------------- data sources


def _entries(doc: dict, name: str):
    for key, value in doc.items():
        if isinstance(value, list):
            yield from ((f"{name}:{key}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            yield from ((f"{name}:{key}.{k}", v) for k, v in value.items())
        else:
            yield f"{name}:{key}", value


def _data_files():
    files = sorted((Path(provision.__file__).parent / "data").rglob("*.yaml"))
    assert len(files) >= 5
    return files


@pytest.mark.parametrize("path", _data_files(), ids=lambda p: p.name)
def test_every_data_entry_has_a_source(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    missing = [where for where, entry in _entries(doc, path.name)
               if not (isinstance(entry, dict) and str(entry.get("source", "")).strip())]
    assert missing == []


def test_the_source_check_refuses_an_entry_without_one() -> None:
    doc = {"lines": {"2.9": {"paddle": "9"}}, "x": [{"source": "s"}]}
    assert [w for w, e in _entries(doc, "f") if not e.get("source")] == ["f:lines.2.9"]


def test_default_setting_is_the_data_default() -> None:
    assert Settings().fastdeploy_version == matrix.default_version() == "2.5"


# --------------------------------------------------------------------------- every release


@pytest.mark.parametrize("line, patch", PATCHES)
def test_plan_per_patch(line: str, patch: str) -> None:
    """Each patch the data knows installs as itself, with only the flags its line accepts."""
    rel = matrix.release(patch)
    facts = ubuntu("a100")
    plan = make_plan("h", facts, Settings(fastdeploy_version=patch))
    assert plan.errors == (), plan.errors
    assert plan.install.fastdeploy_version == patch
    assert plan.install.paddle_version == rel.paddle
    assert plan.install.release.startswith(f"fastdeploy-{patch}_paddle-{rel.paddle}_cu126")
    flags = {a for a in plan.server_argv if a.startswith("--")}
    assert flags <= rel.flags
    assert ("--served-model-name" in flags) == rel.models_endpoint
    assert ("--enable-mm" in flags) == (rel.enable_mm == "required")
    assert plan.checks.models_endpoint == rel.models_endpoint


@pytest.mark.parametrize("line", list(matrix.releases()))
def test_a_line_is_its_newest_patch_on_the_index(line: str) -> None:
    plan = make_plan("h", ubuntu("l40s"), Settings(fastdeploy_version=line))
    assert plan.errors == ()
    assert plan.install.fastdeploy_version == matrix.release(line).patches[-1]


def test_release_candidates_are_never_chosen() -> None:
    wheels = recorded_index()[pkgindex.page_url(Settings().package_index_url,
                                                "fastdeploy-gpu-80_90", "fastdeploy-gpu")].wheels
    assert "2.3.0rc0" in {w.version for w in wheels}
    assert pkgindex.resolve("2.3", wheels, "fastdeploy-gpu", "3.10.12", "x").version == "2.3.4"


def test_a_missing_version_is_refused_with_what_exists() -> None:
    plan = make_plan("h", ubuntu(), Settings(fastdeploy_version="2.3.9"))
    (error,) = plan.errors
    assert error.key == "fastdeploy_version" and plan.steps == ()
    assert "2.3.9 is not on" in error.message and "2.3.4, 2.4.0" in error.message


def test_2_5_on_python_3_11_is_refused_naming_cp310() -> None:
    """C9: the lab's Debian 12 (Python 3.11) cannot take 2.5.0's cp310-only wheels."""
    plan = make_plan("gpu1", facts_from_profile("a100"), Settings())
    (error,) = plan.errors
    assert "cp310-cp310-manylinux_2_28_x86_64" in error.message and "3.11.2" in error.message
    assert "Python 3.10" in error.fix and "2.4" in error.fix
    assert plan.steps == () and plan.install is None


def test_index_unreachable_stops_before_any_change() -> None:
    down = {url: IndexPage(False, "URLError: timed out") for url in recorded_index()}
    plan = make_plan("h", ubuntu(index_pages=down), Settings(fastdeploy_version="2.4"))
    assert [p.key for p in plan.errors] == ["package_index_url"]
    assert "timed out" in plan.errors[0].message and plan.steps == ()


def test_index_unreachable_keeps_an_installed_patch_of_the_line() -> None:
    settings = Settings(fastdeploy_version="2.4")
    facts = ubuntu()
    done = converged(facts, settings, make_plan("h", facts, settings))
    down = {url: IndexPage(False, "URLError: timed out") for url in recorded_index()}
    plan = make_plan("h", dataclasses.replace(done, index_pages=down), settings)
    assert plan.errors == () and plan.steps == ()
    assert [p.severity for p in plan.problems] == ["warning"]


def test_converged_exact_pin_skips_the_index() -> None:
    settings = Settings(fastdeploy_version="2.4.0")
    command = gather_command(settings)
    assert '"skip_index_if_installed": "2.4.0"' in command
    assert '"skip_index_if_installed": null' in gather_command(Settings(fastdeploy_version="2.4"))
    facts = ubuntu()
    done = converged(facts, settings, make_plan("h", facts, settings))
    plan = make_plan("h", dataclasses.replace(done, index_pages={}), settings)
    assert plan.errors == () and plan.steps == () and not plan.restart


def test_facts_trip_asks_for_every_page_the_line_may_need() -> None:
    for line in matrix.releases():
        urls = json.loads(_args(gather_command(Settings(fastdeploy_version=line))))["index_pages"]
        assert set(urls) <= set(recorded_index()) and len(urls) <= 4


def _args(command: str) -> str:
    start = command.index("'{")
    return command[start + 1:command.index("}'", start) + 1]


def test_a_new_line_on_the_index_warns_naming_the_doubt() -> None:
    base = Settings().package_index_url
    url = pkgindex.page_url(base, "cu126", "fastdeploy-gpu")
    extra = pkgindex.parse_page('<a href="fastdeploy_gpu-2.6.0-cp310-cp310-linux_x86_64.whl">')
    pages = dict(recorded_index())
    pages[url] = IndexPage(True, "", pages[url].wheels + extra)
    plan = make_plan("h", ubuntu(index_pages=pages), Settings())
    assert plan.errors == ()
    (warning,) = [p for p in plan.warnings if p.key == "fastdeploy_version"]
    assert "2.6" in warning.message and "C13-2.6" in warning.message


def test_check_names_the_sm_doubt_on_sm86_for_2_5() -> None:
    plan = make_plan("h", ubuntu("a10"), Settings())
    text = "\n".join(describe_plan(plan))
    assert "doubt C13-sm" in text and "SM80/90" in text
    assert not [p for p in make_plan("h", ubuntu("a100"), Settings()).problems
                if p.key.startswith("doubt")]


# --------------------------------------------------------------------------- capabilities


@pytest.mark.parametrize("version, want", [("2.2", "ernie_x1"), ("2.3", "ernie-x1"),
                                           ("2.5", "ernie-x1")])
def test_x1_parser_name_per_release(version: str, want: str) -> None:
    """C7: 21B-Thinking's parser was registered as ernie_x1 before ~2.3; default_v1 loader."""
    plan = make_plan("h", ubuntu("a100"), Settings(fastdeploy_version=version,
                                                   model="baidu/ERNIE-4.5-21B-A3B-Thinking"))
    argv = " ".join(plan.server_argv)
    assert f"--reasoning-parser {want}" in argv and "--load-choices default_v1" in argv


@pytest.mark.parametrize("model, kwargs, tokens", [
    ("baidu/ERNIE-4.5-21B-A3B-Thinking", None, 2048),
    ("baidu/ERNIE-4.5-VL-28B-A3B-Thinking", {"options": {"thinking_mode": "close"}}, 32),
    ("baidu/ERNIE-4.5-VL-28B-A3B-Paddle", {"enable_thinking": False}, 32),
])
def test_thinking_switch_per_model(model: str, kwargs: dict | None, tokens: int) -> None:
    """C6: each model's real switch; 21B-Thinking cannot stop, so it gets room instead."""
    plan = make_plan("h", ubuntu("h100"), Settings(model=model))
    assert plan.checks.chat_template_kwargs == kwargs and plan.checks.max_tokens == tokens


def test_2_0_downloads_into_the_models_own_cache_dir() -> None:
    """C8: 2.0.x puts weights in FD_MODEL_CACHE itself; the unit points it at <org>/<name>."""
    settings = Settings(fastdeploy_version="2.0")
    plan = make_plan("h", ubuntu(), settings)
    unit = next(s for s in plan.steps if s.name == "unit").upload.data.decode()
    assert "FD_MODEL_CACHE=/var/lib/fastdeploy/models/PaddlePaddle/ERNIE-4.5-VL-28B-A3B-Paddle" \
        in unit
    newer = next(s for s in make_plan("h", ubuntu(), Settings()).steps if s.name == "unit")
    assert "FD_MODEL_CACHE=/var/lib/fastdeploy/models\n" in newer.upload.data.decode()


# --------------------------------------------------------------------------- API key (C3)


def _spec(**values) -> HostSpec:
    return HostSpec("h", "10.0.0.2", vars=values, sources={k: "site.yml:3" for k in values})


@pytest.mark.parametrize("version", ["2.0", "2.3.4", "2.3"])
def test_api_key_on_a_release_without_support_is_a_config_error(version: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_for(_spec(fastdeploy_version=version, api_key="k3y-value"))
    assert err.value.key == "api_key" and "2.4" in err.value.fix
    assert "k3y-value" not in str(err.value)
    assert settings_for(_spec(fastdeploy_version="2.4", api_key="k3y-value")).api_key


def test_api_key_plans_a_401_check_and_a_loopback_metrics_port() -> None:
    settings = Settings(fastdeploy_version="2.4", api_key="k3y-value")
    plan = make_plan("h", ubuntu(), settings)
    assert plan.checks.api_key and plan.checks.metrics_local_only
    unit = render_unit(settings, plan.server_argv, local_metrics=True)
    assert "k3y-value" not in unit and "127.0.0.1" in unit
    assert not make_plan("h", ubuntu(), Settings(fastdeploy_version="2.4")).checks.api_key


def test_local_metrics_launcher_binds_the_metrics_port_to_loopback(tmp_path: Path) -> None:
    """For real: a module in upstream's place binds 0.0.0.0 like upstream's metrics server;
    started through the launcher, that port is on 127.0.0.1 only, the others are untouched."""
    with socket.socket() as s1, socket.socket() as s2:
        s1.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        metrics, other = s1.getsockname()[1], s2.getsockname()[1]
    pkg = tmp_path / "fastdeploy" / "entrypoints" / "openai"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "fastdeploy", tmp_path / "fastdeploy" / "entrypoints", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "api_server.py").write_text(
        "import socket, sys\n"
        "out = []\n"
        "for port in (int(sys.argv[2]), int(sys.argv[4])):\n"
        "    s = socket.socket()\n"
        "    s.bind(('0.0.0.0', port))\n"
        "    out.append(s.getsockname()[0])\n"
        "print(__name__, sys.argv[1:], out)\n")
    got = subprocess.run([sys.executable, "-c", LOCAL_METRICS_LAUNCHER, str(metrics),
                          "--metrics-port", str(metrics), "--port", str(other)],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == (f"__main__ ['--metrics-port', '{metrics}', '--port', "
                                  f"'{other}'] ['127.0.0.1', '0.0.0.0']")


# --------------------------------------------------------------------------- install (C1)


def test_gpu_packages_come_only_from_the_paddle_index() -> None:
    plan = make_plan("h", ubuntu(), Settings(fastdeploy_version="2.4"))
    script = plan.steps[0].script
    for package in ("paddlepaddle-gpu==3.3.0", "fastdeploy-gpu==2.4.0"):
        line = next(x for x in script.splitlines() if f" {package} " in x)
        assert "--no-deps" in line and line.count(" -i ") == 1
        assert "--extra-index-url" not in line
    assert "fastdeploy.model_executor.ops.gpu" in script  # C11


def test_dependencies_use_the_general_index() -> None:
    plan = make_plan("h", ubuntu(), Settings(fastdeploy_version="2.4"))
    bare = dependency_args(plan.install, "r.txt", "c.txt")
    assert "-i" not in bare  # the host's pip configuration (site mirror) or pypi.org
    assert bare[bare.index("-c") + 1] == "c.txt"
    assert bare[bare.index("--extra-index-url") + 1] == plan.install.paddle_index_url
    mirror = dataclasses.replace(plan.install, extra_index_url="https://mirror.example/simple")
    args = dependency_args(mirror, "r.txt", "c.txt")
    assert args[args.index("-i") + 1] == "https://mirror.example/simple"


def test_build_step_for_real_with_local_indexes(tmp_path: Path) -> None:
    """pip for real on this machine: decoys on the general index (a higher version, and the
    pinned version itself) never win; the dependency comes from the general index."""
    from tests.unit.wheels import serve_indexes

    with serve_indexes(tmp_path) as (paddle_url, general_url):
        install = dataclasses.replace(
            make_plan("h", ubuntu(), Settings(fastdeploy_version="2.4")).install,
            paddle_index_url=paddle_url, fastdeploy_index_url=paddle_url,
            extra_index_url=general_url, release="r")
        settings = Settings(releases_dir=str(tmp_path / "rel"), python=sys.executable)
        script = build_step(settings, install).script
        script = script.replace(f"-c {_q(_paddle_check())}", "-c 'pass'")
        start = time.monotonic()
        got = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=300)
        assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-2000:]
        assert time.monotonic() - start < 300
        venv = tmp_path / "rel" / "r"
        check = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import importlib.metadata as m;"
                                "print(m.version('fastdeploy-gpu'), m.version('fakedep'))"],
                               capture_output=True, text=True)
        assert check.stdout.split() == ["2.4.0", "1.0"]
        ours = subprocess.run([str(venv / "bin" / "python"), "-c", "import fastdeploy"],
                              capture_output=True, text=True)
        assert ours.returncode == 0, ours.stderr  # not the DECOY


def _paddle_check() -> str:
    from provision.steps.release import PADDLE_CHECK
    return PADDLE_CHECK


def _q(text: str) -> str:
    return shlex.quote(text)


# --------------------------------------------------------------------------- the facts trip's fetch


def test_fetch_pages_for_real_is_bounded_and_reports_each_failure() -> None:
    """The host-side fetch: a page, a 404 and a server that never answers, all within the
    bound; nothing raises."""
    import http.server
    import threading

    from provision import facts_script

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/slow/":
                time.sleep(5)
            code = 200 if self.path == "/ok/" else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b'<a href="fastdeploy_gpu-2.4.0-py3-none-any.whl">x</a>')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        start = time.monotonic()
        got = facts_script.fetch_pages([f"{base}/ok/", f"{base}/gone/", f"{base}/slow/"],
                                       limit_s=2.0)
        assert time.monotonic() - start < 4
    finally:
        server.shutdown()
        server.server_close()
    assert got[f"{base}/ok/"]["ok"] and "2.4.0" in got[f"{base}/ok/"]["text"]
    assert got[f"{base}/gone/"] == {"ok": False, "error": "HTTP 404 Not Found"}
    assert not got[f"{base}/slow/"]["ok"]
    skipped = facts_script.package_index({"skip_index_if_installed": "2.4.0",
                                          "index_pages": [f"{base}/ok/"]},
                                         {"fastdeploy_version": "2.4.0"})
    assert skipped == {"skipped": True, "pages": {}}
