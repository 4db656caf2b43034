"""`deploy.yml --check` on a host that was never deployed (local mode, a temporary base dir on free
ports): it runs clean, reports what the deploy would change, and creates nothing. The deployed,
unchanged case (--check --diff reports changed=0) is in test_local_deploy.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from playbook_runner import PlaybookRun, free_port, run_playbook


def check_run(base: Path, *mode: str) -> PlaybookRun:
    return run_playbook(
        "deploy.yml", *mode,
        "-e", f"coinex_chatbot_base_dir={base}",
        "-e", f"coinex_chatbot_http_port={free_port()}",
        "-e", f"coinex_chatbot_local_redis_port={free_port()}",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("base_exists", "mode"),
    [
        (False, ("--check",)),
        (False, ("--check", "--diff")),
        (True, ("--check", "--diff")),  # an empty base dir made by hand beforehand
    ],
    ids=["absent-check", "absent-check-diff", "empty-check-diff"],
)
def test_check_mode_on_a_never_deployed_host(
    tmp_path: Path, base_exists: bool, mode: tuple[str, ...]
) -> None:
    base = tmp_path / "deploy"
    if base_exists:
        base.mkdir()
    run = check_run(base, *mode)
    assert run.rc == 0, run.output[-6000:]
    recap = run.recap()
    assert recap["failed"] == 0 and recap["unreachable"] == 0, run.output[-6000:]
    assert recap["changed"] > 0, run.output[-6000:]  # the whole deploy is still to do
    # what check mode skips because its directory does not exist yet is reported as to be created
    assert "would be created" in run.output, run.output[-6000:]
    # check mode creates nothing on the host
    if base_exists:
        assert sorted(p.name for p in base.iterdir()) == []
    else:
        assert not base.exists(), sorted(str(p) for p in base.rglob("*"))[:20]
    assert sorted(p.name for p in tmp_path.iterdir()) == (["deploy"] if base_exists else [])
