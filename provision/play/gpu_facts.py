"""GPU-host facts for `when:`: is this an NVSwitch board, and which fabric manager fits.

Pure functions of the facts and provision/data/gpu_host.yaml (sources cited there), so
`when: nvswitch_board` in playbooks/roles/nvidia_fabricmanager decides from the one
facts trip, and the role's pre-flight assert can say why no package can be chosen.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from provision.model import Facts


@lru_cache(maxsize=1)
def data() -> dict:
    return yaml.safe_load(resources.files("provision.data").joinpath("gpu_host.yaml")
                          .read_text())["host"]


def nvswitch_board(facts: Facts) -> bool:
    """Eight SXM GPUs of a model that HGX boards carry (A100/H100/H200): an NVSwitch fabric."""
    spec = data()["nvswitch"]
    if len(facts.gpus) != spec["board_gpu_count"]:
        return False
    def sxm(name: str) -> bool:
        upper = name.upper()
        return (any(s.upper() in upper for s in spec["sxm_names"])
                and not any(x in upper for x in spec["not_sxm"]))
    return all(sxm(g.name) for g in facts.gpus)


def fabricmanager_package(driver_version: str | None) -> str | None:
    """nvidia-fabricmanager-<branch> for the running driver; None when the driver is unknown."""
    if not driver_version or not driver_version.split(".")[0].isdigit():
        return None
    return data()["fabricmanager"]["package"].format(branch=driver_version.split(".")[0])


def gpu_host_vars(facts: Facts) -> dict:
    return {"nvswitch_board": nvswitch_board(facts),
            "fabricmanager_package": fabricmanager_package(facts.driver_version),
            "fabricmanager_service": data()["fabricmanager"]["service"],
            "persistence_service": data()["persistence"]["service"],
            "nvidia_smi_state": facts.nvidia_smi, "nvidia_smi_error": facts.nvidia_smi_error}


def exporter_port(facts: Facts, host_vars: dict) -> str | None:
    """The GPU metrics exporter's port when something listens there (`provision status`)."""
    port = host_vars.get("gpu_exporter_port", data()["exporter"]["port"])
    try:
        port = int(port)
    except (TypeError, ValueError):
        return None
    return str(port) if any(x.port == port for x in facts.listeners) else None
