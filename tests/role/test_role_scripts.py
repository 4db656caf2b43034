"""The role's controller and host scripts (roles/coinex_chatbot/files), function by function on
real directories and this interpreter's real packages; the local deploy runs them whole."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

from playbook_runner import ROOT

FILES = ROOT / "roles" / "coinex_chatbot" / "files"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"role_{name}", FILES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_app_wheel_is_built_without_isolation_only_when_the_backend_is_here() -> None:
    """The controller's setuptools (pinned in requirements-deploy.txt) meets app/pyproject.toml's
    build requirement; a version it does not have, or a package it lacks, means pip's isolated
    build as before."""
    met = load("build_wheelhouse").build_requirements_met
    requires = tomllib.loads((ROOT / "app/pyproject.toml").read_text())["build-system"]["requires"]
    assert met(requires), requires
    assert not met(["setuptools>=999"])
    assert not met(["no-such-build-backend-coinex>=1"])
    assert met(['no-such-build-backend-coinex>=1; python_version < "3"'])


def test_a_release_removes_the_dependency_venvs_of_other_locks(tmp_path: Path) -> None:
    """Only the current lock's dependency venv stays; a file next to them is not a venv."""
    prune = load("release_venv").prune_other_venvs
    venvs = tmp_path / "venvs"
    for name in ("aaaa-py3.11.2-x86_64", "bbbb-py3.11.2-x86_64", "cccc-py3.11.2-x86_64"):
        (venvs / name / "lib").mkdir(parents=True)
        (venvs / name / ".complete").write_text("lock\n")
    (venvs / "notes.txt").write_text("kept\n")
    current = venvs / "bbbb-py3.11.2-x86_64"
    removed = prune(current)
    assert removed == [str(venvs / "aaaa-py3.11.2-x86_64"), str(venvs / "cccc-py3.11.2-x86_64")]
    assert sorted(p.name for p in venvs.iterdir()) == ["bbbb-py3.11.2-x86_64", "notes.txt"]
    assert (current / ".complete").read_text() == "lock\n"
    assert prune(current) == []
