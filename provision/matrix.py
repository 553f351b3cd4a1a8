"""The compatibility matrix and the model catalogue: data in provision/data/, lookups here.

Every decision about versions, indexes and model needs is read from cuda.yaml,
releases.yaml and models.yaml, so supporting a new release or card is a data change;
these functions only combine the tables (pure, cached loads of package data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from provision.model import Gpu, ProvisionError

TP_SIZES = (1, 2, 4, 8)  # tensor-parallel sizes upstream's recipes use (single node)


@dataclass(frozen=True)
class CudaBuild:
    """One Paddle per-CUDA package index and the oldest driver its builds run on."""

    index: str  # "cu126"
    cuda: str  # "12.6"
    min_driver: str
    fastdeploy: bool


@dataclass(frozen=True)
class Release:
    """A FastDeploy release: its Paddle pairing, wheel layout and what its wheels need."""

    version: str
    paddle: str
    layout: str  # "sm_split" or "per_cuda"
    cuda: tuple[str, ...]  # CUDA indexes (cu126, ...) its Paddle is paired with, oldest first
    enable_mm: str  # "required" (2.0, 2.1) or "dropped"
    python: tuple[str, ...]
    python_certain: bool


@dataclass(frozen=True)
class ModelInfo:
    """One catalogue entry: what a hub model needs and which flags serve it."""

    name: str  # "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"
    stem: str
    base: bool
    format: str  # "Paddle", "PT" or "" (repo without a format suffix)
    weights_gb: float  # UNCERTAIN estimates, see models.yaml
    multimodal: bool
    reasoning_parser: str | None
    min_fastdeploy: str
    load_choices: str | None  # "default_v1" for torch-format weights
    gpu_memory_gib: dict  # quantization -> total GiB over all TP cards


@dataclass(frozen=True)
class Fit:
    """Whether a model fits the GPUs, with which quantization and TP, or what would."""

    ok: bool
    quantization: str  # "bf16" means no --quantization flag
    tp: int
    need_gib: float
    have_gib: float
    suggestion: str = ""
    auto: bool = False  # the quantization was chosen here, not by the user


def version_key(version: str) -> tuple[int, ...]:
    """'550.54.14' -> (550, 54, 14); a non-numeric part counts as 0 (never crashes)."""
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _load(name: str) -> dict:
    return yaml.safe_load(resources.files("provision.data").joinpath(name).read_text())


@lru_cache(maxsize=1)
def cuda_builds() -> dict[str, CudaBuild]:
    """cuda.yaml by index name."""
    return {c["index"]: CudaBuild(c["index"], str(c["cuda"]), str(c["min_driver"]),
                                  bool(c.get("fastdeploy", True)))
            for c in _load("cuda.yaml")["cuda"]}


@lru_cache(maxsize=1)
def _releases_doc() -> dict:
    return _load("releases.yaml")


@lru_cache(maxsize=1)
def releases() -> dict[str, Release]:
    """releases.yaml by FastDeploy version."""
    return {str(v): Release(str(v), str(r["paddle"]), r["layout"], tuple(r["cuda"]),
                            r.get("enable_mm", "dropped"), tuple(str(p) for p in r["python"]),
                            bool(r.get("python_certain", True)))
            for v, r in _releases_doc()["releases"].items()}


def release(version: str) -> Release:
    """The release, or an error listing the ones the data knows."""
    try:
        return releases()[version]
    except KeyError:
        raise ProvisionError(
            f"fastdeploy_version={version!r} is not in provision/data/releases.yaml; "
            f"choose one of: {', '.join(releases())}") from None


def choose_cuda(rel: Release, driver_version: str | None, forced: str | None) -> CudaBuild | None:
    """Newest CUDA build the release lists whose minimum driver the host's driver meets.

    `forced` ("12.6" or "cu126") narrows the choice to that build; None when nothing runs.
    """
    if driver_version is None:
        return None
    builds = [cuda_builds()[i] for i in rel.cuda if i in cuda_builds()]
    if forced:
        builds = [b for b in builds if forced in (b.cuda, b.index)]
    usable = [b for b in builds if version_key(b.min_driver) <= version_key(driver_version)]
    return max(usable, key=lambda b: version_key(b.cuda), default=None)


def fastdeploy_index(rel: Release, sm: int, cuda_index: str) -> str | None:
    """The index (path under package_index_url) holding fastdeploy-gpu for this SM.

    sm_split releases (<= 2.4): fastdeploy-gpu-80_90 or -86_89; per_cuda (2.5): the same
    per-CUDA index as Paddle. None: no prebuilt wheel for this SM (Turing, Volta, Blackwell).
    """
    doc = _releases_doc()
    if rel.layout == "per_cuda":
        return cuda_index if sm in doc["per_cuda_sms"] else None
    for index, sms in doc["sm_split_indexes"].items():
        if sm in sms:
            return index
    return None


def supported_sms(rel: Release) -> tuple[int, ...]:
    doc = _releases_doc()
    if rel.layout == "per_cuda":
        return tuple(doc["per_cuda_sms"])
    return tuple(sorted(sm for sms in doc["sm_split_indexes"].values() for sm in sms))


def release_name(rel: Release, cuda: CudaBuild, fd_index: str) -> str:
    """Directory name that says what a release holds.

    fastdeploy-2.5.0_paddle-3.3.1_cu129; on SM-split releases the wheel's SM set too:
    fastdeploy-2.4.0_paddle-3.3.0_cu126_sm86_89.
    """
    name = f"fastdeploy-{rel.version}_paddle-{rel.paddle}_{cuda.index}"
    if rel.layout == "sm_split":
        name += "_sm" + fd_index.rsplit("-", 1)[-1]
    return name


# --------------------------------------------------------------------------- models


@lru_cache(maxsize=1)
def _models_doc() -> dict:
    return _load("models.yaml")


def quantizations() -> tuple[str, ...]:
    return tuple(_models_doc()["quantizations"])


@lru_cache(maxsize=1)
def catalogue() -> dict[str, ModelInfo]:
    """Every hub name the families generate (Base and post-trained, -Paddle and -PT)."""
    doc = _models_doc()
    models: dict[str, ModelInfo] = {}
    for fam in doc["families"]:
        stems = [(fam["stem"], False)]
        if fam.get("base"):
            stems.append((fam["stem"] + "-Base", True))
        for stem, base in stems:
            for fmt in fam["formats"] or [""]:
                name = f"baidu/{stem}-{fmt}" if fmt else f"baidu/{stem}"
                pt = fmt == "PT"
                min_fd = str(fam["min_fastdeploy"])
                if pt:
                    min_fd = max(min_fd, str(doc["pt_min_fastdeploy"]), key=version_key)
                models[name] = ModelInfo(
                    name=name, stem=fam["stem"], base=base, format=fmt,
                    weights_gb=float(fam["weights_gb"]), multimodal=bool(fam["multimodal"]),
                    reasoning_parser=None if base else fam.get("reasoning_parser"),
                    min_fastdeploy=min_fd,
                    load_choices=doc["pt_load_choices"] if pt else None,
                    gpu_memory_gib={str(k): float(v) for k, v in fam["gpu_memory_gib"].items()},
                )
    return models


def model_info(name: str) -> ModelInfo | None:
    """The catalogue entry for a hub id; AIStudio's `PaddlePaddle/` prefix works too."""
    tail = name.rsplit("/", 1)[-1]
    return catalogue().get(f"baidu/{tail}")


def _fits(model: ModelInfo, q: str, tp: int, per_card_gib: float) -> bool:
    return q in model.gpu_memory_gib and model.gpu_memory_gib[q] <= tp * per_card_gib


def fit_model(model: ModelInfo, gpus: Sequence[Gpu], quantization: str | None,
              tp: int | None) -> Fit:
    """What fits: fewest cards first, then the most precise quantization on them.

    Fewest cards because TP across consumer cards is fragile upstream (reference §6 #14)
    and the others stay free; the user's quantization / TP, when given, are kept fixed.
    """
    per_card = min((g.memory_total_mib for g in gpus), default=0) / 1024
    tps = [tp] if tp else [t for t in TP_SIZES if t <= max(len(gpus), 1)]
    qs = [quantization] if quantization else list(quantizations())
    if quantization and quantization not in model.gpu_memory_gib:
        return Fit(True, quantization, tp or 1, 0.0, (tp or 1) * per_card,
                   f"no memory figure for quantization {quantization!r}; not checked")
    for t in tps:
        for q in qs:
            if _fits(model, q, t, per_card):
                return Fit(True, q, t, model.gpu_memory_gib[q], t * per_card,
                           auto=quantization is None)
    t0, q0 = tps[0], qs[0]
    return Fit(False, q0, t0, model.gpu_memory_gib[q0], t0 * per_card,
               suggest_fit(model, gpus, per_card))


def suggest_fit(model: ModelInfo, gpus: Sequence[Gpu], per_card: float) -> str:
    """The settings that would fit these GPUs, else how many such cards or which model."""
    for t in (t for t in TP_SIZES if t <= len(gpus)):
        for q in quantizations():
            if _fits(model, q, t, per_card):
                return f"set quantization={q} and tensor_parallel_size={t}"
    smallest = min(model.gpu_memory_gib.values())
    cards = math.ceil(smallest / per_card) if per_card else 0
    smaller = sorted({m.stem for m in catalogue().values()
                      if min(m.gpu_memory_gib.values()) <= per_card * max(len(gpus), 1)})
    return (f"needs at least {smallest:.0f} GiB of GPU memory ({cards or '?'} cards of "
            f"{per_card:.0f} GiB; the host has {len(gpus)}), or choose a smaller model"
            + (f" ({', '.join(smaller)})" if smaller else ""))
