"""Settings from environment variables only (documented in docs/architecture.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse


class ConfigError(RuntimeError):
    """A configuration variable is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = ""
    env: str = "production"
    debug: bool = False
    confidence_threshold: float = 0.35
    rate_limit_conversation: int = 20
    rate_limit_ip: int = 120
    trusted_proxies: int = 0
    data_ttl_seconds: int = 7 * 24 * 3600
    escalation_stream: str = "chatbot:escalations"
    broker_heartbeat_timeout_ms: int = 60_000
    broker_maintenance_chance: int = 1000
    log_level: str = "INFO"
    task_delay_ms: int = 0
    max_text_chars: int = 2000
    max_body_bytes: int = 16 * 1024

    @property
    def local(self) -> bool:
        return self.env == "local" or self.debug


Number = TypeVar("Number", int, float)


def _number(
    env: Mapping[str, str], name: str, default: Number, low: Number, high: Number, kind: type
) -> Number:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return _number(env, name, default, low, high, int)


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high, float)


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"", "0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 0 or 1, got {raw!r}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise ConfigError naming the bad variable."""
    env = os.environ if environ is None else environ
    mode = env.get("CHATBOT_ENV", "production")
    if mode not in {"production", "local"}:
        raise ConfigError(f"CHATBOT_ENV must be 'production' or 'local', got {mode!r}")
    redis_url = env.get("REDIS_URL") or Settings.redis_url
    if urlparse(redis_url).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    debug = _bool(env, "CHATBOT_DEBUG")
    secret_key = env.get("SECRET_KEY", "")
    if not secret_key:
        if mode != "local" and not debug:
            raise ConfigError("SECRET_KEY is required outside local/debug mode (CHATBOT_ENV=local)")
        secret_key = "local-development-only"
    level = env.get("CHATBOT_LOG_LEVEL", "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"CHATBOT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    return Settings(
        redis_url=redis_url,
        secret_key=secret_key,
        env=mode,
        debug=debug,
        confidence_threshold=_float(env, "CHATBOT_CONFIDENCE_THRESHOLD", 0.35, 0.0, 1.0),
        rate_limit_conversation=_int(env, "CHATBOT_RATE_LIMIT_CONVERSATION", 20, 0, 1_000_000),
        rate_limit_ip=_int(env, "CHATBOT_RATE_LIMIT_IP", 120, 0, 10_000_000),
        trusted_proxies=_int(env, "CHATBOT_TRUSTED_PROXIES", 0, 0, 10),
        data_ttl_seconds=_int(env, "CHATBOT_DATA_TTL_SECONDS", 7 * 24 * 3600, 60, 365 * 24 * 3600),
        escalation_stream=env.get("CHATBOT_ESCALATION_STREAM") or Settings.escalation_stream,
        broker_heartbeat_timeout_ms=_int(
            env, "CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS", 60_000, 1000, 3_600_000
        ),
        broker_maintenance_chance=_int(
            env, "CHATBOT_BROKER_MAINTENANCE_CHANCE", 1000, 0, 1_000_000
        ),
        log_level=level,
        task_delay_ms=_int(env, "CHATBOT_TASK_DELAY_MS", 0, 0, 600_000),
    )
