"""paddle.version: what the wheel was built as (FastDeploy compares `commit` at start)."""

from __future__ import annotations

from paddle import _lab

full_version = _lab.build()["version"]
major, minor, patch = (full_version.split(".") + ["0", "0"])[:3]
rc = "0"
commit = _lab.build()["commit"]
cuda_version = _lab.build()["cuda"]
cudnn_version = "9.5.1"
istaged = True
with_gpu = "ON"


def cuda() -> str:
    return cuda_version


def cudnn() -> str:
    return cudnn_version


def show() -> None:
    print(f"full_version: {full_version}")
    print(f"major: {major}")
    print(f"minor: {minor}")
    print(f"patch: {patch}")
    print(f"rc: {rc}")
    print(f"cuda: {cuda_version}")
    print(f"cudnn: {cudnn_version}")
    print(f"commit: {commit}")
