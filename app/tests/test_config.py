import pytest

from coinex_chatbot.config import ConfigError, load_settings


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
        }
    )
    assert (s.redis_url, s.confidence_threshold, s.rate_limit_ip) == (
        "redis://:pw@10.0.0.5:6380/2",
        0.5,
        7,
    )
