"""Lab stand-in for the `fastdeploy-gpu` wheel (FastDeploy 2.x LLM serving).

Like the real package it imports paddle first, so a venv without paddlepaddle-gpu fails at
import with ModuleNotFoundError. Standard library only: the lab's venvs hold nothing else.
"""

from __future__ import annotations

import paddle  # noqa: F401  (the real package needs it; its absence must fail here)

from fastdeploy import _lab

__version__ = _lab.build()["version"]
