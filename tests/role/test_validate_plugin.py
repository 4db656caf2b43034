"""The role's validation filter (filter_plugins/coinex_chatbot_validate.py), called directly.

Fast checks of each kind of check with good and bad values, of the app's ranges coming from the
app's config.py (not from the plugin), and of secrets never being shown. test_validation.py runs
the same checks through real ansible-playbook runs.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "coinex_chatbot"
APP = ROOT / "app"
V = "coinex_chatbot_"
SECRET = "s3cret-value-never-shown"


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


plugin = load(ROLE / "filter_plugins" / "coinex_chatbot_validate.py", "coinex_chatbot_validate")
app_config = load(APP / "src" / "coinex_chatbot" / "config.py", "app_config_under_test")

# the role's defaults as they look once templated (local mode), plus a free http port
VALID: dict[str, Any] = {
    V + "http_port": 8080,
    V + "local_redis_port": 16379,
    V + "local_uwsgi_port": 8081,
    V + "keep_releases": 5,
    V + "uwsgi_processes": 4,
    V + "uwsgi_threads": 2,
    V + "uwsgi_harakiri": 30,
    V + "uwsgi_max_requests": 5000,
    V + "uwsgi_max_requests_delta": 500,
    V + "uwsgi_max_worker_lifetime": 3600,
    V + "uwsgi_reload_on_rss": 192,
    V + "uwsgi_worker_reload_mercy": 30,
    V + "uwsgi_listen": 128,
    V + "task_threads": 4,
    V + "task_shutdown_timeout_ms": 30000,
    V + "health_timeout": 30,
    V + "rate_limit_conversation": 20,
    V + "rate_limit_ip": 120,
    V + "trusted_proxies": 0,
    V + "data_ttl_seconds": 604800,
    V + "broker_heartbeat_timeout_ms": 60000,
    V + "broker_maintenance_chance": 1000,
    V + "escalation_maxlen": 100000,
    V + "base_dir": "/home/me/coinex_chatbot",
    V + "python": "/usr/bin/python3",
    V + "app_src": str(APP),
    V + "requirements_lock": f"{APP}/requirements.lock",
    V + "controller_cache_dir": "/home/me/.cache/coinex_chatbot",
    V + "controller_python": "/usr/bin/python3",
    V + "user": "coinex-chatbot",
    V + "group": "coinex-chatbot",
    V + "http_address": "127.0.0.1",
    V + "confidence_threshold": 0.35,
    V + "ld_preload": [],
    V + "extra_env": {},
    V + "health_question": "How do I reset my 2FA?",
    V + "health_expected_article": "2fa-lost-reset",
    V + "local_supervisor_version": "4.3.0",
    V + "uv_version": "0.13.9",
    V + "rollback_release": "",
    V + "redis_url": "",
    V + "secret_key": "",
    V + "redis_password": "",
    V + "redis_app_password": "",
    V + "local_redis_maxmemory": "256mb",
    V + "redis_sentinels": [],
    V + "redis_sentinel_port": 26379,
    V + "redis_master_name": "coinex_chatbot",
    V + "redis_sentinel_password": "",
    V + "redis_wait_replicas": 0,
    V + "redis_wait_timeout_ms": 1000,
}
WS = {"value": 2, "source": "local mode default", "name": "coinex_chatbot_ws_by_mode.local"}
PRODUCTION = {
    V + "secret_key": "k" * 16,
    V + "redis_password": "p" * 16,
    V + "redis_app_password": "a" * 16,
    V + "http_port": 8000,
}


def invalid(mode: str = "local", ws: dict[str, Any] | None = None, **changes: Any) -> list[str]:
    """The messages for VALID with `changes` (names without the coinex_chatbot_ prefix)."""
    values = {**VALID, **{V + name: value for name, value in changes.items()}}
    return plugin.coinex_chatbot_invalid(values, mode, ws or WS)


def one(**changes: Any) -> str:
    """The one message for VALID with `changes`; it names the (first) changed variable."""
    errors = invalid(**changes)
    assert len(errors) == 1, errors
    assert errors[0].startswith(V + next(iter(changes)) + " "), errors
    return errors[0]


def prod_args() -> dict[str, Any]:
    return {k.removeprefix(V): v for k, v in PRODUCTION.items()}


def test_valid_sets_pass() -> None:
    assert invalid() == []
    assert invalid("production", **{k.removeprefix(V): v for k, v in PRODUCTION.items()}) == []


def test_the_checked_variables_are_the_roles_defaults() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(plugin.CHECKED) == set(VALID)
    assert set(plugin.CHECKED) <= set(defaults)
    assert plugin.coinex_chatbot_checked([*defaults, "coinex_chatbot_serial"]) == list(
        plugin.CHECKED
    )
    with pytest.raises(AnsibleFilterError, match="coinex_chatbot_redis_url"):
        plugin.coinex_chatbot_checked(set(defaults) - {V + "redis_url"})
    with pytest.raises(AnsibleFilterError, match="no value for coinex_chatbot_user"):
        plugin.coinex_chatbot_invalid(
            {k: v for k, v in VALID.items() if k != V + "user"}, "local", WS
        )
    assert set(plugin.FilterModule().filters()) == {
        "coinex_chatbot_invalid",
        "coinex_chatbot_checked",
    }


@pytest.mark.parametrize("value", [1, "1", 8080, "65535", 65535])
def test_integer_good(value: object) -> None:
    assert invalid(http_port=value) == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, '"True"'),  # a boolean is no integer
        ("2.5", '"2.5"'),
        (2.0, '"2.0"'),
        ("0", '"0"'),
        (0, '"0"'),
        (65536, '"65536"'),
        ("-5", '"-5"'),
        ("http", '"http"'),
        ("", '""'),
        (None, '"None"'),
        ([80], '"[80]"'),
        ("80\n", '"80\\n"'),
    ],
)
def test_integer_bad(value: object, shown: str) -> None:
    message = one(http_port=value)
    assert message == f"{V}http_port must be an integer from 1 to 65535, got {shown}"


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("keep_releases", 1, 100),
        ("uwsgi_max_requests_delta", 0, 1_000_000),
        ("uwsgi_reload_on_rss", 16, 1_048_576),
        ("task_shutdown_timeout_ms", 1000, 3_600_000),
    ],
)
def test_integer_edges(name: str, low: int, high: int) -> None:
    assert invalid(**{name: low}) == invalid(**{name: str(high)}) == []
    assert f"from {low} to {high}, got" in one(**{name: low - 1})
    assert f"from {low} to {high}, got" in one(**{name: high + 1})


def test_ws_names_its_source() -> None:
    assert invalid(ws={**WS, "value": "64"}) == []
    errors = invalid(ws={"value": "four", "source": "environment (WS)", "name": "WS"})
    assert errors == [
        "WS must be an integer from 1 to 64 (WS from the environment (WS); -e ws=N wins over"
        ' WS=N, which wins over coinex_chatbot_ws), got "four"'
    ]
    assert invalid(ws={**WS, "value": 0})[0].startswith("coinex_chatbot_ws_by_mode.local must")


# app settings: role variable -> the app's environment variable (vars/main.yml __coinex_chatbot_env)
APP_INTEGERS = {
    "rate_limit_conversation": "CHATBOT_RATE_LIMIT_CONVERSATION",
    "rate_limit_ip": "CHATBOT_RATE_LIMIT_IP",
    "trusted_proxies": "CHATBOT_TRUSTED_PROXIES",
    "data_ttl_seconds": "CHATBOT_DATA_TTL_SECONDS",
    "broker_heartbeat_timeout_ms": "CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS",
    "broker_maintenance_chance": "CHATBOT_BROKER_MAINTENANCE_CHANCE",
    "escalation_maxlen": "CHATBOT_ESCALATION_MAXLEN",
}


@pytest.mark.parametrize(("name", "setting"), APP_INTEGERS.items())
def test_app_integer_ranges_are_the_apps(name: str, setting: str) -> None:
    low, high = app_config.integer_ranges()[setting]
    assert invalid(**{name: low}) == invalid(**{name: str(high)}) == []
    for bad in (low - 1, high + 1, True, "1.5"):
        assert f"{V}{name} must be an integer from {low} to {high}, got" in one(**{name: bad})


def test_the_rate_limit_message_is_unchanged() -> None:
    assert one(rate_limit_ip="-1") == (
        f'{V}rate_limit_ip must be an integer from 0 to 10000000, got "-1"'
    )


@pytest.mark.parametrize("value", [0, 1, 0.35, "0", "1", ".5", "0.35", "1.0"])
def test_confidence_threshold_good(value: object) -> None:
    assert invalid(confidence_threshold=value) == []


@pytest.mark.parametrize("value", [1.5, "1.5", -0.1, "-0.1", "high", True, "1.", "", None])
def test_confidence_threshold_bad(value: object) -> None:
    message = one(confidence_threshold=value)
    assert message.startswith(f"{V}confidence_threshold must be a number from 0 to 1, got ")
    assert app_config.number_ranges()["CHATBOT_CONFIDENCE_THRESHOLD"] == (0.0, 1.0)


def write_app(root: Path, integers: dict[str, Any], numbers: dict[str, Any]) -> Path:
    """An app source directory whose config.py gives these ranges."""
    config = root / "src" / "coinex_chatbot" / "config.py"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"def integer_ranges():\n    return {integers!r}\n\n"
        f"def number_ranges():\n    return {numbers!r}\n"
    )
    return root


def test_app_ranges_come_from_the_apps_config(tmp_path: Path) -> None:
    integers = {**app_config.integer_ranges(), "CHATBOT_TRUSTED_PROXIES": (0, 3)}
    numbers = {"CHATBOT_CONFIDENCE_THRESHOLD": (0.1, 0.9)}
    app = str(write_app(tmp_path, integers, numbers))
    assert invalid(app_src=app, trusted_proxies=3, confidence_threshold="0.9") == []
    assert invalid(app_src=app, trusted_proxies=4, confidence_threshold=0.05) == [
        f'{V}trusted_proxies must be an integer from 0 to 3, got "4"',
        f'{V}confidence_threshold must be a number from 0.1 to 0.9, got "0.05"',
    ]
    # the real app's range is back with the real app
    assert invalid(trusted_proxies=4) == []


def test_the_config_is_loaded_by_path_alone(tmp_path: Path) -> None:
    """Only config.py is read: no package __init__ (a broken release still validates)."""
    copy = tmp_path / "src" / "coinex_chatbot" / "config.py"
    copy.parent.mkdir(parents=True)
    shutil.copy(APP / "src" / "coinex_chatbot" / "config.py", copy)
    (copy.parent / "__init__.py").write_text('raise ImportError("a broken release")\n')
    assert invalid(app_src=str(tmp_path)) == []
    low, high = app_config.integer_ranges()["CHATBOT_TRUSTED_PROXIES"]
    assert invalid(app_src=str(tmp_path), trusted_proxies=high + 1) == [
        f'{V}trusted_proxies must be an integer from {low} to {high}, got "{high + 1}"'
    ]
    assert "_coinex_chatbot_app_config" not in sys.modules


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "FileNotFoundError"),
        ("def integer_ranges(:\n", "SyntaxError"),
        ("def integer_ranges():\n    return {}\n", "AttributeError"),
        (
            "def integer_ranges():\n    return {}\n\ndef number_ranges():\n    return {}\n",
            "it has no range for CHATBOT_RATE_LIMIT_CONVERSATION, CHATBOT_RATE_LIMIT_IP",
        ),
    ],
)
def test_an_app_without_ranges_names_app_src(tmp_path: Path, content: str | None, why: str) -> None:
    if content is not None:
        config = tmp_path / "src" / "coinex_chatbot" / "config.py"
        config.parent.mkdir(parents=True)
        config.write_text(content)
    # the app checks cannot run: only app_src is named, once
    errors = invalid(app_src=str(tmp_path), trusted_proxies=99)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{V}app_src must be the app's source directory"), errors
    assert why in errors[0]


@pytest.mark.parametrize(
    "value", ["relative/dir", "/", "//", "/srv/../etc", "~/chatbot", "", 5, None]
)
def test_paths_bad(value: object) -> None:
    for name in ("base_dir", "python", "requirements_lock", "controller_python", "app_src"):
        message = one(**{name: value})
        assert message.startswith(
            f"{V}{name} must be an absolute path (not /, no '..', no ~), got "
        ), message


def test_paths_good() -> None:
    assert invalid(base_dir="/srv/chat/", controller_cache_dir="/a/..b/c") == []


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("user", ["chatbot_svc", "_x", "a" * 32], ["root", "", "Bad User!", False, "a" * 33, "9a"]),
        ("group", ["svc", "root", "a-b"], ["a b", "", False, "Group"]),
        (
            "http_address",
            ["127.0.0.1", "0.0.0.0", "::1", "::", "my-host.example", "fe80::1"],
            ["256.1.1.1", "1.2.3", "", True, "host_name", "a..b!"],
        ),
        ("health_expected_article", ["2fa-lost-reset", "a"], ["Bad Id", "-x", "", 5]),
        ("local_supervisor_version", ["4.3.0", "4"], ["4.x", "v4", "4.", ""]),
        ("uv_version", ["0.13.9", "1"], ["0.13.x", "v0.13", "0.", ""]),
        ("rollback_release", ["", "1.0.0-20261126T150000Z"], ["../../etc", "..", ".", "a/b", 1]),
        ("health_question", ["Why?"], ["", "   ", 5, None]),
    ],
)
def test_names_and_shapes(name: str, good: list[object], bad: list[object]) -> None:
    for value in good:
        assert invalid(**{name: value}) == [], value
    for value in bad:
        assert one(**{name: value}).startswith(f"{V}{name} must be "), value


def test_user_false_names_user_and_group() -> None:
    errors = invalid(user=False, group=False)
    assert [e.split()[0] for e in errors] == [V + "user", V + "group"]
    assert errors[0].endswith('other than root, got "False"')


def test_ld_preload_and_extra_env() -> None:
    assert invalid(ld_preload=["/usr/lib/libx.so"], extra_env={"FEATURE_X": 1, "B": None}) == []
    for bad in (["libfoo.so"], "/usr/lib/libx.so", [1], {"/a": 1}):
        assert one(ld_preload=bad).startswith(f"{V}ld_preload must be a list of absolute paths")
    for bad in (["A=1"], {"1BAD": "x"}, {"A": [1]}, {"A": {"b": 1}}, {"A-B": "x"}, "A=1"):
        assert one(extra_env=bad).startswith(
            f"{V}extra_env must map environment variable names ([A-Za-z_][A-Za-z0-9_]*) to"
            " scalar values, got "
        )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "redis://redis.example",
        "redis://:pw@redis.example:6380/2",
        "rediss://user:pw@10.0.0.5:6379/0?ssl_cert_reqs=none",
        "redis://[::1]:6380",
        "unix:///run/redis/redis.sock?db=1",
    ],
)
def test_redis_url_good(url: str) -> None:
    assert invalid(redis_url=url) == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://:{SECRET}@localhost:6379/0", '"http://***@localhost:6379/0"'),
        (f"redis://:{SECRET}@/0", '"redis://***@/0"'),
        (f"redis://:{SECRET}@redis.example:99999/0", '"redis://***@redis.example:99999/0"'),
        (f"redis://:ab/{SECRET}@h:6379/0", '"redis://***@h:6379/0"'),
        (f"redis://:{SECRET}@h:0", '"redis://***@h:0"'),
        (f"redis://:pa\n{SECRET}@h:abc", '"redis://***@h:abc"'),
        ("redis://redis.example:abc/0", '"redis://redis.example:abc/0"'),
        (["redis://h"], "\"['redis://h']\""),
    ],
)
def test_redis_url_bad_and_masked(url: object, shown: str) -> None:
    message = one(redis_url=url)
    assert message == (
        f"{V}redis_url must be empty (the role runs Redis on the host) or look like"
        " redis[s]://[:password@]host[:port 1-65535][/db] or unix:///path/to.sock,"
        f" got {shown}"
    )
    assert SECRET not in message


def test_port_clash_with_the_loopback_redis() -> None:
    clash = f"{V}http_port clashes with the port of the Redis on this host"
    share = "uWSGI and Redis cannot share a port"
    assert invalid(local_redis_port=8080) == [
        f'{clash} (coinex_chatbot_local_redis_port, 8080): {share}, got "8080"'
    ]
    assert invalid(redis_url=f"redis://:{SECRET}@127.0.0.1:8080/0") == [
        f'{clash} (coinex_chatbot_redis_url, 8080): {share}, got "8080"'
    ]
    assert invalid(redis_url="redis://localhost", http_port="6379") == [
        f'{clash} (coinex_chatbot_redis_url, 6379): {share}, got "6379"'
    ]
    assert invalid(redis_url="rediss://[::1]:8080/2")[0].startswith(clash)
    production = {k.removeprefix(V): v for k, v in PRODUCTION.items()}
    assert invalid("production", **{**production, "http_port": 6379}) == [
        f'{clash} (production mode\'s own Redis, 6379): {share}, got "6379"'
    ]
    # another host's Redis, a socket, or local mode with a URL: no clash
    assert invalid(redis_url="redis://10.0.0.1:8080/0") == []
    assert invalid(redis_url="unix:///run/redis.sock") == []
    assert (
        invalid("production", **{**production, "http_port": 6379, "redis_url": "redis://r"}) == []
    )
    # a bad port is reported as such, not as a clash too
    assert len(invalid(local_redis_port="abc", http_port="abc")) == 2


def test_local_uwsgi_port_clashes() -> None:
    """Local mode: uWSGI's own port (behind the local haproxy) is neither haproxy's nor Redis's."""
    assert invalid(local_uwsgi_port=8080) == [
        f"{V}local_uwsgi_port clashes with coinex_chatbot_http_port, which the local haproxy"
        ' holds in front of uWSGI: give uWSGI another port, got "8080"'
    ]
    assert invalid(local_uwsgi_port="16379") == [
        f"{V}local_uwsgi_port clashes with the port of the Redis on this host"
        " (coinex_chatbot_local_redis_port, 16379): uWSGI and Redis cannot share a port,"
        ' got "16379"'
    ]
    assert invalid(local_uwsgi_port=65536)[0].startswith(f"{V}local_uwsgi_port must be")
    assert invalid(local_uwsgi_port="x")[0].startswith(f"{V}local_uwsgi_port must be")
    # a bad http port (the default derives from it) is reported on its own
    assert invalid(http_port=65536, local_uwsgi_port=65537) == [
        f'{V}http_port must be an integer from 1 to 65535, got "65536"'
    ]
    # production mode has no local haproxy: uWSGI serves coinex_chatbot_http_port itself (and the
    # default, http port + 1, may be 65536 there)
    assert invalid("production", **{**prod_args(), "local_uwsgi_port": 8000}) == []
    assert invalid("production", **{**prod_args(), "local_uwsgi_port": 65536}) == []


def test_secrets_are_never_shown() -> None:
    short = SECRET[:10]
    errors = invalid(
        "production", secret_key=short, redis_password=short, redis_app_password=short,
        http_port=8000,
    )  # fmt: skip
    assert errors == [
        f"{V}secret_key must be a string; in production mode it is required, at least 16"
        " characters (keep it in a vault)",
        f"{V}redis_password must be a string; required (at least 16 characters, vaulted) when"
        " production mode runs its own Redis",
        f"{V}redis_app_password must be empty (derived) or at least 16 characters (vaulted)",
    ]
    same = "s" * 20
    assert invalid(
        "production", **{**prod_args(), "redis_password": same, "redis_app_password": same}
    ) == [
        f"{V}redis_app_password must differ from coinex_chatbot_redis_password (the default"
        " user's, every command)"
    ]
    assert invalid("production", secret_key="", redis_password="x", redis_url="redis://r")[0] == (
        errors[0].replace(short, "")
    )
    listed = invalid(
        secret_key=[SECRET], redis_password={"pw": SECRET}, redis_app_password=[SECRET]
    )
    assert len(listed) == 3 and all(SECRET not in e for e in listed), listed
    # local mode: both may be empty; a URL of its own: no Redis password needed
    assert invalid(secret_key="", redis_password="") == []
    # the app user's password may be left empty (derived from the default user's)
    assert invalid("production", **{**prod_args(), "redis_app_password": ""}) == []
    assert invalid("production", secret_key="k" * 16, redis_url="redis://r", http_port=80) == []


@pytest.mark.parametrize("size", ["256mb", "1gb", "1G", "500000", "64m"])
def test_local_redis_maxmemory_good(size: str) -> None:
    assert invalid(local_redis_maxmemory=size) == []


@pytest.mark.parametrize("size", ["", "0", "0mb", "-1mb", "256 mb", "lots", 256.5, True])
def test_local_redis_maxmemory_bad(size: object) -> None:
    assert "must be a Redis memory size above 0 like 256mb or 1gb" in one(
        local_redis_maxmemory=size
    )


def test_long_values_are_cut() -> None:
    long = "/" + "word " * 40
    message = one(base_dir=long + "/..")
    shown = message.split(", got ", 1)[1]
    assert shown.endswith('..."') and len(shown) <= 60 + 2
    shown = one(user="Word " * 40).split(", got ", 1)[1]
    assert shown.endswith('..."') and 60 < len(shown) <= 80 + 2
    # within 5 characters of the limit: shown whole
    assert one(user="x" * 85).endswith(', got "' + "x" * 85 + '"')


def test_every_bad_variable_is_reported_in_table_order() -> None:
    errors = invalid(
        ws={**WS, "value": "abc"},
        user="root",
        confidence_threshold="2",
        base_dir="rel",
        rate_limit_ip=-1,
        http_port=0,
    )
    names = [e.split()[0] for e in errors]
    assert names == [
        "coinex_chatbot_ws_by_mode.local",
        V + "http_port",
        V + "rate_limit_ip",
        V + "base_dir",
        V + "user",
        V + "confidence_threshold",
    ]


SENTINELS = ["10.0.1.21:26379", "redis-2.example.internal:26379", "[fd00::3]:26379"]


def test_sentinels_good() -> None:
    assert invalid(redis_sentinels=SENTINELS, redis_sentinel_password="s" * 16) == []


@pytest.mark.parametrize(
    "entry", [":26379", "10.0.1.21", "10.0.1.21:0", "10.0.1.21:65536", "a b:1"]
)
def test_sentinels_bad(entry: str) -> None:
    message = one(redis_sentinels=[SENTINELS[0], entry], redis_sentinel_password="s" * 16)
    assert message.startswith(f"{V}redis_sentinels must be host:port strings")
    assert "coinex_chatbot_private_address" in message


def test_sentinels_not_a_list() -> None:
    assert invalid(redis_sentinels="10.0.1.21:26379")[0].startswith(
        f"{V}redis_sentinels must be a list"
    )


def test_sentinel_password_required_with_sentinels() -> None:
    assert invalid(redis_sentinels=SENTINELS, redis_sentinel_password="short") == [
        f"{V}redis_sentinel_password required with Sentinels (coinex_chatbot_redis_sentinels):"
        " at least 16 characters, vaulted"
    ]
    assert invalid(redis_sentinel_password="short") == []  # no Sentinels: unused


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"redis_master_name": "a b"}, "redis_master_name"),
        ({"redis_wait_replicas": 17}, "redis_wait_replicas"),
        ({"redis_wait_timeout_ms": 5}, "redis_wait_timeout_ms"),
        ({"redis_sentinel_port": 0}, "redis_sentinel_port"),
    ],
)
def test_sentinel_settings_bad(changes: dict[str, Any], name: str) -> None:
    assert one(**changes).startswith(f"{V}{name} must be")
