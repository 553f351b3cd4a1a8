"""`provision play` end to end on this machine (`ansible_connection: local`): real files,
real commands, the JSON recap. Proves notify/handlers, register + when, --check and
--diff, the re-read of state after a wide change, and that a converged run is one exec.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from provision.cli import main

PLAYBOOK = """
- hosts: all
  vars: {base: "BASE"}
  tasks:
    - name: dir
      file: {path: "{{ base }}/d", state: directory, mode: "0750"}
    - name: made by a command
      command: touch {{ base }}/d/made
      args: {creates: "{{ base }}/d/made"}
    - name: its mode (state read again after the command)
      file: {path: "{{ base }}/d/made", mode: "0600"}
      tags: [after-command]
    - name: config
      copy: {content: "a=1\\n", dest: "{{ base }}/d/app.conf"}
      notify: note
      register: config
    - name: only when the config changed
      lineinfile: {path: "{{ base }}/d/log", line: "config changed", create: true}
      when: config.changed
    - name: never
      file: {path: "{{ base }}/never", state: directory}
      when: ansible_os_family == "Windows"
  handlers:
    - name: note
      shell: echo handled >> {{ base | quote }}/d/handled
"""


def run(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    here: {ansible_connection: local}\n")
    book = tmp_path / "p.yml"
    book.write_text(PLAYBOOK.replace("BASE", str(tmp_path)))
    got = CliRunner().invoke(main, ["play", str(book), "-i", str(inv), "--json", *args])
    return got.exit_code, json.loads(got.stdout), got.output  # output: stdout and stderr


def steps(report: dict) -> dict:
    return {s["name"]: (s["status"], s["reason"]) for s in report["hosts"][0]["steps"]}


def test_first_run_changes_then_converged_is_one_exec(tmp_path: Path) -> None:
    # in check mode the command does not run, so (as in Ansible) the task after it, which
    # needs its file, would fail: --skip-tags leaves it out
    code, report, out = run(tmp_path, "--check", "--diff", "--skip-tags", "after-command")
    assert code == 0, out
    assert not (tmp_path / "d").exists()  # check mode changed nothing
    assert "+a=1" in out  # the diff of the copy task

    code, report, out = run(tmp_path)
    assert code == 0, out
    got = steps(report)
    assert got["its mode (state read again after the command)"] == (
        "changed", "mode 0644 -> 0600")
    assert got["only when the config changed"][0] == "changed"
    assert got["never"] == ("skipped", 'when: ansible_os_family == "Windows" is false')
    assert got["note"][0] == "changed"
    assert (tmp_path / "d" / "handled").read_text() == "handled\n"
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == "0o750"

    code, report, out = run(tmp_path)
    assert code == 0, out
    got = steps(report)
    assert got["only when the config changed"][0] == "skipped"
    assert "note" not in got  # not notified: nothing changed
    assert report["recap"]["here"]["changed"] == 0
    assert report["hosts"][0]["exec_requests"] == 1
    assert (tmp_path / "d" / "handled").read_text() == "handled\n"


def test_a_failing_task_stops_the_host_with_its_file_line_and_output(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "made").mkdir()  # a directory where the play wants a file
    code, report, out = run(tmp_path)
    assert code == 1
    error = report["hosts"][0]["error"]
    assert "p.yml:10: task 'its mode (state read again after the command)'" in error
    assert "/d/made is a directory on the host, not a file" in error
    assert report["recap"]["here"]["failed"] == 1
