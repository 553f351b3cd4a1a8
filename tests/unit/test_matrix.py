"""The compatibility matrix and the model catalogue, table-driven."""

from __future__ import annotations

import pytest

from provision import matrix
from provision.model import Gpu, ProvisionError


@pytest.mark.parametrize("version, driver, forced, want", [
    ("2.5.0", "590.48.01", None, "cu129"),      # new enough for 12.9
    ("2.5.0", "575.51.03", None, "cu129"),      # exactly the minimum
    ("2.5.0", "570.133.20", None, "cu126"),
    ("2.5.0", "550.54.14", None, "cu126"),
    ("2.5.0", "535.104.05", None, "cu126"),     # R535: CUDA 12.x by minor-version compat (C4)
    ("2.5.0", "530.30.02", None, None),
    ("2.5.0", "590.48.01", "12.6", "cu126"),   # forced by version...
    ("2.5.0", "590.48.01", "cu126", "cu126"),  # ...or by index name
    ("2.5.0", "555.42.02", "12.9", None),       # forced, driver too old
    ("2.4.0", "590.48.01", None, "cu126"),      # 2.4 pairs with cu126 only
    ("2.4.0", "470.182.03", None, None),
    ("2.4.0", None, None, None),
])
def test_choose_cuda(version: str, driver: str | None, forced: str | None,
                     want: str | None) -> None:
    got = matrix.choose_cuda(matrix.release(version), driver, forced)
    assert (got.index if got else None) == want


@pytest.mark.parametrize("version, sm, cuda, want", [
    ("2.4.0", 80, "cu126", "fastdeploy-gpu-80_90"),
    ("2.4.0", 90, "cu126", "fastdeploy-gpu-80_90"),
    ("2.4.0", 86, "cu126", "fastdeploy-gpu-86_89"),
    ("2.4.0", 89, "cu126", "fastdeploy-gpu-86_89"),
    ("2.4.0", 75, "cu126", None),
    ("2.0.0", 89, "cu126", "fastdeploy-gpu-86_89"),
    ("2.5.0", 89, "cu126", "cu126"),
    ("2.5.0", 90, "cu129", "cu129"),
    ("2.5.0", 120, "cu129", None),  # Blackwell: no prebuilt wheel
    ("2.5.0", 70, "cu126", None),
])
def test_fastdeploy_index(version: str, sm: int, cuda: str, want: str | None) -> None:
    assert matrix.fastdeploy_index(matrix.release(version), sm, cuda) == want


def test_release_names_say_what_they_hold() -> None:
    builds = matrix.cuda_builds()
    assert matrix.release_name("2.5.0", matrix.release("2.5"), builds["cu129"], "cu129") == (
        "fastdeploy-2.5.0_paddle-3.3.1_cu129")
    assert matrix.release_name("2.4.0", matrix.release("2.4.0"), builds["cu126"],
                               "fastdeploy-gpu-86_89") == (
        "fastdeploy-2.4.0_paddle-3.3.0_cu126_sm86_89")


def test_unknown_release_lists_the_known_ones() -> None:
    with pytest.raises(ProvisionError, match="2.9.9.*2.9 is not.*2.0, 2.1"):
        matrix.release("2.9.9")


def test_every_release_pairs_with_known_cuda_builds() -> None:
    for rel in matrix.releases().values():
        assert rel.cuda and all(matrix.cuda_builds()[i].fastdeploy for i in rel.cuda)


def test_catalogue_names_follow_the_rule() -> None:
    names = set(matrix.catalogue())
    assert len(names) == 22
    for name in ("baidu/ERNIE-4.5-0.3B-Paddle", "baidu/ERNIE-4.5-0.3B-Base-PT",
                 "baidu/ERNIE-4.5-21B-A3B-Thinking", "baidu/ERNIE-4.5-VL-28B-A3B-Paddle",
                 "baidu/ERNIE-4.5-VL-28B-A3B-Thinking", "baidu/ERNIE-4.5-300B-A47B-PT",
                 "baidu/ERNIE-4.5-VL-424B-A47B-Base-Paddle"):
        assert name in names


def test_model_facts() -> None:
    vl = matrix.model_info("baidu/ERNIE-4.5-VL-28B-A3B-Paddle")
    assert vl and vl.multimodal and vl.reasoning_parser == "ernie-45-vl" and not vl.load_choices
    assert matrix.model_info("PaddlePaddle/ERNIE-4.5-VL-28B-A3B-Paddle") == vl
    pt = matrix.model_info("baidu/ERNIE-4.5-21B-A3B-PT")
    assert pt and pt.load_choices == "default_v1" and pt.min_fastdeploy == "2.2.0"
    base = matrix.model_info("baidu/ERNIE-4.5-VL-28B-A3B-Base-Paddle")
    assert base and base.reasoning_parser is None
    assert matrix.model_info("baidu/ERNIE-4.5-21B-A3B-Thinking").reasoning_parser == "ernie-x1"
    assert matrix.model_info("someone/other-model") is None


def _gpus(n: int, mib: int) -> list[Gpu]:
    return [Gpu(i, "card", f"GPU-{i}", "8.0", mib) for i in range(n)]


VL28 = "baidu/ERNIE-4.5-VL-28B-A3B-Paddle"


@pytest.mark.parametrize("model, n, mib, quant, tp, ok, want_q, want_tp", [
    (VL28, 1, 81920, None, None, True, "bf16", 1),     # A100 80G: bf16 on one card
    (VL28, 1, 46068, None, None, True, "wint8", 1),    # L40S: fewest cards, then precision
    (VL28, 1, 24564, None, None, True, "wint4", 1),    # RTX 4090: upstream's wint4 recipe
    (VL28, 1, 15360, None, None, False, "bf16", 1),    # T4 16G: nothing fits
    (VL28, 2, 46068, "bf16", None, True, "bf16", 2),   # user wants bf16: TP 2 on 48G
    (VL28, 1, 24564, "bf16", None, False, "bf16", 1),
    ("baidu/ERNIE-4.5-300B-A47B-Paddle", 8, 81920, None, None, True, "wint4", 4),
    ("baidu/ERNIE-4.5-300B-A47B-Paddle", 8, 81920, "wint8", None, True, "wint8", 8),
    ("baidu/ERNIE-4.5-0.3B-Paddle", 1, 15360, None, None, True, "bf16", 1),
])
def test_fit(model: str, n: int, mib: int, quant: str | None, tp: int | None, ok: bool,
             want_q: str, want_tp: int) -> None:
    fit = matrix.fit_model(matrix.model_info(model), _gpus(n, mib), quant, tp)
    assert (fit.ok, fit.quantization, fit.tp) == (ok, want_q, want_tp)


def test_fit_suggestions() -> None:
    vl = matrix.model_info(VL28)
    assert "quantization=wint4" in matrix.fit_model(vl, _gpus(1, 24564), "bf16", None).suggestion
    t4 = matrix.fit_model(vl, _gpus(1, 15360), None, None).suggestion
    assert "2 cards" in t4 and "ERNIE-4.5-0.3B" in t4
