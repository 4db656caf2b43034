"""The ad-hoc playbook (playbooks/supervisorctl.yml -e op=...), the release records and the one-line
failures an operator meets, on one real local deploy (own supervisord, redis-server, uWSGI,
Dramatiq) under a temporary base dir on free ports. The app source is a git checkout of its own
(tmp/repo/app), so that the releases record a commit.

Each failure must come out as ONE explanatory line, once: exactly one `[ERROR]` block, carrying
the line, and no traceback, no inline script, no argument-spec dump.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from playbook_runner import ROOT, PlaybookRun, free_port, run_playbook

pytestmark = pytest.mark.e2e
GROUP = "coinex_customer_chatbot"
SERVER = "coinex_customer_chatbot_server"
TASK_00, TASK_01 = "coinex_customer_chatbot_task_00", "coinex_customer_chatbot_task_01"
REDIS = "coinex_customer_chatbot_redis"
HAPROXY = "coinex_customer_chatbot_haproxy"  # local mode: in front of uWSGI
NOISE = ("Traceback", "import ", "Validation of arguments failed", "argument_spec", "cmd:")


@dataclass
class Deploy:
    base: Path
    repo: Path
    port: int
    redis_port: int

    @property
    def app(self) -> Path:
        return self.repo / "app"

    def args(self, *extra: str) -> list[str]:
        return [
            "-e", f"coinex_chatbot_base_dir={self.base}",
            "-e", f"coinex_chatbot_app_src={self.app}",
            "-e", f"coinex_chatbot_http_port={self.port}",
            "-e", f"coinex_chatbot_local_redis_port={self.redis_port}",
            *extra,
        ]  # fmt: skip

    def supervisorctl(self, *args: str) -> str:
        proc = subprocess.run(
            [str(self.base / "tools/venv/bin/supervisorctl"), "-c",
             str(self.base / "local_supervisord.conf"), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return proc.stdout + proc.stderr

    def pids(self) -> dict[str, str]:
        return dict(
            re.findall(r"^(?:\S+:)?(\S+)\s+RUNNING\s+pid (\d+)", self.supervisorctl("status"), re.M)
        )

    def ops(self, *extra: str, env: dict[str, str] | None = None) -> PlaybookRun:
        return run_playbook("supervisorctl.yml", *self.args(*extra), env=env)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def table(run: PlaybookRun) -> list[str]:
    """The lines of the Report task's msg block (the callback prints it as a YAML block)."""
    m = re.search(
        r"TASK \[coinex_chatbot : Report\].*?msg: \|-\n(.*?)(?:\n\n|\Z)", run.output, re.S
    )
    assert m, run.output[-3000:]
    return [line[8:] for line in m.group(1).splitlines()]


def columns_aligned(lines: list[str]) -> None:
    """Every cell of every row starts where its column's header starts."""
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    for line in lines[1:]:
        cells = [m.start() for m in re.finditer(r"\S+", line)]
        assert cells[: len(starts)] == starts[: len(cells)], f"misaligned:\n{header}\n{line}"


def one_line(run: PlaybookRun, expected: str, max_lines: int = 50) -> str:
    """The run failed with exactly one [ERROR] block, a single line that contains `expected`,
    printed once (besides the failed task's own result), and nothing of the noise."""
    assert run.rc != 0, run.output[-3000:]
    errors = run.errors()
    assert len(errors) == 1, errors
    line = errors[0].split("\n")[0]
    assert expected in line, errors
    flat = " ".join(run.output.split())
    assert flat.count(" ".join(expected.split())) <= 2, (
        run.output
    )  # the [ERROR] line and the result
    for noise in NOISE:
        assert noise not in run.output, (noise, run.output[-3000:])
    assert len(run.output.splitlines()) < max_lines, run.output
    print(line)
    return line


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    tmp = tmp_path_factory.mktemp("ops")
    repo = tmp / "repo"
    shutil.copytree(
        ROOT / "app", repo / "app", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    git(repo, "init", "-q")
    git(repo, "add", "app")
    git(repo, "commit", "-qm", "the app")
    port = free_port()
    redis_port = free_port()
    while redis_port == port:
        redis_port = free_port()
    deployment = Deploy(tmp / "deploy", repo, port, redis_port)
    run = run_playbook("deploy.yml", *deployment.args())
    if run.rc != 0:
        if (deployment.base / "local_supervisord.conf").exists():
            deployment.supervisorctl("shutdown")
        pytest.fail(f"the local deploy failed:\n{run.output[-5000:]}")
    yield deployment
    deployment.supervisorctl("shutdown")


@pytest.fixture
def healthy(deploy: Deploy) -> Iterator[Deploy]:
    yield deploy
    deploy.supervisorctl("start", REDIS)
    deploy.supervisorctl("start", f"{GROUP}:*")


def test_status_is_one_aligned_table_of_every_program(healthy: Deploy) -> None:
    run = healthy.ops()
    assert run.rc == 0, run.output[-3000:]
    lines = table(run)
    assert lines[0].split() == ["HOST", "PROGRAM", "STATE", "PID", "UPTIME", "RELEASE", "WS"]
    programs = [line.split()[1] for line in lines[1:-1]]
    assert programs == [SERVER, TASK_00, TASK_01, HAPROXY, REDIS], lines
    columns_aligned(lines[:-1])
    assert lines[-1] == "5 of 5 RUNNING"
    assert "reserved name" not in run.output
    # not ~90 lines for a small table: the playbook's frame and one line per program
    assert len(run.output.splitlines()) <= 26 + len(programs), run.output


def test_status_honours_target(healthy: Deploy) -> None:
    run = healthy.ops("-e", f"target={SERVER}")
    assert run.rc == 0, run.output[-3000:]
    lines = table(run)
    assert [line.split()[1] for line in lines[1:-1]] == [SERVER]
    assert lines[-1] == "1 of 1 RUNNING"
    run = healthy.ops(
        "-e", f"target={TASK_00.replace('_task_', '_task:coinex_customer_chatbot_task_')}"
    )
    assert run.rc == 0 and [ln.split()[1] for ln in table(run)[1:-1]] == [TASK_00], run.output
    run = healthy.ops("-e", f"target={HAPROXY}")
    assert run.rc == 0 and [ln.split()[1] for ln in table(run)[1:-1]] == [HAPROXY], run.output


def test_status_fails_in_one_line_when_a_process_is_stopped(healthy: Deploy) -> None:
    assert "stopped" in healthy.supervisorctl("stop", f"{GROUP}:{TASK_01}")
    run = healthy.ops()
    lines = table(run)
    columns_aligned(lines[:-1])
    assert re.match(rf"localhost\s+{TASK_01}\s+STOPPED\s+-\s+", lines[3]), lines
    assert lines[-1] == "4 of 5 RUNNING"
    one_line(
        run,
        f"not RUNNING: localhost {TASK_01} STOPPED: read its log (-e op=tail -e target={TASK_01})",
    )


def test_restart_restarts_only_its_target_and_applies_no_pending_change(healthy: Deploy) -> None:
    before = healthy.pids()
    # a pending change of another program: `supervisorctl update` would add and start it
    pending = healthy.base / "shared/config/supervisor/zz_pending_test.conf"
    pending.write_text(
        f"[program:{GROUP}_pending]\ncommand=/bin/sleep 600\nautostart=true\n"
        f"stdout_logfile={healthy.base}/logs/supervisor/pending.log\n"
    )
    try:
        run = healthy.ops("-e", "op=restart", "-e", f"target={TASK_00}")
        assert run.rc == 0, run.output[-3000:]
        after = healthy.pids()
        assert after[TASK_00] != before[TASK_00]
        assert {k: v for k, v in after.items() if k != TASK_00} == {
            k: v for k, v in before.items() if k != TASK_00
        }
        assert "pending" not in healthy.supervisorctl("status")
        assert table(run)[-1] == "1 of 1 RUNNING"
    finally:
        pending.unlink()


def test_env_shows_pythonpath_ws_ld_preload_and_jemalloc_mapped(healthy: Deploy) -> None:
    run = healthy.ops("-e", "op=env")
    assert run.rc == 0, run.output[-3000:]
    lines = table(run)
    assert lines[0].split() == [
        "HOST",
        "PROGRAM",
        "PID",
        "WS",
        "JEMALLOC",
        "LD_PRELOAD",
        "PYTHONPATH",
    ]
    columns_aligned(lines)
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    for program in (SERVER, TASK_00, TASK_01):
        _, _, pid, ws, jemalloc, preload, pythonpath = rows[program]
        assert ws == "2" and jemalloc == "yes" and "libjemalloc" in preload, rows[program]
        assert re.fullmatch(
            rf"{healthy.base}/current/venv/lib/python3\.\d+/site-packages", pythonpath
        )
        assert pid.isdigit(), rows[program]


def test_signal_sends_the_signal_to_the_target(healthy: Deploy) -> None:
    before = healthy.pids()
    log = healthy.base / "logs/supervisor" / f"{SERVER}.log"
    size = log.stat().st_size
    # uWSGI prints its statistics on SIGUSR1 and keeps running
    run = healthy.ops("-e", "op=signal", "-e", "signal=USR1", "-e", f"target={SERVER}")
    assert run.rc == 0, run.output[-3000:]
    assert healthy.pids() == before
    assert table(run)[-1] == "1 of 1 RUNNING"
    assert "requests" in log.read_bytes()[size:].decode(errors="replace")
    one_line(
        healthy.ops("-e", "op=signal", "-e", "signal=FOO"),
        'unknown signal "FOO": use -e signal=HUP|',
    )


def test_tail_reads_supervisords_own_log(healthy: Deploy) -> None:
    run = healthy.ops("-e", "op=tail", "-e", "target=supervisord", "-e", "lines=5")
    assert run.rc == 0, run.output[-3000:]
    lines = table(run)
    path = healthy.base / "logs/supervisor/supervisord.log"
    assert lines[0] == f"==> localhost: {path} (last 5 lines) <=="
    assert lines[1:] == path.read_text().splitlines()[-5:]


def test_releases_mark_current_and_show_the_git_commit(healthy: Deploy) -> None:
    run = healthy.ops("-e", "op=releases")
    assert run.rc == 0, run.output[-3000:]
    lines = table(run)
    header = ["HOST", "RELEASE", "GIT", "COMMIT", "BUILT", "WENT", "LIVE", "FAILED", "GATE"]
    assert lines[0].split() == header
    current = [line for line in lines[1:] if " current " in line]
    assert len(current) == 1, lines
    commit = git(healthy.repo, "rev-parse", "HEAD")[:12]
    assert current[0].split()[1] == (healthy.base / "current").resolve().name
    assert current[0].split()[3] == commit, lines
    # FAILED GATE: "-" (this release passed its gate)
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ deploy +-$", current[0]), current


def test_a_deploy_after_a_rollback_says_it_goes_forward_again(healthy: Deploy) -> None:
    first = (healthy.base / "current").resolve().name
    wsgi = healthy.app / "src/coinex_chatbot/wsgi.py"
    wsgi.write_text(wsgi.read_text() + "\n# release 2 (uncommitted)\n")
    run = run_playbook("deploy.yml", *healthy.args())
    assert run.rc == 0, run.output[-3000:]
    second = (healthy.base / "current").resolve().name
    assert second != first
    lines = table(healthy.ops("-e", "op=releases"))
    assert re.search(rf"{second}\s+current\s+[0-9a-f]{{12}}\+dirty", "\n".join(lines)), lines
    run = run_playbook("rollback.yml", *healthy.args())
    assert run.rc == 0, run.output[-3000:]
    assert (healthy.base / "current").resolve().name == first
    run = run_playbook("deploy.yml", *healthy.args())
    assert run.rc == 0, run.output[-3000:]
    flat = " ".join(run.output.split())
    said = re.findall(
        r"the last change here was a rollback to (\S+) .*?this deploy goes forward again, to (\S+)",
        flat,
    )
    assert said == [(first, second)], run.output[-4000:]
    # and only once: the next deploy is an ordinary one
    run = run_playbook("deploy.yml", *healthy.args())
    assert run.rc == 0, run.output[-3000:]
    assert "the last change here was a rollback" not in run.output, run.output[-3000:]


# --- one line for every failure ---------------------------------------------------------------


def test_unknown_target_and_process_and_the_old_action_are_one_line(healthy: Deploy) -> None:
    one_line(
        healthy.ops("-e", "target=foo"), 'unknown target "foo": use all, coinex_customer_chatbot:*'
    )
    one_line(
        healthy.ops("-e", "target=coinex_customer_chatbot_task_07"),
        "no coinex_customer_chatbot_task_07 on localhost: it runs WS=2 task processes"
        f" ({TASK_00}, {TASK_01})",
    )
    run = healthy.ops("-e", "action=status")
    one_line(run, "-e action= is now -e op= (action is a name Ansible reserves): -e op=status")


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (["-e", "ws=abc"], None, "ws must be an integer from 1 to 64 (WS from the command line"),
        ([], {"WS": "four"}, 'WS must be an integer from 1 to 64 (WS from the environment (WS)'),
        (["-e", "ws=0"], None, "ws must be an integer from 1 to 64"),
        (["-e", "coinex_chatbot_ws_by_mode=abc"], None,
         "coinex_chatbot_ws_by_mode must map local and production to an integer from 1 to 64 each"),
    ],
)  # fmt: skip
def test_a_bad_ws_is_one_line(
    healthy: Deploy, extra: list[str], env: dict | None, expected: str
) -> None:
    for playbook in ("deploy.yml", "rollback.yml"):
        run = run_playbook(playbook, *healthy.args(*extra), env=env)
        one_line(run, expected)


def test_a_missing_release_is_one_line(healthy: Deploy) -> None:
    run = run_playbook("rollback.yml", *healthy.args("-e", "release=1.0.0-19990101T000000Z"))
    # the rollback reads facts, the record and the releases first: a longer run, still one error
    one_line(run, "no release 1.0.0-19990101T000000Z on localhost (current: ", max_lines=70)
    assert (
        "pick one with -e release=NAME (playbooks/supervisorctl.yml -e op=releases lists them)"
        in run.output
    )


def production_copy(tmp: Path, vault: bool) -> Path:
    """inventories/production with one chatbot host nobody answers for (127.0.0.1 port 1) and
    the secrets of vault.yml.example: encrypted with a password the run is not given (vault=True),
    or in plain text (vault=False)."""
    inventory = tmp / "production"
    shutil.copytree(ROOT / "inventories/production", inventory)
    secrets = inventory / "group_vars/all/vault.yml"
    secrets.write_text(
        'vault_coinex_chatbot_secret_key: "0123456789abcdef0123"\n'
        'vault_coinex_chatbot_redis_password: "0123456789abcdef0123"\n'
        'vault_coinex_chatbot_redis_app_password: "0123456789abcdef0123"\n'
    )
    if vault:
        password = tmp / "vault_pass"
        password.write_text("a password the playbook runs are not given\n")
        subprocess.run(
            [
                str(ROOT / ".venv/bin/ansible-vault"),
                "encrypt",
                "--vault-password-file",
                str(password),
                str(secrets),
            ],
            check=True,
            capture_output=True,
        )
    (inventory / "hosts.yml").write_text(
        "chatbot:\n  hosts:\n    chatbot-9.invalid:\n      ansible_host: 127.0.0.1\n"
        "      ansible_port: 1\n      coinex_chatbot_private_address: 10.0.1.11\n"
        "redis:\n  hosts:\n    redis-1.invalid:\n      coinex_chatbot_private_address: 10.0.1.21\n"
    )
    return inventory


def test_a_missing_or_wrong_vault_password_is_one_line(tmp_path: Path) -> None:
    """plugins/vars/vault_check.py: the file, the hosts that need it and the fix, in one line,
    instead of ansible-core's bare "Attempting to decrypt ..." / "Decryption failed ..."."""
    inventory = production_copy(tmp_path, vault=True)
    vault = f"{inventory}/group_vars/all/vault.yml"
    hosts = "(needed by group all: chatbot-9.invalid, redis-1.invalid)"
    wrong = tmp_path / "wrong_pass"
    wrong.write_text("not the password of this vault\n")
    for playbook in ("deploy.yml", "supervisorctl.yml", "rolling_restart.yml", "rollback.yml"):
        run = run_playbook(playbook, "-i", str(inventory))
        line = one_line(run, f"{vault} is vault-encrypted and no vault password was given {hosts}")
        fix = f"add --vault-password-file {inventory}/.vault_pass (`make vault` writes it)"
        assert line.endswith(f"{fix} or --ask-vault-pass"), line
        run = run_playbook(playbook, "-i", str(inventory), "--vault-password-file", str(wrong))
        line = one_line(run, f"{vault} does not decrypt with the vault password given {hosts}")
        assert "give the password it was encrypted with" in line, line
        assert "Decryption failed" not in run.output and "Attempting to decrypt" not in run.output


def test_an_unreachable_host_is_one_line_in_every_playbook(tmp_path: Path) -> None:
    """plugins/callback/oneline.py: the host, ssh's reason and the fix, instead of ansible-core's
    [ERROR] block, its "caused by" repeat and the UNREACHABLE! dump."""
    inventory = production_copy(tmp_path, vault=False)
    for playbook in ("deploy.yml", "rolling_restart.yml", "rollback.yml"):
        run = run_playbook(playbook, "-i", str(inventory))
        line = one_line(
            run, "chatbot-9.invalid is unreachable over ssh (ssh: connect to host 127.0.0.1 port 1:"
        )
        assert line.endswith(
            "check that it is up and that `ssh -p 1 deploy@127.0.0.1` works,"
            " or leave it out (--limit '!chatbot-9.invalid')"
        ), line
        assert "caused by" not in run.output and "UNREACHABLE!" not in run.output, run.output


def test_an_unreachable_host_is_a_row_and_one_line(tmp_path: Path) -> None:
    inventory = production_copy(tmp_path, vault=False)
    run = run_playbook("supervisorctl.yml", "-i", str(inventory))
    assert run.rc != 0
    lines = table(run)
    assert re.match(r"chatbot-9\.invalid\s+-\s+UNREACHABLE\b", lines[1]), lines
    assert lines[-1] == "0 of 1 RUNNING"
    # one line of what to do, once (the task's own unreachable result is the table's row)
    assert len(run.errors()) == 1, run.errors()
    ours = [e for e in run.errors() if "leave it out" in e]
    assert len(ours) == 1 and ours[0].startswith(
        "Task failed: Action failed: unreachable: chatbot-9.invalid ("
    ), ours
    assert (
        "check that it is up and that ssh to it works, or leave it out"
        " (--limit '!chatbot-9.invalid')" in ours[0]
    )
    assert "Traceback" not in run.output


def test_supervisord_down_is_one_line_for_status_and_the_rolling_restart(deploy: Deploy) -> None:
    """Last: stops the deployment's supervisord (the fixture's teardown expects nothing)."""
    assert "Shut down" in deploy.supervisorctl("shutdown")
    expected = (
        "supervisord is not running on localhost: run the deploy (ansible-playbook playbooks/"
    )
    one_line(deploy.ops(), expected)
    one_line(deploy.ops("-e", "op=restart"), expected)
    one_line(run_playbook("rolling_restart.yml", *deploy.args()), expected)
    one_line(run_playbook("rollback.yml", *deploy.args()), expected)
    # supervisord's own log is still there to read
    run = deploy.ops("-e", "op=tail", "-e", "target=supervisord", "-e", "lines=3")
    assert run.rc == 0, run.output[-3000:]
    assert len(table(run)) == 4 and "supervisord.log (last 3 lines)" in table(run)[0], run.output
