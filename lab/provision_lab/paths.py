"""Where the lab keeps things, and the addresses it uses: one place, so cleanup finds all.

Everything lives outside the checkout: the root filesystem cache survives between runs
(a second `lab up` takes seconds), the state dir holds what one lab run started.
"""

from __future__ import annotations

import os
from pathlib import Path

# Several labs can run side by side on one machine (parallel work trees, CI next to a demo):
# PROVISION_LAB_ID=N (1-9) gives a lab its own state, cache, bridge, names and /24. Unset is
# the default lab, with the names below.
LAB_ID = os.environ.get("PROVISION_LAB_ID", "")
if LAB_ID not in ("", *"123456789"):
    raise SystemExit(f"PROVISION_LAB_ID={LAB_ID!r}: use one digit 1-9, or leave it unset")

CACHE_DIR = Path(os.environ.get("PROVISION_LAB_CACHE", f"/var/cache/provision-lab{LAB_ID}"))
# What no lab changes once built, shared by every lab on this machine (each build under a
# lock, so parallel test workers build it once): the root filesystems and the PyPI wheels.
SHARED_CACHE = Path(os.environ.get("PROVISION_LAB_SHARED_CACHE", "/var/cache/provision-lab-shared"))
STATE_DIR = Path(os.environ.get("PROVISION_LAB_STATE", f"/var/lib/provision-lab{LAB_ID}"))
INDEX_ROOT = CACHE_DIR / "index"  # the stand-in Paddle index (and /apt/) served to hosts
GENERAL_ROOT = CACHE_DIR / "general-index"  # the general index's stand-in and decoy wheels
GENERAL_WHEELS = SHARED_CACHE / "general-wheels"  # extra wheels (mirrored from PyPI), served too
HOSTS_DIR = STATE_DIR / "hosts"
STATE_FILE = STATE_DIR / "state.json"
KEY_FILE = STATE_DIR / "id_ed25519"
KNOWN_HOSTS = STATE_DIR / "known_hosts"
INVENTORY = STATE_DIR / "inventory.yml"
INDEX_PID = STATE_DIR / "index-server.pid"
TLS_DIR = STATE_DIR / "tls"  # the lab's CA and the certificate of its pypi.org stand-in
# What the index server sent (one JSON line per request; append-only, kept across `down`)
# and the upstream knobs (padding, weights, rate; kept across `down`, set_upstream changes).
ACCESS_LOG = STATE_DIR / "index-access.jsonl"
UPSTREAM_FILE = STATE_DIR / "upstream.json"

# Hosts sit on one bridge, in a /24 that only the lab uses: 10.213.7.1 is this machine's
# side (where the stand-in index listens), hosts are .11, .12, ... No default route and no
# NAT, so a host can reach nothing but the lab.
SUBNET = os.environ.get("PROVISION_LAB_SUBNET", f"10.213.{7 + int(LAB_ID or 0)}")
BRIDGE = f"provlab{LAB_ID or 0}"
GATEWAY = f"{SUBNET}.1"
INDEX_PORT = 8700
INDEX_URL = f"http://{GATEWAY}:{INDEX_PORT}"
PADDLE_INDEX_PATH = "packages/stable"  # as upstream: https://www.paddlepaddle.org.cn/packages/stable/
PADDLE_INDEX_URL = f"{INDEX_URL}/{PADDLE_INDEX_PATH}/"
GENERAL_INDEX_PORT = 8701  # the "site mirror" (a PyPI stand-in): http://GATEWAY:8701/simple/
GENERAL_INDEX_URL = f"http://{GATEWAY}:{GENERAL_INDEX_PORT}/simple/"
# The same general index over HTTPS as the public one, for hosts without a site mirror: pip's
# default https://pypi.org/simple/ (files on https://files.pythonhosted.org/), those names
# mapped to GATEWAY in such a host's /etc/hosts and the lab's CA in its trust store.
PYPI_PORT = 443
PYPI_INDEX_URL = "https://pypi.org/simple/"
PYPI_FILES_URL = "https://files.pythonhosted.org/files/"
# The model hub (a stand-in for AIStudio / Hugging Face), served by the same index server;
# hosts find it in HOST_HUB_FILE (the stand-in server reads it, never the tool).
HUB_PORT = 8702
HUB_URL = f"http://{GATEWAY}:{HUB_PORT}/"
HOST_HUB_FILE = "etc/provision-lab/hub-url"
CA_NAME = f"provision lab{LAB_ID} CA"
HOST_CA_FILE = "usr/local/share/ca-certificates/provision-lab-ca.crt"  # on a host
NETNS_PREFIX = f"provlab{LAB_ID}-"
VETH_PREFIX = f"plv{LAB_ID}-"
FIRST_HOST_OCTET = 10
MAX_HOSTS = 200


def host_address(number: int) -> str:
    return f"{SUBNET}.{FIRST_HOST_OCTET + number}"
