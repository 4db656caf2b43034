"""Local mode's own Redis and the log files, on a real local deploy (own supervisord,
redis-server, uWSGI, Dramatiq) under a temporary base dir on free ports:

- Redis requires the password the role generated once (an unauthenticated PING gets NOAUTH), kept
  in shared/config/redis_password, 0600, the same after a second run, never in Ansible's output;
- Redis is bounded: maxmemory is coinex_chatbot_local_redis_maxmemory, policy noeviction;
- every log file the local supervisord created is 0640 (its umask 027);
- the chat still answers a question.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from playbook_runner import PlaybookRun, free_port, run_playbook

pytestmark = pytest.mark.e2e
MAXMEMORY = "48mb"


@dataclass
class Deploy:
    base: Path
    port: int
    redis_port: int
    first: PlaybookRun | None = None

    def run(self) -> PlaybookRun:
        return run_playbook(
            "deploy.yml",
            "-e", f"coinex_chatbot_base_dir={self.base}",
            "-e", f"coinex_chatbot_http_port={self.port}",
            "-e", f"coinex_chatbot_local_redis_port={self.redis_port}",
            "-e", f"coinex_chatbot_local_redis_maxmemory={MAXMEMORY}",
        )  # fmt: skip

    @property
    def password_file(self) -> Path:
        return self.base / "shared/config/redis_password"

    def redis(self) -> redis.Redis:
        password = self.password_file.read_text()
        return redis.Redis(port=self.redis_port, password=password, decode_responses=True)


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    tmp = tmp_path_factory.mktemp("local-redis")
    deployment = Deploy(tmp / "deploy", free_port(), free_port())
    deployment.first = deployment.run()
    yield deployment
    conf = deployment.base / "local_supervisord.conf"
    if conf.exists():
        subprocess.run(
            [str(deployment.base / "tools/venv/bin/supervisorctl"), "-c", str(conf), "shutdown"],
            capture_output=True,
            check=False,
        )


def test_deploy_succeeds(deploy: Deploy) -> None:
    assert deploy.first is not None and deploy.first.rc == 0, deploy.first.output[-4000:]


def test_redis_refuses_a_client_without_the_password(deploy: Deploy) -> None:
    with socket.create_connection(("127.0.0.1", deploy.redis_port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        reply = sock.recv(200)
    assert reply.startswith(b"-NOAUTH"), reply
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=deploy.redis_port, password="wrong-password").ping()
    assert deploy.redis().ping()


def test_the_password_file_is_private_and_never_shown(deploy: Deploy) -> None:
    password = deploy.password_file.read_text()
    assert len(password) >= 32 and password.isalnum(), "not a generated password"
    assert deploy.password_file.stat().st_mode & 0o777 == 0o600
    assert (deploy.base / "shared/config/redis.conf").stat().st_mode & 0o777 == 0o600
    assert deploy.first is not None and password not in deploy.first.output
    # the redis-server's command line (ps, /proc) does not carry it either
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert password not in ps.stdout


def test_redis_memory_is_bounded_and_never_evicts(deploy: Deploy) -> None:
    settings = deploy.redis().config_get("maxmemory*")
    assert int(settings["maxmemory"]) == 48 * 1024 * 1024
    assert settings["maxmemory-policy"] == "noeviction"


def test_every_log_file_is_0640(deploy: Deploy) -> None:
    logs = sorted((deploy.base / "logs/supervisor").iterdir())
    names = {p.name for p in logs}
    programs = ("redis", "server", "task_00", "task_01")
    expected = ["supervisord.log", *(f"coinex_customer_chatbot_{p}.log" for p in programs)]
    assert set(expected) <= names, names
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in logs}
    assert set(modes.values()) == {"0o640"}, modes


def test_the_chat_answers(deploy: Deploy) -> None:
    url = f"http://127.0.0.1:{deploy.port}/api/v1/conversations"
    conv = requests.post(url, json={"lang": "en"}, timeout=10)
    assert conv.status_code == 201, conv.text
    cid, auth = conv.json()["conversation_id"], {"Authorization": f"Bearer {conv.json()['token']}"}
    posted = requests.post(
        f"{url}/{cid}/messages", json={"text": "How do I reset my 2FA?"}, headers=auth, timeout=10
    )
    assert posted.status_code == 202, posted.text
    deadline, messages = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        reply = requests.get(f"{url}/{cid}/messages", headers=auth, timeout=10)
        messages = reply.json()["messages"]
        if messages and messages[-1]["status"] != "pending":
            break
        time.sleep(0.3)
    assert messages and messages[-1]["status"] == "answered", messages


def test_a_second_run_keeps_the_password_and_changes_nothing(deploy: Deploy) -> None:
    before = deploy.password_file.read_text()
    again = deploy.run()
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["changed"] == 0, again.output[-4000:]
    assert deploy.password_file.read_text() == before
    assert before not in again.output
    assert deploy.redis().ping()
