"""provision.report: live lines, recap and JSON from the same results; secrets masked."""

from __future__ import annotations

import io
import json

from provision.model import HostResult, Problem, StepResult
from provision.report import MASK, Reporter, counts, recap_line, to_json


def _converged() -> HostResult:
    return HostResult("gpu1", "changed", steps=[
        StepResult("facts", "ok", seconds=0.4),
        StepResult("venv", "changed", "no venv yet", 3.2),
        StepResult("release", "changed", "fastdeploy 2.5.0 missing", 12.3),
        StepResult("verify health", "ok", seconds=2.0),
    ], exec_requests=4)


def _refused() -> HostResult:
    problem = Problem("gpu2", "gpu.compute_cap", "7.5", "Tesla T4 (SM 7.5) is not supported",
                      "use an SM 8.0+ GPU")
    return HostResult("gpu2", "failed", steps=[StepResult("facts", "ok")], problems=[problem],
                      error="pre-flight refused gpu2", failed_at="preflight")


def test_counts_like_ansible() -> None:
    assert counts(_converged()) == {"ok": 4, "changed": 2, "failed": 0, "unreachable": 0,
                                    "skipped": 0}
    assert counts(_refused())["failed"] == 1  # refused before any step: still one failure
    assert counts(HostResult("x", "unreachable"))["unreachable"] == 1
    assert recap_line(_converged()) == "gpu1 : ok=4 changed=2 failed=0 unreachable=0 skipped=0"


def test_live_lines_and_recap() -> None:
    out = io.StringIO()
    reporter = Reporter(out)
    reporter.line("gpu1", "release", "changed", 12.34)
    reporter.recap([_converged(), _refused()])
    text = out.getvalue()
    assert "gpu1 | release | changed | 12.3s" in text
    assert "gpu1 : ok=4 changed=2 failed=0" in text and "gpu2 : ok=1 changed=0 failed=1" in text
    assert "ERROR: gpu2: Tesla T4 (SM 7.5) is not supported (gpu.compute_cap=7.5). Fix: use an" \
        in text


def test_remote_output_only_with_verbose_unless_failure() -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    Reporter(quiet).output("gpu1", "pip said things")
    Reporter(loud, verbose=True).output("gpu1", "pip said things")
    assert quiet.getvalue() == "" and "gpu1 >   pip said things" in loud.getvalue()
    Reporter(quiet).output("gpu1", "Traceback", always=True)
    assert "Traceback" in quiet.getvalue()


def test_json_is_the_same_data_and_masks_secrets() -> None:
    leaky = _converged()
    leaky.steps[2].output = "env FD_API_KEY=sk-secret-123 written"
    data = json.loads(to_json([leaky, _refused()], 4, secrets=["sk-secret-123"]))
    assert data["exit_code"] == 4 and data["ok"] is False
    assert data["recap"]["gpu1"] == counts(_converged())
    assert data["hosts"][1]["problems"][0]["key"] == "gpu.compute_cap"
    assert data["hosts"][1]["failed_at"] == "preflight"
    assert "sk-secret-123" not in json.dumps(data)
    assert MASK in data["hosts"][0]["steps"][2]["output"]


def test_live_lines_mask_secrets() -> None:
    out = io.StringIO()
    reporter = Reporter(out)
    reporter.add_secret("tok-42")
    reporter.line("gpu1", "env", "failed", 1.0, "printf tok-42 > /etc/fastdeploy/env")
    assert "tok-42" not in out.getvalue() and MASK in out.getvalue()


def test_short_secret_masked_as_a_whole_value_only() -> None:
    """Finding G: substring masking of a short key spells it out in every word it is in."""
    from provision.report import redact

    text = "FD_API_KEY='an' sent: Bearer an\nchange the plan, an"
    assert redact(text, ["an"]) == ("FD_API_KEY='********' sent: Bearer ********\n"
                                    "change the plan, ********")
