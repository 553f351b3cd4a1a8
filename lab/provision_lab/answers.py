"""The stand-in model's canned answers (answers.yaml), written to every lab host."""

from __future__ import annotations

from pathlib import Path

import yaml

ANSWERS_FILE = Path(__file__).with_name("answers.yaml")


def lab_answers() -> dict[str, str]:
    """Lowercase question substring -> the reply the stand-in server gives."""
    return dict(yaml.safe_load(ANSWERS_FILE.read_text())["answers"])
