"""The lab is its own distribution: the tool's wheel carries none of it, and the lab never
reads the tool's data (so a wrong fact in the tool cannot leak into its test bed)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import provision
import provision_lab

REPO = Path(__file__).resolve().parents[2]
LAB_SOURCES = Path(provision_lab.__file__).resolve().parent
TOOL_DATA = Path(provision.__file__).resolve().parent / "data"


def test_the_tools_wheel_has_no_lab_code_and_no_standins(tmp_path):
    """`pip install .` installs what `pip wheel .` builds: no provision_lab, no stand-in
    paddle or fastdeploy, no nvidia-smi, no root-only machinery."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache"))
    assert (source / "lab" / "provision_lab" / "standins").is_dir()  # present in the tree
    # This machine's own pip settings: the build backend (setuptools) comes from wherever
    # this machine gets packages; only the wheel's content matters here.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source),
                    "-w", str(tmp_path / "out")], check=True, timeout=600, capture_output=True)
    (wheel,) = (tmp_path / "out").glob("provision-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n == "provision/cli.py" for n in names)
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"provision", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                    + ".dist-info"}
    bad = [n for n in names if "standins" in n or "provision_lab" in n or n.startswith("lab/")
           or "/lab/" in n or "nvidia_smi" in n or n.startswith(("paddle/", "fastdeploy/"))]
    assert bad == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _code_strings(path: Path) -> list[str]:
    """String constants of a module that are not docstrings (docs may name the tool's data)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and id(n) not in docs]


def test_lab_sources_never_import_the_tool_nor_name_its_data():
    sources = sorted(LAB_SOURCES.rglob("*.py"))
    assert len(sources) > 30
    for path in sources:
        tool = {m for m in _imports(path) if m == "provision" or m.startswith("provision.")}
        assert tool == set(), f"{path} imports {tool}"
        named = [s for s in _code_strings(path)
                 if "provision/data" in s or "provision.matrix" in s]
        assert named == [], f"{path} names the tool's data: {named}"


def test_building_the_indexes_opens_nothing_of_the_tool(tmp_path):
    """A real build in a fresh interpreter, every file open audited (sys.addaudithook): none
    is under provision/data, and provision.matrix is never imported."""
    script = f"""
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0]))
                 if event == "open" and args and isinstance(args[0], str) else None)
from pathlib import Path
from provision_lab import index
index.build_index(Path({str(tmp_path / 'paddle')!r}))
index.build_general(Path({str(tmp_path / 'general')!r}))
import json
print(json.dumps({{"opened": opened, "modules": sorted(sys.modules)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=300)
    report = json.loads(done.stdout.splitlines()[-1])
    assert any(p.endswith("paddle_indexes.yaml") for p in report["opened"])  # audit works
    assert [p for p in report["opened"] if p.startswith(str(TOOL_DATA))] == []
    assert [m for m in report["modules"] if m == "provision" or m.startswith("provision.")] == []
    assert (tmp_path / "paddle" / "packages" / "stable" / "cu126").is_dir()


def test_provision_lab_comes_from_the_entry_point_group():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="provision.commands") if e.name == "lab"]
    assert entry.value == "provision_lab.cli:lab"
    done = subprocess.run([sys.executable, "-m", "provision.cli", "lab", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("up", "down", "status", "address", "inventory", "break", "mend"):
        assert f"  {command} " in done.stdout
