"""The README's "What happens when..." table, rendered from the fault suite's results.

`python -m tests.faults.table` prints it; the fault suite (tests/faults/test_faults.py)
writes tests/faults/results.json as it runs, so the table shows what was observed.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")
FAULTS = {
    "sigint": "Ctrl-C (SIGINT)",
    "sigterm": "SIGTERM",
    "kill": "the tool is killed (SIGKILL)",
    "link": "the host's link is cut (90 s)",
}
PHASES = {"build": "building the release", "switch": "switching the link",
          "restart": "restarting", "health": "waiting for health"}


def _exit(fault: str, outcome: dict) -> str:
    if fault == "kill":
        return "killed"
    code = outcome["exit"]
    meaning = {1: "failed", 3: "unreachable, says the host was changed"}.get(code, "")
    return f"{code} ({meaning})" if meaning else str(code)


def _how(outcome: dict) -> str:
    if outcome["rolled_back_at_once"]:
        return "rolled back at once, verified serving"
    if outcome["rolled_back_by_next_run"]:
        return "the next run rolled back first, then verified"
    return "nothing that served had been replaced; the next run converges"


def render(results: dict) -> str:
    rows = ["| When ... | during ... | exit | what serves afterwards | how |",
            "|---|---|---|---|---|"]
    for fault, fault_text in FAULTS.items():
        for phase, phase_text in PHASES.items():
            outcome = results.get(f"{fault}/{phase}")
            if outcome is None:
                continue
            rows.append(f"| {fault_text} | {phase_text} | {_exit(fault, outcome)} | "
                        f"the previous release, unit and env file | {_how(outcome)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(json.loads(RESULTS.read_text())), end="")
