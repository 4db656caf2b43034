"""Bad variables fail the deploy before any host is changed, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from playbook_runner import run_playbook

CASES = [
    pytest.param(["-e", "ws=0"], {}, "coinex_chatbot_ws", id="ws=0"),
    pytest.param(["-e", "ws=abc"], {}, "coinex_chatbot_ws", id="ws=abc"),
    pytest.param(["-e", "ws=65"], {}, "coinex_chatbot_ws", id="ws=65"),
    pytest.param([], {"WS": "0"}, "coinex_chatbot_ws", id="WS=0-env"),
    pytest.param(["-e", "coinex_chatbot_mode=foo"], {}, "coinex_chatbot_mode", id="mode=foo"),
    pytest.param(
        ["-e", "coinex_chatbot_base_dir=relative/dir"], {}, "coinex_chatbot_base_dir", id="rel-dir"
    ),
    pytest.param(
        ["-e", "coinex_chatbot_http_port=70000"], {}, "coinex_chatbot_http_port", id="port=70000"
    ),
    pytest.param(
        ["-e", "coinex_chatbot_mode=production"], {}, "coinex_chatbot_secret_key", id="no-secret"
    ),
]


@pytest.mark.parametrize(("args", "env", "variable"), CASES)
def test_bad_variable_fails_before_any_change(
    tmp_path: Path, args: list[str], env: dict[str, str], variable: str
) -> None:
    base = tmp_path / "deploy"
    base_args = ["-e", f"coinex_chatbot_base_dir={base}"]
    if any("base_dir" in a for a in args):
        base_args = []
    run = run_playbook("deploy.yml", *base_args, *args, env=env)
    assert run.rc != 0, run.output[-3000:]
    assert variable in run.output, run.output[-3000:]
    recap = run.recap()
    assert recap["changed"] == 0 and recap["failed"] == 1, recap
    # it failed in the first play, the validation one: the deploy play never started
    assert "PLAY [Deploy the chatbot" not in run.output
    assert not base.exists()
