"""The real local deploy: its own supervisord, redis-server, uWSGI and Dramatiq, under a
temporary base dir on free ports, from an inventory like inventories/local that sets
coinex_chatbot_ws: 2. Deploy, answer a question, rerun with changed=0, --check, code change by
chain reload, rollback, a broken release stopped by the health gate, WS changes under load (0
failed requests, 0 lost messages) and which of -e ws / WS / the inventory wins."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import chat_client
import pytest
import requests

from playbook_runner import ROOT, PlaybookRun, free_port, run_playbook

pytestmark = pytest.mark.e2e
SERVER = "coinex_customer_chatbot:coinex_customer_chatbot_server"


@dataclass
class LocalDeploy:
    base: Path
    app: Path
    inventory: Path
    port: int
    redis_port: int
    releases_seen: list[str] = field(default_factory=list)
    releases_broken: list[str] = field(default_factory=list)

    def args(self, *extra: str) -> list[str]:
        return [
            "-i", str(self.inventory),
            "-e", f"coinex_chatbot_base_dir={self.base}",
            "-e", f"coinex_chatbot_app_src={self.app}",
            "-e", f"coinex_chatbot_http_port={self.port}",
            "-e", f"coinex_chatbot_local_redis_port={self.redis_port}",
            *extra,
        ]  # fmt: skip

    def deploy(self, *extra: str, env: dict[str, str] | None = None) -> PlaybookRun:
        return run_playbook("deploy.yml", *self.args(*extra), env=env)

    def task_processes(self) -> list[str]:
        status = self.supervisorctl("status").stdout
        return [ln for ln in status.splitlines() if "coinex_customer_chatbot_task_" in ln]

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.base / "tools/venv/bin/supervisorctl"), "-c",
             str(self.base / "local_supervisord.conf"), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    def current(self) -> str:
        return (self.base / "current").resolve().name

    def ask(self, question: str) -> dict:
        return chat_client.ask(self.port, question)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeploy]:
    tmp = tmp_path_factory.mktemp("local")
    app = tmp / "app"
    shutil.copytree(ROOT / "app", app, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # inventories/local, plus WS and no rate limits set in the inventory (the load test posts a lot)
    inventory = tmp / "inventory"
    shutil.copytree(ROOT / "inventories" / "local", inventory)
    (inventory / "group_vars" / "all" / "test.yml").write_text(
        "coinex_chatbot_ws: 2\n"
        "coinex_chatbot_rate_limit_ip: 0\ncoinex_chatbot_rate_limit_conversation: 0\n"
    )
    deployment = LocalDeploy(tmp / "deploy", app, inventory, free_port(), free_port())
    yield deployment
    if (deployment.base / "local_supervisord.conf").exists():
        deployment.supervisorctl("shutdown")


def master_libraries(local: LocalDeploy) -> tuple[int, list[str]]:
    """The uWSGI master's pid and the library files it has mapped (its site-packages')."""
    pid = int(local.supervisorctl("pid", SERVER).stdout)
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    paths = {ln.split(maxsplit=5)[5] for ln in maps if len(ln.split(maxsplit=5)) == 6}
    return pid, sorted(p for p in paths if "/site-packages/" in p)


def are_currents(local: LocalDeploy, files: list[str]) -> bool:
    """Whether ``files`` are the files (hard links) of `current`'s venv."""
    site = next((local.base / "current/venv/lib").glob("python3.*/site-packages"))
    return all(os.path.samefile(f, site / f.split("/site-packages/", 1)[1]) for f in files)


def test_first_deploy_answers_a_question(local: LocalDeploy) -> None:
    run = local.deploy()
    assert run.rc == 0, run.output[-4000:]
    assert f"http://127.0.0.1:{local.port}/" in run.output
    status = local.supervisorctl("status").stdout
    for name in ("coinex_customer_chatbot:coinex_customer_chatbot_server",
                 "coinex_customer_chatbot:coinex_customer_chatbot_task_00",
                 "coinex_customer_chatbot:coinex_customer_chatbot_task_01"):  # fmt: skip
        assert any(ln.startswith(name) and "RUNNING" in ln for ln in status.splitlines()), status
    assert "coinex_customer_chatbot_task_02" not in status  # WS defaults to 2 in local mode
    logs = local.base / "logs/supervisor"
    for log in ("coinex_customer_chatbot_server.log", "coinex_customer_chatbot_task_00.log",
                "coinex_customer_chatbot_task_01.log", "supervisord.log"):  # fmt: skip
        assert (logs / log).is_file(), log
    answer = local.ask("How do I reset my 2FA?")
    assert answer["status"] == "answered", answer
    task_pid = local.supervisorctl("pid", "coinex_customer_chatbot:coinex_customer_chatbot_task_00")
    maps = Path(f"/proc/{task_pid.stdout.strip()}/maps").read_text()
    assert "libjemalloc.so.2" in maps
    environ = Path(f"/proc/{task_pid.stdout.strip()}/environ").read_bytes().split(b"\0")
    assert any(e.startswith(b"MALLOC_CONF=background_thread:true,") for e in environ), environ
    assert b"PYTHONMALLOC=malloc" in environ  # a task process: jemalloc serves small objects too
    server = "coinex_customer_chatbot:coinex_customer_chatbot_server"
    server_pid = local.supervisorctl("pid", server)
    server_env = Path(f"/proc/{server_pid.stdout.strip()}/environ").read_bytes().split(b"\0")
    assert not any(e.startswith(b"PYTHONMALLOC=") for e in server_env)  # uWSGI keeps pymalloc
    # jemalloc names every option it does not know ("<jemalloc>: Invalid conf pair") on stderr
    task_log = (logs / "coinex_customer_chatbot_task_00.log").read_text()
    assert "<jemalloc>" not in task_log
    # the release step built the knowledge base's indexes once; the task process loaded them
    site = local.base / "current/venv/lib"
    assert list(site.glob("python3*/site-packages/coinex_chatbot/prebuilt.pickle"))
    assert '"msg": "knowledge base loaded"' in task_log and '"prebuilt_indexes": "used"' in task_log
    assert (local.base / "shared/config/app.env").stat().st_mode & 0o777 == 0o640
    local.releases_seen.append(local.current())


def test_metrics_are_summed_across_workers(local: LocalDeploy) -> None:
    """Every read of /metrics, whichever of the 4 uWSGI workers serves it, counts the requests of
    all of them (PROMETHEUS_MULTIPROC_DIR reaches the workers' Python; one connection each)."""
    url = f"http://127.0.0.1:{local.port}"
    counts: list[float] = []
    for _ in range(8):
        for _ in range(10):
            assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        text = requests.get(f"{url}/metrics", timeout=5).text
        counts.append(sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("chatbot_http_requests_total{") and 'endpoint="/healthz"' in line
        ))  # fmt: skip
    # each read sees at least every /healthz request made so far, and more each time
    assert all(count >= 10 * (i + 1) for i, count in enumerate(counts)), counts
    assert counts == sorted(counts), counts


def test_oversized_body_is_refused_before_it_is_read(local: LocalDeploy) -> None:
    """A POST declaring a 50 MB body gets the app's 413 JSON at once, its body never sent."""
    with socket.create_connection(("127.0.0.1", local.port), timeout=5) as sock:
        start = time.monotonic()
        sock.sendall(
            b"POST /api/v1/conversations HTTP/1.1\r\nHost: chatbot\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        )
        reply = b""
        while b"body_too_large" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
        seconds = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"body_too_large" in reply, reply
    assert seconds < 2, seconds


def test_slow_clients_do_not_starve_the_web_tier(local: LocalDeploy) -> None:
    """Issue 11's slow-client drill straight at the host: 150 slow connections for 40 s (a third
    idle, a third trickling request headers, a third trickling a body, one byte every 2 s), a fresh
    GET /healthz every 0.2 s and a chat question every 2 s meanwhile (edge_probe.py, as fleet's)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "molecule/shared/files/edge_probe.py"),
         f"http://127.0.0.1:{local.port}", "slow", "150", "40"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    print(f"slow-client figures: {proc.stdout.strip()}")
    figures = json.loads(proc.stdout)
    assert figures["probes"] > 150, figures
    assert figures["failed"] == 0, figures
    # < 50 ms, or < 3x the same probe's p99 without slow clients when the machine alone is slow
    assert figures["p99_ms"] < figures["p99_limit_ms"], figures
    assert figures["questions"] >= 15, figures
    assert figures["answered"] == figures["questions"], figures


def test_second_run_changes_nothing(local: LocalDeploy) -> None:
    run = local.deploy()
    assert run.rc == 0, run.output[-4000:]
    assert run.recap()["changed"] == 0, run.output[-6000:]
    assert local.current() == local.releases_seen[0]


def test_check_diff_is_clean(local: LocalDeploy) -> None:
    run = local.deploy("--check", "--diff")
    assert run.rc == 0, run.output[-4000:]
    assert run.recap()["changed"] == 0, run.output[-6000:]


def test_a_no_op_run_writes_no_file(local: LocalDeploy) -> None:
    """A no-op run compares the managed files and directories with the probe's report (one round
    trip) and skips every task that would write one: the configuration files, the local Redis
    settings, the `current` link and the deployed-state record, the tools venv, the directories;
    it lists the releases, reads the record, the target Python and supervisord's state from the
    same round trip, and does not ask the app to check settings it already accepted; nor does it
    run the health gate (the probe found the programs RUNNING and /readyz 200)."""
    run = local.deploy()
    assert run.rc == 0 and run.recap()["changed"] == 0, run.output[-6000:]

    def results(task: str) -> list[str]:
        block = run.output.split(f"TASK [coinex_chatbot : {task}", 1)[1].split("TASK [", 1)[0]
        return [ln for ln in block.splitlines() if re.match(r"(ok|changed|skipping): ", ln)]

    plain = results("Configuration files without secrets")
    for path in (
        "shared/config/uwsgi.ini",
        "shared/config/uwsgi_libs.py",
        "local_supervisord.conf",
        "shared/config/haproxy.cfg",
    ):
        assert f"skipping: [localhost] => (item={local.base / path}) " in plain, (path, plain)
    secret = results("Configuration files holding the app's secrets")
    assert secret.count("skipping: [localhost] => (item=(censored due to no_log)) ") == 2, secret
    for task in ("The local redis-server's own settings holding the password",
                 "Point current at", "Record when the release went live and what is deployed",
                 "Check the app's settings with the new release's validator",
                 "Read the deployed-state record and the release's build record",
                 "List the releases and read where current points",
                 "Create the tools venv", "Install Supervisor into the tools venv",
                 "Directories", "Ask supervisord what it runs",
                 "Probe the target Python the release venvs are made from",
                 "Health gate (rolls back on failure)"):  # fmt: skip
        lines = results(task)
        assert lines and all(ln.startswith("skipping: [localhost]") for ln in lines), (task, lines)


def test_drift_is_reported_by_check_and_put_right(local: LocalDeploy) -> None:
    """A hand-edited uwsgi.ini and a task process stopped by hand: --check reports both and
    changes neither; the next run rewrites the file, restarts the server (standby on the port)
    and starts the stopped process; the run after changes nothing."""
    ini = local.base / "shared/config/uwsgi.ini"
    good = ini.read_text()
    ini.write_text(good.replace("\n", "\n# edited by hand\n", 1))
    stopped = "coinex_customer_chatbot:coinex_customer_chatbot_task_01"
    assert ": stopped" in local.supervisorctl("stop", stopped).stdout
    check = local.deploy("--check", "--diff")
    assert check.rc == 0 and check.recap()["changed"] == 1, check.output[-6000:]
    assert "# edited by hand" in check.output  # the diff
    restarts = "would restart: coinex_customer_chatbot_server (uwsgi.ini changed)"
    assert said(check, restarts), check.output[-6000:]
    assert said(check, f"Stopped programs are started: {stopped}."), check.output[-6000:]
    assert "# edited by hand" in ini.read_text()
    assert "STOPPED" in local.supervisorctl("status", stopped).stdout
    run = local.deploy()
    assert run.rc == 0, run.output[-6000:]
    assert said(run, f"Stopped programs are started: {stopped}."), run.output[-6000:]
    assert ini.read_text() == good
    tasks = local.task_processes()
    assert len(tasks) == 2 and all("RUNNING" in ln for ln in tasks), tasks
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"
    again = local.deploy()
    assert again.rc == 0 and again.recap()["changed"] == 0, again.output[-6000:]


def test_a_program_stopped_by_hand_is_started_by_a_no_op_run(local: LocalDeploy) -> None:
    """Nothing else changed: the run takes supervisord's answer from its first round trip (the
    probe), asks it nothing more, and starts the stopped program; the run after changes nothing."""
    stopped = "coinex_customer_chatbot:coinex_customer_chatbot_task_00"
    assert ": stopped" in local.supervisorctl("stop", stopped).stdout
    run = local.deploy()
    assert run.rc == 0, run.output[-6000:]
    asked = run.output.split("TASK [coinex_chatbot : Ask supervisord what it runs", 1)[1]
    assert asked.split("TASK [", 1)[0].count("skipping: [localhost]") == 1, asked[:600]
    assert said(run, f"Stopped programs are started: {stopped}."), run.output[-6000:]
    assert "TASK [coinex_chatbot : Health check: every program RUNNING" in run.output  # gate ran
    assert "RUNNING" in local.supervisorctl("status", stopped).stdout
    again = local.deploy()
    assert again.rc == 0 and again.recap()["changed"] == 0, again.output[-6000:]


def test_a_directory_changed_by_hand_is_put_right(local: LocalDeploy) -> None:
    """The role's directories are made in one module call (coinex_chatbot_dirs): --check reports a
    mode changed by hand, the next run puts it back, the run after changes nothing."""
    config = local.base / "shared/config"
    assert oct(config.stat().st_mode & 0o777) == "0o750"
    config.chmod(0o755)
    check = local.deploy("--check", "--diff")
    assert check.rc == 0 and check.recap()["changed"] == 1, check.output[-6000:]
    assert f"{config}" in check.output and oct(config.stat().st_mode & 0o777) == "0o755"
    run = local.deploy()
    assert run.rc == 0 and run.recap()["changed"] == 1, run.output[-6000:]
    assert oct(config.stat().st_mode & 0o777) == "0o750"
    assert local.deploy().recap()["changed"] == 0


def test_a_changed_haproxy_configuration_restarts_it(local: LocalDeploy) -> None:
    """Local mode's haproxy reads its file only when it starts: a change (here uWSGI's slots, its
    per-server maxconn) restarts it, and the next run puts it back."""
    haproxy = "coinex_customer_chatbot_haproxy"
    conf = local.base / "shared/config/haproxy.cfg"
    before = local.supervisorctl("pid", haproxy).stdout.strip()
    assert re.search(r"^\s+server uwsgi 127\.0\.0\.1:\d+ maxconn 8$", conf.read_text(), re.M)
    for threads, slots in ((3, 12), (2, 8)):
        run = local.deploy("-e", f"coinex_chatbot_uwsgi_threads={threads}")
        assert run.rc == 0, run.output[-4000:]
        assert f" maxconn {slots}\n" in conf.read_text()
        after = local.supervisorctl("pid", haproxy).stdout.strip()
        assert after.isdigit() and after != before, (before, after)
        before = after
        assert local.ask("How do I reset my 2FA?")["status"] == "answered"


def test_code_change_is_chain_reloaded(local: LocalDeploy) -> None:
    master_before = local.supervisorctl("pid", SERVER)
    _, libraries = master_libraries(local)
    first_release_built = (
        (local.base / "releases" / local.releases_seen[0] / ".fingerprint").stat().st_mtime
    )
    wsgi = local.app / "src/coinex_chatbot/wsgi.py"
    wsgi.write_text(wsgi.read_text() + "\n# release 2\n")
    run = local.deploy()
    assert run.rc == 0, run.output[-4000:]
    assert local.current() != local.releases_seen[0]
    local.releases_seen.append(local.current())
    master_after = local.supervisorctl("pid", SERVER)
    assert master_after.stdout == master_before.stdout  # chain reload: same master, same socket
    assert said(run, "uWSGI chain reload (workers replaced one at a time)"), run.output[-6000:]
    # the master kept the libraries it imported, the new release's files too (the same lock)
    assert master_libraries(local)[1] == libraries and are_currents(local, libraries)
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"
    # the dependency layer was not rebuilt: one dependency venv, unchanged since the first
    # deploy, and both releases' copies of a library are hard links to its files
    venvs = list((local.base / "shared/venvs").iterdir())
    assert len(venvs) == 1 and (venvs[0] / ".complete").stat().st_mtime < first_release_built, venvs
    old, new = (
        next((local.base / "releases" / r / "venv/lib").glob("python3.*/site-packages"))
        for r in (local.releases_seen[0], local.current())
    )
    for library in ("flask/app.py", "numpy/__init__.py", "dramatiq/worker.py"):
        assert (
            (old / library).stat().st_ino
            == (new / library).stat().st_ino
            == (next(venvs[0].glob("lib/python3.*/site-packages")) / library).stat().st_ino
        ), library
    assert (new / "coinex_chatbot/wsgi.py").read_text().endswith("# release 2\n")
    assert not (old / "coinex_chatbot/wsgi.py").read_text().endswith("# release 2\n")


def test_rollback_goes_to_the_previous_release(local: LocalDeploy) -> None:
    run = run_playbook("rollback.yml", *local.args())
    assert run.rc == 0, run.output[-4000:]
    assert local.current() == local.releases_seen[0]
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"


def test_broken_release_is_switched_back(local: LocalDeploy) -> None:
    before = local.current()
    wsgi = local.app / "src/coinex_chatbot/wsgi.py"
    good = wsgi.read_text()
    wsgi.write_text("raise RuntimeError('broken release for the health gate test')\n")
    try:
        run = local.deploy("-e", "coinex_chatbot_health_timeout=20")
    finally:
        wsgi.write_text(good)
    assert run.rc != 0
    assert "Health gate failed" in run.output and "Switched current back to" in run.output
    assert local.current() == before
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"
    # marked for rollback.yml to skip (health.yml): the broken release, not the one running
    broken = [r.name for r in (local.base / "releases").iterdir() if (r / ".failed_gate").exists()]
    assert len(broken) == 1 and broken[0] != before, broken
    local.releases_broken = broken


def test_rollback_skips_a_release_that_failed_its_gate(local: LocalDeploy) -> None:
    """A fixed release deployed after the broken one, then rolled back: back to the newest
    release that passed its gate, never to the broken one (newer, complete, but failed)."""
    newest_good = sorted(local.releases_seen)[-1]
    wsgi = local.app / "src/coinex_chatbot/wsgi.py"
    wsgi.write_text(wsgi.read_text() + "\n# release 3, the fix\n")
    run = local.deploy()
    assert run.rc == 0, run.output[-4000:]
    fixed = local.current()
    assert all(fixed > r for r in local.releases_broken), (fixed, local.releases_broken)
    run = run_playbook("rollback.yml", *local.args())
    assert run.rc == 0, run.output[-4000:]
    assert local.current() == newest_good, (local.current(), newest_good, local.releases_broken)
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"


def test_settings_the_app_rejects_change_nothing(local: LocalDeploy) -> None:
    """The new release's own settings check stops the deploy before any file or process changes
    (CHATBOT_TASK_DELAY_MS has a range the role's validation does not know: extra_env)."""
    before = local.current()
    app_env = (local.base / "shared/config/app.env").read_text()
    master = local.supervisorctl("pid", SERVER).stdout
    run = local.deploy("-e", '{"coinex_chatbot_extra_env": {"CHATBOT_TASK_DELAY_MS": "9999999"}}')
    assert run.rc != 0
    assert "rejects its settings" in run.output, run.output[-3000:]
    assert "CHATBOT_TASK_DELAY_MS" in run.output
    assert (local.base / "shared/config/app.env").read_text() == app_env
    assert local.current() == before
    assert local.supervisorctl("pid", SERVER).stdout == master


class Load:
    """molecule/fleet/files/loadgen.py against the local deploy: GETs and chat posts on 8
    connections until stopped, then every posted message must be answered or escalated."""

    def __init__(self, local: LocalDeploy, tmp: Path) -> None:
        self.stop_file, self.out = tmp / "load.stop", tmp / "load.json"
        self.stop_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "molecule/fleet/files/loadgen.py"),
             f"--url=http://127.0.0.1:{local.port}", "--connections=8", "--think-ms=20",
             f"--stop-file={self.stop_file}", "--max-seconds=400", "--settle-seconds=60",
             f"--out={self.out}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(3)  # load before the change

    def finish(self) -> dict:
        time.sleep(3)  # load after the change
        self.stop_file.touch()
        output, _ = self.proc.communicate(timeout=180)
        assert self.proc.returncode == 0, output
        figures = json.loads(self.out.read_text())
        print(f"load figures: {output.strip()}")
        return figures


def said(run: PlaybookRun, text: str) -> bool:
    """`text` appears in the run's output, whatever line breaks the callback put into messages."""
    return " ".join(text.split()) in " ".join(run.output.split())


def assert_nothing_lost(figures: dict) -> None:
    assert figures["requests"] > 500, figures
    assert figures["failed"] == 0, figures
    assert figures["messages_posted"] > 20, figures
    assert figures["pending"] == 0, figures
    assert figures["answered"] + figures["escalated"] == figures["messages_posted"], figures
    assert figures["listed_more_than_once"] == 0, figures
    assert figures["listed_not_acknowledged"] == 0, figures


def test_ws_change_under_load_beats_the_inventory(local: LocalDeploy, tmp_path: Path) -> None:
    """-e ws=3 against an inventory with coinex_chatbot_ws: 2: the group is re-created with 3
    task processes while a standby uWSGI serves the port: 0 failed requests, 0 lost messages."""
    load = Load(local, tmp_path)
    run = local.deploy("-e", "ws=3")
    figures = load.finish()
    assert run.rc == 0, run.output[-4000:]
    assert said(run, "WS=3 (from command line (-e ws))"), run.output[-6000:]
    assert said(run, "This run restarts: the whole group"), run.output[-6000:]
    assert said(run, "A standby uWSGI serves"), run.output[-6000:]
    assert "Start the standby server" in run.output
    tasks = local.task_processes()
    assert len(tasks) == 3 and all("RUNNING" in ln for ln in tasks), tasks
    assert "coinex_customer_chatbot_standby" not in local.supervisorctl("status").stdout
    assert_nothing_lost(figures)
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"


def test_ws_precedence_in_check_mode(local: LocalDeploy) -> None:
    """WS in the environment wins over the inventory, -e ws over WS; check mode says what a
    change would restart and changes nothing."""
    run = local.deploy("--check", env={"WS": "4"})
    assert run.rc == 0, run.output[-4000:]
    assert said(run, "WS=4 (from environment (WS))"), run.output[-6000:]
    assert said(run, "Check mode, this run would restart: the whole group"), run.output[-6000:]
    run = local.deploy("--check", "-e", "ws=3", env={"WS": "4"})
    assert run.rc == 0, run.output[-4000:]
    assert said(run, "WS=3 (from command line (-e ws))"), run.output[-6000:]
    assert said(run, "Check mode, this run would restart: nothing"), run.output[-6000:]
    assert run.recap()["changed"] == 0, run.output[-6000:]
    assert len(local.task_processes()) == 3


def test_ws_back_to_the_inventory_under_load(local: LocalDeploy, tmp_path: Path) -> None:
    """Without -e ws or WS the inventory's 2 applies: 3 -> 2 under load drops nothing."""
    load = Load(local, tmp_path)
    run = local.deploy()
    figures = load.finish()
    assert run.rc == 0, run.output[-4000:]
    assert said(run, "WS=2 (from coinex_chatbot_ws (inventory or vars))"), run.output[-6000:]
    tasks = local.task_processes()
    assert len(tasks) == 2 and all("RUNNING" in ln for ln in tasks), tasks
    assert_nothing_lost(figures)


def test_a_task_restart_that_does_not_finish_fails_the_gate(local: LocalDeploy) -> None:
    """The task processes' background drain and start given 1 s (shorter than any drain and
    start): Ansible kills the job at its async limit, the gate fails saying so, and the previous
    release is switched back and answers."""
    before = local.current()
    wsgi = local.app / "src/coinex_chatbot/wsgi.py"
    good = wsgi.read_text()
    wsgi.write_text(good + "\n# a release whose task restart is given 1 s\n")
    try:
        run = local.deploy("-e", "__coinex_chatbot_task_restart_seconds=1")
    finally:
        wsgi.write_text(good)
    assert run.rc != 0
    assert said(run, "task processes did not restart within 1 s"), run.output[-6000:]
    assert "Switched current back to" in run.output, run.output[-6000:]
    assert local.current() == before
    tasks = local.task_processes()
    assert len(tasks) == 2 and all("RUNNING" in ln for ln in tasks), tasks
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"


def test_a_release_with_other_libraries_re_executes_the_master(
    local: LocalDeploy, tmp_path: Path
) -> None:
    """The uWSGI master imports the web libraries before it forks (uwsgi_libs.py), so a chain
    reload would keep them. A release with another lock (here a comment: another dependency
    venv, whose files are not the running master's) re-executes the master instead, under load:
    same master pid, new workers, the master's mapped libraries now `current`'s files, 0 failed
    requests and nothing lost. The rollback to the earlier lock does the same."""
    pid, files = master_libraries(local)
    assert files and are_currents(local, files), files  # the pyuwsgi and web libraries' .so
    assert any("/markupsafe/" in f for f in files), files  # imported by the master (Jinja2's)
    before = local.current()
    lock = local.app / "requirements.lock"
    good = lock.read_text()
    lock.write_text(good + "# another lock: another dependency venv\n")
    load = Load(local, tmp_path)
    try:
        run = local.deploy()
    finally:
        lock.write_text(good)
    figures = load.finish()
    assert run.rc == 0, run.output[-4000:]
    re_exec = "uWSGI master re-executed, since its libraries were not those of the release"
    assert said(run, re_exec), run.output[-6000:]
    assert local.current() != before
    new_pid, new_files = master_libraries(local)
    assert new_pid == pid  # re-executed, not restarted: the socket stayed open
    assert are_currents(local, new_files) and not are_currents(local, files), new_files
    assert_nothing_lost(figures)
    assert local.ask("How do I reset my 2FA?")["status"] == "answered"

    run = run_playbook("rollback.yml", *local.args())
    assert run.rc == 0, run.output[-4000:]
    assert local.current() == before
    assert said(run, "uWSGI master re-executed"), run.output[-6000:]
    assert master_libraries(local)[0] == pid and are_currents(local, master_libraries(local)[1])
