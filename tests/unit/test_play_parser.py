"""The playbook parser: Ansible's syntax accepted, every mistake refused with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.play.model import PlaybookError
from provision.play.parser import parse_playbook

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks" / "site" / "site.yml"


def _book(tmp_path: Path, text: str, name: str = "play.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_site_playbook_parses_into_ten_tasks_and_a_handler() -> None:
    (play,) = parse_playbook(SITE)
    assert play.hosts == "all" and play.become is True
    assert len(play.tasks) == 10
    assert [h.name for h in play.handlers] == ["restart site-app"]
    copy = play.tasks[2]
    assert (copy.module, copy.args["dest"], copy.notify) == (
        "copy", "{{ app_dir }}/app.conf", ("restart site-app",))
    assert play.tasks[9].when == ('ansible_os_family == "Debian"',)


def test_keywords_free_form_fqcn_and_key_value_forms(tmp_path: Path) -> None:
    book = _book(tmp_path, """
- hosts: gpu
  pre_tasks:
    - ansible.builtin.command: touch /tmp/a
      args: {creates: /tmp/a}
      tags: [setup, always]
  tasks:
    - name: kv
      file: path=/tmp/d state=directory mode=0755
      when: [gpu_count > 0, "x is defined"]
    - systemd: {name: cron, state: started}
  post_tasks:
    - ansible.posix.sysctl: {name: vm.swappiness, value: 10}
""")
    (play,) = parse_playbook(book)
    pre = play.pre_tasks[0]
    assert pre.module == "command" and pre.args == {"cmd": "touch /tmp/a", "creates": "/tmp/a"}
    assert pre.tags == {"setup", "always"}
    kv = play.tasks[0]
    assert kv.args == {"path": "/tmp/d", "state": "directory", "mode": "0755"}
    assert kv.when == ("gpu_count > 0", "x is defined")
    assert play.tasks[1].module == "systemd_service"
    assert play.post_tasks[0].module == "sysctl"


@pytest.mark.parametrize(("task", "line", "message"), [
    ("- name: t\n      apt_repository: {repo: x}", 3, "unknown module or keyword 'apt_repository'"),
    ("- name: t\n      copy: {content: x, dets: /tmp/x}", 3,
     "unsupported argument 'dets' for copy"),
    ("- name: t\n      copy: {content: x}", 3, "copy needs dest"),
    ("- name: t\n      copy: {content: x, src: y, dest: /z}", 3, "exactly one of src, content"),
    ("- name: t\n      file: {path: /x, state: gone}", 3, "'gone' is not one of"),
    ("- name: t\n      file: {path: /x, mode: u+rwx}", 3, "symbolic modes"),
    ("- name: t\n      loop: [1]\n      file: {path: /x}", 3, "unknown module or keyword 'loop'"),
    ("- name: t\n      file: {path: /x}\n      copy: {content: x, dest: /y}", 3,
     "more than one module"),
    ("- name: t\n      unarchive: {src: a.tgz, dest: /opt}", 3, "unarchive needs creates"),
    ("- name: t\n      file: {path: /x}\n      notify: nobody", 3, "notifies 'nobody'"),
])
def test_mistakes_name_file_line_and_what_is_supported(tmp_path: Path, task: str, line: int,
                                                        message: str) -> None:
    book = _book(tmp_path, f"- hosts: all\n  tasks:\n    {task}\n")
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(book)
    text = str(caught.value)
    assert text.startswith(f"{book}:{line}:"), text
    assert message in text
    if "unknown module" in message:
        assert "Supported modules: apt, assert, blockinfile, command, copy, file, get_url" in text


def test_play_level_errors(tmp_path: Path) -> None:
    for body, message in [("- tasks: []", "needs hosts"),
                          ("- hosts: all\n  strategy: free", "unsupported play keyword"),
                          ("- hosts: all\n  serial: 0", "serial 0"),
                          ("- hosts: all\n  max_fail_percentage: 150", "0 to 100"),
                          ("- import_playbook: other.yml", "import_playbook"),
                          ("- hosts: all\n  roles: [nosuch]", "role 'nosuch' not found"),
                          ("{}", "a YAML list of plays"),
                          ("- hosts: all\n  tasks: [", "invalid YAML")]:
        with pytest.raises(PlaybookError, match=message):
            parse_playbook(_book(tmp_path, body + "\n"))


def test_roles_from_roles_dir_with_defaults_handlers_and_files(tmp_path: Path) -> None:
    role = tmp_path / "roles" / "exporter"
    for sub in ("tasks", "handlers", "defaults", "files"):
        (role / sub).mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text(
        "- name: unit\n  copy: {src: x.service, dest: /etc/x.service}\n  notify: reload\n")
    (role / "handlers" / "main.yml").write_text(
        "- name: reload\n  systemd_service: {name: x, state: restarted}\n")
    (role / "defaults" / "main.yml").write_text("port: 9400\n")
    book = _book(tmp_path, "- hosts: all\n  roles:\n    - {role: exporter, tags: [gpu]}\n")
    (play,) = parse_playbook(book)
    (task,) = play.roles_tasks
    assert task.role == "exporter" and task.defaults == {"port": 9400}
    assert task.tags == {"gpu"} and task.search[0] == role / "files"
    assert [h.name for h in play.handlers] == ["reload"]


def test_builtin_roles_are_recognised_and_not_mixed_with_file_roles(tmp_path: Path) -> None:
    book = _book(tmp_path, "- hosts: all\n  roles: [fastdeploy_release, {role: fastdeploy_service,"
                 " when: serve | default(true)}]\n")
    (play,) = parse_playbook(book)
    assert [r.name for r in play.builtin] == ["fastdeploy_release", "fastdeploy_service"]
    assert play.builtin[1].when == ("serve | default(true)",)
