"""The stand-in's build facts and the lab's knobs on the host (/etc/provision-lab/*).

Build facts (_lab_build.json, written by provision_lab/index.py from the lab's recorded upstream
facts, provision_lab/upstream/*.yaml): version, paired paddle version and commit, CUDA build,
the GPU architectures (SM) the wheel's kernels were compiled for, and the release's behaviour:
the flags it accepts, its features (/v1/models, API keys, /config-info, cache layout, ...),
its reasoning parser names, and what the models do (thinking, memory).

Knobs, read at every start so the lab can change them between restarts:
- load time before any port opens: $PROVISION_LAB_LOAD_SECONDS, else <etc>/load-seconds, else 2;
- versions that must fail like a broken release: <etc>/broken-versions (one per line) and
  $PROVISION_LAB_BROKEN_VERSIONS (comma-separated);
- canned answers: $PROVISION_LAB_ANSWERS (a JSON file), else <etc>/answers.json, mapping a
  lowercase substring of the last user message to the answer text (or to
  {"text": ..., "delay_s": N} to make that answer slow);
- the model hub weights are downloaded from when absent: $PROVISION_LAB_HUB_URL, else
  <etc>/hub-url (the lab writes it); neither: the old stand-in "download" (a config.json).
<etc> is $PROVISION_LAB_ETC, default /etc/provision-lab.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

_HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LOAD_SECONDS = 2.0


@lru_cache(maxsize=1)
def build() -> dict:
    with open(os.path.join(_HERE, "_lab_build.json")) as f:
        return json.load(f)


def behaviour() -> dict:
    return build()["behaviour"]


def has(feature: str) -> bool:
    """Whether this release has `feature` (a key of upstream/releases.yaml's `features`)."""
    return bool(behaviour()["features"].get(feature))


def accepts(flag: str) -> bool:
    """Whether this release's argument parser knows `flag`."""
    return flag in behaviour()["flags"]


def model_rule(kind: str, model: str):
    """The first `models.<kind>` entry whose `match` is in the model name or path, or None."""
    for rule in behaviour()["models"].get(kind, []):
        if rule["match"] in model:
            return rule
    return None


def etc_dir() -> str:
    return os.environ.get("PROVISION_LAB_ETC", "/etc/provision-lab")


def _read(name: str) -> str | None:
    try:
        with open(os.path.join(etc_dir(), name)) as f:
            return f.read()
    except OSError:
        return None


def load_seconds() -> float:
    for raw in (os.environ.get("PROVISION_LAB_LOAD_SECONDS"), _read("load-seconds")):
        if raw is not None and raw.strip():
            return max(0.0, float(raw.strip()))
    return DEFAULT_LOAD_SECONDS


def hub_url() -> str | None:
    for raw in (os.environ.get("PROVISION_LAB_HUB_URL"), _read("hub-url")):
        if raw is not None and raw.strip():
            return raw.strip().rstrip("/") + "/"
    return None


def broken_versions() -> set:
    listed = (_read("broken-versions") or "").split()
    listed += (os.environ.get("PROVISION_LAB_BROKEN_VERSIONS") or "").split(",")
    return {v.strip() for v in listed if v.strip()}


def is_broken() -> bool:
    return build()["version"] in broken_versions()


def answers() -> dict:
    """Canned answers, lowercase key -> {"text": str, "delay_s": float}; {} when none."""
    path = os.environ.get("PROVISION_LAB_ANSWERS") or os.path.join(etc_dir(), "answers.json")
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return {}
    result = {}
    for key, value in raw.items():
        if isinstance(value, str):
            value = {"text": value}
        result[str(key).lower()] = {"text": str(value.get("text", "")),
                                    "delay_s": float(value.get("delay_s", 0))}
    return result
