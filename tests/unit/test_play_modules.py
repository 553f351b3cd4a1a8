"""Each module's decision, as data: arguments + gathered state in, an Action (or None) out.

A case with None is the converged host: nothing runs. Scripts are checked for what
they do (and that values are quoted), the text edits against Ansible's rules.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provision.play.modules import MODULES
from provision.play.modules.base import ArgError, Context, finish
from provision.play.modules.blockinfile import edit as block_edit
from provision.play.modules.lineinfile import edit as line_edit
from provision.play.modules.mount import edit as fstab_edit
from provision.play.modules.sysctl import edit as sysctl_edit


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def plan(module: str, args: dict, state: dict, **ctx):
    spec = MODULES[module]
    return spec.plan(finish(spec, args), state, Context("h", **ctx))


FILE = {"state": "file", "mode": "0644", "owner": "root", "group": "root"}


def test_copy_content_converged_changed_and_attributes_only() -> None:
    st = {"file:/etc/x": {**FILE, "sha256": sha("hi\n")}}
    assert plan("copy", {"content": "hi\n", "dest": "/etc/x"}, st) is None
    attrs = plan("copy", {"content": "hi\n", "dest": "/etc/x", "mode": "0600"}, st)
    assert attrs.reason == "mode 0644 -> 0600" and attrs.stdin is None
    assert "chmod 0600 /etc/x" in attrs.script
    new = plan("copy", {"content": "bye\n", "dest": "/etc/x", "owner": "a b"}, st)
    assert new.reason.startswith("/etc/x content differs") and new.stdin == b"bye\n"
    assert "chown 'a b' /etc/x.provision-tmp" in new.script  # quoted, never spliced
    assert new.script.rstrip().endswith("mv -f /etc/x.provision-tmp /etc/x")
    keep = plan("copy", {"content": "bye\n", "dest": "/etc/x", "force": False}, st)
    assert keep is None


def test_copy_diff_and_refusals(tmp_path: Path) -> None:
    st = {"file:/e": {**FILE, "sha256": sha("a\n"), "content": "a\n"}}
    got = plan("copy", {"content": "b\n", "dest": "/e"}, st, diff=True)
    assert "-a\n+b\n" in got.diff
    with pytest.raises(ArgError, match="is a directory on the host"):
        plan("copy", {"content": "b", "dest": "/e"}, {"file:/e": {"state": "directory"}})
    with pytest.raises(ArgError, match="is a directory; copy supports single files"):
        plan("copy", {"src": str(tmp_path), "dest": "/e"}, st)


def test_template_renders_like_ansible_trim_blocks_and_trailing_newline(tmp_path: Path) -> None:
    from provision.play.jinja import render_file
    src = tmp_path / "t.j2"
    src.write_text("{% if on %}\nyes\n{% endif %}\nend\n")
    ctx = {"render": lambda text, **_: render_file(text, {"on": True}), "find_src": Path}
    got = plan("template", {"src": str(src), "dest": "/t"}, {"file:/t": {"state": "absent"}},
               **ctx)
    assert got.stdin == b"yes\nend\n"
    assert plan("template", {"src": str(src), "dest": "/t"},
                {"file:/t": {**FILE, "sha256": sha("yes\nend\n")}}, **ctx) is None


@pytest.mark.parametrize(("args", "have", "reason"), [
    ({"path": "/d", "state": "directory"}, {"state": "directory", "mode": "0755"}, None),
    ({"path": "/d", "state": "directory", "mode": "0750"}, {"state": "directory", "mode": "0755"},
     "mode 0755 -> 0750"),
    ({"path": "/d", "state": "directory"}, {"state": "absent"}, "/d is missing (directory)"),
    ({"path": "/d", "state": "absent"}, {"state": "absent"}, None),
    ({"path": "/d", "state": "absent"}, {"state": "file"}, "/d exists (file); state=absent"),
    ({"path": "/l", "state": "link", "src": "/t"}, {"state": "link", "target": "/t"}, None),
    ({"path": "/l", "state": "link", "src": "/u"}, {"state": "link", "target": "/t"},
     "/l -> /t, want -> /u"),
    ({"path": "/f", "state": "touch"}, {"state": "file"},
     "touch /f (always changes, as in Ansible)"),
])
def test_file_states(args: dict, have: dict, reason: str | None) -> None:
    got = plan("file", args, {f"file:{args['path']}": have})
    assert (got.reason if got else None) == reason


def test_file_refuses_what_ansible_refuses() -> None:
    with pytest.raises(ArgError, match="does not exist"):
        plan("file", {"path": "/x"}, {"file:/x": {"state": "absent"}})
    with pytest.raises(ArgError, match="refusing to replace it with a link"):
        plan("file", {"path": "/x", "state": "link", "src": "/y"}, {"file:/x": {"state": "file"}})


@pytest.mark.parametrize(("text", "args", "expected"), [
    ("a=1\nb=2\n", {"regexp": "^a=", "line": "a=9"}, "a=9\nb=2\n"),
    ("a=1\nb=2\n", {"regexp": "^c=", "line": "c=3"}, "a=1\nb=2\nc=3\n"),
    ("a=1\nb=2", {"line": "c=3"}, "a=1\nb=2\nc=3\n"),
    ("a=1\nb=2\n", {"line": "b=2"}, "a=1\nb=2\n"),
    ("a=1\nb=2\n", {"regexp": "^x", "line": "a=1"}, "a=1\nb=2\n"),
    ("a=1\nb=2\n", {"line": "z", "insertafter": "^a="}, "a=1\nz\nb=2\n"),
    ("a=1\nb=2\n", {"line": "z", "insertbefore": "BOF"}, "z\na=1\nb=2\n"),
    ("a=1\nb=2\n", {"line": "z", "insertbefore": "^b"}, "a=1\nz\nb=2\n"),
    ("a=1\nb=2\na=3\n", {"regexp": "^a=", "state": "absent"}, "b=2\n"),
    (None, {"line": "x"}, "x\n"),
])
def test_lineinfile_edits_as_ansible(text, args, expected) -> None:
    assert line_edit(text, {"state": "present", **args}) == expected


def test_lineinfile_plan_needs_the_file_or_create() -> None:
    with pytest.raises(ArgError, match="create: true makes it"):
        plan("lineinfile", {"path": "/f", "line": "x"}, {"file:/f": {"state": "absent"}})
    got = plan("lineinfile", {"path": "/f", "line": "x", "create": True},
               {"file:/f": {"state": "absent"}})
    assert got.stdin == b"x\n"
    assert plan("lineinfile", {"path": "/f", "line": "x"},
                {"file:/f": {**FILE, "content": "x\n"}}) is None


def test_blockinfile_inserts_replaces_and_removes() -> None:
    args = {"state": "present", "block": "one\ntwo", "marker": "# {mark} ANSIBLE MANAGED BLOCK",
            "marker_begin": "BEGIN", "marker_end": "END"}
    first = block_edit("top\n", args)
    assert first == "top\n# BEGIN ANSIBLE MANAGED BLOCK\none\ntwo\n# END ANSIBLE MANAGED BLOCK\n"
    assert block_edit(first, args) == first
    again = block_edit(first + "tail\n", {**args, "block": "three"})
    assert again == "top\n# BEGIN ANSIBLE MANAGED BLOCK\nthree\n# END ANSIBLE MANAGED BLOCK\ntail\n"
    assert block_edit(first, {**args, "state": "absent"}) == "top\n"


def test_apt_installs_only_what_is_missing_and_updates_the_cache_then_only() -> None:
    st = {"package:curl": {"installed": True}, "package:jq": {"installed": False}}
    assert plan("apt", {"name": ["curl"]}, st) is None
    got = plan("apt", {"name": "curl,jq", "update_cache": True}, st)
    assert got.reason == "not installed: jq"
    assert "apt-get -y -q -o DPkg::Lock::Timeout=120 update" in got.script
    assert got.script.strip().endswith("install jq")
    gone = plan("apt", {"name": ["curl", "jq"], "state": "absent"}, st)
    assert gone.reason == "installed, want absent: curl"


def test_systemd_service_states() -> None:
    up = {"unit:x": {"load": "loaded", "active": "active", "enabled": "enabled"}}
    assert plan("systemd_service", {"name": "x", "state": "started", "enabled": True}, up) is None
    down = {"unit:x": {"load": "loaded", "active": "inactive", "enabled": "disabled"}}
    got = plan("systemd_service", {"name": "x", "state": "started", "enabled": True,
                                   "daemon_reload": True}, down)
    assert got.script.splitlines()[1:4] == ["systemctl daemon-reload", "systemctl enable x",
                                            "systemctl start x"]
    assert plan("systemd_service", {"name": "x", "state": "restarted"}, up).reason == \
        "state=restarted always acts"
    with pytest.raises(ArgError, match="not found"):
        plan("systemd_service", {"name": "x", "state": "started"},
             {"unit:x": {"load": "not-found"}})


def test_pip_in_a_virtualenv() -> None:
    st = {"pip:/v/bin/python": {"exists": True, "dists": {"prometheus-client": "0.20.0"}}}
    assert plan("pip", {"name": ["prometheus_client==0.20.0"], "virtualenv": "/v"}, st) is None
    got = plan("pip", {"name": ["prometheus_client"], "version": "0.21.0", "virtualenv": "/v"}, st)
    assert got.script.strip().endswith("install -q prometheus-client==0.21.0")
    fresh = plan("pip", {"name": ["x"], "virtualenv": "/n",
                         "virtualenv_command": "python3 -m venv"},
                 {"pip:/n/bin/python": {"exists": False}})
    assert "python3 -m venv /n" in fresh.script
    with pytest.raises(ArgError, match="name==version"):
        plan("pip", {"name": ["x>=1"], "virtualenv": "/v"}, st)


def test_get_url_with_checksum() -> None:
    good = "a" * 64
    args = {"url": "http://x/y", "dest": "/opt/y", "checksum": f"sha256:{good}"}
    assert plan("get_url", args, {"file:/opt/y": {**FILE, "sha256": good}}) is None
    got = plan("get_url", args, {"file:/opt/y": {**FILE, "sha256": "b" * 64}})
    assert got.reason == "/opt/y checksum differs" and good in got.script
    with pytest.raises(ArgError, match="sha256:<64 hex digits>"):
        plan("get_url", {**args, "checksum": "md5:abc"}, {"file:/opt/y": {"state": "absent"}})


def test_command_and_shell_creates_removes() -> None:
    yes, no = {"exists": True}, {"exists": False}
    assert plan("command", {"cmd": "touch /a", "creates": "/a"}, {"path:/a": yes}) is None
    got = plan("command", {"cmd": "echo 'a b' $HOME", "creates": "/a"}, {"path:/a": no})
    assert got.script == "echo 'a b' '$HOME'"  # command: words quoted, no shell expansion
    assert plan("shell", {"cmd": "echo $HOME", "removes": "/a"}, {"path:/a": no}) is None
    assert plan("shell", {"cmd": "echo $HOME"}, {}).script == "echo $HOME"


def test_sysctl_file_and_live_value() -> None:
    args = {"name": "net.core.somaxconn", "value": "1024", "sysctl_file": "/etc/s.conf"}
    st = {"file:/etc/s.conf": {**FILE, "content": "net.core.somaxconn = 1024\n"},
          "sysctl:net.core.somaxconn": {"value": "4096"}}
    assert plan("sysctl", args, st) is None  # file right; sysctl_set not asked
    got = plan("sysctl", {**args, "sysctl_set": True}, st)
    assert got.reason == "live net.core.somaxconn=4096, want 1024"
    assert sysctl_edit("a=1\nnet.core.somaxconn=5\nnet.core.somaxconn=6\n",
                       {**args, "state": "present"}) == "a=1\nnet.core.somaxconn=1024\n"


def test_mount_fstab_line_and_live_mount() -> None:
    args = {"path": "/models", "src": "nfs:/m", "fstype": "nfs", "opts": "ro", "state": "mounted"}
    line = "nfs:/m /models nfs ro 0 0\n"
    st = {"file:/etc/fstab": {**FILE, "content": line},
          "mount:/models": {"mounted": {"src": "nfs:/m"}}}
    assert plan("mount", args, st) is None
    got = plan("mount", args, {**st, "mount:/models": {"mounted": None}})
    assert got.reason == "/models is not mounted" and "mount /models" in got.script
    assert fstab_edit("a b c d 0 0\n/x /models tmpfs rw 0 0\n", {**args, "dump": 0, "passno": 0}
                      ) == "a b c d 0 0\n" + line


def test_user_create_modify_and_groups() -> None:
    got = plan("user", {"name": "svc", "shell": "/bin/false", "system": True}, {"user:svc": {
        "exists": False}})
    assert got.script == "useradd -s /bin/false -r -m svc"
    have = {"user:svc": {"exists": True, "uid": 998, "shell": "/bin/false", "home": "/h",
                         "group": "svc", "groups": ["a"]}}
    assert plan("user", {"name": "svc", "shell": "/bin/false", "groups": ["a"]}, have) is None
    got = plan("user", {"name": "svc", "groups": ["b"], "append": True}, have)
    assert got.script == "usermod -G a,b svc"


def test_unarchive_decides_from_creates(tmp_path: Path) -> None:
    args = {"src": "http://x/a.tgz", "remote_src": True, "dest": "/opt", "creates": "/opt/a"}
    assert plan("unarchive", args, {"path:/opt/a": {"exists": True}}) is None
    got = plan("unarchive", args, {"path:/opt/a": {"exists": False},
                                   "file:/opt": {"state": "directory"}})
    assert "tar -x -f /opt/.provision-unarchive.tmp -C /opt" in got.script


def test_values_are_typed_after_templating() -> None:
    with pytest.raises(ArgError, match="not a boolean"):
        finish(MODULES["apt"], {"name": "x", "update_cache": "maybe"})
    assert finish(MODULES["file"], {"path": "/x", "mode": 420})["mode"] == "0644"
