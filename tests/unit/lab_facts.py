"""Facts for a lab profile, built the way a real trip builds them (test helper).

The GPU part is not hand-written: the lab's stand-in nvidia-smi runs in-process for the
profile, with the same arguments the facts script passes, and its raw outcomes go
through facts.parse_nvidia. So a change to either side shows up in these tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import yaml

from provision import matrix
from provision.facts import QUERY_FIELDS, QUERY_FIELDS_NO_CAP, parse_nvidia
from provision.model import Facts, IndexPage, Installed, Plan, Settings
from provision.pkgindex import page_url, parse_page
from provision.steps.hosts import render_hosts
from provision.steps.service import render_env, render_unit, sha256
from provision_lab import profiles as lab
from provision_lab.standins import nvidia_smi


@contextmanager
def _profile_env(profile: lab.Profile):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gpu.json")
        with open(path, "w") as handle:
            json.dump(lab.profile_as_json(profile), handle)
        old = os.environ.get("PROVISION_LAB_GPU_JSON")
        os.environ["PROVISION_LAB_GPU_JSON"] = path
        try:
            yield
        finally:
            if old is None:
                del os.environ["PROVISION_LAB_GPU_JSON"]
            else:
                os.environ["PROVISION_LAB_GPU_JSON"] = old


def _smi(argv: list[str]) -> dict:
    try:
        return {"rc": 0, "out": nvidia_smi.run(argv), "err": ""}
    except nvidia_smi.SmiError as exc:
        return {"rc": exc.code, "out": str(exc) + "\n", "err": ""}


def raw_nvidia(profile: lab.Profile) -> dict | None:
    """What the facts script would have collected from this profile's nvidia-smi."""
    if not profile.has_nvidia_smi:
        return None
    fmt = "--format=csv,noheader,nounits"
    with _profile_env(profile):
        query = _smi([f"--query-gpu={QUERY_FIELDS}", fmt])
        fallback = None
        if query["rc"] != 0 and "compute_cap" in query["out"]:
            fallback = _smi([f"--query-gpu={QUERY_FIELDS_NO_CAP}", fmt])
        return {"query": query, "query_no_cap": fallback, "table": _smi([])}


@cache
def _gpu_part(name: str) -> tuple:
    parsed = parse_nvidia(raw_nvidia(lab.load_profiles()[name]))
    return tuple(sorted(parsed.items()))


LAB_BASE = dict(
    hostname="gpu1", kernel="Linux", arch="x86_64", os_id="debian", os_version_id="12",
    os_id_like="", os_pretty="Debian GNU/Linux 12 (bookworm)", etc_hosts=None,
    cloud_hosts_template=None, python_version="3.11.2", has_venv=True, has_pip=True,
    disk_free_mib={"/opt/fastdeploy/releases": 200_000, "/var/lib/fastdeploy/models": 200_000},
    mem_total_mib=24_000, systemd_state="running",
)


LISTING = Path(__file__).resolve().parent.parent / "fixtures" / "index" / "paddle-stable.yaml"


def _page(project: str, versions: list, tags: list) -> str:
    module = project.replace("-", "_")
    return "\n".join(f'<a href="../../{module}-{v}-{t}.whl#sha256=00">{module}-{v}-{t}.whl</a>'
                     for v in versions for t in tags)


@cache
def recorded_index(base: str = Settings().package_index_url) -> dict:
    """url -> IndexPage for the recorded upstream listing (tests/fixtures/index)."""
    doc = yaml.safe_load(LISTING.read_text())
    pages = {}
    for key, project in (("fastdeploy_sm_split", "fastdeploy-gpu"),
                         ("fastdeploy_per_cuda", "fastdeploy-gpu"),
                         ("paddle", "paddlepaddle-gpu")):
        entry = doc[key]
        tags = entry.get("tags") or [entry["tag"]]
        for index in entry["indexes"]:
            url = page_url(base, index, project)
            old = pages.get(url, IndexPage(True)).wheels
            pages[url] = IndexPage(True, "", old + parse_page(
                _page(project, [str(v) for v in entry["versions"]], tags)))
    return pages


def facts_from_profile(profile: str, base: str = Settings().package_index_url,
                       **overrides) -> Facts:
    """A fresh lab host (Debian 12, Python 3.11, no /etc/hosts) with this GPU profile; its
    facts trip read the recorded upstream index listing under `base`."""
    return Facts(**{**LAB_BASE, **dict(_gpu_part(profile)), "index_pages": recorded_index(base),
                    **overrides})


def converged(facts: Facts, settings: Settings, plan: Plan) -> Facts:
    """The facts the next trip would see after `plan` was applied and the server started."""
    assert plan.install is not None
    name = plan.install.release
    flat = matrix.release(settings.fastdeploy_version).model_cache == "flat"
    unit = render_unit(settings, plan.server_argv, plan.checks.metrics_local_only, flat)
    return dataclasses.replace(
        facts,
        has_venv=True, has_pip=True,
        etc_hosts=render_hosts(facts.etc_hosts, facts.hostname),
        installed=Installed(
            current_release=name, releases=(*facts.installed.releases, name),
            paddle_version=plan.install.paddle_version,
            fastdeploy_version=plan.install.fastdeploy_version,
            unit_text=unit, unit_sha256=sha256(unit),
            env_sha256=sha256(render_env(settings)), env_mode=0o600,
            service_active="active", service_enabled="enabled", service_restarts=0,
            venv_kind="link"),
        index_skipped=matrix.is_exact(settings.fastdeploy_version),
    )
