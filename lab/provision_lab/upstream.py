"""The lab's recorded upstream facts (upstream/*.yaml), resolved per index and per release.

This is the only place the lab learns what the real Paddle indexes list and how each
FastDeploy release behaves. It reads the lab's own files (UPSTREAM_DIR), never the tool's
data files:
a wrong fact in the tool must meet a lab that disagrees with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

UPSTREAM_DIR = Path(__file__).with_name("upstream")


@cache
def load(name: str) -> dict:
    """One recorded file, e.g. load("releases") for upstream/releases.yaml."""
    return yaml.safe_load((UPSTREAM_DIR / f"{name}.yaml").read_text())


def version_key(version: str) -> tuple[int, ...]:
    """Numeric release order; a pre-release counts as its release ("2.3.0rc0" -> (2, 3, 0)).

    >>> version_key("2.3.0rc0") < version_key("2.10.0")
    True
    """
    return tuple(int(part) for part in re.findall(r"\d+", version.split("rc")[0])[:3])


def _since(entry: dict, version: str) -> bool:
    """Whether a `since:`/`until:` entry applies to `version`."""
    key = version_key(version)
    if key < version_key(entry.get("since", "0")):
        return False
    return "until" not in entry or key < version_key(entry["until"])


def wheel_project(project: str) -> str:
    """A project's name as it appears in wheel file names (PEP 427 escaping)."""
    return re.sub(r"[-_.]+", "_", project)


@dataclass(frozen=True)
class IndexFile:
    """One file a recorded Paddle index lists."""

    index: str  # path below packages/stable/, e.g. "cu126" or "fastdeploy-gpu-86_89"
    project: str  # "paddlepaddle-gpu", "fastdeploy-gpu", or one of paddle's dependencies
    version: str
    tag: str  # "py3-none-any", "cp310-cp310-manylinux_2_28_x86_64", ...

    @property
    def filename(self) -> str:
        return f"{wheel_project(self.project)}-{self.version}-{self.tag}.whl"


def paddle_indexes() -> dict[str, dict]:
    """Index path -> its recorded entry (cuda, sms, files, source)."""
    return load("paddle_indexes")["indexes"]


def listed_files() -> list[IndexFile]:
    """Every paddlepaddle-gpu and fastdeploy-gpu file the recorded indexes list."""
    files = []
    for index, entry in paddle_indexes().items():
        for project, listing in entry["files"].items():
            files += [IndexFile(index, project, version, tag)
                      for version in listing["versions"] for tag in listing["tags"]]
    return files


def min_driver(cuda: str) -> str:
    """The oldest driver a CUDA build of Paddle runs on (minor version compatibility)."""
    return load("paddle_indexes")["cuda_builds"][cuda]["min_driver"]


def paddle_requires() -> list[str]:
    return list(load("paddle_indexes")["paddle_requires"]["requires"])


def fastdeploy_requires() -> list[str]:
    return list(load("releases")["fastdeploy_requires"]["requires"])


def imported_at_start() -> dict[str, str]:
    """Distribution -> module the stand-in server imports at start, as upstream's does."""
    return dict(load("releases")["fastdeploy_requires"]["imported_at_start"])


def requirement(spec: str) -> tuple[str, str]:
    """(name, a version satisfying it) for a plain requirement: pins and floors are kept.

    >>> requirement("uvicorn==0.29.0"), requirement("openai>=1.93.0"), requirement("tqdm")
    (('uvicorn', '0.29.0'), ('openai', '1.93.0'), ('tqdm', '1.0.0'))
    """
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:(==|>=)\s*([0-9][0-9.]*))?\s*",
                         spec)
    if not match:
        raise ValueError(f"recorded requirement {spec!r}: use NAME, NAME==X or NAME>=X")
    name, _, version = match.groups()
    if version and version.count(".") == 1:
        version += ".0"
    return name, version or "1.0.0"


def paddle_for(version: str) -> str:
    """The Paddle release a FastDeploy release was built against."""
    return [e for e in load("releases")["paddle_pairing"] if _since(e, version)][-1]["paddle"]


def release_behaviour(version: str) -> dict:
    """What FastDeploy `version` does, as the stand-in server reads it from its build facts."""
    data = load("releases")
    flags = sorted({f for group in data["server_flags"] if _since(group, version)
                    for f in group["flags"]})
    features = {name: _since(entry, version) for name, entry in data["features"].items()}
    parsers = sorted(p["name"] for p in data["reasoning_parsers"] if _since(p, version))
    return {"flags": flags, "features": features, "reasoning_parsers": parsers,
            "models": data["models"]}
