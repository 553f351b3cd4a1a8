"""The play engine's pure parts: tags, batches, templating, `when`, GPU-host facts, assert."""

from __future__ import annotations

import dataclasses

import pytest

from provision.play.command import batches
from provision.play.gpu_facts import fabricmanager_package, nvswitch_board
from provision.play.host import PlayOptions, selected
from provision.play.jinja import holds, render, render_file
from provision.play.model import Probe, Task, Where
from provision.play.modules import MODULES
from provision.play.modules.base import ArgError, Context, finish
from provision.play.state import fact_vars, spec
from tests.unit.lab_facts import facts_from_profile


def _task(*tags: str) -> Task:
    return Task("t", "file", {}, Where("p.yml", 1), tags=frozenset(tags))  # type: ignore[arg-type]


@pytest.mark.parametrize(("tags", "skip", "task_tags", "runs"), [
    ((), (), (), True),
    (("a",), (), ("a", "b"), True),
    (("a",), (), ("b",), False),
    (("a",), (), ("always",), True),
    ((), ("b",), ("b",), False),
    ((), (), ("never",), False),
    (("x",), (), ("never", "x"), True),
])
def test_tags_select_as_ansible(tags, skip, task_tags, runs) -> None:
    assert selected(_task(*task_tags), PlayOptions(frozenset(tags), frozenset(skip))) is runs


def test_serial_batches_counts_percentages_and_repeat_the_last() -> None:
    hosts = [(str(i), None) for i in range(7)]
    sizes = lambda serial: [len(b) for b in batches(hosts, serial)]  # noqa: E731
    assert sizes(()) == [7]
    assert sizes(("1",)) == [1] * 7
    assert sizes(("1", "50%")) == [1, 3, 3]
    assert sizes(("10%",)) == [1] * 7  # never an empty batch
    assert batches([], ("2",)) == []


def test_templating_keeps_types_and_refuses_the_undefined() -> None:
    variables = {"ports": [1, 2], "name": "gpu1", "mode": "0640"}
    assert render("{{ ports }}", variables) == [1, 2]
    assert render({"dest": "/etc/{{ name }}.conf", "n": 3}, variables) == {
        "dest": "/etc/gpu1.conf", "n": 3}
    assert render("line\n", variables) == "line\n"
    assert render("x={{ name }}\n", variables) == "x=gpu1\n"
    with pytest.raises(ArgError, match="'nope' is undefined"):
        render("{{ nope }}", variables)
    assert render_file("{% if name %}\n{{ name }}\n{% endif %}\n", variables) == "gpu1\n"


def test_when_is_a_sandboxed_expression() -> None:
    variables = {"driver": "565.57.01", "gpu_count": 8, "flag": "yes"}
    assert holds("gpu_count == 8 and driver is version('535', '>=')", variables)
    assert holds("flag | bool", variables) and not holds("missing is defined", variables)
    assert holds("{{ gpu_count > 1 }}", variables)
    with pytest.raises(ArgError, match="unsafe"):
        holds("driver.__class__.__mro__", variables)
    with pytest.raises(ArgError, match="undefined"):
        holds("missing == 1", variables)


def test_nvswitch_boards_from_the_facts() -> None:
    eight = facts_from_profile("a100x8")
    assert nvswitch_board(eight)
    assert not nvswitch_board(facts_from_profile("a100"))
    for name in ("NVIDIA GeForce RTX 4090", "NVIDIA H100 PCIe", "NVIDIA H200 NVL"):
        cards = tuple(dataclasses.replace(g, name=name) for g in eight.gpus)
        assert not nvswitch_board(dataclasses.replace(eight, gpus=cards)), name
    hgx = tuple(dataclasses.replace(g, name="NVIDIA H200") for g in eight.gpus)
    assert nvswitch_board(dataclasses.replace(eight, gpus=hgx))
    assert not nvswitch_board(dataclasses.replace(eight, gpus=eight.gpus[:4]))
    assert fabricmanager_package("565.57.01") == "nvidia-fabricmanager-565"
    assert fabricmanager_package(None) is None
    found = fact_vars(eight)
    assert found["nvswitch_board"] and found["ansible_facts"]["gpu_count"] == 8
    assert found["ansible_os_family"] == "Debian"


def test_assert_passes_or_stops_with_its_message() -> None:
    spec_ = MODULES["assert"]
    ctx = Context("h", holds=lambda c: holds(c, {"fm": None}))
    args = finish(spec_, {"that": ["fm is none"]})
    assert spec_.plan(args, {}, ctx) is None
    failing = finish(spec_, {"that": "fm is not none", "fail_msg": "driver unknown: fix it"})
    with pytest.raises(ArgError, match="driver unknown: fix it"):
        spec_.plan(failing, {}, ctx)


def test_probe_spec_is_one_per_resource_with_content_when_any_task_needs_it() -> None:
    got = spec([Probe("file", "/a"), Probe("file", "/a", True), Probe("unit", "x")])
    assert got == [["file", "/a", True], ["unit", "x", False]]


def _cli(tmp_path, playbook: str, *args: str):
    from click.testing import CliRunner

    from provision.cli import main
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    far: {ansible_host: 192.0.2.1, ansible_user: ubuntu}\n")
    book = tmp_path / "p.yml"
    book.write_text(playbook)
    return CliRunner().invoke(main, ["play", str(book), "-i", str(inv), *args])


def test_a_playbook_error_exits_2_before_any_connection(tmp_path) -> None:
    # 192.0.2.1 (TEST-NET) would time out if contacted: the error must come first
    got = _cli(tmp_path, "- hosts: all\n  tasks:\n    - nosuch: {}\n")
    assert got.exit_code == 2
    assert f"{tmp_path / 'p.yml'}:3: task: unknown module or keyword 'nosuch'" in got.output


def test_a_non_root_login_needs_become_before_any_connection(tmp_path) -> None:
    got = _cli(tmp_path, "- hosts: all\n  tasks:\n    - file: {path: /tmp/x, state: touch}\n")
    assert got.exit_code == 2
    assert "far logs in as ubuntu; provision runs tasks as root" in got.output
    assert "no host was contacted" in got.output


def test_status_shows_the_exporter_port_only_when_it_listens() -> None:
    from provision.model import Listener
    from provision.play.gpu_facts import exporter_port
    facts = facts_from_profile("a100")
    listening = dataclasses.replace(facts, listeners=(Listener(9835, 1, "python3", None),))
    assert exporter_port(listening, {}) == "9835"
    assert exporter_port(facts, {}) is None
    assert exporter_port(listening, {"gpu_exporter_port": 9400}) is None


def test_fabric_manager_preflight_says_why_when_the_driver_is_unknown() -> None:
    from pathlib import Path

    from provision.play.parser import parse_playbook
    site = Path(__file__).resolve().parents[2] / "playbooks" / "site.yml"
    (check,) = [t for t in parse_playbook(site)[0].roles_tasks if t.module == "assert"]
    board = dataclasses.replace(facts_from_profile("a100x8"), driver_version=None,
                                nvidia_smi_error="exit 9: NVIDIA-SMI has failed")
    variables = {**fact_vars(board), "inventory_hostname": "gpu9"}
    assert all(holds(c, variables) for c in check.when)  # still an NVSwitch board
    spec_ = MODULES["assert"]
    args = finish(spec_, render(check.args, variables))
    with pytest.raises(ArgError) as caught:
        spec_.plan(args, {}, Context("gpu9", holds=lambda c: holds(c, variables)))
    assert "gpu9 is an NVSwitch board (8x NVIDIA A100-SXM4-80GB)" in str(caught.value)
    assert "driver version is unknown (nvidia-smi: exit 9: NVIDIA-SMI has failed)" in str(
        caught.value)
    fine = {**fact_vars(facts_from_profile("a100x8")), "inventory_hostname": "gpu9"}
    assert spec_.plan(finish(spec_, render(check.args, fine)), {},
                      Context("gpu9", holds=lambda c: holds(c, fine))) is None
