"""The chat page (`web_ui: true`): a Gradio app beside the API server, as its own unit.

app.py runs on the host (copied as is, in its own venv); steps.py decides what to change
from the facts (pure); check.py proves the page works over HTTP. Where things live on the
host follows from the service name, so two services on one host never share a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provision.model import Settings

# Pinned: the page is tested against this release (its API, its login, its client).
# Source: https://pypi.org/project/gradio/5.50.0/ (Python >= 3.10, pure-Python wheel).
GRADIO = "5.50.0"
GRADIO_MIN_PYTHON = (3, 10)
APP_SOURCE = Path(__file__).with_name("app.py")


@dataclass(frozen=True)
class WebPaths:
    """The page's files and unit for one service."""

    unit: str  # "fastdeploy-webui"
    unit_path: str
    home: str  # /opt/fastdeploy-webui: venv and app
    venv: str
    app: str
    config: str  # no secrets: world-readable
    env_file: str  # PROVISION_WEB_API_KEY, PROVISION_WEB_PASSWORD: root only


def web_paths(settings: Settings) -> WebPaths:
    unit = f"{settings.service_name}-webui"
    home = f"/opt/{unit}"
    return WebPaths(unit=unit, unit_path=f"/etc/systemd/system/{unit}.service", home=home,
                    venv=f"{home}/venv", app=f"{home}/app.py",
                    config=f"/etc/{unit}/config.json", env_file=f"/etc/{unit}/env")


def fact_args(settings: Settings) -> dict:
    """What the facts script reads about the page (always: a page left behind is seen too)."""
    paths = web_paths(settings)
    return {"unit": paths.unit_path, "app": paths.app, "config": paths.config,
            "env": paths.env_file, "venv": paths.venv, "service": paths.unit}
