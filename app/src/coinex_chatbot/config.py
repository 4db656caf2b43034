"""Settings from environment variables only (documented in docs/architecture.md).

The ``Settings`` fields are the one table: each default, and in its metadata the variable and its
range or choices. Stdlib only, no package imports: the file can be loaded alone, by path.
``python -m coinex_chatbot.config --check [--env-file PATH]`` validates an environment.
"""

import argparse
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any
from urllib.parse import urlparse

_YES, _NO = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """A configuration variable is missing or invalid; the message names it."""


def _var(default: Any, env: str, *limits: Any) -> Any:
    """A setting read from ``env``; ``limits``: a number's (min, max), or a string's choices."""
    return field(default=default, metadata={"env": env, "limits": limits})


@dataclass(frozen=True)
class Settings:
    # Read in this order; load_settings reports the first problem.
    env: str = _var("production", "CHATBOT_ENV", "production", "local")
    redis_url: str = _var("redis://127.0.0.1:6379/0", "REDIS_URL", "redis", "rediss", "unix")
    debug: bool = _var(False, "CHATBOT_DEBUG")
    secret_key: str = _var("", "SECRET_KEY")
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
