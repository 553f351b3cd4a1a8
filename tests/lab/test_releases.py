"""Stand-ins that behave per release, as the lab's recorded upstream facts say, and the general
index (fastdeploy's dependencies only there, decoys under the GPU packages' names).

Every release case installs real wheels with real pip from the served indexes and runs the
stand-in server as a process; nothing here reads the tool's data.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from provision_lab import index as lab_index
from provision_lab import upstream
from provision_lab.wheels import Wheel, write_wheel
from tests.lab.conftest import pip
from tests.lab.helpers import DEADLINE_S, http, port_open, wait_until

VL = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"
THINKING_21B = "baidu/ERNIE-4.5-21B-A3B-Thinking"
THINKING_VL = "baidu/ERNIE-4.5-VL-28B-A3B-Thinking"
SM80 = "fastdeploy-gpu-80_90"
SM89 = "fastdeploy-gpu-86_89"


def fresh_venv(tmp_path) -> str:
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    return tmp_path / "venv" / "bin" / "python"


def started(server):
    """Wait until the server's port opens or it exits; the server, running."""
    wait_until(lambda: port_open(server.port) or server.proc.poll() is not None)
    assert server.proc.poll() is None, server.finish()
    return server


def chat(server, body: dict, headers: dict | None = None):
    status, _, raw = http(f"{server.url}/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "Say hello"}], **body},
                          headers)
    return status, json.loads(raw)


# ----------------------------------------------------------------------------- the data


def test_every_recorded_entry_names_its_source():
    releases = upstream.load("releases")
    entries = (releases["paddle_pairing"] + releases["server_flags"]
               + list(releases["features"].values()) + releases["reasoning_parsers"]
               + releases["models"]["thinking"] + releases["models"]["memory"]
               + [releases["fastdeploy_requires"]])
    indexes = upstream.load("paddle_indexes")
    entries += list(indexes["indexes"].values()) + [indexes["paddle_requires"]]
    entries += [listing for entry in indexes["indexes"].values()
                for listing in entry["files"].values()]
    assert len(entries) > 25
    assert all(str(e.get("source", "")).strip() for e in entries), [
        e for e in entries if not str(e.get("source", "")).strip()]
    assert indexes["cuda_builds_source"].strip()


def test_behaviour_resolves_per_release():
    early, late = upstream.release_behaviour("2.0.3"), upstream.release_behaviour("2.4.0")
    assert "--served-model-name" not in early["flags"] and "--api-key" not in early["flags"]
    assert not early["features"]["models_endpoint"] and not early["features"]["api_key"]
    assert "--api-key" in late["flags"] and late["features"]["config_info"]
    assert "ernie_x1" in upstream.release_behaviour("2.2.1")["reasoning_parsers"]
    assert "ernie-x1" not in upstream.release_behaviour("2.2.1")["reasoning_parsers"]
    assert "ernie-x1" in upstream.release_behaviour("2.3.0rc0")["reasoning_parsers"]
    assert upstream.paddle_for("2.3.4") == "3.2.1"
    assert not upstream.release_behaviour("2.3.4")["features"]["api_key"]


# ----------------------------------------------------------------------------- general index


def test_fastdeploy_dependencies_exist_only_on_the_general_index(indexes, tmp_path):
    python = fresh_venv(tmp_path)
    trusted = ("--trusted-host", "127.0.0.1")
    pip(python, "-i", indexes.paddle("cu126"), *trusted, "paddlepaddle-gpu==3.3.0")
    alone = pip(python, "-i", indexes.paddle(SM80), *trusted, "fastdeploy-gpu==2.4.0",
                check=False)
    assert alone.returncode != 0
    assert "No matching distribution found for" in alone.stderr
    for index in upstream.paddle_indexes():
        assert http(f"{indexes.paddle(index)}fastapi/")[0] == 404
    assert http(f"{indexes.general_url}fastapi/")[0] == 200
    pip(python, "-i", indexes.paddle(SM80), "--extra-index-url", indexes.general_url,
        *trusted, "fastdeploy-gpu==2.4.0")
    names = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                           capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower(): p["version"] for p in json.loads(names)}
    assert installed["fastdeploy-gpu"] == "2.4.0" and installed["uvicorn"] == "0.29.0"
    assert installed["paddleformers"] == "1.0.0"


def test_a_decoy_from_the_general_index_refuses_to_work(indexes, tmp_path):
    """Unpinned, with the general index in reach, pip takes the higher decoy; it fails loudly."""
    python = fresh_venv(tmp_path)
    pip(python, "-i", indexes.paddle(SM80), "--extra-index-url", indexes.general_url,
        "--trusted-host", "127.0.0.1", "fastdeploy-gpu", "paddlepaddle-gpu")
    for argv in (["-m", "fastdeploy.entrypoints.openai.api_server"],
                 ["-c", "import paddle"]):
        done = subprocess.run([str(python), *argv], capture_output=True, text=True,
                              timeout=DEADLINE_S)
        assert done.returncode != 0
        assert "DECOY from the general index" in done.stderr


def test_the_general_index_serves_dropped_in_wheels(indexes, tmp_path):
    extra = Wheel("gradio-extra-lab", "4.0.0", "py3-none-any",
                  {"gradio_extra_lab/__init__.py": b"VALUE = 42\n"})
    write_wheel(extra, indexes.extra)
    status, _, body = http(indexes.general_url)
    assert status == 200 and b'href="gradio-extra-lab/"' in body
    python = fresh_venv(tmp_path)
    pip(python, "-i", indexes.general_url, "--trusted-host", "127.0.0.1", "gradio_extra_lab")
    out = subprocess.run([str(python), "-c", "import gradio_extra_lab as g; print(g.VALUE)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "42"


def test_pip_refuses_the_cp310_only_wheel_on_this_python(indexes, tmp_path):
    assert sys.version_info[:2] != (3, 10)
    python = fresh_venv(tmp_path)
    args = ("-i", indexes.paddle("cu126"), "--extra-index-url", indexes.general_url,
            "--trusted-host", "127.0.0.1")
    refused = pip(python, *args, "fastdeploy-gpu==2.5.0", check=False)
    assert refused.returncode != 0
    assert "No matching distribution found for fastdeploy-gpu==2.5.0" in refused.stderr
    fetched = subprocess.run(
        [str(python), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.10", "--platform", "manylinux_2_28_x86_64", "-d",
         str(tmp_path / "dl"), *args, "fastdeploy-gpu==2.5.0"],
        capture_output=True, text=True, timeout=300)
    assert fetched.returncode == 0, fetched.stderr  # there for Python 3.10: the tag refuses
    assert [p.name for p in (tmp_path / "dl").iterdir()] == [
        "fastdeploy_gpu-2.5.0-cp310-cp310-manylinux_2_28_x86_64.whl"]


# ----------------------------------------------------------------------------- per release


def test_2_0_has_no_served_model_name_no_models_no_api_key(venvs, gpu_host, servers):
    python = venvs((SM80, "2.0.3"))
    env = gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.2", FD_API_KEY="secret")
    for flag in (["--served-model-name", VL], ["--api-key", "k"]):
        code, _, err = servers(python, env, gpu_host.cwd, *flag).finish()
        assert code == 2 and f"unrecognized arguments: {flag[0]}" in err
    server = started(servers(python, env, gpu_host.cwd))
    assert http(f"{server.url}/v1/models")[0] == 404
    assert chat(server, {})[0] == 200  # FD_API_KEY ignored: the API stays open
    assert http(f"http://127.0.0.1:{server.metrics_port}/config-info")[0] == 404
    cache = gpu_host.cwd / "models"
    assert (cache / "config.json").exists()  # 2.0.x: weights straight into FD_MODEL_CACHE
    assert not (cache / "PaddlePaddle").exists()


def test_2_1_serves_models_and_keeps_the_org_name_cache(venvs, gpu_host, servers):
    env = gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.2")
    server = started(servers(venvs((SM80, "2.1.1")), env, gpu_host.cwd,
                             "--served-model-name", VL))
    status, _, body = http(f"{server.url}/v1/models")
    assert (status, json.loads(body)["data"][0]["id"]) == (200, VL)
    assert (gpu_host.cwd / "models" / "PaddlePaddle" / "ERNIE-4.5-VL-28B-A3B-Paddle"
            / "config.json").exists()


def test_2_3_ignores_the_api_key_and_has_no_config_info(venvs, gpu_host, servers):
    env = gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.2", FD_API_KEY="secret")
    python = venvs((SM80, "2.3.4"))
    code, _, err = servers(python, env, gpu_host.cwd, "--api-key", "k").finish()
    assert code == 2 and "unrecognized arguments: --api-key" in err
    server = started(servers(python, env, gpu_host.cwd))
    assert chat(server, {})[0] == 200
    assert http(f"http://127.0.0.1:{server.metrics_port}/config-info")[0] == 404


def test_2_4_answers_401_without_the_key_and_dumps_it_on_config_info(venvs, gpu_host, servers):
    env = gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.2", FD_API_KEY="secret")
    server = started(servers(venvs((SM80, "2.4.0")), env, gpu_host.cwd))
    assert chat(server, {})[0] == 401
    assert chat(server, {}, {"Authorization": "Bearer secret"})[0] == 200
    status, _, body = http(f"http://127.0.0.1:{server.metrics_port}/config-info")
    assert status == 200 and json.loads(body)["envs"]["FD_API_KEY"] == "secret"


@pytest.mark.parametrize("version, parser, starts", [
    ("2.2.1", "ernie_x1", True), ("2.2.1", "ernie-x1", False),
    ("2.3.4", "ernie-x1", True), ("2.3.4", "ernie_x1", True),
    ("2.3.4", "ernie-45-vl-thinking", True), ("2.2.1", "ernie-45-vl-thinking", False),
    ("2.0.3", "ernie-45-vl", True), ("2.4.0", "no-such-parser", False),
])
def test_reasoning_parser_names_per_release(venvs, gpu_host, servers, version, parser, starts):
    server = servers(venvs((SM80, version)), gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.2"),
                     gpu_host.cwd, "--reasoning-parser", parser)
    if starts:
        started(server)
    else:
        code, _, err = server.finish()
        assert code != 0 and f"reasoning helper: {parser} not found" in err
        assert not port_open(server.port)


def test_thinking_models_ignore_enable_thinking_false(venvs, gpu_host, servers):
    python = venvs((SM80, "2.4.0"))
    env = gpu_host("a100", PROVISION_LAB_LOAD_SECONDS="0.2")
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    server = started(servers(python, env, gpu_host.cwd, "--model", THINKING_21B,
                             "--reasoning-parser", "ernie-x1"))
    status, body = chat(server, off)
    message = body["choices"][0]["message"]
    assert status == 200 and message["reasoning_content"] and message["content"]
    status, body = chat(server, {**off, "max_tokens": 8})
    assert body["choices"][0]["message"]["content"] == ""
    assert body["choices"][0]["finish_reason"] == "length"
    server.kill()
    server = started(servers(python, env, gpu_host.cwd, "--model", THINKING_VL,
                             "--reasoning-parser", "ernie-45-vl-thinking"))
    assert chat(server, off)[1]["choices"][0]["message"]["reasoning_content"]
    closed = chat(server, {"chat_template_kwargs": {"options": {"thinking_mode": "close"}}})[1]
    assert closed["choices"][0]["message"]["reasoning_content"] is None
    server.kill()
    server = started(servers(python, env, gpu_host.cwd, "--reasoning-parser", "ernie-45-vl"))
    assert chat(server, off)[1]["choices"][0]["message"]["reasoning_content"] is None


def test_compiled_ops_import_fails_on_an_sm_the_wheel_lacks(venvs, gpu_host):
    python = venvs((SM80, "2.4.0"))
    code = "import fastdeploy.model_executor.ops.gpu; print('ops ok')"
    wrong = subprocess.run([str(python), "-c", code], env=gpu_host("a10"), capture_output=True,
                           text=True, timeout=DEADLINE_S)
    assert wrong.returncode != 0 and "CUDA error(209)" in wrong.stderr
    right = subprocess.run([str(python), "-c", code], env=gpu_host("a100"),
                           capture_output=True, text=True, timeout=DEADLINE_S)
    assert right.stdout.strip() == "ops ok", right.stderr


@pytest.mark.parametrize("args, fits", [
    ((), False), (("--max-num-batched-tokens", "8192"), False),
    (("--max-num-batched-tokens", "384"), True),
])
def test_vl_28b_on_one_24_gb_card_needs_the_batched_tokens_flag(venvs, gpu_host, servers,
                                                               args, fits):
    server = servers(venvs((SM89, "2.4.0")),
                     gpu_host("rtx4090", PROVISION_LAB_LOAD_SECONDS="0.2"), gpu_host.cwd,
                     "--quantization", "wint4", *args)
    if fits:
        started(server)
        return
    code, _, _ = server.finish()
    assert code != 0 and not port_open(server.port)
    assert "Out of memory error on GPU 0" in server.log("workerlog.0")


def test_a_venv_without_fastdeploys_dependencies_fails_at_start(indexes, gpu_host, tmp_path):
    python = fresh_venv(tmp_path)
    trusted = ("--trusted-host", "127.0.0.1")
    pip(python, "-i", indexes.paddle("cu126"), *trusted, "paddlepaddle-gpu==3.3.0")
    pip(python, "-i", indexes.paddle(SM80), *trusted, "--no-deps", "fastdeploy-gpu==2.4.0")
    done = subprocess.run([str(python), "-m", "fastdeploy.entrypoints.openai.api_server"],
                          env=gpu_host("a100"), cwd=tmp_path, capture_output=True, text=True,
                          timeout=DEADLINE_S)
    assert done.returncode != 0 and "No module named 'fastapi'" in done.stderr


def test_every_flag_the_data_names_is_known_to_the_standin():
    """A recorded flag the stand-in does not define would be silently refused everywhere."""
    source = "".join(p.read_text() for p in lab_index.STANDINS.rglob("*.py"))
    flags = {f for g in upstream.load("releases")["server_flags"] for f in g["flags"]}
    missing = sorted(f for f in flags if f'"{f}"' not in source
                     and f != "--no-enable-prefix-caching")
    assert missing == []
