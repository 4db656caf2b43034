"""The health gate (roles/coinex_chatbot/tasks/health.yml, files/health_gate.py): every check can
fail, on its own, within coinex_chatbot_health_timeout, naming the check and the process, URL or
article; and it passes on a healthy deploy.

One real local deploy (own supervisord, redis-server, uWSGI, Dramatiq) under a temporary base dir
on free ports; each test breaks one thing, runs the gate through a real entry point (mostly
playbooks/rolling_restart.yml, whose gate changes nothing on failure) and puts the thing back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from playbook_runner import ROOT, PlaybookRun, free_port, run_playbook

pytestmark = pytest.mark.e2e
GROUP = "coinex_customer_chatbot"
SERVER = f"{GROUP}:coinex_customer_chatbot_server"
TASK_01 = f"{GROUP}:coinex_customer_chatbot_task_01"
REDIS = "coinex_customer_chatbot_redis"  # the local-mode redis-server program (not in the group)
GATE_SCRIPT = ROOT / "roles/coinex_chatbot/files/health_gate.py"
PYTHON = "/usr/bin/python3"  # coinex_chatbot_python, the interpreter the role runs the gate with
QUESTION = "How do I reset my 2FA?"
TIMEOUT = 12  # coinex_chatbot_health_timeout of the failing runs


@dataclass
class Deploy:
    base: Path
    app: Path
    port: int
    redis_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self, *extra: str) -> list[str]:
        return [
            "-e", f"coinex_chatbot_base_dir={self.base}",
            "-e", f"coinex_chatbot_app_src={self.app}",
            "-e", f"coinex_chatbot_http_port={self.port}",
            "-e", f"coinex_chatbot_local_redis_port={self.redis_port}",
            *extra,
        ]  # fmt: skip

    @property
    def run_dir(self) -> Path:
        """Where the task processes write their ready markers (CHATBOT_READY_DIR)."""
        return self.base / "shared/run"

    def ctl(self) -> list[str]:
        return [str(self.base / "tools/venv/bin/supervisorctl"), "-c",
                str(self.base / "local_supervisord.conf")]  # fmt: skip

    def supervisorctl(self, *args: str) -> str:
        proc = subprocess.run([*self.ctl(), *args], capture_output=True, text=True, check=False)
        return proc.stdout + proc.stderr

    def rolling_restart(self, program: str, *extra: str) -> tuple[PlaybookRun, float]:
        started = time.monotonic()
        timeout = f"coinex_chatbot_health_timeout={TIMEOUT}"
        run = run_playbook(
            "rolling_restart.yml", *self.args("-e", f"program={program}", "-e", timeout, *extra)
        )
        return run, time.monotonic() - started

    def gate(self, *, ws: int = 2, question: str = QUESTION, expect: str = "2fa-lost-reset",
             timeout: float = TIMEOUT) -> tuple[dict, int]:  # fmt: skip
        """health_gate.py run directly, as the role runs it: (its JSON line, exit code)."""
        proc = subprocess.run(
            [PYTHON, "-c", GATE_SCRIPT.read_text(), "--ws", str(ws), "--url", self.url,
             "--question", question, "--expect", expect, "--timeout", str(timeout),
             "--ready-dir", str(self.run_dir), "--", *self.ctl()],
            capture_output=True, text=True, timeout=timeout + 60, check=False,
        )  # fmt: skip
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, f"one JSON line expected: {proc.stdout!r} {proc.stderr!r}"
        return json.loads(lines[0]), proc.returncode


def flat(run: PlaybookRun) -> str:
    """The output with every run of whitespace as one space (the callback wraps long lines)."""
    return " ".join(run.output.split())


def gate_failure(run: PlaybookRun) -> tuple[str, float, str]:
    """(check, seconds, detail) of the gate's failure message in a run's output."""
    assert run.rc != 0, run.output[-4000:]
    m = re.search(
        r'Health gate failed on \S+ for release \S+: check "([^"]+)" failed after ([0-9.]+) s '
        r"\((.*?)\)\. (?:This release|Switched|No previous)",
        flat(run),
    )
    assert m, f"no health gate failure message:\n{run.output[-5000:]}"
    print(f'gate check "{m.group(1)}" failed after {m.group(2)} s: {m.group(3)}')
    return m.group(1), float(m.group(2)), m.group(3)


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    tmp = tmp_path_factory.mktemp("gate")
    app = tmp / "app"
    shutil.copytree(ROOT / "app", app, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    port = free_port()
    redis_port = free_port()
    while redis_port == port:
        redis_port = free_port()
    deployment = Deploy(tmp / "deploy", app, port, redis_port)
    run = run_playbook("deploy.yml", *deployment.args())
    if run.rc != 0:
        if (deployment.base / "local_supervisord.conf").exists():
            deployment.supervisorctl("shutdown")
        pytest.fail(f"the local deploy failed:\n{run.output[-5000:]}")
    yield deployment
    deployment.supervisorctl("shutdown")


@pytest.fixture
def healthy(deploy: Deploy) -> Iterator[Deploy]:
    """The deploy, healthy before the test and made healthy again after it."""
    result, rc = deploy.gate(timeout=30)
    assert rc == 0 and result["ok"], result
    yield deploy
    deploy.supervisorctl("start", REDIS)
    deploy.supervisorctl("start", f"{GROUP}:*")
    result, rc = deploy.gate(timeout=30)
    assert rc == 0 and result["ok"], f"not healthy again after the test: {result}"


def test_the_gate_passes_on_a_healthy_deploy(healthy: Deploy) -> None:
    result, rc = healthy.gate()
    assert rc == 0 and result["ok"] and result["check"] == "all", result
    assert re.fullmatch(
        rf"server and 2 task processes RUNNING, booted; GET {re.escape(healthy.url)}/readyz 200; "
        rf'"{re.escape(QUESTION)}" answered with 2fa-lost-reset \(confidence 0\.\d+\)',
        result["detail"],
    ), result
    run, _ = healthy.rolling_restart("server")
    assert run.rc == 0, run.output[-4000:]
    # the report says what the gate checked, in the gate's own words
    assert (
        "WS=2; health gate: server and 2 task processes RUNNING, booted; "
        f'GET {healthy.url}/readyz 200; "{QUESTION}" answered with 2fa-lost-reset' in flat(run)
    ), run.output[-3000:]


def test_a_stopped_task_process_fails_a_rolling_restart_of_the_server(healthy: Deploy) -> None:
    # the "done when": a rolling restart of the server alone with a stopped task process
    assert "stopped" in healthy.supervisorctl("stop", TASK_01)
    run, elapsed = healthy.rolling_restart("server")
    check, seconds, detail = gate_failure(run)
    assert check == "programs RUNNING"
    assert f"not RUNNING: {TASK_01} STOPPED" in detail, detail
    assert re.findall(rf"{GROUP}:\S+", detail) == [TASK_01], detail  # only the stopped one
    assert seconds <= TIMEOUT + 2, seconds  # a STOPPED process settles: no wait for the deadline
    assert 'Rolling restart stopped at localhost: "programs RUNNING" failed' in flat(run)
    assert "WS=2; health gate:" not in flat(run)  # no success report
    assert elapsed < 120, elapsed
    assert "STOPPED" in healthy.supervisorctl("status", TASK_01)  # the gate changed nothing


def test_a_task_process_that_has_not_booted_fails_at_the_deadline(healthy: Deploy) -> None:
    """RUNNING is not enough: a task process whose ready marker does not hold its pid (it died
    while booting, after startsecs, and Supervisor started another) is waited for and fails the
    gate at its deadline, named with its pid and its marker."""
    marker = healthy.run_dir / "coinex_customer_chatbot_task_01.ready"
    pid = marker.read_text()
    assert f"pid {pid}," in healthy.supervisorctl("status", TASK_01)  # written by that process
    marker.write_text("1")
    try:
        result, rc = healthy.gate()
    finally:
        marker.write_text(pid)
    assert rc == 1 and result["check"] == "programs RUNNING", result
    assert (
        f"not booted (no ready marker): {TASK_01} (pid {pid}, {marker} holds pid 1)"
        in result["detail"]
    ), result
    assert re.findall(rf"{GROUP}:\S+", result["detail"]) == [TASK_01], result
    assert TIMEOUT <= result["seconds"] <= TIMEOUT + 3, result  # booting: waited for, not settled
    result, rc = healthy.gate()
    assert rc == 0 and "RUNNING, booted" in result["detail"], result


def test_a_stopped_server_fails_the_gate(healthy: Deploy) -> None:
    # program=task: the task processes are restarted, the server is left as it is (stopped)
    assert "stopped" in healthy.supervisorctl("stop", SERVER)
    run, elapsed = healthy.rolling_restart("task")
    check, seconds, detail = gate_failure(run)
    assert check == "programs RUNNING"
    assert f"not RUNNING: {SERVER} STOPPED" in detail, detail
    assert re.findall(rf"{GROUP}:\S+", detail) == [SERVER], detail
    assert seconds <= TIMEOUT + 2, seconds
    assert elapsed < 150, elapsed


@pytest.mark.parametrize(("ws", "named"), [(3, "missing (WS=3): "), (1, "not expected (WS=1): ")])
def test_a_missing_or_extra_task_process_fails(healthy: Deploy, ws: int, named: str) -> None:
    result, rc = healthy.gate(ws=ws)
    assert rc == 1 and not result["ok"], result
    assert result["check"] == "programs RUNNING", result
    task = f"{GROUP}:coinex_customer_chatbot_task_{'02' if ws == 3 else '01'}"
    assert named + task in result["detail"], result
    assert result["seconds"] <= TIMEOUT + 2, result


def test_readyz_503_fails_the_gate_naming_the_url(healthy: Deploy) -> None:
    # Redis down: every program stays RUNNING, /readyz answers 503 (redis unreachable)
    assert "stopped" in healthy.supervisorctl("stop", REDIS)
    run, elapsed = healthy.rolling_restart("server")
    check, seconds, detail = gate_failure(run)
    assert check == "GET /readyz 200"
    assert f"GET {healthy.url}/readyz not 200 within {TIMEOUT} s, last status 503" in detail, detail
    assert '{"status": "not ready"}' in detail, detail  # the reason is in the server's log only
    assert TIMEOUT <= seconds <= TIMEOUT + 3, seconds  # Redis may come back: waits to the deadline
    assert elapsed < 120, elapsed


def test_a_wrong_top_article_fails_the_gate(healthy: Deploy) -> None:
    run, elapsed = healthy.rolling_restart(
        "server", "-e", "coinex_chatbot_health_expected_article=deposit-missing"
    )
    check, seconds, detail = gate_failure(run)
    assert check == "question answered with the expected article"
    assert (
        f'asking "{QUESTION}" (expected article deposit-missing) at {healthy.url}: answered, '
        "top article 2fa-lost-reset (articles 2fa-lost-reset," in detail
    ), detail
    assert seconds <= TIMEOUT + 2, seconds
    assert elapsed < 120, elapsed


def test_an_escalated_question_fails_the_gate(healthy: Deploy) -> None:
    question = "What is the weather in Paris today?"  # not in the help centre: escalated
    run, _ = healthy.rolling_restart(
        "server", "-e", json.dumps({"coinex_chatbot_health_question": question})
    )
    check, seconds, detail = gate_failure(run)
    assert check == "question answered with the expected article"
    assert f'asking "{question}" (expected article 2fa-lost-reset)' in detail, detail
    # escalated whatever articles came closest (the answer may list some at a low confidence)
    assert ": escalated, top article" in detail, detail
    assert seconds <= TIMEOUT + 2, seconds


def test_a_no_op_deploy_skips_the_gate_only_on_a_host_found_healthy(healthy: Deploy) -> None:
    """A deploy that changes nothing skips the health gate when its probe found the programs
    RUNNING and GET /readyz 200 (files/health_gate.py --no-answer, tasks/probe.yml). With Redis
    pausing every client while the probe asks, /readyz does not answer: the same no-op deploy runs
    the gate, which waits for Redis to return and passes."""
    import redis

    gate_ran = "TASK [coinex_chatbot : Health check: every program RUNNING"
    run = run_playbook("deploy.yml", *healthy.args())
    assert run.rc == 0 and run.recap()["changed"] == 0, run.output[-4000:]
    included = run.output.split("TASK [coinex_chatbot : Health gate (rolls back on failure)", 1)[1]
    assert included.split("TASK [", 1)[0].count("skipping: [localhost]") == 1, included[:600]
    assert gate_ran not in run.output

    password = (healthy.base / "shared/config/redis_password").read_text().strip()
    client = redis.Redis(port=healthy.redis_port, password=password)
    client.execute_command("CLIENT", "PAUSE", 12000, "ALL")
    started = time.monotonic()
    run = run_playbook("deploy.yml", *healthy.args("-e", "coinex_chatbot_health_timeout=30"))
    took = time.monotonic() - started
    print(f"no-op deploy with Redis paused for 12 s: rc {run.rc} in {took:.1f} s")
    assert run.rc == 0 and run.recap()["changed"] == 0, run.output[-4000:]
    assert gate_ran in run.output, run.output[-4000:]
    assert "ok: [localhost]" in run.output.split(gate_ran, 1)[1].split("TASK [", 1)[0]
