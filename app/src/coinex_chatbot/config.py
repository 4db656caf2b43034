"""Settings from environment variables only (documented in docs/architecture.md).

The ``Settings`` fields are the one table: each default, and in its metadata the variable and its
range or choices. Stdlib only, no package imports: the file can be loaded alone, by path.
``python -m coinex_chatbot.config --check [--env-file PATH]`` validates an environment.

Redis: REDIS_URL alone names one server. With CHATBOT_REDIS_SENTINELS (host:port,host:port,...)
the app asks those Sentinels for the primary of CHATBOT_REDIS_MASTER_NAME instead; REDIS_URL then
gives only the primary's username, password and database number (its host and port are unused).
"""

import argparse
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any
from urllib.parse import urlparse

_YES, _NO = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}
_MASTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


class ConfigError(RuntimeError):
    """A configuration variable is missing or invalid; the message names it."""


def _var(default: Any, env: str, *limits: Any, secret: bool = False) -> Any:
    """A setting read from ``env``; ``limits``: a number's (min, max), or a string's choices.

    A secret is left out of the settings' repr.
    """
    return field(default=default, repr=not secret, metadata={"env": env, "limits": limits})


def sentinel_addresses(raw: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (IPv6 as ``[addr]:port``) as pairs; ValueError says what is wrong."""
    if not raw.strip():
        return []
    addresses = []
    for item in raw.split(","):
        host, _, port = item.strip().rpartition(":")
        ok_port = port.isascii() and port.isdigit() and 1 <= int(port) <= 65535
        if not _HOST.fullmatch(host) or not ok_port:
            raise ValueError(
                f"expected host:port with a port from 1 to 65535, got {item.strip()!r}"
            )
        addresses.append((host.strip("[]"), int(port)))
    return addresses


@dataclass(frozen=True)
class Settings:
    # Read in this order; load_settings reports the first problem.
    env: str = _var("production", "CHATBOT_ENV", "production", "local")
    redis_url: str = _var("redis://127.0.0.1:6379/0", "REDIS_URL", "redis", "rediss", "unix")
    redis_sentinels: str = _var("", "CHATBOT_REDIS_SENTINELS")  # host:port,... ("": no Sentinel)
    redis_master_name: str = _var("coinex_chatbot", "CHATBOT_REDIS_MASTER_NAME")
    redis_sentinel_password: str = _var("", "CHATBOT_REDIS_SENTINEL_PASSWORD", secret=True)
    # a 202 waits until this many replicas have the message (WAIT), else 503; 0: no wait. The
    # wait stays under the store client's 2 s socket timeout
    redis_wait_replicas: int = _var(0, "CHATBOT_REDIS_WAIT_REPLICAS", 0, 16)
    redis_wait_timeout_ms: int = _var(1000, "CHATBOT_REDIS_WAIT_TIMEOUT_MS", 10, 1500)
    debug: bool = _var(False, "CHATBOT_DEBUG")
    secret_key: str = _var("", "SECRET_KEY", secret=True)
    log_level: str = _var("INFO", "CHATBOT_LOG_LEVEL", "DEBUG", "INFO", "WARNING", "ERROR")
    confidence_threshold: float = _var(0.35, "CHATBOT_CONFIDENCE_THRESHOLD", 0.0, 1.0)
    rate_limit_conversation: int = _var(20, "CHATBOT_RATE_LIMIT_CONVERSATION", 0, 1_000_000)
    rate_limit_ip: int = _var(120, "CHATBOT_RATE_LIMIT_IP", 0, 10_000_000)
    trusted_proxies: int = _var(0, "CHATBOT_TRUSTED_PROXIES", 0, 10)
    data_ttl_seconds: int = _var(7 * 24 * 3600, "CHATBOT_DATA_TTL_SECONDS", 60, 365 * 24 * 3600)
    escalation_stream: str = _var("chatbot:escalations", "CHATBOT_ESCALATION_STREAM")
    escalation_maxlen: int = _var(100_000, "CHATBOT_ESCALATION_MAXLEN", 100, 10_000_000)
    broker_heartbeat_timeout_ms: int = _var(
        60_000, "CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS", 1000, 3_600_000
    )
    broker_maintenance_chance: int = _var(1000, "CHATBOT_BROKER_MAINTENANCE_CHANCE", 0, 1_000_000)
    task_delay_ms: int = _var(0, "CHATBOT_TASK_DELAY_MS", 0, 600_000)
    max_text_chars: int = 2000  # fixed, not read from the environment
    max_body_bytes: int = 16 * 1024

    @property
    def local(self) -> bool:
        return self.env == "local" or self.debug

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """The Sentinels' addresses; [] when Redis is the one server at REDIS_URL."""
        return sentinel_addresses(self.redis_sentinels)


_FROM_ENV: list[Field[Any]] = [f for f in fields(Settings) if f.metadata]


def integer_ranges() -> dict[str, tuple[int, int]]:
    """Variable name -> (min, max) of every integer setting."""
    return {f.metadata["env"]: f.metadata["limits"] for f in _FROM_ENV if f.type is int}


def number_ranges() -> dict[str, tuple[float, float]]:
    """Variable name -> (min, max) of every non-integer number setting."""
    return {f.metadata["env"]: f.metadata["limits"] for f in _FROM_ENV if f.type is float}


def _either(choices: list[str]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


def _parse(setting: Field[Any], raw: str | None, parsed: Mapping[str, Any]) -> Any:
    """The value of one variable; raise ConfigError naming it when the value is invalid."""
    name, kind, limits = setting.metadata["env"], setting.type, setting.metadata["limits"]
    if kind is bool:
        flag = (raw or "").strip().lower()
        if flag not in _YES | _NO:
            raise ConfigError(f"{name} must be 0 or 1, got {flag!r}")
        return flag in _YES
    if kind in (int, float):
        if not raw:
            return setting.default
        try:
            value = kind(raw)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
        if not limits[0] <= value <= limits[1]:
            raise ConfigError(f"{name} must be between {limits[0]} and {limits[1]}, got {value}")
        return value
    if name == "SECRET_KEY":
        if raw or parsed.get("env") == "local" or parsed.get("debug"):
            return raw or "local-development-only"
        raise ConfigError("SECRET_KEY is required outside local/debug mode (CHATBOT_ENV=local)")
    if name == "REDIS_URL":  # the limits are URL schemes
        if urlparse(raw or setting.default).scheme not in limits:
            raise ConfigError(f"{name} must start with {_either([f'{s}://' for s in limits])}")
        return raw or setting.default
    if name == "CHATBOT_REDIS_SENTINELS":
        try:
            sentinel_addresses(raw or "")
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None
        if raw and raw.strip() and urlparse(parsed.get("redis_url", "")).scheme == "unix":
            raise ConfigError(f"{name} needs a redis:// or rediss:// REDIS_URL, not unix://")
        return (raw or "").strip()
    if name == "CHATBOT_REDIS_MASTER_NAME":
        value = setting.default if raw is None else raw
        if not _MASTER_NAME.fullmatch(value):
            raise ConfigError(f"{name} must be 1 to 64 of A-Z a-z 0-9 . _ -, got {value!r}")
        return value
    if not limits:
        return raw or setting.default
    value = setting.default if raw is None else raw
    if all(choice.isupper() for choice in limits):  # names, case-insensitive and shown bare
        value, shown = value.upper(), list(limits)
    else:
        shown = [repr(choice) for choice in limits]
    if value not in limits:
        raise ConfigError(f"{name} must be {_either(shown)}, got {value!r}")
    return value


def _read(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in _FROM_ENV:
        try:
            values[setting.name] = _parse(setting, env.get(setting.metadata["env"]), values)
        except ConfigError as error:
            problems.append(str(error))
    return values, problems


def check_env(env: Mapping[str, str]) -> list[str]:
    """Every problem of this environment, each naming its variable; [] when it is valid."""
    return _read(env)[1]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise ConfigError naming the (first) bad variable."""
    values, problems = _read(os.environ if environ is None else environ)
    if problems:
        raise ConfigError(problems[0])
    return Settings(**values)


def read_env_file(path: str) -> dict[str, str]:
    """NAME=VALUE words with shell-quoted values (``NAME={{ value | quote }}``); # comments."""
    with open(path, encoding="utf-8") as handle:
        words = shlex.split(handle.read(), comments=True)
    for word in words:
        if word.startswith("=") or "=" not in word:
            raise ValueError(f"{path}: expected NAME=VALUE, got {word!r}")
    return {name: value for name, _, value in (word.partition("=") for word in words)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coinex_chatbot.config")
    parser.add_argument("--check", action="store_true", required=True, help="exit 2 if invalid")
    parser.add_argument("--env-file", help="NAME=VALUE lines to check instead of the environment")
    args = parser.parse_args(argv)
    try:
        problems = check_env(read_env_file(args.env_file) if args.env_file else os.environ)
    except (OSError, ValueError) as error:
        problems = [str(error)]
    for problem in problems:
        print(f"config: {problem}", file=sys.stderr)
    if not problems:
        print(f"config: ok ({len(_FROM_ENV)} settings)")
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
