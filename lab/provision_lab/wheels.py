"""Small stand-in wheels, written here as zip files (no setuptools, no network).

Byte for byte reproducible (fixed timestamps and order), so a rebuild from the same sources
gives the same sha256 and pip's hash checks hold across rebuilds.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from provision_lab.upstream import wheel_project

# 1980-01-01: the earliest time a zip can hold; fixed so every build is byte-identical.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Wheel:
    """One wheel to write: its name parts, its files and what it requires."""

    project: str
    version: str
    tag: str
    files: dict[str, bytes] = field(hash=False)
    requires: tuple[str, ...] = ()
    summary: str = "provision lab stand-in"
    stored: tuple[str, ...] = ()  # files kept uncompressed in the zip (incompressible padding)

    @property
    def filename(self) -> str:
        return f"{wheel_project(self.project)}-{self.version}-{self.tag}.whl"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def write_wheel(wheel: Wheel, dest_dir: Path) -> Path:
    """Write `wheel` into dest_dir (PEP 427: METADATA, WHEEL, RECORD) and return its path."""
    dist_info = f"{wheel_project(wheel.project)}-{wheel.version}.dist-info"
    files = dict(wheel.files)
    metadata = (f"Metadata-Version: 2.1\nName: {wheel.project}\nVersion: {wheel.version}\n"
                f"Summary: {wheel.summary}\n")
    metadata += "".join(f"Requires-Dist: {r}\n" for r in wheel.requires)
    files[f"{dist_info}/METADATA"] = metadata.encode()
    files[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: provision_lab.wheels\nRoot-Is-Purelib: true\n"
        f"Tag: {wheel.tag}\n").encode()
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / wheel.filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = (zipfile.ZIP_STORED if name in wheel.stored
                                   else zipfile.ZIP_DEFLATED)
            zf.writestr(entry, data)
    return path
