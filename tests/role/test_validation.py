"""Bad variables fail the deploy before any host is changed, naming the variable.

Every case is a real `ansible-playbook playbooks/deploy.yml` run against the local inventory:
a valid base set (a temporary base dir, free ports) plus one bad change. The runs are started
together by one module fixture (threads; each run is its own process), then one test per case
checks its run. Positive controls run the same variable sets through validation only
(`--tags coinex_chatbot_validate`), so a validation that rejected everything would fail them.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from playbook_runner import PlaybookRun, free_port, run_playbook

WORKERS = min(8, 2 * (os.cpu_count() or 1))  # the runs wait on their workers half of the time
# Safety net for the bad cases: only the deploy play reads coinex_chatbot_serial, and this value
# makes ansible-playbook abort before that play starts. If validation wrongly let a bad set
# through, the case fails (no validation failure) instead of deploying onto this machine.
GUARD = "validation-let-a-bad-set-through"
HTTP_PORT = free_port()
REDIS_PORT = free_port()
while REDIS_PORT == HTTP_PORT:
    REDIS_PORT = free_port()
SECRET_KEY = secrets.token_hex(16)
REDIS_PASSWORD = secrets.token_hex(10)
REDIS_APP_PASSWORD = secrets.token_hex(10)
# a valid production set: the secret key and the Redis passwords of the role's own Redis
PROD = (
    "coinex_chatbot_mode=production",
    f"coinex_chatbot_secret_key={SECRET_KEY}",
    f"coinex_chatbot_redis_password={REDIS_PASSWORD}",
    f"coinex_chatbot_redis_app_password={REDIS_APP_PASSWORD}",
)
V = "coinex_chatbot_"  # prefix of every variable name


@dataclass(frozen=True)
class Case:
    """A valid base set plus `extra` (-e values, later ones win) and `env`; `names`: the
    variables the failure must name, no more, no less; `hidden`: strings that must not appear."""

    extra: tuple[str, ...]
    names: frozenset[str]
    env: dict[str, str] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()


def case(
    case_id: str,
    *extra: str,
    names: str,
    env: dict[str, str] | None = None,
    hidden: tuple[str, ...] = (),
) -> tuple[str, Case]:
    named = frozenset(V + n for n in names.split())
    return case_id, Case(tuple(extra), named, env or {}, hidden)


def params(cases: list[tuple[str, Case]]) -> list[object]:
    return [pytest.param(case_id, one, id=case_id) for case_id, one in cases]


BAD = [
    # wrong types
    case("ws=abc", "ws=abc", names="ws"),
    case("ws=list", '{"ws": [2, 3]}', names="ws"),
    case("ws=2.5", "ws=2.5", names="ws"),
    case("http_port=http", f"{V}http_port=http", names="http_port"),
    case("http_port=true(bool)", f'{{"{V}http_port": true}}', names="http_port"),
    case("http_address=true(bool)", f'{{"{V}http_address": true}}', names="http_address"),
    # the group defaults to the user's name, so both are named
    case("user=false(bool)", f'{{"{V}user": false}}', names="user group"),
    case(
        "secret_key=list",
        f'{{"{V}secret_key": ["{SECRET_KEY}"]}}',
        names="secret_key",
        hidden=(SECRET_KEY,),
    ),
    case("confidence=high", f"{V}confidence_threshold=high", names="confidence_threshold"),
    case("extra_env=list", f'{{"{V}extra_env": ["A=1"]}}', names="extra_env"),
    # ranges
    case("ws=0", "ws=0", names="ws"),
    # WS from the environment, and coinex_chatbot_ws itself, are checked the same way
    case("WS=four(env)", names="ws", env={"WS": "four"}),
    case("coinex_chatbot_ws=65", f"{V}ws=65", names="ws"),
    case("http_port=0", f"{V}http_port=0", names="http_port"),
    case("http_port=65536", f"{V}http_port=65536", names="http_port"),
    case("local_redis_port=70000", f"{V}local_redis_port=70000", names="local_redis_port"),
    case("keep_releases=0", f"{V}keep_releases=0", names="keep_releases"),
    case("uwsgi_processes=257", f"{V}uwsgi_processes=257", names="uwsgi_processes"),
    case("uwsgi_harakiri=-5", f"{V}uwsgi_harakiri=-5", names="uwsgi_harakiri"),
    case("task_threads=65", f"{V}task_threads=65", names="task_threads"),
    case(
        "task_shutdown_timeout_ms=999",
        f"{V}task_shutdown_timeout_ms=999",
        names="task_shutdown_timeout_ms",
    ),
    case("confidence=1.5", f"{V}confidence_threshold=1.5", names="confidence_threshold"),
    case("trusted_proxies=11", f"{V}trusted_proxies=11", names="trusted_proxies"),
    case("data_ttl_seconds=59", f"{V}data_ttl_seconds=59", names="data_ttl_seconds"),
    case("rate_limit_ip=-1", f"{V}rate_limit_ip=-1", names="rate_limit_ip"),
    # choices
    case("mode=foo", f"{V}mode=foo", names="mode"),
    case("log_level=CRITICAL", f"{V}log_level=CRITICAL", names="log_level"),  # the app rejects it
    case(
        "health_expected_article=Bad Id",
        f'{{"{V}health_expected_article": "Bad Id"}}',
        names="health_expected_article",
    ),
    # paths
    case("base_dir=relative", f"{V}base_dir=relative/dir", names="base_dir"),
    case("base_dir=/", f"{V}base_dir=/", names="base_dir"),
    case("base_dir=dotdot", f"{V}base_dir=/srv/../etc", names="base_dir"),
    case("base_dir=tilde", f"{V}base_dir=~/chatbot", names="base_dir"),
    case("python=relative", f"{V}python=python3", names="python"),
    case(
        "controller_cache_dir=relative",
        f"{V}controller_cache_dir=.cache/cc",
        names="controller_cache_dir",
    ),
    case("ld_preload=relative", f'{{"{V}ld_preload": ["libfoo.so"]}}', names="ld_preload"),
    # names
    case("user=empty", f"{V}user=", names="user group"),
    case("user=illegal", f'{{"{V}user": "Bad User!"}}', names="user group"),
    case("user=root", f"{V}user=root", names="user"),
    case("group=illegal", f'{{"{V}group": "a b"}}', names="group"),
    case("extra_env=bad-name", f'{{"{V}extra_env": {{"1BAD": "x"}}}}', names="extra_env"),
    case("rollback_release=traversal", f"{V}rollback_release=../../etc", names="rollback_release"),
    # Redis URL (the password must never be shown)
    case(
        "redis_url=http",
        f"{V}redis_url=http://:{REDIS_PASSWORD}@localhost:6379/0",
        names="redis_url",
        hidden=(REDIS_PASSWORD,),
    ),
    case(
        "redis_url=no-host",
        f"{V}redis_url=redis://:{REDIS_PASSWORD}@/0",
        names="redis_url",
        hidden=(REDIS_PASSWORD,),
    ),
    case(
        "redis_url=port-99999",
        f"{V}redis_url=redis://:{REDIS_PASSWORD}@redis.example:99999/0",
        names="redis_url",
        hidden=(REDIS_PASSWORD,),
    ),
    case("redis_url=port-abc", f"{V}redis_url=redis://redis.example:abc/0", names="redis_url"),
    case(
        "redis_url=raw-slash-in-password",
        f"{V}redis_url=redis://:ab/{REDIS_PASSWORD}@h:6379/0",
        names="redis_url",
        hidden=(REDIS_PASSWORD,),
    ),
    # uWSGI and Redis on the same port
    case(
        "clash=local_redis_port",
        f"{V}local_redis_port={HTTP_PORT}",
        names="http_port local_redis_port",
    ),
    case(
        "clash=redis_url-loopback",
        f"{V}redis_url=redis://:{REDIS_PASSWORD}@127.0.0.1:{HTTP_PORT}/0",
        names="http_port redis_url",
        hidden=(REDIS_PASSWORD,),
    ),
    case(
        "clash=production-own-redis",
        *PROD,
        f"{V}http_port=6379",
        names="http_port",
        hidden=(SECRET_KEY, REDIS_PASSWORD),
    ),
    # WS from the environment
    case("WS=0-env", names="ws", env={"WS": "0"}),
    case("WS=65-env", names="ws", env={"WS": "65"}),
    case("WS=-1-env", names="ws", env={"WS": "-1"}),
    case("WS=two-env", names="ws", env={"WS": "two"}),
    # production secrets
    case(
        "production-no-secret",
        *PROD,
        f"{V}secret_key=",
        names="secret_key",
        hidden=(REDIS_PASSWORD,),
    ),
    case(
        "production-short-secret",
        *PROD,
        f"{V}secret_key=tooShort-{SECRET_KEY[:6]}",
        names="secret_key",
        hidden=(SECRET_KEY[:6], REDIS_PASSWORD),
    ),
    case(
        "production-short-redis-password",
        *PROD,
        f"{V}redis_password={REDIS_PASSWORD[:8]}",
        names="redis_password",
        hidden=(SECRET_KEY, REDIS_PASSWORD[:8]),
    ),
    case(
        "production-short-redis-app-password",
        *PROD,
        f"{V}redis_app_password={REDIS_APP_PASSWORD[:8]}",
        names="redis_app_password",
        hidden=(SECRET_KEY, REDIS_PASSWORD, REDIS_APP_PASSWORD[:8]),
    ),
]

GOOD = [
    case("base-set", names=""),
    case(
        "production",
        *PROD,
        f"{V}user=chatbot_svc",
        f"{V}group=svc",
        f"{V}http_port=65535",
        env={"WS": "64"},
        names="",
        hidden=(SECRET_KEY, REDIS_PASSWORD),
    ),
    # -e ws wins over a bad WS; edges and the other URL forms
    case(
        "local-edges",
        "ws=1",
        f"{V}redis_url=rediss://:{REDIS_PASSWORD}@[::1]:6380/2",
        f"{V}http_address=::1",
        f"{V}confidence_threshold=0",
        f"{V}rate_limit_ip=0",
        f"{V}trusted_proxies=10",
        f'{{"{V}ld_preload": ["/usr/lib/libx.so"]}}',
        f'{{"{V}extra_env": {{"FEATURE_X": 1}}}}',
        f"{V}rollback_release=1.0.0-20261126T150000Z",
        env={"WS": "two"},
        names="",
        hidden=(REDIS_PASSWORD,),
    ),
]


def base_args(base: Path) -> list[str]:
    values = [
        f"{V}base_dir={base}",
        f"{V}http_port={HTTP_PORT}",
        f"{V}local_redis_port={REDIS_PORT}",
    ]
    return [arg for value in values for arg in ("-e", value)]


def run_case(base: Path, one: Case, validate_only: bool) -> PlaybookRun:
    args = base_args(base) + [arg for value in one.extra for arg in ("-e", value)]
    if validate_only:
        args += ["--tags", "coinex_chatbot_validate"]
    else:
        args += ["-e", f"{V}serial={GUARD}"]
    return run_playbook("deploy.yml", *args, env=one.env)


def stop_stray_supervisord(base: Path) -> None:
    """Only if validation wrongly let a deploy through: stop what it started."""
    conf = base / "local_supervisord.conf"
    ctl = base / "tools" / "venv" / "bin" / "supervisorctl"
    if conf.exists() and ctl.exists():
        subprocess.run([str(ctl), "-c", str(conf), "shutdown"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[PlaybookRun, Path]]]:
    """Run, in parallel, the cases of this module that the session selected."""
    selected = {
        item.callspec.params["case_id"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    good = {case_id for case_id, _ in GOOD}
    todo = [(cid, one, cid in good) for cid, one in BAD + GOOD if cid in selected]
    bases = {cid: tmp_path_factory.mktemp("validation") / "deploy" for cid, _, _ in todo}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {cid: pool.submit(run_case, bases[cid], one, good) for cid, one, good in todo}
        results = {cid: (future.result(), bases[cid]) for cid, future in futures.items()}
    yield results
    for base in bases.values():
        stop_stray_supervisord(base)


def named_variables(messages: list[str]) -> set[str]:
    return set(re.findall(r"\bcoinex_chatbot_\w+", "\n".join(messages)))


@pytest.mark.parametrize(("case_id", "one"), params(BAD))
def test_bad_variables_fail_before_any_change(
    runs: dict[str, tuple[PlaybookRun, Path]], case_id: str, one: Case
) -> None:
    run, base = runs[case_id]
    tail = run.output[-3000:]
    assert run.rc != 0, tail
    errors = run.errors()
    assert errors, tail
    # validation failures (an assert or the argument specs), not a crash of some template
    assert all(e.startswith("Task failed: Action failed:") for e in errors), errors
    assert named_variables(errors) == one.names, errors
    recap = run.recap()
    assert recap["changed"] == 0 and recap["failed"] == 1, recap
    # it failed in the first play, the validation one: the deploy play never started
    assert "PLAY [Validate the variables" in run.output
    assert "PLAY [Deploy the chatbot" not in run.output
    assert GUARD not in run.output
    assert not base.exists()
    for hidden in one.hidden:
        assert hidden not in run.output


@pytest.mark.parametrize(("case_id", "one"), params(GOOD))
def test_valid_variables_pass_validation(
    runs: dict[str, tuple[PlaybookRun, Path]], case_id: str, one: Case
) -> None:
    run, base = runs[case_id]
    assert run.rc == 0, run.output[-3000:]
    recap = run.recap()
    assert recap["changed"] == 0 and recap["failed"] == 0, recap
    # the checks really ran and passed in the validation play; the role's own copy at its top is
    # skipped in the deploy play (the same variables, validated by the play above)
    task = (
        "TASK [coinex_chatbot : Check types, ranges, paths, names, the Redis URL and port clashes]"
    )
    passed = re.findall(rf"^{re.escape(task)} \**\nok: \[localhost\]$", run.output, re.M)
    skipped = re.findall(rf"^{re.escape(task)} \**\nskipping: \[localhost\]$", run.output, re.M)
    assert len(passed) == 1 and len(skipped) == 1, run.output[-3000:]
    assert run.output.count("Validating arguments against arg spec") == 2
    assert "TASK [coinex_chatbot : Set derived paths and names]" not in run.output
    assert not base.exists()
    for hidden in one.hidden:
        assert hidden not in run.output
