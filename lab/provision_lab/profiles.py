"""GPU profiles of the lab's test hosts, and installing one into a host's root filesystem.

The data lives in profiles.yaml (one entry per profile, easy to extend); this module turns it
into typed values and writes the two files a host needs: the profile as JSON (which the
stand-in nvidia-smi and the stand-in paddle read) and the stand-in nvidia-smi itself.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import yaml

PROFILES_FILE = Path(__file__).with_name("profiles.yaml")
NVIDIA_SMI_SOURCE = Path(__file__).parent / "standins" / "nvidia_smi.py"

# Paths inside a host (relative to its root). The stand-ins read the same paths.
LAB_ETC = "etc/provision-lab"
GPU_JSON = f"{LAB_ETC}/gpu.json"
NVIDIA_SMI = "usr/bin/nvidia-smi"

# Fixed namespace so a profile's GPU UUIDs never change between runs or machines.
_UUID_NAMESPACE = uuid.UUID("6f1c2a53-2b0e-4d55-9a51-6c1b9e0d2f7a")


@dataclass(frozen=True)
class GpuSpec:
    """One GPU as nvidia-smi reports it. The fields after bus_id only dress the plain table."""

    index: int
    name: str
    uuid: str
    compute_cap: str
    memory_total_mib: int
    memory_used_mib: int
    bus_id: str
    fan: str = "N/A"
    temp_c: int = 30
    perf: str = "P0"
    power_w: int = 60
    power_cap_w: int = 400
    persistence: str = "On"
    ecc: str = "0"
    mig_mode: str = "N/A"


@dataclass(frozen=True)
class Profile:
    """A host's GPU situation. `error` names a failure mode of nvidia-smi ("driver_not_loaded")."""

    name: str
    description: str
    driver_version: str | None
    cuda_version: str | None
    gpus: tuple[GpuSpec, ...]
    has_nvidia_smi: bool
    error: str | None = None


def gpu_uuid(profile: str, index: int) -> str:
    """Stable per profile and index, so known facts and fixtures do not drift between runs."""
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{profile}/{index}')}"


def _build(name: str, raw: dict, cards: dict, bus_ids: list[str]) -> Profile:
    count = int(raw.get("count", 0))
    gpus: list[GpuSpec] = []
    if count:
        card_name = raw.get("card")
        if card_name not in cards:
            raise ValueError(
                f"{PROFILES_FILE}: profile {name!r}: card={card_name!r} is not under `cards`; "
                f"use one of: {', '.join(sorted(cards))}"
            )
        ids = raw.get("bus_ids") or bus_ids
        if len(ids) < count:
            raise ValueError(
                f"{PROFILES_FILE}: profile {name!r}: count={count} but only {len(ids)} bus_ids; "
                "list one bus id per GPU"
            )
        for index in range(count):
            gpus.append(GpuSpec(index=index, uuid=gpu_uuid(name, index), bus_id=ids[index],
                                **cards[card_name]))
    return Profile(
        name=name,
        description=raw.get("description", ""),
        driver_version=raw.get("driver_version"),
        cuda_version=raw.get("cuda_version"),
        gpus=tuple(gpus),
        has_nvidia_smi=bool(raw.get("has_nvidia_smi", True)),
        error=raw.get("error"),
    )


@lru_cache(maxsize=1)
def load_profiles() -> dict[str, Profile]:
    """Every profile in profiles.yaml, by name (read once per process)."""
    data = yaml.safe_load(PROFILES_FILE.read_text())
    cards = data["cards"]
    bus_ids = data["default_bus_ids"]
    return {name: _build(name, raw, cards, bus_ids) for name, raw in data["profiles"].items()}


def get_profile(name: str) -> Profile:
    """The named profile; a clear error listing the valid names otherwise."""
    profiles = load_profiles()
    if name not in profiles:
        raise ValueError(
            f"unknown GPU profile {name!r}; valid profiles: {', '.join(profiles)} "
            f"(defined in {PROFILES_FILE})"
        )
    return profiles[name]


def profile_as_json(profile: Profile) -> dict:
    """The profile as the stand-ins read it from /etc/provision-lab/gpu.json."""
    data = asdict(profile)
    data["gpus"] = [asdict(g) for g in profile.gpus]
    return data


def install_profile(root: Path, profile: Profile) -> None:
    """Make the host rooted at `root` look like `profile` to nvidia-smi and the stand-in paddle.

    Writes <root>/etc/provision-lab/gpu.json and <root>/usr/bin/nvidia-smi (0755), or removes
    both when the profile has no nvidia-smi, so switching a host's profile needs no cleanup.
    Files are written to a temporary name and renamed, so a running host never reads half a file.
    """
    root = Path(root)
    gpu_json = root / GPU_JSON
    smi = root / NVIDIA_SMI
    if not profile.has_nvidia_smi:
        for path in (gpu_json, smi):
            path.unlink(missing_ok=True)
        return
    _write_atomic(gpu_json, json.dumps(profile_as_json(profile), indent=2) + "\n", 0o644)
    _write_atomic(smi, NVIDIA_SMI_SOURCE.read_text(), 0o755)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.provision-tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
