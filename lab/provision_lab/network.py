"""The lab's network: one bridge on this machine, one namespace + veth per host.

Only names with the lab's prefixes are ever created or deleted, so cleanup after a lab
that was killed midway can find its leftovers without touching anything else.
"""

from __future__ import annotations

from provision_lab import paths
from provision_lab.system import run


def _links() -> list[str]:
    out = run("ip", "-o", "link", "show", check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def namespaces() -> list[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[0].startswith(paths.NETNS_PREFIX)]


def ensure_bridge() -> None:
    if paths.BRIDGE not in _links():
        run("ip", "link", "add", paths.BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{paths.GATEWAY}/24", "dev", paths.BRIDGE)
    run("ip", "link", "set", paths.BRIDGE, "up")


def netns_name(host: str) -> str:
    return f"{paths.NETNS_PREFIX}{host}"


def add_host_network(host: str, address: str) -> str:
    """A namespace whose eth0 is on the lab bridge; on-link route only (no way out)."""
    ns, veth = netns_name(host), f"{paths.VETH_PREFIX}{host}"[:15]
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run("ip", "link", "set", veth, "master", paths.BRIDGE)
    run("ip", "link", "set", veth, "up")
    run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
    run("ip", "-n", ns, "link", "set", "eth0", "up")
    run("ip", "-n", ns, "link", "set", "lo", "up")
    return ns


def remove_host_network(host: str) -> None:
    veth = f"{paths.VETH_PREFIX}{host}"[:15]
    if veth in _links():
        run("ip", "link", "del", veth, check=False)
    if netns_name(host) in namespaces():
        run("ip", "netns", "del", netns_name(host), check=False)


def remove_all() -> None:
    """Every namespace, veth and the bridge the lab made, including a dead lab's."""
    for ns in namespaces():
        run("ip", "netns", "del", ns, check=False)
    for link in _links():
        if link.startswith(paths.VETH_PREFIX) or link == paths.BRIDGE:
            run("ip", "link", "del", link, check=False)
