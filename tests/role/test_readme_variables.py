"""The role's README variable table and defaults/main.yml stay in step with argument_specs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from playbook_runner import ROOT

ROLE = ROOT / "roles" / "coinex_chatbot"


def load(path: str) -> dict:
    return yaml.safe_load((ROLE / path).read_text())


@pytest.mark.parametrize("role", ["coinex_chatbot", "coinex_chatbot_redis"])
def test_readme_table_matches_argument_specs(role: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-role-readme.py"), "--check", "--role", role],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_redis_role_defaults_are_specified_and_agree() -> None:
    role = ROOT / "roles" / "coinex_chatbot_redis"
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
    assert sorted(defaults) == sorted(options), "defaults/main.yml and argument_specs differ"
    for name, option in options.items():
        if "default" in option:
            assert option["default"] == defaults[name], f"{name}: spec {option['default']!r}"


def test_every_default_is_specified_and_agrees() -> None:
    specs = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = load("defaults/main.yml")
    assert sorted(defaults) == sorted(specs), "defaults/main.yml and argument_specs differ"
    for name, option in specs.items():
        if "default" in option:
            assert option["default"] == defaults[name], f"{name}: spec {option['default']!r}"
        else:
            assert option.get("required"), f"{name}: neither a default nor required"


def test_every_entry_point_validates_the_same_options() -> None:
    specs = load("meta/argument_specs.yml")["argument_specs"]
    for entry in ("validate", "rollback"):
        assert specs[entry]["options"] == specs["main"]["options"], entry


def test_every_default_is_commented() -> None:
    lines = (ROLE / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#", "-")) and ":" in line:
            above = lines[i - 1] if i else ""
            assert above.startswith("#"), f"default without a comment: {line}"
