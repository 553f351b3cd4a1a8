#!/usr/bin/python3
"""Stand-in nvidia-smi for the lab's GPU-less test hosts.

Reads the host's GPU profile (JSON written by provision_lab.profiles.install_profile) from
$PROVISION_LAB_GPU_JSON, else $PROVISION_LAB_ETC/gpu.json, else /etc/provision-lab/gpu.json,
and prints what a real nvidia-smi with that driver prints. Formats are copied from real outputs
(../shared/reference/nvidia-smi-samples.md):

- the plain table, in the layout of the driver's branch: 79 columns up to R525 ("r470"),
  89 columns on R530-R549 ("r535"), 91 columns from R550 ("r550"), and from R580 the `+`
  rule under the header and the wider PID column ("r580");
- `-L`;
- `--query-gpu=F1,F2 --format=csv[,noheader][,nounits]` with `-i/--id` selection;
- errors with the documented exit codes: 2 for a bad argument or field, 6 for `-i` naming no
  GPU, 9 when the driver is not loaded (profile error "driver_not_loaded").

`compute_cap` on old drivers: real R470 nvidia-smi (470.82.01, 470.182.03, 470.256.02)
rejects the field with `Field "compute_cap" is not a valid field to query.` and exit 2, while
525.89.02 and later accept it; the first driver with it is said to be R510 (unconfirmed). The
stand-in rejects it below R510, so the tool must get the SM another way (or refuse) there.

Standalone on purpose: it is copied to /usr/bin/nvidia-smi inside hosts whose python3 may be
3.9-3.12, so it uses the standard library only and no syntax newer than 3.9.
"""

from __future__ import annotations

import json
import os
import sys
import time

EXIT_INVALID_ARGUMENT = 2
EXIT_NOT_FOUND = 6
EXIT_DRIVER_NOT_LOADED = 9

DRIVER_NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)
INVALID_COMBINATION = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."

_COMPUTE_CAP_SINCE = 510  # driver branch that first answers --query-gpu=compute_cap (see above)


class SmiError(Exception):
    """A failure nvidia-smi reports with a message on stdout and a given exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- profile


def load_profile() -> dict:
    path = os.environ.get("PROVISION_LAB_GPU_JSON") or os.path.join(
        os.environ.get("PROVISION_LAB_ETC", "/etc/provision-lab"), "gpu.json"
    )
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        # The driver's files are missing: what a host whose module never loaded shows.
        raise SmiError(DRIVER_NOT_LOADED, EXIT_DRIVER_NOT_LOADED) from None


def driver_branch(profile: dict) -> int:
    return int(str(profile.get("driver_version") or "0").split(".")[0])


# --------------------------------------------------------------------------- --query-gpu

# field -> (unit shown in the header and after values, or None; getter)
_FIELDS = {
    "timestamp": (None, lambda p, g: time.strftime("%Y/%m/%d %H:%M:%S.000")),
    "driver_version": (None, lambda p, g: p["driver_version"]),
    "count": (None, lambda p, g: str(len(p["gpus"]))),
    "name": (None, lambda p, g: g["name"]),
    "index": (None, lambda p, g: str(g["index"])),
    "uuid": (None, lambda p, g: g["uuid"]),
    "pci.bus_id": (None, lambda p, g: g["bus_id"]),
    "compute_cap": (None, lambda p, g: g["compute_cap"]),
    "memory.total": ("MiB", lambda p, g: str(g["memory_total_mib"])),
    "memory.used": ("MiB", lambda p, g: str(g["memory_used_mib"])),
    "memory.free": ("MiB", lambda p, g: str(g["memory_total_mib"] - g["memory_used_mib"])),
    "temperature.gpu": (None, lambda p, g: str(g["temp_c"])),
    "utilization.gpu": ("%", lambda p, g: "0"),
    "power.draw": ("W", lambda p, g: f"{g['power_w']:.2f}"),
    "power.limit": ("W", lambda p, g: f"{g['power_cap_w']:.2f}"),
    "pstate": (None, lambda p, g: g["perf"]),
    "persistence_mode": (None, lambda p, g: "Enabled" if g["persistence"] == "On" else "Disabled"),
    "compute_mode": (None, lambda p, g: "Default"),
    "mig.mode.current": (None, lambda p, g: g["mig_mode"] if g["mig_mode"] != "N/A" else "[N/A]"),
}
_ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id"}


def query_gpu(profile: dict, gpus: list, fields_arg: str, fmt: str) -> str:
    options = [o.strip() for o in fmt.split(",")]
    if not options or options[0] != "csv" or not set(options[1:]) <= {"noheader", "nounits"}:
        raise SmiError(f'"{fmt}" is not a valid format.', EXIT_INVALID_ARGUMENT)
    fields = [f.strip() for f in fields_arg.split(",") if f.strip()]
    for field in fields:
        key = _ALIASES.get(field, field)
        too_new = key == "compute_cap" and driver_branch(profile) < _COMPUTE_CAP_SINCE
        if key not in _FIELDS or too_new:
            raise SmiError(f'Field "{field}" is not a valid field to query.', EXIT_INVALID_ARGUMENT)
    lines = []
    if "noheader" not in options:
        # The header keeps its bracketed units even with nounits (nounits concerns values).
        header = []
        for field in fields:
            unit = _FIELDS[_ALIASES.get(field, field)][0]
            header.append(f"{field} [{unit}]" if unit else field)
        lines.append(", ".join(header))
    for gpu in gpus:
        values = []
        for field in fields:
            unit, getter = _FIELDS[_ALIASES.get(field, field)]
            value = getter(profile, gpu)
            values.append(value if not unit or "nounits" in options else f"{value} {unit}")
        lines.append(", ".join(values))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- -L


def list_gpus(gpus: list) -> str:
    return "".join(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})\n" for g in gpus)


# --------------------------------------------------------------------------- plain table


def _layout(branch: int) -> str:
    if branch < 530:
        return "r470"
    if branch < 550:
        return "r535"
    if branch < 580:
        return "r550"
    return "r580"


def _short_name(name: str, keep: int) -> str:
    """The table truncates long names to `keep` characters plus '...' (never in -L or CSV)."""
    return name if len(name) <= keep + 3 else name[:keep] + "..."


def _gpu_rows(layout: str, g: dict) -> list:
    used = f"{g['memory_used_mib']}MiB"
    total = f"{g['memory_total_mib']}MiB"
    power = f"{g['power_w']}W"
    cap = f"{g['power_cap_w']}W"
    head = f" {g['fan']:>3}   {g['temp_c']:>2}C    {g['perf']:>2}"
    if layout == "r470":
        cell1 = f" {g['index']:3d}  {_short_name(g['name'], 15):<18}  {g['persistence']:<5}"
        cell2 = f" {g['bus_id']} Off "
        row2 = f"{head}{power:>7} / {cap:>4} "
        mem = f"{used:>10} / {total:>8} "
    else:
        cell1 = f" {g['index']:3d}  {_short_name(g['name'], 24):<31}{g['persistence']:<4}"
        if layout == "r535":
            cell2 = f" {g['bus_id']} Off "
            row2 = f"{head}{power:>17} / {cap:>4} "
            mem = f"{used:>10} / {total:>8} "
        else:
            cell2 = f"   {g['bus_id']} Off "
            row2 = f"{head}{power:>16} / {cap:>5} "
            mem = f"{used:>11} / {total:>9} "
    widths = (len(cell1), len(cell2), 22)
    return [
        f"|{cell1}|{cell2}|{g['ecc']:>21} |",
        f"|{row2}|{mem}|{'0%':>8}{'Default':>13} |",
        f"|{' ' * widths[0]}|{' ' * widths[1]}|{g['mig_mode']:>21} |",
        _rule("+", "-", widths),
    ]


def _rule(edge: str, fill: str, widths: tuple) -> str:
    """A horizontal rule over cells of the given widths: +-----+----+ or |=====+====|."""
    return edge + "+".join(fill * w for w in widths) + ("+" if edge == "+" else "|")


# Column titles of the GPU box, per layout: (cell widths, three title rows).
_TITLES = {
    "r470": ((31, 22, 22), (
        (" GPU  Name        Persistence-M", " Bus-Id        Disp.A ", " Volatile Uncorr. ECC "),
        (" Fan  Temp  Perf  Pwr:Usage/Cap", "         Memory-Usage ", " GPU-Util  Compute M. "),
        ("", "", "               MIG M. "),
    )),
    "r535": ((41, 22, 22), (
        (" GPU  Name                 Persistence-M ", " Bus-Id        Disp.A ",
         " Volatile Uncorr. ECC "),
        (" Fan  Temp   Perf          Pwr:Usage/Cap ", "         Memory-Usage ",
         " GPU-Util  Compute M. "),
        ("", "", "               MIG M. "),
    )),
    "r550": ((41, 24, 22), (
        (" GPU  Name                 Persistence-M ", " Bus-Id          Disp.A ",
         " Volatile Uncorr. ECC "),
        (" Fan  Temp   Perf          Pwr:Usage/Cap ", "           Memory-Usage ",
         " GPU-Util  Compute M. "),
        ("", "", "               MIG M. "),
    )),
}
_TITLES["r580"] = _TITLES["r550"]


def _header(layout: str, driver: str, cuda: str) -> list:
    widths, titles = _TITLES[layout]
    width = sum(widths) + 4
    if layout == "r470":
        version = f" NVIDIA-SMI {driver:<13}Driver Version: {driver:<13}CUDA Version: {cuda:<9}"
    elif layout == "r535":
        version = f" NVIDIA-SMI {driver:<22} Driver Version: {driver:<13}CUDA Version: {cuda:<9}"
    else:
        version = f" NVIDIA-SMI {driver:<22} Driver Version: {driver:<15}CUDA Version: {cuda:<9}"
    under = _rule("+" if layout == "r580" else "|", "-", widths)
    if layout != "r580":
        under = under[:-1] + "+"
    # No zip(): its strict= flag does not exist on Python 3.9, which this script must run on.
    rows = ["|" + "|".join(row[i].ljust(w) for i, w in enumerate(widths)) + "|" for row in titles]
    return ["+" + "-" * (width - 2) + "+", f"|{version}|", under, *rows, _rule("|", "=", widths)]


def _processes(layout: str, width: int) -> list:
    inner = width - 2
    pid = "              PID" if layout == "r580" else "        PID"
    first = f"  GPU   GI   CI{pid}   Type   Process name"
    second = "        ID   ID"
    return [
        "+" + "-" * inner + "+",
        "|" + " Processes:".ljust(inner) + "|",
        "|" + first + " " * (inner - len(first) - len("GPU Memory ")) + "GPU Memory |",
        "|" + second + " " * (inner - len(second) - len("Usage      ")) + "Usage      |",
        "|" + "=" * inner + "|",
        "|" + "  No running processes found".ljust(inner) + "|",
        "+" + "-" * inner + "+",
    ]


def _timestamp() -> str:
    """`Tue Jul 14 08:12:38 2026` plus the seven trailing spaces real nvidia-smi prints."""
    now = time.localtime()
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[now.tm_wday]
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
             "Dec")[now.tm_mon - 1]
    return f"{day} {month} {now.tm_mday:2d} {time.strftime('%H:%M:%S', now)} {now.tm_year}       "


def table(profile: dict, gpus: list) -> str:
    layout = _layout(driver_branch(profile))
    lines = [_timestamp()]
    lines += _header(layout, profile["driver_version"], profile.get("cuda_version") or "N/A")
    for gpu in gpus:
        lines += _gpu_rows(layout, gpu)
    width = len(lines[1])
    lines.append("" if layout == "r580" else " " * min(width, 89))
    lines += _processes(layout, width)
    return "\n".join(lines) + "\n"


def version(profile: dict) -> str:
    driver = profile["driver_version"]
    if driver_branch(profile) < 550:
        return f"NVIDIA System Management Interface -- v{driver}\n"
    nvml = ".".join(driver.split(".")[:2])
    cuda = profile.get("cuda_version") or "N/A"
    return (
        f"NVIDIA-SMI version  : {driver}\nNVML version        : {nvml}\n"
        f"DRIVER version      : {driver}\nCUDA Version        : {cuda}\n"
    )


# --------------------------------------------------------------------------- arguments


def parse_args(argv: list) -> dict:
    """nvidia-smi's own syntax: `--opt=value` or `--opt value`, `-i N`, single flags."""
    opts = {"list": False, "query": None, "format": None, "id": None, "version": False}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if arg in ("-L", "--list-gpus"):
            opts["list"] = True
        elif arg == "--version":
            opts["version"] = True
        elif name in ("--query-gpu", "--format", "-i", "--id"):
            if not eq:
                if not args:
                    raise SmiError(INVALID_COMBINATION, EXIT_INVALID_ARGUMENT)
                value = args.pop(0)
            key = {"--query-gpu": "query", "--format": "format"}.get(name, "id")
            opts[key] = value
        else:
            raise SmiError(INVALID_COMBINATION, EXIT_INVALID_ARGUMENT)
    if opts["query"] is not None and opts["format"] is None:
        raise SmiError(INVALID_COMBINATION, EXIT_INVALID_ARGUMENT)
    return opts


def select(gpus: list, ids: str | None) -> list:
    if ids is None:
        return gpus
    chosen = []
    for token in ids.split(","):
        token = token.strip()
        match = [g for g in gpus if token in (str(g["index"]), g["uuid"], g["bus_id"])]
        if not match:
            raise SmiError("No devices were found", EXIT_NOT_FOUND)
        chosen += match
    return chosen


def run(argv: list) -> str:
    opts = parse_args(argv)
    profile = load_profile()
    if profile.get("error") == "driver_not_loaded":
        raise SmiError(DRIVER_NOT_LOADED, EXIT_DRIVER_NOT_LOADED)
    if opts["version"]:
        return version(profile)
    gpus = select(profile["gpus"], opts["id"])
    if opts["query"] is not None:
        return query_gpu(profile, gpus, opts["query"], opts["format"])
    if opts["list"]:
        return list_gpus(gpus)
    return table(profile, gpus)


def main(argv: list) -> int:
    try:
        sys.stdout.write(run(argv))
    except SmiError as e:
        # Real nvidia-smi prints its errors on stdout.
        sys.stdout.write(str(e) + "\n")
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
