"""A local deploy's chat API and supervisorctl, for the tests that deploy through the design card's
commands (test_design_card.py, test_collection.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests


def ask(port: int, question: str, timeout: float = 30) -> dict:
    """Open a conversation, post the question and wait for the answer (its last message)."""
    url = f"http://127.0.0.1:{port}/api/v1/conversations"
    conv = requests.post(url, json={"lang": "en"}, timeout=10)
    assert conv.status_code == 201, conv.text
    cid = conv.json()["conversation_id"]
    auth = {"Authorization": f"Bearer {conv.json()['token']}"}
    posted = requests.post(
        f"{url}/{cid}/messages", json={"text": question}, headers=auth, timeout=10
    )
    assert posted.status_code == 202, posted.text
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = requests.get(f"{url}/{cid}/messages", headers=auth, timeout=10).json()[
            "messages"
        ]
        if messages and messages[-1]["status"] != "pending":
            return messages[-1]
        time.sleep(0.3)
    pytest.fail(f"not answered within {timeout} s: {messages}")


def supervisorctl(base: Path, *args: str) -> str:
    """supervisorctl of a local-mode deploy under base (its own supervisord)."""
    proc = subprocess.run(
        [
            str(base / "tools/venv/bin/supervisorctl"),
            "-c",
            str(base / "local_supervisord.conf"),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout + proc.stderr


def shutdown(base: Path) -> None:
    if (base / "local_supervisord.conf").exists():
        supervisorctl(base, "shutdown")
