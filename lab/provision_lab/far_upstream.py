"""The knobs that make the lab's upstream look far and large: wheel padding, hub weights, rate.

Defaults are today's lab (small wheels, 1 MB of hub weights, unlimited rate), so the test
suite is not slowed by them. The setting is kept in the lab's state dir (paths.UPSTREAM_FILE)
so a later `Lab()` in another process (`provision lab ...`) serves the same upstream; it
survives `lab down` and changes only through `Lab.set_upstream`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from provision_lab import paths
from provision_lab.system import LabError


@dataclass(frozen=True)
class UpstreamSetting:
    pad_mb: float = 0.0  # paddlepaddle-gpu wheels padded by this many MB (fastdeploy-gpu: /4)
    weights_mb: float = 1.0  # MB of weight shards per model on the hub
    rate_mbps: float = 0.0  # total MB/s the index server sends, all ports together; 0: unlimited

    def as_dict(self) -> dict:
        return asdict(self)


def checked(pad_mb: float, weights_mb: float, rate_mbps: float) -> UpstreamSetting:
    """The setting, or a LabError naming the bad value and what would do (before any change)."""
    values = {"pad_mb": pad_mb, "weights_mb": weights_mb, "rate_mbps": rate_mbps}
    for name, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise LabError(f"upstream {name}={value!r}: use a number >= 0 (MB, MB/s; "
                           f"0 {'means unlimited' if name == 'rate_mbps' else 'is the default'})")
        values[name] = number
    return UpstreamSetting(**values)


def load() -> UpstreamSetting:
    """The lab's current setting (the defaults when none was set, or the file is unreadable)."""
    try:
        data = json.loads(paths.UPSTREAM_FILE.read_text())
        return checked(data["pad_mb"], data["weights_mb"], data["rate_mbps"])
    except (OSError, ValueError, KeyError, TypeError, LabError):
        return UpstreamSetting()


def save(setting: UpstreamSetting) -> None:
    paths.STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = paths.UPSTREAM_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(setting.as_dict(), sort_keys=True) + "\n")
    tmp.replace(paths.UPSTREAM_FILE)
