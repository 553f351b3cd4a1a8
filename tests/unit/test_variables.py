"""The variable table, conversion and validation: what reaches a host has been checked here."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from provision import matrix
from provision.commands.targets import ConfigErrors, resolve_targets
from provision.inventory import load_inventory
from provision.model import ConfigError, HostSpec, Settings
from provision.variables import VARIABLES, check_all, markdown_table, settings_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inventories"
LAB = FIXTURES / "lab" / "inventory.yml"
FIXED = ["package_index_url", "pip_extra_index_url", "fastdeploy_version", "venv_dir", "model",
         "api_port", "metrics_port", "engine_worker_queue_port", "cache_queue_port",
         "health_timeout", "known_hosts_file"]


def spec(**values: object) -> HostSpec:
    return HostSpec("gpu1", "10.0.0.1", vars=values,
                    sources={k: f"site.yml:{i + 1}" for i, k in enumerate(values)})


# --------------------------------------------------------------------------- the table


def test_table_covers_every_settings_field_fixed_names_first() -> None:
    assert [v.name for v in VARIABLES][:len(FIXED)] == FIXED
    assert sorted(v.name for v in VARIABLES) == sorted(f.name for f in dataclasses.fields(Settings))


@pytest.mark.parametrize("var", VARIABLES, ids=[v.name for v in VARIABLES])
def test_defaults_equal_settings_defaults_and_are_documented(var) -> None:
    assert var.default == getattr(Settings(), var.name)
    assert var.doc.strip()


def test_no_variables_means_default_settings() -> None:
    assert settings_for(spec()) == Settings()


def test_markdown_table_and_module_entry_point() -> None:
    table = markdown_table()
    assert table.count("\n") == len(VARIABLES) + 2
    assert "| `api_port` | int | `8180` |" in table
    assert "| `api_key` | str? | unset |" in table and "<hidden>" in table
    printed = subprocess.run([sys.executable, "-m", "provision.variables"], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    assert printed.stdout == table


# --------------------------------------------------------------------------- conversion

CONVERSIONS = [
    ("api_port", "8180", 8180),
    ("api_port", " 9000 ", 9000),
    ("health_timeout", 60, 60),
    ("pip_extra_index_url", "", None),
    ("pip_extra_index_url", None, None),
    ("package_index_url", "http://10.0.0.1:8080/simple/", "http://10.0.0.1:8080/simple"),
    ("cuda", 12.6, "12.6"),
    ("cuda", "12.9", "12.9"),
    ("tensor_parallel_size", "4", 4),
    ("tensor_parallel_size", "", None),
    ("gpu_memory_utilization", "0.85", 0.85),
    ("gpu_memory_utilization", 1, 1.0),
    ("extra_server_args", "--enable-prefix-caching --block-size 64",
     ("--enable-prefix-caching", "--block-size", "64")),
    ("extra_server_args", "--a,--b=1,2", ("--a", "--b=1,2")),
    ("extra_server_args", ["--swap-space", 4], ("--swap-space", "4")),
    ("extra_server_args", "", ()),
    ("extra_server_args", "--limit-mm-per-prompt '{\"image\": 1}'",
     ("--limit-mm-per-prompt", '{"image": 1}')),
    ("fastdeploy_version", "2.4.0", "2.4.0"),
    ("quantization", "wint4", "wint4"),
    ("quantization", "bf16", "bf16"),
    ("model_dir", "/data/ERNIE-4.5-0.3B-Paddle", "/data/ERNIE-4.5-0.3B-Paddle"),
    ("service_name", "fastdeploy@gpu0", "fastdeploy@gpu0"),
    ("known_hosts_file", "~/lab/known_hosts", str(Path("~/lab/known_hosts").expanduser())),
    ("api_key", "s3cret", "s3cret"),
]


@pytest.mark.parametrize(("name", "raw", "value"), CONVERSIONS,
                         ids=[f"{n}={r!r}" for n, r, _ in CONVERSIONS])
def test_conversions(name: str, raw: object, value: object) -> None:
    got = getattr(settings_for(spec(**{name: raw})), name)
    assert got == value and type(got) is type(value)


def test_lab_inventory_gives_lab_settings() -> None:
    settings = settings_for(load_inventory(LAB).hosts["lab-a100-1"])
    assert settings.package_index_url == "http://10.77.0.1:8080/simple"
    assert settings.pip_extra_index_url is None
    assert settings.known_hosts_file == "/var/lib/provision-lab/known_hosts"
    assert settings.api_port == 8180


def test_other_tools_variables_are_ignored() -> None:
    assert settings_for(spec(ansible_python_interpreter="/usr/bin/python3",
                             ntp_server="pool", ansible_become=True)) == Settings()


# --------------------------------------------------------------------------- validation

BAD = [
    # variable, value, fragment of the fix
    ("api_port", 0, "1 to 65535"),
    ("api_port", 80800, "1 to 65535"),
    ("metrics_port", "http", "whole number"),
    ("cache_queue_port", True, "whole number"),
    ("cache_queue_port", 8180.5, "whole number"),
    ("health_timeout", 0, "at least 1"),
    ("venv_dir", "opt/venv", "absolute path"),
    ("venv_dir", "/opt/venv; rm -rf /", "absolute path"),
    ("log_dir", "/var/log/$(id)", "absolute path"),
    ("model_dir", "/data/my model", "absolute path"),
    ("fastdeploy_version", "9.9.9", "2.0, 2.1"),
    ("fastdeploy_version", 2.5, "quote it"),
    ("fastdeploy_version", "2.4.x", "release line"),
    ("model", "baidu/ERNIE;reboot", "model name"),
    ("model", "-model", "model name"),
    ("package_index_url", "ftp://mirror/simple", "http://"),
    ("package_index_url", "http://mirror/simple`id`", "http://"),
    ("pip_extra_index_url", "https://pypi.org/simple $HOME", "http://"),
    ("pip_extra_index_url", "https://x/'simple'", "http://"),
    ("service_name", "fast deploy", "unit name"),
    ("service_name", "-fastdeploy", "unit name"),
    ("quantization", "int3", "wint2, "),
    ("cuda", "12", "MAJOR.MINOR"),
    ("cuda", "10.2", "12.6"),
    ("extra_server_args", ["enable-prefix-caching"], "start with a --flag"),
    ("extra_server_args", ["--a", "x\ny"], "control characters"),
    ("extra_server_args", {"a": 1}, "list of arguments"),
    ("extra_server_args", "--a 'open", "unbalanced"),
    ("gpu_memory_utilization", 1.5, "above 0 and at most 1"),
    ("gpu_memory_utilization", "most", "give a number"),
    ("server_host", "0.0.0.0 --evil", "IP address"),
    ("cuda_visible_devices", "0;1", "GPU indexes"),
    ("python", "python3 -c x", "program name"),
    ("reasoning_parser", "ernie 45", "parser name"),
    ("model", None, "text value"),
    ("model", ["a"], "text value"),
    ("venv_dir", "", "cannot be empty"),
    ("max_num_seqs", "", "whole number"),
]


@pytest.mark.parametrize(("name", "value", "fix"), BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_values_name_file_key_value_and_fix(name: str, value: object, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_for(spec(**{name: value}))
    assert (err.value.where, err.value.key, err.value.value) == ("site.yml:1", name, value)
    assert fix in err.value.fix
    assert str(err.value).startswith(f"site.yml:1: {name}={value!r}: ")


def test_fastdeploy_version_error_lists_every_release() -> None:
    with pytest.raises(ConfigError) as err:
        settings_for(spec(fastdeploy_version="2.6.0"))
    assert all(v in err.value.fix for v in matrix.releases())


def test_the_four_ports_must_differ() -> None:
    with pytest.raises(ConfigError) as err:
        settings_for(spec(api_port=9000, cache_queue_port="9000"))
    assert (err.value.key, err.value.value) == ("cache_queue_port", 9000)
    assert "api_port" in err.value.fix
    with pytest.raises(ConfigError, match="metrics_port=8180"):
        settings_for(spec(metrics_port=8180))  # clashes with api_port's default


def test_secret_is_hidden_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        settings_for(spec(api_key="top\nsecret"))
    assert "secret" not in str(err.value) and "<hidden>" in str(err.value)


@pytest.mark.parametrize(("typo", "ours"), [("api_prot", "api_port"),
                                            ("fastdeploy_verison", "fastdeploy_version"),
                                            ("packge_index_url", "package_index_url"),
                                            ("healthtimeout", "health_timeout")])
def test_close_unknown_names_suggest_ours(typo: str, ours: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_for(spec(**{typo: 1}))
    assert err.value.key == typo and repr(ours) in err.value.fix


def test_check_all_reports_everything_once_with_the_hosts() -> None:
    inv = load_inventory(FIXTURES / "bad" / "values.yml")
    errors = check_all(inv.hosts.values())
    text = [str(e) for e in errors]
    assert len(errors) == 3, text
    path = FIXTURES / "bad" / "values.yml"
    url = next(e for e in errors if e.key == "package_index_url")
    assert url.where == f"{path}:3 (hosts gpu1, gpu2)"
    port = next(e for e in errors if e.key == "api_port")
    assert (port.where, port.value) == (f"{path}:6 (host gpu1)", 80800)
    venv = next(e for e in errors if e.key == "venv_dir")
    assert (venv.where, venv.value) == (f"{path}:8 (host gpu2)", "opt/venv")


def test_resolve_targets_reports_every_error_before_any_connection(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as err:
        resolve_targets(str(FIXTURES / "bad" / "values.yml"), None, "all", ())
    assert len(err.value.errors) == 3
    targets = resolve_targets(str(LAB), None, "a100:h100",
                              ("fastdeploy_version=2.4.0 api_port=9000",))
    assert [(s.name, st.fastdeploy_version, st.api_port) for s, st in targets] == [
        ("lab-a100-1", "2.4.0", 9000), ("lab-h100-1", "2.4.0", 9000)]
    with pytest.raises(ConfigErrors) as err:
        resolve_targets(str(LAB), "lab-t4-1", None, ("api_port=99999",))
    assert str(err.value) == ("-e (host lab-t4-1): api_port='99999': a TCP port is a whole number "
                              "from 1 to 65535")


@pytest.mark.parametrize("given, key, words", [
    ({"venv_dir": "/opt/fastdeploy"}, "venv_dir", "contains releases_dir"),
    ({"releases_dir": "/opt/fastdeploy/venv/r"}, "venv_dir", "contains releases_dir"),
    ({"env_file": "/etc/shadow"}, "env_file", "system file"),
    ({"env_file": "/etc/ssh/sshd_config"}, "env_file", "/etc/ssh"),
    ({"releases_dir": "/usr"}, "releases_dir", "system directory"),
    ({"log_dir": "/opt/../etc"}, "log_dir", "normalized"),
    ({"data_dir": "/var/lib/fd", "model_cache_dir": "/var/lib/fd"}, "model_cache_dir", "same"),
    ({"model_dir": "/opt/fastdeploy/releases/w"}, "releases_dir", "contains model_dir"),
    ({"env_file": "/var/lib/fastdeploy"}, "env_file", "same path as data_dir"),
])
def test_overlapping_or_system_paths_refused(given: dict, key: str, words: str) -> None:
    """Finding J: paths the switch or prune would destroy fail validation (exit 2)."""
    from provision.variables import check_all

    spec = HostSpec(name="gpu1", address="10.0.0.1", vars=given)
    errors = check_all([spec])
    assert any(e.key == key and words in e.fix for e in errors), [str(e) for e in errors]


def test_default_and_nested_data_paths_pass() -> None:
    from provision.variables import check_all

    ok = {"data_dir": "/srv/fd", "model_cache_dir": "/srv/fd/models", "log_dir": "/srv/fd/log",
          "env_file": "/srv/fd/env", "venv_dir": "/opt/fd/venv", "releases_dir": "/opt/fd/rel"}
    assert check_all([HostSpec(name="a", address="10.0.0.1")]) == []
    assert check_all([HostSpec(name="a", address="10.0.0.1", vars=ok)]) == []


def test_api_key_with_a_quote_is_a_config_error_and_hidden() -> None:
    """Smaller finding: refused before connecting (exit 2), the value never shown."""
    from provision.variables import check_all

    [error] = check_all([HostSpec(name="a", address="10.0.0.1", vars={"api_key": "ab'cd"})])
    assert error.key == "api_key" and "ab'cd" not in str(error) and "single quote" in str(error)


def test_group_cycle_and_forged_host_names_are_config_errors(tmp_path: Path) -> None:
    """Smaller findings: a cycle is one line (no traceback); a name cannot forge log lines."""
    cycle = tmp_path / "cycle.yml"
    cycle.write_text("all:\n  children:\n    a:\n      children:\n        b:\n    b:\n"
                     "      children:\n        a:\n      hosts:\n        gpu1:\n")
    with pytest.raises(ConfigErrors) as err:
        resolve_targets(str(cycle), "gpu1", None, ())
    assert "contain each other" in str(err.value)
    names = tmp_path / "names.yml"
    names.write_text('all:\n  hosts:\n    "gpu1\\nFAKE LINE":\n    "a b;c":\n    gpu-2.lab:\n')
    with pytest.raises(ConfigErrors) as err:
        resolve_targets(str(names), None, "all", ())
    assert [e.value for e in err.value.errors] == ["gpu1\nFAKE LINE", "a b;c"]
