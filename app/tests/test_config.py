import importlib.util
import os
import subprocess
import sys

import pytest

from coinex_chatbot import config
from coinex_chatbot.config import (
    ConfigError,
    check_env,
    integer_ranges,
    load_settings,
    number_ranges,
)


def test_production_refuses_to_start_without_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings({"CHATBOT_ENV": "production"})


def test_local_mode_runs_without_secret_key():
    settings = load_settings({"CHATBOT_ENV": "local"})
    assert settings.local and settings.secret_key


def test_debug_runs_without_secret_key():
    assert load_settings({"CHATBOT_DEBUG": "1"}).debug


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHATBOT_ENV", "staging"),
        ("CHATBOT_CONFIDENCE_THRESHOLD", "1.5"),
        ("CHATBOT_CONFIDENCE_THRESHOLD", "high"),
        ("CHATBOT_RATE_LIMIT_IP", "-1"),
        ("CHATBOT_RATE_LIMIT_CONVERSATION", "ten"),
        ("CHATBOT_DEBUG", "maybe"),
        ("REDIS_URL", "http://localhost:6379"),
        ("CHATBOT_LOG_LEVEL", "LOUD"),
        ("CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS", "10"),
        ("CHATBOT_ESCALATION_MAXLEN", "99"),
        ("CHATBOT_REDIS_SENTINELS", "10.0.0.1"),
        ("CHATBOT_REDIS_SENTINELS", "10.0.0.1:26379,"),
        ("CHATBOT_REDIS_SENTINELS", "10.0.0.1:65536"),
        ("CHATBOT_REDIS_SENTINELS", "::1:26379"),
        ("CHATBOT_REDIS_MASTER_NAME", "my master"),
        ("CHATBOT_REDIS_MASTER_NAME", ""),
        ("CHATBOT_REDIS_WAIT_REPLICAS", "17"),
        ("CHATBOT_REDIS_WAIT_TIMEOUT_MS", "1501"),
    ],
)
def test_bad_values_are_rejected_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({"SECRET_KEY": "x", name: value})


def test_values_are_read():
    s = load_settings(
        {
            "SECRET_KEY": "k",
            "REDIS_URL": "redis://:pw@10.0.0.5:6380/2",
            "CHATBOT_CONFIDENCE_THRESHOLD": "0.5",
            "CHATBOT_RATE_LIMIT_IP": "7",
            "CHATBOT_ESCALATION_MAXLEN": "5000",
        }
    )
    assert (s.redis_url, s.confidence_threshold, s.rate_limit_ip, s.escalation_maxlen) == (
        "redis://:pw@10.0.0.5:6380/2",
        0.5,
        7,
        5000,
    )
    assert load_settings({"SECRET_KEY": "k"}).escalation_maxlen == 100_000


def test_integer_ranges_name_every_integer_variable_and_bound_it():
    ranges = integer_ranges()
    assert ranges == {
        "CHATBOT_RATE_LIMIT_CONVERSATION": (0, 1_000_000),
        "CHATBOT_RATE_LIMIT_IP": (0, 10_000_000),
        "CHATBOT_TRUSTED_PROXIES": (0, 10),
        "CHATBOT_DATA_TTL_SECONDS": (60, 365 * 24 * 3600),
        "CHATBOT_ESCALATION_MAXLEN": (100, 10_000_000),
        "CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS": (1000, 3_600_000),
        "CHATBOT_BROKER_MAINTENANCE_CHANCE": (0, 1_000_000),
        "CHATBOT_TASK_DELAY_MS": (0, 600_000),
        "CHATBOT_REDIS_WAIT_REPLICAS": (0, 16),
        "CHATBOT_REDIS_WAIT_TIMEOUT_MS": (10, 1500),
    }
    assert number_ranges() == {"CHATBOT_CONFIDENCE_THRESHOLD": (0.0, 1.0)}
    for name, (low, high) in ranges.items():  # the bounds are accepted, one past them is not
        assert check_env({"SECRET_KEY": "x", name: str(low)}) == []
        assert check_env({"SECRET_KEY": "x", name: str(high)}) == []
        assert check_env({"SECRET_KEY": "x", name: str(high + 1)})[0].startswith(name)


def test_config_file_loads_alone_by_path():
    """As the role's plugin loads it: the one file, not the package, not in sys.modules."""
    spec = importlib.util.spec_from_file_location("alone", config.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.integer_ranges() == integer_ranges()


def test_check_env_reports_every_problem_and_load_settings_the_first():
    env = {"CHATBOT_RATE_LIMIT_IP": "-1", "CHATBOT_DEBUG": "maybe", "REDIS_URL": "http://x"}
    problems = check_env(env)
    names = ["REDIS_URL", "CHATBOT_DEBUG", "SECRET_KEY", "CHATBOT_RATE_LIMIT_IP"]
    assert [p.split()[0] for p in problems] == names
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert str(error.value) == problems[0]


def _check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "coinex_chatbot.config", "--check", *args]
    env = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_check_command_validates_an_env_file(tmp_path):
    good, bad = tmp_path / "good.env", tmp_path / "bad.env"
    good.write_text("# by the role\nSECRET_KEY='it'\"'\"'s a $ecret'\nCHATBOT_RATE_LIMIT_IP=7\n")
    bad.write_text("CHATBOT_ENV=staging\nCHATBOT_TASK_DELAY_MS='a lot'\n")
    result = _check("--env-file", str(good))
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "config: ok (20 settings)\n",
        "",
    )
    result = _check("--env-file", str(bad))
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["config:", name] for name in ("CHATBOT_ENV", "SECRET_KEY", "CHATBOT_TASK_DELAY_MS")
    ]


def test_check_command_reads_the_environment_without_a_file():
    assert _check(env={"CHATBOT_ENV": "local"}).returncode == 0
    result = _check(env={"CHATBOT_CONFIDENCE_THRESHOLD": "high", "SECRET_KEY": "x"})
    assert result.returncode == 2
    assert result.stderr == "config: CHATBOT_CONFIDENCE_THRESHOLD must be a number, got 'high'\n"


def test_sentinel_settings_are_read():
    s = load_settings(
        {
            "SECRET_KEY": "k",
            "REDIS_URL": "redis://:pw@ignored:1/2",
            "CHATBOT_REDIS_SENTINELS": " 10.0.0.1:26379, redis-2:26380,[fd00::3]:26379 ",
            "CHATBOT_REDIS_MASTER_NAME": "chat.primary-1",
            "CHATBOT_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
            "CHATBOT_REDIS_WAIT_REPLICAS": "1",
        }
    )
    assert s.sentinels == [("10.0.0.1", 26379), ("redis-2", 26380), ("fd00::3", 26379)]
    assert (s.redis_master_name, s.redis_wait_replicas, s.redis_wait_timeout_ms) == (
        "chat.primary-1",
        1,
        1000,
    )
    assert "sentinel-secret" not in repr(s) and "'k'" not in repr(s)  # secrets stay out
    assert load_settings({"SECRET_KEY": "k"}).sentinels == []  # the one server at REDIS_URL


def test_sentinels_need_a_tcp_redis_url_and_each_problem_is_one_line():
    env = {"SECRET_KEY": "k", "REDIS_URL": "unix:///run/redis.sock"}
    assert check_env({**env, "CHATBOT_REDIS_SENTINELS": "a:26379"}) == [
        "CHATBOT_REDIS_SENTINELS needs a redis:// or rediss:// REDIS_URL, not unix://"
    ]
    result = _check(env={"SECRET_KEY": "k", "CHATBOT_REDIS_SENTINELS": "a:26379,b"})
    assert (result.returncode, result.stderr) == (
        2,
        "config: CHATBOT_REDIS_SENTINELS: expected host:port with a port from 1 to 65535,"
        " got 'b'\n",
    )
