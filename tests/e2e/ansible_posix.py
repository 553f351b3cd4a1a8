"""ansible.posix (sysctl, mount) for the side-by-side tests.

ansible-core ships only ansible.builtin; sysctl and mount live in the ansible.posix
collection, which PyPI publishes inside the `ansible` package's wheel. It is fetched
once with pip (no dependencies: the installed ansible-core stays as it is) and only that
collection is extracted, under .venv, for ANSIBLE_COLLECTIONS_PATH.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# ansible 12.x is the community package built for ansible-core 2.19 (setup.cfg's test extra)
ANSIBLE_PACKAGE = "ansible>=12,<13"
PREFIX = "ansible_collections/ansible/posix/"


def posix_collections_path() -> Path:
    root = Path(sys.prefix) / "ansible-collections"
    if (root / PREFIX / "MANIFEST.json").is_file():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        ANSIBLE_PACKAGE, "-d", tmp], check=True, timeout=600,
                       capture_output=True)
        (wheel,) = Path(tmp).glob("ansible-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            members = [n for n in archive.namelist() if n.startswith(PREFIX)]
            archive.extractall(root, members)
    return root
