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
    """A FastDeploy release line (X.Y) and what the tool assumes about it (releases.yaml)."""

    version: str  # the line, "2.3"
    patches: tuple[str, ...]  # what the index listed when the entry was written
    paddle: str
    layout: str  # "sm_split" or "per_cuda"
    cuda: tuple[str, ...]  # CUDA indexes (cu126, ...) its Paddle is paired with, oldest first
    sms: tuple[int, ...]  # per_cuda only: what its wheels serve
    wheel_tags: tuple[str, ...]  # "py3-none-any", "cp310-cp310-manylinux_2_28_x86_64"
    python: tuple[str, ...]  # Python minors upstream documents
    flags: frozenset[str]  # the tool's server flags this line accepts
    models_endpoint: bool
    api_key: bool
    config_info: bool
    parser_names: dict  # catalogue parser name -> this line's name
    load_choices_default: str
    model_cache: str  # "org" or "flat"
    enable_mm: str  # "required" (2.0, 2.1) or "dropped"
    source: str

    def parser(self, name: str) -> str:
        """The reasoning parser's name as this line registers it (ernie-x1 was ernie_x1)."""
        return self.parser_names.get(name, name)


@dataclass(frozen=True)
class Doubt:
    """Where sources conflict: the reading the data takes, for `--check` to name (C13)."""

    key: str
    lines: tuple[str, ...]
    reading: str
    doubt: str
    sms: tuple[int, ...]  # empty: every GPU
    source: str


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
    load_choices: str | None  # "default_v1" for torch-format weights (and 21B-Thinking)
    gpu_memory_gib: dict  # quantization -> total GiB over all TP cards
    chat_template_kwargs: dict | None = None  # what turns the reasoning off; None: nothing can
    check_max_tokens: int = 32  # enough for `content` to arrive after any reasoning
    small_card_mib: int = 0  # one card of at most this much memory gets small_card_flags
    small_card_flags: tuple[str, ...] = ()


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


# libyaml's parser when PyYAML has it: the same safe constructors, about ten times faster
# on the data files every run reads (bench/noop_bench.py's "plan" phase).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_data(name: str) -> dict:
    """One of provision/data/'s YAML files, parsed safely."""
    return yaml.load(resources.files("provision.data").joinpath(name).read_text(),
                     Loader=_SAFE_LOADER)


@lru_cache(maxsize=1)
def cuda_builds() -> dict[str, CudaBuild]:
    """cuda.yaml by index name."""
    return {c["index"]: CudaBuild(c["index"], str(c["cuda"]), str(c["min_driver"]),
                                  bool(c.get("fastdeploy", True)))
            for c in load_data("cuda.yaml")["cuda"]}


@lru_cache(maxsize=1)
def _releases_doc() -> dict:
    return load_data("releases.yaml")


def default_version() -> str:
    """The release line a host gets when fastdeploy_version is not set."""
    return str(_releases_doc()["defaults"]["fastdeploy_version"]["value"])


@lru_cache(maxsize=1)
def releases() -> dict[str, Release]:
    """releases.yaml by release line ("2.3")."""
    return {str(v): Release(
        version=str(v), patches=tuple(str(p) for p in r["patches"]), paddle=str(r["paddle"]),
        layout=r["layout"], cuda=tuple(r["cuda"]), sms=tuple(r.get("sms") or ()),
        wheel_tags=tuple(r["wheel_tags"]), python=tuple(str(p) for p in r["python"]),
        flags=frozenset(r["flags"]), models_endpoint=bool(r["models_endpoint"]),
        api_key=bool(r["api_key"]), config_info=bool(r["config_info"]),
        parser_names=dict(r.get("parser_names") or {}),
        load_choices_default=str(r["load_choices_default"]), model_cache=r["model_cache"],
        enable_mm=r.get("enable_mm", "dropped"), source=str(r["source"]))
        for v, r in _releases_doc()["lines"].items()}


def line_of(version: str) -> str:
    """'2.3.4' -> '2.3'; '2.3' -> '2.3'."""
    return ".".join(version.split(".")[:2])


def is_exact(version: str) -> bool:
    """An exact pin (2.3.4) rather than a line (2.3)."""
    return version.count(".") >= 2


def release(version: str) -> Release:
    """The line of an exact version or a line, or an error listing the lines the data knows."""
    try:
        return releases()[line_of(version)]
    except KeyError:
        raise ProvisionError(
            f"fastdeploy_version={version!r}: release line {line_of(version)} is not in "
            f"provision/data/releases.yaml (it knows {', '.join(releases())}); a new line is "
            "one data entry with its source (README: adding a release)") from None


def first_with(capability: str) -> str | None:
    """The oldest line with a capability (api_key, models_endpoint, ...), for error texts."""
    have = [r.version for r in releases().values() if getattr(r, capability)]
    return min(have, key=version_key, default=None)


@lru_cache(maxsize=1)
def doubts() -> tuple[Doubt, ...]:
    return tuple(Doubt(str(k), tuple(str(x) for x in d["lines"]), d["reading"], d["doubt"],
                       tuple(d.get("applies_to_sms") or ()), str(d["source"]))
                 for k, d in _releases_doc()["doubts"].items())


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


def _sm_split() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v["sms"]) for k, v in _releases_doc()["sm_split_indexes"].items()}


def fastdeploy_index(rel: Release, sm: int, cuda_index: str) -> str | None:
    """The index (path under package_index_url) holding fastdeploy-gpu for this SM.

    sm_split releases (<= 2.4): fastdeploy-gpu-80_90 or -86_89; per_cuda (2.5): the same
    per-CUDA index as Paddle. None: no prebuilt wheel for this SM (Turing, Volta, Blackwell).
    """
    if rel.layout == "per_cuda":
        return cuda_index if sm in rel.sms else None
    for index, sms in _sm_split().items():
        if sm in sms:
            return index
    return None


def candidate_indexes(rel: Release) -> tuple[tuple[str, str], ...]:
    """Every (index, project) page the line may install from, whatever the host's GPU.

    The facts trip fetches these from the host before the GPU is known, so they are the
    union over SMs and CUDA builds (at most four pages).
    """
    pages = [(cuda, "paddlepaddle-gpu") for cuda in rel.cuda]
    if rel.layout == "per_cuda":
        pages += [(cuda, "fastdeploy-gpu") for cuda in rel.cuda]
    else:
        pages += [(index, "fastdeploy-gpu") for index in _sm_split()]
    return tuple(pages)


def supported_sms(rel: Release) -> tuple[int, ...]:
    if rel.layout == "per_cuda":
        return rel.sms
    return tuple(sorted(sm for sms in _sm_split().values() for sm in sms))


def release_name(version: str, rel: Release, cuda: CudaBuild, fd_index: str) -> str:
    """Directory name that says what a release holds.

    fastdeploy-2.5.0_paddle-3.3.1_cu129; on SM-split releases the wheel's SM set too:
    fastdeploy-2.4.0_paddle-3.3.0_cu126_sm86_89.
    """
    name = f"fastdeploy-{version}_paddle-{rel.paddle}_{cuda.index}"
    if rel.layout == "sm_split":
        name += "_sm" + fd_index.rsplit("-", 1)[-1]
    return name


# --------------------------------------------------------------------------- models


@lru_cache(maxsize=1)
def _models_doc() -> dict:
    return load_data("models.yaml")


def quantizations() -> tuple[str, ...]:
    return tuple(_models_doc()["rules"]["quantizations"]["order"])


@lru_cache(maxsize=1)
def catalogue() -> dict[str, ModelInfo]:
    """Every hub name the families generate (Base and post-trained, -Paddle and -PT)."""
    doc = _models_doc()
    pt_rule, think = doc["rules"]["pt"], doc["rules"]["thinking_default"]
    models: dict[str, ModelInfo] = {}
    for fam in doc["families"]:
        thinking = fam.get("thinking") or think
        small = fam.get("small_card") or {}
        stems = [(fam["stem"], False)]
        if fam.get("base"):
            stems.append((fam["stem"] + "-Base", True))
        for stem, base in stems:
            for fmt in fam["formats"] or [""]:
                name = f"baidu/{stem}-{fmt}" if fmt else f"baidu/{stem}"
                pt = fmt == "PT"
                min_fd = str(fam["min_fastdeploy"])
                if pt:
                    min_fd = max(min_fd, str(pt_rule["min_fastdeploy"]), key=version_key)
                models[name] = ModelInfo(
                    name=name, stem=fam["stem"], base=base, format=fmt,
                    weights_gb=float(fam["weights_gb"]), multimodal=bool(fam["multimodal"]),
                    reasoning_parser=None if base else fam.get("reasoning_parser"),
                    min_fastdeploy=min_fd,
                    load_choices=pt_rule["load_choices"] if pt else fam.get("load_choices"),
                    gpu_memory_gib={str(k): float(v) for k, v in fam["gpu_memory_gib"].items()},
                    chat_template_kwargs=None if base else thinking["chat_template_kwargs"],
                    check_max_tokens=32 if base else int(thinking["max_tokens"]),
                    small_card_mib=int(small.get("max_card_mib", 0)),
                    small_card_flags=tuple(str(f) for f in small.get("flags", ())),
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
