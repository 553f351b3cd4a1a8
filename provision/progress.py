"""Progress on long waits: parse what a host reports, turn growth into rate and ETA, say it.

Everything a host prints is untrusted (a compromised host, a hostile log line): numbers
are read only through strict, bounded regexes, text is cut to printable ASCII and a fixed
length (no terminal escapes reach the user's screen), and nothing is ever executed. The
functions here are pure; the clocks and the remote calls belong to verify and apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFIX = "provision-progress: "  # the build's progress lines (steps/release.py prints them)
SIZE_MARK = "provision-size:"  # the health poll's download-size section
LOAD_MARK = "provision-load:"  # the health poll's newest loading line
_DU = re.compile(r"^([0-9]{1,18})\t")  # `du -sb` output: bytes, a tab, the path
_LOADING = re.compile(r"Loading (Weights|Layers): {0,8}([0-9]{1,3})%")
_BUILD = re.compile(r"^venv_kb=([0-9]{1,15}) cache_kb=([0-9]{1,15})(?: pip=(.*))?$")
_USERINFO = re.compile(r"//[^/@\s]{1,256}@")  # credentials in a URL (an index with a password)
TEXT_MAX = 120


def clean(text: str, limit: int = TEXT_MAX) -> str:
    """Host text made safe to show: URL credentials dropped, only printable ASCII, bounded.

    >>> clean("Downloading https://u:pw@idx/x.whl \\x1b[2J(1 GB)")
    'Downloading https://idx/x.whl ?[2J(1 GB)'
    """
    text = _USERINFO.sub("//", text)
    text = "".join(c if " " <= c <= "~" else "?" for c in text).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def human_bytes(count: float) -> str:
    """Decimal units, as download sizes are quoted: 12.4 GB, 48 MB.

    >>> human_bytes(12_400_000_000), human_bytes(48_000_000), human_bytes(512)
    ('12.4 GB', '48 MB', '512 B')
    """
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            value = count / size
            return f"{value:.1f} {unit}" if unit in ("TB", "GB") else f"{value:.0f} {unit}"
    return f"{count:.0f} B"


def human_duration(seconds: float) -> str:
    """An ETA as people read one: 45 s, 17 min, 2 h 5 min.

    >>> human_duration(44.6), human_duration(1020), human_duration(7500)
    ('45 s', '17 min', '2 h 5 min')
    """
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min"


@dataclass
class Meter:
    """Bytes over time: the rate between the last two readings, and the ETA to a total.

    A reading that goes down (a cache cleaned, a partial file replaced) restarts the rate
    rather than reporting a negative one.
    """

    last: tuple[float, int] | None = None
    rate: float | None = None  # bytes per second between the last two readings

    def feed(self, when: float, count: int) -> None:
        if self.last is not None and when > self.last[0] and count >= self.last[1]:
            self.rate = (count - self.last[1]) / (when - self.last[0])
        else:
            self.rate = None
        self.last = (when, count)

    def eta(self, total: float | None) -> float | None:
        """Seconds until `total` at the current rate; None when it cannot be said."""
        if self.last is None or not total or not self.rate or self.last[1] >= total:
            return None
        return (total - self.last[1]) / self.rate


# ------------------------------------------------------------------ the health poll


@dataclass(frozen=True)
class HostProgress:
    """What the health poll saw besides the unit: the download's size and the loading line."""

    download_bytes: int | None = None  # None: nothing measured (model_dir, or nothing there)
    loading: tuple[str, int] | None = None  # ("weights", 75): the newest fresh loading line


def parse_host_progress(stdout: str) -> HostProgress:
    """The poll's size and loading sections (see verify.poll_script), strictly.

    >>> parse_host_progress("provision-size:\\n1000\\t/a\\n24\\t/b\\nprovision-load:\\n"
    ...                     "x Loading Weights: 75%|##| 75/100\\n")
    HostProgress(download_bytes=1024, loading=('weights', 75))
    """
    section, sizes, loading = "", [], None
    for line in stdout.splitlines():
        if line in (SIZE_MARK, LOAD_MARK):
            section = line
        elif section == SIZE_MARK and (found := _DU.match(line)):
            sizes.append(int(found.group(1)))
        elif section == LOAD_MARK and (found := _LOADING.search(line)):
            percent = int(found.group(2))
            if percent <= 100:
                loading = (found.group(1).lower(), percent)
    return HostProgress(sum(sizes) if sizes else None, loading)


def download_text(meter: Meter, total_gb: float | None) -> str:
    """`downloading weights 12.4 GB of ~60 GB, 48 MB/s, ETA 17 min`, as much as is known."""
    assert meter.last is not None
    done = meter.last[1]
    total = total_gb * 1e9 if total_gb else None
    parts = [f"downloading weights {human_bytes(done)}"
             + (f" of ~{human_bytes(total)}" if total else "")]
    if meter.rate is not None:
        parts.append(f"{human_bytes(meter.rate)}/s")
    eta = meter.eta(total)
    if eta is not None:
        parts.append(f"ETA {human_duration(eta)}")
    return ", ".join(parts)


def health_text(seen: HostProgress | None, meter: Meter, total_gb: float | None) -> str | None:
    """What the server is doing, from the latest poll: loading beats downloading (the
    weights are all there once loading starts); None when the poll showed neither."""
    if seen is None:
        return None
    if seen.loading is not None:
        return f"loading {seen.loading[0]} {seen.loading[1]}%"
    if seen.download_bytes is not None and meter.last is not None:
        return download_text(meter, total_gb)
    return None


# ------------------------------------------------------------------ the release build


@dataclass
class BuildProgress:
    """The release build's progress lines, turned into `venv 1.2 GB, 30 MB/s; <pip's line>`."""

    venv: Meter = field(default_factory=Meter)

    def text(self, line: str, when: float) -> str | None:
        """The line to show for one `provision-progress:` line; None when it is malformed."""
        found = _BUILD.match(line.removeprefix(PREFIX).rstrip("\r\n"))
        if found is None:
            return None
        venv, cache = int(found.group(1)) * 1024, int(found.group(2)) * 1024
        self.venv.feed(when, venv + cache)
        rate = f", {human_bytes(self.venv.rate)}/s" if self.venv.rate is not None else ""
        pip = clean(found.group(3) or "")
        return (f"building: venv {human_bytes(venv)}, pip cache {human_bytes(cache)}{rate}"
                + (f"; {pip}" if pip else ""))
